"""One full-batch step of micrograd's moons demo, three ways."""
import random

import pytest

from autograd.data import make_moons
from autograd.nn import MLP
from autograd.train import train


def _micrograd_style_model(Value):
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


def _demo_step(Value, model, X, y):
    """micrograd demo.ipynb's loss() and update, as written there."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * sum((p * p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    for p in model.parameters():
        p.grad = 0
    total_loss.backward()
    for p in model.parameters():
        p.data -= 0.01 * p.grad
    return total_loss.data


X, Y = make_moons(n_samples=100, noise=0.1, seed=1337)


def _peer_values():
    peers = {}
    try:
        from micrograd.engine import Value as MicrogradValue
        peers["micrograd"] = MicrogradValue
    except ImportError:
        pass
    return peers


@pytest.mark.benchmark(group="moons step: micrograd's model code, import changed")
@pytest.mark.parametrize("who", ["cython", "python", "micrograd"])
def test_micrograd_demo_code(benchmark, who):
    if who == "micrograd":
        Value = _peer_values().get("micrograd")
        if Value is None:
            pytest.skip("micrograd is not installed (pip install 'mini-autograd[bench]')")
    else:
        Value = pytest.importorskip("autograd.core" if who == "cython" else "autograd.pure").Value
    model = _micrograd_style_model(Value)
    benchmark.pedantic(_demo_step, args=(Value, model, X, Y), rounds=20 if who == "cython" else 3,
                       warmup_rounds=1)


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


@pytest.mark.benchmark(group="moons step: train() replaying the static graph")
def test_train_replay_step(benchmark, engine):
    random.seed(1337)
    model = MLP(2, [16, 16, 1], engine=engine)
    steps = 50 if engine.__name__ == "autograd.core" else 5
    benchmark.pedantic(train, args=(model, X, Y),
                       kwargs=dict(steps=steps, lr=0.01, loss="hinge", reg=1e-4, progress=False),
                       rounds=5)
    benchmark.extra_info["steps_per_round"] = steps
