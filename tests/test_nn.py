"""autograd.nn: micrograd's classes, fused neurons, saving parameters."""
import math
import pickle
import random

import pytest

from autograd.nn import MLP, Layer, Neuron, softmax


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


# -- sizes are checked before any work ------------------------------------------------------

@pytest.mark.parametrize("make, error, message", [
    (lambda e: MLP(0, [1], engine=e), ValueError, r"MLP\(\): nin must be at least 1, not 0"),
    (lambda e: MLP(-1, [1], engine=e), ValueError, r"MLP\(\): nin must be at least 1, not -1"),
    (lambda e: MLP(2, [], engine=e), ValueError, r"MLP\(\): nouts must hold at least one layer size, not \[\]"),
    (lambda e: MLP(2, [0], engine=e), ValueError, r"MLP\(\): nouts\[0\] must be at least 1, not 0"),
    (lambda e: MLP(2, [4, -3, 1], engine=e), ValueError, r"MLP\(\): nouts\[1\] must be at least 1, not -3"),
    (lambda e: MLP(2.5, [1], engine=e), TypeError, r"MLP\(\): nin must be an int, not float \(2.5\)"),
    (lambda e: MLP(True, [1], engine=e), TypeError, r"MLP\(\): nin must be an int, not bool \(True\)"),
    (lambda e: MLP("3", [1], engine=e), TypeError, r"MLP\(\): nin must be an int, not str \('3'\)"),
    (lambda e: MLP(2, [4, 2.0], engine=e), TypeError, r"MLP\(\): nouts\[1\] must be an int, not float \(2.0\)"),
    (lambda e: MLP(2, 3, engine=e), TypeError, r"MLP\(\): nouts must be a sequence of ints \(one per layer\), "
                                               r"not int \(3\)"),
    (lambda e: MLP(2, "31", engine=e), TypeError, r"nouts must be a sequence of ints.*not str \('31'\)"),
    (lambda e: MLP(2, [1], activation="swish", engine=e), ValueError, r"MLP\(\): unknown activation 'swish'"),
    (lambda e: MLP(2, [1], engine="fortran"), ValueError, r"unknown engine 'fortran'"),
    (lambda e: MLP(2, [1], seed=1.5, engine=e), TypeError,
     r"MLP\(\): seed must be None, an int or a random.Random, not float \(1.5\)"),
    (lambda e: Layer(2, 0, engine=e), ValueError, r"Layer\(\): nout must be at least 1, not 0"),
    (lambda e: Layer(0, 2, engine=e), ValueError, r"Layer\(\): nin must be at least 1, not 0"),
    (lambda e: Layer(2, True, engine=e), TypeError, r"Layer\(\): nout must be an int, not bool \(True\)"),
    (lambda e: Layer(2, 2, activation="swish", engine=e), ValueError, r"Layer\(\): unknown activation 'swish'"),
    (lambda e: Layer(2, 2, nonlinear=False, engine=e), TypeError,
     r"Layer\(\) got an unexpected keyword argument 'nonlinear'"),
    (lambda e: Neuron(0, engine=e), ValueError, r"Neuron\(\): nin must be at least 1, not 0"),
    (lambda e: Neuron(None, engine=e), TypeError, r"Neuron\(\): nin must be an int, not NoneType \(None\)"),
    (lambda e: Neuron(2, seed="7", engine=e), TypeError, r"Neuron\(\): seed must be None, an int"),
])
def test_bad_sizes_are_refused_before_any_work(engine, make, error, message):
    random.seed(11)
    state = random.getstate()
    with pytest.raises(error, match=message):
        make(engine)
    assert random.getstate() == state          # no weight was drawn


def test_numpy_integers_are_sizes(engine):
    np = pytest.importorskip("numpy")
    model = MLP(np.int64(3), [np.int32(4), np.uint8(1)], engine=engine, seed=np.int64(5))
    assert model.nin == 3 and type(model.nin) is int
    assert [len(layer.neurons) for layer in model.layers] == [4, 1]
    assert len(Neuron(np.int16(2), engine=engine).w) == 2
    assert model.num_parameters() == 3 * 4 + 4 + 4 + 1


# -- seeds ----------------------------------------------------------------------------------

def test_a_seed_gives_the_same_weights_as_random_seed_and_leaves_random_alone(engine):
    random.seed(21)
    before = random.random()
    random.seed(21)
    a = MLP(3, [4, 4, 2], engine=engine, seed=42)
    assert random.random() == before            # the global generator was not used
    b = MLP(3, [4, 4, 2], engine=engine, seed=42)
    c = MLP(3, [4, 4, 2], engine=engine, seed=43)
    random.seed(42)
    d = MLP(3, [4, 4, 2], engine=engine)        # micrograd's way, the same numbers
    data = [p.data for p in a.parameters()]
    assert data == [p.data for p in b.parameters()] == [p.data for p in d.parameters()]
    assert data != [p.data for p in c.parameters()]
    assert len(set(data)) > len(data) // 2      # one generator over every layer and neuron
    assert MLP(2, [2], seed=random.Random(7), engine=engine).state_dict() == \
        MLP(2, [2], seed=7, engine=engine).state_dict()


def test_layer_and_neuron_seeds(engine):
    layer = Layer(3, 2, seed=5, engine=engine)
    assert [p.data for p in layer.parameters()] == [p.data for p in Layer(3, 2, seed=5, engine=engine).parameters()]
    assert layer.neurons[0].w[0].data != layer.neurons[1].w[0].data   # one generator for the layer
    rng = random.Random(5)
    assert [w.data for w in Neuron(3, seed=5, engine=engine).w] == [rng.uniform(-1, 1) for _ in range(3)]


# -- summary, num_parameters, output and outputs --------------------------------------------

def test_summary_is_a_table_of_the_layers(engine):
    model = MLP(2, [16, 16, 1], engine=engine, seed=0)
    assert model.summary() == "\n".join([
        "layer  inputs  outputs  activation  parameters",
        "----------------------------------------------",
        "0           2       16  relu                48",
        "1          16       16  relu               272",
        "2          16        1  linear              17",
        "----------------------------------------------",
        "total parameters: 337"])
    big = MLP(784, [512, 10], activation="tanh", engine=engine, seed=0).summary().splitlines()
    assert big[2].split() == ["0", "784", "512", "tanh", "401,920"]
    assert big[-1] == "total parameters: 407,050"
    assert model.num_parameters() == 337 == len(model.parameters())
    assert Neuron(5, engine=engine).num_parameters() == 6 and Layer(2, 3, engine=engine).num_parameters() == 9


def test_output_and_outputs_are_the_call_with_precise_types(engine):
    one = MLP(2, [3, 1], engine=engine, seed=1)
    many = MLP(2, [3, 2], engine=engine, seed=1)
    x = [0.5, -0.25]
    assert one.output(x).data == one(x).data and [v.data for v in one.outputs(x)] == [one(x).data]
    assert [v.data for v in many.outputs(x)] == [v.data for v in many(x)]
    with pytest.raises(ValueError, match="output\\(\\) is for a model with one output; this one has 2"):
        many.output(x)
    layer = Layer(2, 1, engine=engine, seed=1)
    assert layer.output(x).data == layer(x).data and len(Layer(2, 3, engine=engine).outputs(x)) == 3
    with pytest.raises(ValueError, match="output\\(\\) is for a layer of one neuron; this one has 3"):
        Layer(2, 3, engine=engine).output(x)


def test_a_hidden_layer_of_one_neuron(engine):
    """The next layer takes a one-neuron layer's Value as a list of one."""
    model = MLP(2, [1, 2], engine=engine, seed=3)
    x = [0.5, 2.0]
    hidden = model.layers[0](x)
    out = model(x)
    assert [v.data for v in out] == [v.data for v in model.layers[1]([hidden])]


# -- Value subclasses ---------------------------------------------------------------------

def test_values_of_a_subclass_are_inputs(engine):
    """The micrograd lecture subclasses Value; its instances are Values to a model."""
    class Input(engine.Value):
        pass

    model = MLP(2, [3, 1], engine=engine, seed=4)
    xs = [Input(0.5), Input(-1.5)]
    out = model(xs)
    assert out.data == model([0.5, -1.5]).data
    out.backward()
    assert any(x.grad != 0.0 for x in xs)
    assert Neuron(2, engine=engine, seed=4)(xs).data == Neuron(2, engine=engine, seed=4)([0.5, -1.5]).data
    assert [p.data for p in softmax(xs)] == [p.data for p in softmax([0.5, -1.5])]


def test_engine_of_finds_the_engine_of_a_subclass(engine):
    from autograd.engine import engine_of

    class Param(engine.Value):
        pass

    class Deeper(Param):
        pass

    assert engine_of(engine.Value(1.0)) is engine
    assert engine_of(Param(1.0)) is engine and engine_of(Deeper(2.0)) is engine
    with pytest.raises(TypeError, match="engine_of\\(\\) takes a Value of autograd.core or autograd.pure, "
                                        "not builtins.float"):
        engine_of(1.0)


def test_train_with_parameters_of_a_value_subclass(engine):
    from autograd.nn import Module
    from autograd.train import train

    class Param(engine.Value):
        pass

    class Line(Module):
        def __init__(self):
            self.slope, self.offset = Param(0.5), Param(0.0)

        def __call__(self, x):
            return self.slope * x[0] + self.offset

        def parameters(self):
            return [self.slope, self.offset]

    model = Line()
    history = train(model, [[1.0], [2.0], [3.0]], [2.0, 4.0, 6.0], steps=200, lr=0.05, progress=False)
    assert history.loss[-1] < 1e-3 < history.loss[0]
    assert model.slope.data == pytest.approx(2.0, abs=0.05) and type(model.slope) is Param


@pytest.mark.parametrize("make, kind", [(lambda e: MLP(2, [3, 1], engine=e), "MLP"),
                                        (lambda e: Layer(2, 3, engine=e), "Layer"),
                                        (lambda e: Neuron(2, engine=e), "Neuron")])
@pytest.mark.parametrize("x", [lambda: [1.0], lambda: [1.0, 2.0, 3.0], lambda: (v for v in [0.5])],
                         ids=["short", "long", "iterator"])
def test_a_sample_of_the_wrong_width_is_refused_naming_the_model(engine, make, kind, x):
    model = make(engine)
    with pytest.raises(ValueError, match=rf"^this {kind} takes 2 inputs per sample, not [13]$"):
        model(x())
    assert model([0.5, engine.Value(-1.0)]) is not None       # the right width still works
