"""Extending Value the lecture's way: Value(data, _children, _op), `_backward`,
custom ops (autograd.function), subclasses, attributes, stable `_children`.

Every test runs on both engines; the compiled core's custom nodes also get
re-entrancy tests (Python code that compacts or re-initializes in the middle).
"""
import gc
import math
import sys
import tracemalloc

import pytest

from helpers import (central_difference, check_arena, close,
                     collecting_at_every_allocation, compacting_at_the_first_collection, is_core,
                     same_float, stop_timer_signal)




def lecture_exp(Value):
    """The lecture's exp, written exactly as micrograd's ops are."""
    def exp(self):
        x = self.data
        out = Value(math.exp(x), (self,), "exp")

        def _backward():
            self.grad += out.data * out.grad
        out._backward = _backward
        return out
    return exp


def lecture_mul(self, other):
    """The lecture's __mul__, as a custom node."""
    Value = type(self).__mro__[-2]          # the engine's Value under any subclass
    other = other if isinstance(other, Value) else Value(other)
    out = Value(self.data * other.data, (self, other), "*")

    def _backward():
        self.grad += other.data * out.grad
        other.grad += self.data * out.grad
    out._backward = _backward
    return out


@pytest.fixture
def with_lecture_exp(engine):
    """engine.Value.lecture_exp: the lecture's exp, assigned onto the class."""
    engine.Value.lecture_exp = lecture_exp(engine.Value)
    yield engine
    del engine.Value.lecture_exp


# -- the lecture's manual back-propagation --------------------------------------

def _lecture_neuron(Value):
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2 = Value(-3.0, label="w1"), Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    x1w1 = x1 * w1; x1w1.label = "x1*w1"
    x2w2 = x2 * w2; x2w2.label = "x2*w2"
    x1w1x2w2 = x1w1 + x2w2; x1w1x2w2.label = "x1*w1 + x2*w2"
    n = x1w1x2w2 + b; n.label = "n"
    o = n.tanh(); o.label = "o"
    return (x1, x2, w1, w2, b), (x1w1, x2w2, x1w1x2w2, n, o)


def test_lecture_manual_backprop_cells_give_the_lectures_numbers(engine):
    (x1, x2, w1, w2, b), (x1w1, x2w2, x1w1x2w2, n, o) = _lecture_neuron(engine.Value)
    o.grad = 1.0
    o._backward()
    n._backward()
    b._backward()               # a leaf's does nothing
    x1w1x2w2._backward()
    x2w2._backward()
    x1w1._backward()
    manual = [v.grad for v in (x1, x2, w1, w2, b, n)]
    assert n.grad == pytest.approx(0.5) and x1.grad == pytest.approx(-1.5)
    assert w1.grad == pytest.approx(1.0) and x2.grad == pytest.approx(0.5) and w2.grad == 0.0

    (x1, x2, w1, w2, b), (_, _, _, n, o) = _lecture_neuron(engine.Value)
    o.backward()
    assert [v.grad for v in (x1, x2, w1, w2, b, n)] == manual


def test_backward_returns_a_callable_on_every_value(engine):
    a, b = engine.Value(3.0), engine.Value(-2.0)
    c = a * b
    assert callable(a._backward) and callable(c._backward)
    c.grad = 2.0
    c._backward()
    c._backward()               # applies the chain rule once per call, as micrograd's
    assert (a.grad, b.grad) == (-8.0, 12.0)


# -- exp the lecture's way, and subclasses --------------------------------------------

def test_exp_added_the_lectures_way_matches_the_builtin_bitwise(with_lecture_exp):
    engine = with_lecture_exp
    x, w = engine.Value(0.3), engine.Value(-1.7)
    y = (x.lecture_exp() * w + 1).tanh()
    z = (x.lecture_exp() * w + 1).tanh()     # another exp node over the same x
    gc.collect()                      # the nodes' handles live only in closures now
    assert y._children[0]._children[0]._children[0]._op == "exp"
    y.backward()
    custom = (y.data, x.grad, w.grad)

    x2, w2 = engine.Value(0.3), engine.Value(-1.7)
    y2 = (x2.exp() * w2 + 1).tanh()
    y2.backward()
    assert all(same_float(p, q) for p, q in zip(custom, (y2.data, x2.grad, w2.grad)))

    f = lambda v: math.tanh(math.exp(v[0]) * v[1] + 1)
    assert close(x.grad, central_difference(f, [0.3, -1.7], 0), rel=1e-7)
    assert z.data == y.data


def test_lecture_ops_on_a_subclass_and_its_methods(engine):
    class MyValue(engine.Value):
        __mul__ = lecture_mul

        def cube(self):
            return self * self * self

    m = MyValue(1.5, label="m")
    assert isinstance(m, engine.Value) and m.label == "m"
    y = m.cube() + engine.Value(2.0) * m
    assert type(y) is engine.Value
    y.backward()
    assert m.grad == pytest.approx(3 * 1.5 ** 2 + 2.0, rel=1e-12)
    assert y.data == 1.5 * 1.5 * 1.5 + 2.0 * 1.5

    # the subclass instance stays what it is inside a graph after it is dropped
    z = m * 2.0
    del m
    gc.collect()
    assert type(z._children[0]) is MyValue and z._children[0].label == "m"


def test_functions_assigned_onto_the_class_become_methods(engine):
    def sin(self):
        out = engine.Value(math.sin(self.data), (self,), "sin")

        def _backward():
            self.grad += math.cos(self.data) * out.grad
        out._backward = _backward
        return out

    engine.Value.lecture_sin = sin
    try:
        x = engine.Value(0.5)
        y = x.lecture_sin() * x.lecture_sin()
        y.backward()
        assert y._op == "*" and y._children[0]._op == "sin"
        assert close(x.grad, 2 * math.sin(0.5) * math.cos(0.5))
    finally:
        del engine.Value.lecture_sin
    assert not hasattr(engine.Value(1.0), "lecture_sin")


def test_arbitrary_attributes_stay_with_their_node(engine):
    v = engine.Value(2.0)
    v.name = "x"
    v.meta = {"unit": "m"}
    assert (v.name, v.meta) == ("x", {"unit": "m"})
    y = v * 3.0
    y.name = "y"
    del v
    gc.collect()
    assert y._children[0].name == "x" and y.name == "y"
    with pytest.raises(AttributeError):
        engine.Value(1.0).nothing_here


# -- autograd.function ---------------------------------------------------------------

def _xsiny(engine):
    return engine.function(lambda x, y: x * math.sin(y),
                           lambda x, y: math.sin(y),
                           lambda x, y: x * math.cos(y), name="xsiny")


def test_function_gradients_against_finite_differences(engine):
    f = _xsiny(engine)
    a, b = engine.Value(0.7), engine.Value(-1.2)
    z = f(a, b) * 2.0 + f(b, 3.0) + f(1.5, a)
    assert z._children[1]._op == "xsiny" and z._children[1]._children[0].data == 1.5
    z.backward()

    def g(v):
        return v[0] * math.sin(v[1]) * 2.0 + v[1] * math.sin(3.0) + 1.5 * math.sin(v[0])
    assert z.data == pytest.approx(g([0.7, -1.2]), rel=1e-15)
    assert close(a.grad, central_difference(g, [0.7, -1.2], 0), rel=1e-7)
    assert close(b.grad, central_difference(g, [0.7, -1.2], 1), rel=1e-7)


def test_function_nodes_are_replayed_by_forward(engine):
    f = _xsiny(engine)
    a, b = engine.Value(0.7), engine.Value(-1.2)
    z = (f(a, b) + a).tanh()
    for x, y in [(0.7, -1.2), (2.0, 0.5), (-0.3, 4.0)]:
        a.data, b.data = x, y
        z.forward()
        a.grad = b.grad = 0.0
        z.backward()
        expect = math.tanh(x * math.sin(y) + x)
        assert z.data == expect
        assert close(a.grad, (1 - expect ** 2) * (math.sin(y) + 1))
        assert close(b.grad, (1 - expect ** 2) * x * math.cos(y))


def test_lecture_style_node_refuses_forward_naming_its_op(with_lecture_exp):
    engine = with_lecture_exp
    x = engine.Value(0.5)
    y = x.lecture_exp() * 2.0
    x.data = 1.0
    with pytest.raises(RuntimeError, match="custom node 'exp'.*no forward formula"):
        y.forward()
    assert y.data == math.exp(0.5) * 2.0       # nothing was recomputed
    y.backward()                               # backward still works
    assert x.grad == math.exp(0.5) * 2.0


def test_custom_nodes_agree_bitwise_across_engines(engines):
    results = []
    for engine in engines:
        f = _xsiny(engine)
        exp = lecture_exp(engine.Value)
        xs = [engine.Value(0.1 * k - 0.45) for k in range(10)]
        acc = engine.Value(0.0)
        for k, x in enumerate(xs):
            acc = acc + f(exp(x), xs[k - 1]) * x.tanh()
        acc.backward()
        results.append([acc.data] + [x.grad for x in xs])
    assert all(same_float(p, q) for p, q in zip(*results))


def test_function_under_no_grad_makes_a_leaf(engine):
    f = _xsiny(engine)
    with engine.no_grad():
        z = f(engine.Value(1.0), 2.0)
    assert z._op == "" and z._children == () and z.data == math.sin(2.0)


# -- stable children --------------------------------------------------------------

def test_an_id_keyed_walk_counts_every_node(engine):
    xs = [engine.Value(float(k)) for k in range(3)]
    out = engine.Value(0.0)
    for k in range(10):                   # 44 distinct Values (constants too)
        out = out + (xs[k % 3] * (k + 1)).tanh()

    seen, stack = set(), [out]          # keyed by id(), nodes not kept alive
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen.add(id(v))
            stack.extend(v._prev)
        del v
    kept, stack = {}, [out]              # the same walk keeping every node
    while stack:
        v = stack.pop()
        if id(v) not in kept:
            kept[id(v)] = v
            stack.extend(v._prev)
    assert len(seen) == len(kept) == 44
    child = out._children[0]
    assert all(a is b for a, b in zip(out._children, out._children)) and child._prev == child._prev


# -- bad input ------------------------------------------------------------------------

def test_bad_input_gets_clear_errors(engine):
    V = engine.Value
    a = V(1.0)
    with pytest.raises(TypeError, match=r"_children must be Values of this engine, not builtins.float \(child 1\)"):
        V(2.0, (a, 3.0), "op")
    with pytest.raises(TypeError, match="_children must be a tuple of Values, not str"):
        V(2.0, "x")
    with pytest.raises(TypeError, match="_op must be a str, not int"):
        V(2.0, (a,), 5)
    with pytest.raises(TypeError, match="_backward must be callable, not int"):
        V(2.0, (a,), "op")._backward = 3
    with pytest.raises(TypeError, match="cannot set _backward on a built-in 'tanh' node"):
        a.tanh()._backward = lambda: None
    with pytest.raises(RuntimeError, match="gets children only when it is made"):
        a.__init__(3.0, (V(1.0),), "op")
    assert a.data == 1.0 and a._op == ""

    with pytest.raises(TypeError, match="forward must be callable"):
        engine.function(3, lambda x: 1.0)
    with pytest.raises(TypeError, match="one partial derivative per input"):
        engine.function(math.sin)
    with pytest.raises(TypeError, match="partial derivative 0 must be callable"):
        engine.function(math.sin, None)
    f = engine.function(lambda x: "one", lambda x: 1.0, name="f")
    with pytest.raises(TypeError, match="the result of 'f' must be a real number.*not str"):
        f(a)
    g = engine.function(lambda x, y: x, lambda x, y: None, lambda x, y: 0.0, name="g")
    with pytest.raises(TypeError, match="'g' takes 2 inputs .*not 1"):
        g(a)
    with pytest.raises(TypeError, match="'g' takes Values or real numbers, not str"):
        g(a, "b")
    out = g(a, 2.0)
    with pytest.raises(TypeError, match="the partial derivative 0 of 'g' must be a real number"):
        out.backward()
    check_arena(engine)


def test_an_exception_in_a_custom_backward_propagates_naming_the_op(engine):
    calls = []
    x, w = engine.Value(2.0), engine.Value(3.0)
    mid = x * w
    out = engine.Value(mid.data * 2.0, (mid,), "boom")

    def _backward():
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("bad derivative")
        mid.grad += 2.0 * out.grad
    out._backward = _backward
    root = out + 1.0
    with pytest.raises(ZeroDivisionError, match="bad derivative") as info:
        root.backward()
    if sys.version_info >= (3, 11):
        assert "(raised by the custom node 'boom')" in info.value.__notes__
    # what ran before the custom node did its part; nothing below it did
    assert (out.grad, x.grad, w.grad) == (1.0, 0.0, 0.0)
    check_arena(engine)
    root.backward()                   # the arena and the graph stay usable
    assert (x.grad, w.grad) == (6.0, 4.0)
    other = engine.Value(5.0) * 2
    other.backward()
    assert other.data == 10.0


# -- memory -------------------------------------------------------------------------------

def _lecture_chain(engine, n):
    """n lecture-style custom nodes in a chain, each adding one."""
    def plus_one(self):
        out = engine.Value(self.data + 1.0, (self,), "+1")

        def _backward():
            self.grad += out.grad
        out._backward = _backward
        return out
    x = engine.Value(0.0)
    v = x
    for _ in range(n):
        v = plus_one(v)
    return x, v


def test_closures_over_out_do_not_leak_with_the_gc_on(engine):
    assert gc.isenabled()
    gc.collect()
    nodes = engine.arena_info()["nodes"] if is_core(engine) else None
    tracemalloc.start()
    try:
        sizes = []
        for round_ in range(100):           # 10^5 custom nodes made and dropped
            x, y = _lecture_chain(engine, 1000)
            y.backward()
            assert x.grad == 1.0
            del x, y
            if round_ in (9, 99):
                gc.collect()
                sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert sizes[1] - sizes[0] < 256 * 1024, sizes
    if nodes is not None:
        engine.collect()
        assert engine.arena_info()["nodes"] <= nodes


def test_with_the_gc_off_closures_are_kept_until_a_collection(engine):
    gc.collect()
    before = engine.collect() if is_core(engine) else None
    gc.disable()
    try:
        x, y = _lecture_chain(engine, 500)
        y.backward()
        del x, y
        if is_core(engine):
            assert engine.collect() >= before + 501     # the cycles hold their nodes
    finally:
        gc.enable()
    gc.collect()
    if is_core(engine):
        assert engine.collect() <= before


def test_deep_chains_of_custom_nodes_need_no_recursion(engine):
    f = engine.function(lambda x: 0.5 * x + 1.0, lambda x: 0.5, name="affine")
    x = engine.Value(1.0)
    v = x
    for _ in range(200_000):
        v = f(v)
    v.backward()
    assert x.grad == 0.5 ** 200_000
    x.data = 2.0
    v.forward()
    assert v.data == pytest.approx(2.0, rel=1e-12)
    del v                                # dropping the chain frees it without recursion
    x2, y2 = _lecture_chain(engine, 100_000)
    y2.backward()
    assert x2.grad == 1.0
    del x2, y2
    gc.collect()
    check_arena(engine)


# -- re-entrancy: Python code inside custom nodes ---------------------------------------

@pytest.mark.parametrize("action", ["collect", "re-initialize", "grow the arena", "drop the graph",
                                    "nested backward"])
def test_custom_backward_may_do_anything_mid_sweep(engine, action):
    V = engine.Value
    xs = [V(0.1 * k) for k in range(50)]
    chain = xs[0]
    for x in xs[1:]:
        chain = chain * 0.5 + x
    keep = []
    box = {}

    def _backward():
        if action == "collect" and is_core(engine):
            engine.collect()
        elif action == "re-initialize":
            xs[10].__init__(7.0)              # a leaf, in place: it stays a leaf
            box["mid"].__init__(3.0)          # an interior node below: now a leaf
        elif action == "grow the arena":
            keep.extend(V(float(k)) * 2 for k in range(5000))
        elif action == "drop the graph":
            box.clear()
        elif action == "nested backward":
            (xs[3] * xs[4]).backward()
        chain.grad += out.grad

    box["mid"] = xs[5] * xs[6] + xs[7]
    chain = chain + box["mid"]
    out = V(chain.data, (chain,), "probe")
    out._backward = _backward
    root = out * 2.0
    root.backward()
    root.backward()
    check_arena(engine)
    assert root.data == 2.0 * chain.data
    if action in ("collect", "grow the arena", "drop the graph"):
        assert xs[49].grad == 4.0             # two backward() calls, d root / d x49 = 2 each
    if is_core(engine):
        engine.collect()
        engine.check_arena()


def test_custom_forward_and_partials_may_compact_and_re_initialize(engine):
    V = engine.Value
    other = [V(float(k)) * 3 for k in range(100)]
    victim = V(5.0) * 2

    def fwd(x, y):
        del other[:50]
        gc.collect()
        if is_core(engine):
            engine.collect()                  # at creation it really compacts
        victim.__init__(1.0)
        return x * y

    def dx(x, y):
        [V(float(k)) + 1 for k in range(2000)]      # grows the arena, then drops it all
        if is_core(engine):
            engine.collect()
        return y

    f = engine.function(fwd, dx, lambda x, y: x, name="busy")
    a, b = V(2.0), V(3.0)
    z = f(a * 1.0, b) + victim
    z.forward()
    z.backward()
    assert (z.data, a.grad, b.grad) == (7.0, 3.0, 2.0)
    check_arena(engine)


class _Sneaky:
    """A number whose __float__ compacts the arena and drops Values."""

    def __init__(self, engine, x, victims):
        self.engine, self.x, self.victims = engine, x, victims

    def __float__(self):
        self.victims.clear()
        gc.collect()
        if is_core(self.engine):
            self.engine.collect()
        return self.x


def test_numbers_a_custom_function_returns_may_run_code(engine):
    victims = [engine.Value(float(k)) * 2 for k in range(100)]
    f = engine.function(lambda x: _Sneaky(engine, 2 * x, victims),
                        lambda x: _Sneaky(engine, 2.0, victims), name="sneaky")
    import numbers
    numbers.Real.register(_Sneaky)
    a = engine.Value(1.5)
    z = f(a * 1.0) * 3
    z.backward()
    assert (z.data, a.grad) == (9.0, 6.0)
    check_arena(engine)


def test_a_gc_callback_while_children_are_read_may_compact(core):
    # the core makes the children's handles when first asked (the pure
    # engine's are its inputs, already there)
    engine = core
    xs = [engine.Value(float(k)) for k in range(5)]
    out = engine.vsum([x * 2 for x in xs])
    garbage = [engine.Value(1.0) * 2 for _ in range(500)]
    # compaction moves out's node and its children
    with compacting_at_the_first_collection(engine, garbage) as fired:
        kids = out._children
    assert fired
    assert [k.data for k in kids] == [2.0 * k for k in range(5)]
    assert all(k._children[0] is x for k, x in zip(kids, xs))
    engine.check_arena()


def test_threads_whose_custom_nodes_release_the_gil_run_their_sweeps_side_by_side(engine):
    # More sweeps in progress at once than the core has mark bits for: each
    # custom node sleeps, so every thread's sweep pauses in the middle.
    import threading
    import time
    errors, grads, most = [], [], [0]
    barrier = threading.Barrier(10)

    def work(seed):
        try:
            x = engine.Value(float(seed))
            v = x
            for _ in range(20):
                out = engine.Value(v.data * 2.0, (v,), "slow*2")

                def _backward(v=v, out=out):
                    if is_core(engine):
                        most[0] = max(most[0], engine.arena_info()["sweeps"])
                    time.sleep(0.0005)
                    v.grad += 2.0 * out.grad
                out._backward = _backward
                v = out
            root = v * 1.0
            barrier.wait()
            for _ in range(3):
                root.backward()
            grads.append(x.grad)
        except BaseException as exc:        # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and grads == [3.0 * 2.0 ** 20] * 10
    if is_core(engine):
        assert most[0] > 6          # more than the six mark bits at once
    check_arena(engine)


def test_copies_keep_class_and_attributes(engine):
    import copy
    import pickle

    class Tagged(engine.Value):
        pass

    t = Tagged(3.0, label="t") * 1.0        # an interior Value: its copy is a leaf
    m = Tagged(2.5, label="m")
    m.unit = "kg"
    c = copy.copy(m)
    assert type(c) is Tagged and (c.data, c.label, c.unit) == (2.5, "m", "kg") and c is not m
    assert vars(c) == {"unit": "kg"} and copy.deepcopy(t)._op == ""
    v = engine.Value(1.5, label="v")
    v.name = "x"
    v.grad = 0.25
    w = pickle.loads(pickle.dumps(v))
    assert type(w) is engine.Value and (w.data, w.grad, w.label, w.name) == (1.5, 0.25, "v", "x")


def test_a_cycle_through_attributes_is_collected(engine):
    gc.collect()
    before = engine.collect() if is_core(engine) else None
    for _ in range(1000):
        u = engine.Value(1.0) * 2.0
        u.me = u                              # through v.__dict__
        w = engine.Value(3.0)
        vars(w)["again"] = [w, u]             # through vars()
        del u, w
    gc.collect()
    if is_core(engine):
        assert engine.collect() <= before
        engine.check_arena()


# -- re-entrancy at the other points where the core now runs Python code ---------------------

def _garbage(engine, n=300):
    """Values whose nodes sit below anything made later: dropping them lets a
    compaction move every newer node."""
    return [engine.Value(float(k)) * 2.0 for k in range(n)]


def test_children_from_an_iterable_that_compacts_and_re_initializes(engine):
    a, b = engine.Value(2.0), engine.Value(3.0)
    junk = _garbage(engine)
    victim = a * 1.0

    class Kids:
        def __iter__(self):
            junk.clear()
            gc.collect()
            if is_core(engine):
                engine.collect()
            victim.__init__(-1.0)
            return iter((a, b, victim))

    out = engine.Value(a.data * b.data, Kids(), "mul3")
    out._backward = lambda: [setattr(k, "grad", k.grad + out.grad) for k in (a, b, victim)]
    (out * 2.0).backward()
    assert out._children == (a, b, victim) and (a.grad, b.grad, victim.grad) == (2.0, 2.0, 2.0)
    check_arena(engine)


def test_setting_backward_while_a_gc_callback_compacts(engine):
    junk = _garbage(engine)
    x = engine.Value(2.0)
    out = engine.Value(4.0, (x,), "sq")
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(1)
            junk.clear()
            if is_core(engine):
                engine.collect()

    gc.collect()
    with collecting_at_every_allocation(callback):
        out._backward = lambda: setattr(x, "grad", x.grad + 2.0 * x.data * out.grad)
        out.name = "square"
    out.backward()
    assert x.grad == 4.0 and out.name == "square"
    check_arena(engine)


def test_a_manual_backward_whose_partial_compacts(engine):
    junk = _garbage(engine)

    def dx(x, y):
        junk.clear()
        gc.collect()
        if is_core(engine):
            engine.collect()                  # not in a sweep: nodes really move
        return y

    f = engine.function(lambda x, y: x * y, dx, lambda x, y: x, name="mul")
    a, b = engine.Value(2.0), engine.Value(5.0)
    z = f(a * 1.0, b)
    z.grad = 3.0
    z._backward()
    assert z._children[0].grad == 15.0 and b.grad == 6.0
    check_arena(engine)


def test_an_attribute_descriptor_that_re_initializes_its_value(engine):
    junk = _garbage(engine)

    class Noisy(engine.Value):
        @property
        def unit(self):
            return self._unit

        @unit.setter
        def unit(self, value):
            junk.clear()
            gc.collect()
            if is_core(engine):
                engine.collect()
            self.__init__(9.0)
            self.__dict__["_unit"] = value

    n = Noisy(1.0) * 1.0
    m = Noisy(2.0)
    y = m * n
    m.unit = "s"
    assert (m.data, m.unit, m._op) == (9.0, "s", "")
    y.forward()
    assert y.data == 9.0
    check_arena(engine)


def test_dense_over_custom_nodes_matches_the_built_in_path(engines):
    results = []
    for engine in engines:
        exp = lecture_exp(engine.Value)
        xs = [engine.Value(0.1 * k) for k in range(4)]
        ws = [[engine.Value(0.05 * (j - k)) for k in range(4)] for j in range(3)]
        bs = [engine.Value(0.01 * j) for j in range(3)]
        custom = engine.dense(ws, [exp(x) for x in xs], bs, "tanh")
        plain = engine.dense(ws, [x.exp() for x in xs], bs, "tanh")
        total = engine.vsum(custom) + engine.vsum(plain)
        total.backward()
        assert [c.data for c in custom] == [p.data for p in plain]
        assert custom[0]._children[0]._op == "dot"
        results.append([total.data] + [x.grad for x in xs] + [w.grad for row in ws for w in row])
    assert all(same_float(p, q) for p, q in zip(*results))


def test_a_signal_handler_compacts_during_a_sweep_over_custom_nodes(core):
    import signal
    import time
    x = core.Value(1.0)
    v = x
    for _ in range(200):
        out = core.Value(v.data, (v,), "slow")

        def _backward(v=v, out=out):
            time.sleep(0.0001)
            v.grad += out.grad
        out._backward = _backward
        v = out
    root = v * 1.0
    seen = []
    junk = _garbage(core, 1000)

    def handler(signum, frame):
        if core.arena_info()["sweeps"] and not seen:
            seen.append(1)
            junk.clear()
            core.collect()                    # carried out when the sweep ends
            x.__init__(1.0)                   # re-initialized mid-sweep: still a leaf

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    try:
        for _ in range(5):
            x.grad = 0.0
            root.backward()
    finally:
        stop_timer_signal(old)
    assert seen and x.grad == 1.0
    core.check_arena()


def test_graph_pictures_name_custom_ops(with_lecture_exp):
    engine = with_lecture_exp
    from autograd.graph import Graph
    f = engine.function(lambda a, b: a * b, lambda a, b: b, lambda a, b: a, name="mul2")
    x = engine.Value(0.5, label="x")
    y = f(x.lecture_exp(), 3.0).tanh()
    source = Graph(y).source
    assert "label=exp" in source and "label=mul2" in source and "x |" in source


def test_a_value_of_the_other_engine_is_refused_by_name(engines):
    core, pure = engines
    with pytest.raises(TypeError, match=r"not autograd\.pure\.Value \(child 0\)"):
        core.Value(1.0, (pure.Value(1.0),), "mixed")
    with pytest.raises(TypeError, match=r"not autograd\.core\.Value \(child 0\)"):
        pure.Value(1.0, (core.Value(1.0),), "mixed")


def test_the_lectures_topological_backward_by_hand(with_lecture_exp):
    # The lecture's own backward: build the topological order from `_prev`,
    # then call every node's `_backward` in reverse.
    engine = with_lecture_exp

    def lecture_backward(root):
        topo, visited = [], set()
        stack = [(root, False)]
        while stack:                          # build_topo, without recursion
            v, children_done = stack.pop()
            if children_done:
                topo.append(v)
            elif v not in visited:
                visited.add(v)
                stack.append((v, True))
                stack.extend((c, False) for c in v._prev)
        root.grad = 1.0
        for node in reversed(topo):
            node._backward()

    grads = []
    for by_hand in (True, False):
        (x1, x2, w1, w2, b), (_, _, _, n, _) = _lecture_neuron(engine.Value)
        e = (2 * n).lecture_exp()
        o = (e - 1) / (e + 1)
        if by_hand:
            lecture_backward(o)
        else:
            o.backward()
        grads.append([v.grad for v in (x1, x2, w1, w2, b)])
    assert grads[0] == grads[1]
    assert grads[0][0] == pytest.approx(-1.5) and grads[0][2] == pytest.approx(1.0)
