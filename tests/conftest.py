"""One fixture, `engine`, runs each engine test on both backends.

`engine` is the module: autograd.core (compiled) or autograd.pure.  Where
the compiled core is missing the Cython half is skipped, unless the build was
required (AUTOGRAD_REQUIRE_EXTENSION=1, as CI sets), where it fails.
"""
import os

import pytest

import autograd.pure

try:
    import autograd.core as _core
    _CORE_MISSING = None
except ImportError as exc:  # installed without a compiler
    _core = None
    _CORE_MISSING = str(exc)


def _require_core():
    if _core is not None:
        return _core
    if os.environ.get("AUTOGRAD_REQUIRE_EXTENSION", "") == "1":
        pytest.fail(f"the compiled core is required but missing: {_CORE_MISSING}")
    pytest.skip(f"the compiled core is not built ({_CORE_MISSING})")


@pytest.fixture(scope="session", params=["cython", "python"])
def engine(request):
    """The engine module under test: autograd.core or autograd.pure."""
    if request.param == "python":
        return autograd.pure
    return _require_core()


@pytest.fixture(scope="session")
def core():
    """The compiled core alone, for tests of the arena itself."""
    return _require_core()


@pytest.fixture(scope="session")
def engines():
    """(compiled, pure), for tests that compare the two."""
    return _require_core(), autograd.pure
