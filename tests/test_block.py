"""Block: bulk operations over a fixed sequence of Values (training steps)."""
import gc
import math
import numbers
from array import array

import pytest

from autograd.train import SGD, Adam
from helpers import check_arena, compacting_at_the_first_collection, is_core, same_float



def _values(engine, n=7):
    vs = [engine.Value(0.25 * k - 0.6) for k in range(n)]
    for k, v in enumerate(vs):
        v.grad = 0.1 * k - 0.33
    return vs


def test_readout_set_and_zero(engine):
    vs = _values(engine)
    block = engine.Block(vs)
    assert len(block) == 7 and list(block) == vs
    assert block.data == [v.data for v in vs] and block.grad == [v.grad for v in vs]
    block.set_data([1, 2.5, True, 0.0, -1.0, 3, 4])
    assert [v.data for v in vs] == [1.0, 2.5, 1.0, 0.0, -1.0, 3.0, 4.0]
    block.zero_grad()
    assert all(v.grad == 0.0 for v in vs)


def test_steps_match_the_python_loops_bitwise(engine):
    lr, momentum, b1, b2, eps = 0.037, 0.9, 0.9, 0.999, 1e-8
    vs, ref = _values(engine), _values(engine)
    block = engine.Block(vs)
    velocity, vel_ref = array("d", [0.0] * 7), [0.0] * 7
    m, v, m_ref, v_ref = array("d", [0.0] * 7), array("d", [0.0] * 7), [0.0] * 7, [0.0] * 7
    for t in range(1, 4):
        block.sgd_step(lr)
        block.momentum_step(lr, momentum, velocity)
        c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        block.adam_step(lr, b1, b2, eps, c1, c2, m, v)
        for i, p in enumerate(ref):
            p.data -= lr * p.grad
            vel_ref[i] = momentum * vel_ref[i] + p.grad
            p.data -= lr * vel_ref[i]
            g = p.grad
            m_ref[i] = b1 * m_ref[i] + (1.0 - b1) * g
            v_ref[i] = b2 * v_ref[i] + (1.0 - b2) * g * g
            p.data -= lr * (m_ref[i] / c1) / (math.sqrt(v_ref[i] / c2) + eps)
    assert all(same_float(a.data, b.data) for a, b in zip(vs, ref))
    assert list(velocity) == vel_ref and list(m) == m_ref and list(v) == v_ref


@pytest.mark.parametrize("make", [lambda: SGD(), lambda: SGD(momentum=0.8), lambda: Adam()])
def test_optimizers_on_lists_and_on_blocks_agree(engine, make):
    a, b = _values(engine), _values(engine)
    opt_a, opt_b = make(), make()
    block = engine.Block(b)
    for _ in range(3):
        opt_a.step(a, 0.05)
        opt_b.step_block(block, 0.05)
    assert [p.data for p in a] == [p.data for p in b]


def test_bad_input_gets_clear_errors(engine):
    vs = _values(engine, 3)
    with pytest.raises(TypeError, match=r"Block\(\) takes Values of this engine, not builtins.float \(item 1\)"):
        engine.Block([vs[0], 2.0])
    with pytest.raises(RuntimeError, match="never initialized"):
        engine.Block([engine.Value.__new__(engine.Value)])
    block = engine.Block(vs)
    before = block.data
    with pytest.raises(ValueError, match=r"set_data\(\) got 2 numbers for 3 Values"):
        block.set_data([1.0, 2.0])
    with pytest.raises(TypeError, match=r"set_data\(\) takes real numbers, not str \(item 2\)"):
        block.set_data([1.0, 2.0, "x"])
    assert block.data == before                         # a failed set_data set nothing
    with pytest.raises(ValueError, match="m has 2 entries for 3 Values"):
        block.adam_step(0.1, 0.9, 0.999, 1e-8, 0.1, 0.001, array("d", [0.0] * 2), array("d", [0.0] * 3))
    with pytest.raises(ValueError, match="velocity has 4 entries for 3 Values"):
        block.momentum_step(0.1, 0.9, array("d", [0.0] * 4))
    assert len(engine.Block([])) == 0 and engine.Block([]).data == []


def test_a_block_keeps_its_values_through_compaction(engine):
    vs = [engine.Value(float(k)) * 1.0 for k in range(50)]
    block = engine.Block(vs)
    del vs
    junk = [engine.Value(1.0) * 2 for _ in range(3000)]
    del junk
    if is_core(engine):
        engine.collect()
    block.set_data([2.0 * k for k in range(50)])
    assert block.data == [2.0 * k for k in range(50)]


def test_set_data_with_numbers_that_compact_and_re_initialize(engine):
    garbage = [engine.Value(float(k)) * 2.0 for k in range(300)]
    vs = [engine.Value(1.0) * float(k) for k in range(5)]
    block = engine.Block(vs)

    class Sneaky:
        def __float__(self):
            garbage.clear()
            gc.collect()
            if is_core(engine):
                engine.collect()              # moves the block's nodes
            vs[3].__init__(-9.0)              # re-initialized in place: still in the block
            return 0.5

    numbers.Real.register(Sneaky)
    block.set_data([1.0, Sneaky(), 2.0, 3.0, 4.0])
    assert block.data == [1.0, 0.5, 2.0, 3.0, 4.0] and vs[3]._op == ""
    check_arena(engine)


def test_readout_while_a_gc_callback_compacts(core):
    garbage = [core.Value(float(k)) * 2.0 for k in range(300)]
    vs = [core.Value(float(k)) * 1.0 for k in range(5)]
    block = core.Block(vs)
    with compacting_at_the_first_collection(core, garbage) as fired:
        reads = [block.data for _ in range(20)]
    assert fired and all(r == [0.0, 1.0, 2.0, 3.0, 4.0] for r in reads)
    core.check_arena()


@pytest.mark.parametrize("order", ["made", "reversed", "shuffled", "repeated", "gaps"])
def test_values_in_any_order_are_found_whatever_the_arena_holds_between_them(engine, order):
    # the core finds a Value's node from the one before it where they were made one after
    # another (a model's parameters): every other order must find the same nodes
    import random
    made = [engine.Value(float(k)) for k in range(300)]
    between = [engine.Value(-1.0) for _ in range(5)]      # nodes after the first run
    later = [engine.Value(1000.0 + k) for k in range(50)]
    vs = {"made": made + later,
          "reversed": (made + later)[::-1],
          "shuffled": random.Random(1).sample(made + later, 350),
          "repeated": [made[0], made[0], made[1], made[1], made[2]],
          "gaps": made[::2] + later[1::3] + made[1::2]}[order]
    block = engine.Block(vs)
    assert block.data == [v.data for v in vs]
    for k, v in enumerate(vs):
        v.grad = 0.0
    block.zero_grad()
    for k, v in enumerate(vs):
        v.grad += k + 1.0
    before = [v.data for v in vs]
    if order == "repeated":
        block.sgd_step(0.5)         # each entry steps its Value: made[0] twice
        assert made[0].data == before[0] - 0.5 * (1.0 + 2.0) - 0.5 * (1.0 + 2.0)
    else:
        block.sgd_step(0.5)
        assert [v.data for v in vs] == [b - 0.5 * (k + 1.0) for k, b in enumerate(before)]
    assert all(v.data == -1.0 for v in between)
