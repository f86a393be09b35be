"""The replay's layers: neurons that read the same inputs, run together by
blocked kernels on up to Replay.threads threads, with the same bits as the
neurons one by one, on both engines, for any number of threads."""
import gc
import os
import random
import signal
import struct
import threading
import time
from array import array

import pytest

import autograd.pure
from autograd.nn import MLP
from autograd.train import default_threads, train
from helpers import check_arena, is_core

BIG = (60, [64, 7], 160)    # enough multiply-adds per layer for the kernels to start threads
# (with the threshold lowered, below, for tests: 2e6 per thread by default)


@pytest.fixture(autouse=True)
def _threads_for_small_layers():
    """Layers of these tests' sizes start threads as MNIST-sized ones do."""
    try:
        import autograd.core as core
    except ImportError:
        yield
        return
    before = core._layer_min_work()
    core._layer_min_work(200_000)
    yield
    core._layer_min_work(before)


def _bits(numbers):
    return struct.pack(f"{len(numbers)}d", *numbers)


_GLOBAL_RANDOM = threading.Lock()       # tests that build models on several threads take turns


def _replayed(engine, nin, sizes, batch, threads=1, seed=3, between=None):
    """An MLP's loss and outputs replayed over a batch, one backward; returns
    (every output per sample, every parameter's grad, the Replay)."""
    with _GLOBAL_RANDOM:                # MLP draws its weights from the global generator
        random.seed(seed)
        model = MLP(nin, sizes, engine=engine)
    xs = [engine.Value(0.0) for _ in range(nin)]
    out = model(xs)
    outs = out if isinstance(out, list) else [out]
    loss = engine.logsumexp(outs) - outs[0] if len(outs) > 1 else outs[0] * outs[0]
    params = model.parameters()
    replay = engine.Replay([loss] + outs, inputs=xs, params=params)
    replay.threads = threads
    rng = random.Random(seed + 1)
    replay.load(array("d", [rng.uniform(-2, 2) for _ in range(nin * (batch + 3))]),
                [rng.randrange(batch + 3) for _ in range(batch)])
    if between is not None:
        between()
    replay.forward()
    for p in params:
        p.grad = 0.25
    if between is not None:
        between()
    replay.backward(0, 1.0 / batch)
    values = [x for j in range(len(outs) + 1) for x in replay.values(j)]
    return values, [p.grad for p in params], replay


# the last: sample and input blocks that fit the L2 cache (layer_kernels.h's
# lk_block) end inside a tile, with tails of neurons, inputs and samples
SHAPES = [(3, [4, 1], 5), (7, [9, 6, 3], 13), (16, [17, 10], 33), (5, [8, 8, 8, 2], 8),
          (1, [5, 5], 1), (12, [4], 9), BIG, (300, [21, 11], 130)]


@pytest.mark.parametrize("nin, sizes, batch", SHAPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kernels", ["avx512", "avx2", "baseline"])
def test_layers_give_the_neurons_bits_on_both_engines(engines, nin, sizes, batch, threads, kernels):
    core, pure = engines
    before = core._batch_kernels()
    try:
        if core._batch_kernels(kernels) != kernels:
            pytest.skip(f"this CPU cannot run the {kernels} build")
        want_values, want_grads, _ = _replayed(pure, nin, sizes, batch)
        values, grads, replay = _replayed(core, nin, sizes, batch, threads)
    finally:
        core._batch_kernels(before)
    assert _bits(values) == _bits(want_values)
    assert _bits(grads) == _bits(want_grads)
    # every hidden layer of an MLP is one layer of the replay (a single
    # output neuron is not a layer: nothing to group)
    assert replay._layers_info()["sizes"] == [n for n in sizes if n > 1]
    check_arena(core)


def test_the_big_layer_really_runs_on_the_threads_it_is_given(core):
    for threads in (1, 2, 3):
        *_, replay = _replayed(core, *BIG, threads=threads)
        assert replay._layers_info()["threads_used"] == threads


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_runs_layers_on_threads_of_its_own(core):
    """The layer threads are a pool kept between calls; a child process made
    by fork() (after the parent used the pool) starts its own, and gets the
    same bits."""
    want = _replayed(core, *BIG, threads=3)
    assert want[2]._layers_info()["threads_used"] == 3
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                # the child: never returns into pytest
        status = 1
        try:
            values, grads, replay = _replayed(core, *BIG, threads=3)
            ok = (_bits(values) == _bits(want[0]) and _bits(grads) == _bits(want[1])
                  and replay._layers_info()["threads_used"] == 3)
            os.write(write, b"same" if ok else b"differ")
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    deadline = time.monotonic() + 120          # a child waiting on the parent's threads hangs
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not finish its layers in 120 s")
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read()
    status = done[1]
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and said == b"same"


def test_the_parameters_move_between_steps(engines):
    # a compaction moves the parameters' nodes: the replay reads and writes
    # them where they are now (its runs of indices are made again)
    core, pure = engines
    garbage = []

    def compact():
        garbage.clear()
        core.collect()

    want = _replayed(pure, 9, [6, 2], 11)[:2]
    garbage.extend(core.Value(float(k)) for k in range(5000))
    got = _replayed(core, 9, [6, 2], 11, between=compact)[:2]
    assert _bits(got[0]) == _bits(want[0]) and _bits(got[1]) == _bits(want[1])
    check_arena(core)


EXPECTED_LAYERS = {"shared weight": [], "input read between": [2, 2], "input twice": [2],
                   "weights not parameters": [], "computed weight": [2]}


@pytest.mark.parametrize("case", sorted(EXPECTED_LAYERS))
def test_neurons_run_as_a_layer_only_where_the_bits_stay_the_same(engines, case):
    """Four neurons over three hidden values (which need gradients, so the
    order of their contributions matters); where a rule of layers.pxi does
    not hold, the neurons run one by one.  The bits are the pure engine's."""
    results = []
    for engine in engines:
        xs = [engine.Value(0.0) for _ in range(3)]
        scales = [engine.Value(0.5 + 0.25 * k) for k in range(3)]
        hidden = [(s * x).tanh() for s, x in zip(scales, xs)]
        ws = [[engine.Value(0.1 * (k + 3 * j) - 0.4) for k in range(3)] for j in range(4)]
        bs = [engine.Value(0.05 * j) for j in range(4)]
        if case == "shared weight":
            ws[2][1] = ws[1][1]
        outs = []
        for j in range(4):
            row, ins = ws[j], hidden
            if case == "input twice" and j == 1:
                ins = [hidden[0], hidden[0], hidden[2]]
            elif case == "computed weight" and j == 2:
                row = [row[0] * 1.0] + row[1:]
            outs.append(engine.dot(row, ins, bs[j]).tanh())
            if case == "input read between" and j == 1:
                outs.append(hidden[1] * 3.0)
        loss = engine.vsum(outs)
        weights = [] if case == "weights not parameters" else [w for row in ws for w in row]
        params = list(dict.fromkeys(scales + weights + bs))
        replay = engine.Replay([loss] + outs, inputs=xs, params=params)
        replay.load(array("d", [0.3, -1.2, 2.0, 1.5, 0.25, -0.75]), [0, 1, 1, 0, 1])
        replay.forward()
        for p in params:
            p.grad = 0.0
        replay.backward(0, 0.5)
        results.append((_bits([x for j in range(len(outs) + 1) for x in replay.values(j)]),
                        _bits([p.grad for p in params])))
        if is_core(engine):
            assert replay._layers_info()["sizes"] == EXPECTED_LAYERS[case]
    assert results[0] == results[1]


def test_backward_from_an_output_below_some_neurons_of_a_layer(engines):
    # the sweep from output j reaches only the neurons below it: a layer adds
    # nothing for the others (not even w * 0, which would turn -0.0 into 0.0)
    results = []
    for engine in engines:
        xs = [engine.Value(0.0), engine.Value(0.0)]
        ws = [[engine.Value(1.5), engine.Value(-2.0)], [engine.Value(float("inf")), engine.Value(0.5)]]
        bs = [engine.Value(0.0), engine.Value(0.0)]
        first = engine.dot(ws[0], xs, bs[0])
        second = engine.dot(ws[1], xs, bs[1])
        params = ws[0] + ws[1] + bs
        replay = engine.Replay([first, second], inputs=xs, params=params)
        replay.load(array("d", [-0.0, 0.0]), [0])
        replay.forward()
        for p in params:
            p.grad = 0.0
        replay.backward(0, -1.0)
        results.append(_bits([p.grad for p in params]))
    assert results[0] == results[1]


def test_train_gives_the_same_bits_on_1_2_and_3_threads(engine):
    random.seed(11)
    rows = [[random.uniform(-1, 1) for _ in range(30)] for _ in range(160)]
    labels = [random.randrange(4) for _ in rows]
    runs = []
    for threads in (1, 2, 3):
        random.seed(5)
        model = MLP(30, [40, 4], engine=engine)
        history = train(model, rows, labels, steps=3, lr=0.1, loss="cross_entropy",
                        progress=False, threads=threads)
        runs.append((_bits(history.loss), _bits([p.data for p in model.parameters()])))
    assert runs[0] == runs[1] == runs[2]


def test_threads_are_checked(engine, monkeypatch):
    x = engine.Value(1.0)
    replay = engine.Replay([x * 2.0], inputs=[x], params=[])
    assert replay.threads == 1
    replay.threads = 3
    assert replay.threads == 3
    for bad, error in ((0, ValueError), (1025, ValueError), (2.0, TypeError), (True, TypeError),
                       ("2", TypeError)):
        with pytest.raises(error, match="threads must be"):
            replay.threads = bad
    assert replay.threads == 3
    with pytest.raises(ValueError, match="threads must be an int from 1 to 1024, not 0"):
        train(MLP(2, [1], engine=engine), [[0.0, 1.0]], [1.0], steps=1, lr=0.1, threads=0)
    monkeypatch.setenv("AUTOGRAD_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("AUTOGRAD_THREADS", "many")
    with pytest.raises(ValueError, match="AUTOGRAD_THREADS must be an int from 1 to 1024, not 'many'"):
        default_threads()
    monkeypatch.delenv("AUTOGRAD_THREADS")
    assert default_threads() >= 1


def test_two_python_threads_running_layers_at_once_get_their_own_bits(core):
    """The pool of layer threads serves one call at a time; a call made while
    another Python thread's holds it runs alone, with the same bits."""
    quiet = [_replayed(core, *BIG, threads=2, seed=seed)[:2] for seed in (3, 4)]
    results, errors = {}, []

    def run(seed):
        try:
            for _ in range(10):
                got = _replayed(core, *BIG, threads=2, seed=seed)[:2]
                results.setdefault(seed, set()).add((_bits(got[0]), _bits(got[1])))
        except Exception as exc:    # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(seed,)) for seed in (3, 4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    for seed, (values, grads) in zip((3, 4), quiet):
        assert results[seed] == {(_bits(values), _bits(grads))}


def test_python_threads_meanwhile_cannot_reach_the_busy_replay(core):
    """While the layer kernels run without the GIL, another thread creates and
    drops Values, compacts the arena and reads the Replay's outputs (refused
    while forward() runs): the replay's bits are those of a quiet run."""
    quiet = _replayed(core, *BIG, threads=2)[:2]
    random.seed(3)
    model = MLP(BIG[0], BIG[1], engine=core)
    xs = [core.Value(0.0) for _ in range(BIG[0])]
    out = model(xs)
    loss = core.logsumexp(out) - out[0]
    params = model.parameters()
    replay = core.Replay([loss] + out, inputs=xs, params=params)
    replay.threads = 2
    rng = random.Random(4)
    table = array("d", [rng.uniform(-2, 2) for _ in range(BIG[0] * (BIG[2] + 3))])
    rows = [rng.randrange(BIG[2] + 3) for _ in range(BIG[2])]
    replay.load(table, rows)
    stop, refused, seen, errors = threading.Event(), [], [], []

    def meddle():
        try:
            while not stop.is_set():
                junk = [core.Value(float(k)) * 2.0 for k in range(200)]
                del junk
                core.collect()
                try:                # read-only: refused only while forward() runs
                    seen.append(len(replay.values(0)))
                except RuntimeError as exc:
                    refused.append(str(exc))
        except Exception as exc:    # noqa: BLE001 - reported below
            errors.append(exc)

    other = threading.Thread(target=meddle)
    other.start()
    try:
        for _ in range(20):
            replay.forward()
            for p in params:
                p.grad = 0.25
            replay.backward(0, 1.0 / BIG[2])
    finally:
        stop.set()
        other.join()
    assert not errors, errors
    assert all("run forward() on the batch loaded first" in text for text in refused)
    assert set(seen) <= {BIG[2]}
    values = [x for j in range(len(out) + 1) for x in replay.values(j)]
    assert _bits(values) == _bits(quiet[0])
    assert _bits([p.grad for p in params]) == _bits(quiet[1])
    check_arena(core)
