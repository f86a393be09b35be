"""Python's `math` functions on Values, with derivatives of every order.

    from autograd import Value, math as amath
    x = Value(0.5)
    y = amath.sin(x) * amath.exp(x)        # or x.sin() * x.exp()
    y.backward()

Each function takes Values or plain numbers.  Numbers give exactly the float
Python's `math` gives; a Value gives a Value whose data is exactly that float,
and each raises where `math` raises (ValueError outside the domain,
OverflowError where the result is too large).  The one-input functions are
Value methods too (`x.sin()`, as in PyTorch), each one fused node of both
engines (one row of their table: csrc/unary.pxi, autograd/pure.py), replayed by
forward() and the batched Replay, and differentiable again
(gradients(create_graph=True), grad, hessian).  atan2, hypot and dist are
custom ops (autograd.function) whose partial derivatives are written with these
functions, so they too differentiate to any order.

Left out, as not differentiable or not functions of reals: floor, ceil, trunc,
fabs (use abs()), copysign, fmod, remainder, modf, frexp, ldexp, the integer
functions (factorial, comb, perm, gcd, lcm, isqrt), the predicates (isnan,
isclose, ...), fsum, prod and sumprod (use vsum; their exact rounding is not
a sum's).  gamma and lgamma are left out: their derivative needs digamma,
which `math` does not have.  exp2 and cbrt need Python 3.11, as in `math`.
"""
from __future__ import annotations

import functools
import math as _math
import operator
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, overload

import autograd.pure as _pure

if TYPE_CHECKING:
    from autograd.engine import Value

pi, e, tau, inf, nan = _math.pi, _math.e, _math.tau, _math.inf, _math.nan


def _value_types() -> tuple[type, ...]:
    """The Value classes of the engines (the compiled core's where it is built)."""
    try:
        import autograd.core as core
    except ImportError:
        return (_pure.Value,)
    return (core.Value, _pure.Value)


_VALUES = _value_types()


def _is_value(x: object) -> bool:
    return isinstance(x, _VALUES)


class _OneInput(Protocol):
    """A one-input function: a float for a number, a Value for a Value."""

    @overload
    def __call__(self, x: float, /) -> float: ...
    @overload
    def __call__(self, x: Value, /) -> Value: ...
    @overload
    def __call__(self, x: _pure.Value, /) -> _pure.Value: ...


_RAISES = {
    "sin": "ValueError: x is infinite.", "cos": "ValueError: x is infinite.",
    "tan": "ValueError: x is infinite.", "asin": "ValueError: x is outside [-1, 1].",
    "acos": "ValueError: x is outside [-1, 1].", "acosh": "ValueError: x is below 1.",
    "atanh": "ValueError: x is outside (-1, 1).", "log1p": "ValueError: x is -1 or below.",
    "log2": "ValueError: x is 0 or negative.", "log10": "ValueError: x is 0 or negative.",
    "sqrt": "ValueError: x is negative.",
    "sinh": "OverflowError: the result is too large for a float.",
    "cosh": "OverflowError: the result is too large for a float.",
    "exp": "OverflowError: the result is too large for a float.",
    "expm1": "OverflowError: the result is too large for a float.",
    "exp2": "OverflowError: the result is too large for a float.",
}


def _one_input(name: str) -> _OneInput:
    number_function = getattr(_math, name)
    method = operator.methodcaller(name)

    def function(x: Any) -> Any:
        if _is_value(x):
            return method(x)
        return number_function(x)           # math's own checks and errors
    raises = f"\n\n    Raises:\n        {_RAISES[name]}" if name in _RAISES else ""
    function.__name__ = function.__qualname__ = name
    function.__doc__ = (f"math.{name}(x) for a number x; x.{name}() for a Value.\n\n"
                        f"    Args:\n        x: a real number or a Value.\n\n"
                        f"    Returns:\n        A float (math's), or a new Value with that data."
                        f"{raises}")
    return function     # type: ignore[return-value]


sin = _one_input("sin")
"""`math.sin(x)` for a number, `x.sin()` for a Value; derivative `cos(x)`."""
cos = _one_input("cos")
"""`math.cos(x)` for a number, `x.cos()` for a Value; derivative `-sin(x)`."""
tan = _one_input("tan")
"""`math.tan(x)` for a number, `x.tan()` for a Value; derivative `1 + tan(x)**2`."""
asin = _one_input("asin")
"""`math.asin(x)` for a number, `x.asin()` for a Value; derivative `1 / sqrt(1 - x**2)`."""
acos = _one_input("acos")
"""`math.acos(x)` for a number, `x.acos()` for a Value; derivative `-1 / sqrt(1 - x**2)`."""
atan = _one_input("atan")
"""`math.atan(x)` for a number, `x.atan()` for a Value; derivative `1 / (1 + x**2)`."""
sinh = _one_input("sinh")
"""`math.sinh(x)` for a number, `x.sinh()` for a Value; derivative `cosh(x)`."""
cosh = _one_input("cosh")
"""`math.cosh(x)` for a number, `x.cosh()` for a Value; derivative `sinh(x)`."""
tanh = _one_input("tanh")
"""`math.tanh(x)` for a number, `x.tanh()` for a Value; derivative `1 - tanh(x)**2`."""
asinh = _one_input("asinh")
"""`math.asinh(x)` for a number, `x.asinh()` for a Value; derivative `1 / sqrt(x**2 + 1)`."""
acosh = _one_input("acosh")
"""`math.acosh(x)` for a number, `x.acosh()` for a Value; derivative `1 / sqrt(x**2 - 1)`."""
atanh = _one_input("atanh")
"""`math.atanh(x)` for a number, `x.atanh()` for a Value; derivative `1 / (1 - x**2)`."""
exp = _one_input("exp")
"""`math.exp(x)` for a number, `x.exp()` for a Value; derivative `exp(x)`."""
expm1 = _one_input("expm1")
"""`math.expm1(x)` for a number, `x.expm1()` for a Value; derivative `exp(x)`."""
log1p = _one_input("log1p")
"""`math.log1p(x)` for a number, `x.log1p()` for a Value; derivative `1 / (1 + x)`."""
log2 = _one_input("log2")
"""`math.log2(x)` for a number, `x.log2()` for a Value; derivative `1 / (x log 2)`."""
log10 = _one_input("log10")
"""`math.log10(x)` for a number, `x.log10()` for a Value; derivative `1 / (x log 10)`."""
sqrt = _one_input("sqrt")
"""`math.sqrt(x)` for a number, `x.sqrt()` for a Value; derivative `1 / (2 sqrt(x))`."""
erf = _one_input("erf")
"""`math.erf(x)` for a number, `x.erf()` for a Value; derivative `2 / sqrt(pi) exp(-x**2)`."""
erfc = _one_input("erfc")
"""`math.erfc(x)` for a number, `x.erfc()` for a Value; derivative `-2 / sqrt(pi) exp(-x**2)`."""
if hasattr(_math, "exp2"):      # Python 3.11+
    exp2 = _one_input("exp2")
    """`math.exp2(x)` for a number, `x.exp2()` for a Value; derivative `2**x log 2`."""
    cbrt = _one_input("cbrt")
    """`math.cbrt(x)` for a number, `x.cbrt()` for a Value; derivative `1 / (3 cbrt(x)**2)`."""


def log(x: Any, base: Any = None) -> Any:
    """The logarithm of x, natural or to `base`, as math.log.

    With a base it is log(x) / log(base), as `math` computes it, so the bits
    are math's.

    Args:
        x: a real number or a Value.
        base: None for the natural logarithm, else a real number or a Value.

    Returns:
        A float for numbers; a Value where x or base is one.

    Raises:
        ValueError: x (or base) is 0 or negative.
        ZeroDivisionError: base is 1.
    """
    if base is None:
        return x.log() if _is_value(x) else _math.log(x)
    if not (_is_value(x) or _is_value(base)):
        return _math.log(x, base)
    return log(x) / log(base)


def pow(x: Any, y: Any) -> Any:
    """x ** y, as math.pow (never a complex number).

    Args:
        x: the base, a real number or a Value.
        y: the exponent, a real number or a Value.

    Returns:
        A float for numbers; a Value where x or y is one.

    Raises:
        ValueError: 0 ** negative, or a negative base with a non-integer exponent.
        OverflowError: the result is too large for a float.
    """
    if _is_value(x) or _is_value(y):
        return x ** y
    return _math.pow(x, y)


def degrees(x: Any) -> Any:
    """x radians in degrees, as math.degrees (x * (180 / pi)).

    Args:
        x: a real number or a Value.

    Returns:
        A float, or a new Value.
    """
    if _is_value(x):
        return x * (180.0 / _math.pi)
    return _math.degrees(x)


def radians(x: Any) -> Any:
    """x degrees in radians, as math.radians (x * (pi / 180)).

    Args:
        x: a real number or a Value.

    Returns:
        A float, or a new Value.
    """
    if _is_value(x):
        return x * (_math.pi / 180.0)
    return _math.radians(x)


# -- atan2, hypot, dist: custom ops whose partials are written with the functions
#    above, so they work on numbers (backward()) and on Values (create_graph)

def _over(a: Any, b: Any) -> Any:
    """a / b with IEEE results at b == 0 (inf, NaN), as every derivative here,
    where `/` would raise: on numbers (backward()) and on Values (a derivative
    graph: the engine's IEEE division node)."""
    engine = _engine((a, b))
    if engine is None:
        return _pure._div(float(a), float(b))
    return engine._ieee_div(a if _is_value(a) else engine.Value(a), b)


def _engine(args: tuple[Any, ...]) -> Any:
    """The engine module of the first Value among args (a subclass's too), or None."""
    for a in args:
        if isinstance(a, _pure.Value):
            return _pure
        if _is_value(a):
            return sys.modules["autograd.core"]
    return None


@functools.lru_cache(maxsize=64)
def _op(engine: Any, name: str, n: int) -> Callable[..., Any]:
    """The custom op `name` of n inputs on `engine`, made once."""
    if name == "atan2":             # d/dy = x / (x**2 + y**2), d/dx = -y / (x**2 + y**2)
        return engine.function(_math.atan2,
                               lambda y, x: _over(x, x * x + y * y),
                               lambda y, x: _over(-y, x * x + y * y), name="atan2")
    # hypot: d/dx_k = x_k / hypot(x) (each partial computes hypot again: O(n) each,
    # so a backward() through hypot of n Values costs O(n**2); sqrt(vsum(x*x)) is linear)
    return engine.function(_math.hypot,
                           *[lambda *xs, k=k: _over(xs[k], hypot(*xs)) for k in range(n)],
                           name="hypot")


def atan2(y: Any, x: Any) -> Any:
    """The angle of the point (x, y), in (-pi, pi], as math.atan2.

    Its partial derivatives are `x / (x**2 + y**2)` in y and `-y / (x**2 + y**2)`
    in x (inf or NaN at the origin).

    Args:
        y: a real number or a Value.
        x: a real number or a Value.

    Returns:
        A float for numbers; a Value where y or x is one (one node).
    """
    engine = _engine((y, x))
    if engine is None:
        return _math.atan2(y, x)
    return _op(engine, "atan2", 2)(y, x)


def hypot(*coordinates: Any) -> Any:
    """The Euclidean norm sqrt(sum of squares), as math.hypot (no overflow).

    Its partial derivative in x_k is x_k / hypot(x) (NaN at the origin).

    Args:
        *coordinates: real numbers or Values.

    Returns:
        A float for numbers; a Value where any is one (one node).
    """
    engine = _engine(coordinates)
    if engine is None:
        return _math.hypot(*coordinates)
    if not coordinates:
        return _math.hypot()
    return _op(engine, "hypot", len(coordinates))(*coordinates)


def dist(p: Any, q: Any) -> Any:
    """The Euclidean distance between points p and q, as math.dist.

    Args:
        p: a sequence of real numbers or Values.
        q: a sequence of as many.

    Returns:
        A float for numbers; a Value where any coordinate is one.

    Raises:
        ValueError: p and q have different lengths.
    """
    p, q = list(p), list(q)
    if len(p) != len(q):
        raise ValueError("both points must have the same number of dimensions")
    if _engine(tuple(p) + tuple(q)) is None:
        return _math.dist(p, q)
    # numbers to floats first, as math.dist converts each coordinate
    p, q = ([a if _is_value(a) else float(a) for a in point] for point in (p, q))
    return hypot(*[a - b for a, b in zip(p, q)])


__all__ = ["pi", "e", "tau", "inf", "nan", "sin", "cos", "tan", "asin", "acos", "atan", "atan2",
           "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "exp", "expm1", "log", "log1p",
           "log2", "log10", "pow", "sqrt", "erf", "erfc", "hypot", "dist", "degrees", "radians"]
if hasattr(_math, "exp2"):
    __all__ += ["exp2", "cbrt"]
