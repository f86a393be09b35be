"""Core engine workloads: one op, a long chain's backward, memory per node."""
import gc

import pytest

OPS_PER_ROUND = 10_000
CHAIN = 10 ** 6


@pytest.mark.benchmark(group="a*b create and free (per 10k ops)")
def test_mul_create_and_free(benchmark, engine):
    a, b = engine.Value(2.0), engine.Value(3.0)

    def run():
        for _ in range(OPS_PER_ROUND):
            a * b

    benchmark(run)
    benchmark.extra_info["ops_per_round"] = OPS_PER_ROUND


def _chain(engine, n):
    x = engine.Value(0.5)
    y = x
    for _ in range(n):
        y = y.relu()
    return x, y


@pytest.mark.benchmark(group="chain of 10^6 nodes: backward (replay)")
def test_chain_backward_replay(benchmark, engine):
    n = CHAIN if engine.__name__ == "autograd.core" else CHAIN // 10
    x, y = _chain(engine, n)
    y.backward()
    benchmark(y.backward)
    benchmark.extra_info["nodes"] = n + 1


@pytest.mark.benchmark(group="chain of 10^6 nodes: first backward")
def test_chain_backward_first(benchmark, engine):
    n = CHAIN if engine.__name__ == "autograd.core" else CHAIN // 10
    x, y = _chain(engine, n)

    def setup():
        return (y.relu(),), {}   # a fresh root: its order is not cached yet

    benchmark.pedantic(lambda root: root.backward(), setup=setup, rounds=10)
    benchmark.extra_info["nodes"] = n + 2


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_memory_per_node(engine):
    """Resident memory per node that has no handle (target <= 48 bytes)."""
    gc.collect()
    n = CHAIN if engine.__name__ == "autograd.core" else CHAIN // 10
    before = _rss_bytes()
    x, y = _chain(engine, n)
    per_node = (_rss_bytes() - before) / n
    print(f"\n{engine.__name__}: {per_node:.1f} bytes per node")
    if engine.__name__ == "autograd.core":
        assert per_node <= 48
    del x, y
