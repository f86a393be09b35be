"""Re-entrancy fuzz: random programs on both engines while Python code runs
in the middle of their ops, sweeps and bulk operations.

The same random program runs on the compiled core and on the pure reference,
step by step.  Its steps use every public callable and property of the
core (ACTIONS below maps each to the steps that use it, and a test fails
naming any the table misses): ops, fused ops, layers, backward, forward,
gradients(), data and grad writes, re-initialization, labels, drops,
autograd.function nodes, Blocks and Replays.  Meanwhile injected Python code
does random things:

- deterministically, at the same point in both engines: the `__float__` of a
  number, the `__index__` of an index and the `__iter__` of a sequence passed
  to the program's calls re-initialize, drop, label or back-propagate a Value
  of the program itself, try to re-initialize its Blocks, Replays and
  functions (refused), load another batch into its Replays, step its
  Blocks, switch the replay's kernels or compact the arena;
- at points that differ between the engines (gc callbacks with the GC
  collecting on every allocation, a SIGALRM timer, replaced math functions,
  weak-reference callbacks, the __del__/__bool__/__hash__/__eq__ of
  str-subclass labels): create, drop, re-initialize, label and
  back-propagate Values of a separate noise graph, make and use noise
  Blocks, Replays and functions and try to re-initialize them, and compact
  the arena.

After each step the core's arena must pass check_arena(), both engines must
have raised the same exception (or none) and returned the same numbers, and
every Value of the program must agree bit for bit across the engines: data,
grad, label and op.
"""
import array
import copy
import gc
import math
import operator
import os
import pickle
import random
import signal
import struct
import traceback
import types
import weakref

import pytest

import autograd.pure
from autograd.higher import gradients
from helpers import stop_timer_signal

QUICK = os.environ.get("AUTOGRAD_QUICK_PROPERTIES") == "1"   # valgrind: a short form
SEEDS = range(3) if QUICK else range(24)
STEPS = 40 if QUICK else 150
MAX_DEPTH = 2          # injections may nest this deep (an injection's label's __del__, ...)

# what a step may raise, the same on both engines (RuntimeError: a refused
# re-initialization, a Replay used before forward(); TypeError: a custom node
# differentiated with ops, ...)
ERRORS = (ZeroDivisionError, ValueError, OverflowError, TypeError, RuntimeError, IndexError)


def _bits(x):
    return struct.pack("<d", x)


def _functions(engine):
    """The functions every program starts with (made alike on both engines)."""
    return [engine.function(lambda x, y: x * y + x, lambda x, y: y + 1.0, lambda x, y: x, name="fma"),
            engine.function(lambda x: math.tanh(x), lambda x: 1.0 - math.tanh(x) ** 2, name="th")]


class World:
    """One engine's copy of the program: its Values, Blocks, Replays and functions."""

    def __init__(self, engine):
        self.engine = engine
        self.values = []
        self.blocks = []        # (Block, velocity, m, v)
        self.replays = []       # (Replay, number of inputs)
        self.functions = _functions(engine)

    @property
    def is_core(self):
        return self.engine is not autograd.pure


# -- noise: Python code at points that differ between the engines --------------------------

class Injector:
    """Runs random noise actions on the engines' noise graphs; never raises
    (a failure is recorded and fails the test at the end)."""

    def __init__(self, engines, seed):
        self.rng = random.Random(seed ^ 0x5EED)
        self.noise = {engine: World(engine) for engine in engines}
        self.core = engines[0]
        self.depth = 0
        self.failures = []
        self.count = 0
        self.enabled = False
        self.refs = []

    def __call__(self, *_):
        if not self.enabled or self.depth >= MAX_DEPTH:
            return
        self.depth += 1
        try:
            engine = self.rng.choice(list(self.noise))
            self._act(self.noise[engine])
            self.count += 1
        except Exception:          # noqa: BLE001 - reported by the test, with where it happened
            self.failures.append(traceback.format_exc())
        finally:
            self.depth -= 1

    def _some(self, pool):
        """A random item of the pool, or None.  Injections nest and signal
        handlers run between any two bytecodes, so the pool may change at any
        moment: pick from a snapshot."""
        items = list(pool)
        return items[self.rng.randrange(len(items))] if items else None

    def _act(self, world):
        rng, engine, pool = self.rng, world.engine, world.values
        action = rng.randrange(13)
        if action <= 2 or len(pool) < 2:           # create
            x = engine.Value(rng.uniform(-2, 2))
            y = self._some(pool)
            if y is not None and rng.random() < 0.7:
                x = (x * y + 1.0).tanh() if rng.random() < 0.5 else engine.vsum([x, y, 0.5]).sigmoid()
            if rng.random() < 0.2:                 # its death runs noise too
                self._weakly(x)
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
            self.core.arena_info()
        elif action == 5:                          # re-initialize
            v.__init__(rng.uniform(-2, 2))
        elif action == 6:                          # label, with a meddling label
            v.label = MeddlingLabel(rng.choice("abc"), self)
        elif action == 7:                          # a sweep of another graph
            v.backward()
        elif action == 8:
            v.forward()
        elif action == 9:                          # a Block of noise: use it, try to re-make it
            block = engine.Block([self._some(pool) for _ in range(rng.randrange(1, 5))])
            block.sgd_step(0.01)
            block.zero_grad()
            _refused(lambda: block.__init__([v]))
            world.blocks = [block] + world.blocks[:3]
            other = self._some(world.blocks)
            if other is not None:
                other.data
        elif action == 10:                         # a Replay of noise
            leaf = engine.Value(rng.uniform(-1, 1))
            out = world.functions[0](leaf * v.data, leaf).tanh()
            replay = engine.Replay([out], inputs=[leaf], params=[])
            replay.load(array.array("d", [0.5, -1.0, 2.0]), [0, 2, 1])
            replay.forward()
            replay.values(0)
            _refused(lambda: replay.__init__([out], inputs=[leaf], params=[]))
        elif action == 11:                         # a function node, with its own _backward
            node = world.functions[0](v, 0.5)
            node._backward = lambda: None
            pool.append(node)
            _refused(lambda: world.functions[0].__init__(math.exp, math.exp))
        else:                                      # weakly referenced, dropped now or later
            self._weakly(v)

    def _weakly(self, v):
        """A weak reference to v whose callback injects noise when v dies."""
        self.refs.append(weakref.ref(v, self))
        del self.refs[:-100]


def _refused(call):
    """A second __init__ of a Block, Replay or function is refused."""
    try:
        call()
    except RuntimeError as exc:
        assert "once" in str(exc), exc
    else:
        raise AssertionError("a second __init__ was accepted")


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


# -- arguments whose methods run a program action (the same in both engines) ----------------

class Num:
    """A real number whose __float__ runs a program action and injects noise."""

    def __init__(self, value, action, world, injector):
        self.value, self.action, self.world, self.injector = value, action, world, injector

    def __float__(self):
        run_action(self.world, self.action)
        self.injector()
        return self.value


class Index:
    """An index whose __index__ runs a program action and injects noise."""

    def __init__(self, value, action, world, injector):
        self.value, self.action, self.world, self.injector = value, action, world, injector

    def __index__(self):
        run_action(self.world, self.action)
        self.injector()
        return self.value


class Seq:
    """A sequence whose __iter__ runs a program action and injects noise."""

    def __init__(self, items, action, world, injector):
        self.items, self.action, self.world, self.injector = items, action, world, injector

    def __iter__(self):
        run_action(self.world, self.action)
        self.injector()
        return iter(list(self.items))


import numbers  # noqa: E402  (kept beside its use: Num is a Real)
numbers.Real.register(Num)


def run_action(world, action):
    """A deterministic action on one engine's program."""
    engine, values = world.engine, world.values
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
    elif kind == "compact" and world.is_core:
        engine.collect()
    elif kind == "reinit_block" and world.blocks:
        block = world.blocks[k % len(world.blocks)][0]
        _refused(lambda: block.__init__([values[k]]))
    elif kind == "reinit_replay" and world.replays:
        replay = world.replays[k % len(world.replays)][0]
        _refused(lambda: replay.__init__([values[k]], inputs=[], params=[]))
    elif kind == "reinit_function":
        _refused(lambda: world.functions[k % len(world.functions)].__init__(math.exp, math.exp))
    elif kind == "load" and world.replays:       # another batch, of another size
        replay, ninputs = world.replays[k % len(world.replays)]
        rows = 1 + k % 5
        replay.load(_table(ninputs, rows + 1, k), [(k + r) % (rows + 1) for r in range(rows)])
    elif kind == "block_step" and world.blocks:
        world.blocks[k % len(world.blocks)][0].sgd_step(0.125)
    elif kind == "kernels" and world.is_core:   # the replay's builds agree bit for bit, on
        engine._batch_kernels(("baseline", "avx2", "avx512")[k % 3])    # any number of threads
        engine._layer_min_work((1e3, 2e5, 2e6)[k % 3])


def _table(ninputs, rows, seed):
    """A table of `rows` rows of `ninputs` numbers, the same on both engines:
    flat for an even seed, for an odd one the same columns in two 2-D tables
    side by side (Replay.load's other form)."""
    numbers = [round(math.sin(seed + 1.7 * i), 3) for i in range(max(ninputs, 1) * rows)]
    if not ninputs:
        return array.array("d", [])
    if seed % 2 == 0 or ninputs < 2:
        return array.array("d", numbers)
    split = ninputs // 2
    return tuple(memoryview(array.array("d", [x for r in range(rows)
                                              for x in numbers[r * ninputs + a:r * ninputs + b]]))
                 .cast("B").cast("d", (rows, b - a)) for a, b in ((0, split), (split, ninputs)))


# -- the program --------------------------------------------------------------------------

BINARY = ["+", "-", "*", "/", "**", "r+", "r-", "r*", "r/", "r**"]
# the smooth functions: every row of the engines' table (exp2 and cbrt from 3.11 on)
FUNCTION_NAMES = list(autograd.pure.FUNCTIONS)
UNARY = ["relu", "abs", "neg", "abs()"] + FUNCTION_NAMES
NUM_ACTIONS = ["none", "none", "reinit", "drop", "label", "backward", "compact", "reinit_block",
               "reinit_replay", "reinit_function", "load", "block_step", "kernels"]
BLOCK_USES = ["data", "grad", "set_data", "zero_grad", "sgd", "momentum", "adam", "len", "iter",
              "pickle", "clip", "adamw"]
REPLAY_USES = ["load", "forward", "values", "sum", "argmax", "hits", "backward", "batch_size",
               "pickle", "threads", "layers", "params"]
INSPECTIONS = ["repr", "prev", "children", "op", "rule", "detach", "copy", "pickle",
               "call_backward", "local_backward", "weakref", "item", "compare", "hash"]

# step kind: weight.  "chain" is long enough for signal checks inside its sweeps.
STEP_WEIGHTS = {"leaf": 8, "binary": 14, "unary": 10, "vsum": 3, "dot": 3, "dense": 2,
                "backward": 6, "forward": 3, "reinit": 2, "drop": 3, "label": 2, "grad": 1,
                "chain": 0 if QUICK else 0.3, "logsumexp": 2, "function": 3,
                "function_make": 0.5, "assign_backward": 1, "inspect": 3, "gradients": 2,
                "no_grad": 1, "block_make": 1.5, "block_use": 4, "replay_make": 1.5,
                "replay_use": 5, "float_rows": 0.5, "layer": 1.5, "layered": 1.5}


def _number(rng):
    r = rng.random()
    if r < 0.04:
        return rng.choice([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 1e300, -1e-300])
    return round(rng.uniform(-3, 3), 3)


def _num_action(rng):
    kind = rng.choice(NUM_ACTIONS)
    return (kind, rng.randrange(1000), _number(rng) if kind == "reinit" else rng.choice("xyz"))


def draw_step(rng, size, weights=STEP_WEIGHTS):
    """One step of the program, as plain data, so both engines run it alike."""
    pick = lambda: rng.randrange(max(size, 1))            # noqa: E731
    picks = lambda lo, hi: [pick() for _ in range(rng.randrange(lo, hi))]   # noqa: E731
    kind = rng.choices(list(weights), weights=list(weights.values()))[0]
    if size < 3:
        kind = "leaf"
    operand = lambda: (rng.choice(["value", "value", "number", "num"]), pick(), _number(rng),  # noqa: E731
                       _num_action(rng))
    index = lambda n: (rng.choice(["int", "int", "index"]), rng.randrange(n), _num_action(rng))  # noqa: E731
    wrap = lambda: (rng.choice(["list", "list", "seq"]), _num_action(rng))   # noqa: E731
    if kind == "leaf":
        return (kind, _number(rng), rng.choice(["", "", "w", "meddling"]))
    if kind == "binary" or kind == "no_grad":
        return (kind, rng.choice(BINARY), pick(), operand())
    if kind == "unary":
        return (kind, rng.choice(UNARY), pick())
    if kind in ("vsum", "dot", "logsumexp"):
        n = rng.randrange(1, 5)
        return (kind, [operand() for _ in range(2 * n + 1)])
    if kind == "dense":
        nin, nout = rng.randrange(1, 4), rng.randrange(1, 4)
        return (kind, [[pick() for _ in range(nin)] for _ in range(nout)], [pick() for _ in range(nin)],
                [pick() for _ in range(nout)], rng.choice(["relu", "tanh", "sigmoid", "softplus", "gelu", "linear"]))
    if kind == "forward":
        return (kind, pick(), pick(), _number(rng))
    if kind in ("reinit", "grad"):
        return (kind, pick(), _number(rng))
    if kind == "label":
        return (kind, pick(), rng.choice(["", "p", "q", "meddling"]))
    if kind == "function":
        return (kind, rng.randrange(8), [operand() for _ in range(2)])
    if kind == "inspect":
        return (kind, pick(), rng.choice(INSPECTIONS), operand(), rng.choice(["<", "<=", ">", ">="]))
    if kind == "gradients":
        return (kind, pick(), picks(1, 4), rng.random() < 0.5)
    if kind == "block_make":
        return (kind, picks(0, 6), wrap())
    if kind == "block_use":
        return (kind, rng.randrange(8), rng.choice(BLOCK_USES), [operand() for _ in range(8)], wrap())
    if kind == "replay_make":
        return (kind, picks(1, 4), picks(0, 4), picks(0, 4), wrap())
    if kind == "replay_use":
        return (kind, rng.randrange(8), rng.choice(REPLAY_USES), index(4), [index(4) for _ in range(6)],
                operand(), wrap(), rng.randrange(1, 6), rng.randrange(100))
    if kind == "layer":
        return (kind, picks(1, 7), rng.randrange(2, 7), rng.choice(["relu", "tanh", "linear"]), wrap())
    if kind == "layered":
        return (kind, rng.randrange(1, 6), [rng.randrange(1, 5) for _ in range(rng.randrange(1, 3))],
                rng.choice(["relu", "tanh", "linear"]), rng.randrange(0, 3), wrap(), wrap())
    if kind == "float_rows":
        width = rng.randrange(0, 4)
        return (kind, [[rng.choice([_number(rng), rng.randrange(-5, 5), True])
                        for _ in range(width)] for _ in range(rng.randrange(0, 4))])
    return (kind, pick())


def _operand(world, spec, injector):
    what, k, number, action = spec
    if what == "value":
        return world.values[k % len(world.values)]
    if what == "number":
        return number
    return Num(number, action, world, injector)


def _index(world, spec, injector):
    what, number, action = spec
    return number if what == "int" else Index(number, action, world, injector)


def _sequence(world, items, spec, injector):
    what, action = spec
    return list(items) if what == "list" else Seq(items, action, world, injector)


def _label(text, injector):
    return MeddlingLabel("m", injector) if text == "meddling" else text


def _leaves(world, picks):
    """The program's leaves among the picks, each once, in order."""
    out = []
    for k in picks:
        v = world.values[k % len(world.values)]
        if v._op == "" and not v._children and all(v is not w for w in out):
            out.append(v)
    return out


def apply_step(world, step, injector):
    """Run one step on one engine; return (the exception type it raised or
    None, what it returned as plain data)."""
    try:
        return None, _run_step(world, step, injector)
    except ERRORS as exc:
        return type(exc), None


def _run_step(world, step, injector):
    engine, values = world.engine, world.values
    kind = step[0]
    if kind == "leaf":
        values.append(engine.Value(step[1], label=_label(step[2], injector)))
        return None
    if kind == "float_rows":                       # the core's fast conversion of the data
        if world.is_core:
            rows = step[1]
            exact = all(type(x) in (float, int) for row in rows for x in row)
            same_width = len({len(row) for row in rows}) == 1
            want = [array.array("d", row) for row in rows] if rows and exact and same_width else None
            got = engine._float_rows(rows)
            assert _plain(got and [list(row) for row in got]) == _plain(want and [list(row) for row in want]), step
        return None
    if kind in ("block_use", "replay_use"):
        return (_use_block if kind == "block_use" else _use_replay)(world, step, injector)
    if kind == "function":
        f = world.functions[step[1] % len(world.functions)]
        args = [_operand(world, s, injector) for s in step[2][:len(f.partials)]]
        values.append(f(*args))
        return None
    if kind == "function_make":                    # a new one, then the first one used again
        world.functions.append(engine.function(lambda x: x * x, lambda x: 2.0 * x, name="sq"))
        f = world.functions[0]
        sine = pickle.loads(pickle.dumps(engine.function(math.sin, math.cos, name="sin")))
        values.append(sine(values[-1]))
        return [f.name, len(f.partials), f.forward(1.0, 2.0), repr(f), sine.name]
    # the Value a step works on: its third field for ops, else its second
    k = step[2] if kind in ("binary", "unary", "no_grad") else step[1]
    if kind == "block_make":
        block = engine.Block(_sequence(world, [values[i % len(values)] for i in step[1]], step[2], injector))
        n = len(block)
        world.blocks = [(block, array.array("d", [0.0] * n), array.array("d", [0.0] * n),
                         array.array("d", [0.0] * n))] + world.blocks[:3]
        return None
    if kind == "layer":                            # a layer of new parameters, replayed
        _, picks, nout, activation, how = step
        xs = [values[i % len(values)] for i in picks]
        count = len(xs) * nout + nout
        params = [engine.Value(0.1 * ((7 * i) % 11 - 5)) for i in range(count)]
        rows = [params[j * len(xs):(j + 1) * len(xs)] for j in range(nout)]
        outs = engine.dense(rows, xs, params[len(xs) * nout:], activation)
        values.extend(params + outs)
        replay = engine.Replay(_sequence(world, [engine.vsum(outs)] + outs, how, injector),
                               _leaves(world, picks), params)
        world.replays = [(replay, len(_leaves(world, picks)))] + world.replays[:3]
        return None
    if kind == "layered":                          # layers of new parameters, made as one
        _, nin, widths, activation, ntargets, how_rows, how_head = step
        layers, width, count = [], nin, 0
        for nout in widths:
            params = [engine.Value(0.1 * ((7 * (count + i)) % 11 - 5)) for i in range(width * nout + nout)]
            count += len(params)
            values.extend(params)
            rows = [_sequence(world, params[j * width:(j + 1) * width], how_rows, injector)
                    for j in range(nout)]
            layers.append((rows, params[width * nout:], activation))
            width = nout

        def head(outs, targets):
            values.extend(outs + targets)          # later steps use the placeholders too
            return _sequence(world, [engine.vsum(outs + targets)] + outs, how_head, injector)

        replay = engine.Replay.layered(layers, head, ntargets)
        world.replays = [(replay, nin + ntargets)] + world.replays[:3]
        return [len(replay.params), replay.batch_size]
    if kind == "replay_make":
        outs = [values[i % len(values)] for i in step[1]]
        ins = _leaves(world, step[2])
        params = [v for v in _leaves(world, step[3]) if all(v is not w for w in ins)]
        replay = engine.Replay(_sequence(world, outs, step[4], injector), ins, params)
        world.replays = [(replay, len(ins))] + world.replays[:3]
        return None
    if kind in ("binary", "no_grad"):
        x = values[k % len(values)]
        y = _operand(world, step[3], injector)
        op = step[1]
        if op.startswith("r"):
            x, y = y, x
            op = op[1:]
        if op == "**" and isinstance(x, (Num, float)) and isinstance(y, (Num, float)):
            return None
        compute = {"+": lambda: x + y, "-": lambda: x - y, "*": lambda: x * y,
                   "/": lambda: x / y, "**": lambda: x ** y}[op]
        if kind == "binary":
            values.append(compute())
            return None
        with engine.no_grad():
            enabled = engine.is_grad_enabled()
            out = compute()
            with engine.enable_grad():      # a graph again, inside no_grad
                recorded = compute()
                inner = engine.is_grad_enabled()
            after = engine.is_grad_enabled()
        values.append(out)
        values.append(recorded)
        return [enabled, inner, after, engine.is_grad_enabled(), out._op, recorded._op]
    if kind == "unary":
        x = values[k % len(values)]
        values.append(-x if step[1] == "neg" else abs(x) if step[1] == "abs()" else getattr(x, step[1])())
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
    elif kind == "assign_backward":                # a chain rule of the user's own
        node = values[k % len(values)]

        def halves(node=node):
            for child in node._children:
                child.grad += 0.5 * node.grad
        node._backward = halves
    elif kind == "inspect":
        if step[2] == "compare":                    # with a Value, a number, or a Num
            return _compare(values[k % len(values)], _operand(world, step[3], injector), step[4])
        return _inspect(world, values[k % len(values)], step[2])
    elif kind == "gradients":
        out = values[k % len(values)]
        inputs = [values[i % len(values)] for i in step[2]]
        got = gradients(out, inputs, create_graph=step[3])
        used, older = out._uses(inputs)             # what grad() asks of a result
        return [g.data for g in got] + used + [older]
    elif kind == "chain":
        y = values[k % len(values)]
        for _ in range(70_000):
            y = y * 1.0
        values.append(y)
        y.backward()
    return None


def _compare(v, other, op):
    """v <op> other and other <op'> v (reflected), and == / != (identity)."""
    flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
    compare = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
    out = [compare[op](v, other), compare[flipped](other, v), v == other, v != other]
    assert all(type(x) is bool for x in out), out
    return out


def _inspect(world, v, what):
    """Read a Value through one of its micrograd-style members."""
    if what == "repr":
        return repr(v)
    if what == "item":
        return v.item()
    if what == "hash":
        return len({v, v}) == 1 and {v: 1}[v] == 1 and hash(v) == object.__hash__(v)
    if what == "prev":
        return sorted(repr(c.data) for c in v._prev)
    if what == "children":
        return [(c.data, c.grad) for c in v._children]
    if what == "op":
        return v._op
    if what == "rule":
        kind, kids, exponent, partials, op = v._rule()
        return [kind, [c.data for c in kids], exponent, partials is None, op]
    if what == "detach":
        d = v.detach()
        world.values.append(d)
        return [d.data, d._op]
    if what in ("copy", "pickle"):
        c = copy.copy(v) if what == "copy" else pickle.loads(pickle.dumps(v))
        world.values.append(c)
        return [c.data, c.grad, c.label, c._op]
    if what == "call_backward":
        v._backward()
    elif what == "local_backward":
        v._local_backward()
    else:
        ref = weakref.ref(v)
        return ref() is v
    return None


def _use_block(world, step, injector):
    if not world.blocks:
        return None
    _, b, what, operands, wrap = step
    block, velocity, m, v = world.blocks[b % len(world.blocks)]
    arg = lambda i: _operand(world, operands[i], injector)     # noqa: E731
    if what == "data":
        return block.data
    if what == "grad":
        return block.grad
    if what == "set_data":
        block.set_data(_sequence(world, [arg(i % 8) for i in range(len(block))], wrap, injector))
    elif what == "zero_grad":
        block.zero_grad()
    elif what == "sgd":
        block.sgd_step(arg(0))
    elif what == "momentum":
        block.momentum_step(arg(0), arg(1), velocity)
        return list(velocity)
    elif what == "adam":
        block.adam_step(arg(0), 0.9, 0.999, 1e-8, arg(1), arg(2), m, v)
        return list(m) + list(v)
    elif what == "adamw":               # weight decay, coupled or decoupled
        block.sgd_step(arg(0), arg(3))
        block.momentum_step(arg(0), arg(1), velocity, arg(4))
        block.adam_step(arg(0), 0.9, 0.999, 1e-8, arg(1), arg(2), m, v, arg(5),
                        operands[6][0] == "value")
        return list(velocity) + list(m) + list(v)
    elif what == "clip":
        return block.clip_grad_norm(arg(0))
    elif what == "len":
        return len(block)
    elif what == "iter":
        return [x.data for x in block]
    else:
        return pickle.loads(pickle.dumps(block)).data
    return None


def _use_replay(world, step, injector):
    if not world.replays:
        return None
    _, r, what, j, indices, seed, wrap, rows, start = step
    replay, ninputs = world.replays[r % len(world.replays)]
    index = lambda spec: _index(world, spec, injector)   # noqa: E731
    outputs = _sequence(world, [index(spec) for spec in indices[:3]], wrap, injector)
    if what == "load":
        picks = [index(spec) if spec[0] == "index" else (start + spec[1]) % (rows + 1)
                 for spec in (indices * 2)[:rows]]
        replay.load(_table(ninputs, rows + 1, start), _sequence(world, picks, wrap, injector))
    elif what == "forward":
        replay.forward()
    elif what == "values":
        return replay.values(index(j))
    elif what == "sum":
        return replay.sum(index(j))
    elif what == "argmax":
        return replay.argmax(outputs)
    elif what == "hits":
        labels = [index(spec) for spec in (indices * 8)[:replay.batch_size]]
        return replay.hits(outputs, _sequence(world, labels, wrap, injector))
    elif what == "backward":
        replay.backward(index(j), _operand(world, seed, injector))
    elif what == "batch_size":
        return replay.batch_size
    elif what == "threads":                        # any number gives the same bits
        replay.threads = index(j)
        return replay.threads
    elif what == "params":
        return [p.data for p in replay.params]
    elif what == "layers":                         # the core's own grouping of neurons
        if world.is_core:
            info = replay._layers_info()
            # (a recorded replay groups two neurons or more; layered() keeps
            # a layer of one neuron as it is given)
            assert all(size >= 1 for size in info["sizes"]), info
    else:
        pickle.dumps(replay)
    return None


# -- every public callable and property of the core, and the steps that use it -------------

ACTIONS = {
    "Value.__init__": ["leaf", "reinit"], "Value.item": ["inspect"],
    "Value.__lt__": ["inspect"], "Value.__le__": ["inspect"], "Value.__gt__": ["inspect"],
    "Value.__ge__": ["inspect"], "Value.__eq__": ["inspect"], "Value.__ne__": ["inspect"],
    "Value.__hash__": ["inspect"], "Value.data": ["forward", "inspect"],
    "Value.grad": ["grad", "assign_backward"], "Value.label": ["label"],
    "Value.__add__": ["binary"], "Value.__radd__": ["binary"], "Value.__sub__": ["binary"],
    "Value.__rsub__": ["binary"], "Value.__mul__": ["binary"], "Value.__rmul__": ["binary"],
    "Value.__truediv__": ["binary"], "Value.__rtruediv__": ["binary"], "Value.__pow__": ["binary"],
    "Value.__rpow__": ["binary"], "Value.__neg__": ["unary"], "Value.__abs__": ["unary"],
    "Value.relu": ["unary"], "Value.abs": ["unary"],
    **{f"Value.{name}": ["unary"] for name in FUNCTION_NAMES},
    "Value.backward": ["backward"], "Value.forward": ["forward"], "Value.detach": ["inspect"],
    "Value.__repr__": ["inspect"], "Value.__reduce__": ["inspect"], "Value._prev": ["inspect"],
    "Value._children": ["inspect", "assign_backward"], "Value._op": ["inspect"],
    "Value._rule": ["inspect", "gradients"], "Value._backward": ["inspect", "assign_backward"],
    "Value._local_backward": ["inspect"], "Value._gradients_of": ["gradients"],
    "Value._gradient_values": ["gradients"], "Value._derivatives": ["gradients"],
    "Value._uses": ["gradients"],
    "_ieee_div": ["gradients"], "_ieee_pow": ["gradients"], "_ieee_log": ["gradients"],
    "Block.__init__": ["block_make"], "Block.__len__": ["block_use"], "Block.__iter__": ["block_use"],
    "Block.__reduce__": ["block_use"], "Block.data": ["block_use"], "Block.grad": ["block_use"],
    "Block.set_data": ["block_use"], "Block.zero_grad": ["block_use"], "Block.sgd_step": ["block_use"],
    "Block.momentum_step": ["block_use"], "Block.adam_step": ["block_use"],
    "Block.clip_grad_norm": ["block_use"],
    "Replay.__init__": ["replay_make", "layer"], "Replay.__reduce__": ["replay_use"],
    "Replay.load": ["replay_use"], "Replay.forward": ["replay_use"], "Replay.values": ["replay_use"],
    "Replay.sum": ["replay_use"], "Replay.argmax": ["replay_use"], "Replay.hits": ["replay_use"],
    "Replay.backward": ["replay_use"], "Replay.batch_size": ["replay_use"],
    "Replay.threads": ["replay_use"], "Replay._layers_info": ["replay_use"],
    "Replay.layered": ["layered"], "Replay.params": ["replay_use", "layered"],
    "Function.__init__": ["function_make"], "Function.__call__": ["function"],
    "Function.__reduce__": ["function_make"], "Function.__repr__": ["function_make"],
    "Function.forward": ["function_make"], "Function.name": ["function_make"],
    "Function.partials": ["function_make"],
    "no_grad.__enter__": ["no_grad"], "no_grad.__exit__": ["no_grad"],
    "enable_grad.__enter__": ["no_grad"], "enable_grad.__exit__": ["no_grad"],
    "function": ["function_make"], "vsum": ["vsum"], "dot": ["dot"], "dense": ["dense"],
    "logsumexp": ["logsumexp"], "is_grad_enabled": ["no_grad"], "collect": ["num:compact"],
    "check_arena": ["after every step"], "arena_info": ["noise"], "_batch_kernels": ["num:kernels"],
    "_layer_min_work": ["num:kernels"],
    "_float_rows": ["float_rows"], "_in_creation_order": ["gradients"], "_restore": ["inspect"],
}

# not operations: what every class has, and Cython's internals
NOT_ACTIONS = {"__doc__", "__new__", "__module__", "__dict__", "__weakref__", "__pyx_vtable__",
               "__array_ufunc__", "__setstate__", "__setstate_cython__", "__reduce_cython__",
               "__init_subclass__", "__qualname__"}


def core_surface(core):
    """Every callable and property the core's module gives Python, by name."""
    names = []
    for name, obj in vars(core).items():
        if name.startswith("__") or isinstance(obj, types.ModuleType):
            continue
        if isinstance(obj, type):
            if name.startswith("_"):               # _Custom: a record with no methods
                assert not [m for m in vars(obj) if m not in NOT_ACTIONS], name
                continue
            names += [f"{name}.{member}" for member in vars(obj) if member not in NOT_ACTIONS]
        elif callable(obj):
            names.append(name)
    return sorted(names)


def test_the_fuzz_uses_every_public_callable_and_property_of_the_core(core):
    missing = [name for name in core_surface(core) if name not in ACTIONS]
    assert not missing, f"the re-entrancy fuzz has no action for: {', '.join(missing)}"
    stale = [name for name in ACTIONS if name not in core_surface(core)]
    assert not stale, f"ACTIONS names what the core no longer has: {stale}"
    for name, steps in ACTIONS.items():
        for step in steps:
            assert (step in STEP_WEIGHTS or step[4:] in NUM_ACTIONS and step.startswith("num:")
                    or step in ("after every step", "noise")), (name, step)


# -- running it ----------------------------------------------------------------------------

def _plain(x):
    """A step's result as plain data, floats as bits (any NaN as one: where
    two NaNs meet in one operation IEEE 754 leaves open which comes out)."""
    if isinstance(x, float):
        return "nan" if x != x else _bits(x)
    if isinstance(x, (list, tuple)):
        return [_plain(y) for y in x]
    return x


def _same(x, y):
    """Bitwise equal; two NaNs count as equal whatever their sign (see _plain).
    With one NaN in, the bits must match: tests/test_reentrancy.py checks
    that op by op."""
    return _bits(x) == _bits(y) or (x != x and y != y)


def compare(worlds, seed, step_no, step):
    fast, slow = worlds[0].values, worlds[1].values
    where = f"seed {seed}, step {step_no} {step!r}"
    assert len(fast) == len(slow), where
    for i, (f, s) in enumerate(zip(fast, slow)):
        assert _same(f.data, s.data), f"{where}: data of value {i}: {f.data!r} vs {s.data!r}"
        assert _same(f.grad, s.grad), f"{where}: grad of value {i}: {f.grad!r} vs {s.grad!r}"
        assert f.label == s.label and type(f.label) is type(s.label) is str, f"{where}: label of value {i}"
        assert f._op == s._op, f"{where}: op of value {i}: {f._op!r} vs {s._op!r}"
    for (a, *_), (b, *_) in zip(worlds[0].blocks, worlds[1].blocks):
        assert [_plain(x) for x in a.data] == [_plain(x) for x in b.data], f"{where}: a Block"
    for (a, _), (b, _) in zip(worlds[0].replays, worlds[1].replays):
        assert a.batch_size == b.batch_size, f"{where}: a Replay's batch"


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
    kernels, min_work = engines[0]._batch_kernels(), engines[0]._layer_min_work()
    try:
        yield make
    finally:
        stop_timer_signal(old_handler)
        gc.callbacks.remove(gc_callback)
        gc.set_threshold(*threshold)
        engines[0]._batch_kernels(kernels)
        engines[0]._layer_min_work(min_work)
        for injector in made:
            injector.enabled = False


def run_program(engines, injector, seed, steps, weights=STEP_WEIGHTS):
    """Run `steps` random steps on both engines; return how many steps of
    each kind completed without an exception."""
    core, pure = engines
    rng = random.Random(seed)
    worlds = [World(core), World(pure)]
    completed = {}
    injector.enabled = True
    try:
        for step_no in range(steps):
            step = draw_step(rng, len(worlds[0].values), weights)
            outcomes = [apply_step(world, step, injector) for world in worlds]
            (error, got), (other_error, want) = outcomes
            where = f"seed {seed}, step {step_no} {step!r}"
            assert error == other_error, f"{where}: {error} vs {other_error}"
            assert _plain(got) == _plain(want), f"{where}: {got!r} vs {want!r}"
            core.check_arena()
            compare(worlds, seed, step_no, step)
            if error is None:
                completed[step[0]] = completed.get(step[0], 0) + 1
    finally:
        injector.enabled = False
    return completed


@pytest.mark.parametrize("seed", SEEDS)
def test_random_programs_with_code_reentering_the_engines(engines, injection_points, seed):
    injector = injection_points(seed)
    run_program(engines, injector, seed, STEPS)
    assert injector.failures == [], injector.failures[:5]
    assert injector.count > 0
    engines[0].check_arena()


def test_every_kind_of_step_runs_to_completion_somewhere(engines, injection_points):
    # a step kind that always raised would check nothing: each must complete
    # (the long chains are left to the test above: they take the time here)
    weights = {**STEP_WEIGHTS, "chain": 0}
    completed = {}
    for seed in range(2):
        for kind, count in run_program(engines, injection_points(1000 + seed), 1000 + seed,
                                       500 if QUICK else 1000, weights).items():
            completed[kind] = completed.get(kind, 0) + count
    never = [kind for kind, weight in weights.items() if weight and kind not in completed]
    assert not never, f"these steps never completed: {never}"
