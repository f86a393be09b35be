"""Scaling: one SGD step of MNIST-sized MLPs, this project's batched replay
(1 and 2 threads) against the same step written by hand in numpy (BLAS on
one thread), PyTorch (1 and 2 threads) and JAX (jit), with the machine's
float64 GEMM peak (one numpy matmul on one thread) measured in the same run.

The same step everywhere: MLP(nin, hidden + [10]), ReLU, softmax
cross-entropy, the mean over a batch of synthetic samples, plain SGD, in
float64.  Each benchmark records in extra_info its GFLOP/s (6 * batch *
weights per step: forward, weight gradients, input gradients) and that flop
count, which report.py draws (docs/images/scaling.png).  numpy's BLAS kernel is
recorded too: benchmarks/conftest.py unsets OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE (set on some machines, they slow OpenBLAS) before numpy is
imported, so the peer runs the kernel OpenBLAS picks for this CPU.
"""
import contextlib
import math
import os
import random
from array import array

import pytest

from conftest import OPENBLAS_UNSET

GRID = [(64, [32], 32), (64, [128], 128), (256, [128], 128), (784, [128], 32), (784, [512], 128),
        (784, [512], 512), (784, [512, 512], 512)]
WHO = ["cython", "cython-2-threads", "numpy", "torch", "torch-2-threads", "jax"]


def _flops(nin, hidden, batch):
    sizes = [nin] + hidden + [10]
    return 6.0 * batch * sum(a * b for a, b in zip(sizes, sizes[1:]))


def _data(nin, batch, seed=0):
    rng = random.Random(seed)
    rows = [[rng.uniform(-1, 1) for _ in range(nin)] for _ in range(batch)]
    return rows, [rng.randrange(10) for _ in range(batch)]


def _ours_step(nin, hidden, batch, threads):
    """A callable running one training step of the compiled core's replay."""
    core = pytest.importorskip("autograd.core", reason="the compiled core is not built")
    from autograd.nn import MLP
    model = MLP(nin, hidden + [10], activation="relu", engine=core)
    for layer, (w, b) in zip(model.layers, _init(nin, hidden)):
        for neuron, row, bias in zip(layer.neurons, w, b):
            for p, x in zip(neuron.w, row):
                p.data = x
            neuron.b.data = bias
    xs = [core.Value(0.0) for _ in range(nin)]
    label = [core.Value(0.0) for _ in range(10)]
    out = model(xs)
    loss = core.logsumexp(out) - core.dot(label, out)
    params = model.parameters()
    replay = core.Replay([loss], inputs=xs + label, params=params)
    replay.threads = threads
    rows, labels = _data(nin, batch)
    table = array("d")
    for row, y in zip(rows, labels):
        table.extend(row)
        table.extend(1.0 if k == y else 0.0 for k in range(10))
    replay.load(table, range(batch))
    block = core.Block(params)

    def step():
        replay.forward()
        block.zero_grad()
        replay.backward(0, 1.0 / batch)
        block.sgd_step(0.01)
    step.replay = replay
    return step


@contextlib.contextmanager
def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:             # numpy's BLAS then uses what it is given
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _blas_kernel():
    """numpy's BLAS and the kernel it runs (threadpoolctl's report), and what
    was unset for it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl is not installed)"
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture', '?')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    unset = f"; unset for it: {', '.join(OPENBLAS_UNSET)}" if OPENBLAS_UNSET else ""
    return (", ".join(blas) or "none found") + unset


def _init(nin, hidden, seed=0):
    """The same starting weights for every peer: (w, b) per layer, w as rows
    of inputs (out x in), uniform in +-1/sqrt(in), b zero."""
    rng = random.Random(seed)
    sizes = [nin] + hidden + [10]
    return [([[rng.uniform(-1, 1) / math.sqrt(a) for _ in range(a)] for _ in range(b)], [0.0] * b)
            for a, b in zip(sizes, sizes[1:])]


def _numpy_step(nin, hidden, batch):
    np = pytest.importorskip("numpy")
    layers = _init(nin, hidden)
    ws, bs = [np.array(w) for w, _ in layers], [np.array(b) for _, b in layers]
    rows, labels = _data(nin, batch)
    x0, y = np.array(rows), np.array(labels)

    def step():
        acts = [x0]
        for k, (w, b) in enumerate(zip(ws, bs)):
            z = acts[-1] @ w.T + b
            acts.append(np.maximum(z, 0.0) if k < len(ws) - 1 else z)
        z = acts[-1]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(batch), y] -= 1.0
        g = p / batch
        for k in range(len(ws) - 1, -1, -1):
            gw, gb = g.T @ acts[k], g.sum(axis=0)
            if k:
                g = (g @ ws[k]) * (acts[k] > 0.0)
            ws[k] -= 0.01 * gw
            bs[k] -= 0.01 * gb
    return step


def _torch_step(nin, hidden, batch):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[bench]')")
    params = []
    for w, b in _init(nin, hidden):
        params += [torch.tensor(w, dtype=torch.float64, requires_grad=True),
                   torch.tensor(b, dtype=torch.float64, requires_grad=True)]
    rows, labels = _data(nin, batch)
    x0, y = torch.tensor(rows, dtype=torch.float64), torch.tensor(labels)
    cross_entropy = torch.nn.functional.cross_entropy

    def step():
        z = x0
        for k in range(0, len(params), 2):
            z = z @ params[k].T + params[k + 1]
            if k < len(params) - 2:
                z = z.relu()
        loss = cross_entropy(z, y)
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= 0.01 * p.grad
    return step


def _jax_step(nin, hidden, batch):
    jax = pytest.importorskip("jax", reason="JAX is not installed (pip install '.[bench]')")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    params = [(jnp.array(w, dtype=jnp.float64), jnp.array(b, dtype=jnp.float64))
              for w, b in _init(nin, hidden)]
    rows, labels = _data(nin, batch)
    x0, y = jnp.array(rows, dtype=jnp.float64), jnp.array(labels)

    def loss(params):
        z = x0
        for k, (w, b) in enumerate(params):
            z = z @ w.T + b
            if k < len(params) - 1:
                z = jnp.maximum(z, 0.0)
        logp = z - jax.scipy.special.logsumexp(z, axis=1, keepdims=True)
        return -jnp.mean(logp[jnp.arange(batch), y])

    @jax.jit
    def update(params):
        grads = jax.grad(loss)(params)
        return [(w - 0.01 * gw, b - 0.01 * gb) for (w, b), (gw, gb) in zip(params, grads)]

    state = [update(params)]
    state[0][0][0].block_until_ready()      # compiled outside the timing

    def step():
        state[0] = update(state[0])
        state[0][0][0].block_until_ready()
    return step


@contextlib.contextmanager
def _torch_threads(count):
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _record_gflops(benchmark, flops):
    stats = getattr(benchmark, "stats", None)
    benchmark.extra_info["flops"] = flops
    if stats is not None and stats.stats.min > 0:
        benchmark.extra_info["gflops"] = flops / stats.stats.min / 1e9


@pytest.mark.parametrize("nin, hidden, batch", GRID,
                         ids=[f"{n}-{'-'.join(map(str, h))}-10-B{b}" for n, h, b in GRID])
@pytest.mark.parametrize("who", WHO)
def test_scaling_step(benchmark, who, nin, hidden, batch):
    """who: the compiled core on 1 thread ("cython", the report's column) or
    2, numpy with BLAS on 1 thread, PyTorch on 1 or 2 threads, JAX jit."""
    benchmark.group = f"MNIST-width step, MLP({nin}, {hidden + [10]}), batch {batch}"
    benchmark.extra_info.update(units=1, unit="step")
    threads = 2 if who.endswith("-2-threads") else 1
    if who == "numpy":
        step = _numpy_step(nin, hidden, batch)
        benchmark.extra_info["blas"] = _blas_kernel()
        with _one_blas_thread():
            benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    elif who.startswith("torch"):
        step = _torch_step(nin, hidden, batch)
        with _torch_threads(threads):
            benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    elif who == "jax":
        benchmark.pedantic(_jax_step(nin, hidden, batch), rounds=5, warmup_rounds=1)
    else:
        benchmark.pedantic(_ours_step(nin, hidden, batch, threads), rounds=5, warmup_rounds=1)
    _record_gflops(benchmark, _flops(nin, hidden, batch))


def test_gemm_peak(benchmark):
    """The machine's float64 GEMM peak: one numpy matmul the size of the
    largest layer's forward (512 x 784 by 784 x 512, into a buffer made
    once), BLAS on one thread."""
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    a, b, c = rng.uniform(-1, 1, (512, 784)), rng.uniform(-1, 1, (784, 512)), np.empty((512, 512))
    benchmark.group = "float64 GEMM peak, 512 x 784 by 784 x 512, one thread"
    benchmark.extra_info.update(units=1, unit="matmul", blas=_blas_kernel())
    with _one_blas_thread():
        benchmark.pedantic(lambda: np.matmul(a, b, out=c), rounds=20, warmup_rounds=2)
    _record_gflops(benchmark, 2.0 * 512 * 784 * 512)


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm (Linux)")
@pytest.mark.parametrize("threads", [1, 2])
def test_resident_memory_is_flat_over_ten_thousand_steps(benchmark, threads):
    """No allocation per step: 10^4 steps of MLP(256, [128, 10]) at batch
    128 (the layer kernels, and with 2 threads their threads' start, in every
    step) leave the resident memory where 1,000 warm-up steps left it."""
    benchmark.group = "resident memory over 10^4 steps, MLP(256, [128, 10]), batch 128"
    step = _ours_step(256, [128], 128, threads)
    for _ in range(1000):
        step()
    assert step.replay._layers_info()["threads_used"] == threads
    before = _resident_bytes()

    def ten_thousand_steps():
        for _ in range(10_000):
            step()
    benchmark.pedantic(ten_thousand_steps, rounds=1, iterations=1)
    growth = _resident_bytes() - before
    benchmark.extra_info.update(units=10_000, unit="step", resident_growth_bytes=growth)
    assert growth < 64 * 1024, f"resident memory grew by {growth} bytes over 10^4 steps"


@pytest.mark.parametrize("batch", [128, 512])
@pytest.mark.parametrize("who", ["cython"])         # the report's compiled-core column
def test_train_setup_in_steps(benchmark, who, batch):
    """train()'s set-up (checking 2,048 MNIST-sized samples, a float64 numpy
    matrix and integer labels, making the replay from the model's layers and
    the optimizer's Block, the first step's fresh memory), in steps of the
    same model: train(steps=1) is benchmarked, and
    a step is (train(steps=9) - train(steps=1)) / 8, best of three, in the
    same process.  extra_info["setup_in_steps"] is the goal's number; the
    report shows train(steps=1)'s time."""
    np = pytest.importorskip("numpy")
    core = pytest.importorskip("autograd.core", reason="the compiled core is not built")
    import time
    from autograd.nn import MLP
    from autograd.train import train
    benchmark.group = f"train() set-up, MLP(784, [512, 10]), 2,048 samples, batch {batch}"
    benchmark.extra_info.update(units=1, unit="call")
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(-1, 1, (2048, 784)), rng.integers(0, 10, 2048)
    random.seed(0)
    model = MLP(784, [512, 10], engine=core)

    def run(steps):
        t = time.perf_counter()
        train(model, xs, ys, steps=steps, lr=1e-3, loss="cross_entropy", batch_size=batch,
              progress=False, threads=1)
        return time.perf_counter() - t
    benchmark.pedantic(run, args=(1,), rounds=5, warmup_rounds=1)
    one = min(run(1) for _ in range(3))
    step = (min(run(9) for _ in range(3)) - one) / 8
    benchmark.extra_info.update(step_seconds=step, setup_seconds=one - step,
                                setup_in_steps=(one - step) / step)
