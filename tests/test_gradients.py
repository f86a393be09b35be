"""Gradients: finite differences, hand-derived cases, backward()/forward() semantics."""
import math
import random

import pytest

from helpers import central_difference, close

# name -> (build(values) -> Value, function on floats, domain sampler)
_OPS = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
    "pow": (lambda a, b: a ** b, lambda a, b: a ** b),
    "powc": (lambda a, b: a ** 3.5, lambda a, b: a ** 3.5),
    "rpow": (lambda a, b: 2.5 ** a, lambda a, b: 2.5 ** a),
    "rsub": (lambda a, b: 3 - a, lambda a, b: 3 - a),
    "rdiv": (lambda a, b: 3 / a, lambda a, b: 3 / a),
    "neg": (lambda a, b: -a, lambda a, b: -a),
    "relu": (lambda a, b: (a - 1).relu(), lambda a, b: max(0.0, a - 1)),
    "tanh": (lambda a, b: a.tanh(), lambda a, b: math.tanh(a)),
    "sigmoid": (lambda a, b: (a - 1).sigmoid(), lambda a, b: 1 / (1 + math.exp(1 - a))),
    "exp": (lambda a, b: a.exp(), lambda a, b: math.exp(a)),
    "log": (lambda a, b: a.log(), lambda a, b: math.log(a)),
    "sqrt": (lambda a, b: a.sqrt(), lambda a, b: math.sqrt(a)),
    "abs": (lambda a, b: (a - 1.2).abs(), lambda a, b: abs(a - 1.2)),
}


@pytest.mark.parametrize("name", sorted(_OPS))
def test_every_op_matches_central_differences(engine, name):
    build, reference = _OPS[name]
    rng = random.Random(name)
    for _ in range(25):
        # positive points away from every kink (relu at 1, abs at 1.2) and pole
        xs = [rng.uniform(0.3, 2.0), rng.uniform(0.3, 2.0)]
        if abs(xs[0] - 1.0) < 0.05 or abs(xs[0] - 1.2) < 0.05:
            continue
        a, b = engine.Value(xs[0]), engine.Value(xs[1])
        out = build(a, b)
        assert close(out.data, reference(*xs), 1e-15)
        out.backward()
        f = lambda p: reference(*p)
        for grad, i in ((a.grad, 0), (b.grad, 1)):
            numeric = central_difference(f, xs, i)
            assert abs(grad - numeric) <= 1e-6 * max(1.0, abs(numeric)), (name, xs, i, grad, numeric)


@pytest.mark.parametrize("fused", ["vsum", "dot"])
def test_fused_nodes_match_central_differences(engine, fused):
    rng = random.Random(7)
    n = 5
    xs = [rng.uniform(-2, 2) for _ in range(2 * n + 1)]

    def build(vals):
        if fused == "vsum":
            return engine.vsum(vals[i] * vals[i + 1] for i in range(0, 2 * n, 2)) * vals[-1]
        return engine.dot(vals[:n], vals[n:2 * n], vals[-1]).tanh()

    vals = [engine.Value(x) for x in xs]
    out = build(vals)
    out.backward()
    f = lambda p: build([engine.Value(x) for x in p]).data
    for i, v in enumerate(vals):
        numeric = central_difference(f, xs, i)
        assert abs(v.grad - numeric) <= 1e-6 * max(1.0, abs(numeric))


def test_hand_derived_expression(engine):
    V = engine.Value
    a, b, c, f = V(2.0), V(-3.0), V(10.0), V(-2.0)
    L = (a * b + c) * f
    L.backward()
    assert L.data == -8.0
    assert (a.grad, b.grad, c.grad, f.grad, L.grad) == (6.0, -4.0, -2.0, 4.0, 1.0)


def test_node_reuse_receives_every_contribution(engine):
    V = engine.Value
    a = V(3.0)
    (a + a).backward()
    assert a.grad == 2.0
    a.grad = 0.0
    (a * a).backward()
    assert a.grad == 6.0
    a.grad = 0.0
    b = a + a
    c = b + b
    c.backward()
    assert (a.grad, b.grad, c.data) == (4.0, 2.0, 12.0)
    x = V(0.5)
    s = engine.vsum([x, x, x * x])
    s.backward()
    assert x.grad == 3.0
    y = V(2.0)
    engine.dot([y, y], [y, 3.0], y).backward()    # y + y*y + y*3
    assert y.grad == 1.0 + 2 * 2.0 + 3.0


def test_backward_resets_interior_and_accumulates_leaves(engine):
    V = engine.Value
    a, b = V(2.0), V(-1.5)
    mid = a * b
    out = mid.tanh() + a
    out.backward()
    first = (a.grad, b.grad, mid.grad)
    out.backward()
    assert (a.grad, b.grad) == (2 * first[0], 2 * first[1])       # leaves accumulate
    assert mid.grad == first[2] and out.grad == 1.0               # interior grads reset
    mid.grad = 123.0
    a.grad = b.grad = 0.0
    out.backward()
    assert (a.grad, b.grad, mid.grad) == first


def test_backward_of_a_leaf_sets_its_grad_to_one(engine):
    a = engine.Value(2.0)
    a.backward()
    assert a.grad == 1.0


def test_backward_from_an_inner_node_touches_only_its_graph(engine):
    V = engine.Value
    a, b = V(1.0), V(2.0)
    inner = a * b
    outer = inner * 3
    inner.backward()
    assert (a.grad, b.grad, inner.grad, outer.grad) == (2.0, 1.0, 1.0, 0.0)


def test_forward_recomputes_from_new_leaf_data(engine):
    V = engine.Value

    def build(x, y):
        return ((x * y + x.exp()) / (y.sigmoid() + 1)).tanh() + engine.dot([x, y], [y, 2.0], 1.0)

    x, y = V(0.3), V(-1.2)
    out = build(x, y)
    out.backward()
    x.data, y.data = 1.1, 0.4
    assert out.forward() is out
    fresh_x, fresh_y = V(1.1), V(0.4)
    fresh = build(fresh_x, fresh_y)
    assert out.data == fresh.data
    x.grad = y.grad = 0.0
    out.backward()
    fresh.backward()
    assert (x.grad, y.grad) == (fresh_x.grad, fresh_y.grad)


def test_forward_raises_like_the_op_and_keeps_the_graph_usable(engine):
    x = engine.Value(2.0)
    out = x.log() * 2
    x.data = -1.0
    with pytest.raises(ValueError, match="math domain error"):
        out.forward()
    x.data = math.e
    assert out.forward().data == 2.0
    out.backward()
    assert x.grad == 2 / math.e


def test_division_by_zero_gradient_is_ieee(engine):
    # d sqrt(x)/dx at 0 is +inf (the limit), as PyTorch gives; never an exception
    x = engine.Value(0.0)
    x.sqrt().backward()
    assert x.grad == math.inf


def test_pow_gradient_conventions(engine):
    V = engine.Value
    x, y = V(0.0), V(2.0)
    (x ** y).backward()
    assert (x.grad, y.grad) == (0.0, 0.0)          # d/dy at base 0 is 0 (PyTorch's rule)
    x, y = V(3.0), V(0.0)
    (x ** y).backward()
    assert (x.grad, y.grad) == (0.0, math.log(3.0))
    x, y = V(-2.0), V(3.0)
    (x ** y).backward()
    assert x.grad == 12.0 and math.isnan(y.grad)  # log of a negative base: undefined


def test_forward_on_a_new_root_leaves_other_grads_alone(engine):
    # regression: the core's first sweep from a root zeroed interior grads even
    # for forward(), wiping a grad that an earlier backward() had left
    V = engine.Value
    a, b = V(1.0), V(2.0)
    p = a + a
    p.backward()
    q = b + p
    q.forward()
    assert (p.grad, a.grad) == (1.0, 2.0)
    q.backward()
    assert (p.grad, a.grad, b.grad) == (1.0, 4.0, 1.0)
