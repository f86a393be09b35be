"""Core engine workloads: one op, a long chain's backward, memory per node."""
import os
import subprocess
import sys

import pytest

from peers import backward, value_factory

OPS_PER_ROUND = 10_000


@pytest.mark.benchmark(group="a*b: create and free one node")
def test_mul_create_and_free(benchmark, who):
    Value = value_factory(who)
    a, b = Value(2.0), Value(3.0)

    def run():
        for _ in range(OPS_PER_ROUND):
            a * b

    benchmark(run)
    benchmark.extra_info.update(units=OPS_PER_ROUND, unit="op")


def _relu_chain(Value, n):
    x = Value(0.5)
    y = x
    for _ in range(n):
        y = y.relu()
    return x, y


def _chain_workload(benchmark, who, n, first):
    if who == "micrograd":
        pytest.skip("micrograd's recursive topological sort fails beyond a depth of about 1,000")
    if who == "torch" and n > 10 ** 5:
        pytest.skip("PyTorch builds a 10^6-node scalar chain too slowly to repeat")
    Value = value_factory(who)
    x, y = _relu_chain(Value, n)
    if first:
        # a fresh root each round: nothing about its graph is cached yet
        benchmark.pedantic(lambda root: backward(who, root), setup=lambda: ((y.relu(),), {}),
                           rounds=5 if n > 10 ** 5 else 10)
    else:
        backward(who, y)
        benchmark(backward, who, y)
    benchmark.extra_info.update(units=n, unit="node")


@pytest.mark.benchmark(group="chain of 10^5 nodes: backward")
def test_chain_1e5_backward(benchmark, who):
    _chain_workload(benchmark, who, 10 ** 5, first=False)


@pytest.mark.benchmark(group="chain of 10^6 nodes: backward, replayed")
def test_chain_1e6_backward_replay(benchmark, who):
    _chain_workload(benchmark, who, 10 ** 6, first=False)


@pytest.mark.benchmark(group="chain of 10^6 nodes: backward, first call")
def test_chain_1e6_backward_first(benchmark, who):
    _chain_workload(benchmark, who, 10 ** 6, first=True)


_MEMORY_SCRIPT = r"""
import gc, sys
sys.path.insert(0, {here!r})
from peers import value_factory
Value = value_factory({who!r})
n = {n}
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
if {who!r} == "micrograd":
    gc.disable()   # micrograd's closures form reference cycles; keep the GC out of it
x = Value(0.5)
y = x
before = rss()
for _ in range(n):
    y = y.relu()
print((rss() - before) / n)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RSS from /proc")
@pytest.mark.benchmark(group="memory per node (bytes, resident)")
def test_memory_per_node(benchmark, who):
    """Resident memory per node that has no handle, in a fresh interpreter
    (target for the compiled core: at most 48 bytes)."""
    value_factory(who)   # skips where the engine is not installed
    n = 10 ** 6 if who == "cython" else 10 ** 5
    script = _MEMORY_SCRIPT.format(here=os.path.dirname(__file__), who=who, n=n)

    def measure():
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             check=True, cwd=os.path.dirname(os.path.dirname(__file__)) + "/benchmarks")
        return float(out.stdout.split()[-1])

    per_node = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(bytes_per_node=round(per_node, 1), units=n, unit="node")
    print(f"\n{who}: {per_node:.1f} bytes per node")
    if who == "cython":
        assert per_node <= 48, per_node
