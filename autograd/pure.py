"""Pure-Python reference engine: the same API and numbers as the compiled core.

A Value holds a float, its gradient and the Values it was computed from.
`backward()` applies the chain rule over the graph in reverse creation order,
which is the order the compiled core sweeps its arena in, so both engines add
the same numbers in the same order and agree bit for bit.

Semantics shared with the compiled core (autograd.core):
- backward(): interior grads of the graph are reset, the root's grad becomes
  1 and leaves accumulate (two calls give exactly twice the leaf grads).
- forward(): recompute every interior node from the current leaf data.
- An op raises where the same operation on floats, or the `math` function of
  the same name, raises: ZeroDivisionError for x / 0, `**` as math.pow, exp,
  log and sqrt as in `math`.  Never a complex number.
- Backward formulas follow IEEE arithmetic (a pole gives inf, a hole NaN), as
  PyTorch does, instead of raising.
- Value(x).__init__(y) again turns that Value into a leaf holding y in place,
  as micrograd's constructor does: the nodes that used it now use the leaf.
- Labels are stored as exact `str` (a str subclass is copied).
- Value(data, _children, _op) makes a custom node, as micrograd's: its data
  is what the caller computed, and backward() runs the function assigned to
  its `_backward` when it reaches it.  function(forward, *partials) makes a
  custom op that forward() can replay too.

No recursion anywhere, and no closures that hold their own output: nothing
here builds reference cycles (a user's `_backward` closure may: the cyclic
GC collects it), so memory comes back by reference counting.
"""
from __future__ import annotations

import heapq
import itertools
import math
import numbers
import operator
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, SupportsIndex

__all__ = ["Value", "no_grad", "enable_grad", "is_grad_enabled", "vsum", "dot", "dense", "logsumexp", "function",
           "Function", "Block", "Replay"]

_creation_counter = itertools.count()  # creation order == the arena's index order
class _GradMode(threading.local):
    """no_grad() nesting depth, per thread as PyTorch's grad mode is."""
    depth = 0


_grad_mode = _GradMode()
# One sweep at a time, as the compiled core's sweeps run under the GIL without
# a break: `grad += g` in Python could otherwise lose another thread's update.
# Re-entrant: a signal handler may start a sweep in the middle of one.
_sweep_lock = threading.RLock()
# Bumped when a graph changes shape (an interior Value re-initialized as a
# leaf): every cached topological order is then stale.
_structure = [0]


def _as_float(x):
    """x as a float if it is a real number, else None."""
    if isinstance(x, (int, float, numbers.Real)):
        return float(x)  # OverflowError for an int too large, as floats
    return None


def _real(x, what):
    value = _as_float(x)
    if value is None:
        raise TypeError(f"{what} must be a real number (int, float, bool), not {type(x).__name__}")
    return value


def _exact_str(value, what):
    """A label or an `_op` as an exact str (a str subclass is copied)."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise TypeError(f"{what} must be a str, not {type(value).__name__}")


def _children_list(children):
    """Value(data, _children, ...)'s children as a private list of Values."""
    if type(children) is tuple and not children:
        return []
    kids = None
    if not isinstance(children, (str, bytes)):
        try:
            kids = list(children)
        except TypeError:
            pass
    if kids is None:
        raise TypeError(f"Value _children must be a tuple of Values, not {type(children).__name__} "
                        "(a label is given as label=...)")
    for k, kid in enumerate(kids):
        if not isinstance(kid, Value):
            raise TypeError(f"Value _children must be Values of this engine, not "
                            f"{type(kid).__module__}.{type(kid).__qualname__} (child {k})")
    return kids


def _require_initialized(v):
    """Raise the clear error for a Value made by Value.__new__ alone."""
    v._kind   # an unset slot: __getattr__ raises RuntimeError


def _exponent_text(c):
    return repr(int(c)) if c.is_integer() and abs(c) < 1e16 else repr(c)


# ---------------------------------------------------------------------------
# IEEE arithmetic for the backward formulas: what C computes where Python's
# float operators raise (the compiled core computes these in C), down to the
# NaN: an invalid operation gives the machine's default NaN, and a NaN input
# comes out as it went in.
# ---------------------------------------------------------------------------

_INVALID = math.inf - math.inf   # the NaN an invalid operation gives here (0/0, log(-1))


def _div(a, b):
    if b != 0.0:
        return a / b
    if a != a:
        return a
    if a == 0.0:
        return _INVALID
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _log(x):
    if x > 0.0 or x != x:
        return math.log(x)
    return -math.inf if x == 0.0 else _INVALID


def _math_pow(x, y):
    """math.pow as Python 3.11+ defines it: 0.0 ** -inf is inf (IEEE 754;
    it raised ValueError before 3.11), so that both engines agree on every
    Python."""
    if x == 0.0 and y == -math.inf:
        return math.inf
    return math.pow(x, y)


def _pow(x, y):
    try:
        return math.pow(x, y)
    except (ValueError, OverflowError):
        odd = y.is_integer() and y % 2.0 == 1.0
        if x == 0.0:                      # pole: 0 ** negative
            return math.copysign(math.inf, x) if odd else math.inf
        if x < 0.0 and not y.is_integer():
            return _INVALID
        return -math.inf if (x < 0.0 and odd) else math.inf   # overflow


# ---------------------------------------------------------------------------
# The op table: each op's forward formula beside its local derivatives.
# derivatives(g, x, y, out) returns what is added to the children's grads
# (dy is None for one-input ops); g is the node's grad, out its data.
# ---------------------------------------------------------------------------

def _sigmoid(x):
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _pow_dx(g, x, y):
    return 0.0 if y == 0.0 else y * _pow(x, y - 1.0) * g


def _pow_dy(g, x, y, out):
    return 0.0 if (x == 0.0 and y >= 0.0) else out * _log(x) * g


_OPS = {
    # kind      symbol     forward(x, y)                     derivatives(g, x, y, out) -> (dx, dy)
    "add":     ("+",       lambda x, y: x + y,               lambda g, x, y, out: (g, g)),
    "sub":     ("-",       lambda x, y: x - y,               lambda g, x, y, out: (g, -g)),
    "mul":     ("*",       lambda x, y: x * y,               lambda g, x, y, out: (y * g, x * g)),
    "div":     ("/",       lambda x, y: x / y,               lambda g, x, y, out: (_div(g, y), -_div(out * g, y))),
    "neg":     ("neg",     lambda x, y: -x,                  lambda g, x, y, out: (-g, None)),
    "pow":     ("**",      _math_pow,                        lambda g, x, y, out: (_pow_dx(g, x, y), _pow_dy(g, x, y, out))),
    "powc":    ("**",      _math_pow,                        lambda g, x, y, out: (_pow_dx(g, x, y), None)),
    "relu":    ("ReLU",    lambda x, y: 0.0 if x < 0.0 else x, lambda g, x, y, out: (g if out > 0.0 else 0.0, None)),
    "abs":     ("abs",     lambda x, y: abs(x),              lambda g, x, y, out: (g if x > 0.0 else (-g if x < 0.0 else 0.0), None)),
    # the derivative graphs' division, power and log (create_graph): IEEE
    # results (inf, NaN) where / and ** raise, as backward() computes them
    "idiv":    ("/",       _div,                             lambda g, x, y, out: (_div(g, y), -_div(out * g, y))),
    "ipow":    ("**",      _pow,                             lambda g, x, y, out: (_pow_dx(g, x, y), _pow_dy(g, x, y, out))),
    "ipowc":   ("**",      _pow,                             lambda g, x, y, out: (_pow_dx(g, x, y), None)),
    "ilog":    ("ilog",    lambda x, y: _log(x),             lambda g, x, y, out: (_div(g, x), None)),
    # tanh, sigmoid, exp, log, sqrt, sin, ...: the rows of FUNCTIONS, below
}
_CONSTANT_EXPONENT = ("powc", "ipowc")     # x ** c: c is a leaf that gets no gradient


# ---------------------------------------------------------------------------
# The smooth one-input functions, one row each (the compiled core has the same
# rows, in csrc/unary.pxi):
#   forward(x)          the value: Python's math function of the same name
#   slope(m, x, out)    d out / dx, with the functions in m: m is _NUMBERS for
#                       the number backward() adds (IEEE: never raises), or
#                       _WITH_OPS for the same derivative written with Value
#                       ops (gradients(create_graph=True), autograd/higher.py)
#   divides             the chain rule is g / slope, else slope * g
# ---------------------------------------------------------------------------

_LN2, _LN10 = math.log(2.0), math.log(10.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SQRT1_2 = math.sqrt(0.5)
_GELU_PDF = _TWO_OVER_SQRT_PI * _SQRT1_2 * 0.5          # 1 / sqrt(2 pi)


def _softplus(x):
    """log(1 + exp(x)), stable for any x."""
    return (x if x > 0.0 else 0.0) + math.log1p(math.exp(-abs(x)))


def _gelu(x):
    """x * Phi(x), PyTorch's exact (erf) form."""
    return x * 0.5 * (1.0 + math.erf(x * _SQRT1_2))


def _gelu_slope(m, x, out):
    """Phi(x) + x * phi(x)."""
    return 0.5 * (1.0 + m.erf(x * _SQRT1_2)) + x * (m.exp(-0.5 * x * x) * _GELU_PDF)


def _nan_outside_domain(f):
    """f, giving C's NaN where Python's math raises ValueError (sin(inf),
    sqrt(-1)): a slope may be taken at data changed since forward() (a
    backward() without forward()), where the compiled core's C gives NaN."""
    def ieee(x):
        try:
            return f(x)
        except ValueError:
            return _INVALID
    return ieee


def _cosh_ieee(x):
    try:
        return math.cosh(x)
    except OverflowError:
        return math.inf


def _sinh_ieee(x):
    try:
        return math.sinh(x)
    except OverflowError:
        return math.copysign(math.inf, x)


class _NUMBERS:
    """The functions a slope uses, on floats, as C computes them: never an
    exception (inf where math overflows, NaN outside the domain)."""
    sin, cos, sqrt = map(staticmethod, map(_nan_outside_domain, (math.sin, math.cos, math.sqrt)))
    exp, erf = staticmethod(lambda x: _exp_ieee(x)), staticmethod(math.erf)
    cosh, sinh, sigmoid = map(staticmethod, (_cosh_ieee, _sinh_ieee, _sigmoid))


class _WITH_OPS:
    """The same functions on Values: the slopes written with ops."""
    sin, cos, sqrt, exp, erf, cosh, sinh, sigmoid = (
        staticmethod(operator.methodcaller(name))
        for name in ("sin", "cos", "sqrt", "exp", "erf", "cosh", "sinh", "sigmoid"))


FUNCTIONS = {
    # kind       forward       slope(m, x, out)                        divides
    "tanh":     (math.tanh,    lambda m, x, out: 1.0 - out * out,      False),
    "sigmoid":  (_sigmoid,     lambda m, x, out: out * (1.0 - out),    False),
    "exp":      (math.exp,     lambda m, x, out: out,                  False),
    "log":      (math.log,     lambda m, x, out: x,                    True),
    "sqrt":     (math.sqrt,    lambda m, x, out: 2.0 * out,            True),
    "sin":      (math.sin,     lambda m, x, out: m.cos(x),             False),
    "cos":      (math.cos,     lambda m, x, out: -m.sin(x),            False),
    "tan":      (math.tan,     lambda m, x, out: 1.0 + out * out,      False),
    "asin":     (math.asin,    lambda m, x, out: m.sqrt(1.0 - x * x),  True),
    "acos":     (math.acos,    lambda m, x, out: -m.sqrt(1.0 - x * x), True),
    "atan":     (math.atan,    lambda m, x, out: 1.0 + x * x,          True),
    "sinh":     (math.sinh,    lambda m, x, out: m.cosh(x),            False),
    "cosh":     (math.cosh,    lambda m, x, out: m.sinh(x),            False),
    "asinh":    (math.asinh,   lambda m, x, out: m.sqrt(x * x + 1.0),  True),
    "acosh":    (math.acosh,   lambda m, x, out: m.sqrt(x * x - 1.0),  True),
    "atanh":    (math.atanh,   lambda m, x, out: 1.0 - x * x,          True),
    "expm1":    (math.expm1,   lambda m, x, out: m.exp(x),             False),
    "exp2":     (getattr(math, "exp2", None), lambda m, x, out: out * _LN2, False),
    "log1p":    (math.log1p,   lambda m, x, out: 1.0 + x,              True),
    "log2":     (math.log2,    lambda m, x, out: x * _LN2,             True),
    "log10":    (math.log10,   lambda m, x, out: x * _LN10,            True),
    "cbrt":     (getattr(math, "cbrt", None), lambda m, x, out: 3.0 * out * out, True),
    "erf":      (math.erf,     lambda m, x, out: _TWO_OVER_SQRT_PI * m.exp(-(x * x)), False),
    "erfc":     (math.erfc,    lambda m, x, out: -_TWO_OVER_SQRT_PI * m.exp(-(x * x)), False),
    "softplus": (_softplus,    lambda m, x, out: m.sigmoid(x),         False),
    "gelu":     (_gelu,        _gelu_slope,                            False),
}
for _kind in [k for k, row in FUNCTIONS.items() if row[0] is None]:
    del FUNCTIONS[_kind]        # exp2 and cbrt: Python's math has them from 3.11 on


def _op_row(kind, forward, slope, divides):
    """A row of FUNCTIONS as _OPS holds ops: (symbol, forward(x, y),
    derivatives(g, x, y, out))."""
    if divides:
        return kind, lambda x, y: forward(x), lambda g, x, y, out: (_div(g, slope(_NUMBERS, x, out)), None)
    return kind, lambda x, y: forward(x), lambda g, x, y, out: (slope(_NUMBERS, x, out) * g, None)


for _kind, _row in FUNCTIONS.items():
    _OPS[_kind] = _op_row(_kind, *_row)


def _sum_of(xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def _dot_of(xs):
    """xs = bias, w0..w(n-1), x0..x(n-1): bias + w0*x0 + ... left to right."""
    n = len(xs) // 2
    out = xs[0]
    for w, x in zip(xs[1:n + 1], xs[n + 1:]):
        out = out + w * x
    return out


def _sum_forward(args):
    """v0 + v1 + ... left to right; its derivative is 1 for every input."""
    return _sum_of([v._data for v in args])


def _lse(xs):
    """log(exp(x0) + exp(x1) + ...) shifted by the max m; its derivative in
    x_k is exp(x_k - out).  A NaN gives that NaN (the first); m = +-inf gives m."""
    m = xs[0]
    for x in xs:
        if x != x:
            return x
        if x > m:
            m = x
    if math.isinf(m):
        return m
    s = 0.0
    for x in xs:
        s = s + math.exp(x - m)
    return m + math.log(s)


def _exp_ieee(x):
    """exp(x), inf where it overflows, as the compiled core's C exp: a
    derivative never raises (the softmax's exp(x_k - out) overflows only
    where x_k was changed after out was computed)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _dot_forward(args):
    """bias + w0*x0 + w1*x1 + ... left to right (args = bias, w0..w(n-1), x0..x(n-1))."""
    return _dot_of([v._data for v in args])


def _evaluate(node):
    args = node._args
    kind = node._kind            # read last: see Value.__init__
    if kind == "leaf":           # re-initialized since the sweep looked
        return node._data
    if kind == "custom":
        return _custom_forward(node)
    if kind == "lse":
        return _lse([v._data for v in args])
    if kind == "sum":
        return _sum_forward(args)
    if kind == "dot":
        return _dot_forward(args)
    x = args[0]._data
    y = args[1]._data if len(args) == 2 else 0.0
    return _OPS[kind][1](x, y)


def _backprop(node):
    """Add node's contributions to its inputs' grads (the chain rule)."""
    args, g = node._args, node._grad
    kind = node._kind            # read last: see Value.__init__
    op = _OPS.get(kind)
    if op is not None:                          # one- and two-input ops
        x = args[0]._data
        y = args[1]._data if len(args) == 2 else 0.0
        dx, dy = op[2](g, x, y, node._data)
        args[0]._grad += dx
        if dy is not None:
            args[1]._grad += dy
    elif kind == "sum":
        for v in args:
            v._grad += g
    elif kind == "dot":
        n = len(args) // 2
        args[0]._grad += g
        for w, x in zip(args[1:n + 1], args[n + 1:]):   # d/dw = x, d/dx = w
            w._grad += x._data * g
            x._grad += w._data * g
    elif kind == "lse":                         # d/dx_k = exp(x_k - out): the softmax
        out = node._data
        for v in args:
            v._grad += _exp_ieee(v._data - out) * g   # v > out only if v changed since
    elif kind == "custom":
        _run_custom(node)


# ---------------------------------------------------------------------------
# Custom nodes: a user's op, whose rules are Python code
# ---------------------------------------------------------------------------

class _Custom:
    """What a custom node runs: a lecture-style `_backward` function, or the
    forward formula and partial derivatives of a function()."""
    __slots__ = ("op", "backward", "forward", "partials")

    def __init__(self, op, backward=None, forward=None, partials=None):
        self.op, self.backward, self.forward, self.partials = op, backward, forward, partials


def _name_in_error(exc, op):
    if hasattr(exc, "add_note"):        # Python 3.11+
        exc.add_note(f"(raised by the custom node '{op}')")


def _run_custom(node):
    """A custom node's chain rule: its `_backward`, or its partials."""
    args = node._args
    info = node._custom                 # read last: see Value.__init__
    if info is None:                    # re-initialized as a leaf since the sweep
        return                          # looked (a gc callback): nothing to run
    try:
        if info.backward is not None:
            info.backward()
        elif info.partials is not None:
            xs = [v._data for v in args]
            ds = [_real(p(*xs), f"the partial derivative {k} of '{info.op}'")
                  for k, p in enumerate(info.partials)]
            if node._kind != "custom":      # re-initialized by that code
                return
            g = node._grad
            for v, d in zip(args, ds):
                v._grad += d * g
    except BaseException as exc:
        _name_in_error(exc, info.op)
        raise


def _custom_forward(node):
    args = node._args
    info = node._custom                 # read last: see Value.__init__
    if info is None:                    # re-initialized as a leaf since the sweep looked
        return node._data
    if info.forward is None:
        _no_forward_formula(info.op)
    try:
        return _real(info.forward(*[v._data for v in args]), f"the result of '{info.op}'")
    except BaseException as exc:
        _name_in_error(exc, info.op)
        raise


def _no_forward_formula(op):
    raise RuntimeError(
        f"forward() cannot recompute the custom node '{op}': it was made by "
        "Value(data, _children, _op) and has no forward formula. Make the op with "
        "autograd.function(forward, *partials) to replay it.")


def _restore(data, grad, label, cls=None):
    """A copy or an unpickled Value: a leaf of class `cls` (Value if None)."""
    v = (Value if cls is None else cls).__new__(Value if cls is None else cls)
    Value.__init__(v, data, label=label)
    v.grad = grad
    return v


class Value:
    """A scalar with a gradient: one node of a computation graph.

    `+ - * / **`, unary `-` and `abs()`, with a Value or a real number on
    either side, each make a new node; the methods below add activations and
    elementary functions.  An op raises where the same operation on floats,
    or the `math` function of the same name, raises: ZeroDivisionError for
    `x / 0`; ValueError for `log` or `sqrt` out of their domain and for `**`
    where `math.pow` refuses (a negative number to a fractional power, 0 to
    a negative one); OverflowError where the result overflows.  An operand
    that is not a real number gives TypeError.  Backward formulas never
    raise: a pole gives inf, a hole NaN.

    `<`, `<=`, `>` and `>=` with a Value or a real number compare the data
    as floats compare and give a bool (NaN compares False), so `sorted()`,
    `min()` and `max()` take Values; `==`, `!=` and `hash()` are identity,
    as in micrograd, so Values work in sets and as dict keys.  `item()`
    gives the data as a float.

    With `_children`, this is micrograd's constructor of a custom node: its
    data is what the caller computed, and backward() runs the function
    assigned to its `_backward` when it reaches it (under no_grad() the node
    is a leaf).  Calling `__init__` again on an existing Value turns it into
    a leaf holding `data`, in place: the nodes that used it now use the leaf.

    Args:
        data: The number held: a real number (int, float, bool, numpy scalar).
        _children: The Values a custom node was computed from; empty for a leaf.
        _op: A custom node's name, as autograd.graph draws it.
        label: A name for pictures and debugging.

    Raises:
        TypeError: `data` is not a real number, `label` or `_op` is not a
            str, or `_children` is not an iterable of Values of this engine.
        OverflowError: `data` is an int too large for a float.
        RuntimeError: `__init__` is called again on a Value, with `_children`.

    Examples:
        >>> a, b = Value(2.0), Value(-3.0)
        >>> c = a * b + a
        >>> c.backward()
        >>> c.data, a.grad, b.grad
        (-4.0, -2.0, 2.0)
    """

    __slots__ = ("_data", "_grad", "_label", "_args", "_kind", "_id", "_order", "_custom",
                 "__dict__", "__weakref__")
    __array_ufunc__ = None  # numpy scalars on the left defer to our ops
    _data: float
    _grad: float
    _label: str
    _args: tuple[Value, ...]
    _kind: str
    _id: int | None
    _order: Any
    _custom: Any

    def __init__(self, data: float, _children: Iterable[Value] = (), _op: str = "",
                 label: str = "") -> None:
        """A leaf holding `data`, or with `_children` a custom node (see the class)."""
        data = _real(data, "Value data")
        label = _exact_str(label, "Value label")
        if type(_children) is tuple and not _children and _op == "":   # a plain leaf
            op, kids = "", ()
        else:
            op, kids = _exact_str(_op, "Value _op"), _children_list(_children)
        again = self._id is not None              # called again: a leaf in place
        if again and kids:
            raise RuntimeError("a Value gets children only when it is made: "
                               "Value(data, _children, _op) makes a new custom node")
        if again:
            if self._kind != "leaf":
                _structure[0] += 1
        else:
            self._id = next(_creation_counter)
        # _kind first: code that runs between any two of these lines (a signal
        # handler) and reads _kind last, as the sweeps do, sees either the old
        # node whole or a leaf
        self._kind = "leaf"
        self._args = ()
        self._data = data
        self._grad = 0.0
        self._label = label
        self._order = None
        self._custom = _Custom(op) if (op or kids) else None
        if kids and not _grad_mode.depth:
            self._args = tuple(kids)
            self._kind = "custom"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self._id = None     # not initialized yet: __init__ tells a first call from a second
        return self

    def __getattr__(self, name):
        # only reached when a slot was never set: Value.__new__(Value)
        if name in Value.__slots__:
            raise RuntimeError("this Value was never initialized (made by Value.__new__, "
                               "or its __init__ failed)")
        raise AttributeError(f"'{type(self).__name__}' object has no attribute {name!r}")

    @classmethod
    def _node(cls, data, args, kind):
        """A computed node (a leaf under no_grad)."""
        if _grad_mode.depth:
            args, kind = (), "leaf"
        out = object.__new__(cls)          # every slot is set below
        out._data = data
        out._grad = 0.0
        out._label = ""
        out._args = args
        out._kind = kind
        out._id = next(_creation_counter)
        out._order = None
        out._custom = None
        return out

    # -- attributes ------------------------------------------------------------
    @property
    def data(self) -> float:
        """The number this Value holds.

        Setting a leaf's data changes what the next forward() computes from
        it.  Setting it to anything but a real number raises TypeError.
        """
        return self._data

    @data.setter
    def data(self, value: float) -> None:
        value = _real(value, "Value data")
        _require_initialized(self)
        self._data = value

    @property
    def grad(self) -> float:
        """The derivative of the last backward() root with respect to this Value.

        0.0 until a backward() reaches it.  backward() resets interior nodes'
        grads and adds into leaves' grads, so leaves accumulate over calls
        until zeroed.  Setting it to anything but a real number raises
        TypeError.
        """
        return self._grad

    @grad.setter
    def grad(self, value: float) -> None:
        value = _real(value, "Value grad")
        _require_initialized(self)
        self._grad = value

    @property
    def label(self) -> str:
        """A name for pictures (autograd.graph) and debugging; '' by default.

        Setting it to anything but a str raises TypeError.
        """
        return self._label

    @label.setter
    def label(self, value: str) -> None:
        value = _exact_str(value, "Value label")
        _require_initialized(self)
        self._label = value

    @property
    def _op(self):
        custom, args = self._custom, self._args
        kind = self._kind                          # read last: see __init__
        if custom is not None:
            return custom.op
        if kind == "leaf":
            return ""
        if kind in _CONSTANT_EXPONENT:
            return "**" + _exponent_text(args[1]._data)
        if kind in ("sum", "dot"):
            return kind
        if kind == "lse":
            return "logsumexp"
        return _OPS[kind][0]

    @property
    def _children(self):
        """The inputs in order (a constant exponent is not one)."""
        return self._args[:1] if self._kind in _CONSTANT_EXPONENT else self._args

    @property
    def _prev(self):
        """The set of children, as micrograd's `_prev`."""
        return set(self._children)

    def _rule(self):
        """(kind, children, exponent, partials, op): what autograd.higher
        needs to write this node's derivative with ops.  The children as
        `_children`; a `**c` node's constant exponent; an autograd.function's
        partials."""
        custom, args = self._custom, self._args
        kind = self._kind                          # read last: see __init__
        exponent = args[1]._data if kind in _CONSTANT_EXPONENT else None
        return (kind, args[:1] if kind in _CONSTANT_EXPONENT else args, exponent,
                None if custom is None else custom.partials, self._op)

    @property
    def _backward(self):
        """This node's chain rule, applied once: adds its grad times each
        local derivative into its children's grads (micrograd's `_backward`).

        A custom node's is the function assigned to it; a leaf's does nothing.
        """
        _require_initialized(self)
        custom = self._custom           # one read: a handler may re-initialize self
        if custom is not None and custom.backward is not None:
            return custom.backward
        return self._local_backward

    @_backward.setter
    def _backward(self, fn):
        if not callable(fn):
            raise TypeError(f"_backward must be callable, not {type(fn).__name__}")
        _require_initialized(self)
        if self._kind not in ("custom", "leaf"):
            raise TypeError(f"cannot set _backward on a built-in '{self._op}' node: make a custom "
                            "node with Value(data, _children, _op) and set its _backward")
        # a new record for this node alone: the nodes a function() makes
        # share its record, and their chain rule must stay the partials.
        # This node's is now `fn`; its forward formula still recomputes it.
        old = self._custom
        self._custom = _Custom("" if old is None else old.op, fn,
                               None if old is None else old.forward, None)

    def _local_backward(self):
        """Apply this node's chain rule once (what `_backward` returns for a
        built-in node)."""
        _require_initialized(self)
        if self._kind != "leaf":
            _backprop(self)

    def __repr__(self):
        return f"Value(data={self._data!r}, grad={self._grad!r})"

    def __reduce__(self):
        # pickles and copies as a leaf with its data, grad, label, class and
        # attributes; the graph behind it is not carried along
        cls = None if type(self) is Value else type(self)
        return (_restore, (self._data, self._grad, self._label, cls), dict(self.__dict__) or None)

    # -- building the graph ------------------------------------------------------
    def _binary(self, kind, other, reflected=False):
        if not isinstance(other, Value):
            c = _as_float(other)
            if c is None:
                return NotImplemented
            other = Value(c)
            if kind in ("pow", "ipow") and not reflected:
                kind = kind + "c"               # x ** c: the exponent gets no gradient
        x, y = (other, self) if reflected else (self, other)
        out = _OPS[kind][1](x._data, y._data)
        return Value._node(out, (x, y), kind)

    def _unary(self, kind):
        return Value._node(_OPS[kind][1](self._data, 0.0), (self,), kind)

    def __add__(self, other: Value | float) -> Value: return self._binary("add", other)
    def __radd__(self, other: Value | float) -> Value: return self._binary("add", other, reflected=True)
    def __sub__(self, other: Value | float) -> Value: return self._binary("sub", other)
    def __rsub__(self, other: Value | float) -> Value: return self._binary("sub", other, reflected=True)
    def __mul__(self, other: Value | float) -> Value: return self._binary("mul", other)
    def __rmul__(self, other: Value | float) -> Value: return self._binary("mul", other, reflected=True)
    def __truediv__(self, other: Value | float) -> Value: return self._binary("div", other)
    def __rtruediv__(self, other: Value | float) -> Value: return self._binary("div", other, reflected=True)

    def __pow__(self, other: Value | float, modulo: None = None) -> Value:
        if modulo is not None:
            return NotImplemented
        return self._binary("pow", other)

    def __rpow__(self, other: Value | float, modulo: None = None) -> Value:
        if modulo is not None:
            return NotImplemented
        return self._binary("pow", other, reflected=True)

    def __neg__(self) -> Value: return self._unary("neg")
    def __abs__(self) -> Value: return self._unary("abs")
    def relu(self) -> Value:
        """The rectified linear unit, max(0, x), as micrograd's.

        Its derivative is 1 where the result is above 0, else 0.

        Returns:
            A new Value.
        """
        return self._unary("relu")

    # the smooth functions of FUNCTIONS (tanh .. gelu), as Python's math names them
    def tanh(self) -> Value:
        """The hyperbolic tangent.

        Returns:
            A new Value.
        """
        return self._unary("tanh")

    def sigmoid(self) -> Value:
        """The logistic function 1 / (1 + exp(-x)), without overflow for any x.

        Returns:
            A new Value.
        """
        return self._unary("sigmoid")

    def exp(self) -> Value:
        """e to the power of this Value, as math.exp.

        Returns:
            A new Value.

        Raises:
            OverflowError: The result is too large for a float (x > 709.78...).
        """
        return self._unary("exp")

    def log(self) -> Value:
        """The natural logarithm, as math.log.

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is 0 or negative.
        """
        return self._unary("log")

    def sqrt(self) -> Value:
        """The square root, as math.sqrt.

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is negative.
        """
        return self._unary("sqrt")

    def sin(self) -> Value:
        """The sine, as math.sin; its derivative is cos(x).

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is infinite.
        """
        return self._unary("sin")

    def cos(self) -> Value:
        """The cosine, as math.cos; its derivative is -sin(x).

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is infinite.
        """
        return self._unary("cos")

    def tan(self) -> Value:
        """The tangent, as math.tan; its derivative is 1 + tan(x) ** 2.

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is infinite.
        """
        return self._unary("tan")

    def asin(self) -> Value:
        """The arc sine, as math.asin; its derivative is 1 / sqrt(1 - x ** 2).

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is outside [-1, 1].
        """
        return self._unary("asin")

    def acos(self) -> Value:
        """The arc cosine, as math.acos; its derivative is -1 / sqrt(1 - x ** 2).

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is outside [-1, 1].
        """
        return self._unary("acos")

    def atan(self) -> Value:
        """The arc tangent, as math.atan; its derivative is 1 / (1 + x ** 2).

        Returns:
            A new Value.
        """
        return self._unary("atan")

    def sinh(self) -> Value:
        """The hyperbolic sine, as math.sinh; its derivative is cosh(x).

        Returns:
            A new Value.

        Raises:
            OverflowError: The result is too large for a float (abs(x) > 710.47...).
        """
        return self._unary("sinh")

    def cosh(self) -> Value:
        """The hyperbolic cosine, as math.cosh; its derivative is sinh(x).

        Returns:
            A new Value.

        Raises:
            OverflowError: The result is too large for a float (abs(x) > 710.47...).
        """
        return self._unary("cosh")

    def asinh(self) -> Value:
        """The inverse hyperbolic sine, as math.asinh; its derivative is 1 / sqrt(x ** 2 + 1).

        Returns:
            A new Value.
        """
        return self._unary("asinh")

    def acosh(self) -> Value:
        """The inverse hyperbolic cosine, as math.acosh; its derivative is 1 / sqrt(x ** 2 - 1).

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is below 1.
        """
        return self._unary("acosh")

    def atanh(self) -> Value:
        """The inverse hyperbolic tangent, as math.atanh; its derivative is 1 / (1 - x ** 2).

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is outside (-1, 1).
        """
        return self._unary("atanh")

    def expm1(self) -> Value:
        """e ** x - 1, as math.expm1 (exact near 0); its derivative is e ** x.

        Returns:
            A new Value.

        Raises:
            OverflowError: The result is too large for a float (x > 709.78...).
        """
        return self._unary("expm1")

    def exp2(self) -> Value:
        """2 ** x, as math.exp2 (Python 3.11+); its derivative is 2 ** x * log(2).

        Returns:
            A new Value.

        Raises:
            OverflowError: The result is too large for a float (x >= 1024).
        """
        return self._unary("exp2")

    def log1p(self) -> Value:
        """log(1 + x), as math.log1p (exact near 0); its derivative is 1 / (1 + x).

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is -1 or below.
        """
        return self._unary("log1p")

    def log2(self) -> Value:
        """The base-2 logarithm, as math.log2; its derivative is 1 / (x * log(2)).

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is 0 or negative.
        """
        return self._unary("log2")

    def log10(self) -> Value:
        """The base-10 logarithm, as math.log10; its derivative is 1 / (x * log(10)).

        Returns:
            A new Value.

        Raises:
            ValueError: This Value is 0 or negative.
        """
        return self._unary("log10")

    def cbrt(self) -> Value:
        """The cube root, as math.cbrt (Python 3.11+); its derivative is 1 / (3 * cbrt(x) ** 2).

        Returns:
            A new Value.
        """
        return self._unary("cbrt")

    def erf(self) -> Value:
        """The error function, as math.erf; its derivative is 2 / sqrt(pi) * exp(-x ** 2).

        Returns:
            A new Value.
        """
        return self._unary("erf")

    def erfc(self) -> Value:
        """The complementary error function 1 - erf(x), as math.erfc.

        Returns:
            A new Value.
        """
        return self._unary("erfc")

    def softplus(self) -> Value:
        """log(1 + exp(x)), computed without overflow for any x; its derivative is sigmoid(x).

        Returns:
            A new Value.
        """
        return self._unary("softplus")

    def gelu(self) -> Value:
        """x * Phi(x) (Phi: the normal distribution's CDF), PyTorch's exact GELU.

        Returns:
            A new Value.
        """
        return self._unary("gelu")

    def abs(self) -> Value:
        """The absolute value, as `abs(v)`; its derivative is 0 at 0.

        Returns:
            A new Value.
        """
        return self._unary("abs")

    def detach(self) -> Value:
        """A new leaf with this Value's data, outside any graph.

        Returns:
            A new leaf Value (of class Value, with grad 0 and no label).
        """
        return Value(self._data)

    def item(self) -> float:
        """The data as a Python float, as torch's `Tensor.item()`.

        Returns:
            The float this Value holds (the same as `.data`).
        """
        return self._data

    # -- ordering ----------------------------------------------------------------------
    # <, <=, >, >= compare the data and give a bool (no node, no gradient), so
    # sorted(), min() and max() work on Values; == and != stay identity (there
    # is no __eq__) and so does the hash, as micrograd's sets of Values need.
    def _compare(self, other, op):
        if isinstance(other, Value):
            y = other._data
        elif isinstance(other, int):
            return op(self._data, other)    # exactly, as Python compares a float with an int
        else:
            y = _as_float(other)            # another real number: the float it converts to
            if y is None:
                return NotImplemented       # Python's TypeError, or the other side's answer
        return op(self._data, y)

    def __lt__(self, other: Value | float) -> bool:
        return self._compare(other, operator.lt)

    def __le__(self, other: Value | float) -> bool:
        return self._compare(other, operator.le)

    def __gt__(self, other: Value | float) -> bool:
        return self._compare(other, operator.gt)

    def __ge__(self, other: Value | float) -> bool:
        return self._compare(other, operator.ge)

    # -- sweeps ----------------------------------------------------------------------
    def _reverse_topological_order(self):
        """Every node reachable from self, newest first: self, then the rest.

        A max-heap on creation order visits a node only after every node
        created after it, so each node comes after all of its users.  The
        rest is cached until a graph changes shape; self is left out of the
        cache so that it holds no reference cycle.
        """
        cached = self._order        # one read: code run meanwhile (a gc callback
        if cached is None or cached[0] != _structure[0]:   # re-initializing self) may reset it
            epoch = _structure[0]
            order, seen, heap = [], {self._id}, [(-self._id, self)]
            while heap:
                _, node = heapq.heappop(heap)
                order.append(node)
                for child in node._args:
                    if child._id not in seen:
                        seen.add(child._id)
                        heapq.heappush(heap, (-child._id, child))
            cached = (epoch, order[1:])
            self._order = cached
        return itertools.chain((self,), cached[1])

    def backward(self) -> None:
        """Gradients of this Value with respect to every node of its graph.

        Interior grads are reset first; this Value's grad becomes 1; leaves
        accumulate, so two calls give twice the leaf grads.  The results are
        in each node's `grad`.

        Raises:
            Exception: Whatever a custom node's `_backward` or a function()'s
                partial derivative raises, with a note naming the node.
        """
        with _sweep_lock:
            for node in self._reverse_topological_order():
                if node._kind != "leaf":
                    node._grad = 0.0
            self._grad = 1.0
            for node in self._reverse_topological_order():
                if node._kind != "leaf":
                    _backprop(node)

    def _gradients_of(self, inputs):
        """backward()'s gradients of this Value for each of `inputs` (0.0 for
        one it does not use), with every grad backward() writes put back as
        it was: autograd.higher.gradients() without create_graph."""
        inputs = list(inputs)
        for x in inputs:
            if not isinstance(x, Value):
                raise TypeError(f"an input must be a Value, not {type(x).__name__}")
        nodes = list(self._reverse_topological_order())
        saved = [v._grad for v in nodes]
        below = {id(v) for v in nodes}
        try:
            for v in nodes:
                v._grad = 0.0
            self.backward()
            return [x._grad if id(x) in below else 0.0 for x in inputs]
        finally:
            for v, g in zip(nodes, saved):
                v._grad = g

    def _uses(self, inputs):
        """(for each of `inputs` whether this Value depends on it, itself
        included; whether it depends on a node made before every one of
        them): grad() asks which of its arguments a function used and whether
        the result involves Values from outside the call (autograd/higher.py)."""
        inputs = list(inputs)
        for x in inputs:
            if not isinstance(x, Value):
                raise TypeError(f"an input must be a Value, not {type(x).__name__}")
        nodes = list(self._reverse_topological_order())     # newest first
        below = {id(v) for v in nodes}
        oldest = min((x._id for x in inputs), default=None)
        return ([id(x) in below for x in inputs],
                oldest is not None and nodes[-1]._id < oldest)

    def _gradient_values(self, inputs):
        """_gradients_of(inputs) as new leaf Values."""
        return [Value(g) for g in self._gradients_of(inputs)]

    def forward(self) -> Value:
        """Recompute every interior node of this graph from the leaves' data.

        Returns:
            This Value, so that `loss.forward().data` reads the new result.

        Raises:
            RuntimeError: A custom node made by Value(data, _children, _op)
                has no forward formula (checked before anything is
                recomputed; make the op with function() to replay it).
            ValueError: An op is out of its domain on the new data (`log`,
                `sqrt`, `**`), as it would be when built; likewise a
                division by zero raises ZeroDivisionError and an overflow
                OverflowError.
        """

        order = list(self._reverse_topological_order())
        for node in order:      # refuse before anything is recomputed
            custom = node._custom
            if node._kind == "custom" and custom is not None and custom.forward is None:
                _no_forward_formula(custom.op)
        with _sweep_lock:
            for node in reversed(order):
                if node._kind != "leaf":
                    value = _evaluate(node)
                    if node._kind != "leaf":    # else re-initialized meanwhile (a gc
                        node._data = value      # callback): it keeps its new data
        return self


for _kind in ("exp2", "cbrt"):         # from Python 3.11 on, as math has them
    if _kind not in FUNCTIONS:
        delattr(Value, _kind)


def _ieee_div(x, y):
    """x / y, inf or NaN where y is 0 (a derivative at a pole), as a node:
    autograd/higher.py's derivative graphs divide with it."""
    return x._binary("idiv", y)


def _ieee_pow(x, y):
    """x ** y, inf or NaN where math.pow raises, as a node (y a number: x ** c)."""
    return x._binary("ipow", y)


def _ieee_log(x):
    """log(x), -inf at 0 and NaN below, as a node."""
    return x._unary("ilog")


def _fused(kind, items, name):
    consts = [None if isinstance(item, Value) else _as_float(item) for item in items]
    for item, const in zip(items, consts):
        if const is None and not isinstance(item, Value):
            raise TypeError(f"{name}() takes Values or real numbers, not {type(item).__name__}")
    args = tuple(item if const is None else Value(const) for item, const in zip(items, consts))
    node = Value._node(0.0, args, kind)
    if kind == "lse":
        node._data = _lse([v._data for v in args])
    else:
        node._data = _sum_forward(args) if kind == "sum" else _dot_forward(args)
    return node


def _in_creation_order(values):
    """The Values sorted by when their nodes were made (children first)."""
    return sorted(values, key=lambda v: v._id)


def vsum(values: Iterable[Value | float]) -> Value:
    """The sum v0 + v1 + ... + vn, left to right, as one fused node.

    Bitwise equal to adding the values with `+` one by one.

    Args:
        values: Values or real numbers (numbers become constant leaves).

    Returns:
        A new Value (a `sum` node); Value(0.0) for an empty iterable.

    Raises:
        TypeError: An item is neither a Value nor a real number.

    Examples:
        >>> vsum([Value(1.0), 2.0, Value(3.5)]).data
        6.5
    """
    items = list(values)
    if not items:
        return Value(0.0)
    return _fused("sum", items, "vsum")


def logsumexp(values: Iterable[Value | float]) -> Value:
    """log(exp(v0) + exp(v1) + ...) as one fused node, stable for any values.

    The max is subtracted whenever the node is evaluated, so forward()
    replays stay exact (logits of +-1000 are fine).  Its derivative is the
    softmax, exp(v_k - out).

    Args:
        values: Values or real numbers (numbers become constant leaves).

    Returns:
        A new Value (a `logsumexp` node).

    Raises:
        ValueError: `values` is empty.
        TypeError: An item is neither a Value nor a real number.

    Examples:
        >>> logsumexp([Value(1000.0), Value(1000.0)]).data == 1000.0 + math.log(2.0)
        True
    """
    items = list(values)
    if not items:
        raise ValueError("logsumexp() of an empty sequence")
    return _fused("lse", items, "logsumexp")


def dot(weights: Iterable[Value | float], inputs: Iterable[Value | float], bias: Value | float = 0.0) -> Value:
    """`bias + w0*x0 + w1*x1 + ...`, left to right, as one fused node.

    Bitwise equal to micrograd's `sum((wi*xi for wi, xi in zip(w, x)), b)`.

    Args:
        weights: Values or real numbers w0, w1, ...
        inputs: Values or real numbers x0, x1, ..., as many as the weights.
        bias: A Value or a real number added first.

    Returns:
        A new Value (a `dot` node).

    Raises:
        ValueError: `weights` and `inputs` differ in length.
        TypeError: An item is neither a Value nor a real number.

    Examples:
        >>> dot([Value(2.0), Value(3.0)], [1.0, -1.0], bias=0.5).data
        -0.5
    """
    ws, xs = list(weights), list(inputs)
    if len(ws) != len(xs):
        raise ValueError(f"dot(): {len(ws)} weights but {len(xs)} inputs")
    return _fused("dot", [bias] + ws + xs, "dot")


_ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "gelu", "linear")


def dense(weights: Sequence[Sequence[Value | float]], inputs: Sequence[Value | float], biases: Sequence[Value | float],
          activation: str = "relu") -> list[Value]:
    """One layer of neurons: [act(b_j + w_j . x) for each j], in one call.

    Each neuron is a dot node, then (unless "linear") its activation node:
    the same nodes as calling dot() and the activation neuron by neuron.

    Args:
        weights: One row of Values per neuron, each as long as `inputs`.
        inputs: The layer's input Values.
        biases: One Value per neuron.
        activation: "relu", "tanh", "sigmoid", "softplus", "gelu" or "linear".

    Returns:
        One new Value per neuron, in order.

    Raises:
        ValueError: `activation` is not one of the six, or the numbers of
            rows, biases and inputs do not fit together.
        TypeError: An item is not a Value (unlike dot(), numbers are refused).
    """
    name = str.__str__(activation) if isinstance(activation, str) else None
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}: choose one of {_ACTIVATIONS}")
    activation = name
    # private copies, made with list(): tuple() of a list reads the list
    # before allocating, and a gc callback run by that allocation could
    # change it under CPython's feet
    weights = [list(row) for row in weights]
    inputs, biases = list(inputs), list(biases)
    if len(biases) != len(weights):
        raise ValueError(f"dense(): {len(weights)} weight rows but {len(biases)} biases")
    for j, w in enumerate(weights):
        if len(w) != len(inputs):
            raise ValueError(f"dense(): weight row {j} has {len(w)} weights but there are "
                             f"{len(inputs)} inputs")
    for v in [*inputs, *biases, *(w for row in weights for w in row)]:
        if not isinstance(v, Value):
            raise TypeError(f"dense() takes Values, not {type(v).__name__}")
    out = []
    for w, b in zip(weights, biases):
        act = dot(w, inputs, b)
        out.append(act if activation == "linear" else getattr(act, activation)())
    return out


class Function:
    """A custom op, as function() makes it.

    `forward(*inputs)` computes the result from numbers and
    `partials[k](*inputs)` its derivative with respect to input k.  Calling
    it on Values (or numbers) makes one custom node, which backward()
    differentiates with the partials (child k's grad gets
    partial_k(*inputs) * grad, in order) and forward() and Replay recompute
    with the forward formula.

    Args:
        forward: A function of numbers giving the result.
        *partials: One function of the same numbers per input, giving the
            derivative with respect to that input.
        name: The node's `_op`; forward's `__name__` by default.

    Attributes:
        name: The node's `_op`.
        forward: The forward formula.
        partials: The partial derivatives, a tuple.

    Raises:
        TypeError: `forward` or a partial is not callable, no partial is
            given, or `name` is not a str.
        RuntimeError: `__init__` is called again on a Function.
    """

    def __init__(self, forward: Callable[..., float], *partials: Callable[..., float],
                 name: str | None = None) -> None:
        if "_info" in self.__dict__:
            raise RuntimeError("a function is made once: call autograd.function() for a new one")
        if not callable(forward):
            raise TypeError(f"function(): forward must be callable, not {type(forward).__name__}")
        if not partials:
            raise TypeError("function(): give one partial derivative per input "
                            "(function(forward, d_dx, d_dy, ...))")
        for k, p in enumerate(partials):
            if not callable(p):
                raise TypeError(f"function(): partial derivative {k} must be callable, "
                                f"not {type(p).__name__}")
        self.name = _exact_str(getattr(forward, "__name__", "function") if name is None else name,
                               "Value _op")
        self.forward = forward
        self.partials = partials
        self._info = _Custom(self.name, None, forward, partials)

    def __call__(self, *args: Value | float) -> Value:
        """One custom node computed from `args`.

        Args:
            *args: One Value or real number per partial derivative.

        Returns:
            A new Value (a leaf under no_grad()).

        Raises:
            TypeError: The number of arguments is not the number of partials,
                an argument is neither a Value nor a real number, or forward
                returns something other than a real number.
            Exception: Whatever `forward` raises, with a note naming the op.
        """
        if "_info" not in self.__dict__:
            raise RuntimeError("this function was never made (Function.__new__ without __init__)")
        name, n = self.name, len(self.partials)
        if len(args) != n:
            raise TypeError(f"'{name}' takes {n} inputs (one per partial derivative), not {len(args)}")
        consts = [None if isinstance(x, Value) else _as_float(x) for x in args]
        for x, c in zip(args, consts):
            if c is None and not isinstance(x, Value):
                raise TypeError(f"'{name}' takes Values or real numbers, not {type(x).__name__}")
        xs = [x._data if isinstance(x, Value) else c for x, c in zip(args, consts)]
        try:
            data = _real(self.forward(*xs), f"the result of '{name}'")
        except BaseException as exc:
            _name_in_error(exc, name)
            raise
        if _grad_mode.depth:
            return Value(data)
        kids = tuple(x if c is None else Value(c) for x, c in zip(args, consts))
        node = Value._node(data, kids, "custom")
        node._custom = self._info
        return node

    def __repr__(self):
        return f"function({self.name!r}, {len(self.partials)} inputs)"


def function(forward: Callable[..., float], *partials: Callable[..., float],
             name: str | None = None) -> Function:
    """A custom op from its forward formula and one partial derivative per input.

    All are functions of numbers.  The op makes one node per call, which
    backward(), forward() and Replay all handle (unlike a node whose
    `_backward` is assigned by hand).  For gradients(..., create_graph=True)
    the partials must also work on Values (write them with Value ops).

    Args:
        forward: A function of numbers giving the result.
        *partials: One function of the same numbers per input, giving the
            derivative with respect to that input.
        name: The nodes' `_op`; forward's `__name__` by default.

    Returns:
        The op, a Function: call it on Values or numbers.

    Raises:
        TypeError: `forward` or a partial is not callable, no partial is
            given, or `name` is not a str.

    Examples:
        >>> mul3 = function(lambda x, y: 3 * x * y, lambda x, y: 3 * y,
        ...                 lambda x, y: 3 * x, name="mul3")
        >>> a, b = Value(2.0), Value(5.0)
        >>> z = mul3(a, b)
        >>> z.backward()
        >>> z.data, a.grad, b.grad
        (30.0, 15.0, 6.0)
    """
    return Function(forward, *partials, name=name)


class Block:
    """A fixed sequence of Values with bulk operations on their data and grads.

        params = Block(model.parameters())
        params.zero_grad(); loss.backward(); params.sgd_step(0.01)

    `len()` and iteration give the Values.  A Block pickles with its Values
    (as leaves, as Values pickle).

    Args:
        values: The Values, of this engine.

    Raises:
        TypeError: An item is not a Value of this engine.
        RuntimeError: `__init__` is called again on a Block (a Block is made
            once), or a Value was never initialized.
    """

    def __init__(self, values: Iterable[Value]) -> None:
        if "_values" in self.__dict__:
            raise RuntimeError("a Block is made once, with its Values: make a new Block")
        items = list(values)
        for k, v in enumerate(items):
            if not isinstance(v, Value):
                raise TypeError(f"Block() takes Values of this engine, not "
                                f"{type(v).__module__}.{type(v).__qualname__} (item {k})")
            _require_initialized(v)
        self._values = tuple(items)         # private, as the compiled Block's

    def __reduce__(self):
        return (Block, (self._owned(),))

    def _owned(self):
        if "_values" not in self.__dict__:
            raise RuntimeError("this Block was never made (Block.__new__ without __init__)")
        return self._values

    def __len__(self):
        return len(self._owned())

    def __iter__(self):
        return iter(self._owned())

    @property
    def data(self) -> list[float]:
        """The Values' data, as a list of floats."""
        return [v._data for v in self._owned()]

    @property
    def grad(self) -> list[float]:
        """The Values' grads, as a list of floats."""
        return [v._grad for v in self._owned()]

    def set_data(self, numbers: Iterable[float]) -> None:
        """Set every Value's data.

        Nothing is changed unless every number is accepted.

        Args:
            numbers: One real number per Value, in order.

        Raises:
            ValueError: `numbers` has a different length.
            TypeError: An item is not a real number.
        """
        values = self._owned()
        items = list(numbers)
        if len(items) != len(values):
            raise ValueError(f"set_data() got {len(items)} numbers for {len(values)} Values")
        data = []
        for k, x in enumerate(items):
            d = _as_float(x)
            if d is None:
                raise TypeError(f"set_data() takes real numbers, not {type(x).__name__} (item {k})")
            data.append(d)
        for v, d in zip(values, data):
            v._data = d

    def zero_grad(self) -> None:
        """Set every Value's grad to 0."""
        for v in self._owned():
            v._grad = 0.0

    def sgd_step(self, lr: float, weight_decay: float = 0.0) -> None:
        """data -= lr * grad, for every Value.

        With weight_decay (L2, as PyTorch's SGD), grad + weight_decay * data
        takes grad's place.

        Args:
            lr: The learning rate, a real number.
            weight_decay: A finite number >= 0.

        Raises:
            TypeError: `lr` or `weight_decay` is not a real number.
            ValueError: `weight_decay` is negative or not finite.
        """
        lr = _real(lr, "lr")
        wd = _weight_decay(weight_decay)
        for p in self._owned():
            if wd != 0.0:
                p._data = p._data - lr * (p._grad + wd * p._data)
            else:
                p._data = p._data - lr * p._grad

    def momentum_step(self, lr: float, momentum: float, velocity: Any,
                      weight_decay: float = 0.0) -> None:
        """One step of SGD with momentum, as PyTorch's: v = momentum * v + grad; data -= lr * v.

        With weight_decay (L2), grad + weight_decay * data takes grad's place.

        Args:
            lr: The learning rate, a real number.
            momentum: The momentum, a real number.
            velocity: The state v, updated in place: a writable buffer of
                doubles (array('d') or a float64 numpy array), one per Value,
                zeros before the first step.
            weight_decay: A finite number >= 0.

        Raises:
            TypeError: `lr`, `momentum` or `weight_decay` is not a real
                number, or `velocity` is not a writable 1-D buffer of doubles.
            ValueError: `velocity` does not hold one number per Value, or
                `weight_decay` is negative or not finite.
        """
        lr, momentum = _real(lr, "lr"), _real(momentum, "momentum")
        wd = _weight_decay(weight_decay)
        values = self._owned()
        velocity = _state(velocity, len(values), "velocity")
        for k, v in enumerate(values):
            g = v._grad
            if wd != 0.0:
                g = g + wd * v._data
            velocity[k] = momentum * velocity[k] + g
            v._data = v._data - lr * velocity[k]

    def adam_step(self, lr: float, beta1: float, beta2: float, eps: float, c1: float, c2: float,
                  m: Any, v: Any, weight_decay: float = 0.0,
                  decoupled_weight_decay: bool = False) -> None:
        """One step of Adam: data -= lr * (m / c1) / (sqrt(v / c2) + eps).

        m and v are first updated with the grads: m = beta1 * m + (1 - beta1)
        * grad, v = beta2 * v + (1 - beta2) * grad**2.  With weight_decay,
        grad + weight_decay * data takes grad's place (Adam's L2, coupled);
        with decoupled_weight_decay as well, data -= (lr * weight_decay) *
        data comes first instead, and grad is left as it is (AdamW).  Nothing
        is changed when an argument is refused.

        Args:
            lr: The learning rate, a real number.
            beta1: The decay of the first moments, in [0, 1).
            beta2: The decay of the second moments, in [0, 1).
            eps: A positive number added to the denominator.
            c1: The bias correction 1 - beta1**t at step t (from 1), in (0, 1].
            c2: The bias correction 1 - beta2**t, in (0, 1].
            m: The first moments, updated in place: a writable buffer of
                doubles (array('d') or a float64 numpy array), one per Value.
            v: The second moments, likewise; none may be negative.
            weight_decay: A finite number >= 0.
            decoupled_weight_decay: True for AdamW's decay, False for L2.

        Raises:
            TypeError: A setting is not a real number, `decoupled_weight_decay`
                is not a bool, or `m` or `v` is not a writable 1-D buffer of
                doubles.
            ValueError: A setting is out of its range, `m` or `v` does not
                hold one number per Value, or `v` holds a negative number.
        """
        lr, beta1, beta2, eps, c1, c2 = (_real(x, "Adam's settings") for x in (lr, beta1, beta2, eps, c1, c2))
        wd = _weight_decay(weight_decay)
        decoupled = _flag(decoupled_weight_decay, "decoupled_weight_decay")
        decay = lr * wd
        values = self._owned()
        m = _state(m, len(values), "m")
        v = _state(v, len(values), "v")
        # refused before any work: with these, no square root of a negative
        # number and no division by zero can happen below
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0 and eps > 0.0 and 0.0 < c1 <= 1.0
                and 0.0 < c2 <= 1.0):
            raise ValueError(_ADAM_SETTINGS % (beta1, beta2, eps, c1, c2))
        for k, x in enumerate(v):
            if x < 0.0:
                raise ValueError(f"adam_step(): v[{k}] is {x!r}: second moments are not negative")
        for k, p in enumerate(values):
            g = p._grad
            if wd != 0.0:
                if decoupled:
                    p._data = p._data - decay * p._data
                else:
                    g = g + wd * p._data
            m[k] = beta1 * m[k] + (1.0 - beta1) * g
            v[k] = beta2 * v[k] + (1.0 - beta2) * g * g
            p._data = p._data - lr * (m[k] / c1) / (math.sqrt(v[k] / c2) + eps)

    def clip_grad_norm(self, max_norm: float) -> float:
        """Scale the grads so that their L2 norm is at most max_norm (PyTorch's clip_grad_norm_).

        With norm = sqrt(sum of grad**2) (added in the Values' order), every
        grad is multiplied by max_norm / (norm + 1e-6) where that is < 1;
        otherwise (and where the norm is NaN) the grads are left as they are.

        Args:
            max_norm: The largest norm, a positive finite number.

        Returns:
            The norm before clipping.

        Raises:
            TypeError: `max_norm` is not a real number.
            ValueError: `max_norm` is not positive and finite.
        """
        limit = _real(max_norm, "max_norm")
        if not (limit > 0.0 and math.isfinite(limit)):
            raise ValueError(f"clip_grad_norm(): max_norm must be a positive finite number, "
                             f"not {limit!r}")
        values = self._owned()
        total = 0.0
        for p in values:                # the squares added in the Values' order
            total = total + p._grad * p._grad
        norm = math.sqrt(total)
        coef = limit / (norm + 1e-6)
        if coef < 1.0:                  # (NaN: no scaling, as PyTorch's clamp)
            for p in values:
                p._grad = p._grad * coef
        return norm


def _weight_decay(weight_decay):
    """weight_decay as a float: a finite number >= 0, or a clear error."""
    wd = _real(weight_decay, "weight_decay")
    if not (wd >= 0.0 and math.isfinite(wd)):
        raise ValueError(f"weight_decay must be a finite number >= 0, not {wd!r}")
    return wd


def _flag(flag, what):
    """A flag that must be a bool."""
    if flag is True or flag is False:
        return flag
    raise TypeError(f"{what} must be True or False, not {type(flag).__name__}")


_ADAM_SETTINGS = ("adam_step() needs 0 <= beta1 < 1, 0 <= beta2 < 1, eps > 0 and the bias "
                  "corrections c1, c2 in (0, 1]; got beta1=%r, beta2=%r, eps=%r, c1=%r, c2=%r")


def _state(state, n, name):
    """An optimizer's state as a writable view of n doubles, or a clear error
    (the compiled core takes the same buffers)."""
    try:
        view = memoryview(state)
    except TypeError:
        view = None
    if view is None or view.readonly or view.format != "d" or view.ndim != 1 or not view.c_contiguous:
        raise TypeError(f"{name} must be a writable buffer of doubles (array('d') or a float64 "
                        f"numpy array), not {type(state).__name__}")
    if len(view) != n:
        raise ValueError(f"{name} has {len(view)} entries for {n} Values")
    return view


class no_grad:
    """Context manager: ops inside record no graph (results are leaves).

    It applies to the thread that entered it, as PyTorch's no_grad does,
    and nests.

    Examples:
        >>> with no_grad():
        ...     y = Value(2.0) * 3
        ...     is_grad_enabled()
        False
        >>> y.data, is_grad_enabled()
        (6.0, True)
    """

    def __enter__(self):
        _grad_mode.depth += 1
        return self

    def __exit__(self, *exc):
        _grad_mode.depth -= 1
        return False


def is_grad_enabled() -> bool:
    """Whether ops record a graph in this thread.

    Returns:
        False inside no_grad() (unless inside an enable_grad() within it),
            else True.
    """
    return _grad_mode.depth == 0


class enable_grad:
    """Context manager: ops inside record their graph even within no_grad().

    As torch.enable_grad: train(), evaluate() and predict() record their
    graph so, whatever the caller's mode.  The mode comes back on exit.  It
    applies to the thread that entered it.

    Examples:
        >>> with no_grad():
        ...     with enable_grad():
        ...         is_grad_enabled()
        ...     is_grad_enabled()
        True
        False
    """


    def __enter__(self):
        self.depth = _grad_mode.depth
        _grad_mode.depth = 0
        return self

    def __exit__(self, *exc):
        _grad_mode.depth = self.depth
        return False


# ---------------------------------------------------------------------------
# Batched replay: one sample's graph, evaluated for a whole batch at once
# (csrc/replay.pxi).  A slot that depends on an input holds B values (one
# per sample); parameters, constants and nodes computed from them only hold
# one.  Only slots with a parameter below them get gradients.  Where a
# batched node gives gradient to a shared slot, the B contributions are
# added by _batch_sum, the order the compiled core uses.
# ---------------------------------------------------------------------------

def _batch_sum(terms):
    """Sample b's term goes to lane b % 4; then (l0 + l1) + (l2 + l3)."""
    lanes = [0.0, 0.0, 0.0, 0.0]
    for b, t in enumerate(terms):
        lanes[b % 4] += t
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])


def _thread_count(count):
    """A number of threads: an int from 1 to 1024."""
    if isinstance(count, bool) or not hasattr(type(count), "__index__"):
        raise TypeError(f"threads must be an int, not {type(count).__name__}")
    n = operator.index(count)
    if not 1 <= n <= 1024:
        raise ValueError(f"threads must be from 1 to 1024, not {n!r}")
    return n


def _replay_values(values, what):
    items = list(values)
    for k, v in enumerate(items):
        if not isinstance(v, Value):
            raise TypeError(f"Replay() takes Values as {what}, not {type(v).__name__} (item {k})")
        _require_initialized(v)
    return items


def _load_flat(table, width):
    """Replay.load()'s flat table as [rows of `width` numbers], a 2-D view
    ([] where it has no numbers)."""
    try:
        view = memoryview(table)
    except TypeError:
        view = None
    if view is None or view.ndim != 1 or view.format not in ("d", "<d", "=d") or not view.c_contiguous:
        raise TypeError(f"load() takes the table as a buffer of doubles (array('d') or a "
                        f"float64 numpy array), not {type(table).__name__}")
    if width and len(view) % width:
        raise ValueError(f"load(): the table has {len(view)} numbers, not a whole number of "
                         f"rows of {width} inputs")
    if not width or not len(view):
        return []
    return [view.cast("B").cast("d", (len(view) // width, width))]


def _load_parts(table, width):
    """Replay.load()'s tuple of tables as 2-D views, checked as the compiled
    core checks them."""
    parts = []
    for item in table:
        try:
            view = memoryview(item)
        except TypeError:
            view = None
        if (view is None or view.ndim != 2 or view.format not in ("d", "<d", "=d")
                or not view.c_contiguous):
            raise TypeError(f"load() takes a tuple of 2-D C-contiguous buffers of doubles "
                            f"(float64 numpy arrays, say), not one holding {type(item).__name__}")
        if parts and view.shape[0] != parts[0].shape[0]:
            raise ValueError(f"load(): the tables have {parts[0].shape[0]} and {view.shape[0]} "
                             f"rows, not the same number")
        if view.format != "d" and 0 not in view.shape:      # '<d', '=d': read as 'd'
            view = view.cast("B").cast("d", view.shape)
        parts.append(view)
    columns = sum(part.shape[1] for part in parts)
    if columns != width:
        raise ValueError(f"load(): the tables have {columns} columns side by side, for {width} "
                         f"inputs")
    return parts


class Replay:
    """One sample's graph, replayed over a batch of samples.

        xs = [Value(0.0), Value(0.0)]; t = Value(0.0)      # placeholders
        out = model(xs); loss = hinge_loss(out, t)
        replay = Replay([loss, out], inputs=xs + [t], params=model.parameters())
        replay.load(table, rows)    # sample b's inputs: row rows[b] of table
        replay.forward()            # every output for every sample
        replay.sum(0)               # loss[0] + loss[1] + ... over the batch
        replay.backward(0, 1 / B)   # params' grads += d/dp (sum_b loss_b / B)

    The graph is recorded when the Replay is made: leaves that are neither
    inputs nor parameters are constants with their data of that moment;
    parameters are read from their Values at every forward().  Inputs and
    parameters must be leaves.  A Replay cannot be pickled (TypeError).

    Args:
        outputs: The Values to compute for every sample; output j is the
            j-th of them.
        inputs: The placeholder leaves that each sample's row fills, in the
            order of a row's columns.
        params: The leaves whose grads backward() adds to (the model's
            parameters).

    Raises:
        TypeError: An item is not a Value of this engine.
        ValueError: `outputs` is empty, or an input or parameter is not a
            leaf, is listed twice, or is both an input and a parameter.
        RuntimeError: The graph holds a custom node whose chain rule is a
            Python `_backward` (make it with function() to replay it), or
            `__init__` is called again on a Replay.
    """

    def __reduce__(self):
        raise TypeError("a Replay cannot be pickled: it points into one process's graph; "
                        "record a new one from the model where it is needed")

    def __init__(self, outputs: Iterable[Value], inputs: Iterable[Value],
                 params: Iterable[Value]) -> None:
        if getattr(self, "_recorded", False):
            raise RuntimeError("a Replay is recorded once, when it is made")
        outs = _replay_values(outputs, "outputs")
        ins = _replay_values(inputs, "inputs")
        ps = _replay_values(params, "params")
        if not outs:
            raise ValueError("Replay() needs at least one output")
        self._record(outs, ins, ps, {})

    @classmethod
    def layered(cls, layers: Iterable[tuple[Sequence[Sequence[Value]], Sequence[Value], str]],
                head: Callable[[list[Value], list[Value]], Iterable[Value]],
                targets: SupportsIndex = 0, params: tuple[Value, ...] | None = None) -> "Replay":
        """A Replay of dense layers and a head, made from their description.

        The same program, bit for bit, as `Replay(head(outputs, targets),
        inputs + targets, params)` on the graph that dense() builds layer
        after layer; the compiled engine makes it without that graph and
        without a slot per weight, for a fraction of the set-up.

        Args:
            layers: (weights, biases, activation) per layer, as dense() takes
                them; a layer's rows have one weight per output of the layer
                before (the first layer's: one per input).
            head: Called once, with placeholder leaves for the last layer's
                outputs and for the targets; returns the Replay's outputs.
                They may depend on those placeholders and on constants, not
                on the layers' parameters.
            targets: How many target placeholders the head gets.
            params: A tuple of the parameters in the order below (an earlier
                layered() Replay's `params`, say), held instead of a new one
                where it holds those very Values; any other is not used.

        Returns:
            A Replay whose inputs are the first layer's, then the targets, and
            whose parameters (`params`) are each neuron's weights, then its
            bias, layer after layer.

        Raises:
            TypeError: A layer is not a triple, or an item not a Value.
            ValueError: An unknown activation, sizes that do not fit, no
                layer, a parameter listed twice or not a leaf, a head
                depending on a parameter or returning nothing.
        """
        ntargets = operator.index(targets)
        if ntargets < 0:
            raise ValueError(f"Replay.layered(): targets must be >= 0, not {ntargets}")
        specs = []
        for l, spec in enumerate(layers):
            if type(spec) not in (list, tuple) or len(spec) != 3:
                raise TypeError(f"Replay.layered(): layer {l} is not a (weights, biases, "
                                f"activation) triple")
            weights, biases, activation = spec
            name = str.__str__(activation) if isinstance(activation, str) else None
            if name not in _ACTIVATIONS:
                raise ValueError(f"Replay.layered(): layer {l}'s activation is {activation!r}: "
                                 f"choose one of {_ACTIVATIONS}")
            # lists and tuples are read after the head (which may change
            # them), as the compiled engine reads them; anything else now
            lists = (list, tuple)
            if type(weights) not in lists or any(type(row) not in lists for row in weights):
                weights = [row if type(row) in lists else list(row) for row in weights]
            specs.append((weights, biases if type(biases) in lists else list(biases), name))
        if not specs:
            raise ValueError("Replay.layered() needs at least one layer")
        placeholders = [Value(0.0) for _ in specs[-1][0]]
        target_leaves = [Value(0.0) for _ in range(ntargets)]
        with enable_grad():     # (first, as the compiled engine calls it)
            outs = _replay_values(head(list(placeholders), list(target_leaves)), "outputs")
        if not outs:
            raise ValueError("Replay.layered(): the head returned no outputs")
        width = None
        now: list[tuple[list[list[Value]], list[Value], str]] = []     # the lists as they are
        for l, (weights, given_biases, name) in enumerate(specs):
            rows: list[list[Value]] = []
            biases = list(given_biases)
            now.append((rows, biases, name))
            if not weights:
                raise ValueError(f"Replay.layered(): layer {l} has no neurons")
            if len(biases) != len(weights):
                raise ValueError(f"Replay.layered(): layer {l} has {len(weights)} weight rows but "
                                 f"{len(biases)} biases")
            for j, given in enumerate(list(weights)):
                if type(given) not in (list, tuple):    # only if the head changed the rows
                    raise TypeError(f"Replay.layered(): layer {l}'s weight row {j} is not a "
                                    f"sequence")
                row = list(given)
                rows.append(row)
                if j == 0 and width is not None and len(row) != width:
                    raise ValueError(f"Replay.layered(): layer {l}'s neurons take {len(row)} "
                                     f"inputs, but the layer before has {width} outputs")
                if j == 0 and not row:
                    raise ValueError(f"Replay.layered(): layer {l}'s neurons have no weights")
                if len(row) != len(rows[0]):
                    raise ValueError(f"Replay.layered(): layer {l}'s weight row {j} has "
                                     f"{len(row)} weights, row 0 has {len(rows[0])}")
            width = len(rows)
        if width != len(placeholders):
            raise ValueError(f"Replay.layered(): the last layer has {width} neurons, not the "
                             f"{len(placeholders)} it had when the head was called")
        ps = _replay_values([p for rows, biases, _ in now for row, b in zip(rows, biases)
                             for p in (*row, b)], "params")
        if type(params) is tuple and len(params) == len(ps) and all(map(operator.is_, params, ps)):
            ps = params
        # the graph of the layers, on placeholders for the inputs; the head's
        # placeholders stand for its outputs
        inputs = [Value(0.0) for _ in now[0][0][0]]
        x = inputs
        with enable_grad():
            for rows, biases, activation in now:
                x = dense(rows, x, biases, activation)
        self = cls.__new__(cls)
        self._record(outs, inputs + target_leaves, ps,
                     {id(p): v for p, v in zip(placeholders, x)})
        return self

    def _record(self, outs: list[Value], ins: list[Value], ps: list[Value],
                stand_in: dict[int, Value]) -> None:
        """Record the graph of outs over ins and ps; stand_in maps a
        placeholder's id to the Value it stands for (layered())."""
        role: dict[int, str] = {}                   # id -> "inputs" or "params"
        for what, values in (("inputs", ins), ("params", ps)):
            for k, v in enumerate(values):
                if v._kind != "leaf":
                    raise ValueError(f"Replay(): {what}[{k}] is not a leaf: inputs and parameters "
                                     f"are leaves (placeholders for the data, the model's weights)")
                if role.get(id(v)) == what:
                    raise ValueError(f"Replay(): {what}[{k}] is listed twice")
                if id(v) in role:
                    raise ValueError(f"Replay(): {what}[{k}] is both an input and a parameter")
                role[id(v)] = what
        head: dict[int, Value] = {}
        if stand_in:        # the head alone: it may not reach the layers' parameters
            seen = head = {id(v): v for v in outs}
            stack = list(outs)
            while stack:
                v = stack.pop()
                if role.get(id(v)) == "params":
                    raise ValueError("Replay.layered(): the head's outputs depend on a parameter "
                                     "of the layers; the head sees the layers' outputs and the "
                                     "targets only")
                for child in v._args:
                    if id(child) not in seen:
                        seen[id(child)] = child
                        stack.append(child)
            outs = [stand_in.get(id(v), v) for v in outs]
        # the nodes below the outputs, in creation (topological) order
        seen, stack = {id(v): v for v in outs}, list(outs)
        while stack:
            for child in stack.pop()._args:
                child = stand_in.get(id(child), child)
                if id(child) not in seen:
                    seen[id(child)] = child
                    stack.append(child)
        # (the head, made before the layers, after them: it reads their outputs)
        nodes = sorted(seen.values(), key=lambda v: (id(v) in head, v._id))
        slot = {id(v): s for s, v in enumerate(nodes)}
        # per slot: kind, child slots, batched?, needs a gradient?, custom op
        self._kinds: list[str] = []
        self._kids: list[list[int]] = []
        self._batched: list[bool] = []
        self._needs_grad: list[bool] = []
        self._customs: dict[int, Any] = {}
        self._values: list[Any] = []        # a float, or B of them where batched
        for s, v in enumerate(nodes):
            kids = [slot[id(stand_in.get(id(c), c))] for c in v._args]
            batched = role.get(id(v)) == "inputs" or any(self._batched[c] for c in kids)
            grad_kids = kids[:1] if v._kind in _CONSTANT_EXPONENT else kids   # a constant exponent gets none
            needs_grad = role.get(id(v)) == "params" or any(self._needs_grad[c] for c in grad_kids)
            if v._kind == "custom":
                info = v._custom
                if info is None or info.forward is None or info.partials is None:
                    raise RuntimeError(
                        f"Replay() cannot replay the custom node '{info.op if info else ''}': its chain rule is "
                        f"a Python `_backward` (it was made by Value(data, _children, _op), "
                        f"or its `_backward` was assigned), not a forward formula and "
                        f"partials. Make the op with autograd.function(forward, *partials) "
                        f"to replay it.")
                self._customs[s] = info
            self._kinds.append(v._kind)
            self._kids.append(kids)
            self._batched.append(batched)
            self._needs_grad.append(needs_grad)
            self._values.append(v._data if v._kind == "leaf" and id(v) not in role else 0.0)
        self._params = tuple(ps)
        self._input_slots = [slot.get(id(v)) for v in ins]
        self._param_slots = [slot.get(id(v)) for v in ps]
        self._output_slots = [slot[id(v)] for v in outs]
        self._grads: list[Any] = [0.0] * len(nodes)   # a float, or B of them where batched
        self._B = 0
        self._busy = self._ready = False
        self._recorded = True

    def _enter(self, what):
        if not getattr(self, "_recorded", False):
            raise RuntimeError("this Replay was never recorded (made by Replay.__new__, or its "
                               "__init__ failed)")
        if self._busy:
            raise RuntimeError(f"Replay.{what}() was called while this Replay is running "
                               f"(from code its own sweep ran, or from another thread)")
        self._busy = True

    @property
    def batch_size(self):
        """The number of samples loaded (0 before load())."""
        return getattr(self, "_B", 0)

    @property
    def params(self) -> tuple[Value, ...]:
        """The parameters, as a tuple, in the order given (layered(): each
        neuron's weights, then its bias, layer after layer)."""
        return self._params

    @property
    def threads(self) -> int:
        """How many threads the compiled core's layer kernels may use (1 by default).

        This engine runs on one; the results are the same bits for any
        number.  Setting it to anything but an int from 1 to 1024 raises
        TypeError or ValueError.
        """
        return getattr(self, "_threads", 1)

    @threads.setter
    def threads(self, count: SupportsIndex) -> None:
        self._threads = _thread_count(count)

    def load(self, table: Any, rows: Iterable[SupportsIndex]) -> None:
        """Load a batch: sample b's inputs are row rows[b] of table.

        The numbers are copied in; nothing changes when the table or rows
        are refused.

        Args:
            table: A 1-D buffer of doubles (array('d') or a float64 numpy
                array) holding len(inputs) numbers per row; or a tuple of
                2-D C-contiguous buffers of doubles with the same number of
                rows, whose columns, side by side, are the inputs (a data
                matrix and a matrix of targets, say, each read where it is).
            rows: The row of each sample, ints (repeats allowed).

        Raises:
            TypeError: `table` is not such a buffer or tuple, or a row is
                not an int.
            ValueError: `rows` is empty, or the table's size or columns do
                not fit the inputs.
            IndexError: A row is out of the table.
            RuntimeError: The Replay is running (called from its own sweep,
                or from another thread).
        """
        width = len(self._input_slots)
        parts = _load_parts(table, width) if type(table) is tuple else _load_flat(table, width)
        nrows = parts[0].shape[0] if parts else 0
        picks = [operator.index(r) for r in rows]
        if not picks:
            raise ValueError("load() needs at least one row")
        for r in picks:
            if width and not 0 <= r < nrows:
                raise IndexError(f"load(): row {r} is out of the table's {nrows} rows")
        columns = [(part, c) for part in parts for c in range(part.shape[1])]
        loaded = [(s, [part[r, c] for r in picks])          # read before any state changes
                  for (part, c), s in zip(columns, self._input_slots) if s is not None]
        self._enter("load")
        try:
            self._B, self._ready = len(picks), False
            for s, column in loaded:
                self._values[s] = column
        finally:
            self._busy = False

    def _at(self, s, b):
        """Slot s's value for sample b."""
        return self._values[s][b] if self._batched[s] else self._values[s]

    def forward(self) -> None:
        """Compute every output for every sample of the batch loaded.

        The parameters' data is read now.

        Raises:
            RuntimeError: No batch is loaded, or the Replay is running.
            ValueError: An op is out of its domain for some sample, as on a
                Value (likewise ZeroDivisionError and OverflowError).
        """
        self._enter("forward")
        try:
            if not self._B:
                raise RuntimeError("Replay.forward(): load() a batch first")
            self._ready = False
            for p, s in zip(self._params, self._param_slots):
                if s is not None:
                    self._values[s] = p._data
            for s, kind in enumerate(self._kinds):
                if kind == "leaf":
                    continue
                out = [self._formula(s, [self._at(c, b) for c in self._kids[s]])
                       for b in range(self._B if self._batched[s] else 1)]
                self._values[s] = out if self._batched[s] else out[0]
            self._ready = True
        finally:
            self._busy = False

    def _formula(self, s, xs):
        """Slot s's forward formula on one sample's inputs."""
        kind = self._kinds[s]
        if kind == "sum":
            return _sum_of(xs)
        if kind == "dot":
            return _dot_of(xs)
        if kind == "lse":
            return _lse(xs)
        if kind == "custom":
            info = self._customs[s]
            try:
                return _real(info.forward(*xs), f"the result of '{info.op}'")
            except BaseException as exc:
                _name_in_error(exc, info.op)
                raise
        return _OPS[kind][1](xs[0], xs[1] if len(xs) == 2 else 0.0)

    def _output(self, j, what):
        k = operator.index(j)
        if not 0 <= k < len(self._output_slots):
            raise IndexError(f"Replay.{what}(): output {k} of {len(self._output_slots)}")
        if not self._ready:
            raise RuntimeError(f"Replay.{what}(): run forward() on the batch loaded first")
        return self._output_slots[k]

    def values(self, j: SupportsIndex) -> list[float]:
        """Output j's value for each sample of the batch.

        Args:
            j: The output's position in the Replay's `outputs`.

        Returns:
            A list of floats, one per sample.

        Raises:
            IndexError: There is no output j.
            TypeError: `j` is not an int.
            RuntimeError: forward() has not run on the batch loaded.
        """
        s = self._output(j, "values")
        return [self._at(s, b) for b in range(self._B)]

    def sum(self, j: SupportsIndex) -> float:
        """Output j summed over the batch, left to right (as vsum adds).

        Args:
            j: The output's position in the Replay's `outputs`.

        Returns:
            The sum, a float.

        Raises:
            IndexError: There is no output j.
            TypeError: `j` is not an int.
            RuntimeError: forward() has not run on the batch loaded.
        """
        s = self._output(j, "sum")
        return _sum_of([self._at(s, b) for b in range(self._B)])

    def argmax(self, outputs: Iterable[SupportsIndex]) -> list[int]:
        """For each sample, which of the given outputs is the largest.

        Args:
            outputs: Output numbers (positions in the Replay's `outputs`).

        Returns:
            For each sample, the position in `outputs` of the largest of
                those outputs (the first one on ties), an int.

        Raises:
            ValueError: `outputs` is empty.
            IndexError: An output number is out of range.
            RuntimeError: forward() has not run on the batch loaded.
        """
        slots = self._slots_of(outputs, "argmax")
        return [_argmax([self._at(s, b) for s in slots]) for b in range(self._B)]

    def hits(self, outputs: Iterable[SupportsIndex], labels: Iterable[SupportsIndex]) -> int:
        """How many samples' argmax over `outputs` is their label: a classifier's correct answers.

        Args:
            outputs: Output numbers (positions in the Replay's `outputs`), as
                for argmax().
            labels: Sample b's label, labels[b]: a position in `outputs`.

        Returns:
            The number of samples whose argmax equals their label.

        Raises:
            ValueError: `outputs` is empty, or there is not one label per
                sample.
            IndexError: An output number is out of range.
            RuntimeError: forward() has not run on the batch loaded.
        """
        want = [operator.index(label) for label in labels]
        slots = self._slots_of(outputs, "hits")
        if len(want) != self._B:
            raise ValueError(f"Replay.hits(): {len(want)} labels for a batch of {self._B}")
        return sum(_argmax([self._at(s, b) for s in slots]) == want[b] for b in range(self._B))

    def _slots_of(self, outputs, what):
        js = list(outputs)
        if not js:
            raise ValueError(f"Replay.{what}() needs at least one output")
        return [self._output(j, what) for j in js]

    def backward(self, j: SupportsIndex = 0, seed: float = 1.0) -> None:
        """Add to every parameter's grad the derivative of seed * (output j summed over the batch).

        The contributions of the samples are added in a fixed order, the
        same on both engines and for any number of threads.

        Args:
            j: The output's position in the Replay's `outputs`.
            seed: A real number the derivative is scaled by (1 / B for a
                mean over a batch of B).

        Raises:
            IndexError: There is no output j.
            TypeError: `seed` is not a real number.
            RuntimeError: forward() has not run on the batch loaded, or the
                Replay is running.
        """

        root = self._output(j, "backward")
        seed = _real(seed, "the seed")
        self._enter("backward")
        try:
            if not self._ready:
                raise RuntimeError("Replay.backward(): run forward() on the batch loaded first")
            B, grads = self._B, self._grads
            for s in range(len(grads)):
                if self._needs_grad[s]:
                    grads[s] = [0.0] * B if self._batched[s] else 0.0
            if self._needs_grad[root]:
                grads[root] = [seed] * B if self._batched[root] else _batch_sum([seed] * B)
                for s in range(root, -1, -1):
                    if self._needs_grad[s] and self._kinds[s] != "leaf":
                        self._backprop(s)
            for p, slot in zip(self._params, self._param_slots):
                if slot is not None:
                    p._grad += grads[slot]
        finally:
            self._busy = False

    def _give(self, c, terms):
        """Child c's grad += one term per sample (batched) or their _batch_sum."""
        if not self._needs_grad[c]:
            return
        if self._batched[c]:
            grad = self._grads[c]
            for b, t in enumerate(terms):
                grad[b] += t
        else:
            self._grads[c] += _batch_sum(terms)

    def _backprop(self, s):
        """Slot s's chain rule for every sample, child by child in the order
        of the compiled core: each op's derivatives as in _backprop above."""
        kind, kids = self._kinds[s], self._kids[s]
        n = self._B if self._batched[s] else 1
        g = self._grads[s] if self._batched[s] else [self._grads[s]]
        out = [self._at(s, b) for b in range(n)]
        column = [[self._at(c, b) for b in range(n)] for c in kids]    # each child's values
        if kind == "sum":
            for c in kids:
                self._give(c, g)
        elif kind == "dot":                         # bias, then each weight and its input
            m = len(kids) // 2
            self._give(kids[0], g)
            for k in range(1, m + 1):
                w, x = column[k], column[m + k]
                self._give(kids[k], [x[b] * g[b] for b in range(n)])
                self._give(kids[m + k], [w[b] * g[b] for b in range(n)])
        elif kind == "lse":                         # d/dx_k = exp(x_k - out)
            for c, x in zip(kids, column):
                self._give(c, [_exp_ieee(x[b] - out[b]) * g[b] for b in range(n)])
        elif kind == "custom":                      # partial_k(*inputs) * g, per sample
            info = self._customs[s]
            terms = [[] for _ in kids]
            for b in range(n):
                xs = [x[b] for x in column]
                for k, c in enumerate(kids):
                    if self._needs_grad[c]:
                        try:
                            d = _real(info.partials[k](*xs),
                                      f"the partial derivative {k} of '{info.op}'")
                        except BaseException as exc:
                            _name_in_error(exc, info.op)
                            raise
                        terms[k].append(d * g[b])
            for c, t in zip(kids, terms):
                self._give(c, t)
        else:                                       # one- and two-input ops
            x = column[0]
            y = column[1] if len(kids) == 2 else [0.0] * n
            pairs = [_OPS[kind][2](g[b], x[b], y[b], out[b]) for b in range(n)]
            self._give(kids[0], [dx for dx, _ in pairs])
            if len(kids) == 2 and kind not in _CONSTANT_EXPONENT:
                self._give(kids[1], [dy for _, dy in pairs])


def _argmax(values):
    best = 0
    for j in range(1, len(values)):
        if values[j] > values[best]:
            best = j
    return best
