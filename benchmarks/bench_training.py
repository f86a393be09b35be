"""One full-batch step of micrograd's moons demo: MLP(2, [16, 16, 1]), ReLU,
hinge loss + 1e-4 L2, 100 samples."""
import random

import pytest

from autograd.data import make_moons
from autograd.nn import MLP
from autograd.train import train
from peers import backward, data_of, update, value_factory, zero_grads

X, Y = make_moons(n_samples=100, noise=0.1, seed=1337)


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


@pytest.mark.benchmark(group="moons step: train() replaying the static graph")
def test_train_replay_step(benchmark, engine):
    random.seed(1337)
    model = MLP(2, [16, 16, 1], engine=engine)
    steps = 50 if engine.__name__ == "autograd.core" else 5
    benchmark.pedantic(train, args=(model, X, Y),
                       kwargs=dict(steps=steps, lr=0.01, loss="hinge", reg=1e-4, progress=False),
                       rounds=5)
    benchmark.extra_info.update(units=steps, unit="step")


@pytest.mark.benchmark(group="moons step: PyTorch, batched tensors (reference)")
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
