"""One epoch on the handwritten digits: MLP(64, [32, 10]), ReLU, softmax
cross-entropy, SGD, mini-batches of 32 and of 256 (1,347 training images).

The same model and step on every engine, in float64: this project's train()
(which builds the batch's graph once and replays it), PyTorch on batched
tensors with one thread, a hand-written numpy forward and backward, and JAX
`jit` where it is installed.  This is the baseline the batched replay has to
beat.
"""
import math
import random

import pytest

from autograd.data import train_test_split

# Epochs per round: train() checks the data and records its graph once per
# call (about 5 ms here), so a round runs enough epochs for the per-epoch
# figure to be the training's, as in a real run; the pure engine runs one.
EPOCHS = 10


def _digits():
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[data]')")
    from autograd.data import load_digits
    X, y = load_digits()
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, seed=0)
    return X_train, y_train


def _init(seed=0):
    """Weights as nn.MLP draws them (uniform in [-1, 1]) scaled for 64 inputs."""
    rng = random.Random(seed)
    w1 = [[rng.uniform(-1, 1) / 8 for _ in range(64)] for _ in range(32)]
    w2 = [[rng.uniform(-1, 1) / math.sqrt(32) for _ in range(32)] for _ in range(10)]
    return w1, [0.0] * 32, w2, [0.0] * 10


def _batches(n, size, epochs, seed=0):
    rng = random.Random(seed)
    for _ in range(epochs):
        order = list(range(n))
        rng.shuffle(order)
        for start in range(0, n - size + 1, size):
            yield order[start:start + size]


def _ours(engine_name, X, y, batch, epochs):
    from autograd.nn import MLP
    from autograd.train import train
    random.seed(0)
    model = MLP(64, [32, 10], engine=engine_name)
    steps = epochs * (len(X) // batch)
    return lambda: train(model, X, y, steps=steps, lr=0.05, loss="cross_entropy", batch_size=batch,
                         optimizer="sgd", seed=0, progress=False)


def _numpy(X, y, batch, epochs):
    np = pytest.importorskip("numpy")
    w1, b1, w2, b2 = (np.array(a, dtype=np.float64) for a in _init())
    Xa, ya = np.array(X, dtype=np.float64), np.array(y)

    def run():
        nonlocal w1, b1, w2, b2
        for idx in _batches(len(X), batch, epochs):
            x, t = Xa[idx], ya[idx]
            h_pre = x @ w1.T + b1
            h = np.maximum(h_pre, 0.0)
            logits = h @ w2.T + b2
            shifted = logits - logits.max(axis=1, keepdims=True)
            p = np.exp(shifted)
            p /= p.sum(axis=1, keepdims=True)
            d_logits = p
            d_logits[np.arange(len(idx)), t] -= 1.0
            d_logits /= len(idx)
            d_w2, d_b2 = d_logits.T @ h, d_logits.sum(axis=0)
            d_h = (d_logits @ w2) * (h_pre > 0)
            d_w1, d_b1 = d_h.T @ x, d_h.sum(axis=0)
            w1 -= 0.05 * d_w1
            b1 -= 0.05 * d_b1
            w2 -= 0.05 * d_w2
            b2 -= 0.05 * d_b2
    return run


def _torch(X, y, batch, epochs):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[bench]')")
    torch.set_num_threads(1)
    w1, b1, w2, b2 = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in _init())
    params = [w1, b1, w2, b2]
    Xa, ya = torch.tensor(X, dtype=torch.float64), torch.tensor(y)

    def run():
        for idx in _batches(len(X), batch, epochs):
            x, t = Xa[idx], ya[idx]
            logits = torch.relu(x @ w1.T + b1) @ w2.T + b2
            loss = torch.nn.functional.cross_entropy(logits, t)
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= 0.05 * p.grad
    return run


def _jax(X, y, batch, epochs):
    jax = pytest.importorskip("jax", reason="JAX is not installed (pip install jax)")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    params = tuple(jnp.array(a, dtype=jnp.float64) for a in _init())
    Xa, ya = jnp.array(X, dtype=jnp.float64), jnp.array(y)

    def loss(params, x, t):
        w1, b1, w2, b2 = params
        logits = jnp.maximum(x @ w1.T + b1, 0.0) @ w2.T + b2
        logp = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
        return -jnp.mean(logp[jnp.arange(x.shape[0]), t])

    @jax.jit
    def step(params, x, t):
        grads = jax.grad(loss)(params, x, t)
        return tuple(p - 0.05 * g for p, g in zip(params, grads))

    state = [params]
    step(params, Xa[:batch], ya[:batch])[0].block_until_ready()      # compile outside the timing

    def run():
        for idx in _batches(len(X), batch, epochs):
            idx = jnp.array(idx)
            state[0] = step(state[0], Xa[idx], ya[idx])
        state[0][0].block_until_ready()
    return run


@pytest.mark.parametrize("batch", [32, 256])
@pytest.mark.parametrize("who", ["cython", "python", "numpy", "torch", "jax"])
def test_digits_epoch(benchmark, who, batch):
    benchmark.group = f"digits epoch, MLP(64, [32, 10]), cross-entropy, batch {batch}"
    X, y = _digits()
    epochs = 1 if who == "python" else EPOCHS
    if who in ("cython", "python"):
        if who == "cython":
            pytest.importorskip("autograd.core", reason="the compiled core is not built")
        run = _ours(who, X, y, batch, epochs)
    else:
        run = {"numpy": _numpy, "torch": _torch, "jax": _jax}[who](X, y, batch, epochs)
    rounds = 1 if who == "python" else 5
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0 if who == "python" else 1)
    benchmark.extra_info.update(units=epochs, unit="epoch")
