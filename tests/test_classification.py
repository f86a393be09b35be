"""Multi-class training: logsumexp, softmax, cross-entropy, k outputs in train(),
held-out evaluation, predict(), the digits data and the digits run."""
import math
import random
import sys

import pytest

from autograd.data import train_test_split
from autograd.nn import MLP, log_softmax, softmax
from autograd.train import cross_entropy_loss, evaluate, predict, train
from helpers import (central_difference, check_arena, close,
                     compacting_at_the_first_collection, is_core, same_float)



def _lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


# -- logsumexp ---------------------------------------------------------------------------

@pytest.mark.parametrize("xs", [[0.3, -1.2, 2.5], [1000.0, -1000.0, 999.0], [-745.0, -744.0],
                                [5.0], [700.0, 700.0, -1e308]])
def test_logsumexp_value_and_gradient(engine, xs):
    vs = [engine.Value(x) for x in xs]
    out = engine.logsumexp(vs)
    out.backward()
    assert close(out.data, _lse(xs), rel=1e-15) and out._op == "logsumexp"
    assert math.isfinite(out.data)
    for v, x in zip(vs, xs):
        assert close(v.grad, math.exp(x - _lse(xs)), rel=1e-12)
    if all(abs(x) < 100 for x in xs):
        for k in range(len(xs)):
            assert close(vs[k].grad, central_difference(_lse, xs, k), rel=1e-7)
    assert sum(v.grad for v in vs) == pytest.approx(1.0, rel=1e-14)


def test_logsumexp_replays_exactly_and_never_overflows(engine):
    vs = [engine.Value(x) for x in (0.0, 1.0, 2.0)]
    out = engine.logsumexp(vs) * 2.0
    for xs in ([1000.0, -1000.0, 0.0], [-1000.0, -1001.0, -1002.0], [3.0, 1.0, 2.0]):
        for v, x in zip(vs, xs):
            v.data = x
        out.forward()
        fresh = engine.logsumexp([engine.Value(x) for x in xs]) * 2.0
        assert out.data == fresh.data and math.isfinite(out.data)


def test_logsumexp_edges(engine):
    inf, nan = math.inf, math.nan
    assert engine.logsumexp([-inf, -inf]).data == -inf
    assert engine.logsumexp([inf, 1.0]).data == inf
    assert math.isnan(engine.logsumexp([1.0, nan]).data)
    assert engine.logsumexp([1e308, 1e308]).data == 1e308          # no overflow on the way
    assert engine.logsumexp([2.0, engine.Value(0.0)]).data == _lse([2.0, 0.0])   # numbers too
    with pytest.raises(ValueError, match="logsumexp\\(\\) of an empty sequence"):
        engine.logsumexp([])
    with pytest.raises(TypeError, match="logsumexp\\(\\) takes Values or real numbers, not str"):
        engine.logsumexp([engine.Value(1.0), "x"])


def test_logsumexp_bitwise_across_engines(engines):
    rng = random.Random(7)
    xss = [[rng.uniform(-50, 50) for _ in range(rng.randint(1, 12))] for _ in range(200)]
    results = []
    for engine in engines:
        row = []
        for xs in xss:
            vs = [engine.Value(x) for x in xs]
            out = engine.logsumexp(vs) * 1.5
            out.backward()
            row += [out.data] + [v.grad for v in vs]
        results.append(row)
    assert all(same_float(p, q) for p, q in zip(*results))


# -- softmax and cross-entropy ------------------------------------------------------------

def test_softmax_and_log_softmax(engine):
    vs = [engine.Value(x) for x in (1.0, 2.0, 3.0, -800.0)]
    probs = softmax(vs)
    assert sum(p.data for p in probs) == pytest.approx(1.0, rel=1e-15)
    assert [p.data for p in probs] == pytest.approx([math.exp(x - _lse([1, 2, 3, -800]))
                                                     for x in (1, 2, 3, -800)], rel=1e-13)
    logp = log_softmax(vs)
    logp[1].backward()                        # d log p_1 / d x_k = [k == 1] - p_k
    for k, v in enumerate(vs):
        assert close(v.grad, (1.0 if k == 1 else 0.0) - probs[k].data, rel=1e-12) or abs(v.grad) < 1e-300


@pytest.mark.parametrize("label", [0, 2, 3])
def test_cross_entropy_gradient_against_finite_differences(engine, label):
    xs = [0.4, -1.3, 2.2, 0.05]
    one_hot = [1.0 if k == label else 0.0 for k in range(4)]
    vs = [engine.Value(x) for x in xs]
    loss = cross_entropy_loss(vs, one_hot)
    loss.backward()

    def f(z):
        return _lse(z) - z[label]
    assert close(loss.data, f(xs), rel=1e-14)
    for k in range(4):
        assert close(vs[k].grad, central_difference(f, xs, k), rel=1e-7)


# -- train(), evaluate(), predict() with k outputs ----------------------------------------------

def _three_blobs(n, seed):
    rng = random.Random(seed)
    centers = [(-2.0, 0.0), (2.0, 0.0), (0.0, 2.5)]
    xs, ys = [], []
    for i in range(n):
        c = i % 3
        xs.append([centers[c][0] + rng.gauss(0, 0.6), centers[c][1] + rng.gauss(0, 0.6)])
        ys.append(c)
    return xs, ys


def test_cross_entropy_training_with_a_held_out_set(engine):
    xs, ys = _three_blobs(90, seed=1)
    val_xs, val_ys = _three_blobs(45, seed=2)
    random.seed(0)
    model = MLP(2, [8, 3], engine=engine)
    before = evaluate(model, val_xs, val_ys, loss="cross_entropy")
    history = train(model, xs, ys, steps=60, lr=0.05, loss="cross_entropy", optimizer="adam",
                    validation=(val_xs, val_ys), eval_every=20, progress=False)
    assert history.val_step == [19, 39, 59]
    assert len(history.val_loss) == len(history.val_accuracy) == 3
    after = evaluate(model, val_xs, val_ys, loss="cross_entropy")
    assert (after.loss, after.accuracy) == (history.val_loss[-1], history.val_accuracy[-1])
    assert after.loss < before.loss and after.accuracy >= 0.9
    assert history.accuracy[-1] >= 0.9
    predicted = predict(model, val_xs)
    assert all(isinstance(p, int) for p in predicted)
    assert sum(p == y for p, y in zip(predicted, val_ys)) / len(val_ys) == after.accuracy


def test_cross_entropy_training_is_bitwise_equal_across_engines(engines):
    xs, ys = _three_blobs(30, seed=3)
    losses = []
    for engine in engines:
        random.seed(5)
        model = MLP(2, [6, 3], engine=engine)
        history = train(model, xs, ys, steps=8, lr=0.05, loss="cross_entropy", optimizer="adam",
                        batch_size=10, seed=1, validation=(xs[:9], ys[:9]), eval_every=4,
                        progress=False)
        losses.append(history.loss + history.val_loss + [p.data for p in model.parameters()])
    assert all(same_float(p, q) for p, q in zip(*losses))


def test_mse_with_vector_targets(engine):
    xs, labels = _three_blobs(60, seed=4)
    ys = [[1.0 if k == c else 0.0 for k in range(3)] for c in labels]
    random.seed(1)
    model = MLP(2, [8, 3], engine=engine)
    history = train(model, xs, ys, steps=80, lr=0.05, loss="mse", optimizer="adam", progress=False)
    assert history.loss[-1] < history.loss[0] / 3
    assert history.accuracy[-1] >= 0.9           # one-hot targets: the argmax's accuracy
    soft = [[0.5 * t for t in y] for y in ys]   # not one-hot: no accuracy
    assert train(model, xs, soft, steps=1, lr=0.01, progress=False).accuracy == [None]


def test_evaluate_and_predict_build_no_lasting_graph(engine):
    xs, ys = _three_blobs(30, seed=5)
    model = MLP(2, [4, 3], engine=engine)
    if is_core(engine):
        engine.collect()
        nodes = engine.arena_info()["nodes"]
    evaluate(model, xs, ys, loss="cross_entropy")
    predict(model, xs)
    if is_core(engine):
        assert engine.collect() == nodes
    single = MLP(2, [4, 1], engine=engine)
    assert all(isinstance(p, float) for p in predict(single, xs)) and predict(single, []) == []


class _SignGate:
    """A model whose graph depends on the data: it takes one path or another
    by the sign of its first input (no replay can run it)."""

    def __init__(self, engine):
        self.up, self.down = MLP(2, [3, 3], engine=engine), MLP(2, [3, 3], engine=engine)

    def __call__(self, x):
        return (self.up if x[0].data > 0 else self.down)(x)

    def parameters(self):
        return self.up.parameters() + self.down.parameters()


def _one_by_one(engine, model, xs, ys):
    """evaluate()'s numbers worked out one sample at a time, as micrograd would."""
    total, hits = 0.0, 0
    for x, y in zip(xs, ys):
        out = model([engine.Value(v) for v in x])
        total += cross_entropy_loss(out, [1.0 if c == y else 0.0 for c in range(len(out))]).data
        hits += max(range(len(out)), key=lambda c: (out[c].data, -c)) == y
    return total / len(xs), hits / len(xs)


@pytest.mark.parametrize("chunk", [7, 512])
def test_evaluate_and_predict_run_batched_and_agree_with_one_sample_at_a_time(engine, monkeypatch,
                                                                               chunk):
    import autograd.train as training
    monkeypatch.setattr(training._Replayed, "CHUNK", chunk)     # 30 samples: 5 passes of 7
    xs, ys = _three_blobs(30, seed=6)
    random.seed(2)
    model = MLP(2, [5, 3], engine=engine)
    train(model, xs, ys, steps=5, lr=0.1, loss="cross_entropy", progress=False)
    loss, accuracy = _one_by_one(engine, model, xs, ys)
    for threads in (1, 2, None):
        got = evaluate(model, xs, ys, loss="cross_entropy", threads=threads)
        assert same_float(got.loss, loss) and got.accuracy == accuracy
        predicted = predict(model, xs, threads=threads)
        assert predicted == [max(range(3), key=lambda c: (model([engine.Value(v) for v in x])[c].data,
                                                          -c)) for x in xs]
    single = MLP(2, [4, 1], engine=engine)
    assert predict(single, xs) == [single([engine.Value(v) for v in x]).data for x in xs]


def _sign_gated_blobs():
    """Blobs whose first and last samples have first inputs of opposite signs:
    _SignGate takes one path for sample 0 (where the replay is recorded) and
    the other for the last (where it is checked)."""
    xs, ys = _three_blobs(30, seed=7)
    last = next(i for i in range(len(xs)) if (xs[i][0] > 0) != (xs[0][0] > 0))
    xs.append(xs.pop(last))
    ys.append(ys.pop(last))
    return xs, ys


def test_a_model_whose_graph_depends_on_the_data_is_evaluated_one_sample_at_a_time(engine):
    xs, ys = _sign_gated_blobs()
    random.seed(3)
    model = _SignGate(engine)
    loss, accuracy = _one_by_one(engine, model, xs, ys)
    got = evaluate(model, xs, ys, loss="cross_entropy")
    assert same_float(got.loss, loss) and got.accuracy == accuracy
    assert predict(model, xs) == [max(range(3), key=lambda c: (model([engine.Value(v) for v in x])[c].data,
                                                               -c)) for x in xs]


def test_train_refuses_a_model_whose_graph_depends_on_the_data_before_any_step(engine):
    xs, ys = _sign_gated_blobs()
    random.seed(3)
    model = _SignGate(engine)
    before = [p.data for p in model.parameters()]
    with pytest.raises(ValueError, match="sample 29's outputs or loss, replayed, differ"):
        train(model, xs, ys, steps=3, lr=0.1, loss="cross_entropy", progress=False)
    assert [p.data for p in model.parameters()] == before


def test_a_subclass_of_mlp_is_checked_like_any_model(engine):
    """Only MLP, Layer and Neuron themselves skip the check (their graphs are
    the same ops for any data); a subclass may branch on .data, and the last
    sample shows it."""
    class Gated(MLP):
        def __call__(self, x):
            out = super().__call__(x)
            return out if x[0].data > 0 else [o * 2.0 for o in out]

    xs, ys = _sign_gated_blobs()
    random.seed(3)
    model = Gated(2, [4, 3], engine=engine)
    with pytest.raises(ValueError, match="sample 29's outputs or loss, replayed, differ"):
        train(model, xs, ys, steps=1, lr=0.1, loss="cross_entropy", progress=False)
    loss, accuracy = _one_by_one(engine, model, xs, ys)
    got = evaluate(model, xs, ys, loss="cross_entropy")
    assert same_float(got.loss, loss) and got.accuracy == accuracy


def test_a_loss_whose_graph_depends_on_the_target_is_seen_by_the_check(engine):
    """A loss that reads the target's .data bakes sample 0's target into the
    graph: the last sample's loss shows it (evaluate() goes one sample at a
    time, train() refuses)."""
    xs, ys = _three_blobs(30, seed=8)
    assert ys[0] != ys[-1]
    random.seed(4)
    model = MLP(2, [4, 3], engine=engine)

    def baked(out, target):        # target.data, not target: a constant in the graph
        return sum((o - t.data) * (o - t.data) for o, t in zip(out, target))

    want = 0.0
    for x, y in zip(xs, ys):
        out = model([engine.Value(v) for v in x])
        want += baked(out, [engine.Value(1.0 if c == y else 0.0) for c in range(3)]).data
    ys_one_hot = [[1.0 if c == y else 0.0 for c in range(3)] for y in ys]
    assert same_float(evaluate(model, xs, ys_one_hot, loss=baked).loss, want / len(xs))
    with pytest.raises(ValueError, match="outputs or loss, replayed, differ"):
        train(model, xs, ys_one_hot, steps=1, lr=0.1, loss=baked, progress=False)


def test_evaluate_and_predict_run_a_model_no_replay_can_take(engine):
    """A micrograd-style op (its chain rule a Python _backward) cannot be
    replayed; evaluate() and predict() need no derivative and go one sample
    at a time."""
    def swish(v):
        out = engine.Value(v.data / (1.0 + math.exp(-v.data)), (v,), "swish")
        def _backward():
            v.grad += out.grad
        out._backward = _backward
        return out

    class Swished:
        def __init__(self):
            self.mlp = MLP(2, [4, 3], engine=engine)

        def __call__(self, x):
            return [swish(o) for o in self.mlp(x)]

        def parameters(self):
            return self.mlp.parameters()

    xs, ys = _three_blobs(12, seed=9)
    random.seed(5)
    model = Swished()
    loss, accuracy = _one_by_one(engine, model, xs, ys)
    got = evaluate(model, xs, ys, loss="cross_entropy")
    assert same_float(got.loss, loss) and got.accuracy == accuracy
    assert len(predict(model, xs)) == 12
    with pytest.raises(RuntimeError, match="cannot replay the custom node 'swish'"):
        train(model, xs, ys, steps=1, lr=0.1, loss="cross_entropy", progress=False)


def test_the_replay_is_recorded_on_sample_0_not_on_zeros(engine):
    """A model that takes the log of its inputs works on positive data (a
    graph recorded on zeros would raise a math domain error)."""
    class Logs:
        def __init__(self):
            self.mlp = MLP(2, [3, 3], engine=engine)

        def __call__(self, x):
            return self.mlp([v.log() for v in x])

        def parameters(self):
            return self.mlp.parameters()

    xs, ys = _three_blobs(20, seed=10)
    xs = [[abs(a) + 0.5, abs(b) + 0.5] for a, b in xs]
    random.seed(6)
    model = Logs()
    loss, accuracy = _one_by_one(engine, model, xs, ys)
    got = evaluate(model, xs, ys, loss="cross_entropy")
    assert same_float(got.loss, loss) and got.accuracy == accuracy
    history = train(model, xs, ys, steps=2, lr=0.1, loss="cross_entropy", progress=False)
    assert all(math.isfinite(v) for v in history.loss)


@pytest.mark.parametrize("threads, error", [(0, ValueError), ("2", TypeError), (1.0, TypeError)])
def test_evaluate_and_predict_refuse_a_bad_thread_count(engine, threads, error):
    model = MLP(2, [3, 3], engine=engine)
    with pytest.raises(error, match="threads must be an int"):
        evaluate(model, [[0.0, 1.0]], [0], loss="cross_entropy", threads=threads)
    with pytest.raises(error, match="threads must be an int"):
        predict(model, [[0.0, 1.0]], threads=threads)


def test_bad_class_data_is_refused_before_training(engine):
    model = MLP(2, [4, 3], engine=engine)
    xs = [[0.0, 1.0], [1.0, 0.0]]
    state = model.state_dict()

    def fit(ys, **kw):
        return train(model, xs, ys, steps=1, lr=0.1, progress=False, **kw)

    with pytest.raises(ValueError, match=r"ys\[1\] = 3 is not a class id of a model with 3 outputs \(0 to 2\)"):
        fit([0, 3], loss="cross_entropy")
    with pytest.raises(ValueError, match=r"ys\[0\] = -1 is not a class id"):
        fit([-1, 0], loss="cross_entropy")
    with pytest.raises(TypeError, match=r"ys\[1\] must be an integer class id from 0 to 2, not float 1.5"):
        fit([0, 1.5], loss="cross_entropy")
    with pytest.raises(TypeError, match=r"ys\[0\] must be an integer class id .* not bool"):
        fit([True, 1], loss="cross_entropy")
    with pytest.raises(ValueError, match=r"ys\[0\] has 2 values but the model has 3 outputs"):
        fit([[1.0, 0.0], [0.0, 1.0]], loss="mse")
    with pytest.raises(TypeError, match=r"ys\[0\] must be a vector of 3 numbers .*class ids go with"):
        fit([0, 1], loss="mse")
    with pytest.raises(ValueError, match="the hinge loss needs a model with one output; this one has 3"):
        fit([1, -1], loss="hinge")
    with pytest.raises(ValueError, match="cross_entropy loss needs a model with one output per class"):
        train(MLP(2, [4, 1], engine=engine), xs, [0, 1], steps=1, lr=0.1, loss="cross_entropy",
              progress=False)
    with pytest.raises(ValueError, match=r"validation: xs has 2 samples but ys has 1"):
        fit([0, 1], loss="cross_entropy", validation=(xs, [0]))
    with pytest.raises(ValueError, match=r"ys\[0\] = 7 is not a class id"):
        fit([0, 1], loss="cross_entropy", validation=(xs, [7, 0]))
    with pytest.raises(TypeError, match="validation must be a pair"):
        fit([0, 1], loss="cross_entropy", validation=xs[0][0])
    with pytest.raises(ValueError, match="eval_every must be a positive int"):
        fit([0, 1], loss="cross_entropy", validation=(xs, [0, 1]), eval_every=0)
    assert model.state_dict() == state                # nothing trained


# -- data ---------------------------------------------------------------------------------------

def test_train_test_split():
    xs = [[float(i)] for i in range(10)]
    ys = list(range(10))
    a = train_test_split(xs, ys, test_size=0.25, seed=3)
    assert a == train_test_split(xs, ys, test_size=0.25, seed=3)
    train_xs, test_xs, train_ys, test_ys = a
    assert (len(train_xs), len(test_xs)) == (7, 3)        # the test part is rounded up
    assert sorted(train_ys + test_ys) == ys and not set(train_ys) & set(test_ys)
    assert all(x == [float(y)] for x, y in zip(train_xs + test_xs, train_ys + test_ys))
    assert len(train_test_split(xs, ys, test_size=4)[1]) == 4
    with pytest.raises(ValueError, match="xs has 10 samples but ys has 9"):
        train_test_split(xs, ys[:9])
    with pytest.raises(ValueError, match="must be in \\(0, 1\\)"):
        train_test_split(xs, ys, test_size=1.5)
    with pytest.raises(ValueError, match="both need at least one"):
        train_test_split(xs, ys, test_size=10)
    with pytest.raises(TypeError, match="test_size must be"):
        train_test_split(xs, ys, test_size="a quarter")


def test_load_digits():
    pytest.importorskip("sklearn", reason="scikit-learn (the data extra) is not installed")
    from autograd.data import load_digits
    X, y = load_digits()
    assert (len(X), len(X[0]), len(y)) == (1797, 64, 1797)
    assert min(map(min, X)) == 0.0 and max(map(max, X)) == 1.0
    assert sorted(set(y)) == list(range(10)) and all(type(t) is int for t in y)


def test_load_digits_without_scikit_learn_names_the_extra(monkeypatch):
    from autograd.data import load_digits
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'mini-autograd\[data\]'"):
        load_digits()


def test_the_digits_example_reaches_95_percent_held_out(core, capsys, tmp_path):
    # on the compiled core: 1,000 steps take about a second there, minutes on the pure engine
    pytest.importorskip("sklearn", reason="scikit-learn (the data extra) is not installed")
    from autograd.__main__ import main
    picture = tmp_path / "digits.png"
    assert main(["--example", "digits", "--engine", "cython", "--no-progress",
                 "--plot", str(picture)]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("held-out accuracy ")[1].split("%")[0])
    assert accuracy >= 95.0, out
    if "no picture" not in out:
        assert picture.stat().st_size > 10_000


# -- re-entrancy: Python code in the middle of making a logsumexp node -------------------------

def test_logsumexp_with_a_number_that_compacts_and_re_initializes(engine):
    import gc
    import numbers

    garbage = [engine.Value(float(k)) * 2.0 for k in range(300)]
    a, b = engine.Value(1.0), engine.Value(2.0)
    victim = a * 1.0

    class Sneaky:
        def __float__(self):
            garbage.clear()
            gc.collect()
            if is_core(engine):
                engine.collect()                  # moves every node made since the garbage
            victim.__init__(5.0)                  # re-initialized before it is read
            return 0.5

    numbers.Real.register(Sneaky)
    out = engine.logsumexp([a, Sneaky(), victim, b]) * 1.0
    out.backward()
    assert out.data == _lse([1.0, 0.5, 5.0, 2.0])
    assert close(victim.grad, math.exp(5.0 - _lse([1.0, 0.5, 5.0, 2.0])))
    check_arena(engine)


def test_logsumexp_while_a_gc_callback_compacts(core):
    garbage = [core.Value(float(k)) * 2.0 for k in range(300)]
    xs = [core.Value(float(k)) for k in range(4)]
    with compacting_at_the_first_collection(core, garbage) as fired:
        outs = [core.logsumexp(list(xs) + [float(k)]) for k in range(50)]
    assert fired
    assert [o.data for o in outs] == [_lse([0.0, 1.0, 2.0, 3.0, float(k)]) for k in range(50)]
    core.check_arena()
