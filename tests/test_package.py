"""Backend selection and import paths."""
import importlib.util
import os
import shutil
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


def _package_copy(where, source_tree=True, record=None):
    """A copy of the package's Python files in `where`, without a compiled
    core: beside a csrc/ folder (a source tree) or not (an installed copy),
    with setup.py's record of a failed build or not."""
    pkg = where / "autograd"
    pkg.mkdir()
    if source_tree:
        (where / "csrc").mkdir()
    src = os.path.dirname(autograd.pure.__file__)
    for name in ("__init__.py", "engine.py", "pure.py", "higher.py", "_fallback.py"):
        (pkg / name).write_text(open(os.path.join(src, name)).read())
    if record is not None:
        (pkg / "_build_failure.txt").write_text(record)
    return where


def _import_copy(where, pure=""):
    # -S: no site-packages, so the copy is the only autograd; no -W flags and
    # no PYTHONWARNINGS, so a warning shows only if Python shows it by default
    env = {**os.environ, "AUTOGRAD_PUREPYTHON": pure, "PYTHONWARNINGS": ""}
    return subprocess.run([sys.executable, "-S", "-c", "import autograd; import autograd; print(autograd.BACKEND)"],
                          env=env, cwd=where, capture_output=True, text=True, timeout=60)


def test_a_source_tree_without_the_core_refuses_to_import(tmp_path):
    out = _import_copy(_package_copy(tmp_path))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines()[-1] == (
        f"ImportError: autograd was imported from its source tree at {tmp_path}, where the compiled core "
        "is not built. Build it in place with `pip install -e .` (needs a C compiler), or run from another "
        "directory to use the installed copy. To run the pure-Python engine anyway (about 100-1000x slower "
        "than the compiled core), set AUTOGRAD_PUREPYTHON=1.")
    assert "No module named 'autograd.core'" in out.stderr      # the cause, chained


def test_a_source_tree_runs_the_pure_engine_when_asked(tmp_path):
    out = _import_copy(_package_copy(tmp_path), pure="1")
    assert (out.returncode, out.stdout, out.stderr) == (0, "python\n", "")


def test_a_copy_installed_without_a_compiler_warns_once_naming_the_reason(tmp_path):
    reason = "CompileError: command 'false' failed with exit code 1"
    out = _import_copy(_package_copy(tmp_path, source_tree=False, record=reason + "\n"))
    assert (out.returncode, out.stdout) == (0, "python\n")
    assert out.stderr.count("RuntimeWarning") == 1
    assert ("RuntimeWarning: autograd is running its pure-Python engine, about 100-1000x slower than the "
            f"compiled core: the compiled core was not built when this copy was installed ({reason}). To fix "
            "it, install a C compiler (gcc or clang) and the Python headers, then reinstall mini-autograd") in out.stderr
    # the record wins over the source tree's refusal: an editable install that could not compile
    (tmp_path / "editable").mkdir()
    out = _import_copy(_package_copy(tmp_path / "editable", record=reason))
    assert out.returncode == 0 and reason in out.stderr
    # asked for, the pure engine is no surprise
    out = _import_copy(tmp_path, pure="1")
    assert (out.returncode, out.stdout, out.stderr) == (0, "python\n", "")


def test_an_installed_copy_whose_core_does_not_import_warns(tmp_path):
    out = _import_copy(_package_copy(tmp_path, source_tree=False))
    assert (out.returncode, out.stdout) == (0, "python\n")
    assert ("RuntimeWarning: autograd is running its pure-Python engine, about 100-1000x slower than the "
            "compiled core: its compiled core could not be imported (No module named 'autograd.core'). "
            "Reinstall mini-autograd with this Python") in out.stderr


def test_the_fallback_message_names_the_reason_the_cost_and_the_fix():
    from autograd._fallback import fallback_message
    message = fallback_message("CompileError:\n  command 'gcc'   failed\n")
    assert message == (
        "autograd is running its pure-Python engine, about 100-1000x slower than the compiled core: the "
        "compiled core was not built when this copy was installed (CompileError: command 'gcc' failed). To "
        "fix it, install a C compiler (gcc or clang) and the Python headers, then reinstall mini-autograd "
        "(pip install --force-reinstall --no-deps with the source you installed from). AUTOGRAD_PUREPYTHON=1 "
        "selects the pure engine without this warning.")
    long = fallback_message("x" * 2000)
    assert "(" + "x" * 497 + "...)" in long and "x" * 498 not in long


def _setup_copy(where):
    """setup.py beside a copy of the package; no pyproject.toml, whose
    metadata needs a newer setuptools than a venv may have (pip builds with
    its own)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shutil.copy(os.path.join(root, "setup.py"), where / "setup.py")
    _package_copy(where)
    return where


_WITHOUT_CYTHON = ("import sys; sys.modules['Cython'] = sys.modules['Cython.Build'] = None; "
                   "sys.argv = ['setup.py', *sys.argv[1:]]; exec(open('setup.py').read())")


@pytest.mark.skipif(not os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                    "setup.py")), reason="setup.py is not beside the tests")
@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None,
                    reason="setuptools is not installed (venvs of CPython 3.12 and later lack it)")
def test_setup_records_why_the_core_was_not_built(tmp_path):
    where = _setup_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "AUTOGRAD_REQUIRE_EXTENSION"}
    # an in-place build writes the record into the source package ...
    out = subprocess.run([sys.executable, "-c", _WITHOUT_CYTHON, "build_ext", "--inplace"], cwd=where, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    record = where / "autograd" / "_build_failure.txt"
    assert record.read_text() == "Cython is not available to translate csrc/core.pyx to C\n"
    # ... a regular one into the built package, which the wheel holds
    out = subprocess.run([sys.executable, "-c", _WITHOUT_CYTHON, "build_ext", "--build-lib", "lib"], cwd=where,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (where / "lib" / "autograd" / "_build_failure.txt").read_text() == record.read_text()
    assert "WARNING: Cython is not available" in out.stderr
    # importing the package warns with the recorded reason
    out = _import_copy(where)
    assert out.returncode == 0 and "(Cython is not available to translate csrc/core.pyx to C)" in out.stderr
    # a required core makes the missing Cython an error, and records nothing
    record.unlink()
    out = subprocess.run([sys.executable, "-c", _WITHOUT_CYTHON, "build_ext", "--inplace"], cwd=where,
                         env={**env, "AUTOGRAD_REQUIRE_EXTENSION": "1"}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "import of Cython.Build halted" in out.stderr and not record.exists()


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
