"""Deep and wide graphs: no recursion anywhere, memory comes back."""
import gc
import weakref

import pytest

DEPTH = 10 ** 6


def _live_nodes(engine):
    return engine.arena_info()["nodes"] if hasattr(engine, "arena_info") else None


def test_chain_a_million_deep(engine):
    baseline = _live_nodes(engine)
    x = engine.Value(0.5)
    y = x
    for _ in range(DEPTH):
        y = y * 1.0000001 + 0.0
    probe = y
    y.backward()
    # d/dx of x * c**DEPTH is c**DEPTH, accumulated step by step
    assert x.grad == pytest.approx(1.0000001 ** DEPTH, rel=1e-9)
    assert repr(y).startswith("Value(data=")
    y.data = 1.0
    y.forward()
    assert y.data == pytest.approx(0.5 * 1.0000001 ** DEPTH, rel=1e-9)
    if baseline is not None:
        assert _live_nodes(engine) >= baseline + 4 * DEPTH
    else:
        witness = weakref.ref(y._children[0])
    del y, probe
    gc.collect()
    if baseline is not None:
        assert _live_nodes(engine) == baseline + 1          # only x is left
    else:
        assert witness() is None
    assert x.data == 0.5


def test_one_leaf_used_many_times(engine):
    x = engine.Value(2.0)
    total = engine.vsum([x] * 100_000) + engine.vsum(x * 1.0 for _ in range(100_000))
    total.backward()
    assert x.grad == 200_000.0
    assert total.data == 400_000.0


def test_wide_fused_node(engine):
    ws = [engine.Value(0.001 * i) for i in range(50_000)]
    out = engine.dot(ws, [1.0] * len(ws), 0.0)
    out.backward()
    assert all(w.grad == 1.0 for w in ws)


def test_children_and_labels_of_a_deep_chain_need_no_recursion(engine):
    x = engine.Value(1.0, label="x")
    y = x
    for _ in range(200_000):
        y = y.relu()
    node, steps = y, 0
    while node._children:
        (node,) = node._children
        steps += 1
    assert steps == 200_000 and node is x and node.label == "x"
