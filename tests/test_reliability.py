"""Long runs, very deep graphs, threads, interrupts, and a stateful fuzz of
the arena against the pure reference."""
import gc
import math
import os
import random
import signal
import sys
import threading
import time

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from helpers import examples, is_core, python_handles_sigint, same_float


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")



def _micrograd_demo_model(Value, sizes):
    """micrograd's nn.py model, as users write it, over the given Value."""

    def neuron(nin, nonlin):
        return {"w": [Value(random.uniform(-1, 1)) for _ in range(nin)], "b": Value(0), "nonlin": nonlin}

    layers, nin = [], 2
    for i, nout in enumerate(sizes):
        layers.append([neuron(nin, i != len(sizes) - 1) for _ in range(nout)])
        nin = nout

    def forward(x):
        for layer in layers:
            out = []
            for n in layer:
                act = sum((wi * xi for wi, xi in zip(n["w"], x)), n["b"])
                out.append(act.relu() if n["nonlin"] else act)
            x = out
        return x[0]

    params = [p for layer in layers for n in layer for p in n["w"] + [n["b"]]]
    return forward, params


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RSS from /proc")
def test_memory_stays_flat_over_a_long_training_loop_without_the_cyclic_gc(engine):
    from autograd.data import make_moons
    random.seed(0)
    X, y = make_moons(100, seed=0)
    # the pure engine is ~30x slower: a smaller model and fewer steps there
    sizes, steps, early = ([16, 16, 1], 2000, 200) if is_core(engine) else ([8, 1], 300, 30)
    forward, params = _micrograd_demo_model(engine.Value, sizes)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        marks = {}
        for step in range(steps):
            inputs = [list(map(engine.Value, row)) for row in X]
            scores = list(map(forward, inputs))
            losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
            total = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in params)
            for p in params:
                p.grad = 0
            total.backward()
            for p in params:
                p.data -= 0.05 * p.grad
            if step + 1 in (early, steps):
                del inputs, scores, losses, total
                nodes = engine.arena_info()["nodes"] if is_core(engine) else None
                marks[step + 1] = (_rss(), nodes)
    finally:
        if gc_was_enabled:
            gc.enable()
    (rss_early, nodes_early), (rss_late, nodes_late) = marks[early], marks[steps]
    assert rss_late <= rss_early * 1.05, (rss_early, rss_late)
    if is_core(engine):
        assert nodes_late <= nodes_early * 1.05 + 64
    assert all(math.isfinite(p.data) for p in params)


def test_chain_ten_million_deep(engine):
    # 10^7 on the compiled core; the pure engine (some 200 bytes and 1 us a node)
    # takes the same path at 10^6
    depth = 10 ** 7 if is_core(engine) else 10 ** 6
    x = engine.Value(0.25)
    y = x
    for _ in range(depth):
        y = y.relu()
    y.backward()
    assert x.grad == 1.0 and y.data == 0.25
    x.data = 0.75
    assert y.forward().data == 0.75
    x.data = -1.0
    assert y.forward().data == 0.0
    y.backward()
    assert x.grad == 1.0           # the relu chain is now flat: no new contribution
    del y
    gc.collect()
    assert x.data == -1.0


def test_one_leaf_used_a_million_times(engine):
    x = engine.Value(1.5)
    total = x
    for _ in range(10 ** 6 - 1):
        total = total + x
    total.backward()
    assert x.grad == 10 ** 6
    wide = engine.vsum([x] * 10 ** 6)
    x.grad = 0.0
    wide.backward()
    assert x.grad == 10 ** 6
    del total, wide
    gc.collect()


def test_threads_sharing_leaves_sum_their_gradients_exactly(engine):
    leaves = [engine.Value(float(k % 7) - 3.0) for k in range(50)]
    errors = []
    n_threads, rounds = 8, 20

    def work(t):
        try:
            for r in range(rounds):
                coeffs = [float((t + 1) * (k + r + 1) % 11) for k in range(len(leaves))]
                y = engine.vsum(c * leaf for c, leaf in zip(coeffs, leaves))
                y = y * 1.0 + (leaves[0] * 0.0)
                y.backward()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors
    for k, leaf in enumerate(leaves):
        expected = sum(float((t + 1) * (k + r + 1) % 11) for t in range(n_threads) for r in range(rounds))
        if k == 0:
            expected += 0.0 * n_threads * rounds
        assert leaf.grad == expected


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to itself")
def test_ctrl_c_interrupts_a_long_backward_promptly(engine):
    depth = 3 * 10 ** 6 if is_core(engine) else 2 * 10 ** 5
    x = engine.Value(0.5)
    y = x
    for _ in range(depth):
        y = y.tanh()
    sent = []

    def interrupt():
        time.sleep(0.3)
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=interrupt)
    with python_handles_sigint():
        timer.start()
        deadline = time.perf_counter() + 20
        with pytest.raises(KeyboardInterrupt):
            while time.perf_counter() < deadline:
                y.backward()
        caught = time.perf_counter()
        timer.join()
    assert caught - sent[0] < 0.5
    # the arena is usable afterwards: the same graph still gives the right gradient
    x.grad = 0.0
    y.backward()
    expected = 1.0
    v = y
    while v._children:
        (child,) = v._children
        expected *= 1 - v.data ** 2
        v = child
    assert x.grad == pytest.approx(expected, rel=1e-9)
    assert (x * 2 + 1).data == 2.0


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to itself")
def test_ctrl_c_during_train_keeps_the_model_usable(engine):
    from autograd.data import make_moons
    from autograd.nn import MLP
    from autograd.train import train
    random.seed(0)
    X, y = make_moons(100, seed=0)
    model = MLP(2, [16, 16, 1], engine=engine)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    with python_handles_sigint():
        timer.start()
        start = time.perf_counter()
        # train() stops after the step under way and returns what it did
        interrupted = train(model, X, y, steps=10 ** 6, lr=0.01, loss="hinge", progress=False)
        assert interrupted.interrupted and 0 < len(interrupted.loss) < 10 ** 6
        assert time.perf_counter() - start < 0.3 + 0.5
        timer.join()
    assert all(math.isfinite(p.data) for p in model.parameters())
    history = train(model, X, y, steps=3, lr=0.01, loss="hinge", progress=False)
    assert len(history.loss) == 3


# -- a stateful fuzz: the compiled arena against the pure reference ------------------------

class ArenaAgainstReference(RuleBasedStateMachine):
    """Interleave creating, dropping, forward(), backward() and compaction; the
    two engines must agree on every live Value, bit for bit."""

    def __init__(self):
        super().__init__()
        import autograd.core as core
        import autograd.pure as pure
        self.core, self.pure = core, pure
        self.pairs = []

    @initialize(xs=st.lists(st.floats(-3, 3), min_size=2, max_size=4))
    def leaves(self, xs):
        self.pairs = [(self.core.Value(x), self.pure.Value(x)) for x in xs]

    @rule(x=st.floats(-3, 3))
    def new_leaf(self, x):
        self.pairs.append((self.core.Value(x), self.pure.Value(x)))

    @rule(i=st.integers(0, 10 ** 6), j=st.integers(0, 10 ** 6),
          op=st.sampled_from(["add", "sub", "mul", "tanh", "relu", "sigmoid", "vsum", "dot", "const"]))
    def combine(self, i, j, op):
        (fa, pa), (fb, pb) = self.pairs[i % len(self.pairs)], self.pairs[j % len(self.pairs)]
        make = {
            "add": lambda E, a, b: a + b, "sub": lambda E, a, b: a - b, "mul": lambda E, a, b: a * b,
            "tanh": lambda E, a, b: (a * 0.5).tanh(), "relu": lambda E, a, b: (a - b).relu(),
            "sigmoid": lambda E, a, b: b.sigmoid(), "vsum": lambda E, a, b: E.vsum([a, b, 1.0, a]),
            "dot": lambda E, a, b: E.dot([a, b], [b, 0.5], a), "const": lambda E, a, b: 2.0 * a - 1,
        }[op]
        self.pairs.append((make(self.core, fa, fb), make(self.pure, pa, pb)))

    @precondition(lambda self: len(self.pairs) > 2)
    @rule(i=st.integers(0, 10 ** 6))
    def drop(self, i):
        del self.pairs[i % len(self.pairs)]

    @rule(i=st.integers(0, 10 ** 6), junk=st.integers(0, 3000))
    def garbage_below(self, i, junk):
        fa, _ = self.pairs[i % len(self.pairs)]
        kept = [fa * 1.5 for _ in range(junk)]
        del kept

    @rule()
    def compact(self):
        self.core.collect()

    @rule(i=st.integers(0, 10 ** 6))
    def backward(self, i):
        fa, pa = self.pairs[i % len(self.pairs)]
        fa.backward()
        pa.backward()

    @rule(i=st.integers(0, 10 ** 6), x=st.floats(-3, 3), k=st.integers(0, 10 ** 6))
    def set_leaf_and_forward(self, i, x, k):
        leaf_f, leaf_p = self.pairs[k % len(self.pairs)]
        if leaf_f._op == "":
            leaf_f.data = leaf_p.data = x
        fa, pa = self.pairs[i % len(self.pairs)]
        fa.forward()
        pa.forward()

    @invariant()
    def arena_is_sound(self):
        self.core.check_arena()

    @invariant()
    def agree(self):
        for fa, pa in self.pairs:
            assert same_float(fa.data, pa.data)
            assert same_float(fa.grad, pa.grad)
            assert fa._op == pa._op
            assert [c.data for c in fa._children] == [c.data for c in pa._children]


def test_arena_fuzz_against_the_reference(engines):
    ArenaAgainstReference.TestCase.settings = settings(max_examples=examples(60), stateful_step_count=40,
                                                       deadline=None)
    ArenaAgainstReference.TestCase().runTest()
