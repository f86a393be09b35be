"""The Value API: construction, attributes, operators, errors (both engines)."""
import copy
import fractions
import math
import pickle

import numpy as np
import pytest


# -- construction ------------------------------------------------------------------

@pytest.mark.parametrize("raw, stored", [
    (3, 3.0), (2.5, 2.5), (True, 1.0), (False, 0.0), (-0.0, -0.0),
    (np.float64(1.25), 1.25), (np.float32(0.5), 0.5), (np.int64(7), 7.0),
    (fractions.Fraction(1, 4), 0.25), (math.inf, math.inf),
])
def test_data_is_stored_as_float(engine, raw, stored):
    v = engine.Value(raw)
    assert type(v.data) is float
    assert v.data == stored and math.copysign(1, v.data) == math.copysign(1, stored)
    assert v.grad == 0.0 and type(v.grad) is float


@pytest.mark.parametrize("bad, name", [
    ("3", "str"), (None, "NoneType"), (1j, "complex"), ([1.0], "list"), (np.complex128(1), "complex128"),
])
def test_non_real_data_raises_type_error_naming_the_type(engine, bad, name):
    with pytest.raises(TypeError, match=f"real number.*not {name}"):
        engine.Value(bad)


def test_value_of_a_value_is_rejected(engine):
    with pytest.raises(TypeError, match="not Value"):
        engine.Value(engine.Value(1.0))


def test_int_too_large_raises_overflow(engine):
    with pytest.raises(OverflowError):
        engine.Value(10 ** 400)
    with pytest.raises(OverflowError):
        engine.Value(1.0) + 10 ** 400


def test_attributes_read_and_write(engine):
    v = engine.Value(1.5, label="x")
    assert v.label == "x" and v._op == "" and v._prev == set()
    v.data = 4
    v.grad = -2
    assert (v.data, v.grad) == (4.0, -2.0) and type(v.data) is float
    v.label = "y"
    assert v.label == "y"
    with pytest.raises(TypeError, match="not str"):
        v.data = "a"
    with pytest.raises(TypeError, match="not NoneType"):
        v.grad = None
    with pytest.raises(TypeError, match="label must be a str"):
        v.label = 3
    with pytest.raises(TypeError, match="label must be a str"):
        engine.Value(1.0, label=5)
    with pytest.raises(TypeError, match="_children must be a tuple of Values, not int"):
        engine.Value(1.0, 5)
    assert (v.data, v.grad, v.label) == (4.0, -2.0, "y")   # failed writes changed nothing


def test_repr_is_micrographs(engine):
    v = engine.Value(2.0)
    v.grad = 0.5
    assert repr(v) == "Value(data=2.0, grad=0.5)"


def test_labels_survive_on_interior_nodes(engine):
    a, b = engine.Value(1.0, label="a"), engine.Value(2.0, label="b")
    c = a * b
    c.label = "c"
    d = c + 1
    del c
    (child,) = [v for v in d._children if v.label == "c"]
    assert child.data == 2.0
    child.label = ""
    assert child.label == ""


# -- operators ---------------------------------------------------------------------------

def test_operators_with_numbers_on_either_side(engine):
    V = engine.Value
    a = V(3.0)
    cases = [
        (a + 2, 5.0), (2 + a, 5.0), (a - 2, 1.0), (2 - a, -1.0), (a * 2, 6.0), (2 * a, 6.0),
        (a / 2, 1.5), (3 / a, 1.0), (a ** 2, 9.0), (2 ** a, 8.0), (-a, -3.0), (a + True, 4.0),
        (a ** V(2.0), 9.0), (a * 2.5, 7.5), (abs(V(-2.0)), 2.0),
    ]
    for result, expected in cases:
        assert type(result) is V
        assert result.data == expected


def test_numpy_scalars_on_the_left_give_values(engine):
    a = engine.Value(3.0)
    for result, expected in [(np.float64(2.0) * a, 6.0), (np.float32(1.0) + a, 4.0),
                             (np.int64(5) - a, 2.0), (np.float64(6.0) / a, 2.0),
                             (np.float64(2.0) ** a, 8.0)]:
        assert type(result) is engine.Value
        assert result.data == expected


@pytest.mark.parametrize("other", ["s", None, 1j, [1.0], object()])
def test_unsupported_operands_raise_type_error(engine, other):
    a = engine.Value(1.0)
    for op in (lambda: a + other, lambda: other + a, lambda: a * other, lambda: other - a,
               lambda: a / other, lambda: a ** other, lambda: other ** a):
        with pytest.raises(TypeError):   # Python's own message, as for floats
            op()


def test_three_argument_pow_is_unsupported(engine):
    with pytest.raises(TypeError):
        pow(engine.Value(2.0), 3, 5)


def test_op_symbols_and_children(engine):
    V = engine.Value
    a, b = V(2.0), V(3.0)
    assert (a + b)._op == "+" and (a + b)._prev == {a, b}
    assert (a * b)._op == "*" and (a - b)._op == "-" and (a / b)._op == "/"
    assert (a ** 2)._op == "**2" and (a ** 0.5)._op == "**0.5" and (a ** 2)._prev == {a}
    assert (a ** b)._op == "**" and (a ** b)._prev == {a, b}
    assert a.relu()._op == "ReLU" and a.tanh()._op == "tanh" and a.exp()._op == "exp"
    assert a.log()._op == "log" and a.sqrt()._op == "sqrt" and a.sigmoid()._op == "sigmoid"
    assert (-a)._op == "neg" and a.abs()._op == "abs"
    c = a * 5
    (const,) = c._prev - {a}
    assert const.data == 5.0 and const._op == ""           # constants become leaves, as micrograd
    assert (a + a)._prev == {a} and (a + a)._children == (a, a)
    s = engine.vsum([a, b, 1.0])
    assert s._op == "sum" and [v.data for v in s._children] == [2.0, 3.0, 1.0]
    d = engine.dot([a, b], [b, 4.0], 0.5)
    assert d._op == "dot" and [v.data for v in d._children] == [0.5, 2.0, 3.0, 3.0, 4.0]


def test_children_are_the_same_handles(engine):
    a, b = engine.Value(2.0), engine.Value(3.0)
    c = a * b
    assert c._prev == {a, b}
    kids = c._children
    assert kids[0] is a and kids[1] is b
    assert c._children[0] is kids[0]          # one handle per node
    assert len({id(v) for v in (c * 2)._children[0]._children}) == 2


# -- fused nodes ----------------------------------------------------------------------------

def test_vsum_equals_chained_adds_bitwise(engine):
    V = engine.Value
    xs = [0.1, 0.7, 1e16, -1e16, 3.3, 2 ** -60]
    vals = [V(x) for x in xs]
    chained = vals[0]
    for v in vals[1:]:
        chained = chained + v
    assert engine.vsum(vals).data == chained.data
    assert engine.vsum([]).data == 0.0 and engine.vsum([]). _op == ""
    with pytest.raises(TypeError, match="vsum.*not str"):
        engine.vsum([vals[0], "x"])


def test_dot_equals_micrograd_neuron_sum_bitwise(engine):
    V = engine.Value
    w = [V(x) for x in (0.3, -1.7, 2.2, 1e-3)]
    x = [0.1, V(0.9), -4.0, 7.5]
    b = V(0.25)
    expected = sum((wi * xi for wi, xi in zip(w, x)), b)
    assert engine.dot(w, x, b).data == expected.data
    with pytest.raises(ValueError, match="4 weights but 3 inputs"):
        engine.dot(w, x[:3], b)
    with pytest.raises(TypeError, match="dot.*not NoneType"):
        engine.dot(w, [None] * 4, b)


# -- no_grad, detach, copies ------------------------------------------------------------------

def test_no_grad_records_no_graph(engine):
    a = engine.Value(2.0)
    assert engine.is_grad_enabled()
    with engine.no_grad():
        assert not engine.is_grad_enabled()
        c = (a * 3 + 1).tanh()
        s = engine.vsum([a, a, 1.0])
        d = engine.dot([a], [2.0], 1.0)
    assert engine.is_grad_enabled()
    assert c._op == "" and c._prev == set() and c.data == math.tanh(7.0)
    assert (s.data, s._op, d.data, d._op) == (5.0, "", 5.0, "")
    c.backward()
    assert a.grad == 0.0


def test_enable_grad_records_a_graph_inside_no_grad_and_restores_the_mode(engine):
    a = engine.Value(2.0)
    with engine.no_grad():
        with engine.no_grad():
            with engine.enable_grad():
                assert engine.is_grad_enabled()
                c = (a * 3.0).tanh()
                with engine.no_grad():          # nests inside it as anywhere
                    leaf = a * 3.0
                assert engine.is_grad_enabled()
            assert not engine.is_grad_enabled()
        assert not engine.is_grad_enabled()
        with pytest.raises(ZeroDivisionError):
            with engine.enable_grad():
                a / 0.0
        assert not engine.is_grad_enabled()     # the mode comes back after an error too
    assert engine.is_grad_enabled()
    assert c._op == "tanh" and leaf._op == ""
    c.backward()
    assert a.grad == 3.0 * (1.0 - math.tanh(6.0) ** 2)


def test_no_grad_is_per_thread(engine):
    import threading
    a = engine.Value(2.0)
    inside, outside = threading.Event(), threading.Event()
    seen = {}

    def other_thread():
        inside.wait()
        seen["enabled"] = engine.is_grad_enabled()
        seen["op"] = (a * 3)._op
        outside.set()

    t = threading.Thread(target=other_thread)
    t.start()
    with engine.no_grad():
        inside.set()
        outside.wait()
        assert (a * 3)._op == ""
    t.join()
    assert seen == {"enabled": True, "op": "*"}


def test_no_grad_restores_state_after_an_error(engine):
    with pytest.raises(ZeroDivisionError):
        with engine.no_grad():
            engine.Value(1.0) / 0
    assert engine.is_grad_enabled()


def test_detach_makes_a_leaf(engine):
    a = engine.Value(2.0)
    b = (a * a).detach()
    assert b.data == 4.0 and b._op == "" and b._prev == set()
    (b * 3).backward()
    assert a.grad == 0.0 and b.grad == 3.0


# -- item() and ordering ----------------------------------------------------------------

def test_item_is_the_data_as_a_float(engine):
    v = engine.Value(3) * 2
    assert v.item() == 6.0 and type(v.item()) is float
    v.data = -0.0
    assert math.copysign(1, v.item()) == -1.0
    assert math.isnan(engine.Value(math.nan).item())


_ORDER = [("<", lambda a, b: a < b), ("<=", lambda a, b: a <= b),
          (">", lambda a, b: a > b), (">=", lambda a, b: a >= b)]


@pytest.mark.parametrize("x, y", [(1.0, 2.0), (2.0, 1.0), (1.5, 1.5), (-0.0, 0.0), (-math.inf, 3.0),
                                  (math.nan, 1.0), (1.0, math.nan), (math.nan, math.nan)])
def test_ordering_compares_the_data_as_floats(engine, x, y):
    a, b = engine.Value(x), engine.Value(y)
    for symbol, compare in _ORDER:
        want = compare(x, y)
        for got in (compare(a, b), compare(a, y), compare(x, b)):   # Values, a number on either side
            assert got is want, (symbol, x, y)


@pytest.mark.parametrize("number", [2, True, np.float64(2.5), np.float32(0.5), np.int64(1),
                                    fractions.Fraction(1, 3), 10 ** 400, 2 ** 53 + 1])
def test_ordering_with_any_real_number(engine, number):
    """An int is compared exactly, as Python compares a float with an int (no
    OverflowError for 10 ** 400, and 2.0 ** 53 < 2 ** 53 + 1); another real
    number as the float it converts to."""
    for x in (0.0, 1.0, 2.0 ** 53, -1e308):
        v = engine.Value(x)
        other = number if isinstance(number, int) else float(number)
        for _, compare in _ORDER:
            assert compare(v, number) is compare(x, other)
            assert compare(number, v) is compare(other, x)


def test_equality_and_hash_stay_identity(engine):
    a, b = engine.Value(1.0), engine.Value(1.0)
    assert a == a and a != b and not (a == b) and not (a != a)
    assert a != 1.0 and not (a == 1.0)
    assert hash(a) == object.__hash__(a) and len({a, b, a}) == 2
    seen = {a: "a", b: "b"}
    assert seen[a] == "a" and seen[b] == "b"
    c = a * b                       # micrograd's topological sort walks a graph with a set
    visited, topo = set(), []
    for node in (a, b, c):
        if node not in visited:
            visited.add(node)
            topo.append(node)
    assert topo == [a, b, c] and a <= b <= a


def test_sorted_min_max_take_values(engine):
    vs = [engine.Value(x) for x in (3.0, -1.0, 2.0, -1.0)]
    assert [v.data for v in sorted(vs)] == [-1.0, -1.0, 2.0, 3.0]
    assert sorted(vs)[0] is vs[1]                   # stable, and the Values themselves
    assert max(vs) is vs[0] and min(vs) is vs[1]
    assert max(vs, key=lambda v: -v) is vs[1]       # a key that makes Values
    scores = [(engine.Value(0.5), "a"), (engine.Value(0.25), "b")]
    assert min(scores)[1] == "b"


@pytest.mark.parametrize("other", ["x", None, [1.0], 1j])
def test_ordering_with_a_non_number_raises_pythons_type_error(engine, other):
    v = engine.Value(1.0)
    name = type(v).__module__ + ".Value" if type(v).__module__ == "autograd.core" else "Value"
    for symbol, compare in _ORDER:
        other_name = type(other).__name__
        with pytest.raises(TypeError) as info:
            compare(v, other)
        assert str(info.value) == f"'{symbol}' not supported between instances of '{name}' and '{other_name}'"
        with pytest.raises(TypeError, match=f"not supported between instances of '{other_name}' and '{name}'"):
            compare(other, v)


def test_ordering_defers_to_the_other_operand(engine):
    """NotImplemented for what is not a number, so the other side may answer."""
    class Anything:
        def __gt__(self, other):
            return "asked"

    assert (engine.Value(1.0) < Anything()) == "asked"


def test_values_of_the_two_engines_do_not_compare(engines):
    core, pure = engines
    with pytest.raises(TypeError, match="not supported"):
        core.Value(1.0) < pure.Value(2.0)


def test_a_value_subclass_compares(engine):
    class Named(engine.Value):
        pass

    a, b = Named(1.0), engine.Value(2.0)
    assert a < b and b > a and max([a, b]) is b and a == a and a != b and hash(a) == object.__hash__(a)


@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_copies_keep_data_grad_and_label(engine, how):
    a = engine.Value(2.0, label="a")
    y = a * 3
    y.backward()
    y.label = "y"
    dup = {"pickle": lambda v: pickle.loads(pickle.dumps(v)),
           "copy": copy.copy, "deepcopy": copy.deepcopy}[how](y)
    assert type(dup) is engine.Value and dup is not y
    assert (dup.data, dup.grad, dup.label) == (6.0, 1.0, "y")
    assert dup._op == ""                   # a copy is a leaf
    dup.data = 1.0
    assert y.data == 6.0


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "linear"])
def test_dense_layer_equals_one_dot_per_neuron(engine, activation):
    V = engine.Value
    ws = [[V(0.5), V(-1.5)], [V(2.0), V(0.25)], [V(-0.7), V(0.1)]]
    bs = [V(0.1), V(-0.2), V(0.3)]
    x = [V(1.25), V(-0.5)]
    layer = engine.dense(ws, x, bs, activation)
    one_by_one = [engine.dot(w, x, b) for w, b in zip(ws, bs)]
    if activation != "linear":
        one_by_one = [getattr(v, activation)() for v in one_by_one]
    assert [v.data for v in layer] == [v.data for v in one_by_one]
    assert [v._op for v in layer] == [v._op for v in one_by_one]
    engine.vsum(layer).backward()
    grads = [w.grad for row in ws for w in row] + [x[0].grad, x[1].grad]
    for v in [w for row in ws for w in row] + x + bs:
        v.grad = 0.0
    engine.vsum(one_by_one).backward()
    assert grads == [w.grad for row in ws for w in row] + [x[0].grad, x[1].grad]
    with engine.no_grad():
        assert [v.data for v in engine.dense(ws, x, bs, activation)] == [v.data for v in layer]


@pytest.mark.parametrize("order", ["made", "reversed", "interleaved", "shared"])
def test_dense_finds_weights_in_any_order(engine, order):
    # weights made one after another are found from the one before (the core reads its
    # handle table, not each Value): other orders and shared weights must give the same graph
    V = engine.Value
    made = [V(0.01 * k - 0.3) for k in range(24)]
    rows = {"made": [made[0:6], made[6:12], made[12:18], made[18:24]],
            "reversed": [made[5::-1], made[11:5:-1], made[17:11:-1], made[23:17:-1]],
            "interleaved": [made[0::4], made[1::4], made[2::4], made[3::4]],
            "shared": [made[0:6], made[0:6], made[5:11], made[0:6]]}[order]
    bs = [V(0.1 * j) for j in range(4)]
    x = [V(0.5 - 0.2 * k) for k in range(6)]
    layer = engine.dense(rows, x, bs, "tanh")
    one_by_one = [engine.dot(w, x, b).tanh() for w, b in zip(rows, bs)]
    assert [v.data for v in layer] == [v.data for v in one_by_one]
    engine.vsum(layer).backward()
    grads = [w.grad for w in made]
    for w in made:
        w.grad = 0.0
    engine.vsum(one_by_one).backward()
    assert grads == [w.grad for w in made]


def test_dense_rejects_bad_shapes_and_types(engine):
    V = engine.Value
    ws, x, bs = [[V(1.0), V(2.0)]], [V(1.0), V(2.0)], [V(0.0)]
    with pytest.raises(ValueError, match="weight row 0 has 2 weights but there are 1 inputs"):
        engine.dense(ws, x[:1], bs)
    with pytest.raises(ValueError, match="1 weight rows but 2 biases"):
        engine.dense(ws, x, bs * 2)
    with pytest.raises(TypeError, match="takes Values, not float"):
        engine.dense(ws, [1.0, V(2.0)], bs)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        engine.dense(ws, x, bs, "swish")


def test_a_bare_new_value_is_refused_not_a_crash(core):
    engine = core
    bare = engine.Value.__new__(engine.Value)
    a = engine.Value(1.0)
    for attempt in (lambda: bare.data, lambda: bare + a, lambda: a * bare, lambda: bare.relu(),
                    lambda: engine.vsum([a, bare]), lambda: bare.backward(), lambda: repr(bare),
                    lambda: engine.dense([[bare]], [a], [a]), lambda: bare.item(),
                    lambda: bare < a, lambda: a >= bare, lambda: bare > 1, lambda: 1.5 <= bare):
        with pytest.raises(RuntimeError, match="never initialized"):
            attempt()
    bare.__init__(5.0)
    assert (bare + a).data == 6.0
