"""train(): fit a model to (xs, ys) by gradient descent.

Each step is: forward, zero the gradients, backward, update.  The graph of
the loss is built once, over placeholder leaves for one batch of inputs and
targets, and replayed every step with forward()/backward(): the model's
graph must not depend on the data's values (true of Neuron/Layer/MLP and of
any micrograd-style model).
"""
import math
import numbers
import random
from dataclasses import dataclass, field

from autograd.engine import engine_of

LOSSES = ("mse", "hinge", "bce")
OPTIMIZERS = ("sgd", "adam")


@dataclass
class History:
    """Per-step records: `loss`, and `accuracy` (None where it has no meaning)."""
    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)


class SGD:
    """Stochastic gradient descent, with optional (PyTorch-style) momentum."""

    def __init__(self, momentum=0.0):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), not {momentum!r}")
        self.momentum = momentum
        self._velocity = None

    def step(self, params, lr):
        if not self.momentum:
            for p in params:
                p.data -= lr * p.grad
            return
        if self._velocity is None:
            self._velocity = [0.0] * len(params)
        v = self._velocity
        for i, p in enumerate(params):
            v[i] = self.momentum * v[i] + p.grad
            p.data -= lr * v[i]


class Adam:
    """Adam (Kingma & Ba), with bias correction."""

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8):
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0 and eps > 0):
            raise ValueError(f"Adam needs 0 <= beta1, beta2 < 1 and eps > 0, got {beta1}, {beta2}, {eps}")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self._m = self._v = None
        self._t = 0

    def step(self, params, lr):
        if self._m is None:
            self._m = [0.0] * len(params)
            self._v = [0.0] * len(params)
        self._t += 1
        b1, b2 = self.beta1, self.beta2
        c1, c2 = 1.0 - b1 ** self._t, 1.0 - b2 ** self._t
        m, v = self._m, self._v
        for i, p in enumerate(params):
            g = p.grad
            m[i] = b1 * m[i] + (1.0 - b1) * g
            v[i] = b2 * v[i] + (1.0 - b2) * g * g
            p.data -= lr * (m[i] / c1) / (math.sqrt(v[i] / c2) + self.eps)


# -- losses: (output Value, target Value) -> Value --------------------------------

def mse_loss(out, target):
    diff = out - target
    return diff * diff          # overflows to inf (caught by train) where ** would raise


def hinge_loss(out, target):
    """micrograd's SVM max-margin loss; targets are -1 or +1."""
    return (1 + -target * out).relu()


def bce_with_logits_loss(out, target01):
    """Binary cross-entropy on a logit, stable for any logit; target 0 or 1."""
    return out.relu() - out * target01 + ((-out.abs()).exp() + 1).log()


def _is_number(x):
    return isinstance(x, numbers.Real)      # int, float, bool, numpy scalars, Fraction


def _model_width(model):
    if hasattr(model, "nin"):
        return model.nin
    if hasattr(model, "w"):
        return len(model.w)
    if hasattr(model, "neurons") and model.neurons:
        return len(model.neurons[0].w)
    return None


def _check_data(model, xs, ys):
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys):
        raise ValueError(f"xs has {len(xs)} samples but ys has {len(ys)}")
    if not xs:
        raise ValueError("xs and ys are empty: nothing to train on")
    width = _model_width(model)
    rows = []
    for i, row in enumerate(xs):
        if _is_number(row):
            row = [row]
        try:
            row = list(row)
        except TypeError:
            raise TypeError(f"xs[{i}] must be a row of numbers, not {type(row).__name__}") from None
        if len(row) != len(rows[0] if rows else row):
            raise ValueError(f"ragged xs: row {i} has {len(row)} values, row 0 has {len(rows[0])}")
        for j, x in enumerate(row):
            if not _is_number(x):
                raise TypeError(f"xs[{i}][{j}] must be a number, not {type(x).__name__}")
        rows.append([float(x) for x in row])
    if width is not None and len(rows[0]) != width:
        raise ValueError(f"the model takes {width} inputs but the rows of xs have {len(rows[0])}")
    targets = []
    for i, y in enumerate(ys):
        if not _is_number(y):
            raise TypeError(f"ys[{i}] must be a number, not {type(y).__name__}")
        targets.append(float(y))
    return rows, targets


def _check_lr(lr, step):
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or math.isinf(lr):
        where = f" at step {step}" if step is not None else ""
        raise ValueError(f"the learning rate must be a positive finite number{where}, not {lr!r}")
    return float(lr)


def _make_optimizer(optimizer):
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}: choose one of {OPTIMIZERS}")
        return SGD() if optimizer == "sgd" else Adam()
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError("optimizer must be 'sgd', 'adam', or an object with step(params, lr)")
    return optimizer


def _progress(steps, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=steps, unit="step", dynamic_ncols=True)


def train(model, xs, ys, *, steps, lr, loss="mse", reg=0.0, batch_size=None, optimizer="sgd",
          progress=True, seed=None, callback=None):
    """Train `model` on (xs, ys) for `steps` steps; return the History.

    lr: a float, or a callable of the step number giving the rate.
    loss: "mse", "hinge" (targets -1/+1), "bce" (a logit; targets 0/1 or
      -1/+1), or a callable (output, target) -> Value for one sample.
    reg: L2 penalty reg * sum(p**2) over the parameters.
    batch_size: None for the full batch, else that many samples drawn at
      random each step (with `seed`).
    optimizer: "sgd", "adam", or an object with step(params, lr), such as
      SGD(momentum=0.9) or Adam().
    callback: called as callback(step, loss, accuracy) after each step.
    A NaN or infinite loss stops training with FloatingPointError naming the
    step; the parameters are then those from before that step.
    """
    # -- everything is checked before any training starts ----------------------------
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, not {steps!r}")
    if not callable(lr):
        _check_lr(lr, None)
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: choose one of {LOSSES} or pass a callable")
    elif not callable(loss):
        raise TypeError(f"loss must be one of {LOSSES} or a callable, not {type(loss).__name__}")
    if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not reg >= 0 or math.isinf(reg):
        raise ValueError(f"reg must be a finite number >= 0, not {reg!r}")
    optimizer = _make_optimizer(optimizer)
    rows, targets = _check_data(model, xs, ys)
    n = len(rows)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or not 1 <= batch_size <= n):
        raise ValueError(f"batch_size must be None or an int from 1 to {n}, not {batch_size!r}")
    params = model.parameters()
    if not params:
        raise ValueError("the model has no parameters")
    engine = engine_of(params[0])
    Value = engine.Value
    if loss in ("hinge", "bce") and any(t not in (-1.0, 0.0, 1.0) for t in targets):
        raise ValueError(f"the {loss} loss needs targets of -1/+1 (or 0/1)")
    if loss == "hinge":
        targets = [1.0 if t > 0 else -1.0 for t in targets]
    if loss == "bce":
        targets = [1.0 if t > 0 else 0.0 for t in targets]
    per_sample = {"mse": mse_loss, "hinge": hinge_loss, "bce": bce_with_logits_loss}.get(loss, loss)
    classify = loss in ("hinge", "bce") or (loss == "mse" and all(t in (-1.0, 1.0) for t in targets))

    # -- the graph, built once over placeholder leaves -------------------------------
    size = n if batch_size is None else batch_size
    inputs = [[Value(x) for x in rows[i]] for i in range(size)]
    target_leaves = [Value(targets[i]) for i in range(size)]
    outputs = [model(row) for row in inputs]
    if not all(isinstance(o, Value) for o in outputs):
        raise ValueError("train() needs a model with one output per sample")
    total = engine.vsum([per_sample(o, t) for o, t in zip(outputs, target_leaves)]) * (1.0 / size)
    if reg:
        total = total + reg * engine.vsum(p * p for p in params)
    positive = [t > 0 for t in targets]

    rng = random.Random(seed)
    history = History()
    bar = _progress(steps, progress)
    try:
        for step in range(steps):
            if batch_size is not None:
                batch = rng.sample(range(n), size)
                for slot, i in enumerate(batch):
                    for leaf, x in zip(inputs[slot], rows[i]):
                        leaf.data = x
                    target_leaves[slot].data = targets[i]
            else:
                batch = range(n)
            rate = _check_lr(lr(step), step) if callable(lr) else lr
            try:
                value = total.forward().data
            except (ArithmeticError, ValueError) as exc:
                raise FloatingPointError(f"the loss could not be computed at step {step} ({exc}): "
                                         f"training stopped, the parameters are those from before "
                                         f"step {step}") from exc
            if not math.isfinite(value):
                raise FloatingPointError(f"the loss is {value} at step {step}: training stopped, "
                                         f"the parameters are those from before step {step}")
            for p in params:
                p.grad = 0.0
            total.backward()
            optimizer.step(params, rate)
            accuracy = None
            if classify:
                hits = sum((o.data > 0) == positive[i] for o, i in zip(outputs, batch))
                accuracy = hits / size
            history.loss.append(value)
            history.accuracy.append(accuracy)
            if bar is not None:
                bar.set_postfix(loss=f"{value:.4f}", acc="-" if accuracy is None else f"{accuracy:.0%}",
                                refresh=False)
                bar.update(1)
            if callback is not None:
                callback(step, value, accuracy)
    finally:
        if bar is not None:
            bar.close()
    return history
