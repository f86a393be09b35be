"""The compiled core's arena: handles, compaction, memory reclamation."""
import gc

import pytest

from helpers import same_float


def test_dropping_the_top_node_frees_it_at_once(core):
    a, b = core.Value(1.0), core.Value(2.0)
    before = core.arena_info()["nodes"]
    for _ in range(10_000):
        a * b
    assert core.arena_info()["nodes"] == before


def test_one_handle_per_node(core):
    a, b = core.Value(1.0), core.Value(2.0)
    c = a * b + 1
    first = c._children[0]
    assert c._children[0] is first
    assert core.arena_info()["handles"] >= 4


def test_a_full_arena_compacts_by_itself(core):
    gc.collect()       # an earlier test's reference cycles (a traceback's frames) may
    core.collect()     # still hold Values: start from an arena holding only live ones
    x = core.Value(1.0)
    info = core.arena_info()
    keep = []
    for step in range(4 * info["capacity"] // 3 + 10):
        keep.append(x * step)
        dead = (x + step) - 1    # dies when replaced, below a kept node
        if core.arena_info()["compactions"] > info["compactions"]:
            break
    else:
        pytest.fail("the arena never compacted")
    del dead
    assert core.arena_info()["capacity"] == info["capacity"]
    assert all(k.data == float(i) for i, k in enumerate(keep))


def test_handles_survive_compaction(core):
    keep = []
    rng_values = [0.5 + 0.001 * i for i in range(2000)]
    compactions = core.arena_info()["compactions"]
    x = core.Value(0.25, label="x")
    for i, v in enumerate(rng_values):
        garbage = [core.Value(v) * x for _ in range(50)]   # becomes dead mid-arena
        keep.append((x * v).tanh())
        keep[-1].label = f"k{i}"
        del garbage
        if i % 500 == 0:
            core.collect()
    assert core.arena_info()["compactions"] >= compactions + 4
    for i, (k, v) in enumerate(zip(keep, rng_values)):
        assert k.label == f"k{i}"
        (inner,) = k._children
        assert inner._op == "*" and inner._children[0] is x
        assert same_float(k.data, __import__("math").tanh(0.25 * v))
    keep[7].backward()
    assert x.grad == pytest.approx((1 - keep[7].data ** 2) * rng_values[7])
    core.check_arena()


def test_cached_order_is_rebuilt_after_compaction(core):
    x = core.Value(3.0)
    y = (x * x + 1) * 2
    y.backward()
    assert x.grad == 12.0
    for _ in range(5):
        junk = [core.Value(1.0) * 2 for _ in range(20_000)]
        del junk
    filler = core.Value(0.0)
    core.collect()
    x.grad = 0.0
    y.backward()
    assert x.grad == 12.0
    x.data = 2.0
    assert y.forward().data == 10.0
    del filler


def test_collect_keeps_exactly_the_reachable_nodes(core):
    gc.collect()
    base = core.collect()
    a = core.Value(1.0)
    b = a * 2 + 3          # a, const 2, *, const 3, +   -> 5 nodes
    side = [a * 7 for _ in range(100)]
    assert core.collect() == base + 5 + 200
    del side
    assert core.collect() == base + 5
    del b
    assert core.collect() == base + 1
    assert a.data == 1.0


def test_memory_per_node(core):
    info = core.arena_info()
    assert info["bytes_per_node"] <= 48


def test_check_arena_passes_after_mixed_work(core):
    x = core.Value(1.0)
    graphs = [core.dot([x, x * 2], [3.0, x], x).tanh() for _ in range(100)]
    del graphs[::2]
    core.collect()
    core.check_arena()
    assert isinstance(core.DEBUG_BUILD, bool)


def test_a_labeled_top_node_dying_during_an_exception_keeps_the_exception(core):
    def fail():
        top = core.Value(1.0, label="top")
        (top * 2).label = "product"
        raise ValueError("the original error")

    before = core.arena_info()["nodes"]
    with pytest.raises(ValueError, match="the original error"):
        fail()
    assert core.arena_info()["nodes"] == before
    fresh = core.Value(5.0)
    assert fresh.label == ""                      # no stale label on a reused index
