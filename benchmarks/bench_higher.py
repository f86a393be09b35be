"""Derivatives of derivatives, on one 20-input function:

    f(x) = sum_i tanh(x_i * x_(i+1)) + log(1 + sum_i x_i**2) + sum_i sigmoid(x_i) * x_i

- gradients() without create_graph against backward() on the same graph;
- a Hessian-vector product (the gradient of grad(f) . v) against a gradient;
- the full 20 x 20 Hessian: this project's hessian(), PyTorch's
  torch.autograd.functional.hessian (one thread, float64) and JAX's jit(hessian).
"""
import math
import random

import pytest

N = 20
POINT = [random.Random(0).uniform(-1.0, 1.0) for _ in range(N)]
V = [random.Random(1).uniform(-1.0, 1.0) for _ in range(N)]


def _engine(who):
    if who == "cython":
        return pytest.importorskip("autograd.core", reason="the compiled core is not built")
    import autograd.pure
    return autograd.pure


def f_values(E, x):
    n = len(x)
    pairs = E.vsum([(x[i] * x[i + 1]).tanh() for i in range(n - 1)])
    squares = E.vsum([xi * xi for xi in x])
    return pairs + (squares + 1.0).log() + E.vsum([xi.sigmoid() * xi for xi in x])


def f_float(x):
    pairs = sum(math.tanh(x[i] * x[i + 1]) for i in range(N - 1))
    return pairs + math.log(1.0 + sum(v * v for v in x)) + sum(v / (1.0 + math.exp(-v)) for v in x)


@pytest.mark.parametrize("who", ["cython", "python"])
@pytest.mark.parametrize("how", ["backward", "gradients"])
def test_first_derivatives(benchmark, who, how):
    """Build f, then its gradient: with backward() or with gradients()."""
    E = _engine(who)
    from autograd.higher import gradients
    benchmark.group = f"gradient of a 20-input function: build, then {how}"

    def run():
        x = [E.Value(p) for p in POINT]
        out = f_values(E, x)
        if how == "backward":
            out.backward()
            return [v.grad for v in x]
        return [g.data for g in gradients(out, x)]
    grads = benchmark(run)
    assert len(grads) == N
    benchmark.extra_info.update(units=1, unit="gradient")


@pytest.mark.parametrize("who", ["cython", "python"])
def test_hessian_vector_product(benchmark, who):
    E = _engine(who)
    from autograd.higher import gradients
    benchmark.group = "Hessian-vector product of a 20-input function (gradient of grad(f) . v)"

    def run():
        x = [E.Value(p) for p in POINT]
        first = gradients(f_values(E, x), x, create_graph=True)
        return [h.data for h in gradients(E.dot(first, V), x)]
    hv = benchmark(run)
    assert len(hv) == N
    benchmark.extra_info.update(units=1, unit="product")


def _torch_hessian():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[bench]')")
    torch.set_num_threads(1)

    def f(x):
        pairs = sum(torch.tanh(x[i] * x[i + 1]) for i in range(N - 1))
        return pairs + torch.log(1.0 + sum(x[i] * x[i] for i in range(N))) + \
            sum(torch.sigmoid(x[i]) * x[i] for i in range(N))
    x = torch.tensor(POINT, dtype=torch.float64)
    return lambda: torch.autograd.functional.hessian(f, x).tolist()


def _jax_hessian():
    jax = pytest.importorskip("jax", reason="JAX is not installed (pip install jax)")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def f(x):
        return jnp.sum(jnp.tanh(x[:-1] * x[1:])) + jnp.log(1.0 + jnp.sum(x * x)) + \
            jnp.sum(jax.nn.sigmoid(x) * x)
    hess = jax.jit(jax.hessian(f))
    x = jnp.array(POINT, dtype=jnp.float64)
    hess(x).block_until_ready()                     # compile outside the timing
    return lambda: hess(x).block_until_ready().tolist()


def _our_hessian(who):
    E = _engine(who)
    from autograd.higher import gradients

    def run():
        x = [E.Value(p) for p in POINT]
        first = gradients(f_values(E, x), x, create_graph=True)
        return [[h.data for h in gradients(g, x)] for g in first]
    return run


@pytest.mark.parametrize("who", ["cython", "python", "torch", "jax"])
def test_full_hessian(benchmark, who):
    benchmark.group = "full Hessian of a 20-input function"
    run = {"torch": _torch_hessian, "jax": _jax_hessian}.get(who, lambda: _our_hessian(who))()
    H = benchmark(run)
    h = 1e-5                                        # one entry, against finite differences
    up, down = list(POINT), list(POINT)
    up[3] += h
    down[3] -= h
    up2, down2 = list(up), list(down)
    up2[4] += h
    down2[4] -= h
    up3, down3 = list(up), list(down)
    up3[4] -= h
    down3[4] += h
    numeric = (f_float(up2) - f_float(up3) - f_float(down3) + f_float(down2)) / (4 * h * h)
    assert H[3][4] == pytest.approx(numeric, rel=1e-4, abs=1e-6)
    benchmark.extra_info.update(units=1, unit="Hessian")
