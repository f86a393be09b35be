"""Re-entrancy fuzz: random programs on both engines while Python code runs
in the middle of their ops and sweeps.

The same random program (ops, fused ops, layers, backward, forward, data and
grad writes, re-initialization, labels, drops) runs on the compiled core and
on the pure reference, step by step.  Meanwhile injected Python code does
random things:

- deterministically, at the same point in both engines: the `__float__` of
  a number passed to an op re-initializes, drops, labels or back-propagates
  a Value of the program itself, or compacts the arena;
- at points that differ between the engines (gc callbacks with the GC
  collecting on every allocation, a SIGALRM timer, replaced math functions,
  the __del__/__bool__/__hash__/__eq__ of str-subclass labels): create, drop,
  re-initialize, label and back-propagate Values of a separate noise graph,
  and compact the arena.

After each step the core's arena must pass check_arena(), both engines must
have raised the same exception (or none), and every Value of the program must
agree bit for bit across the engines: data, grad, label and op.
"""
import gc
import math
import os
import random
import signal
import struct

import pytest

import autograd.pure

QUICK = os.environ.get("AUTOGRAD_QUICK_PROPERTIES") == "1"   # valgrind: a short form
SEEDS = range(3) if QUICK else range(24)
STEPS = 40 if QUICK else 150
MAX_DEPTH = 2          # injections may nest this deep (an injection's label's __del__, ...)

ERRORS = (ZeroDivisionError, ValueError, OverflowError)


def _bits(x):
    return struct.pack("<d", x)


class Injector:
    """Runs random noise actions on the engines' noise graphs; never raises
    (a failure is recorded and fails the test at the end)."""

    def __init__(self, engines, seed):
        self.rng = random.Random(seed ^ 0x5EED)
        self.noise = {engine: [] for engine in engines}
        self.core = engines[0]
        self.depth = 0
        self.failures = []
        self.count = 0
        self.enabled = False

    def __call__(self, *_):
        if not self.enabled or self.depth >= MAX_DEPTH:
            return
        self.depth += 1
        try:
            engine = self.rng.choice(list(self.noise))
            self._act(engine, self.noise[engine])
            self.count += 1
        except Exception as exc:   # noqa: BLE001 - reported by the test
            self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.depth -= 1

    def _some(self, pool):
        """A random Value of the pool, or None.  Injections nest and signal
        handlers run between any two bytecodes, so the pool may change at any
        moment: pick from a snapshot."""
        items = list(pool)
        return items[self.rng.randrange(len(items))] if items else None

    def _act(self, engine, pool):
        rng = self.rng
        action = rng.randrange(9)
        if action <= 2 or len(pool) < 2:           # create
            x = engine.Value(rng.uniform(-2, 2))
            y = self._some(pool)
            if y is not None and rng.random() < 0.7:
                x = (x * y + 1.0).tanh() if rng.random() < 0.5 else engine.vsum([x, y, 0.5]).sigmoid()
            pool.append(x)
            if len(pool) > 40:
                del pool[:10]
            return
        v = self._some(pool)
        if v is None:
            return
        if action == 3:                            # drop
            try:
                pool.remove(v)
            except ValueError:                     # a nested injection dropped it first
                pass
        elif action == 4:                          # compact
            self.core.collect()
        elif action == 5:                          # re-initialize
            v.__init__(rng.uniform(-2, 2))
        elif action == 6:                          # label, with a meddling label
            v.label = MeddlingLabel(rng.choice("abc"), self)
        elif action == 7:                          # a sweep of another graph
            v.backward()
        else:
            v.forward()


class MeddlingLabel(str):
    """A str-subclass label whose methods inject noise."""

    def __new__(cls, text, injector):
        self = str.__new__(cls, text)
        self.injector = injector
        return self

    def __del__(self):
        self.injector()

    def __bool__(self):
        self.injector()
        return len(self) > 0

    def __hash__(self):
        self.injector()
        return str.__hash__(self)

    def __eq__(self, other):
        self.injector()
        return str.__eq__(self, other)


class Num:
    """A real number whose __float__ runs a program action (the same in
    both engines) and injects noise."""

    def __init__(self, value, action, world, injector):
        self.value, self.action, self.world, self.injector = value, action, world, injector

    def __float__(self):
        run_action(self.world, self.action)
        self.injector()
        return self.value


import numbers  # noqa: E402  (kept beside its use: Num is a Real)
numbers.Real.register(Num)


def run_action(world, action):
    """A deterministic action on one engine's program Values."""
    engine, values = world
    kind = action[0]
    if not values or kind == "none":
        return
    k = action[1] % len(values)
    if kind == "reinit":
        values[k].__init__(action[2])
    elif kind == "drop":
        values.pop(k)
    elif kind == "label":
        values[k].label = action[2]
    elif kind == "backward":
        values[k].backward()
    elif kind == "compact" and engine is not autograd.pure:
        engine.collect()


# -- the program --------------------------------------------------------------------------

BINARY = ["+", "-", "*", "/", "**", "r+", "r-", "r*", "r/", "r**"]
UNARY = ["relu", "tanh", "sigmoid", "exp", "log", "sqrt", "abs", "neg"]


def _number(rng):
    r = rng.random()
    if r < 0.04:
        return rng.choice([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 1e300, -1e-300])
    return round(rng.uniform(-3, 3), 3)


def _num_action(rng):
    kind = rng.choice(["none", "none", "reinit", "drop", "label", "backward", "compact"])
    return (kind, rng.randrange(1000), _number(rng) if kind == "reinit" else rng.choice("xyz"))


def draw_step(rng, size):
    """One step of the program, as plain data, so both engines run it alike."""
    pick = lambda: rng.randrange(max(size, 1))            # noqa: E731
    kind = rng.choices(["leaf", "binary", "unary", "vsum", "dot", "dense", "backward", "forward",
                        "reinit", "drop", "label", "grad", "chain", "logsumexp"],
                       weights=[8, 14, 10, 3, 3, 2, 6, 3, 2, 3, 2, 1, 0 if QUICK else 0.3, 2])[0]
    if size < 3:
        kind = "leaf"
    operand = lambda: (rng.choice(["value", "value", "number", "num"]), pick(), _number(rng),  # noqa: E731
                       _num_action(rng))
    if kind == "leaf":
        return (kind, _number(rng), rng.choice(["", "", "w", "meddling"]))
    if kind == "binary":
        return (kind, rng.choice(BINARY), pick(), operand())
    if kind == "unary":
        return (kind, rng.choice(UNARY), pick())
    if kind in ("vsum", "dot", "logsumexp"):
        n = rng.randrange(1, 5)
        return (kind, [operand() for _ in range(2 * n + 1)])
    if kind == "dense":
        nin, nout = rng.randrange(1, 4), rng.randrange(1, 4)
        return (kind, [[pick() for _ in range(nin)] for _ in range(nout)], [pick() for _ in range(nin)],
                [pick() for _ in range(nout)], rng.choice(["relu", "tanh", "sigmoid", "linear"]))
    if kind == "forward":
        return (kind, pick(), pick(), _number(rng))
    if kind in ("reinit", "grad"):
        return (kind, pick(), _number(rng))
    if kind == "label":
        return (kind, pick(), rng.choice(["", "p", "q", "meddling"]))
    return (kind, pick())


def _operand(world, spec, injector):
    engine, values = world
    what, k, number, action = spec
    if what == "value":
        return values[k % len(values)]
    if what == "number":
        return number
    return Num(number, action, world, injector)


def _label(text, injector):
    return MeddlingLabel("m", injector) if text == "meddling" else text


def apply_step(world, step, injector):
    """Run one step on one engine; return the exception type it raised, or None."""
    engine, values = world
    kind = step[0]
    try:
        if kind == "leaf":
            values.append(engine.Value(step[1], label=_label(step[2], injector)))
            return None
        # the Value a step works on: its third field for ops, else its second
        k = step[2] if kind in ("binary", "unary") else step[1]
        if kind == "binary":
            x = values[k % len(values)]
            y = _operand(world, step[3], injector)
            op = step[1]
            if op.startswith("r"):
                x, y = y, x
                op = op[1:]
            if op == "**" and isinstance(x, (Num, float)) and isinstance(y, (Num, float)):
                return None
            values.append({"+": lambda: x + y, "-": lambda: x - y, "*": lambda: x * y,
                           "/": lambda: x / y, "**": lambda: x ** y}[op]())
        elif kind == "unary":
            x = values[k % len(values)]
            values.append(-x if step[1] == "neg" else getattr(x, step[1])())
        elif kind == "vsum":
            values.append(engine.vsum([_operand(world, s, injector) for s in step[1]]))
        elif kind == "logsumexp":
            values.append(engine.logsumexp([_operand(world, s, injector) for s in step[1]]))
        elif kind == "dot":
            items = [_operand(world, s, injector) for s in step[1]]
            n = len(items) // 2
            values.append(engine.dot(items[:n], items[n:2 * n], items[2 * n]))
        elif kind == "dense":
            _, rows, xs, bs, activation = step
            at = lambda i: values[i % len(values)]        # noqa: E731
            values.extend(engine.dense([[at(i) for i in row] for row in rows], [at(i) for i in xs],
                                       [at(i) for i in bs], activation))
        elif kind == "backward":
            values[k % len(values)].backward()
        elif kind == "forward":
            values[step[2] % len(values)].data = step[3]
            values[k % len(values)].forward()
        elif kind == "reinit":
            values[k % len(values)].__init__(step[2])
        elif kind == "grad":
            values[k % len(values)].grad = step[2]
        elif kind == "drop":
            values.pop(k % len(values))
        elif kind == "label":
            values[k % len(values)].label = _label(step[2], injector)
        elif kind == "chain":            # long enough for signal checks inside its sweeps
            y = values[k % len(values)]
            for _ in range(70_000):
                y = y * 1.0
            values.append(y)
            y.backward()
    except ERRORS as exc:
        return type(exc)
    return None


def _same(x, y):
    """Bitwise equal; two NaNs count as equal whatever their sign, because
    where two NaNs meet in one operation IEEE 754 leaves open which one comes
    out, and C compilers choose differently (CPython's own float `+` keeps its
    second operand's here, `-` its first).  With one NaN in, the bits must
    match: tests/test_reentrancy.py checks that op by op."""
    return _bits(x) == _bits(y) or (x != x and y != y)


def compare(worlds, seed, step_no, step):
    (_, fast), (_, slow) = worlds
    where = f"seed {seed}, step {step_no} {step!r}"
    assert len(fast) == len(slow), where
    for i, (f, s) in enumerate(zip(fast, slow)):
        assert _same(f.data, s.data), f"{where}: data of value {i}: {f.data!r} vs {s.data!r}"
        assert _same(f.grad, s.grad), f"{where}: grad of value {i}: {f.grad!r} vs {s.grad!r}"
        assert f.label == s.label and type(f.label) is type(s.label) is str, f"{where}: label of value {i}"
        assert f._op == s._op, f"{where}: op of value {i}: {f._op!r} vs {s._op!r}"


@pytest.fixture
def injection_points(engines, monkeypatch):
    """Install every injection point; yields a function making the injector
    for a seed."""
    made = []
    threshold = gc.get_threshold()

    def make(seed):
        injector = Injector(engines, seed)
        made.append(injector)
        return injector

    def current(*args):
        if made:
            made[-1](*args)

    def gc_callback(phase, info):
        if phase == "start" and made and made[-1].rng.random() < 0.02:
            current()

    for name in ("log", "pow", "exp", "sqrt", "tanh"):
        original = getattr(math, name)

        def replaced(*args, _original=original):
            current()
            return _original(*args)
        monkeypatch.setattr(math, name, replaced)
    gc.callbacks.append(gc_callback)
    gc.set_threshold(1)
    old_handler = signal.signal(signal.SIGALRM, lambda signum, frame: current())
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    try:
        yield make
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old_handler)
        gc.callbacks.remove(gc_callback)
        gc.set_threshold(*threshold)
        for injector in made:
            injector.enabled = False


@pytest.mark.parametrize("seed", SEEDS)
def test_random_programs_with_python_code_reentering_the_engines(engines, injection_points, seed):
    core, pure = engines
    injector = injection_points(seed)
    rng = random.Random(seed)
    worlds = [(core, []), (pure, [])]
    injector.enabled = True
    try:
        for step_no in range(STEPS):
            step = draw_step(rng, len(worlds[0][1]))
            outcomes = [apply_step(world, step, injector) for world in worlds]
            assert outcomes[0] == outcomes[1], f"seed {seed}, step {step_no} {step!r}: {outcomes}"
            core.check_arena()
            compare(worlds, seed, step_no, step)
    finally:
        injector.enabled = False
    assert injector.failures == [], injector.failures[:5]
    assert injector.count > 0
    core.check_arena()
