"""One fixture, `engine`, runs each engine test on both backends.

`engine` is the module: autograd.core (compiled) or autograd.pure.  Where
the compiled core is missing the Cython half is skipped, unless the build was
required (AUTOGRAD_REQUIRE_EXTENSION=1, as CI sets), where it fails.
"""
import os
import sys

import pytest


def _import_autograd():
    """Import the package under test.

    `python -m pytest` from the repository's root puts the root first on
    sys.path, and the source tree refuses to import without a compiled core
    built in place (autograd/_fallback.py): then set the root aside and test
    the installed copy, as the `pytest` command does. Without an installed
    copy the source tree's ImportError stands: it says what to do.
    """
    try:
        import autograd  # noqa: F401
        return
    except ImportError as exc:
        error = exc
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, "csrc")):
        raise error
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
    for name in [m for m in sys.modules if m == "autograd" or m.startswith("autograd.")]:
        del sys.modules[name]
    try:
        import autograd  # noqa: F401,F811
    except ImportError:
        raise error from None


_import_autograd()

import autograd.pure  # noqa: E402  (after the choice of package above)

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
