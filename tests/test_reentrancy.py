"""Python code run in the middle of an op or a sweep: no crash, no corruption.

One regression test (or more) for each way the core was found to break when
Python code ran between reading an index or a handle and using it: gc
callbacks, a number's __float__, labels' methods, signal handlers, replaced
math functions, other threads.  Every test runs on both engines, which must
agree; on the compiled core the arena's invariants are checked after.
"""
import contextlib
import gc
import math
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import threading

import pytest

import autograd.pure

from helpers import check_arena, collecting_at_every_allocation, is_core, same_float, stop_timer_signal




def _collect(engine):
    """Compact the core's arena (nothing to do for the pure engine)."""
    if is_core(engine):
        engine.collect()


def _in_sweep(engine, frame):
    """True if a signal handler with this frame interrupted a sweep."""
    if is_core(engine):
        return engine.arena_info()["sweeps"] > 0
    while frame is not None:   # the pure engine's sweeps are Python frames
        if frame.f_code.co_name in ("backward", "forward") and frame.f_code.co_filename.endswith("pure.py"):
            return True
        frame = frame.f_back
    return False


def _chain(engine, x, n):
    y = x
    for _ in range(n):
        y = y * 1.0
    return y


def _bits(x):
    return struct.pack("<d", x)


def _collect_at_next_allocation():
    """With the GC's threshold at 1, make its next collection start at the
    next list the code under test allocates: collect, then empty CPython's
    free list of lists (a list taken from it is no allocation the GC counts).
    The caller keeps the returned lists alive."""
    gc.collect()
    gc.disable()       # no collection may free lists back onto the free list meanwhile
    try:
        return [[] for _ in range(200)]
    finally:
        gc.enable()


@pytest.fixture
def gc_callback():
    """Install a gc callback (with the GC collecting on every allocation) for
    the test's duration."""
    with contextlib.ExitStack() as stack:
        yield lambda callback: stack.enter_context(collecting_at_every_allocation(callback))


def _run_with_timer_signal(handler, work, attempts=50):
    """Run work() while SIGALRM fires every 200 us and calls handler;
    return once the handler reported it ran inside a sweep (or attempts ran out)."""
    old = signal.signal(signal.SIGALRM, handler)
    try:
        for _ in range(attempts):
            signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
            try:
                if work():
                    return True
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0, 0)
        return False
    finally:
        stop_timer_signal(old)


# -- 1. uninitialized Values ---------------------------------------------------------------

UNINITIALIZED = "never initialized"


def _every_use(v, engine):
    yield lambda: v.backward()
    yield lambda: v.forward()
    yield lambda: v.data
    yield lambda: v.grad
    yield lambda: v.label
    yield lambda: v._op
    yield lambda: v._children
    yield lambda: v._prev
    yield lambda: repr(v)
    yield lambda: v + 1
    yield lambda: 1 + v
    yield lambda: v * engine.Value(2.0)
    yield lambda: engine.Value(2.0) * v
    yield lambda: v ** 2
    yield lambda: v.relu()
    yield lambda: v.detach()
    yield lambda: engine.vsum([v, 1.0])
    yield lambda: engine.dot([v], [1.0])
    yield lambda: engine.dense([[v]], [engine.Value(1.0)], [engine.Value(0.0)])

    def set_data():
        v.data = 1.0

    def set_grad():
        v.grad = 1.0

    def set_label():
        v.label = "x"
    yield set_data
    yield set_grad
    yield set_label


def test_an_uninitialized_value_raises_a_clear_error_everywhere(engine):
    keep = [engine.Value(float(i)) * 2 for i in range(10)]
    if is_core(engine):
        grads = [k.grad for k in keep]
        nodes = engine.arena_info()["nodes"]
    v = engine.Value.__new__(engine.Value)
    for use in _every_use(v, engine):
        with pytest.raises(RuntimeError, match=UNINITIALIZED):
            use()
    if is_core(engine):
        # regression: backward() set node 0's grad to 1.0 before raising
        assert [k.grad for k in keep] == grads
        assert engine.arena_info()["nodes"] == nodes
        engine.check_arena()


def test_uninitialized_backward_in_a_fresh_process_does_not_crash(engine):
    # regression: segfaulted in a fresh process (empty arena)
    # and with a node in the arena it set node 0's grad to 1.0 before raising
    script = textwrap.dedent(f"""
        import {engine.__name__} as engine
        try:
            engine.Value.__new__(engine.Value).backward()
        except RuntimeError as exc:
            print("raised:", exc)
        first = engine.Value(0.5)
        try:
            engine.Value.__new__(engine.Value).backward()
        except RuntimeError as exc:
            print("raised again; first.grad =", first.grad)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=os.path.dirname(__file__))
    assert out.returncode == 0, out.stderr
    assert "raised: this Value was never initialized" in out.stdout
    assert "raised again; first.grad = 0.0" in out.stdout


def test_a_crafted_pickle_gives_an_uninitialized_value_not_a_crash(engine):
    # protocol 2: find the class, call cls.__new__(cls) (NEWOBJ), no state
    crafted = b"\x80\x02c" + engine.__name__.encode() + b"\nValue\n)\x81."
    v = pickle.loads(crafted)
    assert type(v) is engine.Value
    with pytest.raises(RuntimeError, match=UNINITIALIZED):
        v.backward()
    v.__init__(3.0, label="late")         # __init__ makes it a proper leaf
    assert (v.data, v.grad, v.label) == (3.0, 0.0, "late")
    check_arena(engine)


def test_a_failed_init_leaves_the_value_as_it_was(engine):
    v = engine.Value(2.0, label="v")
    for bad in (["data"], {"label": 5}):
        with pytest.raises(TypeError):
            v.__init__(*bad) if isinstance(bad, list) else v.__init__(1.0, **bad)
    assert (v.data, v.label) == (2.0, "v")
    u = engine.Value.__new__(engine.Value)
    with pytest.raises(TypeError):
        u.__init__("data")
    with pytest.raises(RuntimeError, match=UNINITIALIZED):
        u.data
    check_arena(engine)


_MEMORY_LIMIT_SCRIPT = r"""
import resource, sys
import autograd.core as core

x = core.Value(1.0)
chain = x                          # every node stays live: compaction frees nothing
while core.arena_info()["capacity"] < 2 ** 21:
    chain = chain.relu()
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * 4096
# room for Python's own work, not for doubling the arena
resource.setrlimit(resource.RLIMIT_AS, (used + 48 * 2 ** 20, resource.RLIM_INFINITY))

def fill():
    global chain
    while core.arena_info()["nodes"] < core.arena_info()["capacity"]:
        chain = chain.relu()

target = core.Value(5.0)

# a Value whose __init__ fails for want of memory stays uninitialized
fill()
u = core.Value.__new__(core.Value)
try:
    u.__init__(3.0)
    print("init: no MemoryError")
except MemoryError:
    try:
        u.data
    except RuntimeError:
        print("init: MemoryError, still uninitialized")

# regression: a number whose __float__ fills the arena and re-initializes the
# left operand left a node whose child was -1 (backward then wrote outside
# the arena: glibc abort)
class Evil:
    def __float__(self):
        fill()
        target.__init__(2.0)
        return 3.0
import numbers
numbers.Real.register(Evil)
try:
    target * Evil()
    print("op: no MemoryError")
except MemoryError:
    print("op: MemoryError")
core.check_arena()
print("target", target.data, target._op)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc")
def test_running_out_of_memory_mid_op_leaves_everything_consistent(core):
    out = subprocess.run([sys.executable, "-c", _MEMORY_LIMIT_SCRIPT], capture_output=True,
                         text=True, cwd=os.path.dirname(__file__), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert "init: MemoryError, still uninitialized" in lines
    assert "op: MemoryError" in lines
    assert "target 2.0 " in lines


# -- 2. dense() with inputs changed by a gc callback ----------------------------------------

@pytest.mark.parametrize("skip", [0, 1, 2, 3])
@pytest.mark.parametrize("mutation", ["clear inputs", "empty a weight row", "int into inputs",
                                      "drop the biases"])
def test_dense_with_lists_mutated_by_a_gc_callback(engine, gc_callback, mutation, skip):
    Value = engine.Value
    xs = [Value(0.5), Value(-1.5)]
    rows = [[Value(1.0), Value(2.0)], [Value(-1.0), Value(0.25)]]
    bs = [Value(0.1), Value(0.2)]
    expected = [0.1 + 1.0 * 0.5 + 2.0 * -1.5, 0.2 + -1.0 * 0.5 + 0.25 * -1.5]
    fired, armed, skipped = [], [], []

    def mutate(phase, info):
        if phase != "start" or fired or not armed:
            return
        if len(skipped) < skip:          # mutate at the skip-th GC point of the call
            skipped.append(True)
            return
        fired.append(True)
        if mutation == "clear inputs":
            xs.clear()
        elif mutation == "empty a weight row":
            rows[1].clear()
        elif mutation == "int into inputs":
            xs[0] = 7
        else:
            bs.clear()
        _collect(engine)

    snapshot = (list(xs), [list(r) for r in rows], list(bs))
    gc_callback(mutate)
    pad = _collect_at_next_allocation()
    armed.append(True)
    try:
        out = engine.dense(rows, xs, bs, "linear")
    except (TypeError, ValueError) as exc:   # the mutation came before the snapshot
        assert "dense()" in str(exc) or "weight" in str(exc)
    else:                                    # the snapshot came first: the old lists' layer
        assert [o.data for o in out] == expected
        out[0].backward()
        assert snapshot[0][0].grad == 1.0 and snapshot[1][0][1].grad == -1.5
    del pad
    assert fired or skip > 0
    check_arena(engine)


def test_dense_takes_any_sequence(engine):
    Value = engine.Value
    xs = (Value(1.0), Value(2.0))
    rows = ((Value(0.5), Value(-1.0)), [Value(2.0), Value(1.0)])
    out = engine.dense(rows, xs, (Value(0.0), Value(1.0)), "linear")
    assert [o.data for o in out] == [-1.5, 5.0]
    out = engine.dense(iter(rows), iter(xs), iter([Value(0.0), Value(1.0)]), "tanh")
    assert [o.data for o in out] == [math.tanh(-1.5), math.tanh(5.0)]


# -- 3. _children while a gc callback compacts and drops handles ----------------------------

def test_children_of_a_fused_node_while_the_arena_compacts(engine, gc_callback):
    Value = engine.Value
    a, b, c = Value(1.0), Value(2.0), Value(3.0)
    # fused garbage below the node: once dropped, compaction moves the node
    # and its edges down
    garbage = [engine.vsum([Value(9.0), Value(8.0), 7.0]) for _ in range(500)]
    node = engine.vsum([a * 1.0, b * 2.0, c * 3.0])
    victims = [Value(float(i)) for i in range(20)]

    active = []

    def compact_and_drop(phase, info):
        if phase == "start" and active:
            garbage.clear()
            if victims:
                victims.pop()
            _collect(engine)

    gc_callback(compact_and_drop)
    pad = _collect_at_next_allocation()
    active.append(True)
    kids = node._children
    del pad
    fresh1, fresh2 = Value(10.0), Value(20.0)
    active.clear()
    # regression: the node became its own child; freed handles were handed out
    # again, so two new Values were one object
    assert [k.data for k in kids] == [1.0, 4.0, 9.0]
    assert all(k is not node for k in kids)
    assert [k._children[0] for k in kids] == [a, b, c]
    assert fresh1 is not fresh2 and (fresh1.data, fresh2.data) == (10.0, 20.0)
    node.backward()
    assert (a.grad, b.grad, c.grad) == (1.0, 2.0, 3.0)
    check_arena(engine)


# -- 4. a signal handler re-initializing the root during a sweep ----------------------------

def _sweep_size(engine):
    return 400_000 if is_core(engine) else 60_000


@pytest.mark.parametrize("sweep", ["backward replayed", "forward replayed", "backward first call",
                                   "forward first call"])
def test_a_signal_handler_reinitializes_the_root_during_a_sweep(engine, sweep):
    x = engine.Value(1.0)
    state = {}

    def handler(signum, frame):
        if "root" in state and "hit" not in state and _in_sweep(engine, frame):
            state["hit"] = True
            state["root"].__init__(42.0)          # the sweep's root becomes a leaf
            _collect(engine)
            garbage = [engine.Value(1.0) * 2 for _ in range(100)]
            del garbage

    def work():
        state.pop("hit", None)
        mid = _chain(engine, x, _sweep_size(engine))
        root = mid * 2.0
        if "replayed" in sweep:
            (root.backward if "backward" in sweep else root.forward)()
        state["root"] = root
        (root.backward if "backward" in sweep else root.forward)()
        del state["root"]
        if "hit" not in state:
            return False
        # the re-initialized root is a leaf: its backward touches nothing else,
        # and no stale order of the old graph is kept on it
        mid.grad = 7.0
        x.grad = 0.0
        root.backward()
        assert (root.data, root.grad, root._op, root._children) == (42.0, 1.0, "", ())
        assert (mid.grad, x.grad) == (7.0, 0.0)
        assert root.forward().data == 42.0
        return True

    assert _run_with_timer_signal(handler, work), "the handler never ran inside a sweep"
    check_arena(engine)


def test_a_signal_handler_drops_and_compacts_during_a_sweep(engine):
    x = engine.Value(0.5)
    holder = {}

    def handler(signum, frame):
        if holder.get("root") is not None and "hit" not in holder and _in_sweep(engine, frame):
            holder["hit"] = True
            holder["root"] = None                 # the last reference to the root goes
            _collect(engine)

    def work():
        holder.pop("hit", None)
        holder["root"] = root = _chain(engine, x, _sweep_size(engine)) * 3.0
        x.grad = 0.0
        root.backward()
        holder["root"] = None
        del root
        return "hit" in holder

    assert _run_with_timer_signal(handler, work), "the handler never ran inside a sweep"
    assert x.grad == 3.0                          # the sweep finished on what it owned
    check_arena(engine)


# -- 5 and 8. labels: __del__, __bool__, __hash__ of a str subclass -------------------------

class _MeddlingLabel(str):
    """A label whose methods run Python code that reshapes the arena."""
    engine = None
    calls = []

    def _meddle(self, what):
        _MeddlingLabel.calls.append(what)
        junk = [self.engine.Value(1.0) * 2 for _ in range(50)]
        del junk
        _collect(self.engine)

    def __del__(self):
        self._meddle("del")

    def __bool__(self):
        self._meddle("bool")
        return True

    def __hash__(self):
        self._meddle("hash")
        return str.__hash__(self)

    def __eq__(self, other):
        self._meddle("eq")
        return str.__eq__(self, other)


def test_a_meddling_label_is_stored_as_a_plain_string(engine):
    _MeddlingLabel.engine = engine
    a = engine.Value(1.0, label=_MeddlingLabel("a"))
    b = (a * 2) * 3
    mid = b._children[0]
    mid.label = _MeddlingLabel("mid")
    b.label = _MeddlingLabel("top")
    assert type(a.label) is str and type(mid.label) is str
    # regression (8): __bool__ compacting the arena put the label on another node
    assert (a.label, mid.label, b.label) == ("a", "mid", "top")
    _MeddlingLabel.calls = []
    # regression (5): the label's __del__ ran while the top node was popped,
    # compacted, and the arena's size was then set back to a stale value
    del b, mid
    gc.collect()
    assert "bool" not in _MeddlingLabel.calls and "hash" not in _MeddlingLabel.calls
    fresh = [engine.Value(float(i)) for i in range(100)]
    assert [f.data for f in fresh] == [float(i) for i in range(100)]
    assert all(f.label == "" for f in fresh)
    assert a.label == "a"
    check_arena(engine)


def test_a_meddling_activation_name_is_taken_as_a_plain_string(engine):
    _MeddlingLabel.engine = engine
    x, w, b = engine.Value(2.0), engine.Value(-1.0), engine.Value(0.5)
    (out,) = engine.dense([[w]], [x], [b], _MeddlingLabel("relu"))
    assert out.data == 0.0 and out._op == "ReLU"
    check_arena(engine)


# -- 7. replaced math functions -------------------------------------------------------------

@pytest.mark.parametrize("name, op, arg, error", [
    ("log", lambda v: v.log(), -1.0, ValueError),
    ("log", lambda v: v.log(), 0.0, ValueError),
    ("log", lambda v: v.log(), math.nan, None),
    ("sqrt", lambda v: v.sqrt(), -4.0, ValueError),
    ("exp", lambda v: v.exp(), 1000.0, OverflowError),
    ("pow", lambda v: v ** 0.5, -8.0, ValueError),
    ("pow", lambda v: v ** -1, 0.0, ValueError),
    ("pow", lambda v: v ** math.inf, 2.0, None),
    ("pow", lambda v: v ** 1000, 10.0, OverflowError),
])
def test_replaced_math_functions_cannot_run_code_mid_op(engine, monkeypatch, name, op, arg, error):
    original = getattr(math, name)
    calls = []

    def meddling(*args):
        calls.append(args)
        junk = [engine.Value(1.0) * 2 for _ in range(50)]
        del junk
        _collect(engine)
        return original(*args)

    keep = [engine.Value(float(i)) * 2 for i in range(100)]
    v = engine.Value(arg)
    monkeypatch.setattr(math, name, meddling)
    if error is None:
        out = op(v)
        assert same_float(out.data, original(arg, *([math.inf] if name == "pow" else [])))
    else:
        with pytest.raises(error) as raised:
            op(v)
        with pytest.raises(error) as expected:    # the same message as Python's own
            original(arg, *([0.5 if arg == -8.0 else -1 if arg == 0.0 else 1000] if name == "pow" else []))
        assert str(raised.value) == str(expected.value)
    monkeypatch.undo()
    if is_core(engine):
        assert calls == []                         # the core took Python's own functions at import
    assert [k.data for k in keep] == [2.0 * i for i in range(100)]
    check_arena(engine)


# -- 9. sweeps in other threads -------------------------------------------------------------

def test_another_threads_sweep_and_collect_proceed_while_a_sweep_waits(engine):
    x = engine.Value(1.0)
    in_sweep, done = threading.Event(), threading.Event()
    results = {}

    def worker():
        if not in_sweep.wait(30):
            return
        try:
            a, b = engine.Value(3.0), engine.Value(4.0)
            c = (a * b + a).tanh() * 2
            c.backward()
            results["grads"] = (a.grad, b.grad)
            results["expected"] = ((1 - math.tanh(15.0) ** 2) * 2 * 5.0, (1 - math.tanh(15.0) ** 2) * 2 * 3.0)
            if is_core(engine):
                results["live"] = engine.collect()
        except Exception as exc:    # noqa: BLE001 - reported below
            results["error"] = repr(exc)
        finally:
            done.set()

    def handler(signum, frame):
        if not in_sweep.is_set() and _in_sweep(engine, frame):
            # no further signal: a handler nested in Event.set() below would
            # wait for the lock its own thread holds
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            in_sweep.set()
            # waiting releases the GIL: the worker runs now.  The pure engine
            # runs one sweep at a time (its lock), so there the worker's
            # backward() waits for this sweep to end instead.
            results["during the sweep"] = done.wait(30 if is_core(engine) else 0.2)

    thread = threading.Thread(target=worker)
    thread.start()
    root = _chain(engine, x, _sweep_size(engine))
    compactions = engine.arena_info()["compactions"] if is_core(engine) else 0

    def work():
        x.grad = 0.0
        root.backward()
        return in_sweep.is_set()

    try:
        assert _run_with_timer_signal(handler, work), "the handler never ran inside a sweep"
    finally:
        in_sweep.set()
        thread.join(30)
    # regression: raised "cannot run inside another sweep"
    assert "error" not in results, results["error"]
    assert results["during the sweep"] == is_core(engine)
    assert results["grads"] == pytest.approx(results["expected"], rel=1e-12)
    assert x.grad == 1.0
    if is_core(engine):
        assert results["live"] > 0
        assert engine.arena_info()["compactions"] > compactions   # done when the sweep ended
    check_arena(engine)


# -- 10. backward() from a signal handler in the middle of a sweep --------------------------

def test_backward_from_a_signal_handler_inside_a_sweep(engine):
    x = engine.Value(1.0)
    other_leaf = engine.Value(2.0)
    other = (other_leaf * other_leaf).tanh()
    seen = {}

    def handler(signum, frame):
        if "inner" not in seen and _in_sweep(engine, frame):
            seen["inner"] = None      # once: the inner sweep checks for signals too
            other_leaf.grad = 0.0
            other.backward()          # regression: the pure engine deadlocked here
            seen["inner"] = other_leaf.grad

    root = _chain(engine, x, _sweep_size(engine))

    def work():
        x.grad = 0.0
        root.backward()
        return "inner" in seen

    assert _run_with_timer_signal(handler, work), "the handler never ran inside a sweep"
    assert x.grad == 1.0
    assert seen["inner"] == pytest.approx((1 - math.tanh(4.0) ** 2) * 4.0, rel=1e-12)
    check_arena(engine)


def test_nested_discoveries_each_mark_on_their_own(core):
    # Each first backward() marks nodes with a flag bit of its own; past six
    # discoveries in progress a discovery marks in a private array: nesting
    # eight deep works, and every nested backward() gets its gradient.
    x = core.Value(1.0)
    chains = [_chain(core, x, 150_000) for _ in range(9)]
    log = {"started": set(), "grads": []}

    def handler(signum, frame):
        level = core.arena_info()["sweeps"]
        if 1 <= level <= 8 and level not in log["started"]:
            log["started"].add(level)      # a fresh root: a discovery inside this one
            before = x.grad
            (chains[level] * 3.0).backward()
            log["grads"].append(x.grad - before)

    def work():
        log["started"].clear()
        log["grads"].clear()
        (chains[0] * 1.0).backward()
        return len(log["started"]) == 8

    assert _run_with_timer_signal(handler, work, attempts=200), "the discoveries never nested eight deep"
    assert all(g >= 3.0 for g in log["grads"]) and len(log["grads"]) == 8
    core.check_arena()
    for chain in chains:                   # every graph works afterwards
        x.grad = 0.0
        (chain * 2.0).backward()
        assert x.grad == 2.0
    core.check_arena()


# -- 12. one semantics for both engines -----------------------------------------------------

def test_reinitializing_an_interior_value_makes_it_a_leaf_in_place(engines):
    results = []
    for engine in engines:
        a = engine.Value(2.0)
        b = a * 3
        c = b + 1
        c.backward()
        b.__init__(10.0, label="b")
        assert (b._op, b._children, b.grad, b.label) == ("", (), 0.0, "b")
        assert c._children[0] is b
        c.forward()
        a.grad = 0.0
        c.backward()
        results.append((c.data, b.grad, a.grad))
        check_arena(engine)
    # regression: the core kept the old node (7.0), the pure engine the leaf (11.0)
    assert results[0] == results[1] == (11.0, 1.0, 0.0)


_NAN_CASE_OPS = {
    "add": lambda e, x, y: x + y, "sub": lambda e, x, y: x - y, "rsub": lambda e, x, y: 2.0 - x,
    "mul": lambda e, x, y: x * y, "div": lambda e, x, y: x / y, "rdiv": lambda e, x, y: 2.0 / x,
    "pow": lambda e, x, y: x ** y, "powc": lambda e, x, y: x ** 2.5, "rpow": lambda e, x, y: 2.0 ** x,
    "neg": lambda e, x, y: -x, "relu": lambda e, x, y: x.relu(), "tanh": lambda e, x, y: x.tanh(),
    "sigmoid": lambda e, x, y: x.sigmoid(), "exp": lambda e, x, y: x.exp(), "log": lambda e, x, y: x.log(),
    "sqrt": lambda e, x, y: x.sqrt(), "abs": lambda e, x, y: abs(x),
    "vsum": lambda e, x, y: e.vsum([x, y, 1.0]), "dot": lambda e, x, y: e.dot([x, y], [y, 3.0], x),
}


@pytest.mark.parametrize("op", sorted(_NAN_CASE_OPS))
def test_one_nan_in_gives_the_same_bits_in_both_engines(engines, op):
    # regression: the second input of SUB, NEG and DIV received +nan on the
    # core and -nan on the pure engine for a NaN upstream grad.  Every op, with
    # one NaN (either sign) as an input, the other input or the upstream grad
    # and ordinary values elsewhere; then with the edges of each op (zeros,
    # infinities, invalid inputs: these make the machine's default NaN) and
    # no NaN put in.  Data and grads bitwise equal, NaN signs included.  (Where
    # two different NaNs meet in one operation, IEEE 754 leaves open which
    # comes out, and C compilers differ; docs/micrograd.md, "Semantics".)
    build = _NAN_CASE_OPS[op]
    nans = (math.nan, -math.nan)
    one_nan = [(x, y, g) for x in nans + (0.5, 1.5) for y in nans + (-2.0, 3.0) for g in nans + (0.5,)
               if sum(v != v for v in (x, y, g)) == 1]
    edges = (0.0, -0.0, math.inf, -math.inf, -2.0, 1.0)
    no_nan = [(x, y, g) for x in edges for y in edges for g in (0.5, math.inf, 0.0)]
    for x0, y0, g0 in one_nan + no_nan:
        results = []
        for engine in engines:
            x, y, g = engine.Value(x0), engine.Value(y0), engine.Value(g0)
            try:
                out = build(engine, x, y) * g
            except (ValueError, ZeroDivisionError, OverflowError) as exc:
                results.append(type(exc))
                continue
            out.backward()
            results.append(tuple(_bits(v) for v in (out.data, x.grad, y.grad, g.grad)))
        assert results[0] == results[1], (op, x0, y0, g0)


@contextlib.contextmanager
def _reinit_at_bytecode(function_name, at):
    """Inside the block, the node that the pure engine's `function_name` is
    reading is re-initialized, once, before the `at`-th bytecode executed in
    it (where a signal handler may run).  Yields (the number of bytecodes
    executed, the nodes re-initialized).  sys.monitoring's instruction events
    on 3.12+ (where sys.settrace's opcode events are built on them and
    skip some), sys.settrace's before."""
    count, hit = 0, []
    code = getattr(autograd.pure, function_name).__code__

    def reinit(frame):
        nonlocal count
        count += 1
        if count == at:
            node = frame.f_locals["node"]
            node.__init__(3.0)
            hit.append(node)

    if hasattr(sys, "monitoring"):
        monitoring = sys.monitoring
        tool = monitoring.DEBUGGER_ID
        monitoring.use_tool_id(tool, "re-initialize at a bytecode")
        monitoring.register_callback(tool, monitoring.events.INSTRUCTION,
                                     lambda _code, _offset: reinit(sys._getframe(1)))
        monitoring.set_local_events(tool, code, monitoring.events.INSTRUCTION)
        try:
            yield lambda: count, hit
        finally:
            monitoring.set_local_events(tool, code, 0)
            monitoring.register_callback(tool, monitoring.events.INSTRUCTION, None)
            monitoring.free_tool_id(tool)
        return

    def local(frame, event, arg):
        if event == "opcode":
            reinit(frame)
        return local

    def tracer(frame, event, arg):
        if frame.f_code is code:
            frame.f_trace_opcodes = True
            return local
        return None

    sys.settrace(tracer)
    try:
        yield lambda: count, hit
    finally:
        sys.settrace(None)


@pytest.mark.parametrize("sweep, function_name", [("backward", "_backprop"), ("forward", "_evaluate")])
def test_a_pure_sweep_never_half_reads_a_node_re_initialized_at_any_bytecode(sweep, function_name):
    """The pure engine's sweeps read a node's kind after its inputs, and
    Value.__init__ writes the kind first: a node re-initialized between any
    two bytecodes of a sweep (by a signal handler) is read whole, old or new."""
    P = autograd.pure
    total, at = None, 1
    while total is None or at <= total:
        x = P.Value(0.5)
        ys = [x.tanh(), x ** 3, x * 2.0, P.vsum([x, 1.0]), P.dot([x], [x], 0.5), P.logsumexp([x, 0.0])]
        out = P.vsum([y * 1.0 for y in ys])
        with _reinit_at_bytecode(function_name, at) as (executed, hit):
            getattr(out, sweep)()
        total = total or executed()
        assert len(hit) == 1 and hit[0]._op == "" and hit[0]._children == (), at
        assert math.isfinite(out.data) and math.isfinite(x.grad), at
        at += 1
    assert total > 100


@pytest.mark.parametrize("sweep", ["backward", "forward"])
def test_the_root_re_initialized_at_each_collection_of_a_sweep(engine, sweep):
    # regression (pure engine, seen on CPython 3.10, where the GC may start at
    # any allocation): backward() read the root's cached order twice, and a gc
    # callback between the two reads had reset it (TypeError: 'NoneType'
    # object is not subscriptable)
    at = 0
    while True:                     # each collection the sweep starts, in turn
        at += 1
        x = engine.Value(0.5)
        out = engine.vsum([(x * float(k)).tanh() for k in range(20)])
        count = []

        def callback(phase, info, out=out, count=count, at=at):
            if phase == "start":
                count.append(1)
                if len(count) == at:
                    out.__init__(3.0)

        gc.collect()
        with collecting_at_every_allocation(callback):
            getattr(out, sweep)()
        if len(count) < at:         # the sweep started fewer collections: all done
            break
        assert (out.data, out._op, out._children) == (3.0, "", ()), at
        assert math.isfinite(x.grad)
        check_arena(engine)
    assert at > (1 if is_core(engine) else 3)


@pytest.mark.parametrize("sweep", ["backward", "forward"])
def test_custom_nodes_re_initialized_at_each_collection_of_a_sweep(engine, sweep):
    # regression (pure engine, seen on CPython 3.10 by the fuzz): a custom
    # node re-initialized as a leaf between the sweep's look at its kind and
    # its chain rule made the sweep read the record it no longer has
    # (AttributeError: 'NoneType' object has no attribute 'backward')
    triple = engine.function(lambda x: 3.0 * x, lambda x: 3.0, name="triple")
    at = 0
    while True:
        at += 1
        x = engine.Value(0.5)
        nodes = [triple(x * float(k)) for k in range(12)]
        out = engine.vsum([n.tanh() for n in nodes])
        count = []

        def callback(phase, info, nodes=nodes, count=count, at=at):
            if phase == "start":
                count.append(1)
                if len(count) == at:
                    for n in nodes:
                        n.__init__(1.0)

        gc.collect()
        with collecting_at_every_allocation(callback):
            getattr(out, sweep)()
        if len(count) < at:
            break
        assert all((n.data, n._op) == (1.0, "") for n in nodes), at
        assert math.isfinite(x.grad) and math.isfinite(out.data)
        check_arena(engine)
    assert at > (1 if is_core(engine) else 3)
