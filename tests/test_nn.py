"""autograd.nn: micrograd's classes, fused neurons, saving parameters."""
import math
import pickle
import random

import pytest

from autograd.nn import MLP, Layer, Neuron


def _micrograd_mlp_forward(Value, weights, x):
    """micrograd's own Neuron/Layer/MLP arithmetic, written out over Value."""
    for layer_index, layer in enumerate(weights):
        last = layer_index == len(weights) - 1
        out = []
        for w, b in layer:
            act = sum((wi * xi for wi, xi in zip(w, x)), b)
            out.append(act if last else act.relu())
        x = out
    return x[0]


def test_micrograd_signatures_and_reprs(engine):
    random.seed(1)
    model = MLP(2, [3, 1], engine=engine)
    assert repr(model) == ("MLP of [Layer of [ReLUNeuron(2), ReLUNeuron(2), ReLUNeuron(2)], "
                           "Layer of [LinearNeuron(3)]]")
    assert len(model.parameters()) == 3 * 3 + 4
    assert repr(Neuron(3, nonlin=False, engine=engine)) == "LinearNeuron(3)"
    assert repr(Layer(2, 2, activation="tanh", engine=engine)) == "Layer of [TanhNeuron(2), TanhNeuron(2)]"
    assert all(p.data == 0.0 for p in [n.b for layer in model.layers for n in layer.neurons])
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        Neuron(2, activation="swish", engine=engine)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "linear"])
def test_activations(engine, activation):
    random.seed(2)
    n = Neuron(3, activation=activation, engine=engine)
    x = [0.5, -1.0, 2.0]
    pre = sum((w.data * xi for w, xi in zip(n.w, x)), n.b.data)
    expected = {"relu": max(0.0, pre), "tanh": math.tanh(pre),
                "sigmoid": 1 / (1 + math.exp(-pre)), "linear": pre}[activation]
    assert n(x).data == pytest.approx(expected, rel=1e-15)


def test_fused_mlp_matches_micrograd_arithmetic_bitwise(engine):
    random.seed(3)
    model = MLP(2, [16, 16, 1], engine=engine)
    weights = [[(n.w, n.b) for n in layer.neurons] for layer in model.layers]
    for x in ([0.3, -0.7], [1.5, 0.25], [-2.0, 0.0]):
        fused = model(x)
        plain = _micrograd_mlp_forward(engine.Value, weights, [engine.Value(v) for v in x])
        assert fused.data == plain.data
        model.zero_grad()
        fused.backward()
        fused_grads = [p.grad for p in model.parameters()]
        model.zero_grad()
        plain.backward()
        assert fused_grads == pytest.approx([p.grad for p in model.parameters()], rel=1e-12, abs=1e-300)


def test_parameters_and_named_parameters_agree(engine):
    random.seed(8)
    model = MLP(3, [4, 2, 1], engine=engine)
    named = model.named_parameters()
    assert [p for _, p in named] == model.parameters()
    assert len({name for name, _ in named}) == len(named) == 3 * 4 + 4 + 4 * 2 + 2 + 2 + 1
    assert named[-1][0] == "layers.2.neurons.0.b"


def test_an_mlp_asks_a_layer_of_its_own_class_for_its_parameters(engine):
    """MLP.parameters() reads a Layer's neurons directly (one list, no list
    per layer), but a layer of another class is asked, as micrograd does."""
    from autograd.nn import Layer

    class Frozen(Layer):            # trains no bias
        def parameters(self):
            return [w for n in self.neurons for w in n.w]

    random.seed(9)
    model = MLP(3, [4, 2], engine=engine)
    plain = [p for layer in model.layers for n in layer.neurons for p in n.w + [n.b]]
    assert model.parameters() == plain and all(a is b for a, b in zip(model.parameters(), plain))
    model.layers[0].__class__ = Frozen
    assert model.parameters() == [w for n in model.layers[0].neurons for w in n.w] + plain[16:]
    model.layers[0].__class__ = Layer
    model.layers[1].parameters = lambda: []     # an instance's own, as micrograd code may do
    assert model.parameters() == plain[:16]


def test_zero_grad(engine):
    random.seed(4)
    model = MLP(2, [2, 1], engine=engine)
    model([1.0, 2.0]).backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0 for p in model.parameters())


def test_state_dict_round_trip_across_engines(engines):
    core, pure = engines
    random.seed(5)
    a = MLP(3, [4, 1], engine=core)
    random.seed(99)
    b = MLP(3, [4, 1], engine=pure)
    state = a.state_dict()
    assert list(state)[:2] == ["layers.0.neurons.0.w.0", "layers.0.neurons.0.w.1"]
    b.load_state_dict(state)
    x = [0.1, 0.2, -0.3]
    assert a(x).data == b(x).data
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({k: v for k, v in list(state.items())[1:]})
    with pytest.raises(TypeError, match="must be a number"):
        b.load_state_dict({**state, "layers.1.neurons.0.b": "x"})
    assert a(x).data == b(x).data                  # a failed load changed nothing


def test_pickled_model_predicts_the_same(engine):
    random.seed(6)
    model = MLP(2, [4, 1], engine=engine)
    copy = pickle.loads(pickle.dumps(model))
    assert copy(model_input := [0.4, -0.2]).data == model(model_input).data
    copy.layers[0].neurons[0].w[0].data += 1.0
    assert model.layers[0].neurons[0].w[0].data != copy.layers[0].neurons[0].w[0].data


def test_copies_of_a_model(engine):
    import copy
    random.seed(9)
    model = MLP(2, [3, 1], engine=engine)
    x = [0.3, -0.8]
    deep = copy.deepcopy(model)
    assert deep(x).data == model(x).data
    deep.layers[0].neurons[0].b.data += 1.0            # independent parameters
    assert deep.layers[0].neurons[0].b.data != model.layers[0].neurons[0].b.data
    shallow = copy.copy(model)
    assert shallow.layers is model.layers               # a shallow copy shares them, as usual


def test_unchanged_micrograd_model_code_runs(engine):
    """micrograd's nn.py, verbatim but for the import of Value."""
    Value = engine.Value

    class Module:
        def zero_grad(self):
            for p in self.parameters():
                p.grad = 0

        def parameters(self):
            return []

    class MNeuron(Module):
        def __init__(self, nin, nonlin=True):
            self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
            self.b = Value(0)
            self.nonlin = nonlin

        def __call__(self, x):
            act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
            return act.relu() if self.nonlin else act

        def parameters(self):
            return self.w + [self.b]

    random.seed(7)
    n = MNeuron(2)
    out = n([1.0, -2.0])
    out.backward()
    assert out.data == max(0.0, n.w[0].data - 2 * n.w[1].data)
    assert n.b.grad == (1.0 if out.data > 0 else 0.0)
    n.zero_grad()
    assert n.w[0].grad == 0.0 and type(n.w[0].grad) is float
