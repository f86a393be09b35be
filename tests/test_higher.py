"""Derivatives of derivatives: gradients(create_graph=True), and grad,
value_and_grad and hessian over numbers, on both engines."""
import math
import random

import pytest

import autograd.pure
from autograd import grad, gradients, hessian, value_and_grad
from helpers import (central_difference, check_arena, collecting_at_every_allocation, is_core,
                     same_float, stop_timer_signal)

try:
    import autograd.core as core_module
except ImportError:
    core_module = None


def tanh_derivative_polynomials(order):
    """Coefficients (lowest power first) of p_k with d^k/dx^k tanh(x) =
    p_k(tanh(x)): p_0 = t and p_(k+1) = p_k'(t) * (1 - t^2)."""
    polys = [[0.0, 1.0]]
    for _ in range(order):
        p = polys[-1]
        dp = [k * c for k, c in enumerate(p)][1:] or [0.0]
        nxt = [0.0] * (len(dp) + 2)
        for k, c in enumerate(dp):          # dp * (1 - t^2)
            nxt[k] += c
            nxt[k + 2] -= c
        polys.append(nxt)
    return polys


def poly_at(coefficients, t):
    return sum(c * t ** k for k, c in enumerate(coefficients))


def test_tanh_and_its_first_six_derivatives_at_50_points(engine):
    polys = tanh_derivative_polynomials(6)
    assert polys[2] == [0.0, -2.0, 0.0, 2.0]                  # -2t + 2t^3
    assert polys[3] == [-2.0, 0.0, 8.0, 0.0, -6.0]            # -2 + 8t^2 - 6t^4
    for k in range(50):
        x = engine.Value(-3.0 + 6.0 * k / 49)
        d = x.tanh()
        t = math.tanh(x.data)
        for order in range(1, 7):
            [d] = gradients(d, [x], create_graph=True)
            assert d.data == pytest.approx(poly_at(polys[order], t), rel=1e-9, abs=1e-12), (x.data, order)


def test_gradients_are_backwards_numbers_and_touch_no_grad(engine):
    a, b, c = engine.Value(1.5, label="a"), engine.Value(-0.7), engine.Value(2.0)
    a.grad, b.grad, c.grad = 10.0, 20.0, 30.0
    h = (a * b + c.exp()).tanh() + engine.dot([a, b], [c, c], 0.5) + (a ** 3) / c + (b * b + 1.0).log()
    out = h * h.sigmoid() + abs(b) + engine.logsumexp([a, b, c]) + (a * c).relu() + (c ** a).sqrt()
    out.grad, h.grad = 5.0, 6.0
    plain = gradients(out, [a, b, c])
    built = gradients(out, [a, b, c], create_graph=True)
    assert (a.grad, b.grad, c.grad, out.grad, h.grad) == (10.0, 20.0, 30.0, 5.0, 6.0)
    for v in (a, b, c):
        v.grad = 0.0
    out.backward()
    assert [g.data for g in plain] == [a.grad, b.grad, c.grad]
    assert all(same_float(g.data, v.grad) for g, v in zip(built, (a, b, c)))
    assert all(g._children == () for g in plain)              # numbers, as leaves
    assert all(g._children != () for g in built)              # nodes of the graph


def test_an_input_the_output_does_not_use_gets_zero(engine):
    x, unused = engine.Value(2.0), engine.Value(3.0)
    y = x * x
    for create_graph in (False, True):
        dx, du = gradients(y, [x, unused], create_graph=create_graph)
        assert (dx.data, du.data) == (4.0, 0.0)
    [one] = gradients(y, [y], create_graph=True)
    assert one.data == 1.0


def random_expression(E, xs, rng, size=12):
    """A random graph over xs of every smooth op (relu and abs away from 0)."""
    pool = list(xs)
    for _ in range(size):
        a, b = rng.choice(pool), rng.choice(pool)
        pick = rng.randrange(13)
        if pick == 0:
            v = a + b
        elif pick == 1:
            v = a * b
        elif pick == 2:
            v = a - b * 0.5
        elif pick == 3:
            v = a / (b * b + 1.0)
        elif pick == 4:
            v = (a * 0.3).tanh()
        elif pick == 5:
            v = (a * 0.2).exp()
        elif pick == 6:
            v = (a * a + 1.0).log()
        elif pick == 7:
            v = (a * a + 0.5).sqrt()
        elif pick == 8:
            v = a.sigmoid()
        elif pick == 9:
            v = (a * 0.5) ** 3
        elif pick == 10:
            v = E.dot([a, b], [b, a], 0.1)
        elif pick == 11:
            v = E.logsumexp([a, b, a * 0.5])
        else:
            v = (a * a + 2.0) ** (b * 0.1)
        pool.append(v)
    return E.vsum(pool[len(xs):])


def hessian_of(E, point, seed):
    def f(v):
        return random_expression(E, v, random.Random(seed))
    xs = [E.Value(p) for p in point]
    out = f(xs)
    first = gradients(out, xs, create_graph=True)
    return [[h.data for h in gradients(g, xs)] for g in first], f


@pytest.mark.parametrize("seed", range(8))
def test_hessians_of_random_graphs_match_finite_differences_of_the_gradient(engine, seed):
    rng = random.Random(100 + seed)
    point = [rng.uniform(-1.0, 1.0) for _ in range(3)]
    H, f = hessian_of(engine, point, seed)

    def gradient_component(i):
        def g(values):
            xs = [engine.Value(v) for v in values]
            return gradients(f(xs), xs)[i].data
        return g

    for i in range(3):
        for j in range(3):
            numeric = central_difference(gradient_component(i), point, j)
            assert math.isclose(H[i][j], numeric, rel_tol=1e-5, abs_tol=1e-6), (i, j)
    for i in range(3):                       # a Hessian is symmetric, up to rounding
        for j in range(i):
            assert math.isclose(H[i][j], H[j][i], rel_tol=1e-9, abs_tol=1e-12)


@pytest.mark.skipif(core_module is None, reason="the compiled core is not built")
@pytest.mark.parametrize("seed", range(8))
def test_hessians_are_bitwise_equal_on_both_engines(seed):
    point = [0.3, -0.8, 0.55]
    assert hessian_of(core_module, point, seed)[0] == hessian_of(autograd.pure, point, seed)[0]


def test_newtons_method_finds_the_minimum(engine):
    def f(x):
        return x.exp() - 2.0 * x            # minimum at log 2
    df, d2f = grad(f), grad(grad(f))
    x = 3.0
    for _ in range(30):
        x -= df(engine.Value(x)).data / d2f(engine.Value(x)).data
    assert x == pytest.approx(math.log(2.0), abs=1e-14)
    assert abs(grad(f)(x)) < 1e-14


def test_the_functional_api_over_numbers_and_values(engine):
    def f(x, y):                            # the argument not differentiated stays a float
        return x * x * y + y * y
    assert grad(f)(3.0, 2.0) == 12.0
    assert grad(f, argnum=1)(3.0, 2.0) == 13.0
    assert grad(f, argnum=-1)(3.0, 2.0) == 13.0
    value, slope = value_and_grad(lambda x: x ** 3)(2.0)
    assert (value, slope) == (8.0, 12.0)
    assert grad(grad(lambda x: x ** 3))(2.0) == 12.0
    assert grad(grad(grad(lambda x: x ** 3)))(2.0) == 6.0
    H = hessian(lambda v: v[0] * v[0] * v[1] + v[1].exp())([1.0, 2.0])
    assert H == [[4.0, 2.0], [2.0, pytest.approx(math.exp(2.0))]]
    assert hessian(lambda x: x ** 4)(1.5) == pytest.approx(12 * 1.5 ** 2)
    g = grad(lambda v: v[0] * v[0] + v[1] * v[1] + v[2] * v[2])([1.0, -2.0, 0.5])
    assert g == [2.0, -4.0, 1.0]
    x = engine.Value(1.5)                   # Values in: Values out, in the graph
    slope = grad(lambda x: x ** 3)(x)
    assert isinstance(slope, engine.Value) and slope.data == 6.75
    assert gradients(slope, [x])[0].data == 9.0


def test_bad_uses_get_clear_errors(engine):
    x = engine.Value(1.0)
    with pytest.raises(TypeError, match="takes an output Value"):
        gradients(2.0, [x])
    with pytest.raises(TypeError, match=r"write \[x\] for one"):
        gradients(x * 2, x)
    with pytest.raises(TypeError, match=r"inputs\[1\] must be a Value"):
        gradients(x * 2, [x, 1.0])
    with pytest.raises(TypeError, match="must return one Value"):
        grad(lambda v: [v, v])(1.0)
    with pytest.raises(TypeError, match="must return one Value"):
        grad(lambda v: "3.0")(1.0)
    with pytest.warns(UserWarning, match="returned a constant"):     # HIPS: zero, and a warning
        assert grad(lambda v: 3.0)(1.0) == 0.0
    with pytest.raises(ValueError, match="argnum 2 is out of range for 2 positional"):
        grad(lambda a, b: a * b, argnum=2)(1.0, 2.0)
    with pytest.raises(ValueError, match="empty list"):
        grad(lambda v: engine.Value(1.0))([])


def test_custom_ops_differentiate_again_when_their_partials_take_values(engine):
    cube = engine.function(lambda x: x ** 3, lambda x: 3 * x * x, name="cube")
    x = engine.Value(2.0)
    [d1] = gradients(cube(x), [x], create_graph=True)
    [d2] = gradients(d1, [x])
    assert (d1.data, d2.data) == (12.0, 12.0)

    math_exp = engine.function(math.exp, math.exp, name="math_exp")
    with pytest.raises(TypeError, match="custom node 'math_exp' again: its partial derivative 0"):
        gradients(math_exp(x), [x], create_graph=True)
    assert gradients(math_exp(x), [x])[0].data == math.exp(2.0)        # first order: fine

    y = x * 3.0
    lecture = engine.Value(y.data ** 2, (y,), "square")

    def backward():
        y.grad += 2 * y.data * lecture.grad
    lecture._backward = backward
    assert gradients(lecture, [x])[0].data == 2 * 6.0 * 3.0              # backward() itself
    with pytest.raises(TypeError, match="custom node 'square' with create_graph=True"):
        gradients(lecture, [x], create_graph=True)


def test_a_deep_chain_with_create_graph_needs_no_recursion(engine):
    n = 1_000_000 if engine is not autograd.pure else 20_000
    x = engine.Value(0.3)
    y = x
    for _ in range(n):
        y = y * 1.000001 + 0.0
    [d] = gradients(y, [x], create_graph=True)
    assert d.data == pytest.approx(1.000001 ** n, rel=1e-9)
    assert gradients(d, [x])[0].data == 0.0


def test_the_derivatives_picture_command_draws_tanh_and_six_derivatives(tmp_path):
    pytest.importorskip("matplotlib", reason="the picture needs matplotlib (pip install '.[plot]')")
    from autograd.__main__ import main
    path = tmp_path / "tanh.png"
    assert main(["derivatives", "--output", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_code_that_compacts_or_re_initializes_mid_gradients_changes_nothing(engine):
    """A gc callback compacts the arena at every allocation while the
    derivative graph is built, and a custom op's partial re-initializes an
    unrelated Value and drops garbage: the results are those of a quiet run."""

    def build():
        stray = engine.Value(9.0)
        garbage = [engine.Value(float(k)) * 2.0 for k in range(50)]

        def meddling_partial(x):
            garbage.clear()
            stray.__init__(-1.0)
            return 2.0 * x
        square = engine.function(lambda x: x * x, meddling_partial, name="square")
        xs = [engine.Value(v) for v in (0.4, -1.1, 0.9)]
        out = engine.vsum([square(xs[0] * xs[1]), (xs[2] * xs[0]).tanh(), engine.dot(xs, xs, 0.5)])
        first = gradients(out, xs, create_graph=True)
        return [g.data for g in first] + [h.data for g in first for h in gradients(g, xs)]

    quiet = build()

    def callback(phase, info):
        if phase == "start" and is_core(engine):
            engine.collect()
    with collecting_at_every_allocation(callback):
        noisy = build()
    assert noisy == quiet


def test_a_custom_backward_that_grows_compacts_and_re_initializes_mid_gradients(engine):
    """gradients() without create_graph runs backward() and puts every grad
    back: a lecture-style _backward that grows the arena, asks for a
    compaction and re-initializes a stray Value leaves grads and results right."""
    x, w = engine.Value(1.5), engine.Value(-2.0)
    stray = engine.Value(4.0)
    h = x * w
    square = engine.Value(h.data ** 2, (h,), "square")
    made = []

    def backward():
        made.extend(engine.Value(float(k)) * 3.0 for k in range(2000))    # grows the arena
        if is_core(engine):
            engine.collect()                    # deferred to the end of the sweep
        stray.__init__(7.0)
        h.grad += 2 * h.data * square.grad
    square._backward = backward
    out = square.tanh() + w
    x.grad, w.grad, h.grad, out.grad = 1.0, 2.0, 3.0, 4.0
    dx, dw, dstray = gradients(out, [x, w, stray])
    t = math.tanh(9.0)
    assert dx.data == pytest.approx((1 - t * t) * 2 * -3.0 * -2.0)
    assert dw.data == pytest.approx((1 - t * t) * 2 * -3.0 * 1.5 + 1.0)
    assert dstray.data == 0.0 and stray.data == 7.0
    assert (x.grad, w.grad, h.grad, out.grad) == (1.0, 2.0, 3.0, 4.0)
    assert len(made) == 2000
    check_arena(engine)


def test_the_derivative_graph_is_freed_with_its_results_and_the_gc_off(engine):
    """No reference cycles: with the cyclic GC off, repeated Hessians leave
    nothing behind once their results are dropped."""
    import gc
    import weakref
    x = [engine.Value(v) for v in (0.3, -0.6, 0.9)]
    gc.collect()
    gc.disable()
    try:
        before = engine.arena_info()["nodes"] if is_core(engine) else None
        for _ in range(20):
            out = random_expression(engine, x, random.Random(5))
            first = gradients(out, x, create_graph=True)
            rows = [[h.data for h in gradients(g, x)] for g in first]
            probe = None if is_core(engine) else weakref.ref(first[0])   # core: the arena's count
            del out, first
            assert probe is None or probe() is None
        assert len(rows) == 3
        if before is not None:
            assert engine.arena_info()["nodes"] == before
    finally:
        gc.enable()


def graph_signature(root):
    """Every node below root, in a fixed walk: (kind, data bits, exponent,
    positions of the children in the walk): two graphs with equal signatures
    are the same nodes with the same numbers."""
    import struct
    order, position, stack = [], {}, [(root, False)]
    while stack:                           # post-order, no recursion
        node, expanded = stack.pop()
        if node in position:
            continue
        kind, kids, exponent, _, _ = node._rule()
        if expanded or not kids:
            position[node] = len(order)
            order.append((kind, struct.pack("<d", node.data), exponent,
                          tuple(position[k] for k in kids)))
            continue
        stack.append((node, True))
        stack.extend((k, False) for k in reversed(kids) if k not in position)
    return order


@pytest.mark.skipif(core_module is None, reason="the compiled core is not built")
@pytest.mark.parametrize("seed", range(10))
def test_the_cores_emitted_graph_is_the_one_built_with_ops(seed):
    """csrc/higher.pxi emits, node for node, the graph autograd.higher's
    rules build with Value ops: same kinds, same data bits, same wiring."""
    from autograd.higher import _built_with_ops
    rng = random.Random(seed)
    xs = [core_module.Value(rng.uniform(-1, 1)) for _ in range(3)]
    out = random_expression(core_module, xs, rng, size=16)
    out = out + (xs[0] * 2.0).relu() + abs(xs[1]) + xs[2] ** 2.0 + -xs[0]
    emitted = gradients(out, xs, create_graph=True)
    built = _built_with_ops(out, xs, core_module)
    for e, b in zip(emitted, built):
        assert graph_signature(e) == graph_signature(b)
    for e, b in zip(emitted, built):                     # and their own derivatives
        assert [g.data for g in gradients(e, xs)] == [g.data for g in gradients(b, xs)]


@pytest.mark.skipif(core_module is None, reason="the compiled core is not built")
def test_signal_handlers_that_grow_compact_and_re_initialize_mid_sweep():
    """The emitting sweep, and gradients()'s sweep into its private array,
    check for signals: a handler that makes nodes, asks for a compaction and
    re-initializes Values changes nothing."""
    import signal
    C = core_module
    x = C.Value(0.3)
    y = x
    for _ in range(150_000):
        y = (y * 1.000001).tanh() + 0.0
    quiet = gradients(y, [x], create_graph=True)[0].data
    quiet_numbers = gradients(y, [x])[0].data
    stray = C.Value(1.0)
    made, fired, nested = [], [], []
    small_x = C.Value(2.0)
    small = small_x * small_x * 3.0

    busy = []

    def handler(signum, frame):
        if busy:                            # a handler interrupted by the next signal
            return
        busy.append(1)
        fired.append(C.arena_info()["sweeps"])     # > 0: inside the emitting sweep
        made[:] = [C.Value(float(k)) * 2.0 for k in range(200)]
        C.collect()
        stray.__init__(float(len(fired)))
        nested.append(gradients(small, [small_x])[0].data)   # while the sweep's own array is in use
        busy.clear()
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        noisy = [gradients(y, [x], create_graph=True)[0] for _ in range(3)]
        noisy_numbers = [gradients(y, [x])[0].data for _ in range(20)]
    finally:
        stop_timer_signal(old)
    assert any(fired), "no signal arrived inside the sweep"
    assert [d.data for d in noisy] == [quiet] * 3
    assert noisy_numbers == [quiet_numbers] * 20 and quiet_numbers == quiet
    assert nested and all(d == 12.0 for d in nested)
    assert gradients(small, [small_x])[0].data == 12.0
    C.check_arena()
