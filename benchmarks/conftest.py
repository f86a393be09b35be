"""Benchmarks: every workload on the compiled core and the pure reference
(and micrograd / PyTorch where installed), compared within one run.

    pytest benchmarks                         # full run, with timings
    pytest benchmarks --benchmark-disable     # smoke: each workload once (CI)
"""
import pytest

import autograd.pure

try:
    import autograd.core as core
except ImportError:  # pragma: no cover - CI requires the core
    core = None


@pytest.fixture(scope="session", params=["cython", "python"])
def engine(request):
    if request.param == "cython":
        if core is None:
            pytest.skip("the compiled core is not built")
        return core
    return autograd.pure
