"""Benchmarks: every workload on the compiled core and the pure reference,
and on micrograd and PyTorch where installed, measured in one run.

    pytest benchmarks                         # full run, with timings
    pytest benchmarks --benchmark-disable     # smoke: each workload once (CI)
    python benchmarks/report.py               # full run -> markdown table + chart

Each benchmark records in extra_info how many units (ops, nodes, steps) one
round covers, so the report can give a time per unit.
"""
import os
import sys

import pytest

# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, set on some machines, hold OpenBLAS
# to an older kernel and a smaller cache: numpy, a peer, would run slower than
# its users see.  Unset here, for this process only, before numpy is imported
# (OpenBLAS reads them when it loads); bench_scaling records the kernel that ran.
OPENBLAS_UNSET = [] if "numpy" in sys.modules else [
    name for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if os.environ.pop(name, None)]


def _import_the_installed_package():
    """`python -m pytest benchmarks` from the repository root puts the root
    first on sys.path, and the source tree's autograd/ has no compiled core
    unless it was built in place: then set the root aside and import the
    installed package, so that the benchmarks measure what users run."""
    import warnings
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        with warnings.catch_warnings():         # a copy without a core warns: the benchmarks say so
            warnings.simplefilter("ignore", RuntimeWarning)
            import autograd
    except ImportError:                         # the source tree without a core refuses to import
        autograd = None
    if autograd is not None:
        try:
            import autograd.core  # noqa: F401
            return
        except ImportError:
            pass
        if os.path.dirname(os.path.dirname(os.path.abspath(autograd.__file__))) != root:
            return                              # an installed copy without a core
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
    for name in [m for m in sys.modules if m == "autograd" or m.startswith("autograd.")]:
        del sys.modules[name]


_import_the_installed_package()

import autograd.pure  # noqa: E402  (after the choice of package above)
from peers import ENGINES  # noqa: E402

try:
    import autograd.core as core
except ImportError:  # pragma: no cover - CI requires the core
    core = None


@pytest.fixture(scope="session", params=["cython", "python"])
def engine(request):
    """The two engines of this project (modules)."""
    if request.param == "cython":
        if core is None:
            pytest.skip("the compiled core is not built")
        return core
    return autograd.pure


@pytest.fixture(params=ENGINES)
def who(request):
    """The name of an engine, ours or a peer's."""
    return request.param


@pytest.fixture(autouse=True)
def _isolated_heap():
    """Each benchmark starts with the objects made before it (the peers' imports:
    PyTorch and JAX make hundreds of thousands; earlier benchmarks' data) moved
    out of the cyclic GC's sight, so that no workload pays for collections of
    another's objects."""
    import gc
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()
