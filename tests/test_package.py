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
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_purepython_env_selects_the_reference():
    assert _backend_in_subprocess(AUTOGRAD_PUREPYTHON="1") == ["python", "autograd.pure", "True"]


def test_default_backend_is_the_compiled_core_when_built(core):
    assert _backend_in_subprocess(AUTOGRAD_PUREPYTHON="") == ["cython", "autograd.core", "True"]


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
