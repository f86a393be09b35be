"""Backend selection and import paths."""
import os
import subprocess
import sys

import pytest

import autograd
import autograd.engine
import autograd.pure


def _backend_in_subprocess(**env):
    code = "import autograd, autograd.engine; print(autograd.BACKEND, autograd.Value.__module__, autograd.engine.Value is autograd.Value)"
    # run outside the source tree, which `python -c` would put first on sys.path
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(autograd.__file__)) if _installed() else "/")
    return out.stdout.split()


def _installed():
    """True when autograd is imported from site-packages, not a source checkout."""
    return not os.path.isdir(os.path.join(os.path.dirname(autograd.__file__), "..", "csrc"))


def test_purepython_env_selects_the_reference():
    assert _backend_in_subprocess(AUTOGRAD_PUREPYTHON="1") == ["python", "autograd.pure", "True"]


def test_default_backend_is_the_compiled_core_when_built(core):
    assert _backend_in_subprocess(AUTOGRAD_PUREPYTHON="") == ["cython", "autograd.core", "True"]


def test_a_source_tree_without_the_core_warns(tmp_path):
    # a copy of the package beside a csrc/ folder, with no compiled core in it
    pkg = tmp_path / "autograd"
    pkg.mkdir()
    (tmp_path / "csrc").mkdir()
    src = os.path.dirname(autograd.pure.__file__)
    for name in ("__init__.py", "engine.py", "pure.py", "higher.py"):
        (pkg / name).write_text(open(os.path.join(src, name)).read())
    out = subprocess.run([sys.executable, "-S", "-W", "always", "-c", "import autograd; print(autograd.BACKEND)"],
                         env={**os.environ, "AUTOGRAD_PUREPYTHON": ""}, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "python"
    assert "compiled core is not built in this source tree" in out.stderr


def test_micrograd_style_import():
    from autograd.engine import Value
    assert Value is autograd.Value
    assert autograd.BACKEND in ("cython", "python")
    v = Value(2.0) * 3
    v.backward()
    assert v.data == 6.0


def test_both_engines_importable_side_by_side(core):
    a = core.Value(2.0) * 3
    b = autograd.pure.Value(2.0) * 3
    assert a.data == b.data and type(a) is not type(b)
    with pytest.raises(TypeError):
        a + b                      # the two engines' Values do not mix


def test_the_package_ships_its_types():
    """py.typed marks the package as typed; core.pyi describes the compiled
    core (CI checks it against the built module with mypy's stubtest)."""
    import importlib.resources
    here = importlib.resources.files("autograd")
    assert here.joinpath("py.typed").is_file()
    stub = here.joinpath("core.pyi").read_text()
    for name in ("class Value", "class Replay", "def vsum", "def function", "class no_grad"):
        assert name in stub, name


def test_the_installed_version_is_the_package_version():
    """pyproject.toml takes its version from autograd.__version__ (one place)."""
    import importlib.metadata
    assert importlib.metadata.version("mini-autograd") == autograd.__version__
