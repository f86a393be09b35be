"""Custom nodes: a chain of 10^5 user-defined ops, built and back-propagated.

The same op, y = x + 1, three ways: written the lecture's way (a Python
`_backward` closure that captures its own output), as an autograd.function
(forward formula and partial derivative), and as the built-in `+`.  micrograd
runs the lecture's way, as shipped (the cyclic GC on).
"""
import gc
import sys

import pytest

from peers import value_factory

N = 10 ** 5


def _plus_one_lecture(Value):
    def plus_one(self):
        out = Value(self.data + 1.0, (self,), "+1")

        def _backward():
            self.grad += out.grad
        out._backward = _backward
        return out
    return plus_one


def _plus_one(who, kind):
    Value = value_factory(who)
    if kind == "lecture":
        return Value, _plus_one_lecture(Value)
    if who == "micrograd":
        pytest.skip("micrograd has only the lecture's way")
    if kind == "function":
        engine = sys.modules[Value.__module__]
        return Value, engine.function(lambda x: x + 1.0, lambda x: 1.0, name="+1")
    return Value, lambda v: v + 1.0


GROUPS = {
    "lecture": "chain of 10^5 custom nodes, the lecture's closure: build, backward, free",
    "function": "chain of 10^5 custom nodes, autograd.function: build, backward, free",
    "builtin": "chain of 10^5 built-in + nodes: build, backward, free",
}


@pytest.mark.parametrize("kind", list(GROUPS))
@pytest.mark.parametrize("who", ["cython", "python", "micrograd"])
def test_custom_chain_1e5(benchmark, who, kind):
    benchmark.group = GROUPS[kind]          # one group per kind: the report's rows
    Value, op = _plus_one(who, kind)

    def run():
        x = Value(0.0)
        v = x
        for _ in range(N):
            v = op(v)
        v.backward()
        assert x.grad == 1.0
        del x, v
        gc.collect()                           # the closures' reference cycles

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 3 * N))   # micrograd sorts its graph recursively
    try:
        gc.collect()
        benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    finally:
        sys.setrecursionlimit(limit)
    benchmark.extra_info.update(units=N, unit="node")
