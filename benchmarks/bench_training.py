"""One full-batch step of micrograd's moons demo: MLP(2, [16, 16, 1]), ReLU,
hinge loss + 1e-4 L2, 100 samples."""
import random

import pytest

from autograd.data import make_moons
from autograd.nn import MLP
from autograd.train import train
from peers import backward, data_of, update, value_factory, zero_grads

X, Y = make_moons(n_samples=100, noise=0.1, seed=1337)
MOONS_BATCHED = "moons step, full batch: train() replaying one sample's graph over the batch, and batched peers"


def micrograd_model(Value):
    """micrograd's own nn.py model code, over the given Value type."""

    class Neuron:
        def __init__(self, nin, nonlin=True):
            self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
            self.b = Value(0)
            self.nonlin = nonlin

        def __call__(self, x):
            act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
            return act.relu() if self.nonlin else act

        def parameters(self):
            return self.w + [self.b]

    class Layer:
        def __init__(self, nin, nout, **kwargs):
            self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

        def __call__(self, x):
            out = [n(x) for n in self.neurons]
            return out[0] if len(out) == 1 else out

        def parameters(self):
            return [p for n in self.neurons for p in n.parameters()]

    class MLP_:
        def __init__(self, nin, nouts):
            sz = [nin] + nouts
            self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1) for i in range(len(nouts))]

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

        def parameters(self):
            return [p for layer in self.layers for p in layer.parameters()]

    random.seed(1337)
    return MLP_(2, [16, 16, 1])


def demo_step(who, Value, model):
    """micrograd demo.ipynb's loss() and update, as written there."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(Y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * sum((p * p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    zero_grads(who, model.parameters())
    backward(who, total_loss)
    update(who, model.parameters(), 0.01)
    return data_of(who, total_loss)


@pytest.mark.benchmark(group="moons step: micrograd's model code, import changed")
def test_micrograd_demo_code(benchmark, who):
    Value = value_factory(who)
    model = micrograd_model(Value)
    rounds = {"cython": 20, "python": 3, "micrograd": 2, "torch": 2}[who]
    benchmark.pedantic(demo_step, args=(who, Value, model), rounds=rounds, warmup_rounds=1)
    benchmark.extra_info.update(units=1, unit="step")


@pytest.mark.benchmark(group="moons step: nn.MLP with fused neurons, graph rebuilt")
def test_fused_mlp_step(benchmark, engine):
    random.seed(1337)
    model = MLP(2, [16, 16, 1], engine=engine)

    def step():
        scores = [model(x) for x in X]
        data_loss = engine.vsum([(1 + -yi * s).relu() for yi, s in zip(Y, scores)]) * (1.0 / len(Y))
        total = data_loss + 1e-4 * engine.vsum(p * p for p in model.parameters())
        model.zero_grad()
        total.backward()
        for p in model.parameters():
            p.data -= 0.01 * p.grad

    benchmark(step)
    benchmark.extra_info.update(units=1, unit="step")


@pytest.mark.benchmark(group=MOONS_BATCHED)
def test_train_replay_step(benchmark, engine):
    random.seed(1337)
    model = MLP(2, [16, 16, 1], engine=engine)
    steps = 200 if engine.__name__ == "autograd.core" else 5   # the per-call set-up amortized
    benchmark.pedantic(train, args=(model, X, Y),
                       kwargs=dict(steps=steps, lr=0.01, loss="hinge", reg=1e-4, progress=False),
                       rounds=5)
    benchmark.extra_info.update(units=steps, unit="step")


@pytest.mark.benchmark(group=MOONS_BATCHED)
def test_torch_batched_step(benchmark):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[bench]')")
    torch.set_num_threads(1)
    torch.manual_seed(1337)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
                                torch.nn.ReLU(), torch.nn.Linear(16, 1)).double()
    xs = torch.tensor(X, dtype=torch.float64)
    ys = torch.tensor(Y, dtype=torch.float64)
    params = list(model.parameters())

    def step():
        scores = model(xs).squeeze(1)
        loss = torch.relu(1 - ys * scores).mean() + 1e-4 * sum((p * p).sum() for p in params)
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= 0.01 * p.grad
        return loss.item()

    benchmark(step)
    benchmark.extra_info.update(units=1, unit="step")


def _moons_init(seed=1337):
    """MLP(2, [16, 16, 1]) weights drawn as nn.MLP draws them (uniform in [-1, 1])."""
    rng = random.Random(seed)
    sizes = [2, 16, 16, 1]
    return [([[rng.uniform(-1, 1) for _ in range(sizes[i])] for _ in range(sizes[i + 1])],
             [0.0] * sizes[i + 1]) for i in range(3)]


@pytest.mark.benchmark(group=MOONS_BATCHED)
def test_numpy_step(benchmark):
    np = pytest.importorskip("numpy", reason="numpy is not installed (pip install '.[bench]')")
    layers = [(np.array(w), np.array(b)) for w, b in _moons_init()]
    xs, ys = np.array(X, dtype=np.float64), np.array(Y, dtype=np.float64)

    def step():
        acts, pre = [xs], []
        for i, (w, b) in enumerate(layers):
            z = acts[-1] @ w.T + b
            pre.append(z)
            acts.append(np.maximum(z, 0.0) if i < 2 else z)
        margin = 1 - ys * acts[-1][:, 0]
        loss = np.maximum(margin, 0.0).mean() + 1e-4 * sum((w * w).sum() + (b * b).sum()
                                                            for w, b in layers)
        d = (-(ys * (margin > 0)) / len(ys))[:, None]
        for i in (2, 1, 0):
            w, b = layers[i]
            if i < 2:
                d = d * (pre[i] > 0)
            dw, db = d.T @ acts[i] + 2e-4 * w, d.sum(axis=0) + 2e-4 * b
            d = d @ w
            w -= 0.01 * dw
            b -= 0.01 * db
        return float(loss)

    benchmark(step)
    benchmark.extra_info.update(units=1, unit="step")


@pytest.mark.benchmark(group=MOONS_BATCHED)
def test_jax_step(benchmark):
    jax = pytest.importorskip("jax", reason="JAX is not installed (pip install '.[bench]')")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    params = [(jnp.array(w, dtype=jnp.float64), jnp.array(b, dtype=jnp.float64)) for w, b in _moons_init()]
    xs, ys = jnp.array(X, dtype=jnp.float64), jnp.array(Y, dtype=jnp.float64)

    def loss(params):
        h = xs
        for i, (w, b) in enumerate(params):
            h = h @ w.T + b
            if i < 2:
                h = jnp.maximum(h, 0.0)
        data = jnp.maximum(1 - ys * h[:, 0], 0.0).mean()
        return data + 1e-4 * sum((w * w).sum() + (b * b).sum() for w, b in params)

    @jax.jit
    def step(params):
        value, grads = jax.value_and_grad(loss)(params)
        return value, [(w - 0.01 * gw, b - 0.01 * gb) for (w, b), (gw, gb) in zip(params, grads)]

    state = [params]
    step(params)[0].block_until_ready()         # compile outside the timing

    def run():
        value, state[0] = step(state[0])
        return float(value)

    benchmark(run)
    benchmark.extra_info.update(units=1, unit="step")


FUSED_C = r"""
#include <string.h>
/* One full-batch moons step, hand-fused: forward, hinge + L2, backward, SGD.
   w: 2x16 + 16, 16x16 + 16, 16 + 1 (row-major weights, then biases). */
double step(double* p, const double* x, const double* y, int n, double lr, double reg) {
    double *w1 = p, *b1 = w1 + 32, *w2 = b1 + 16, *b2 = w2 + 256, *w3 = b2 + 16, *b3 = w3 + 16;
    double g[337], h1[16], h2[16], d2[16], d1[16], loss = 0.0;
    memset(g, 0, sizeof g);
    double *gw1 = g, *gb1 = gw1 + 32, *gw2 = gb1 + 16, *gb2 = gw2 + 256, *gw3 = gb2 + 16, *gb3 = gw3 + 16;
    for (int s = 0; s < n; s++) {
        const double* xi = x + 2 * s;
        for (int j = 0; j < 16; j++) {
            double a = b1[j] + w1[2 * j] * xi[0] + w1[2 * j + 1] * xi[1];
            h1[j] = a > 0 ? a : 0;
        }
        for (int j = 0; j < 16; j++) {
            double a = b2[j];
            for (int k = 0; k < 16; k++) a += w2[16 * j + k] * h1[k];
            h2[j] = a > 0 ? a : 0;
        }
        double out = b3[0];
        for (int k = 0; k < 16; k++) out += w3[k] * h2[k];
        double margin = 1 - y[s] * out;     /* the full backward for every sample, */
        loss += margin > 0 ? margin : 0;      /* as the other engines do             */
        double dout = margin > 0 ? -y[s] / n : 0.0;
        gb3[0] += dout;
        for (int k = 0; k < 16; k++) { gw3[k] += dout * h2[k]; d2[k] = h2[k] > 0 ? dout * w3[k] : 0; }
        memset(d1, 0, sizeof d1);
        for (int j = 0; j < 16; j++) {
            gb2[j] += d2[j];
            for (int k = 0; k < 16; k++) { gw2[16 * j + k] += d2[j] * h1[k]; d1[k] += d2[j] * w2[16 * j + k]; }
        }
        for (int j = 0; j < 16; j++) {
            double d = h1[j] > 0 ? d1[j] : 0;
            gb1[j] += d; gw1[2 * j] += d * xi[0]; gw1[2 * j + 1] += d * xi[1];
        }
    }
    double l2 = 0.0;
    for (int i = 0; i < 337; i++) { l2 += p[i] * p[i]; p[i] -= lr * (g[i] + 2 * reg * p[i]); }
    return loss / n + reg * l2;
}
"""


@pytest.mark.benchmark(group=MOONS_BATCHED)
def test_fused_c_step(benchmark, tmp_path):
    import ctypes
    import shutil
    import subprocess
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler to build the fused C step")
    (tmp_path / "moons.c").write_text(FUSED_C)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp_path / "moons.so"),
                    str(tmp_path / "moons.c")], check=True)
    lib = ctypes.CDLL(str(tmp_path / "moons.so"))
    lib.step.restype = ctypes.c_double
    lib.step.argtypes = [ctypes.POINTER(ctypes.c_double)] * 3 + [ctypes.c_int, ctypes.c_double,
                                                                 ctypes.c_double]
    flat = [v for w, b in _moons_init() for v in [x for row in w for x in row] + b]
    params = (ctypes.c_double * len(flat))(*flat)
    xs = (ctypes.c_double * (2 * len(X)))(*[v for row in X for v in row])
    ys = (ctypes.c_double * len(Y))(*Y)
    benchmark(lib.step, params, xs, ys, len(Y), 0.01, 1e-4)
    benchmark.extra_info.update(units=1, unit="step")
