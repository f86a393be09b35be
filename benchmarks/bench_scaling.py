"""Scaling: one SGD step of MNIST-sized MLPs, this project's batched replay
(1 and 2 threads) against a hand-written numpy float64 step (matmuls through
BLAS, limited to one thread where threadpoolctl is installed).

The same step everywhere: MLP(nin, hidden + [10]), ReLU, softmax
cross-entropy, the mean over a batch of synthetic samples, plain SGD.
Each benchmark records its GFLOP/s (6 * batch * weights per step: forward,
weight gradients, input gradients) in extra_info.
"""
import contextlib
import math
import random
from array import array

import pytest

GRID = [(64, [32], 32), (256, [128], 128), (784, [128], 32), (784, [512], 128), (784, [512], 512),
        (784, [512, 512], 512)]


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
    random.seed(0)
    model = MLP(nin, hidden + [10], activation="relu", engine=core)
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


def _numpy_step(nin, hidden, batch):
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    sizes = [nin] + hidden + [10]
    ws = [rng.uniform(-1, 1, (b, a)) / math.sqrt(a) for a, b in zip(sizes, sizes[1:])]
    bs = [np.zeros(b) for b in sizes[1:]]
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


@pytest.mark.parametrize("nin, hidden, batch", GRID,
                         ids=[f"{n}-{'-'.join(map(str, h))}-10-B{b}" for n, h, b in GRID])
@pytest.mark.parametrize("who", ["cython", "cython-2-threads", "numpy"])
def test_scaling_step(benchmark, who, nin, hidden, batch):
    """who: the compiled core on 1 thread ("cython", the report's column) or
    2, or numpy with BLAS on 1 thread."""
    benchmark.group = f"MNIST-width step, MLP({nin}, {hidden + [10]}), batch {batch}"
    benchmark.extra_info.update(units=1, unit="step")
    if who == "numpy":
        step = _numpy_step(nin, hidden, batch)
        with _one_blas_thread():
            benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    else:
        step = _ours_step(nin, hidden, batch, 2 if who == "cython-2-threads" else 1)
        benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.min > 0:
        benchmark.extra_info["gflops"] = _flops(nin, hidden, batch) / stats.stats.min / 1e9
