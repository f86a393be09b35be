"""Benchmarks: every workload on the compiled core and the pure reference,
and on micrograd and PyTorch where installed, measured in one run.

    pytest benchmarks                         # full run, with timings
    pytest benchmarks --benchmark-disable     # smoke: each workload once (CI)
    python benchmarks/report.py               # full run -> markdown table + chart

Each benchmark records in extra_info how many units (ops, nodes, steps) one
round covers, so the report can give a time per unit.
"""
import pytest

import autograd.pure
from peers import ENGINES

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
