"""train(): fit a model to (xs, ys) by gradient descent.

Each step is: forward, zero the gradients, backward, update.  One sample's
graph (model and loss) is built once, over placeholder leaves for its inputs
and target, and replayed over each batch by the engine's Replay, which holds
one value per sample for every node and adds the parameters' gradients over
the batch in a fixed order.  The model's graph must not depend on the data's
values (true of Neuron/Layer/MLP and of any micrograd-style model).
"""
from __future__ import annotations

import math
import numbers
import operator
import os
import random
import signal
import sys
import threading
from array import array
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, Protocol, Union, overload

from autograd.engine import engine_of
try:                            # the data checked in one C loop where it is plain floats
    from autograd.core import _float_rows
except ImportError:             # the pure engine alone: rows are checked one by one
    _float_rows = None  # type: ignore[assignment]
from autograd.nn import MLP, Layer, Neuron, _engine_module, _engine_of_values
from autograd.pure import _argmax

LOSSES = ("mse", "hinge", "bce", "cross_entropy")
"""The loss names train() and evaluate() take."""
OPTIMIZERS = ("sgd", "adam", "adamw")
"""The optimizer names train() takes."""

if TYPE_CHECKING:
    from autograd.engine import Block, Value


class Model(Protocol):
    """What train() takes: micrograd's Module shape (an MLP, a Neuron, ...)."""

    def __call__(self, x: Sequence[Any]) -> Any:
        """The model's output for one sample.

        Args:
            x: The sample's inputs, Values.

        Returns:
            A Value, or a list of Values (one per output).
        """

    def parameters(self) -> list[Value]:
        """The model's parameters.

        Returns:
            A list of Values, the same ones in the same order at every call.
        """


class Optimizer(Protocol):
    """What train() takes as an optimizer besides its names: an object with step().

    SGD, Adam and AdamW also have step_block(block, lr), which train()
    prefers, and state_dict() and load_state_dict() to save and restore
    their state.
    """

    def step(self, params: Sequence[Value], lr: float) -> None:
        """Update the parameters' data from their grads.

        Args:
            params: The parameters, in the same order at every step.
            lr: The learning rate of this step.
        """


Loss = Union[str, Callable[[Any, Any], "Value"]]
"""A loss name (one of LOSSES), or a callable (output, target) -> Value for one sample."""


@dataclass
class History:
    """What train() returns: its per-step records, and why it stopped.

    Attributes:
        loss: The loss at each step made (of the batch, with the L2 term).
        accuracy: The batch's accuracy at each step; None where it has no
            meaning (see train()).
        val_step: The steps after which the validation set was evaluated.
        val_loss: The validation set's mean loss at those steps.
        val_accuracy: Its accuracy at those steps (None where it has no meaning).
        grad_norm: With clip_grad_norm, the grads' L2 norm at each step,
            before clipping; else empty.
        best_step: With validation, the step of the lowest validation loss
            (the first such); else None.
        stop_reason: None where every step ran; else "callback" (the
            callback returned True), "early_stopping" or "interrupted"
            (Ctrl-C, or a KeyboardInterrupt from the code train() calls).
    """
    loss: list[float] = field(default_factory=list)
    accuracy: list[Optional[float]] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[Optional[float]] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    best_step: Optional[int] = None
    stop_reason: Optional[str] = None

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping ended training (the best parameters were restored)."""
        return self.stop_reason == "early_stopping"

    @property
    def interrupted(self) -> bool:
        """Whether Ctrl-C (a KeyboardInterrupt) ended training."""
        return self.stop_reason == "interrupted"


class Evaluation(NamedTuple):
    """What evaluate() returns.

    Attributes:
        loss: The mean per-sample loss.
        accuracy: The fraction of samples classified right; None where it
            has no meaning (see train()).
    """
    loss: float
    accuracy: Optional[float]


def _block(params):
    return engine_of(params[0]).Block(params)


def _zeros(n):
    return array("d", bytes(8 * n))


def _real_setting(x):
    """x as a float where it is a real number (not a bool), else None; an
    int beyond any float is an infinity (out of every setting's range)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def _finite_lr(lr):
    """An optimizer's lr, refused where NaN or infinite (every parameter
    would silently become NaN or infinite); a lr that is not a real number
    is left for the Block to refuse."""
    rate = _real_setting(lr)
    if rate is not None and not math.isfinite(rate):
        raise ValueError(f"lr must be a finite number, not {lr!r}")
    return lr


def _check_weight_decay(weight_decay):
    wd = _real_setting(weight_decay)
    if wd is None or not (wd >= 0.0 and math.isfinite(wd)):
        raise ValueError(f"weight_decay must be a finite number >= 0, not {weight_decay!r}")
    return wd


def _state_numbers(state, key, what, nonnegative=False):
    """state[key] as a list of floats (none negative, given nonnegative: the
    check adam_step makes), or a ValueError naming what is wrong.  Any float
    state_dict() can give is taken back (an overflowed moment is inf)."""
    items = state[key]
    if not isinstance(items, list):
        raise ValueError(f"{what} state: {key!r} must be a list of numbers, "
                         f"not {type(items).__name__}")
    out = []
    for k, x in enumerate(items):
        number = _real_setting(x)
        if number is None:
            raise ValueError(f"{what} state: {key}[{k}] must be a number, not {type(x).__name__}")
        if nonnegative and number < 0.0:
            raise ValueError(f"{what} state: {key}[{k}] is {number!r}: it must be >= 0")
        out.append(number)
    return out


def _state_fields(state, kind, keys):
    """Check an optimizer's state dict: a dict with "type" == kind and
    exactly `keys` besides."""
    if not isinstance(state, dict):
        raise ValueError(f"{kind}.load_state_dict() takes a dict (from state_dict()), "
                         f"not {type(state).__name__}")
    if state.get("type") != kind:
        raise ValueError(f"{kind}.load_state_dict() got the state of {state.get('type')!r}, "
                         f"not of {kind!r}")
    missing = [key for key in keys if key not in state]
    if missing:
        raise ValueError(f"{kind} state has no {', '.join(map(repr, missing))}")
    unknown = sorted(str(key) for key in state if key not in keys and key != "type")
    if unknown:
        raise ValueError(f"{kind} state has unknown keys: {', '.join(map(repr, unknown))}")


class SGD:
    """Stochastic gradient descent, with optional momentum and weight decay, as PyTorch's.

    g = grad + weight_decay * data (L2, coupled, as torch.optim.SGD; g =
    grad without weight decay); v = momentum * v + g; data -= lr * v
    (data -= lr * g without momentum).  The velocity is kept for one list
    of parameters: use one optimizer per model.

    Args:
        momentum: In [0, 1).
        weight_decay: The L2 factor, a finite number >= 0.

    Raises:
        ValueError: `momentum` is out of [0, 1), or `weight_decay` is negative
            or not finite.
    """

    def __init__(self, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        mu = _real_setting(momentum)
        if mu is None or not 0.0 <= mu < 1.0:
            raise ValueError(f"momentum must be in [0, 1), not {momentum!r}")
        self.momentum = mu
        self.weight_decay = _check_weight_decay(weight_decay)
        self._velocity: Optional[array] = None

    def step(self, params: Sequence[Value], lr: float) -> None:
        """One step on a list of parameters.

        Args:
            params: The parameters (Values of one engine), in the same order
                at every step.
            lr: The learning rate of this step.

        Raises:
            TypeError: `lr` is not a real number.
            ValueError: `lr` is NaN or infinite, or, with momentum, `params`
                is not as long as at the first step.
        """
        if params:
            self.step_block(_block(params), lr)

    def step_block(self, block: Block, lr: float) -> None:
        """One step on a Block of parameters (one C loop on the compiled core).

        Args:
            block: The parameters, as the engine's Block, the same at every step.
            lr: The learning rate of this step.

        Raises:
            TypeError: `lr` is not a real number.
            ValueError: `lr` is NaN or infinite, or, with momentum, `block`
                is not as long as at the first step.
        """
        lr = _finite_lr(lr)
        if not self.momentum:
            block.sgd_step(lr, self.weight_decay)
            return
        if self._velocity is None:
            self._velocity = _zeros(len(block))
        block.momentum_step(lr, self.momentum, self._velocity, self.weight_decay)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's settings and state, as plain data (JSON can hold it).

        Returns:
            {"type": "SGD", "momentum": float, "weight_decay": float,
                "velocity": a list of floats, [] before the first step with
                momentum}.
        """
        return {"type": "SGD", "momentum": self.momentum, "weight_decay": self.weight_decay,
                "velocity": [] if self._velocity is None else self._velocity.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the settings and state that state_dict() gave.

        Nothing is changed unless the whole state is accepted.  The
        velocity's length is checked against the parameters at the next step.

        Args:
            state: A dict from SGD.state_dict() (through JSON, say).

        Raises:
            ValueError: `state` is not an SGD's state, or a field of it is
                missing, unknown, of the wrong type or out of its range.
        """
        _state_fields(state, "SGD", ("momentum", "weight_decay", "velocity"))
        try:
            settings = SGD(state["momentum"], state["weight_decay"])
        except ValueError as exc:
            raise ValueError(f"SGD state: {exc}") from None
        velocity = _state_numbers(state, "velocity", "SGD")
        self.momentum, self.weight_decay = settings.momentum, settings.weight_decay
        self._velocity = array("d", velocity) if velocity else None


class Adam:
    """Adam (Kingma & Ba), with bias correction and optional L2 weight decay, as PyTorch's.

    At step t (from 1): g = grad + weight_decay * data (L2, coupled, as
    torch.optim.Adam; g = grad without it); m = beta1 * m + (1 - beta1) * g;
    v = beta2 * v + (1 - beta2) * g * g; data -= lr * (m / (1 - beta1**t))
    / (sqrt(v / (1 - beta2**t)) + eps).  The moments are kept for one list
    of parameters: use one optimizer per model.

    Args:
        beta1: The decay of the first moments, in [0, 1).
        beta2: The decay of the second moments, in [0, 1).
        eps: A positive number added to the denominator.
        weight_decay: The L2 factor, a finite number >= 0.

    Raises:
        ValueError: A setting is out of its range.
    """

    _decoupled = False          # AdamW: the decay is applied to the data, not the grad

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        b1, b2, e = (_real_setting(x) for x in (beta1, beta2, eps))
        if b1 is None or b2 is None or e is None or not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0
                                                         and 0.0 < e < math.inf):
            raise ValueError(f"{type(self).__name__} needs 0 <= beta1, beta2 < 1 and eps > 0, "
                             f"got {beta1}, {beta2}, {eps}")
        self.beta1, self.beta2, self.eps = b1, b2, e
        self.weight_decay = _check_weight_decay(weight_decay)
        self._m: Optional[array] = None
        self._v: Optional[array] = None
        self._t = 0

    def step(self, params: Sequence[Value], lr: float) -> None:
        """One step on a list of parameters.

        Args:
            params: The parameters (Values of one engine), in the same order
                at every step.
            lr: The learning rate of this step.

        Raises:
            TypeError: `lr` is not a real number.
            ValueError: `lr` is NaN or infinite, or `params` is not as long
                as at the first step.
        """
        if params:
            self.step_block(_block(params), lr)

    def step_block(self, block: Block, lr: float) -> None:
        """One step on a Block of parameters (one C loop on the compiled core).

        The step count advances only when the step is made: a refused `lr`
        changes nothing.

        Args:
            block: The parameters, as the engine's Block, the same at every step.
            lr: The learning rate of this step.

        Raises:
            TypeError: `lr` is not a real number.
            ValueError: `lr` is NaN or infinite, or `block` is not as long as
                at the first step.
        """
        lr = _finite_lr(lr)
        if self._m is None or self._v is None:
            self._m, self._v = _zeros(len(block)), _zeros(len(block))
        t = self._t + 1
        b1, b2 = self.beta1, self.beta2
        block.adam_step(lr, b1, b2, self.eps, 1.0 - b1 ** t, 1.0 - b2 ** t, self._m, self._v,
                        self.weight_decay, self._decoupled)
        self._t = t                     # counted once the step is made

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's settings and state, as plain data (JSON can hold it).

        Returns:
            {"type": the class's name, "beta1", "beta2", "eps",
                "weight_decay": floats, "step": the steps made (an int),
                "m", "v": the moments as lists of floats, [] before the
                first step}.
        """
        return {"type": type(self).__name__, "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps, "weight_decay": self.weight_decay, "step": self._t,
                "m": [] if self._m is None else self._m.tolist(),
                "v": [] if self._v is None else self._v.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the settings and state that state_dict() gave.

        Nothing is changed unless the whole state is accepted.  The moments'
        length is checked against the parameters at the next step.

        Args:
            state: A dict from this class's state_dict() (through JSON, say).

        Raises:
            ValueError: `state` is not this class's state, or a field of it
                is missing, unknown, of the wrong type or out of its range,
                or m and v differ in length.
        """
        kind = type(self).__name__
        _state_fields(state, kind, ("beta1", "beta2", "eps", "weight_decay", "step", "m", "v"))
        try:
            settings = type(self)(state["beta1"], state["beta2"], state["eps"],
                                  state["weight_decay"])
        except ValueError as exc:
            raise ValueError(f"{kind} state: {exc}") from None
        t = state["step"]
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"{kind} state: 'step' must be an int >= 0, not {t!r}")
        m = _state_numbers(state, "m", kind)
        v = _state_numbers(state, "v", kind, nonnegative=True)
        if len(m) != len(v):
            raise ValueError(f"{kind} state: m has {len(m)} entries but v has {len(v)}")
        self.beta1, self.beta2, self.eps = settings.beta1, settings.beta2, settings.eps
        self.weight_decay, self._t = settings.weight_decay, t
        self._m, self._v = (array("d", m), array("d", v)) if m else (None, None)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, as PyTorch's.

    At each step, data -= (lr * weight_decay) * data first, then Adam's
    update with the grad as it is (torch.optim.AdamW).

    Args:
        beta1: The decay of the first moments, in [0, 1).
        beta2: The decay of the second moments, in [0, 1).
        eps: A positive number added to the denominator.
        weight_decay: The decay factor, a finite number >= 0 (PyTorch's
            default, 0.01).

    Raises:
        ValueError: A setting is out of its range.
    """

    _decoupled = True

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.01) -> None:
        super().__init__(beta1, beta2, eps, weight_decay)


def clip_grad_norm(params: Sequence[Value] | Block, max_norm: float) -> float:
    """Scale the parameters' grads so that their global L2 norm is at most max_norm.

    PyTorch's clip_grad_norm_: with norm = sqrt(sum of grad**2) over all the
    parameters (added in their order), every grad is multiplied by
    max_norm / (norm + 1e-6) where that is < 1.  Call it between backward()
    and the update, in a micrograd-style loop.

    Args:
        params: The parameters (Values of one engine), or the engine's Block
            of them.
        max_norm: The largest norm, a positive finite number.

    Returns:
        The norm before clipping (0.0 for no parameters; inf or NaN where a
            grad is, and then nothing is scaled for NaN).

    Raises:
        TypeError: `max_norm` is not a real number.
        ValueError: `max_norm` is not positive and finite.
    """
    max_norm = _check_max_norm(max_norm)
    block = params if hasattr(params, "clip_grad_norm") else None
    if block is None:
        values = list(params)
        if not values:
            return 0.0
        try:
            engine = engine_of(values[0])
        except TypeError:
            raise TypeError(f"clip_grad_norm() takes Values of one engine (or their Block), not "
                            f"{type(values[0]).__name__}") from None
        block = engine.Block(values)
    return block.clip_grad_norm(max_norm)


def _check_max_norm(max_norm):
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real):
        raise TypeError(f"max_norm must be a real number, not {type(max_norm).__name__}")
    norm = _real_setting(max_norm)
    if not (norm > 0.0 and math.isfinite(norm)):
        raise ValueError(f"clip_grad_norm(): max_norm must be a positive finite number, "
                         f"not {norm!r}")
    return norm


# -- learning-rate schedules: step -> lr -------------------------------------------

def _check_rate(lr, what="lr"):
    rate = _real_setting(lr)
    if rate is None or not (rate > 0.0 and math.isfinite(rate)):
        raise ValueError(f"{what} must be a positive finite number, not {lr!r}")
    return rate


def _check_gamma(gamma):
    g = _real_setting(gamma)
    if g is None or not (g > 0.0 and math.isfinite(g)):
        raise ValueError(f"gamma must be a positive finite number, not {gamma!r}")
    return g


def _step_number(step):
    k = _as_int(step)
    if k is None or k < 0:
        raise ValueError(f"a schedule's step must be an int >= 0, not {step!r}")
    return k


def cosine_schedule(lr: float, steps: int, warmup: int = 0,
                    min_lr: float = 0.0) -> Callable[[int], float]:
    """A cosine decay from lr to min_lr over `steps` steps, after a linear warmup.

    At step k: lr * (k + 1) / warmup for k < warmup; then, with
    p = min(k - warmup, steps - warmup) / (steps - warmup),
    min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2 (PyTorch's
    CosineAnnealingLR after the warmup; min_lr from step `steps` on).

    Args:
        lr: The peak learning rate, a positive finite number.
        steps: The steps the schedule spans (train()'s `steps`), a positive int.
        warmup: The steps of the linear warmup, an int from 0 to steps - 1.
        min_lr: The last learning rate, a finite number from 0 to lr.

    Returns:
        A callable step -> learning rate, for train()'s `lr`.

    Raises:
        ValueError: An argument is out of its range.
    """
    peak = _check_rate(lr)
    total = _as_int(steps)
    if total is None or total < 1:
        raise ValueError(f"steps must be a positive int, not {steps!r}")
    warm = _as_int(warmup)
    if warm is None or not 0 <= warm < total:
        raise ValueError(f"warmup must be an int from 0 to steps - 1 = {total - 1}, not {warmup!r}")
    low = _real_setting(min_lr)
    if low is None or not 0.0 <= low <= peak:
        raise ValueError(f"min_lr must be a number from 0 to lr = {peak!r}, not {min_lr!r}")
    span = total - warm

    def cosine(step: int) -> float:
        k = _step_number(step)
        if k < warm:
            return peak * (k + 1) / warm
        p = min(k - warm, span) / span
        return low + (peak - low) * (1.0 + math.cos(math.pi * p)) / 2.0
    return cosine


def step_schedule(lr: float, every: int, gamma: float = 0.1) -> Callable[[int], float]:
    """A learning rate multiplied by gamma every `every` steps (PyTorch's StepLR).

    At step k: lr * gamma ** (k // every).

    Args:
        lr: The first learning rate, a positive finite number.
        every: The steps between decays, a positive int.
        gamma: The factor, a positive finite number.

    Returns:
        A callable step -> learning rate, for train()'s `lr`.

    Raises:
        ValueError: An argument is out of its range.
    """
    first, factor = _check_rate(lr), _check_gamma(gamma)
    period = _as_int(every)
    if period is None or period < 1:
        raise ValueError(f"every must be a positive int, not {every!r}")

    def stepped(step: int) -> float:
        return first * factor ** (_step_number(step) // period)
    return stepped


def exponential_schedule(lr: float, gamma: float) -> Callable[[int], float]:
    """A learning rate multiplied by gamma at every step (PyTorch's ExponentialLR).

    At step k: lr * gamma ** k.

    Args:
        lr: The first learning rate, a positive finite number.
        gamma: The factor, a positive finite number.

    Returns:
        A callable step -> learning rate, for train()'s `lr`.

    Raises:
        ValueError: An argument is out of its range.
    """
    first, factor = _check_rate(lr), _check_gamma(gamma)

    def exponential(step: int) -> float:
        return first * factor ** _step_number(step)
    return exponential


# -- losses: (output Value, target Value) -> Value --------------------------------

def mse_loss(out: Value, target: Value | float) -> Value:
    """Squared error (out - target)**2, computed as a product.

    Args:
        out: The model's output.
        target: The desired output, a Value or a number.

    Returns:
        A new Value.
    """
    diff = out - target
    return diff * diff          # overflows to inf (caught by train) where ** would raise


def hinge_loss(out: Value, target: Value | float) -> Value:
    """micrograd's SVM max-margin loss, relu(1 - target * out).

    Args:
        out: The model's output (a score).
        target: -1 or +1, a Value or a number.

    Returns:
        A new Value.
    """
    return (1 + -target * out).relu()


def bce_with_logits_loss(out: Value, target01: Value | float) -> Value:
    """Binary cross-entropy of sigmoid(out) against target01, stable for any logit.

    Computed as relu(out) - out * target01 + log(1 + exp(-|out|)).

    Args:
        out: The model's output, a logit.
        target01: 0 or 1, a Value or a number.

    Returns:
        A new Value.
    """
    return out.relu() - out * target01 + ((-out.abs()).exp() + 1).log()


def cross_entropy_loss(outputs: Sequence[Value], one_hot: Sequence[Value | float]) -> Value:
    """Softmax cross-entropy of k logits against a one-hot target, stable for any logits.

    Computed as logsumexp(outputs) - one_hot . outputs.

    Args:
        outputs: The model's k outputs, logits.
        one_hot: k Values or numbers, 1 at the class and 0 elsewhere.

    Returns:
        A new Value.

    Raises:
        ValueError: `outputs` is empty, or `one_hot` is not as long.
    """
    engine = _engine_of_values(outputs)
    return engine.logsumexp(outputs) - engine.dot(one_hot, outputs)


def mse_vector_loss(outputs: Sequence[Value], targets: Sequence[Value | float]) -> Value:
    """Mean squared error over k outputs.

    Args:
        outputs: The model's k outputs.
        targets: The k desired outputs, Values or numbers.

    Returns:
        A new Value.

    Raises:
        ValueError: `outputs` and `targets` differ in length.
        ZeroDivisionError: `outputs` is empty.
    """
    outputs, targets = list(outputs), list(targets)
    if len(outputs) != len(targets):
        raise ValueError(f"mse_vector_loss(): outputs has {len(outputs)} values but targets "
                         f"has {len(targets)}")
    engine = _engine_of_values(outputs)
    return engine.vsum(mse_loss(o, t) for o, t in zip(outputs, targets)) * (1.0 / len(outputs))


_PLAIN_NUMBERS = frozenset((float, int, bool))


def _is_number(x):
    return isinstance(x, numbers.Real)      # int, float, bool, numpy scalars, Fraction


def _model_width(model):
    """The inputs the model takes where it says so as an MLP (nin), a Neuron
    (its list of weights w) or a Layer (its first neuron's) does, else None:
    a user's model may have a `w` or `nin` meaning something else (a Value)."""
    nin = getattr(model, "nin", None)
    if isinstance(nin, int) and not isinstance(nin, bool):
        return nin
    w = getattr(model, "w", None)
    if isinstance(w, (list, tuple)):
        return len(w)
    neurons = getattr(model, "neurons", None)
    if isinstance(neurons, (list, tuple)) and neurons:
        w = getattr(neurons[0], "w", None)
        if isinstance(w, (list, tuple)):
            return len(w)
    return None


def _check_data(model, xs, ys, loss, what="xs and ys"):
    """(rows, targets, sample): xs as float rows, ys as targets for `loss`,
    and the model run on row 0 (_Sample); every error is raised here, before
    training."""
    xs, ys = _pair(xs, ys, what)
    rows = _check_rows(model, xs)
    sample = _Sample(model, rows)
    return rows, _check_targets(ys, loss, sample.k), sample


def _pair(xs, ys, what):
    xs, ys = _samples(xs), _numbers(ys)
    if len(xs) != len(ys):
        raise ValueError(f"{what}: xs has {len(xs)} samples but ys has {len(ys)}")
    if len(xs) == 0:
        raise ValueError(f"{what}: xs and ys are empty, no samples")
    return xs, ys


def _numbers(ys):
    """ys as a list: a 1-D buffer of integers or doubles (a numpy array of
    labels, say) is read in one C call as plain ints or floats."""
    view = _buffer_of(ys)
    if view is None:
        return list(ys)
    if view.ndim == 1 and view.format in _BUFFER_NUMBERS:     # native order: tolist() reads it
        return view.tolist()
    if isinstance(ys, memoryview) and view.ndim > 1:         # list() cannot take it
        return ys.tolist()
    return list(ys)


_BUFFER_NUMBERS = frozenset("bBhHiIlLqQnNfd")     # struct codes of ints and floats
_PLAIN_INTS = frozenset({int})


def _samples(xs):
    """xs as it is where it is a matrix of doubles (read through its buffer),
    else as a list of its rows."""
    if _double_matrix(xs) is not None:
        return xs
    if isinstance(xs, memoryview):      # list() cannot take a 2-D memoryview
        return xs.tolist()
    return list(xs)


class _Sample:
    """The model run on the first of the rows, building its graph on leaves
    of its own (what _Replayed records): the parameters, the engine, and
    how many outputs the model gives (k: 1 for a single Value)."""

    def __init__(self, model, rows):
        self.model = model
        self.row = rows[0]
        # this library's MLP or Layer, as Replay.layered() takes it: its
        # replay is made from this description, not from a run (see record())
        self.layers, module = _plain_layers(model)
        self.params = self.inputs = self.out = self.outputs = None
        if self.layers is not None:
            self.engine = module
            self.k = len(self.layers[-1][1])
        else:
            self.record()
            self.k = len(self.outputs)

    def record(self):
        """Run the model on the first row, on leaves of its own (the graph
        _Replayed records), and take its parameters, once."""
        if self.outputs is not None:
            return
        # one tuple, given as it is to Replay() and Block() (tuple() of a tuple
        # is itself): a pass over 400k Values costs milliseconds
        self.params = tuple(self.model.parameters())
        if not self.params:
            raise ValueError("the model has no parameters")
        self.engine = engine_of(self.params[0])
        Value = self.engine.Value
        self.inputs = [Value(x) for x in self.row]
        with self.engine.enable_grad():    # the graph is recorded, even within no_grad()
            self.out = self.model(self.inputs)
        self.outputs = _output_list(self.out, Value)

    def run_directly(self, row, per_sample=None, target=None):
        """The model's output numbers on `row` (then its per-sample loss
        against `target`, given per_sample), run directly, recording no graph."""
        Value = self.engine.Value
        with self.engine.no_grad():
            out = self.model([Value(x) for x in row])
            numbers = [o.data for o in _output_list(out, Value)]
            if per_sample is not None:
                numbers.append(per_sample(out, _target_leaves(Value, target, self.k)).data)
        return numbers


def _plain_layers(model):
    """(layers, engine module) for this library's own MLP or Layer (these very
    classes, so that their run is dense() layer after layer, as
    Replay.layered() makes it): (weights, biases, activation) per layer.
    (None, None) for anything else."""
    layers = model.layers if type(model) is MLP else [model] if type(model) is Layer else None
    if not layers or any(type(layer) is not Layer or not layer.neurons for layer in layers):
        return None, None
    modules = {_engine_module(layer.engine) for layer in layers}
    if len(modules) != 1:
        return None, None
    return [([n.w for n in layer.neurons], [n.b for n in layer.neurons], layer.activation)
            for layer in layers], modules.pop()


def _output_list(out, Value):
    """The model's outputs for one sample as a list, or a clear error."""
    if isinstance(out, Value):
        return [out]
    if isinstance(out, (list, tuple)) and out and all(isinstance(o, Value) for o in out):
        return list(out)
    raise ValueError(f"the model must return a Value or a list of Values for a sample, "
                     f"not {type(out).__name__}")


def _loss_name(loss):
    """The built-in loss's name, None for a callable (compared by name only:
    a callable's __eq__ may say it equals anything)."""
    return loss if isinstance(loss, str) else None


def _check_targets(ys, loss, k):
    """ys checked for the loss: floats (one output; -1/+1 for hinge, 0/1 for
    bce), one-hot rows from class ids (cross_entropy), or float rows of
    length k (vector targets)."""
    loss = _loss_name(loss)
    if loss == "cross_entropy":
        if k < 2:
            raise ValueError("the cross_entropy loss needs a model with one output per class "
                             "(at least 2); for one output use 'bce' or 'hinge'")
        # one row per class, shared by its samples: 10^4 lists would each be an
        # object the GC tracks, and every collection in the set-up would visit
        # the model's parameter list (10^5 items) again
        one_hot_rows = [[1.0 if j == c else 0.0 for j in range(k)] for c in range(k)]
        if ys and _PLAIN_INTS.issuperset(map(type, ys)) and 0 <= min(ys) and max(ys) < k:
            return [one_hot_rows[y] for y in ys]        # plain class ids (numpy's, read as ints)
        targets = []
        for i, y in enumerate(ys):
            if type(y) is not int:
                try:
                    if isinstance(y, bool) or not isinstance(y, numbers.Integral):
                        raise TypeError
                    y = operator.index(y)       # (numpy's timedelta64 is Integral, not an index)
                except TypeError:
                    raise TypeError(f"ys[{i}] must be an integer class id from 0 to {k - 1}, "
                                    f"not {type(y).__name__} {y!r}") from None
            if not 0 <= y < k:
                raise ValueError(f"ys[{i}] = {y} is not a class id of a model with {k} outputs "
                                 f"(0 to {k - 1})")
            targets.append(one_hot_rows[y])
        return targets
    if k > 1:
        if loss in ("hinge", "bce"):
            raise ValueError(f"the {loss} loss needs a model with one output; this one has {k} "
                             f"(use loss='cross_entropy' with class ids, or 'mse' with vectors)")
        targets = []
        for i, y in enumerate(ys):
            if _is_number(y):
                raise TypeError(f"ys[{i}] must be a vector of {k} numbers for a model with {k} "
                                f"outputs, not a single number (class ids go with "
                                f"loss='cross_entropy')")
            try:
                row = list(y)
            except TypeError:
                raise TypeError(f"ys[{i}] must be a vector of {k} numbers, "
                                f"not {type(y).__name__}") from None
            if len(row) != k:
                raise ValueError(f"ys[{i}] has {len(row)} values but the model has {k} outputs")
            for j, t in enumerate(row):
                if not _is_number(t):
                    raise TypeError(f"ys[{i}][{j}] must be a number, not {type(t).__name__}")
            targets.append([float(t) for t in row])
        return targets
    targets = []
    for i, y in enumerate(ys):
        if not _is_number(y):
            raise TypeError(f"ys[{i}] must be a number, not {type(y).__name__}")
        targets.append(float(y))
    return _binary_targets(loss, targets)


def _buffer_of(data):
    """A memoryview of data where its buffer holds what its items are; None
    for an object with no buffer, and for a subclass of numpy's ndarray (a
    masked array's buffer holds its masked entries too; a matrix's rows are
    matrices): those go item by item, as any sequence."""
    for cls in type(data).__mro__[1:]:
        if cls.__name__ == "ndarray" and cls.__module__ == "numpy":
            return None
    try:
        return memoryview(data)
    except (TypeError, ValueError):     # (ValueError: numpy's datetimes have no buffer)
        return None


def _double_matrix(xs):
    """xs as a flat memoryview of doubles and its row width, where it is a
    2-D C-contiguous buffer of doubles (a float64 numpy array, say) with at
    least one row and column; else None."""
    view = _buffer_of(xs)
    if view is None:
        return None
    if view.ndim != 2 or view.format != "d" or not view.c_contiguous or 0 in view.shape:
        return None
    return view.cast("B").cast("d"), view.shape[1]


def _check_rows(model, xs):
    """xs as rows of floats: views into a matrix of doubles (no per-number
    work), or private arrays of the numbers, checked (one C loop where they
    are plain floats and ints)."""
    width = _model_width(model)
    matrix = _double_matrix(xs)
    if matrix is not None:      # NaN and inf are the loss check's to report, as for lists
        rows = _MatrixRows(*matrix)
    else:
        rows = _float_rows(xs) if _float_rows is not None else None
    if rows is None:            # not all plain: checked row by row, naming what is wrong
        rows = _checked_rows(xs)
    if width is not None and len(rows[0]) != width:
        raise ValueError(f"the model takes {width} inputs but the rows of xs have {len(rows[0])}")
    return rows


class _MatrixRows(Sequence[memoryview]):
    """Rows that are views into one matrix of doubles, kept as `matrix` (2-D):
    _table() gives it to the replay as it is.  A row's view is made when it
    is asked for (a replayed model needs none)."""

    def __init__(self, flat: memoryview, width: int) -> None:
        self.flat, self.width = flat, width
        self.matrix = flat.cast("B").cast("d", (len(flat) // width, width))

    def __len__(self) -> int:
        return len(self.flat) // self.width

    @overload
    def __getitem__(self, i: int) -> memoryview: ...
    @overload
    def __getitem__(self, i: slice) -> list[memoryview]: ...

    def __getitem__(self, i: int | slice) -> memoryview | list[memoryview]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n, i = len(self), operator.index(i)
        if not -n <= i < n:
            raise IndexError("row index out of range")
        i %= n
        return self.flat[i * self.width:(i + 1) * self.width]


def _checked_rows(xs):
    rows = []
    for i, row in enumerate(xs):
        if _is_number(row):
            row = [row]
        if type(row) is not list:
            try:
                row = list(row)
            except TypeError:
                raise TypeError(f"xs[{i}] must be a row of numbers, not {type(row).__name__}") from None
        if len(row) != len(rows[0] if rows else row):
            raise ValueError(f"ragged xs: row {i} has {len(row)} values, row 0 has {len(rows[0])}")
        if not _PLAIN_NUMBERS.issuperset(map(type, row)):     # the quick test failed
            for j, x in enumerate(row):
                if not _is_number(x):
                    raise TypeError(f"xs[{i}][{j}] must be a number, not {type(x).__name__}")
        rows.append(array("d", row))           # a private copy, as floats
    return rows


def _check_lr(lr, step):
    """train()'s lr: a positive finite number; a schedule's, at `step`, may
    also be 0 (cosine_schedule() gives min_lr=0 from its last step on, and
    exponential_schedule() reaches 0 by underflow)."""
    rate = _real_setting(lr)
    if step is None:
        if rate is None or not rate > 0 or math.isinf(rate):
            raise ValueError(f"the learning rate must be a positive finite number, not {lr!r}")
    elif rate is None or not rate >= 0 or math.isinf(rate):
        raise ValueError(f"the learning rate must be a finite number >= 0 at step {step}, not {lr!r}")
    return rate


def _as_int(value):
    """value as an int where it is an int or has __index__ (numpy's
    integers), not a bool; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if hasattr(type(value), "__index__"):
        try:
            return operator.index(value)
        except TypeError:
            return None
    return None


def _first_nonfinite(rows):
    """(row, column, number) of the first NaN or infinity in rows of floats,
    or None.  One sum first (NaN and infinities reach it; where it only
    overflowed, the search finds nothing); numpy's isfinite where the rows
    are views into one matrix and numpy is loaded."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(rows, _MatrixRows):
        with np.errstate(over="ignore", invalid="ignore"):   # (an overflow is no error here)
            total = np.asarray(rows.matrix).sum()               # (no array of bools)
        if math.isfinite(total):
            return None
    elif math.isfinite(sum(map(sum, rows))):
        return None
    for i, row in enumerate(rows):
        if not math.isfinite(sum(row)):
            for j, x in enumerate(row):
                if not math.isfinite(x):
                    return i, j, x
    return None


def _check_finite(rows, targets, k, what=""):
    """Refuse NaN and infinities in the rows (and float targets), naming where."""
    found = _first_nonfinite(rows)
    if found is not None:
        i, j, x = found
        raise ValueError(f"{what}xs row {i} column {j} is {x}: the data must be finite numbers")
    if targets is None:
        return
    if k == 1:
        found = _first_nonfinite([targets])
        if found is not None:
            raise ValueError(f"{what}ys row {found[1]} is {found[2]}: the targets must be "
                             f"finite numbers")
    else:
        found = _first_nonfinite(targets)
        if found is not None:
            i, j, x = found
            raise ValueError(f"{what}ys row {i} column {j} is {x}: the targets must be "
                             f"finite numbers")


def _make_optimizer(optimizer: str | Optimizer) -> Optimizer:
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}: choose one of {OPTIMIZERS}")
        return {"sgd": SGD, "adam": Adam, "adamw": AdamW}[optimizer]()
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError("optimizer must be 'sgd', 'adam', 'adamw', or an object with "
                        "step(params, lr)")
    return optimizer


def _progress(steps, enabled):
    if not enabled:
        return None
    try:                        # a widget in Jupyter (with ipywidgets), text in a terminal
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=steps, unit="step", dynamic_ncols=True)


def _per_sample_loss(loss, k):
    if callable(loss):
        return loss
    if k == 1:
        return {"mse": mse_loss, "hinge": hinge_loss, "bce": bce_with_logits_loss}[loss]
    return {"cross_entropy": cross_entropy_loss, "mse": mse_vector_loss}[loss]


def _batches(n, size, rng):
    """Batches of `size` of the sample numbers 0..n-1, endlessly: each pass
    over the data in a new random order, its last n % size samples left out."""
    order = list(range(n))
    while True:
        rng.shuffle(order)
        for start in range(0, n - size + 1, size):
            yield order[start:start + size]


def _hit_rule(loss, k, targets):
    """hit(output data, target) -> bool for the accuracy, or None where an
    accuracy has no meaning: the sign for one output with -1/+1 (0/1)
    targets, the argmax for k outputs with class ids or one-hot targets."""
    loss = _loss_name(loss)
    if k == 1:
        if loss in ("hinge", "bce") or (loss == "mse" and all(t in (-1.0, 1.0) for t in targets)):
            return lambda out, t: (out > 0) == (t > 0)
        return None
    if loss == "cross_entropy" or (loss == "mse" and all(
            sorted(t) == [0.0] * (k - 1) + [1.0] for t in targets)):
        return lambda out, t: _argmax(out) == _argmax(t)
    return None


def _binary_targets(loss, targets):
    """hinge and bce targets as -1/+1 and 0/1 (either spelling is accepted)."""
    loss = _loss_name(loss)
    if loss not in ("hinge", "bce"):
        return targets
    if any(t not in (-1.0, 0.0, 1.0) for t in targets):
        raise ValueError(f"the {loss} loss needs targets of -1/+1 (or 0/1)")
    if loss == "hinge":
        return [1.0 if t > 0 else -1.0 for t in targets]
    return [1.0 if t > 0 else 0.0 for t in targets]


def _target_row(target, k):
    return [target] if k == 1 else target


def _target_leaves(Value, target, k):
    return Value(target) if k == 1 else [Value(t) for t in target]


def _data_of(out, k):
    return out.data if k == 1 else [o.data for o in out]


class _Replayed:
    """The model's outputs (and, given a per-sample loss, that loss first)
    recorded once, on sample 0's inputs and target, as an engine.Replay that
    runs them for a batch of samples at a time: train()'s steps, its
    validation, evaluate() and predict().

    The replay needs the model's graph (and the loss's) not to depend on the
    data's values (true of Neuron/Layer/MLP and micrograd-style models).
    usable() is a cheap guard, not a proof: the last sample's outputs and
    loss, replayed, must be the bits of the model run directly on it."""

    CHUNK = 512                 # samples per pass in evaluate() and predict(): bounds memory

    def __init__(self, sample, rows, per_sample=None, targets=None, threads=1):
        self.sample = sample
        k = sample.k
        self.check = len(rows) - 1          # the sample usable() runs directly
        self.check_row = rows[self.check]
        self.per_sample = per_sample
        self.check_target = targets[self.check] if per_sample is not None else None
        first = 1 if per_sample is not None else 0
        self.loss_at = 0            # output numbers in the replay: the loss, if any,
        self.output_at = range(first, first + k)    # then the k outputs, then for one
        # output (0, output), whose argmax is 1 exactly where the output is > 0:
        # what the accuracy's argmax runs over (see _hit_rule)
        self.argmax_at = range(first + k, first + k + 2) if k == 1 else self.output_at
        self.replay = None
        if sample.layers is not None and _same_graph_for_any_data(sample.model, per_sample):
            self.replay = self._layered(sample, per_sample)
        if self.replay is None:
            sample.record()
            self.replay = self._recorded(sample, targets)
        self.replay.threads = threads

    def _layered(self, sample, per_sample):
        """The replay of this library's MLP or Layer, made from its layers
        (Replay.layered()): no graph of the model, no slot per weight.  None
        where a parameter is listed twice (tied weights: _recorded() trains
        each once)."""
        Value, k = sample.engine.Value, sample.k

        def head(outputs, target_leaves):
            out = outputs[0] if k == 1 else outputs        # what the model returns
            losses = []
            if per_sample is not None:
                losses = [per_sample(out, target_leaves[0] if k == 1 else target_leaves)]
            return losses + outputs + ([Value(0.0), outputs[0]] if k == 1 else [])

        try:
            replay = sample.engine.Replay.layered(sample.layers, head,
                                                  k if per_sample is not None else 0,
                                                  getattr(sample.model, "_flat_parameters", None))
        except ValueError:
            params = [p for rows, biases, _ in sample.layers
                      for w, b in zip(rows, biases) for p in (*w, b)]
            if len(set(map(id, params))) == len(params):
                raise
            return None
        # kept for the model's next train(), evaluate() or predict(), which
        # hands it to Replay.layered() again (checked there pointer for
        # pointer): making a tuple and freeing it is two passes over every
        # parameter object, milliseconds at 4 * 10^5
        sample.params = sample.model._flat_parameters = replay.params
        return replay

    def _recorded(self, sample, targets):
        """The replay recorded from the model's run on the first row (and its
        loss on that row's target)."""
        Value = sample.engine.Value
        k = sample.k
        per_sample = self.per_sample
        outputs = sample.outputs
        target_leaves, losses = [], []
        if per_sample is not None:
            target = _target_leaves(Value, targets[0], k)
            target_leaves = [target] if k == 1 else target
            with sample.engine.enable_grad():
                losses = [per_sample(sample.out, target)]
            if not isinstance(losses[0], Value):
                raise TypeError(f"the loss must return a Value for a sample, "
                                f"not {type(losses[0]).__name__}")
        extra = [Value(0.0), outputs[0]] if k == 1 else []
        try:
            replay = sample.engine.Replay(losses + outputs + extra, sample.inputs + target_leaves,
                                          sample.params)
        except ValueError:
            # parameters() lists a Value twice (tied weights): each is trained once,
            # as PyTorch's parameters() gives a shared one once (looked for only
            # here: a pass over a large model's Values costs milliseconds)
            unique = tuple(dict.fromkeys(sample.params))
            if len(unique) == len(sample.params):
                raise
            sample.params = unique
            replay = sample.engine.Replay(losses + outputs + extra,
                                          sample.inputs + target_leaves, sample.params)
        sample.inputs = sample.out = sample.outputs = None     # recorded: the graph can go
        return replay

    def usable(self, table):
        """Whether the replay gives the last sample's outputs and loss, bit
        for bit, as the model run directly does (False for a model whose
        graph depends on the data's values, when that sample shows it).
        This library's own models and losses build the same graph for any
        data: for them there is nothing to check."""
        if _same_graph_for_any_data(self.sample.model, self.per_sample):
            return True
        direct = self.sample.run_directly(self.check_row, self.per_sample, self.check_target)
        if len(direct) != self.sample.k + (self.per_sample is not None):
            return False
        self.replay.load(table, [self.check])
        self.replay.forward()
        replayed = [self.replay.values(j)[0] for j in self.output_at]
        if self.per_sample is not None:
            replayed.append(self.replay.values(self.loss_at)[0])
        return all(_same(r, d) for r, d in zip(replayed, direct))

    def passes(self, table, n):
        """Load each chunk of the n rows of table and run it forward; yield
        the chunk's range of sample numbers."""
        for start in range(0, n, self.CHUNK):
            chunk = range(start, min(start + self.CHUNK, n))
            self.replay.load(table, chunk)
            self.replay.forward()
            yield chunk

    def evaluate(self, table, n, labels):
        """Evaluation over the n rows of table (inputs then target): the
        losses added left to right, as one sample after another would."""
        total, hits = 0.0, 0
        for chunk in self.passes(table, n):
            for value in self.replay.values(self.loss_at):
                total += value
            if labels:
                hits += self.replay.hits(self.argmax_at, labels[chunk.start:chunk.stop])
        return Evaluation(total / n, hits / n if labels else None)

    def predict(self, table, n):
        out = []
        for _ in self.passes(table, n):
            out.extend(self.replay.values(self.output_at[0]) if self.sample.k == 1
                       else self.replay.argmax(self.output_at))
        return out


def _same_graph_for_any_data(model, per_sample):
    """Whether `model` is this library's MLP, Layer or Neuron (these very
    classes: a subclass may branch on .data) and the loss a built-in one:
    their graphs are the same ops for any data (relu is an op, not an `if`)."""
    if not any(per_sample is known for known in (None, mse_loss, hinge_loss, bce_with_logits_loss,
                                                 cross_entropy_loss, mse_vector_loss)):
        return False                # (`is`: a callable's __eq__ may say anything)
    if type(model) is Neuron:
        return True
    layers = model.layers if type(model) is MLP else [model]
    return all(type(layer) is Layer for layer in layers)


def _same(a, b):
    return a == b or (a != a and b != b)


def _table(rows, targets=None, k=0):
    """The rows (then their targets) as Replay.load()'s tuple of 2-D tables
    of doubles, side by side: the data's own matrix where the rows are views
    into one (no copy), else the rows copied one after another."""
    parts = [rows.matrix if isinstance(rows, _MatrixRows) else _matrix(rows)]
    if targets is not None:
        parts.append(_matrix([_target_row(target, k) for target in targets]))
    return tuple(part for part in parts if part is not None)


def _matrix(rows):
    """Rows of numbers copied into a 2-D view of doubles; None where they hold
    none (a view of no columns cannot be made, and adds no inputs).  A row
    given many times (the one-hot row of a class) is converted once."""
    converted = {}
    parts = []
    for row in rows:
        part = converted.get(id(row))       # (rows holds each row: ids stay theirs)
        if part is None:
            part = converted[id(row)] = array("d", row).tobytes()
        parts.append(part)
    flat = array("d")
    flat.frombytes(b"".join(parts))
    return memoryview(flat).cast("B").cast("d", (len(rows), len(flat) // len(rows))) if flat else None


def _labels(hit, targets, k):
    """The output each sample's argmax must hit (targets are one-hot rows
    where k > 1 and there is an accuracy: see _hit_rule), or [] without one."""
    if hit is None:
        return []
    if k == 1:
        return [int(t > 0) for t in targets]
    index = {}              # (a class's one-hot row is one object)
    return [index[id(t)] if id(t) in index else index.setdefault(id(t), t.index(1.0))
            for t in targets]


def _evaluate_one_by_one(model, engine, rows, targets, per_sample, hit, k):
    """Mean loss and accuracy over (rows, targets), one sample at a time,
    recording no graph: for a model whose graph depends on the data, or that
    no Replay can run."""
    Value = engine.Value
    total, hits = 0.0, 0
    with engine.no_grad():
        for row, target in zip(rows, targets):
            out = model([Value(x) for x in row])
            total += per_sample(out, _target_leaves(Value, target, k)).data
            if hit is not None:
                hits += hit(_data_of(out, k), target)
    return Evaluation(total / len(rows), None if hit is None else hits / len(rows))


def evaluate(model: Model, xs: Iterable[Any], ys: Iterable[Any], loss: Loss = "mse", *,
             threads: int | None = None) -> Evaluation:
    """The mean loss and the accuracy of `model` on (xs, ys).

    No graph outlives the call.  The samples run as train() runs them, a
    batch at a time on the engine's Replay, so the model's graph must not
    depend on the data's values, as in train(); where the last sample shows
    that it does, or where no Replay can run the model, the samples run one
    at a time instead.

    Args:
        model: The model, as train() takes it.
        xs: The samples' inputs, as train() takes them.
        ys: The targets, as train() takes them for `loss`.
        loss: A loss name (see train()) or a callable (output, target) -> Value.
        threads: As in train().

    Returns:
        Evaluation(loss, accuracy): the mean per-sample loss (no L2 term)
            and the accuracy (None where it has no meaning).

    Raises:
        ValueError: The data or `loss` is refused, as in train() (NaN and
            infinities too).
        TypeError: The data or `loss` is refused, as in train().
    """
    _check_loss(loss)
    threads = default_threads() if threads is None else _check_threads(threads, "threads")
    rows, targets, sample = _check_data(model, xs, ys, loss, "evaluate()")
    k = sample.k
    _check_finite(rows, targets, k)
    per_sample, hit = _per_sample_loss(loss, k), _hit_rule(loss, k, targets)
    replayed = _replayed_if_possible(sample, rows, per_sample, targets, threads)
    table = _table(rows, targets, k)
    if replayed is not None and replayed.usable(table):
        return replayed.evaluate(table, len(rows), _labels(hit, targets, k))
    return _evaluate_one_by_one(model, sample.engine, rows, targets, per_sample, hit, k)


def _replayed_if_possible(sample, rows, per_sample=None, targets=None, threads=1):
    """_Replayed, or None where no Replay can run the model (a micrograd-style
    op whose chain rule is a Python `_backward`): evaluate() and predict()
    then go one sample at a time, as they need no derivatives."""
    try:
        return _Replayed(sample, rows, per_sample, targets, threads)
    except RuntimeError:
        return None


def predict(model: Model, xs: Iterable[Any], *, threads: int | None = None) -> list[Any]:
    """The model's predictions for the rows of xs.

    No graph outlives the call; the rows run a batch at a time, as in
    evaluate().

    Args:
        model: The model, as train() takes it.
        xs: The samples' inputs, as train() takes them.
        threads: As in train().

    Returns:
        For each row, the class id (the argmax) for a model with k > 1
            outputs, else the output's value; [] for no rows.

    Raises:
        ValueError: The rows do not fit the model or hold NaN or an infinity,
            or `threads` is out of range.
        TypeError: A row is not a row of numbers, or `threads` is not an int.
    """
    threads = default_threads() if threads is None else _check_threads(threads, "threads")
    samples = _samples(xs)
    if len(samples) == 0:
        return []
    rows = _check_rows(model, samples)
    _check_finite(rows, None, 0)            # (a classifier's argmax of NaN would be class 0)
    sample = _Sample(model, rows)
    replayed = _replayed_if_possible(sample, rows, threads=threads)
    table = _table(rows)
    if replayed is not None and replayed.usable(table):
        return replayed.predict(table, len(rows))
    Value = sample.engine.Value
    with sample.engine.no_grad():
        outs = [model([Value(x) for x in row]) for row in rows]
    return [_argmax([o.data for o in out]) if sample.k > 1 else out.data for out in outs]


def _check_loss(loss):
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: choose one of {LOSSES} or pass a callable")
    elif not callable(loss):
        raise TypeError(f"loss must be one of {LOSSES} or a callable, not {type(loss).__name__}")


def default_threads() -> int:
    """The number of threads train(), evaluate() and predict() use by default.

    Returns:
        AUTOGRAD_THREADS if it is set, else the CPUs this process may run on
            (os.sched_getaffinity), at most 1024.

    Raises:
        ValueError: AUTOGRAD_THREADS is not an int from 1 to 1024.
    """

    text = os.environ.get("AUTOGRAD_THREADS", "").strip()
    if text:
        try:
            count = int(text)
        except ValueError:
            raise ValueError(f"AUTOGRAD_THREADS must be an int from 1 to 1024, not {text!r}") from None
        return _check_threads(count, "AUTOGRAD_THREADS")
    try:
        return min(len(os.sched_getaffinity(0)), 1024)
    except AttributeError:                  # not on Linux
        return min(os.cpu_count() or 1, 1024)


def _check_threads(count: Any, what: str) -> int:
    if isinstance(count, bool) or not isinstance(count, int) and not hasattr(type(count), "__index__"):
        raise TypeError(f"{what} must be an int, not {type(count).__name__}")
    count = operator.index(count)
    if not 1 <= count <= 1024:
        raise ValueError(f"{what} must be an int from 1 to 1024, not {count!r}")
    return count


class _GracefulInterrupt:
    """Ctrl-C during train(): the first SIGINT is noted, and training stops
    once the current step is made (its update whole); a second one raises
    KeyboardInterrupt at once.  Installed only in the main thread, over
    Python's own handler (a program's own SIGINT handler is left alone)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _GracefulInterrupt:
        try:
            if (threading.current_thread() is threading.main_thread()
                    and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
                self._previous = signal.signal(signal.SIGINT, self._note)
        except (ValueError, OSError):       # no signals here (an embedded interpreter, say)
            self._previous = None
        return self

    def _note(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _stop_requested(result):
    """Whether a callback's result asks train() to stop: True (or numpy's
    True), not any other truthy value (a lambda's list.append() result, say)."""
    if result is True:
        return True
    cls = type(result)
    return cls.__module__ == "numpy" and cls.__name__ in ("bool_", "bool") and bool(result)


def _check_count(value, what, lowest=1, highest=None):
    """An int argument (an int or numpy integer, not a bool) in its range."""
    count = _as_int(value)
    if count is None or count < lowest or (highest is not None and count > highest):
        if highest is not None:
            raise ValueError(f"{what} must be None or an int from {lowest} to {highest}, "
                             f"not {value!r}")
        raise ValueError(f"{what} must be a positive int, not {value!r}")
    return count


def train(model: Model, xs: Iterable[Any], ys: Iterable[Any], *, steps: int,
          lr: float | Callable[[int], float], loss: Loss = "mse", reg: float = 0.0,
          batch_size: int | None = None, optimizer: str | Optimizer = "sgd", progress: bool = True,
          seed: int | None = None, callback: Callable[[int, float, float | None], object] | None = None,
          validation: tuple[Iterable[Any], Iterable[Any]] | None = None,
          eval_every: int | None = None, threads: int | None = None,
          early_stopping: int | None = None, clip_grad_norm: float | None = None) -> History:
    """Train `model` on (xs, ys) for `steps` steps of gradient descent.

    Each step is: forward, zero the gradients, backward, (clip the
    gradients,) update.  One sample's graph (model and loss) is built once
    and replayed over each batch by the engine's Replay, so the model's
    graph must not depend on the data's values (true of Neuron, Layer and
    MLP).  Everything is checked before the first step.

    Ctrl-C stops training gracefully: the step under way is finished (its
    update is made whole, never half), the progress bar is closed and the
    History so far is returned with `interrupted` True; a second Ctrl-C
    raises KeyboardInterrupt at once.  A KeyboardInterrupt raised by the
    code train() calls (the lr callable, a custom loss or optimizer, the
    callback) stops it the same way; raised before an update is made, the
    parameters are those from before that step.  Any other exception
    propagates with the History so far as its `history` attribute.

    Args:
        model: A micrograd-style model: called on a list of Values, it gives
            a Value or a list of k Values; parameters() lists its Values.
        xs: Rows of numbers, or a 2-D buffer of doubles (a C-contiguous
            float64 numpy array), which is read where it is, not copied:
            what a callback writes into it reaches the later steps' batches.
            NaN and infinities are refused.
        ys: The targets, as `loss` takes them, in a list or a 1-D buffer
            (numpy labels); NaN and infinities are refused.
        steps: The number of steps, a positive int.
        lr: The learning rate, a positive float, or a callable of the step
            number giving it, a finite number >= 0 (see cosine_schedule(),
            step_schedule(), exponential_schedule()).
        loss: For a model with one output, "mse", "hinge" (targets -1/+1)
            or "bce" (a logit; targets 0/1 or -1/+1); for a model with k
            outputs, "cross_entropy" (softmax cross-entropy; ys are class ids
            0..k-1, the accuracy is the argmax's) or "mse" (ys are vectors
            of k numbers); or a callable (output, target) -> Value for one
            sample.
        reg: The L2 penalty reg * sum(p**2) over the parameters, added to
            the loss; a finite number >= 0.
        batch_size: None for the full batch, else batches of that many
            samples: the data is shuffled (with `seed`) and cut into
            batches, one per step; when fewer than batch_size samples are
            left, it is shuffled again (as epochs with PyTorch's
            drop_last=True: a sample is used at most once per pass, and
            every batch has the same size).
        optimizer: "sgd", "adam", "adamw", or an object with step(params,
            lr), such as SGD(momentum=0.9), Adam() or AdamW(weight_decay=0.1).
        progress: Show a tqdm progress bar (where tqdm is installed).
        seed: The seed of the batches' shuffle; None for a fresh one.
        callback: Called as callback(step, loss, accuracy) after each step;
            returning True (not merely a truthy value) stops training there.
        validation: (xs, ys) held out from training, evaluated every
            `eval_every` steps and after the last one; recorded in
            History.val_step, val_loss and val_accuracy, and the step of the
            lowest validation loss in History.best_step.
        eval_every: The steps between validations, a positive int; None for
            a tenth of the steps.
        threads: How many threads the compiled core's layer kernels may
            use, an int from 1 to 1024; None for default_threads().  The
            results are the same bits for any number (work is split by
            neurons or inputs, never inside a sum).
        early_stopping: None, or the patience, a positive int (needs
            `validation`): training stops when the validation loss has not
            improved on its lowest for that many validations in a row, and
            the parameters of the lowest are restored (History.stopped_early,
            History.best_step).
        clip_grad_norm: None, or the largest global L2 norm of the
            gradients, a positive number: after backward and before the
            update, the gradients are scaled as clip_grad_norm() does
            (PyTorch's clip_grad_norm_); the norms go to History.grad_norm.

    Returns:
        The History: the loss and accuracy at each step, the validation
            results, and why training stopped (stop_reason).

    Raises:
        ValueError: An argument is out of its range, the data does not fit
            the model or the loss or holds NaN or an infinity, or the
            model's graph depends on the data's values.
        TypeError: An argument or a sample is of the wrong type.
        FloatingPointError: The loss is NaN or infinite, or cannot be
            computed, at some step; training stops there and the parameters
            are those from before that step (the History so far is the
            exception's `history`).
    """
    # -- everything is checked before any training starts ----------------------------
    steps = _check_count(steps, "steps")
    if not callable(lr):
        _check_lr(lr, None)
    _check_loss(loss)
    reg_rate = _real_setting(reg)           # numpy's numbers too
    if reg_rate is None or not reg_rate >= 0 or math.isinf(reg_rate):
        raise ValueError(f"reg must be a finite number >= 0, not {reg!r}")
    reg = reg_rate
    threads = default_threads() if threads is None else _check_threads(threads, "threads")
    if early_stopping is not None:
        if validation is None:
            raise ValueError("early_stopping needs validation=(xs, ys): it watches the "
                             "validation loss")
        early_stopping = _check_count(early_stopping, "early_stopping")
    max_norm = None if clip_grad_norm is None else _check_max_norm(clip_grad_norm)
    if _as_int(seed) is not None:           # numpy's integers as ints (random.Random needs one)
        seed = _as_int(seed)
    stepper = _make_optimizer(optimizer)
    rows, targets, sample = _check_data(model, xs, ys, loss)
    k, n = sample.k, len(rows)
    _check_finite(rows, targets, k)
    if batch_size is not None:
        batch_size = _check_count(batch_size, "batch_size", 1, n)
    if validation is not None:
        try:
            val_xs, val_ys = validation
        except (TypeError, ValueError):
            raise TypeError("validation must be a pair (xs, ys)") from None
        val_xs, val_ys = _pair(val_xs, val_ys, "validation")
        val_rows = _check_rows(model, val_xs)
        val_targets = _check_targets(val_ys, loss, k)
        if len(val_rows[0]) != len(rows[0]):
            raise ValueError(f"the validation rows have {len(val_rows[0])} values but the "
                             f"training rows have {len(rows[0])}")
        _check_finite(val_rows, val_targets, k, "validation ")
    eval_every = max(1, steps // 10) if eval_every is None else _check_count(eval_every, "eval_every")
    engine = sample.engine
    per_sample = _per_sample_loss(loss, k)
    hit = _hit_rule(loss, k, targets)

    # -- one sample's graph, built once (on sample 0's leaves), replayed over
    #    the batch (engine.Replay: the batch is the inner dimension) ---------------
    size = n if batch_size is None else batch_size
    replayed = _Replayed(sample, rows, per_sample, targets, threads)
    replay = replayed.replay
    params = sample.params                  # each Value once (tied weights: see _Replayed)
    table = _table(rows, targets, k)        # sample i: its inputs, then its target (side by side)
    if not replayed.usable(table):
        raise ValueError(f"train() replays the graph the model and loss build for sample 0 over "
                         f"every sample, but this one depends on the data's values (sample "
                         f"{replayed.check}'s outputs or loss, replayed, differ from the model's "
                         f"run on it): build the same graph for every sample, as Neuron, Layer "
                         f"and MLP do (relu() rather than an `if` on .data)")
    labels = _labels(hit, targets, k)
    if validation is not None:
        val_table = _table(val_rows, val_targets, k)
        val_labels = _labels(_hit_rule(loss, k, val_targets), val_targets, k)
    with engine.enable_grad():             # a graph, forward() and backward() each step
        penalty = reg * engine.vsum(p * p for p in params) if reg else None
    param_block = engine.Block(params)
    step_block = getattr(stepper, "step_block", None)
    loaded = False                          # the full batch is in the replay
    best_loss, best_data, waited = math.inf, None, 0    # early stopping's record

    batches = _batches(n, size, random.Random(seed))
    history = History()
    bar = _progress(steps, progress)
    interrupt = _GracefulInterrupt()
    try:
        with interrupt:
            for step in range(steps):
                if batch_size is not None:
                    batch = next(batches)
                    replay.load(table, batch)
                else:
                    batch = range(n)
                    if not loaded:
                        replay.load(table, batch)
                        loaded = True
                rate = _check_lr(lr(step), step) if callable(lr) else lr
                try:
                    replay.forward()
                    value = replay.sum(0) * (1.0 / size)
                    if penalty is not None:
                        value = value + penalty.forward().data
                except (ArithmeticError, ValueError) as exc:
                    raise FloatingPointError(f"the loss could not be computed at step {step} "
                                             f"({exc}): training stopped, the parameters are "
                                             f"those from before step {step}") from exc
                if not math.isfinite(value):
                    raise FloatingPointError(f"the loss is {value} at step {step}: training "
                                             f"stopped, the parameters are those from before "
                                             f"step {step}")
                accuracy = None
                if hit is not None:
                    batch_labels = labels if batch_size is None else [labels[i] for i in batch]
                    accuracy = replay.hits(replayed.argmax_at, batch_labels) / size
                param_block.zero_grad()
                replay.backward(0, 1.0 / size)
                if penalty is not None:
                    penalty.backward()
                norm = None if max_norm is None else param_block.clip_grad_norm(max_norm)
                if step_block is not None:
                    step_block(param_block, rate)
                else:
                    stepper.step(params, rate)
                # the step is made: recorded at once (a KeyboardInterrupt from here on
                # leaves a History that holds it)
                history.loss.append(value)
                history.accuracy.append(accuracy)
                if norm is not None:
                    history.grad_norm.append(norm)
                stop = None
                if validation is not None and ((step + 1) % eval_every == 0 or step == steps - 1):
                    scores = replayed.evaluate(val_table, len(val_rows), val_labels)
                    loaded = False              # the replay now holds validation rows
                    history.val_step.append(step)
                    history.val_loss.append(scores.loss)
                    history.val_accuracy.append(scores.accuracy)
                    if scores.loss < best_loss:
                        best_loss, history.best_step, waited = scores.loss, step, 0
                        if early_stopping is not None:
                            best_data = param_block.data
                    else:
                        waited += 1
                        if early_stopping is not None and waited >= early_stopping:
                            stop = "early_stopping"
                if bar is not None:
                    postfix = dict(loss=f"{value:.4f}",
                                   acc="-" if accuracy is None else f"{accuracy:.0%}")
                    if history.val_step:
                        val_acc = history.val_accuracy[-1]
                        postfix["val_loss"] = f"{history.val_loss[-1]:.4f}"
                        postfix["val_acc"] = "-" if val_acc is None else f"{val_acc:.1%}"
                    bar.set_postfix(refresh=False, **postfix)
                    bar.update(1)
                if callback is not None and _stop_requested(callback(step, value, accuracy)):
                    stop = stop or "callback"
                if stop == "early_stopping" and best_data is not None:
                    param_block.set_data(best_data)     # the parameters of the best validation
                if stop is None and interrupt.requested and step < steps - 1:
                    stop = "interrupted"
                if stop is not None:
                    history.stop_reason = stop
                    break
    except KeyboardInterrupt as exc:
        if interrupt.requested:         # a second Ctrl-C: stop at once, as Python does
            history.stop_reason = "interrupted"
            exc.history = history       # type: ignore[attr-defined]
            raise
        history.stop_reason = "interrupted"
    except BaseException as exc:
        exc.history = history           # type: ignore[attr-defined]
        raise
    finally:
        if bar is not None:
            bar.close()
    return history
