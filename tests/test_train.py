"""train(): losses, optimizers, batches, and bad input caught before training."""
import math
import numbers
import random
from array import array

import pytest

from autograd.data import lecture_example, make_moons
from autograd.nn import MLP
from autograd.train import SGD, mse_loss, train
from helpers import left_to_right


def _model(engine, seed=0, sizes=(4, 1), nin=3):
    random.seed(seed)
    return MLP(nin, list(sizes), activation="tanh", engine=engine)


def lane_sum(terms):
    """A sum over the batch in train()'s documented order: sample b's term
    goes to lane b % 4, then (l0 + l1) + (l2 + l3)."""
    lanes = [0.0] * 4
    for b, t in enumerate(terms):
        lanes[b % 4] += t
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])


@pytest.mark.parametrize("batch", [1, 3, 4, 9])
def test_one_step_of_sgd_matches_a_hand_written_step(engine, batch):
    """Each sample's gradient as backward() gives it for that sample alone,
    added over the batch lane by lane: train() agrees bit for bit."""
    random.seed(5)
    xs = [[random.uniform(-1, 1) for _ in range(3)] for _ in range(batch)]
    ys = [random.uniform(-1, 1) for _ in range(batch)]
    model = _model(engine)
    before = [p.data for p in model.parameters()]
    ref = _model(engine)
    per_sample = []
    losses = []
    for x, y in zip(xs, ys):
        ref.zero_grad()
        loss = mse_loss(ref(x), engine.Value(y))
        (loss * (1 / batch)).backward()             # the seed train() gives each sample
        per_sample.append([p.grad for p in ref.parameters()])
        losses.append(loss.data)
    grads = [lane_sum(column) for column in zip(*per_sample)]
    expected = [p.data - 0.1 * g for p, g in zip(ref.parameters(), grads)]
    history = train(model, xs, ys, steps=1, lr=0.1, progress=False)
    assert history.loss == [left_to_right(losses) * (1 / batch)]
    assert [p.data for p in model.parameters()] == expected
    assert before != expected
    assert max(abs(a - b) for a, b in zip(before, expected)) > 1e-3


@pytest.mark.parametrize("loss", ["mse", "hinge", "bce", lambda out, t: (out - t).abs()])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", SGD(momentum=0.9)])
def test_losses_and_optimizers_reduce_the_loss(engine, loss, optimizer):
    if isinstance(optimizer, SGD):
        optimizer = SGD(momentum=0.9)       # fresh state per test
    xs, ys = lecture_example()
    history = train(_model(engine), xs, ys, steps=60, lr=0.02 if optimizer == "adam" else 0.05,
                    loss=loss, optimizer=optimizer, progress=False)
    assert len(history.loss) == 60
    assert history.loss[-1] < history.loss[0]
    if isinstance(loss, str):
        assert all(a is not None and 0 <= a <= 1 for a in history.accuracy)


def test_bce_is_stable_for_huge_logits(engine):
    from autograd.train import bce_with_logits_loss
    for z, t, expected in [(800.0, 1.0, 0.0), (-800.0, 0.0, 0.0), (800.0, 0.0, 800.0),
                           (0.0, 1.0, math.log(2))]:
        out = bce_with_logits_loss(engine.Value(z), engine.Value(t))
        assert out.data == pytest.approx(expected)


def test_minibatches_are_seeded_and_replayed(engine):
    xs, ys = make_moons(40, seed=1)
    runs = [train(_model(engine, nin=2), xs, ys, steps=15, lr=0.1, loss="hinge", batch_size=8,
                  seed=3, progress=False).loss for _ in range(2)]
    assert runs[0] == runs[1]
    other = train(_model(engine, nin=2), xs, ys, steps=15, lr=0.1, loss="hinge", batch_size=8,
                  seed=4, progress=False).loss
    assert other != runs[0]


@pytest.mark.parametrize("n, size", [(10, 3), (12, 4), (5, 5), (7, 1)])
def test_minibatches_are_passes_over_the_data_in_new_orders(n, size):
    """Each pass over the data is cut into batches of `size` different samples;
    the last n % size samples of a pass are left out; the next pass is
    shuffled anew, with the seed alone deciding the order."""
    from autograd.train import _batches
    draw = _batches(n, size, random.Random(5))
    per_pass = n // size
    passes = [[next(draw) for _ in range(per_pass)] for _ in range(6)]
    for batches in passes:
        assert all(len(batch) == size for batch in batches)
        used = [i for batch in batches for i in batch]
        assert len(set(used)) == len(used) == per_pass * size
        assert set(used) <= set(range(n))
    if n > 1:
        assert len({tuple(map(tuple, batches)) for batches in passes}) > 1
    again = _batches(n, size, random.Random(5))
    assert [next(again) for _ in range(6 * per_pass)] == [b for batches in passes for b in batches]


def test_lr_schedule_and_callback(engine):
    xs, ys = lecture_example()
    seen_rates, calls = [], []

    def rate(step):
        seen_rates.append(step)
        return 0.1 / (1 + step)

    train(_model(engine), xs, ys, steps=5, lr=rate, progress=False,
          callback=lambda step, loss, acc: calls.append((step, loss, acc)))
    assert seen_rates == [0, 1, 2, 3, 4]
    assert [c[0] for c in calls] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(xs=[[1, 2, 3]], ys=[1, 2]), ValueError, "1 samples but ys has 2"),
    (dict(xs=[[1, 2, 3], [1, 2]], ys=[1, 2]), ValueError, "ragged xs: row 1"),
    (dict(xs=[[1, 2], [3, 4]], ys=[1, 2]), ValueError, "takes 3 inputs but the rows of xs have 2"),
    (dict(xs=[[1, "a", 3]], ys=[1]), TypeError, r"xs\[0\]\[1\] must be a number, not str"),
    (dict(xs=[[1, 2, 3]], ys=[None]), TypeError, r"ys\[0\] must be a number"),
    (dict(lr=0.0), ValueError, "learning rate must be a positive"),
    (dict(lr=float("nan")), ValueError, "learning rate must be a positive"),
    (dict(lr=-1), ValueError, "learning rate"),
    (dict(loss="huber"), ValueError, "unknown loss 'huber'"),
    (dict(optimizer="rmsprop"), ValueError, "unknown optimizer 'rmsprop'"),
    (dict(steps=0), ValueError, "steps must be a positive int"),
    (dict(batch_size=9), ValueError, "batch_size must be None or an int from 1 to 4"),
    (dict(reg=-1.0), ValueError, "reg must be"),
    (dict(loss="hinge", ys=[1, 2, -1, 1]), ValueError, "needs targets of -1/\\+1"),
])
def test_bad_input_is_refused_before_training(engine, kwargs, error, message):
    xs, ys = lecture_example()
    model = _model(engine)
    before = [p.data for p in model.parameters()]
    args = dict(xs=xs, ys=ys, steps=3, lr=0.1, progress=False)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        train(model, args.pop("xs"), args.pop("ys"), **args)
    assert [p.data for p in model.parameters()] == before


class Half:
    """A number that is not a float: numbers.Real by registration."""

    def __float__(self):
        return 0.5


numbers.Real.register(Half)


@pytest.mark.parametrize("xs, fast", [
    ([[1.5, -2.0], [3, 4.25]], True),                 # floats and ints: the C loop
    ([(1.5, 2.0), [0.0, -0.0]], True),                # tuples too
    ([[1.5, True]], False),                           # anything else row by row
    ([[1.5, Half()]], False),
    ([[1.5, 2.0], (x for x in (3.0, 4.0))], False),
    ([[10 ** 400, 1.0]], False),
    ([[1.0, 2.0], [3.0]], False),
    ([2.5, 3.5], False),                              # one number per sample
])
def test_rows_are_the_same_floats_on_the_quick_path_and_the_checked_one(xs, fast):
    from autograd import train as train_module
    if train_module._float_rows is None:
        pytest.skip("the compiled core is not built")
    quick = train_module._float_rows(xs)
    assert (quick is not None) == fast
    try:
        checked = train_module._checked_rows(xs)
    except (TypeError, ValueError, OverflowError):
        assert not fast
        return
    if fast:
        assert quick == checked
        assert all(type(row) is array for row in quick)
        assert quick[0] is not xs[0]


def _matrix_of_doubles(rows):
    """rows as a 2-D buffer of doubles without numpy: a memoryview cast to
    (n, width) over an array('d')."""
    flat = array("d", [x for row in rows for x in row])
    return memoryview(flat).cast("B").cast("d", [len(rows), len(rows[0])])


@pytest.mark.parametrize("kind", ["buffer", "numpy", "numpy-fortran", "numpy-float32"])
def test_a_matrix_of_numbers_trains_as_its_rows_do(engine, kind):
    """A 2-D buffer of doubles is read as it is (no number by number work);
    other arrays go the general way: all give the same bits as lists."""
    xs, ys = make_moons(40, noise=0.1, seed=3)
    if kind == "buffer":
        matrix = _matrix_of_doubles(xs)
    else:
        np = pytest.importorskip("numpy")
        matrix = {"numpy": np.array(xs), "numpy-fortran": np.asfortranarray(xs),
                  "numpy-float32": np.array(xs, dtype=np.float32)}[kind]
        if kind == "numpy-float32":         # the rows the model sees are the float32 values
            xs = matrix.astype(np.float64).tolist()
        ys = np.array(ys)
    from autograd.train import _double_matrix, evaluate, predict
    assert (_double_matrix(matrix) is not None) == (kind in ("buffer", "numpy"))
    results = []
    for data in (xs, matrix):
        model = _model(engine, seed=4, sizes=(6, 1), nin=2)
        history = train(model, data, ys, steps=4, lr=0.1, loss="hinge", batch_size=16, seed=2,
                        validation=(data, ys), eval_every=2, progress=False, threads=1)
        results.append((history.loss, history.accuracy, history.val_loss,
                        [p.data for p in model.parameters()], evaluate(model, data, ys, "hinge"),
                        predict(model, data)))
    assert results[0] == results[1]
    assert len(results[0][-1]) == 40


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", ">i4"])
def test_labels_in_a_buffer_of_integers_train_as_a_list_does(engine, dtype):
    """A 1-D buffer of integers (numpy labels) is read in one call; other
    byte orders go item by item; both give the list's bits.  Booleans and
    floats are still refused as class ids."""
    np = pytest.importorskip("numpy")
    xs = _matrix_of_doubles([[math.sin(i), math.cos(3 * i)] for i in range(30)])
    ys = [i % 3 for i in range(30)]
    results = []
    for labels in (ys, np.array(ys, dtype=dtype)):
        model = _model(engine, seed=8, sizes=(5, 3), nin=2)
        history = train(model, xs, labels, steps=3, lr=0.2, loss="cross_entropy", batch_size=8,
                        seed=1, progress=False, threads=1)
        results.append((history.loss, history.accuracy, [p.data for p in model.parameters()]))
    assert results[0] == results[1]
    model = _model(engine, seed=8, sizes=(5, 3), nin=2)
    with pytest.raises(TypeError, match=r"ys\[0\] must be an integer class id from 0 to 2, not float 0.0"):
        train(model, xs, np.zeros(30), steps=1, lr=0.1, loss="cross_entropy", progress=False)
    with pytest.raises(TypeError, match=r"ys\[0\] must be an integer class id .* not bool"):
        train(model, xs, np.zeros(30, dtype=bool), steps=1, lr=0.1, loss="cross_entropy",
              progress=False)
    with pytest.raises(ValueError, match=r"ys\[1\] = 7 is not a class id"):
        train(model, xs, np.array([0, 7] + [0] * 28, dtype=dtype), steps=1, lr=0.1,
              loss="cross_entropy", progress=False)


def test_memoryviews_of_other_formats_are_read_row_by_row(engine):
    """A 2-D memoryview that is not C-contiguous doubles (floats, a strided
    view, no rows) goes the general way, as a list of rows."""
    xs, ys = make_moons(12, noise=0.1, seed=5)
    floats = memoryview(array("f", [x for row in xs for x in row])).cast("B").cast("f", [12, 2])
    as_floats = floats.tolist()
    wide = _matrix_of_doubles([row + [9.0] for row in xs])
    from autograd.train import evaluate, predict
    results = []
    for data in (as_floats, floats):
        model = _model(engine, seed=6, sizes=(4, 1), nin=2)
        history = train(model, data, ys, steps=2, lr=0.1, loss="hinge", progress=False)
        results.append((history.loss, predict(model, data), evaluate(model, data, ys, "hinge")))
    assert results[0] == results[1]
    model = _model(engine, seed=6, sizes=(4, 1), nin=3)
    assert predict(model, wide[::2]) == predict(model, wide.tolist()[::2])
    np = pytest.importorskip("numpy")       # (a memoryview cast cannot make a (0, 2) shape)
    empty = memoryview(np.empty((0, 3)))
    assert predict(model, empty) == []
    with pytest.raises(ValueError, match="xs and ys are empty"):
        evaluate(model, empty, [], "hinge")


def test_a_matrix_of_the_wrong_width_is_refused(engine):
    model = _model(engine, nin=3)
    with pytest.raises(ValueError, match="the model takes 3 inputs but the rows of xs have 2"):
        train(model, _matrix_of_doubles([[1.0, 2.0], [3.0, 4.0]]), [1.0, -1.0], steps=1, lr=0.1,
              progress=False)


def test_a_nan_loss_stops_with_the_step_and_keeps_earlier_parameters(engine):
    xs, ys = lecture_example()
    model = _model(engine)
    snapshots = []
    with pytest.raises(FloatingPointError, match="at step 3"):
        train(model, xs, ys, steps=10, lr=lambda k: 1e200 if k == 2 else 0.1, loss="mse",
              progress=False, callback=lambda *a: snapshots.append([p.data for p in model.parameters()]))
    assert [p.data for p in model.parameters()] == snapshots[-1]


def test_bad_learning_rate_from_a_schedule_names_the_step(engine):
    xs, ys = lecture_example()
    with pytest.raises(ValueError, match="at step 2"):
        train(_model(engine), xs, ys, steps=5, lr=lambda k: 0.1 if k < 2 else -1.0, progress=False)


def test_progress_bar_prints_loss(engine, capsys):
    pytest.importorskip("tqdm", reason="the progress bar is the optional 'progress' extra")
    xs, ys = lecture_example()
    train(_model(engine), xs, ys, steps=3, lr=0.1, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err
    train(_model(engine), xs, ys, steps=3, lr=0.1, progress=False)
    assert capsys.readouterr().err == ""


def test_train_evaluate_and_predict_record_their_graph_inside_no_grad(engine):
    """The graph the replay records is train()'s own: inside the caller's
    no_grad() the results are those from outside it (the L2 term included),
    and the caller's mode is as it was afterwards."""
    from autograd.train import evaluate, predict
    xs, ys = make_moons(24, noise=0.1, seed=11)
    results = []
    for inside in (False, True):
        model = _model(engine, seed=5, sizes=(5, 1), nin=2)
        with engine.no_grad() if inside else _nothing():
            got = (predict(model, xs), evaluate(model, xs, ys, "hinge"),
                   train(model, xs, ys, steps=3, lr=0.1, loss="hinge", reg=1e-3, progress=False).loss,
                   [p.data for p in model.parameters()])
            assert engine.is_grad_enabled() is not inside
        results.append(got)
    assert results[0] == results[1]
    assert len(set(results[0][0])) == len(xs)          # one prediction per sample, not sample 0's


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_masked_arrays_are_read_item_by_item(engine):
    """A subclass of numpy's ndarray is not read through its buffer (a masked
    array's buffer holds the masked numbers too): its masked entries are
    refused as they are in a list."""
    np = pytest.importorskip("numpy")
    xs = [[0.5, -1.0], [1.0, 2.0], [-0.3, 0.7], [2.0, 0.1]]
    model = _model(engine, seed=1, sizes=(3, 1), nin=2)
    masked_ys = np.ma.array([1.0, 1e6, 3.0, 4.0], mask=[0, 1, 0, 0])
    with pytest.raises(TypeError, match=r"ys\[1\] must be a number, not MaskedConstant"):
        train(model, xs, masked_ys, steps=1, lr=0.1, progress=False)
    masked_xs = np.ma.array(xs, mask=[[0, 0], [0, 1], [0, 0], [0, 0]])
    with pytest.raises(TypeError, match=r"xs\[1\]\[1\] must be a number, not MaskedConstant"):
        train(model, masked_xs, [1.0, 2.0, 3.0, 4.0], steps=1, lr=0.1, progress=False)
    unmasked = np.ma.array(xs)                  # nothing masked: the same as the list
    random.seed(2)
    a = train(_model(engine, seed=1, sizes=(3, 1), nin=2), unmasked, np.ma.array([1.0, 2.0, 3.0, 4.0]),
              steps=2, lr=0.1, progress=False).loss
    b = train(_model(engine, seed=1, sizes=(3, 1), nin=2), xs, [1.0, 2.0, 3.0, 4.0],
              steps=2, lr=0.1, progress=False).loss
    assert a == b


def test_odd_label_containers_get_clear_errors_or_work(engine):
    np = pytest.importorskip("numpy")
    xs = [[0.5, -1.0], [1.0, 2.0], [-0.3, 0.7]]
    model = _model(engine, seed=1, sizes=(3, 2), nin=2)
    with pytest.raises(TypeError, match=r"ys\[0\] must be an integer class id .* not timedelta64"):
        train(model, xs, np.array([1, 0, 1], dtype="m8[s]"), steps=1, lr=0.1,
              loss="cross_entropy", progress=False)
    vectors = memoryview(array("d", [1.0, 0.0, 0.0, 1.0, 0.5, 0.5])).cast("B").cast("d", (3, 2))
    a = train(model, xs, vectors, steps=1, lr=0.1, loss="mse", progress=False).loss
    b = train(_model(engine, seed=1, sizes=(3, 2), nin=2), xs, vectors.tolist(), steps=1, lr=0.1,
              loss="mse", progress=False).loss
    assert a == b


def test_a_loss_is_known_by_identity_not_by_equality(engine):
    """A callable that compares equal to anything (a mock) is a user's loss:
    the check that the graph does not depend on the data runs for it."""
    from autograd.train import evaluate

    def branchy(out, t):
        return (out - t) * (out - t) if t.data > 0 else (out - t).abs()

    class Loss:
        def __eq__(self, other):
            return True
        __hash__ = object.__hash__

        def __call__(self, out, t):
            return branchy(out, t)

    xs, ys = [[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]], [1.0, 1.0, -1.0]
    model = _model(engine, seed=3, sizes=(3, 1), nin=2)
    with engine.no_grad():
        want = sum(branchy(model([engine.Value(a) for a in r]), engine.Value(t)).data
                   for r, t in zip(xs, ys)) / 3
    assert evaluate(model, xs, ys, Loss()).loss == want == evaluate(model, xs, ys, branchy).loss
