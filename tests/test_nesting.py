"""grad, value_and_grad and hessian nested as HIPS autograd nests them, on both
engines: derivatives of functions that call grad, across arguments and
through closures over outer Values; no perturbation confusion; tuple argnums,
keyword arguments; zero (with a warning) for unused arguments and constant
outputs.  Expected values are closed forms worked out by hand, checked
against finite differences too."""
import math
import warnings

import pytest

import autograd.engine
import autograd.pure
from autograd import grad, gradients, hessian, value_and_grad
from helpers import central_difference, is_core, same_float


@pytest.fixture(autouse=True)
def no_stray_warnings():
    """A warning nobody asked for is a failure (pytest.warns still records)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.fixture
def E(engine, monkeypatch):
    """The engine under test, also the one plain numbers become leaves of
    (otherwise numbers in go to the engine in use: the compiled one)."""
    monkeypatch.setattr(autograd.engine, "Value", engine.Value)
    return engine


def fd(f, *xs, i=0):
    """d f / d xs[i] by central differences."""
    return central_difference(lambda v: f(*v), list(xs), i)


def is_float(x):
    return type(x) is float


# -- the bugs of issue 22, item 3 -----------------------------------------------------------

def test_an_inner_grad_over_an_outer_argument_keeps_its_dependence(E):
    # inner: d/dx (x y^2) = y^2, a function of the outer y; outer: d/dy (y^2 * y) = 3 y^2
    def outer(y):
        return grad(lambda x, y: x * y * y, 0)(1.0, y) * y
    assert grad(outer)(2.0) == 12.0                       # was 4.0: y^2 taken as a constant
    assert is_float(grad(outer)(2.0))                     # numbers in, nothing outside: floats
    for y in (0.3, -1.7, 2.5):
        assert grad(outer)(y) == pytest.approx(3 * y * y, rel=1e-15)
        assert grad(outer)(y) == pytest.approx(fd(lambda y: outer(E.Value(y)).data, y), rel=1e-8)


def test_grad_of_grad_across_arguments(E):
    def f(x, y):
        return x * x * y * y * y + (x * y).exp()
    # d2f / dx dy = 6 x y^2 + e^(xy) (1 + x y)
    for x, y in ((1.0, 2.0), (0.5, -0.8), (-1.3, 0.4)):
        want = 6 * x * y * y + math.exp(x * y) * (1 + x * y)
        dxdy = grad(grad(f, 0), 1)(x, y)
        dydx = grad(grad(f, 1), 0)(x, y)
        assert is_float(dxdy) and is_float(dydx)
        assert dxdy == pytest.approx(want, rel=1e-14)
        assert dydx == pytest.approx(want, rel=1e-14)
        assert dxdy == pytest.approx(fd(grad(f, 0), x, y, i=1), rel=1e-8)
    assert grad(grad(lambda x, y: x * x * y * y, 0), 1)(1.0, 2.0) == 8.0      # 4 x y
    # and value_and_grad the same way
    value, slope = value_and_grad(grad(lambda x, y: x * x * y * y, 0), 1)(3.0, 2.0)
    assert (value, slope) == (24.0, 24.0)                                       # 2 x y^2, 4 x y


def test_grad_of_a_closure_over_an_outer_argument(E):
    def inner_slope(a):                   # d/dt tanh(a t) at t = 0.5: a (1 - tanh(a/2)^2)
        return grad(lambda t: (a * t).tanh())(0.5)
    for a in (2.0, -0.7, 1.1):
        t = math.tanh(a / 2)
        assert grad(inner_slope)(a) == pytest.approx((1 - t * t) - a * (1 - t * t) * t, rel=1e-14)
        assert grad(inner_slope)(a) == pytest.approx(fd(lambda a: inner_slope(E.Value(a)).data, a),
                                                     rel=1e-8)
    # and value_and_grad inside: its value and gradient both carry the outer a
    def both(a):
        value, slope = value_and_grad(lambda t: a * t * t)(3.0)     # 9 a, 6 a
        assert isinstance(value, E.Value) and isinstance(slope, E.Value)
        return value * slope                                          # 54 a^2
    assert grad(both)(2.0) == 216.0


def test_a_closure_over_a_value_made_outside_any_grad_gives_a_value_in_the_graph(E):
    w = E.Value(2.0)
    slope = grad(lambda x: x * x * w)(3.0)                 # 2 x w
    assert isinstance(slope, E.Value) and slope.data == 12.0
    assert gradients(slope, [w])[0].data == 6.0            # d/dw (2 x w) = 2 x
    value, slope = value_and_grad(lambda x, s: x * x * s)(3.0, w)
    assert (value.data, slope.data) == (18.0, 12.0)
    assert [g.data for g in gradients(value + slope, [w])] == [15.0]


# -- perturbation confusion -----------------------------------------------------------------

def test_no_perturbation_confusion(E):
    # Siskind and Pearlmutter: d/dx [x (d/dy (x + y))(1)] at x = 1 is 1 (confused: 2)
    assert grad(lambda x: x * grad(lambda y: x + y)(1.0))(1.0) == 1.0
    # the inner function given the outer x itself: d/dy (x y) at y = x is x, and d/dx x = 1
    # (were x both the inner and the outer variable, it would be d/dx (2x) = 2)
    assert grad(lambda x: grad(lambda y: x * y)(x))(2.0) == 1.0
    # d/dx [d/dy (y^2 x) at y = x] = d/dx (2 x^2) = 4x
    assert grad(lambda x: grad(lambda y: y * y * x)(x))(3.0) == 12.0
    # with Values in: the inner grad's result is the outer Value's function
    x = E.Value(2.0)
    d = grad(lambda y: x * y)(x)
    assert d.data == 2.0 and gradients(d, [x])[0].data == 1.0


# -- deeper, hessians, argnums, keywords ------------------------------------------------------

def test_nesting_three_deep(E):
    # d/dc (a^2 b^2 c^3) at c = 1: 3 a^2 b^2; d/db at b = 1: 6 a^2; d/da: 12 a
    def f(a):
        return grad(lambda b: grad(lambda c: a * a * b * b * c * c * c)(1.0))(1.0)
    assert grad(f)(1.0) == 12.0 and grad(f)(0.5) == 6.0
    # across arguments: d3/dxdydz (x^2 y^3 z^4) = 24 x y^2 z^3
    g = lambda x, y, z: x * x * y ** 3 * z ** 4               # noqa: E731
    for x, y, z in ((1.0, 1.0, 1.0), (0.5, -1.5, 0.75)):
        want = 24 * x * y * y * z ** 3
        assert grad(grad(grad(g, 0), 1), 2)(x, y, z) == pytest.approx(want, rel=1e-14)
        assert grad(grad(grad(g, 2), 0), 1)(x, y, z) == pytest.approx(want, rel=1e-14)
        assert grad(grad(grad(g, 0), 1), 2)(x, y, z) == pytest.approx(
            fd(grad(grad(g, 0), 1), x, y, z, i=2), rel=1e-7)
    assert grad(grad(grad(lambda x: x ** 4)))(2.0) == 48.0


def test_hessian_through_nested_grads(E):
    def f(x, y):                          # the argument not differentiated comes as a float
        return x * x * y + (y.exp() if isinstance(y, E.Value) else math.exp(y)) + x * y ** 3
    # [[2y + 0, 2x + 3y^2], [2x + 3y^2, e^y + 6xy]]
    x, y = 1.5, -0.5
    want = [[2 * y, 2 * x + 3 * y * y], [2 * x + 3 * y * y, math.exp(y) + 6 * x * y]]
    H = hessian(f, (0, 1))(x, y)
    assert isinstance(H, tuple) and all(isinstance(row, tuple) for row in H)
    nested = [[grad(grad(f, i), j)(x, y) for j in (0, 1)] for i in (0, 1)]
    for i in range(2):
        for j in range(2):
            assert H[i][j] == pytest.approx(want[i][j], rel=1e-14)
            assert nested[i][j] == pytest.approx(want[i][j], rel=1e-14)
    # one list argument: the same matrix, the same bits
    assert hessian(lambda v: f(v[0], v[1]))([x, y]) == [list(row) for row in H]
    # blocks for a list argument and a number: [i][j] is d2 f / d args[i] d args[j]
    blocks = hessian(lambda v, s: v[0] * v[1] * s * s, (0, 1))([2.0, 3.0], 5.0)
    assert blocks == (([[0.0, 25.0], [25.0, 0.0]], [30.0, 20.0]), ([30.0, 20.0], 12.0))
    # a hessian inside a grad: d/da of (d2/dx2 a x^3 = 6 a x) at x = 1.5 is 9
    assert grad(lambda a: hessian(lambda x: a * x ** 3)(1.5))(2.0) == 9.0
    assert fd(lambda a: hessian(lambda x: a * x ** 3)(1.5), 2.0) == pytest.approx(9.0, rel=1e-8)


def test_argnum_tuples(E):
    def f(x, y, z):
        return x * y + z * z * x
    assert grad(f, (0, 2))(2.0, 3.0, 4.0) == (19.0, 16.0)
    assert grad(f, (2, 0))(2.0, 3.0, 4.0) == (16.0, 19.0)
    assert grad(f, (-1,))(2.0, 3.0, 4.0) == (16.0,)
    value, grads = value_and_grad(f, (0, 1, 2))(2.0, 3.0, 4.0)
    assert (value, grads) == (38.0, (19.0, 2.0, 16.0))
    # lists keep their shape inside the tuple
    assert grad(lambda v, s: (v[0] + v[1]) * s, (1, 0))([1.0, 2.0], 3.0) == (3.0, [3.0, 3.0])


@pytest.mark.parametrize("argnum, error, message", [
    ((0, 0), ValueError, "names argument 0 a second time"),
    ((0, -2), ValueError, "names argument 0 a second time"),
    (2, ValueError, "argnum 2 is out of range for 2 positional arguments"),
    (-3, ValueError, "argnum -3 is out of range"),
    ((), ValueError, r"argnum=\(\) names no argument"),
    (True, TypeError, "argnum must be an int or a tuple of ints, not bool"),
    ((0, False), TypeError, "not bool"),
    (1.0, TypeError, "not float"),
    ("1", TypeError, "not str"),
    ([0, 1], TypeError, "not list"),
])
def test_bad_argnums_are_named(E, argnum, error, message):
    for make in (grad, value_and_grad, hessian):
        with pytest.raises(error, match=message):
            make(lambda x, y: x * y, argnum)(1.0, 2.0)


def test_keyword_arguments_pass_through(E):
    def f(x, scale=1.0, shift=0.0):
        return scale * x * x + shift
    assert grad(f)(3.0, scale=2.0) == 12.0
    assert value_and_grad(f)(3.0, scale=2.0, shift=1.0) == (19.0, 12.0)
    assert hessian(f)(3.0, scale=2.0) == 4.0
    s = E.Value(2.0)                           # a Value by keyword: results in the graph
    slope = grad(f)(3.0, scale=s)              # 2 s x
    assert isinstance(slope, E.Value) and slope.data == 12.0
    assert gradients(slope, [s])[0].data == 6.0


# -- unused arguments and constant outputs ------------------------------------------------------

def test_unused_arguments_and_constant_outputs_give_zero_with_a_warning(E):
    with pytest.warns(UserWarning, match="does not depend on argument 1: the derivatives in it are zero"):
        assert grad(lambda x, y: x * x, (0, 1))(3.0, 4.0) == (6.0, 0.0)
    with pytest.warns(UserWarning, match="does not depend on argument 0"):
        zero = grad(lambda x, y: y * y)(3.0, E.Value(4.0))     # the output is y's: in the graph
    assert isinstance(zero, E.Value) and zero.data == 0.0
    with pytest.warns(UserWarning, match="does not depend on arguments 0, 1: the derivatives in them are zero"):
        assert grad(lambda x, y: E.Value(5.0), (0, 1))(1.0, [2.0, 3.0]) == (0.0, [0.0, 0.0])
    with pytest.warns(UserWarning, match="returned a constant"):
        assert value_and_grad(lambda v: 7)([1.0, 2.0]) == (7.0, [0.0, 0.0])
    with pytest.warns(UserWarning, match="returned a constant"):
        assert grad(lambda x, y: y * 2, 0)(1.0, 2.0) == 0.0       # y a number: x * 0 is the truth
    with pytest.warns(UserWarning, match="hessian: the output of <lambda> does not depend on argument 1"):
        assert hessian(lambda x, y: x ** 3, (0, 1))(2.0, 1.0) == ((12.0, 0.0), (0.0, 0.0))
    with pytest.warns(UserWarning, match="returned a constant"):
        assert hessian(lambda v: 1.0)([1.0, 2.0]) == [[0.0, 0.0], [0.0, 0.0]]
    # in the graph, the zero is a Value in its place
    x = E.Value(1.0)
    with pytest.warns(UserWarning, match="does not depend on argument 1"):
        gx, gy = grad(lambda a, b: a * 3.0, (0, 1))(x, 2.0)
    assert isinstance(gx, E.Value) and isinstance(gy, E.Value) and (gx.data, gy.data) == (3.0, 0.0)
    # nested: the inner constant's zero is differentiated by the outer grad
    with pytest.warns(UserWarning, match="does not depend on argument 0"):
        assert grad(lambda a: a * grad(lambda t: a * a)(1.0))(2.0) == 0.0


def test_a_list_argument_partly_used_gets_zeros_in_place_without_a_warning(E):
    assert grad(lambda v: v[0] * v[2])([2.0, 3.0, 4.0]) == [4.0, 0.0, 2.0]
    assert grad(lambda v: (v[0] - 1.0).relu())([0.5]) == [0.0]       # used, a zero slope


def test_results_that_are_not_a_scalar_are_type_errors(E):
    with pytest.raises(TypeError, match="must return one Value"):
        grad(lambda x: [x, x])(1.0)
    with pytest.raises(TypeError, match="must return one Value"):
        hessian(lambda x: None)(1.0)
    other = autograd.pure if E is not autograd.pure else None
    if other is not None:
        with pytest.raises(TypeError, match="returned a Value of autograd.pure"):
            grad(lambda x: other.Value(1.0))(1.0)


# -- floats stay floats, and the engines agree ----------------------------------------------------

def test_numbers_in_give_backwards_floats_bit_for_bit(E):
    def f(x, y):
        return (x * y + x.exp()).tanh() / (y * y + 1.0)
    gx, gy = grad(f, (0, 1))(0.3, -1.2)
    assert is_float(gx) and is_float(gy)
    x, y = E.Value(0.3), E.Value(-1.2)
    f(x, y).backward()
    assert same_float(gx, x.grad) and same_float(gy, y.grad)
    assert value_and_grad(f)(0.3, -1.2) == (f(E.Value(0.3), E.Value(-1.2)).data, gx)


def nested_results():
    """Every nesting above, as numbers."""
    f = lambda x, y: (x * y).tanh() * y + x.exp() * y * y          # noqa: E731
    return [
        grad(lambda y: grad(lambda x, y: x * y * y, 0)(1.0, y) * y)(0.7),
        grad(grad(f, 0), 1)(0.4, -0.9),
        grad(grad(f, 1), 0)(0.4, -0.9),
        grad(lambda a: grad(lambda t: (a * t).sigmoid())(0.5))(1.3),
        grad(lambda x: x * grad(lambda y: x + y)(1.0))(1.0),
        grad(lambda x: grad(lambda y: (x * y).tanh() * y)(x))(0.6),
        grad(lambda a: grad(lambda b: grad(lambda c: (a * b * c).exp())(0.2))(0.3))(0.4),
        *[v for row in hessian(lambda v: f(v[0], v[1]))([0.4, -0.9]) for v in row],
        grad(lambda a: hessian(lambda x: (a * x).tanh())(0.8))(1.1),
    ]


def test_the_engines_give_the_same_bits(engines, monkeypatch):
    results = []
    for engine in engines:
        monkeypatch.setattr(autograd.engine, "Value", engine.Value)
        results.append(nested_results())
    core_results, pure_results = results
    assert all(is_float(x) for x in core_results + pure_results)
    assert [x.hex() for x in core_results] == [x.hex() for x in pure_results]


def test_a_deep_chain_under_nested_grads_needs_no_recursion(E):
    n = 1_000_000 if E is not autograd.pure else 20_000

    def inner(a):                          # d/dx [a * c^n * x] = a * c^n
        def chain(x):
            y = x
            for _ in range(n):
                y = y * 1.000001 + 0.0
            return a * y
        return grad(chain)(0.3)
    assert grad(inner)(2.0) == pytest.approx(1.000001 ** n, rel=1e-9)


def test_an_inner_grad_stops_at_its_own_leaves(E):
    """The inner call differentiates only what lies above its leaves: the outer
    graph below a closure is neither visited nor given derivative nodes."""
    a = E.Value(3.0)
    square = E.Value(a.data ** 2, (a,), "square")    # the lecture's custom node: no derivative
    def backward():                                   # written with ops, so create_graph
        a.grad += 2 * a.data * square.grad            # cannot pass through it
    square._backward = backward
    slope = grad(lambda t: t * t * square)(2.0)        # 2 t a^2, in the graph
    assert slope.data == 36.0
    assert gradients(slope, [a])[0].data == 24.0       # 2 t * 2a, through backward()
    if is_core(E):                                     # no adjoints emitted for the chain below h
        h = a
        for _ in range(100_000):
            h = h * 1.000001 + 0.0
        before = E.arena_info()["nodes"]
        slope = grad(lambda t: (t * h).tanh())(0.3)
        assert E.arena_info()["nodes"] - before < 100


def test_an_inner_grad_over_numbers_makes_its_leaves_in_the_enclosing_calls_engine(engines, monkeypatch):
    """Numbers in, with no Value among the arguments: an inner call makes its
    leaves in its enclosing call's engine (so they mix with the Values its
    function closes over), the outermost one in the engine in use."""
    for engine, other in (engines, engines[::-1]):
        monkeypatch.setattr(autograd.engine, "Value", other.Value)     # the engine in use
        seen = []

        def inner(y):
            seen.append(type(y))
            return y * y

        def outer(x):                       # d/dx [x * d/dy (x y)(2)] = d/dx x^2 = 2x
            return x * grad(lambda y: x * y)(2.0) + grad(inner)(1.0)
        assert grad(outer)(engine.Value(3.0)).data == 6.0
        assert seen == [engine.Value]
        with pytest.raises(ZeroDivisionError):          # a call that fails leaves no trace
            grad(lambda x: grad(lambda y: y / 0.0)(x))(engine.Value(1.0))
        grad(inner)(1.0)
        assert seen == [engine.Value, other.Value]


def test_a_lecture_style_custom_node_inside_a_grad_over_outside_values(E):
    """Numbers in, an output that involves an outside Value w, and a custom node
    whose _backward adds numbers: no derivative graph can pass through it, so
    the gradient comes as numbers (backward()'s), with a warning; with Values
    in, where the result must be in the graph, it is the TypeError it was."""
    def square(x):
        out = E.Value(x.data ** 2, (x,), "square")

        def backward():
            x.grad += 2 * x.data * out.grad
        out._backward = backward
        return out
    w = E.Value(2.0)
    with pytest.warns(UserWarning, match="without its dependence on them: cannot differentiate "
                                         "through the custom node 'square'"):
        slope = grad(lambda x: square(x) * w)(3.0)
    assert is_float(slope) and slope == 12.0                           # 2 x w
    with pytest.warns(UserWarning, match="custom node 'square'"):
        assert value_and_grad(lambda x: square(x) * w)(3.0) == (18.0, 12.0)
    with pytest.raises(TypeError, match="custom node 'square' with create_graph=True"):
        grad(lambda x: square(x) * w)(E.Value(3.0))
