"""Replay: one sample's graph replayed over a batch, on both engines.

Per sample, every value is what the scalar graph gives for that sample alone;
the parameters' gradients are the per-use contributions added over the batch
lane by lane (sample b into lane b % 4, then (l0 + l1) + (l2 + l3)).
"""
import gc
import math
import random
import sys
from array import array

import pytest

import autograd.pure
from helpers import (central_difference, check_arena, collecting_at_every_allocation, is_core,
                     left_to_right, same_float)

try:
    import autograd.core as core_module
except ImportError:         # the pure engine alone: the cross-engine tests skip
    core_module = None


def lane_sum(terms):
    lanes = [0.0] * 4
    for b, t in enumerate(terms):
        lanes[b % 4] += t
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])


def table_of(rows):
    return array("d", [x for row in rows for x in row])


# -- a graph with every op: inputs x0..x2, parameters p0..p3 ------------------------------

def every_op_graph(E):
    """(outputs, inputs, params): one sample's graph using every built-in op,
    shared interior nodes, constants, and an autograd.function node."""
    cube = E.function(lambda x, y: x * x * y, lambda x, y: 2 * x * y, lambda x, y: x * x,
                      name="cube")
    xs = [E.Value(0.0, label=f"x{i}") for i in range(3)]
    ps = [E.Value(v, label=f"p{i}") for i, v in enumerate([0.7, -1.3, 0.4, 2.1])]
    shared = ps[0] * ps[1] + 0.5                            # no input below it
    h = E.dot(ps[:3], xs, ps[3])                            # a neuron
    terms = [
        h.relu(), h.tanh(), h.sigmoid(), (h * 0.1).exp(), (xs[0] * xs[0] + 1.0).log(),
        (xs[1] * xs[1] + ps[2] * ps[2] + 0.5).sqrt(), abs(h - xs[2]), -h, h / (xs[0] * xs[0] + 2.0),
        (xs[0] * xs[0] + 1.5) ** ps[2], (h * 0.3) ** 3, ps[1] - xs[1], shared * xs[2],
        cube(h, ps[0]), E.dot([xs[0], xs[1]], [ps[0], h], xs[2]),   # a dot that is not a neuron
        xs[0] / ps[3] + 2.0 * shared,
    ]
    total = E.vsum(terms) + E.logsumexp([h, xs[1], shared])
    return [total, h, shared] + terms, xs, ps


def sample_rows(n, width=3, seed=0):
    rng = random.Random(seed)
    return [[rng.uniform(-1.5, 1.5) for _ in range(width)] for _ in range(n)]


def replay_run(E, B, seed=0):
    outs, xs, ps = every_op_graph(E)
    replay = E.Replay(outs, xs, ps)
    rows = sample_rows(12, seed=seed)
    picks = [random.Random(seed + 1).randrange(12) for _ in range(B)]
    replay.load(table_of(rows), picks)
    replay.forward()
    replay.backward(0, 0.25)
    values = [replay.values(j) for j in range(len(outs))]
    return values, [p.grad for p in ps], replay.sum(0), rows, picks


@pytest.mark.parametrize("B", [1, 3, 4, 13])
def test_every_value_is_the_scalar_graphs_for_that_sample(engine, B):
    values, _, total, rows, picks = replay_run(engine, B)
    outs, xs, ps = every_op_graph(engine)
    for b, r in enumerate(picks):
        for x, v in zip(xs, rows[r]):
            x.data = v
        outs[0].forward()
        for j, out in enumerate(outs):
            out.forward()
            assert same_float(values[j][b], out.data), (j, b)
    assert same_float(total, left_to_right(values[0]))


@pytest.mark.parametrize("B", [1, 2, 5, 8, 13])
def test_parameter_grads_are_the_per_use_contributions_added_lane_by_lane(engine, B):
    """A neuron's weight is used once per sample: its grad is the lane sum of
    what backward() gives each sample alone."""
    random.seed(B)
    xs = [engine.Value(0.0) for _ in range(4)]
    ws = [engine.Value(random.uniform(-1, 1)) for _ in range(4)]
    bias = engine.Value(0.3)
    out = engine.dot(ws, xs, bias).tanh()
    replay = engine.Replay([out], xs, ws + [bias])
    rows = sample_rows(B, width=4, seed=B)
    replay.load(table_of(rows), range(B))
    replay.forward()
    replay.backward(0, 0.5)
    got = [p.grad for p in ws + [bias]]
    per_sample = []
    for row in rows:
        for x, v in zip(xs, row):
            x.data = v
        for p in ws + [bias]:
            p.grad = 0.0
        (out.forward() * 0.5).backward()
        per_sample.append([p.grad for p in ws + [bias]])
    assert got == [lane_sum(column) for column in zip(*per_sample)]


def test_grads_match_finite_differences_of_the_batch_sum(engine):
    outs, xs, ps = every_op_graph(engine)
    replay = engine.Replay(outs, xs, ps)
    rows = sample_rows(7, seed=3)
    table = table_of(rows)
    replay.load(table, range(7))

    def batch_total(params):
        for p, v in zip(ps, params):
            p.data = v
        replay.forward()
        return replay.sum(0)

    start = [p.data for p in ps]
    batch_total(start)
    replay.backward(0, 1.0)
    grads = [p.grad for p in ps]
    for i in range(len(ps)):
        numeric = central_difference(batch_total, start, i)
        assert math.isclose(grads[i], numeric, rel_tol=1e-6, abs_tol=1e-7), i


@pytest.mark.skipif(core_module is None, reason="the compiled core is not built")
@pytest.mark.parametrize("B", [1, 4, 13])
def test_both_engines_agree_bit_for_bit(B):
    core, pure = replay_run(core_module, B), replay_run(autograd.pure, B)
    assert core[0] == pure[0]
    assert core[1] == pure[1]
    assert core[2] == pure[2]


def mlp_replay_run(E, widths, B, seed=0):
    """An MLP's replay (neurons of every width, an input used twice, hidden
    inputs that need grads): all its values and its parameters' grads."""
    rng = random.Random(seed)
    xs = [E.Value(0.0) for _ in range(widths[0])]
    params, layer = [], xs + [xs[0]]                       # x0 feeds every neuron twice
    for width in widths[1:]:
        neurons = []
        for _ in range(width):
            ws = [E.Value(rng.uniform(-1, 1)) for _ in layer]
            bias = E.Value(rng.uniform(-0.5, 0.5))
            params += ws + [bias]
            neurons.append(E.dot(ws, layer, bias).tanh())
        layer = neurons
    replay = E.Replay(layer, xs, params)
    replay.load(table_of(sample_rows(B, width=widths[0], seed=seed)), range(B))
    replay.forward()
    replay.backward(0, 1.0)
    replay.backward(len(layer) - 1, 0.5)
    return [replay.values(j) for j in range(len(layer))], [p.grad for p in params]


@pytest.mark.skipif(core_module is None, reason="the compiled core is not built")
@pytest.mark.parametrize("B", [1, 3, 4, 7, 8, 13, 37])
def test_the_baseline_and_avx2_kernels_agree_bit_for_bit_with_the_pure_engine(B):
    """The neuron kernels are compiled for the baseline ISA and for AVX2 (used
    where the CPU has it): both must give the pure engine's numbers, for every
    tail of the batch (B % 4, B % 8) and of the weights (n % 2, n % 4)."""
    widths = [6, 5, 3, 2]                                    # 7, 6 and 3 inputs per neuron
    expected = mlp_replay_run(autograd.pure, widths, B)
    default = core_module._batch_kernels()
    builds = [b for b in ("baseline", "avx2", "avx512") if core_module._batch_kernels(b) == b]
    try:
        for build in builds:
            assert core_module._batch_kernels(build) == build
            assert mlp_replay_run(core_module, widths, B) == expected, build
    finally:
        core_module._batch_kernels(default)


def test_inputs_and_constants_get_no_gradient_and_grads_accumulate(engine):
    outs, xs, ps = every_op_graph(engine)
    replay = engine.Replay(outs, xs, ps)
    replay.load(table_of(sample_rows(5)), range(5))
    replay.forward()
    replay.backward(0, 1.0)
    once = [p.grad for p in ps]
    replay.backward(0, 1.0)
    assert [p.grad for p in ps] == [g + g for g in once]
    assert [x.grad for x in xs] == [0.0, 0.0, 0.0]


def test_a_shared_output_counts_once_per_sample(engine):
    p = engine.Value(3.0)
    x = engine.Value(0.0)
    replay = engine.Replay([p * p, p * x], [x], [p])
    replay.load(array("d", [1.0, 2.0, 5.0]), [0, 1, 2])
    replay.forward()
    assert replay.values(0) == [9.0, 9.0, 9.0] and replay.values(1) == [3.0, 6.0, 15.0]
    assert replay.sum(0) == 27.0
    replay.backward(0, 1.0)
    assert p.grad == 18.0                   # d/dp (3 * p*p)
    p.grad = 0.0
    replay.backward(1, 1.0)
    assert p.grad == 8.0                    # 1 + 2 + 5


def test_parameters_are_read_at_every_forward_and_constants_when_recorded(engine):
    x, p, c = engine.Value(0.0), engine.Value(2.0), engine.Value(10.0)
    replay = engine.Replay([x * p + c], [x], [p])
    replay.load(array("d", [1.0, 2.0]), [0, 1])
    replay.forward()
    assert replay.values(0) == [12.0, 14.0]
    p.data, c.data = 3.0, 100.0
    replay.forward()
    assert replay.values(0) == [13.0, 16.0]


def test_argmax_takes_the_first_of_ties(engine):
    x = engine.Value(0.0)
    replay = engine.Replay([x, -x, x * 0.0], [x], [])
    replay.load(array("d", [2.0, -1.0, 0.0]), [0, 1, 2])
    replay.forward()
    assert replay.argmax([0, 1, 2]) == [0, 1, 0]
    assert replay.argmax([2, 1]) == [0, 1, 0]           # 0 vs -2, -0 vs 1, 0 vs -0: a tie


def test_load_changes_the_batch_and_its_size(engine):
    x, p = engine.Value(0.0), engine.Value(2.0)
    replay = engine.Replay([x * p], [x], [p])
    table = array("d", [1.0, 2.0, 3.0, 4.0])
    for picks in ([3], [0, 1, 2, 3, 3], [2, 0]):
        replay.load(table, picks)
        assert replay.batch_size == len(picks)
        replay.forward()
        assert replay.values(0) == [2.0 * table[r] for r in picks]


def test_a_batch_of_training_samples_with_a_custom_function_trains(engine):
    from autograd.nn import MLP
    from autograd.train import train
    square = engine.function(lambda x: x * x, lambda x: 2 * x, name="square")
    random.seed(0)
    model = MLP(2, [4, 1], engine=engine)
    xs = sample_rows(10, width=2)
    ys = [x0 * x1 for x0, x1 in xs]
    history = train(model, xs, ys, steps=30, lr=0.05, loss=lambda out, t: square(out - t),
                    progress=False)
    assert history.loss[-1] < history.loss[0]


# -- bad input: clear errors -------------------------------------------------------------

def test_bad_recordings_are_refused(engine):
    V = engine.Value
    x, p = V(0.0), V(1.0)
    y = x * p
    with pytest.raises(TypeError, match=r"Replay\(\) takes Values as outputs, not float \(item 1\)"):
        engine.Replay([y, 1.0], [x], [p])
    with pytest.raises(TypeError, match="as params, not str"):
        engine.Replay([y], [x], ["p"])
    with pytest.raises(ValueError, match="at least one output"):
        engine.Replay([], [x], [p])
    with pytest.raises(ValueError, match=r"inputs\[0\] is not a leaf"):
        engine.Replay([y * 2], [y], [p])
    with pytest.raises(ValueError, match=r"params\[1\] is listed twice"):
        engine.Replay([y], [x], [p, p])
    with pytest.raises(ValueError, match=r"params\[0\] is both an input and a parameter"):
        engine.Replay([y], [x], [x])
    lecture = V(y.data, (y,), "mine")
    with pytest.raises(RuntimeError, match="cannot replay the custom node 'mine'"):
        engine.Replay([lecture], [x], [p])
    with pytest.raises(RuntimeError, match="never recorded"):
        engine.Replay.__new__(engine.Replay).forward()
    replay = engine.Replay([y], [x], [p])
    with pytest.raises(RuntimeError, match="recorded once"):
        replay.__init__([y], [x], [p])


def test_bad_batches_and_calls_out_of_order_are_refused(engine):
    x, p = engine.Value(0.0), engine.Value(1.0)
    replay = engine.Replay([x * p, x + p], [x], [p])
    with pytest.raises(RuntimeError, match="load"):
        replay.forward()
    with pytest.raises(TypeError, match="buffer of doubles .* not list"):
        replay.load([1.0, 2.0], [0])
    with pytest.raises(TypeError, match="buffer of doubles .* not array"):
        replay.load(array("f", [1.0]), [0])
    with pytest.raises(ValueError, match="at least one row"):
        replay.load(array("d", [1.0]), [])
    with pytest.raises(IndexError, match="row 2 is out of the table's 2 rows"):
        replay.load(array("d", [1.0, 2.0]), [0, 2])
    with pytest.raises(TypeError):
        replay.load(array("d", [1.0, 2.0]), [0.5])
    two = engine.Replay([engine.Value(0.0) * p], [engine.Value(0.0), engine.Value(0.0)], [p])
    with pytest.raises(ValueError, match="not a whole number of rows of 2 inputs"):
        two.load(array("d", [1.0, 2.0, 3.0]), [0])
    replay.load(array("d", [1.0, 2.0]), [0, 1])
    for call in (lambda: replay.values(0), lambda: replay.sum(0), lambda: replay.argmax([0]),
                 lambda: replay.backward(0)):
        with pytest.raises(RuntimeError, match="run forward"):
            call()
    replay.forward()
    with pytest.raises(IndexError, match="output 2 of 2"):
        replay.values(2)
    with pytest.raises(TypeError, match="the seed must be a real number"):
        replay.backward(0, "1")
    replay.load(array("d", [1.0, 2.0]), [1])            # a new batch: forward() again first
    with pytest.raises(RuntimeError, match="run forward"):
        replay.values(0)


@pytest.mark.parametrize("placeholder, make, error, message", [
    (10.0, lambda x: (x - 5.0).log(), ValueError, "math domain error"),
    (0.0, lambda x: (x * 1000.0).exp(), OverflowError, "range"),
    (0.0, lambda x: 1.0 / (x - 1.0), ZeroDivisionError, "float division by zero"),
    (10.0, lambda x: (x - 5.0).sqrt(), ValueError, "math domain error"),
])
def test_an_op_that_fails_for_one_sample_raises_as_floats_do(engine, placeholder, make, error, message):
    x, p = engine.Value(placeholder), engine.Value(1.0)
    replay = engine.Replay([make(x) * p], [x], [p])
    replay.load(array("d", [0.5, 1.0, 2.0]), [0, 1, 2])
    with pytest.raises(error, match=message):
        replay.forward()
    with pytest.raises(RuntimeError, match="run forward"):
        replay.values(0)
    replay.load(array("d", [placeholder]), [0, 0])      # still usable
    replay.forward()
    assert replay.values(0) == [make(engine.Value(placeholder)).data] * 2


# -- re-entrancy: Python code inside a replay --------------------------------------------

@pytest.mark.parametrize("action", ["collect", "re-initialize", "grow the arena", "use the replay"])
def test_custom_formulas_may_do_anything_mid_replay(engine, action):
    V = engine.Value
    keep, box = [], {}

    def meddle():
        if action == "collect" and is_core(engine):
            engine.collect()
        elif action == "re-initialize":
            box["other"].__init__(5.0)
        elif action == "grow the arena":
            keep.extend(V(float(k)) * 2 for k in range(2000))
        elif action == "use the replay" and "replay" in box:
            with pytest.raises(RuntimeError, match="while this Replay is running"):
                box["replay"].forward()
            with pytest.raises(RuntimeError, match="while this Replay is running"):
                box["replay"].load(array("d", [1.0]), [0])

    def forward(x, w):
        meddle()
        return x * w

    def dx(x, w):
        meddle()
        return w

    def dw(x, w):
        return x

    scale = engine.function(forward, dx, dw, name="scale")
    x, w, other = V(0.0), V(3.0), V(1.0)
    box["other"] = other * 2.0
    replay = engine.Replay([scale(x, w).tanh() + w * w], [x], [w])
    box["replay"] = replay
    replay.load(array("d", [0.1, 0.2, 0.3]), [0, 1, 2])
    for _ in range(2):
        replay.forward()
        w.grad = 0.0
        replay.backward(0, 1.0)
    assert replay.values(0) == [math.tanh(v * 3.0) + 9.0 for v in (0.1, 0.2, 0.3)]
    # w * w gives 2 * w per sample; scale gives x * (1 - tanh**2) per sample
    expected = 3 * 6.0 + sum(v * (1 - math.tanh(3.0 * v) ** 2) for v in (0.1, 0.2, 0.3))
    assert math.isclose(w.grad, expected, rel_tol=1e-12)
    check_arena(engine)


def test_a_gc_callback_that_compacts_at_every_allocation_changes_nothing(engine):
    def run():
        outs, xs, ps = every_op_graph(engine)
        replay = engine.Replay(outs, xs, ps)
        replay.load(table_of(sample_rows(9)), [3, 1, 4, 1, 5])
        replay.forward()
        replay.backward(0, 1.0)
        return [replay.values(j) for j in range(len(outs))], replay.argmax([1, 2]), [p.grad for p in ps]

    quiet = run()
    junk = []

    def meddle(phase, info):
        if phase == "start":
            junk.append(engine.Value(1.0) * 2.0)        # nodes to drop and compact
            if len(junk) > 3:
                junk.clear()
            if is_core(engine):
                engine.collect()

    with collecting_at_every_allocation(meddle):
        busy = run()
    assert busy == quiet
    check_arena(engine)


class CompactingIndex:
    """A row number whose __index__ runs code: it compacts the arena and loads
    another batch into the same Replay (allowed: the load has not begun)."""

    def __init__(self, value, engine, replay, table):
        self.value, self.engine, self.replay, self.table = value, engine, replay, table

    def __index__(self):
        if is_core(self.engine):
            self.engine.collect()
        self.replay.load(self.table, [0, 0, 0, 0, 0, 0, 0])
        return self.value


def test_row_numbers_that_run_code_cannot_corrupt_the_batch(engine):
    x, p = engine.Value(0.0), engine.Value(2.0)
    replay = engine.Replay([x * p], [x], [p])
    table = array("d", [1.0, 2.0, 3.0])
    replay.load(table, [CompactingIndex(2, engine, replay, table), 1])
    replay.forward()
    assert replay.values(0) == [6.0, 4.0]


def matrix(rows):
    """rows as a 2-D buffer of doubles (a memoryview of an array('d'))."""
    return memoryview(table_of(rows)).cast("B").cast("d", (len(rows), len(rows[0])))


def test_load_reads_tables_side_by_side_as_the_flat_table_of_their_rows(engine):
    outs, xs, ps = every_op_graph(engine)           # inputs x0, x1, x2
    rows = sample_rows(9, seed=4)
    picks = [8, 0, 3, 3, 5]
    flat = engine.Replay(outs, xs, ps)
    flat.load(table_of(rows), picks)
    flat.forward()
    want = [flat.values(j) for j in range(len(outs))]
    for split in (1, 2):        # x0 | x1 x2, and x0 x1 | x2
        parts = (matrix([r[:split] for r in rows]), matrix([r[split:] for r in rows]))
        replay = engine.Replay(outs, xs, ps)
        replay.load(parts, picks)
        replay.forward()
        assert [replay.values(j) for j in range(len(outs))] == want
    np = pytest.importorskip("numpy")
    replay = engine.Replay(outs, xs, ps)
    replay.load((np.array(rows)[:, :2].copy(), np.array(rows)[:, 2:].copy()), picks)
    replay.forward()
    assert [replay.values(j) for j in range(len(outs))] == want


def test_tables_side_by_side_that_do_not_fit_are_refused(engine):
    x, y, p = engine.Value(0.0), engine.Value(0.0), engine.Value(1.0)
    replay = engine.Replay([x * p + y], [x, y], [p])
    one, two = matrix([[1.0], [2.0]]), matrix([[1.0], [2.0], [3.0]])
    with pytest.raises(ValueError, match="the tables have 2 and 3 rows, not the same number"):
        replay.load((one, two), [0])
    with pytest.raises(ValueError, match="the tables have 1 columns side by side, for 2 inputs"):
        replay.load((one,), [0])
    with pytest.raises(ValueError, match="the tables have 3 columns side by side, for 2 inputs"):
        replay.load((one, matrix([[1.0, 2.0], [3.0, 4.0]])), [0])
    with pytest.raises(TypeError, match="2-D C-contiguous buffers of doubles .* not one holding array"):
        replay.load((one, array("d", [1.0, 2.0])), [0])
    with pytest.raises(TypeError, match="not one holding list"):
        replay.load((one, [[1.0], [2.0]]), [0])
    with pytest.raises(IndexError, match="row 2 is out of the table's 2 rows"):
        replay.load((one, one), [0, 2])
    np = pytest.importorskip("numpy")
    strided = np.arange(8.0).reshape(2, 4)[:, ::2]          # not C-contiguous
    with pytest.raises(TypeError, match="not one holding ndarray"):
        replay.load((strided[:, :1], strided[:, 1:]), [0])
    replay.load((np.ones((2, 1)), np.full((2, 1), 2.0)), [1])
    replay.forward()
    assert replay.values(0) == [3.0]


def test_both_engines_take_and_refuse_the_same_tables(engine):
    """None is no table (a typed view would make it an empty one); a record
    of one double is not a double; a little-endian ctypes matrix ('<d') is
    read as doubles; a row past 2**63 is out of the table; a load that fails
    leaves the batch loaded before."""
    import ctypes
    xs, w = [engine.Value(0.0) for _ in range(3)], engine.Value(2.0)
    replay = engine.Replay([engine.vsum([x * w for x in xs])], xs, [w])
    replay.load(table_of([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), [1, 0])
    replay.forward()
    want = replay.values(0)
    refused = [None, (None,), (None, matrix([[1.0, 2.0, 3.0]]))]
    np = None
    try:
        import numpy as np
        refused.append((np.zeros((2, 3), dtype=[("a", "<f8")]),))
    except ImportError:
        pass
    for table in refused:
        with pytest.raises(TypeError, match="buffer"):
            replay.load(table, [0])
    with pytest.raises(IndexError, match="row 9223372036854775808 is out of the table's 2 rows"):
        replay.load(table_of([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), [2 ** 63])
    replay.forward()
    assert replay.values(0) == want                  # the batch loaded before
    rows = ((ctypes.c_double * 3) * 2)((ctypes.c_double * 3)(4.0, 5.0, 6.0),
                                       (ctypes.c_double * 3)(1.0, 2.0, 3.0))
    assert memoryview(rows).format == "<d"
    replay.load((rows,), [0, 1])
    replay.forward()
    assert replay.values(0) == want
    none = engine.Replay([w * 3.0], [], [w])         # no inputs: no row is read
    none.load(array("d"), [2 ** 63])
    none.forward()
    assert none.values(0) == [6.0]


def test_row_numbers_that_run_code_cannot_free_or_resize_the_tables(engine):
    """The tables are held while the rows are read: a row number's __index__
    cannot resize the array under them (BufferError: the release of the view
    given to load() leaves it exported), and what it writes into them is
    what is loaded."""
    x, y, p = engine.Value(0.0), engine.Value(0.0), engine.Value(2.0)
    replay = engine.Replay([x * p + y], [x, y], [p])
    data, target = array("d", [1.0, 2.0, 3.0]), array("d", [10.0, 20.0, 30.0])
    parts = (memoryview(data).cast("B").cast("d", (3, 1)), memoryview(target).cast("B").cast("d", (3, 1)))
    seen = []

    class Meddling:
        def __index__(self):
            if is_core(engine):
                engine.collect()
            for meddle in (parts[0].release, lambda: data.append(4.0)):
                try:                # the view given to load() is released, then resized
                    meddle()
                except BufferError as exc:
                    seen.append(exc)
            target[2] = 300.0
            return 2

    replay.load(parts, [Meddling(), 0])
    replay.forward()
    assert "resize" in str(seen[-1]) and list(data) == [1.0, 2.0, 3.0]     # still exported
    assert replay.values(0) == [3.0 * 2.0 + 300.0, 1.0 * 2.0 + 10.0]


def test_the_replay_creates_no_nodes_and_keeps_only_one_sample(engine):
    from autograd.nn import MLP
    random.seed(0)
    model = MLP(8, [16, 4], engine=engine)
    xs = [engine.Value(0.0) for _ in range(8)]
    out = model(xs)
    replay = engine.Replay(out, xs, model.parameters())
    if is_core(engine):
        engine.collect()
        before = engine.arena_info()["nodes"]
    replay.load(table_of(sample_rows(64, width=8)), range(64))
    for _ in range(3):
        replay.forward()
        replay.backward(0, 1.0)
    if is_core(engine):
        assert engine.arena_info()["nodes"] == before


def test_a_deep_chain_replays_without_recursion(engine):
    depth = 10 ** 6 if is_core(engine) else 10 ** 5
    x, p = engine.Value(0.0), engine.Value(1.0)
    y = x * p
    for _ in range(depth):
        y = y + 1.0
    replay = engine.Replay([y], [x], [p])
    replay.load(array("d", [0.5, -2.0]), [0, 1])
    replay.forward()
    assert replay.values(0) == [0.5 + depth, -2.0 + depth]
    replay.backward(0, 1.0)
    assert p.grad == -1.5
    assert sys.getrecursionlimit() < depth
    del y, replay
    gc.collect()


def test_hits_counts_the_samples_whose_argmax_is_their_label(engine):
    x = engine.Value(0.0)
    replay = engine.Replay([x, -x, engine.Value(0.0)], [x], [])
    replay.load(array("d", [2.0, -1.0, 0.0, 3.0]), [0, 1, 2, 3])
    replay.forward()
    assert replay.argmax([2, 0]) == [1, 0, 0, 1]
    assert replay.hits([2, 0], [1, 0, 1, 1]) == 3
    assert replay.hits([0, 1], [0, 1, 0, 0]) == 4
    with pytest.raises(ValueError, match="3 labels for a batch of 4"):
        replay.hits([0, 1], [0, 1, 0])
    with pytest.raises(TypeError):
        replay.hits([0, 1], [0, 1, 0.5, 0])


def test_labels_that_run_code_are_read_before_the_batch(engine):
    """A label's __index__ compacts and loads a batch of 7 into the replay:
    hits() then sees a replay that needs forward() again."""
    x = engine.Value(0.0)
    replay = engine.Replay([x, -x], [x], [])
    table = array("d", [2.0, -1.0, 0.0, 3.0])
    replay.load(table, range(4))
    replay.forward()
    labels = [0, 1, 0, CompactingIndex(0, engine, replay, table)]
    with pytest.raises(RuntimeError, match=r"hits\(\): run forward"):
        replay.hits([0, 1], labels)
    replay.forward()
    assert replay.values(0) == [2.0] * 7
    assert replay.hits([0, 1], [0] * 7) == 7


def test_parameters_in_any_order_give_the_same_replay(engine):
    # the core reads consecutive parameters' nodes from its handle table: a shuffled
    # parameter list must record the same graph and give each parameter its own grad
    outs, xs, ps = every_op_graph(engine)
    rows = sample_rows(12)
    results = []
    for params in (ps, random.Random(3).sample(ps, len(ps)), ps[::-1]):
        for p in ps:
            p.grad = 0.0
        replay = engine.Replay(outs, xs, params)
        replay.load(table_of(rows), range(12))
        replay.forward()
        replay.backward(0, 0.25)
        results.append(([replay.values(j) for j in range(len(outs))], [p.grad for p in ps]))
    assert results[1] == results[0] and results[2] == results[0]
