"""train()'s loop: stopping (callback, early stopping, Ctrl-C), clipping,
errors that carry the History, and input refused before any step."""
import math
import os
import random
import signal

import pytest

from autograd.data import lecture_example, make_moons
from autograd.nn import MLP, Module
from autograd.train import (SGD, AdamW, clip_grad_norm, cosine_schedule, evaluate, exponential_schedule,
                            predict, train)
from helpers import python_handles_sigint


@pytest.fixture
def sigint():
    """SIGINT raises KeyboardInterrupt, as in a terminal, during the test."""
    with python_handles_sigint():
        yield


def _model(engine, seed=0, sizes=(4, 1), nin=3):
    random.seed(seed)
    return MLP(nin, list(sizes), activation="tanh", engine=engine)


def _data(engine):
    return lecture_example()


def _params(model):
    return [p.data for p in model.parameters()]


def _trained(engine, steps, lr=0.1, **kwargs):
    """The parameters after `steps` uninterrupted steps (the reference)."""
    xs, ys = lecture_example()
    model = _model(engine)
    history = train(model, xs, ys, steps=steps, lr=lr, progress=False, **kwargs)
    return _params(model), history


# -- the callback stops training ------------------------------------------------------------

def test_a_callback_returning_true_stops_after_that_step(engine):
    xs, ys = lecture_example()
    model = _model(engine)
    seen = []

    def callback(step, loss, accuracy):
        seen.append(step)
        return step == 2

    history = train(model, xs, ys, steps=10, lr=0.1, progress=False, callback=callback)
    assert seen == [0, 1, 2] and len(history.loss) == 3
    assert history.stop_reason == "callback" and not history.stopped_early
    assert not history.interrupted
    assert _params(model) == _trained(engine, 3)[0]


@pytest.mark.parametrize("result", [1, [0], "stop", 1.0, None, False])
def test_only_true_stops_training(engine, result):
    """A lambda's side effect (list.append's None, a list) does not stop it."""
    xs, ys = lecture_example()
    history = train(_model(engine), xs, ys, steps=4, lr=0.1, progress=False,
                    callback=lambda *args: result)
    assert len(history.loss) == 4 and history.stop_reason is None


def test_numpys_true_stops_training(engine):
    np = pytest.importorskip("numpy")
    xs, ys = lecture_example()
    history = train(_model(engine), xs, ys, steps=4, lr=0.1, progress=False,
                    callback=lambda step, loss, acc: np.float64(step) >= 1)
    assert len(history.loss) == 2 and history.stop_reason == "callback"


# -- early stopping --------------------------------------------------------------------------

def _diverging(engine, patience, steps=20, eval_every=1):
    """Training toward ys while the validation set wants -ys: the validation
    loss falls once (step 1), then rises at every step."""
    xs, ys = lecture_example()
    model = _model(engine)
    history = train(model, xs, ys, steps=steps, lr=0.05, progress=False,
                    validation=(xs, [-y for y in ys]), eval_every=eval_every,
                    early_stopping=patience)
    return model, history


def test_early_stopping_restores_the_best_parameters(engine):
    model, history = _diverging(engine, patience=3)
    assert history.val_step == [0, 1, 2, 3, 4]
    assert history.val_loss[1] < history.val_loss[0] < history.val_loss[2] < history.val_loss[3]
    assert history.stopped_early and history.stop_reason == "early_stopping"
    assert history.best_step == 1 and len(history.loss) == 5
    assert _params(model) == _trained(engine, 2, lr=0.05)[0]    # the parameters after step 1


def test_early_stopping_counts_evaluations_not_steps(engine):
    _, history = _diverging(engine, patience=2, eval_every=3)
    assert history.val_step == [2, 5, 8] and len(history.loss) == 9
    assert history.best_step == 2 and history.stopped_early


def test_patience_is_not_reached_when_the_loss_improves(engine):
    xs, ys = lecture_example()
    model = _model(engine)
    history = train(model, xs, ys, steps=12, lr=0.05, progress=False, validation=(xs, ys),
                    eval_every=2, early_stopping=2)
    assert history.stop_reason is None and len(history.loss) == 12
    assert history.best_step == 11 and not history.stopped_early
    assert _params(model) == _trained(engine, 12, lr=0.05, validation=(xs, ys), eval_every=2)[0]


def test_best_step_is_recorded_with_validation_alone(engine):
    xs, ys = lecture_example()
    history = train(_model(engine), xs, ys, steps=6, lr=0.05, progress=False,
                    validation=(xs, [-y for y in ys]), eval_every=2)
    assert history.best_step == history.val_step[history.val_loss.index(min(history.val_loss))]
    assert history.stop_reason is None
    assert train(_model(engine), xs, ys, steps=2, lr=0.1, progress=False).best_step is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(early_stopping=3), r"early_stopping needs validation=\(xs, ys\)"),
    (dict(early_stopping=0, validation=True), "early_stopping must be a positive int, not 0"),
    (dict(early_stopping=2.0, validation=True), "early_stopping must be a positive int, not 2.0"),
    (dict(early_stopping=True, validation=True), "early_stopping must be a positive int, not True"),
    (dict(clip_grad_norm=0.0), "max_norm must be a positive finite number, not 0.0"),
    (dict(clip_grad_norm=math.nan), "max_norm must be a positive finite number, not nan"),
    (dict(steps=True), "steps must be a positive int, not True"),
    (dict(steps=2.0), "steps must be a positive int, not 2.0"),
    (dict(eval_every=0), "eval_every must be a positive int, not 0"),
    (dict(batch_size=True), "batch_size must be None or an int from 1 to 4, not True"),
])
def test_new_arguments_are_checked_before_training(engine, kwargs, message):
    xs, ys = lecture_example()
    model = _model(engine)
    before = _params(model)
    if kwargs.get("validation") is True:
        kwargs["validation"] = (xs, ys)
    args = {**dict(steps=3, lr=0.1, progress=False), **kwargs}
    with pytest.raises(ValueError, match=message):
        train(model, xs, ys, **args)
    assert _params(model) == before


# -- gradient clipping in train() ------------------------------------------------------------

class _ClippingSGD:
    """A micrograd-style optimizer: clip_grad_norm() then SGD's step."""

    def __init__(self, max_norm):
        self.max_norm, self.norms = max_norm, []

    def step(self, params, lr):
        self.norms.append(clip_grad_norm(params, self.max_norm))
        SGD().step(params, lr)


def test_clip_grad_norm_in_train_is_the_public_function(engine):
    xs, ys = make_moons(30, noise=0.1, seed=2)
    results = []
    for kwargs in (dict(clip_grad_norm=0.05), dict(optimizer=_ClippingSGD(0.05))):
        model = _model(engine, seed=3, sizes=(6, 1), nin=2)
        history = train(model, xs, ys, steps=5, lr=0.5, loss="hinge", reg=1e-3, progress=False,
                        **kwargs)
        norms = history.grad_norm or kwargs["optimizer"].norms
        results.append((history.loss, _params(model), norms))
    assert results[0] == results[1]
    assert len(results[0][2]) == 5 and all(n > 0.05 for n in results[0][2])
    unclipped = train(_model(engine, seed=3, sizes=(6, 1), nin=2), xs, ys, steps=5, lr=0.5,
                      loss="hinge", reg=1e-3, progress=False)
    assert unclipped.loss[1:] != results[0][0][1:] and unclipped.grad_norm == []


# -- Ctrl-C: the step is finished, the History so far comes back -----------------------------

def test_a_keyboard_interrupt_from_the_callback_returns_the_history(engine):
    xs, ys = lecture_example()
    model = _model(engine)

    def callback(step, loss, accuracy):
        if step == 2:
            raise KeyboardInterrupt

    history = train(model, xs, ys, steps=10, lr=0.1, progress=False, callback=callback)
    assert history.interrupted and history.stop_reason == "interrupted"
    assert len(history.loss) == 3
    reference, ref_history = _trained(engine, 3)
    assert _params(model) == reference and history.loss == ref_history.loss


def test_a_keyboard_interrupt_before_the_update_leaves_the_parameters_as_before(engine):
    """Raised by the lr callable at step 2: steps 0 and 1 were made, step 2 not."""
    xs, ys = lecture_example()
    model = _model(engine)

    def rate(step):
        if step == 2:
            raise KeyboardInterrupt
        return 0.1

    history = train(model, xs, ys, steps=10, lr=rate, progress=False)
    assert history.interrupted and len(history.loss) == 2
    assert _params(model) == _trained(engine, 2)[0]


@pytest.mark.parametrize("how", ["raise_signal", "kill"])
@pytest.mark.parametrize("where", ["callback", "lr"])
def test_sigint_finishes_the_step_under_way(engine, how, where, sigint):
    """A real SIGINT (Ctrl-C) during step 2, from the lr callable (before
    the update) or the callback (after it): step 2 is made whole, then
    training stops; Python's handler is back afterwards."""
    xs, ys = lecture_example()
    model = _model(engine)

    def interrupt(step):
        if step == 2:
            if how == "kill":
                os.kill(os.getpid(), signal.SIGINT)
            else:
                signal.raise_signal(signal.SIGINT)

    lr = (lambda step: interrupt(step) or 0.1) if where == "lr" else 0.1
    callback = (lambda step, loss, acc: interrupt(step)) if where == "callback" else None
    history = train(model, xs, ys, steps=10, lr=lr, progress=False, callback=callback)
    assert history.interrupted and len(history.loss) == 3
    assert _params(model) == _trained(engine, 3)[0]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_sigint_stops_at_once(engine, sigint):
    xs, ys = lecture_example()

    def callback(step, loss, accuracy):
        if step == 1:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt) as info:
        train(_model(engine), xs, ys, steps=10, lr=0.1, progress=False, callback=callback)
    assert len(info.value.history.loss) == 2 and info.value.history.interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupt_closes_the_progress_bar(engine, capsys):
    tqdm = pytest.importorskip("tqdm", reason="the progress bar is the optional 'progress' extra")
    xs, ys = lecture_example()

    def callback(step, loss, accuracy):
        if step == 1:
            raise KeyboardInterrupt

    history = train(_model(engine), xs, ys, steps=10, lr=0.1, progress=True, callback=callback)
    assert history.interrupted
    assert "2/10" in capsys.readouterr().err
    assert not [bar for bar in getattr(tqdm.tqdm, "_instances", ()) if not bar.disable]


# -- other errors carry the History so far ---------------------------------------------------

def test_a_nan_loss_carries_the_history(engine):
    xs, ys = lecture_example()
    with pytest.raises(FloatingPointError, match="at step 3") as info:
        train(_model(engine), xs, ys, steps=10, lr=lambda k: 1e200 if k == 2 else 0.1,
              progress=False)
    history = info.value.history
    assert len(history.loss) == 3 and history.stop_reason is None


def test_an_exception_from_the_callback_carries_the_history(engine):
    xs, ys = lecture_example()

    def callback(step, loss, accuracy):
        if step == 1:
            raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed") as info:
        train(_model(engine), xs, ys, steps=10, lr=0.1, progress=False, callback=callback)
    assert len(info.value.history.loss) == 2


# -- NaN and infinities in the data are refused before any step --------------------------------

@pytest.mark.parametrize("where, message", [
    ("xs", r"^xs row 2 column 1 is nan: the data must be finite numbers$"),
    ("xs_inf", r"^xs row 3 column 2 is -inf"),
    ("ys", r"^ys row 1 is inf: the targets must be finite numbers$"),
    ("val_xs", r"^validation xs row 0 column 0 is nan"),
    ("val_ys", r"^validation ys row 3 is nan"),
])
def test_nan_and_inf_in_the_data_are_refused(engine, where, message):
    xs, ys = lecture_example()
    xs, ys = [list(row) for row in xs], list(ys)
    val_xs, val_ys = [list(row) for row in xs], list(ys)
    if where == "xs":
        xs[2][1] = math.nan
    elif where == "xs_inf":
        xs[3][2] = -math.inf
    elif where == "ys":
        ys[1] = math.inf
    elif where == "val_xs":
        val_xs[0][0] = math.nan
    else:
        val_ys[3] = math.nan
    model = _model(engine)
    before = _params(model)
    with pytest.raises(ValueError, match=message):
        train(model, xs, ys, steps=2, lr=0.1, progress=False, validation=(val_xs, val_ys))
    assert _params(model) == before
    if where in ("xs", "xs_inf", "ys"):
        with pytest.raises(ValueError, match=message):
            evaluate(model, xs, ys)
    if where in ("xs", "xs_inf"):
        with pytest.raises(ValueError, match=message):
            predict(model, xs)


def test_a_classifier_predicts_no_class_for_nan(engine):
    # the argmax of NaN outputs would be class 0, silently
    model = _model(engine, sizes=(3, 3), nin=2)
    with pytest.raises(ValueError, match=r"^xs row 1 column 0 is nan: the data must be finite numbers$"):
        predict(model, [[0.5, 0.5], [math.nan, 0.0]])
    assert predict(model, [[0.5, 0.5]]) == predict(model, [[0.5, 0.5], [0.0, 0.0]])[:1]


def test_nan_in_a_numpy_matrix_and_in_vector_targets(engine):
    np = pytest.importorskip("numpy")
    xs = np.array(make_moons(20, seed=1)[0])
    xs[17, 1] = np.nan
    model = _model(engine, sizes=(3, 2), nin=2)
    with pytest.raises(ValueError, match="xs row 17 column 1 is nan"):
        train(model, xs, [i % 2 for i in range(20)], steps=1, lr=0.1, loss="cross_entropy",
              progress=False)
    xs[17, 1] = 0.5
    targets = [[0.0, 1.0]] * 20
    targets[4] = [0.0, math.inf]
    with pytest.raises(ValueError, match="ys row 4 column 1 is inf"):
        train(model, xs, targets, steps=1, lr=0.1, loss="mse", progress=False)
    assert predict(model, xs)        # the matrix with finite numbers trains and predicts


def test_large_finite_numbers_are_not_refused(engine):
    """A sum of the data that overflows is not a NaN in it."""
    xs = [[1e308, 1e308], [1e308, 1e308]]
    model = _model(engine, sizes=(2, 1), nin=2)
    assert len(evaluate(model, xs, [1.0, -1.0], "hinge")) == 2


def test_large_finite_numbers_in_a_numpy_matrix_under_numpy_errors(engine):
    """The data's sum, which numpy may compute, overflows: no warning and no
    FloatingPointError where numpy raises on overflow (np.seterr)."""
    np = pytest.importorskip("numpy")
    xs = np.array([[1e308, 1e308], [0.5, 1.0]])
    model = _model(engine, sizes=(2, 1), nin=2)
    with np.errstate(all="raise"):
        assert len(predict(model, xs)) == 2
        assert len(evaluate(model, xs, [1.0, -1.0], "hinge")) == 2


# -- numpy's integers wherever an int is taken ---------------------------------------------------

def test_numpy_integers_are_ints(engine):
    np = pytest.importorskip("numpy")
    xs, ys = make_moons(24, noise=0.1, seed=4)
    results = []
    for cast in (int, np.int64, np.int32, np.uint16):
        model = _model(engine, seed=2, sizes=(5, 1), nin=2)
        history = train(model, xs, ys, steps=cast(6), lr=0.1, loss="hinge", batch_size=cast(8),
                        eval_every=cast(2), threads=cast(1), seed=cast(3),
                        validation=(xs, ys), early_stopping=cast(5), progress=False)
        results.append((history.loss, history.val_loss, _params(model),
                        evaluate(model, xs, ys, "hinge", threads=cast(1)),
                        predict(model, xs, threads=cast(2))))
    assert all(r == results[0] for r in results[1:])


# -- a user's model ---------------------------------------------------------------------------

class _Line(Module):
    """A micrograd-style model of its own: a scalar weight `w` (not a Neuron's
    list), used for both inputs, listed twice when `twice` (tied weights)."""

    def __init__(self, engine, twice=False):
        self.w, self.b, self.twice = engine.Value(0.5), engine.Value(0.0), twice

    def __call__(self, x):
        return self.w * x[0] + self.w * x[1] + self.b

    def parameters(self):
        return [self.w, self.b, self.w] if self.twice else [self.w, self.b]


def test_a_model_whose_w_is_a_value_trains(engine):
    # its `w` is no Neuron's list of weights (train() read len(model.w) as the input width)
    xs, ys = [[1.0, 2.0], [0.5, 0.1], [0.3, 0.3]], [1.0, 0.0, 0.5]
    model = _Line(engine)
    history = train(model, xs, ys, steps=3, lr=0.1, progress=False)
    assert len(history.loss) == 3 and model.w.data != 0.5
    assert evaluate(model, xs, ys).loss < history.loss[0]
    assert len(predict(model, xs)) == 3


def test_a_parameter_listed_twice_is_trained_once(engine):
    # tied weights, as PyTorch's parameters() gives a shared one once
    xs, ys = [[1.0, 2.0], [0.5, 0.1], [0.3, 0.3]], [1.0, 0.0, 0.5]
    tied, plain = _Line(engine, twice=True), _Line(engine)
    for opt in ("sgd", "adam"):
        a = train(tied, xs, ys, steps=4, lr=0.1, reg=0.01, optimizer=opt, clip_grad_norm=0.5,
                  progress=False)
        b = train(plain, xs, ys, steps=4, lr=0.1, reg=0.01, optimizer=opt, clip_grad_norm=0.5,
                  progress=False)
        assert a.loss == b.loss and a.grad_norm == b.grad_norm
        assert (tied.w.data, tied.b.data) == (plain.w.data, plain.b.data)
    assert evaluate(tied, xs, ys) == evaluate(plain, xs, ys)
    assert predict(tied, xs) == predict(plain, xs)


# -- a schedule may end at 0 ----------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_a_cosine_schedule_past_its_steps_trains_on_at_lr_0(engine, optimizer):
    # cosine_schedule(lr, 5) gives min_lr=0.0 from step 5 on: the steps are made
    # and change nothing, as PyTorch's with lr 0
    xs, ys = lecture_example()
    short, long = _model(engine), _model(engine)
    train(short, xs, ys, steps=5, lr=cosine_schedule(0.1, 5), optimizer=optimizer, progress=False)
    history = train(long, xs, ys, steps=8, lr=cosine_schedule(0.1, 5), optimizer=optimizer,
                    progress=False)
    assert len(history.loss) == 8 and history.stop_reason is None
    assert _params(long) == _params(short) != _params(_model(engine))


def test_an_exponential_schedule_may_underflow_to_0(engine):
    xs, ys = lecture_example()
    schedule = exponential_schedule(0.1, 1e-100)        # 0.0 from step 4 on
    assert schedule(3) > 0.0 == schedule(4)
    history = train(_model(engine), xs, ys, steps=6, lr=schedule, progress=False)
    assert len(history.loss) == 6


def test_a_negative_lr_from_a_schedule_is_refused_naming_the_step(engine):
    xs, ys = lecture_example()
    with pytest.raises(ValueError, match="the learning rate must be a finite number >= 0 at step 2, "
                                         "not -0.5") as info:
        train(_model(engine), xs, ys, steps=5, lr=lambda k: 0.1 if k < 2 else -0.5, progress=False)
    assert len(info.value.history.loss) == 2
    with pytest.raises(ValueError, match="the learning rate must be a positive finite number, not 0.0"):
        train(_model(engine), xs, ys, steps=5, lr=0.0, progress=False)


def test_reg_takes_numpys_numbers(engine):
    np = pytest.importorskip("numpy")
    xs, ys = lecture_example()
    results = []
    for reg in (0.001, np.float64(0.001), np.float32(0.001), np.float32(0.001).item()):
        model = _model(engine)
        results.append(train(model, xs, ys, steps=3, lr=0.1, reg=reg, progress=False).loss)
    assert results[0] == results[1] and results[2] == results[3] != results[0]
    assert (train(_model(engine), xs, ys, steps=3, lr=0.1, reg=np.int64(0), progress=False).loss
            == train(_model(engine), xs, ys, steps=3, lr=0.1, progress=False).loss)
    with pytest.raises(ValueError, match="reg must be a finite number >= 0, not .*-1"):
        train(_model(engine), xs, ys, steps=3, lr=0.1, reg=np.int64(-1), progress=False)


def test_adamw_by_name(engine):
    xs, ys = lecture_example()
    a, b = _model(engine), _model(engine)
    train(a, xs, ys, steps=3, lr=0.01, optimizer="adamw", progress=False)
    train(b, xs, ys, steps=3, lr=0.01, optimizer=AdamW(), progress=False)
    assert _params(a) == _params(b) != _params(_model(engine))
