"""Optimizers, weight decay, gradient clipping, learning-rate schedules and
optimizer state, against hand-written references of PyTorch's formulas."""
import json
import math
import random
from array import array

import pytest

from autograd.train import (SGD, Adam, AdamW, clip_grad_norm, cosine_schedule,
                            exponential_schedule, mse_vector_loss, step_schedule)
from helpers import same_float

CENTRES = [0.3, -1.2, 2.5, 0.0, -0.7]


def _params(engine, seed=0):
    rng = random.Random(seed)
    return [engine.Value(rng.uniform(-2, 2)) for _ in CENTRES]


def _backward(engine, params):
    """A loss whose grads change every step: sum((p - c)**2 * (1 + p*p))."""
    for p in params:
        p.grad = 0.0
    loss = engine.vsum((p - c) * (p - c) * (1 + p * p) for p, c in zip(params, CENTRES))
    loss.backward()
    return [p.grad for p in params]


# -- hand-written references: the formulas of PyTorch's documentation ----------------

def torch_sgd(data, grads, state, lr, momentum=0.0, weight_decay=0.0):
    out = []
    for k, (p, g) in enumerate(zip(data, grads)):
        if weight_decay != 0:
            g = g + weight_decay * p
        if momentum != 0:
            state[k] = momentum * state[k] + g
            g = state[k]
        out.append(p - lr * g)
    return out


def torch_adam(data, grads, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
               decoupled=False):
    out = []
    for k, (p, g) in enumerate(zip(data, grads)):
        if weight_decay != 0:
            if decoupled:                       # AdamW: theta -= lr * lambda * theta
                p = p - lr * weight_decay * p
            else:                               # Adam: g += lambda * theta
                g = g + weight_decay * p
        m[k] = b1 * m[k] + (1 - b1) * g
        v[k] = b2 * v[k] + (1 - b2) * g * g
        m_hat, v_hat = m[k] / (1 - b1 ** t), v[k] / (1 - b2 ** t)
        out.append(p - lr * m_hat / (math.sqrt(v_hat) + eps))
    return out


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.0, 0.05), (0.9, 0.0), (0.8, 0.1)])
def test_sgd_is_pytorchs_formula_bit_for_bit(engine, momentum, weight_decay):
    params = _params(engine)
    opt = SGD(momentum=momentum, weight_decay=weight_decay)
    ref, velocity = [p.data for p in params], [0.0] * len(params)
    for _ in range(4):
        grads = _backward(engine, params)
        opt.step(params, 0.05)
        ref = torch_sgd(ref, grads, velocity, 0.05, momentum, weight_decay)
        assert [p.data for p in params] == ref
    assert opt.state_dict()["velocity"] == (velocity if momentum else [])


@pytest.mark.parametrize("make, weight_decay, decoupled", [
    (lambda: Adam(), 0.0, False),
    (lambda: Adam(weight_decay=0.1), 0.1, False),
    (lambda: AdamW(), 0.01, True),
    (lambda: AdamW(beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.3), 0.3, True),
])
def test_adam_and_adamw_are_pytorchs_formulas_bit_for_bit(engine, make, weight_decay, decoupled):
    params = _params(engine, seed=1)
    opt = make()
    b1, b2, eps = opt.beta1, opt.beta2, opt.eps
    ref, m, v = [p.data for p in params], [0.0] * 5, [0.0] * 5
    for t in range(1, 5):
        grads = _backward(engine, params)
        opt.step(params, 0.02)
        ref = torch_adam(ref, grads, m, v, t, 0.02, b1, b2, eps, weight_decay, decoupled)
        assert [p.data for p in params] == ref
    state = opt.state_dict()
    assert state["m"] == m and state["v"] == v and state["step"] == 4


def test_adamw_first_step_by_hand(engine):
    """p = 1, grad = 0.5, lr = 0.1, weight decay 0.01: the decay takes p to
    0.999, then Adam's first step is lr * g / (|g| + eps) = 0.1 * (1 - 2e-8)."""
    p = engine.Value(1.0)
    p.grad = 0.5
    AdamW().step([p], 0.1)
    assert p.data == pytest.approx(0.999 - 0.1 * 0.5 / (0.5 + 1e-8), abs=1e-15)
    assert p.data == pytest.approx(0.899000002, abs=1e-12)
    q = engine.Value(1.0)
    q.grad = 0.5
    Adam(weight_decay=0.01).step([q], 0.1)         # L2: g = 0.51, the step is still about lr
    assert q.data == pytest.approx(1.0 - 0.1 * 0.51 / (0.51 + 1e-8), abs=1e-15)


def test_weight_decay_alone_shrinks_the_parameters(engine):
    """With zero grads: SGD's L2 step is p *= 1 - lr * wd (as p - lr*(wd*p));
    AdamW's decay is p - (lr*wd)*p, and its Adam step is 0."""
    a, b = engine.Value(2.0), engine.Value(2.0)
    SGD(weight_decay=0.5).step([a], 0.1)
    AdamW(weight_decay=0.5).step([b], 0.1)
    assert a.data == 2.0 - 0.1 * (0.0 + 0.5 * 2.0) == 1.9
    assert b.data == 2.0 - (0.1 * 0.5) * 2.0 == 1.9


def test_the_engines_agree_bit_for_bit(engines):
    results = []
    for engine in engines:
        params = _params(engine, seed=2)
        opts = [SGD(momentum=0.9, weight_decay=0.01), Adam(weight_decay=0.02), AdamW()]
        for _ in range(3):
            for opt in opts:
                _backward(engine, params)
                clip_grad_norm(params, 1.5)
                opt.step(params, 0.03)
        results.append([p.data for p in params])
    assert results[0] == results[1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(momentum=1.0), r"momentum must be in \[0, 1\), not 1.0"),
    (dict(momentum="0.5"), r"momentum must be in \[0, 1\), not '0.5'"),
    (dict(weight_decay=-0.1), "weight_decay must be a finite number >= 0, not -0.1"),
    (dict(weight_decay=math.inf), "weight_decay must be a finite number >= 0, not inf"),
    (dict(weight_decay=True), "weight_decay must be a finite number >= 0, not True"),
])
def test_sgd_settings_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SGD(**kwargs)


@pytest.mark.parametrize("cls", [Adam, AdamW])
@pytest.mark.parametrize("kwargs, message", [
    (dict(beta1=1.0), "needs 0 <= beta1, beta2 < 1 and eps > 0"),
    (dict(eps=0.0), "needs 0 <= beta1, beta2 < 1 and eps > 0"),
    (dict(weight_decay=float("nan")), "weight_decay must be a finite number >= 0, not nan"),
])
def test_adam_settings_are_checked(cls, kwargs, message):
    with pytest.raises(ValueError, match=f"{cls.__name__} {message}" if "needs" in message else message):
        cls(**kwargs)


def test_block_kernels_refuse_a_bad_weight_decay_before_any_work(engine):
    v = engine.Value(1.0)
    v.grad = 1.0
    block = engine.Block([v])
    m, s = array("d", [0.0]), array("d", [0.0])
    for bad, error, message in [(-1.0, ValueError, "weight_decay must be a finite number >= 0, not -1.0"),
                                (math.nan, ValueError, "weight_decay must be a finite number >= 0, not nan"),
                                ("x", TypeError, "weight_decay must be a real number")]:
        with pytest.raises(error, match=message):
            block.sgd_step(0.1, bad)
        with pytest.raises(error, match=message):
            block.momentum_step(0.1, 0.9, m, bad)
        with pytest.raises(error, match=message):
            block.adam_step(0.1, 0.9, 0.99, 1e-8, 0.1, 0.01, m, s, bad)
    with pytest.raises(TypeError, match="decoupled_weight_decay must be True or False, not int"):
        block.adam_step(0.1, 0.9, 0.99, 1e-8, 0.1, 0.01, m, s, 0.1, 1)
    assert v.data == 1.0 and list(m) == [0.0] and list(s) == [0.0]


def test_adam_counts_a_step_only_when_it_is_made(engine):
    """A refused lr leaves the step count (and so the bias corrections) as
    they were."""
    v = engine.Value(1.0)
    v.grad = 0.25
    opt = Adam()
    with pytest.raises(TypeError, match="Adam's settings must be a real number"):
        opt.step([v], "0.1")
    assert opt.state_dict()["step"] == 0 and v.data == 1.0
    fresh, w = Adam(), engine.Value(1.0)
    w.grad = 0.25
    opt.step([v], 0.1)
    fresh.step([w], 0.1)
    assert v.data == w.data and opt.state_dict() == fresh.state_dict()


# -- gradient clipping ------------------------------------------------------------------

def test_clip_grad_norm_is_pytorchs(engine):
    a, b = engine.Value(0.0), engine.Value(0.0)
    a.grad, b.grad = 3.0, 4.0
    assert clip_grad_norm([a, b], 1.0) == 5.0
    coef = 1.0 / (5.0 + 1e-6)
    assert (a.grad, b.grad) == (3.0 * coef, 4.0 * coef)
    assert math.hypot(a.grad, b.grad) == pytest.approx(1.0 - 2e-7, abs=1e-12)
    a.grad, b.grad = 0.3, 0.4                       # under max_norm: left as they are
    assert clip_grad_norm(engine.Block([a, b]), 1.0) == pytest.approx(0.5, abs=1e-16)
    assert (a.grad, b.grad) == (0.3, 0.4)
    assert clip_grad_norm([], 1.0) == 0.0


def test_clip_grad_norm_adds_the_squares_in_order_on_both_engines(engines):
    grads = [1e-3 * k - 0.37 for k in range(40)] + [12.5, -7.25]
    results = []
    for engine in engines:
        vs = [engine.Value(0.0) for _ in grads]
        for v, g in zip(vs, grads):
            v.grad = g
        norm = engine.Block(vs).clip_grad_norm(2.0)
        results.append((norm, [v.grad for v in vs]))
    total = 0.0
    for g in grads:
        total = total + g * g
    norm = math.sqrt(total)
    assert results[0] == results[1] == (norm, [g * (2.0 / (norm + 1e-6)) for g in grads])


def test_clip_grad_norm_with_non_finite_grads(engine):
    a, b = engine.Value(0.0), engine.Value(0.0)
    a.grad, b.grad = math.nan, 1.0
    assert math.isnan(clip_grad_norm([a, b], 1.0))
    assert b.grad == 1.0                            # NaN: nothing scaled
    a.grad, b.grad = math.inf, 1.0
    assert clip_grad_norm([a, b], 1.0) == math.inf
    assert math.isnan(a.grad) and b.grad == 0.0     # scaled by 0, as PyTorch


@pytest.mark.parametrize("bad, error, message", [
    (0.0, ValueError, r"clip_grad_norm\(\): max_norm must be a positive finite number, not 0.0"),
    (-1, ValueError, "max_norm must be a positive finite number, not -1.0"),
    (math.inf, ValueError, "max_norm must be a positive finite number, not inf"),
    (math.nan, ValueError, "max_norm must be a positive finite number, not nan"),
    ("1", TypeError, "max_norm must be a real number"),
])
def test_clip_grad_norm_refuses_a_bad_max_norm(engine, bad, error, message):
    v = engine.Value(0.0)
    v.grad = 5.0
    with pytest.raises(error, match=message):
        engine.Block([v]).clip_grad_norm(bad)
    with pytest.raises(error, match=message):
        clip_grad_norm([v], bad)
    with pytest.raises(error, match=message):
        clip_grad_norm([], bad)
    assert v.grad == 5.0


def test_clip_grad_norm_names_itself_for_what_is_not_a_value(engine):
    with pytest.raises(TypeError, match=r"^clip_grad_norm\(\) takes Values of one engine \(or their Block\), not float$"):
        clip_grad_norm([1.0], 1.0)
    with pytest.raises(TypeError, match=r"Block\(\) takes Values of this engine, not builtins.float \(item 1\)"):
        clip_grad_norm([engine.Value(1.0), 2.0], 1.0)


@pytest.mark.parametrize("make", [SGD, lambda: SGD(momentum=0.9), Adam, AdamW],
                         ids=["sgd", "momentum", "adam", "adamw"])
@pytest.mark.parametrize("lr", [math.nan, math.inf, -math.inf, 10 ** 400],
                         ids=["nan", "inf", "-inf", "int-beyond-floats"])
def test_optimizers_refuse_a_nan_or_infinite_lr(engine, make, lr):
    # it would make every parameter NaN or infinite, silently
    opt, v = make(), engine.Value(1.0)
    v.grad = 0.5
    state = opt.state_dict()
    with pytest.raises(ValueError, match="lr must be a finite number, not "):
        opt.step([v], lr)
    with pytest.raises(ValueError, match="lr must be a finite number, not "):
        opt.step_block(engine.Block([v]), lr)
    assert v.data == 1.0 and opt.state_dict() == state
    opt.step([v], -0.1)                             # a negative rate is a step up the gradient
    assert v.data > 1.0


def test_ints_beyond_any_float_are_out_of_range_not_overflow_errors(engine):
    huge = 10 ** 400
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        SGD(weight_decay=huge)
    with pytest.raises(ValueError, match="momentum must be in \\[0, 1\\)"):
        SGD(momentum=huge)
    with pytest.raises(ValueError, match="Adam needs 0 <= beta1, beta2 < 1 and eps > 0"):
        Adam(eps=huge)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        cosine_schedule(huge, 10)
    with pytest.raises(ValueError, match="gamma must be a positive finite number"):
        exponential_schedule(0.1, -huge)
    v = engine.Value(0.0)
    v.grad = 5.0
    for params in ([v], []):
        with pytest.raises(ValueError, match="max_norm must be a positive finite number, not inf"):
            clip_grad_norm(params, huge)
    assert v.grad == 5.0


def test_an_unmade_block_refuses_the_new_kernels(engine):
    blank = engine.Block.__new__(engine.Block)
    with pytest.raises(RuntimeError, match=r"never made"):
        blank.clip_grad_norm(1.0)
    with pytest.raises(RuntimeError, match=r"never made"):
        blank.sgd_step(0.1, 0.01)


def test_the_pure_block_keeps_its_values_private(engines):
    """The compiled Block has no `values` attribute; the pure one agrees."""
    for engine in engines:
        block = engine.Block([engine.Value(1.0)])
        assert not hasattr(block, "values")
        assert [v.data for v in block] == [1.0]


# -- schedules ------------------------------------------------------------------------------

def test_cosine_schedule_values():
    lr = cosine_schedule(0.1, steps=10)
    assert lr(0) == 0.1
    assert lr(5) == pytest.approx(0.05, abs=1e-17)
    assert lr(9) == pytest.approx(0.1 * (1 + math.cos(math.pi * 0.9)) / 2, abs=1e-17)
    assert lr(10) == lr(50) == 0.0
    warm = cosine_schedule(1.0, steps=12, warmup=4, min_lr=0.2)
    assert [warm(k) for k in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warm(4) == 1.0
    assert warm(8) == pytest.approx(0.6, abs=1e-15)        # halfway down from 1.0 to 0.2
    assert warm(12) == warm(100) == pytest.approx(0.2, abs=1e-16)
    assert all(warm(k) > warm(k + 1) for k in range(4, 11))


def test_step_and_exponential_schedules_values():
    lr = step_schedule(0.5, every=3, gamma=0.1)
    assert [lr(k) for k in range(7)] == [0.5, 0.5, 0.5, 0.5 * 0.1, 0.5 * 0.1, 0.5 * 0.1, 0.5 * 0.1 ** 2]
    assert step_schedule(1.0, every=2)(4) == 0.1 ** 2          # gamma defaults to 0.1 (StepLR)
    ex = exponential_schedule(2.0, 0.5)
    assert [ex(k) for k in range(4)] == [2.0, 1.0, 0.5, 0.25]


@pytest.mark.parametrize("make, message", [
    (lambda: cosine_schedule(0.0, 10), "lr must be a positive finite number, not 0.0"),
    (lambda: cosine_schedule(0.1, 0), "steps must be a positive int, not 0"),
    (lambda: cosine_schedule(0.1, 10.0), "steps must be a positive int, not 10.0"),
    (lambda: cosine_schedule(0.1, 10, warmup=10), r"warmup must be an int from 0 to steps - 1 = 9, not 10"),
    (lambda: cosine_schedule(0.1, 10, min_lr=0.2), "min_lr must be a number from 0 to lr = 0.1, not 0.2"),
    (lambda: cosine_schedule(0.1, 10, min_lr=-1), "min_lr must be a number from 0 to lr"),
    (lambda: step_schedule(0.1, 0), "every must be a positive int, not 0"),
    (lambda: step_schedule(0.1, 2, gamma=0), "gamma must be a positive finite number, not 0"),
    (lambda: exponential_schedule(math.inf, 0.9), "lr must be a positive finite number, not inf"),
    (lambda: exponential_schedule(0.1, -0.9), "gamma must be a positive finite number, not -0.9"),
    (lambda: exponential_schedule(0.1, 0.9)(-1), "a schedule's step must be an int >= 0, not -1"),
    (lambda: step_schedule(0.1, 2)(1.5), "a schedule's step must be an int >= 0, not 1.5"),
])
def test_schedules_check_their_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_schedules_take_numpy_integers():
    np = pytest.importorskip("numpy")
    lr = cosine_schedule(np.float64(0.1), np.int64(10), warmup=np.int32(2))
    assert lr(np.int64(1)) == lr(1) == 0.1
    assert step_schedule(1.0, np.int64(2), 0.5)(np.uint8(5)) == 0.25


# -- state ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: SGD(), lambda: SGD(momentum=0.9, weight_decay=0.01),
                                  lambda: Adam(weight_decay=0.1), lambda: AdamW(beta1=0.8)])
def test_resuming_from_a_saved_state_gives_the_same_bits(engine, make):
    """Three steps, the state through JSON into a new optimizer, three more:
    the same bits as six steps without a pause."""
    whole, opt = _params(engine, seed=3), make()
    for _ in range(6):
        _backward(engine, whole)
        opt.step(whole, 0.04)
    resumed, first = _params(engine, seed=3), make()
    for _ in range(3):
        _backward(engine, resumed)
        first.step(resumed, 0.04)
    saved = json.loads(json.dumps(first.state_dict()))
    second = type(first)()                  # other settings: the state brings its own
    second.load_state_dict(saved)
    assert second.state_dict() == first.state_dict()
    for _ in range(3):
        _backward(engine, resumed)
        second.step(resumed, 0.04)
    assert [p.data for p in resumed] == [p.data for p in whole]
    assert second.state_dict() == opt.state_dict()


def test_state_dicts_are_plain_data(engine):
    params = _params(engine)
    opt = Adam(weight_decay=0.5)
    assert opt.state_dict() == {"type": "Adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                "weight_decay": 0.5, "step": 0, "m": [], "v": []}
    _backward(engine, params)
    opt.step(params, 0.1)
    state = opt.state_dict()
    assert state["step"] == 1 and len(state["m"]) == len(state["v"]) == 5
    assert all(type(x) is float for x in state["m"] + state["v"])
    assert AdamW().state_dict()["type"] == "AdamW"
    assert SGD(momentum=0.5).state_dict() == {"type": "SGD", "momentum": 0.5, "weight_decay": 0.0,
                                              "velocity": []}


@pytest.mark.parametrize("make, change, message", [
    (Adam, dict(type="SGD"), r"Adam.load_state_dict\(\) got the state of 'SGD', not of 'Adam'"),
    (AdamW, dict(type="Adam"), "got the state of 'Adam', not of 'AdamW'"),
    (Adam, dict(m=[0.1, 0.2]), "Adam state: m has 2 entries but v has 3"),
    (Adam, dict(v=[0.1, -0.2, 0.0]), r"Adam state: v\[1\] is -0.2: it must be >= 0"),
    (Adam, dict(m=[0.1, "x", 0.0]), r"Adam state: m\[1\] must be a number, not str"),
    (Adam, dict(m="abc"), "Adam state: 'm' must be a list of numbers, not str"),
    (Adam, dict(step=-1), "Adam state: 'step' must be an int >= 0, not -1"),
    (Adam, dict(step=1.0), "Adam state: 'step' must be an int >= 0, not 1.0"),
    (Adam, dict(beta1=1.5), "Adam state: Adam needs 0 <= beta1"),
    (Adam, dict(extra=1), "Adam state has unknown keys: 'extra'"),
    (SGD, dict(momentum=-0.5), r"SGD state: momentum must be in \[0, 1\)"),
    (SGD, dict(velocity=[True]), r"SGD state: velocity\[0\] must be a number, not bool"),
])
def test_load_state_dict_refuses_a_wrong_state_and_changes_nothing(make, change, message):
    opt = make()
    if isinstance(opt, SGD):
        opt = SGD(momentum=0.5)
        opt._velocity = array("d", [0.5, 0.25, 0.0])
    else:
        opt._m, opt._v, opt._t = array("d", [0.1, 0.2, 0.3]), array("d", [0.01, 0.02, 0.03]), 2
    before = opt.state_dict()
    state = {**before, **change}
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(state)
    assert opt.state_dict() == before


def test_an_overflowed_state_goes_back_and_forth(engine):
    """Moments that overflowed (inf) are state too: what state_dict() gives,
    load_state_dict() takes."""
    v = engine.Value(1.0)
    v.grad = 1e200
    opt = Adam()
    opt.step([v], 0.1)
    state = opt.state_dict()
    assert state["v"] == [math.inf]
    again = Adam()
    again.load_state_dict(state)
    assert again.state_dict() == state


def test_load_state_dict_refuses_what_is_no_state():
    with pytest.raises(ValueError, match=r"Adam.load_state_dict\(\) takes a dict .* not list"):
        Adam().load_state_dict([])
    state = Adam().state_dict()
    del state["v"]
    with pytest.raises(ValueError, match="Adam state has no 'v'"):
        Adam().load_state_dict(state)


def test_a_loaded_state_of_the_wrong_length_is_refused_at_the_next_step(engine):
    opt = Adam()
    opt.load_state_dict({**Adam().state_dict(), "step": 1, "m": [0.0, 0.0], "v": [0.0, 0.0]})
    params = _params(engine)
    before = [p.data for p in params]
    with pytest.raises(ValueError, match="m has 2 entries for 5 Values"):
        opt.step(params, 0.1)
    assert [p.data for p in params] == before and opt.state_dict()["step"] == 1


# -- a loss's checks ---------------------------------------------------------------------------

def test_mse_vector_loss_needs_as_many_targets_as_outputs(engine):
    outs = [engine.Value(1.0), engine.Value(2.0)]
    with pytest.raises(ValueError, match=r"mse_vector_loss\(\): outputs has 2 values but targets has 3"):
        mse_vector_loss(outs, [1.0, 2.0, 3.0])
    assert mse_vector_loss(outs, (0.0, 4.0)).data == (1.0 + 4.0) * 0.5
    assert same_float(mse_vector_loss(outs, iter([1.0, 2.0])).data, 0.0)
