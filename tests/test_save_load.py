"""autograd.save and autograd.load: JSON files of a model's parameters, its
architecture and an optimizer's state (both engines)."""
import json
import math
import os
import random
import struct

import pytest

import autograd
from autograd.nn import MLP, Layer, Module, Neuron
from autograd.persist import FORMAT, VERSION



def _bits(x):
    return struct.pack("<d", x)


def _engine_name(engine):
    return "cython" if engine.__name__ == "autograd.core" else "python"


class FakeOptimizer:
    """An optimizer as train() takes one, with state_dict() and load_state_dict()."""

    def __init__(self, lr=0.1):
        self.lr, self.t, self.moments = lr, 0, []

    def state_dict(self):
        return {"lr": self.lr, "t": self.t, "moments": list(self.moments)}

    def load_state_dict(self, state):
        if set(state) != {"lr", "t", "moments"}:
            raise ValueError(f"not a FakeOptimizer's state: {sorted(state)}")
        self.lr, self.t, self.moments = state["lr"], state["t"], list(state["moments"])


class OtherOptimizer(FakeOptimizer):
    pass


@pytest.mark.parametrize("make, nin", [
    (lambda e: MLP(3, [4, 4, 2], engine=e, seed=1), 3),
    (lambda e: MLP(2, [5, 1], activation="tanh", engine=e, seed=2), 2),
    (lambda e: MLP(2, [1], activation="gelu", engine=e, seed=3), 2),
    (lambda e: Layer(3, 2, activation="sigmoid", engine=e, seed=4), 3),
    (lambda e: Layer(3, 2, nonlin=False, engine=e, seed=4), 3),
    (lambda e: Neuron(4, activation="softplus", engine=e, seed=5), 4),
    (lambda e: Neuron(2, nonlin=False, engine=e, seed=5), 2),
], ids=["mlp", "mlp-tanh", "mlp-one-layer", "layer", "linear-layer", "neuron", "linear-neuron"])
def test_a_model_is_rebuilt_from_its_file(engines, tmp_path, make, nin):
    x = [0.5, -1.25, 2.0, 0.75][:nin]
    for engine in engines:
        model = make(engine)
        path = tmp_path / "model.json"
        autograd.save(model, path)
        for into in engines:                        # on either engine, the same bits
            copy = autograd.load(path, engine=into)
            assert type(copy) is type(model) and repr(copy) == repr(model)
            assert type(copy.parameters()[0]) is into.Value
            assert copy.state_dict() == model.state_dict()
            out, again = model(x), copy(x)
            outs = out if isinstance(out, list) else [out]
            agains = again if isinstance(again, list) else [again]
            assert [_bits(v.data) for v in outs] == [_bits(v.data) for v in agains]
        assert autograd.load(path).state_dict() == model.state_dict()       # the default engine


def test_the_rebuilt_model_uses_the_engine_asked_for(engine, tmp_path):
    path = tmp_path / "m.json"
    autograd.save(MLP(2, [2, 1], seed=0), path)
    model = autograd.load(path, engine=engine)
    assert model.layers[0].engine == _engine_name(engine)
    assert type(model.parameters()[0]) is engine.Value


def test_floats_round_trip_bit_for_bit(engine, tmp_path):
    model = MLP(2, [3, 1], engine=engine, seed=0)
    specials = [-0.0, 1e-308, 5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 1 / 3,
                -1e-320, 2.0 ** -1074 * 3, 123456789.12345678, 1.0]
    params = model.parameters()
    for p, x in zip(params, specials + [random.Random(1).uniform(-1, 1) for _ in params]):
        p.data = x
    path = tmp_path / "bits.json"
    autograd.save(model, path)
    copy = autograd.load(path, engine=engine)
    assert [_bits(p.data) for p in copy.parameters()] == [_bits(p.data) for p in params]
    into = MLP(2, [3, 1], engine=engine, seed=9)
    autograd.load(path, model=into)
    assert [_bits(p.data) for p in into.parameters()] == [_bits(p.data) for p in params]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_nan_or_infinite_parameter_is_refused_naming_it(engine, tmp_path, bad):
    model = MLP(2, [2, 1], engine=engine, seed=0)
    model.layers[1].neurons[0].w[1].data = bad
    path = tmp_path / "m.json"
    with pytest.raises(ValueError, match=f"parameter 'layers.1.neurons.0.w.1' is {bad!r}: a model with "
                                         "a NaN or infinite parameter is not saved"):
        autograd.save(model, path)
    assert not os.listdir(tmp_path)                 # no file, no temporary file


def test_the_file_is_json_with_a_format_and_a_version(engine, tmp_path):
    model = MLP(2, [2, 1], engine=engine, seed=0)
    path = tmp_path / "m.json"
    autograd.save(model, str(path))
    document = json.loads(path.read_text())
    assert document["format"] == FORMAT == "mini-autograd" and document["version"] == VERSION == 1
    assert document["architecture"] == {"class": "MLP", "nin": 2, "nouts": [2, 1], "activation": "relu"}
    assert document["parameters"] == model.state_dict() and document["optimizer"] is None
    assert list(document["parameters"]) == [name for name, _ in model.named_parameters()]


class Net(Module):
    """A user's model: two neurons of its own."""

    def __init__(self, engine, seed):
        self.a = Neuron(2, engine=engine, seed=seed)
        self.b = Neuron(1, nonlin=False, engine=engine, seed=seed + 1)

    def __call__(self, x):
        return self.b([self.a(x)])

    def named_parameters(self):
        return ([(f"a.{n}", p) for n, p in self.a.named_parameters()]
                + [(f"b.{n}", p) for n, p in self.b.named_parameters()])

    def parameters(self):
        return [p for _, p in self.named_parameters()]


def test_a_users_module_loads_into_a_given_model(engine, tmp_path):
    model = Net(engine, 1)
    path = tmp_path / "net.json"
    autograd.save(model, path)
    assert json.loads(path.read_text())["architecture"] is None
    other = Net(engine, 7)
    assert other.state_dict() != model.state_dict()
    assert autograd.load(path, model=other) is other
    assert other.state_dict() == model.state_dict()
    assert other([0.5, 1.0]).data == model([0.5, 1.0]).data
    with pytest.raises(ValueError, match="holds the parameters of a Net, which load\\(\\) cannot build: "
                                         "give a model to load them into"):
        autograd.load(path)


def test_a_changed_mlp_or_layer_is_saved_as_a_module(engine, tmp_path):
    """An MLP whose layer was replaced, or a Layer whose neuron was, is not
    what MLP(...) or Layer(...) builds: no architecture, and load() needs the model."""
    model = MLP(2, [3, 1], engine=engine, seed=0)
    model.layers[0] = Layer(2, 3, activation="tanh", engine=engine, seed=1)
    layer = Layer(2, 2, engine=engine, seed=0)
    layer.neurons[1] = Neuron(2, activation="sigmoid", engine=engine, seed=1)
    for changed in (model, layer):
        path = tmp_path / "m.json"
        autograd.save(changed, path)
        assert json.loads(path.read_text())["architecture"] is None
        with pytest.raises(ValueError, match="cannot build"):
            autograd.load(path)
        assert autograd.load(path, model=changed) is changed


def test_the_optimizer_state_round_trips(engine, tmp_path):
    model = MLP(2, [2, 1], engine=engine, seed=0)
    opt = FakeOptimizer(lr=0.05)
    opt.t, opt.moments = 3, [0.25, -0.0, 1e-300]
    path = tmp_path / "ckpt.json"
    autograd.save(model, path, optimizer=opt)
    fresh = FakeOptimizer()
    loaded = autograd.load(path, optimizer=fresh, engine=engine)
    assert fresh.state_dict() == opt.state_dict() and _bits(fresh.moments[1]) == _bits(-0.0)
    assert loaded.state_dict() == model.state_dict()
    assert autograd.load(path).state_dict() == model.state_dict()     # the optimizer part may be left


def test_optimizer_errors(engine, tmp_path):
    model = MLP(2, [2, 1], engine=engine, seed=0)
    path = tmp_path / "ckpt.json"
    autograd.save(model, path, optimizer=FakeOptimizer())
    target = MLP(2, [2, 1], engine=engine, seed=5)
    before = target.state_dict()
    with pytest.raises(TypeError, match="holds the state of an optimizer of class FakeOptimizer, not OtherOptimizer"):
        autograd.load(path, model=target, optimizer=OtherOptimizer())
    write_only = type("FakeOptimizer", (), {"state_dict": FakeOptimizer.state_dict})
    with pytest.raises(TypeError, match="the optimizer FakeOptimizer has no load_state_dict\\(\\)"):
        autograd.load(path, model=target, optimizer=write_only())
    plain = tmp_path / "plain.json"
    autograd.save(model, plain)
    with pytest.raises(ValueError, match="holds no optimizer state \\(it was saved without optimizer=\\)"):
        autograd.load(plain, model=target, optimizer=FakeOptimizer())

    class Refusing(FakeOptimizer):
        def load_state_dict(self, state):
            raise ValueError("refused")

    autograd.save(model, path, optimizer=Refusing())
    with pytest.raises(ValueError, match="refused"):
        autograd.load(path, model=target, optimizer=Refusing())
    assert target.state_dict() == before            # nothing changed
    with pytest.raises(TypeError, match="the optimizer int has no state_dict\\(\\)"):
        autograd.save(model, path, optimizer=3)

    class Unsaveable(FakeOptimizer):
        def state_dict(self):
            return {"buffer": object()}

    class NaNState(FakeOptimizer):
        def state_dict(self):
            return {"v": [math.nan]}

    autograd.save(model, path)
    text = path.read_text()
    with pytest.raises(TypeError, match="state_dict\\(\\) must be JSON data .*not JSON serializable"):
        autograd.save(model, path, optimizer=Unsaveable())
    with pytest.raises(ValueError, match="holds NaN or infinity"):
        autograd.save(model, path, optimizer=NaNState())
    assert path.read_text() == text                 # a failed save left the old file
    assert sorted(os.listdir(tmp_path)) == ["ckpt.json", "plain.json"]


def test_a_file_that_does_not_fit_the_model_names_the_parameter(engine, tmp_path):
    path = tmp_path / "m.json"
    autograd.save(MLP(2, [3, 1], engine=engine, seed=0), path)
    wider = MLP(2, [4, 1], engine=engine, seed=1)
    before = wider.state_dict()
    with pytest.raises(ValueError, match="does not fit this model: its MLP's nouts is \\[3, 1\\], "
                                         "this model's is \\[4, 1\\]"):
        autograd.load(path, model=wider)
    with pytest.raises(ValueError, match="does not fit this model: its MLP's activation is 'relu', "
                                         "this model's is 'tanh'"):
        autograd.load(path, model=MLP(2, [3, 1], activation="tanh", engine=engine))
    assert wider.state_dict() == before
    net = Net(engine, 1)
    with pytest.raises(ValueError, match="does not fit this model: it has no parameter 'a.w.0'"):
        autograd.load(path, model=net)
    autograd.save(net, path)
    with pytest.raises(ValueError, match="it has no parameter 'layers.0.neurons.0.w.0'"):
        autograd.load(path, model=MLP(2, [1, 1], engine=engine))

    class Smaller(Net):
        def named_parameters(self):
            return super().named_parameters()[:3]

    with pytest.raises(ValueError, match="does not fit this model: its parameter 'b.w.0' is not the model's"):
        autograd.load(path, model=Smaller(engine, 1))


def test_files_that_are_not_ours(tmp_path):
    missing = tmp_path / "nothing.json"
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        autograd.load(missing)
    cases = {
        "text.json": ("hello", "is not a Mini Autograd model file \\(not JSON: "),
        "list.json": ("[1, 2]", "is not a Mini Autograd model file \\(no \"format\": 'mini-autograd'\\)"),
        "other.json": ('{"format": "keras"}', "no \"format\": 'mini-autograd'"),
        "future.json": ('{"format": "mini-autograd", "version": 2}',
                        "is format version 2; this version of Mini Autograd reads version 1"),
        "nan.json": ('{"format": "mini-autograd", "version": 1, "parameters": {"w": NaN}}',
                     "not JSON: NaN is not a JSON number"),
        "string.json": ('{"format": "mini-autograd", "version": 1, "parameters": {"w": "1.0"}}',
                        "is damaged: parameter 'w' is '1.0', not a number"),
        "noparams.json": ('{"format": "mini-autograd", "version": 1}', "its \"parameters\" are not a JSON object"),
        "arch.json": ('{"format": "mini-autograd", "version": 1, "parameters": {}, '
                      '"architecture": {"class": "MLP", "nin": "2"}}', "is damaged: its architecture"),
        "empty.json": ('{"format": "mini-autograd", "version": 1, "parameters": {}, "architecture": '
                       '{"class": "MLP", "nin": 2, "nouts": [], "activation": "relu"}}',
                       "is damaged: its architecture .* \\(MLP\\(\\): nouts must hold at least one layer size"),
        "swish.json": ('{"format": "mini-autograd", "version": 1, "parameters": {}, "architecture": '
                       '{"class": "Neuron", "nin": 2, "activation": "swish"}}',
                       "is damaged: .*unknown activation 'swish'"),
        "huge.json": ('{"format": "mini-autograd", "version": 1, "parameters": {"w": 1' + "0" * 400 + '}}',
                      "is damaged: parameter 'w' is too large for a float"),
        "1e999.json": ('{"format": "mini-autograd", "version": 1, "parameters": {"w": -1e999}}',
                       "is damaged: parameter 'w' is too large for a float"),
        "deep.json": ("[" * 100000 + "]" * 100000,
                      "is not a Mini Autograd model file \\(JSON nested too deeply\\)"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            autograd.load(path)
    (tmp_path / "binary.json").write_bytes(b"\x80\x81\xff")
    with pytest.raises(ValueError, match="is not a Mini Autograd model file"):
        autograd.load(tmp_path / "binary.json")


def test_a_file_cannot_build_a_model_larger_than_itself(engine, tmp_path):
    # the architecture's parameter count is checked before anything is built:
    # a few bytes do not make load() allocate 10^12 weights
    path = tmp_path / "big.json"
    path.write_text('{"format": "mini-autograd", "version": 1, "parameters": {"w": 1.0}, '
                    '"architecture": {"class": "MLP", "nin": 1000000, "nouts": [1000000], '
                    '"activation": "relu"}}')
    with pytest.raises(ValueError, match="big.json is damaged: its architecture has 1000001000000 "
                                         "parameters but the file holds 1"):
        autograd.load(path, engine=engine)
    model = Layer(3, 2, engine=engine, seed=0)
    autograd.save(model, path)
    document = json.loads(path.read_text())
    del document["parameters"]["neurons.1.b"]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="is damaged: its architecture has 8 parameters but the file holds 7"):
        autograd.load(path, engine=engine)


def test_two_parameters_of_one_name_are_refused(engine, tmp_path):
    class Twice(Net):
        def named_parameters(self):
            return [("w", p) for _, p in super().named_parameters()]

    path = tmp_path / "m.json"
    with pytest.raises(ValueError, match="Twice.named_parameters\\(\\) gives the name 'w' to two "
                                         "parameters: each needs its own name"):
        autograd.save(Twice(engine, 0), path)
    assert not os.listdir(tmp_path)
    path.write_text('{"format": "mini-autograd", "version": 1, "parameters": {"w": 1.0}}')
    model = Twice(engine, 0)
    before = [p.data for p in model.parameters()]
    with pytest.raises(ValueError, match="Twice.named_parameters\\(\\) gives the name 'w' to two"):
        autograd.load(path, model=model)
    assert [p.data for p in model.parameters()] == before


def test_the_file_gets_a_new_files_permissions(engine, tmp_path):
    path = tmp_path / "m.json"
    old = os.umask(0o022)
    try:
        autograd.save(MLP(2, [1], engine=engine, seed=0), path)
        assert os.stat(path).st_mode & 0o777 == 0o644
        os.umask(0o077)
        autograd.save(MLP(2, [1], engine=engine, seed=0), path)
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_saving_to_a_directory_names_it(engine, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="Is a directory: '[^']*models'$"):
        autograd.save(MLP(2, [1], engine=engine, seed=0), folder)
    assert os.listdir(tmp_path) == ["models"] and not os.listdir(folder)


def test_saving_into_a_missing_directory_names_it(engine, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory to save into: '[^']*absent'"):
        autograd.save(MLP(2, [1], engine=engine, seed=0), tmp_path / "absent" / "m.json")
    assert os.listdir(tmp_path) == []


def test_bad_arguments(engine, tmp_path):
    path = tmp_path / "m.json"
    with pytest.raises(TypeError, match="save\\(\\) takes a Module \\(with named_parameters\\(\\)\\), not list"):
        autograd.save([engine.Value(1.0)], path)
    model = MLP(2, [1], engine=engine, seed=0)
    autograd.save(model, path)
    with pytest.raises(ValueError, match="engine= is for a model load\\(\\) builds"):
        autograd.load(path, model=model, engine=engine)
    with pytest.raises(ValueError, match="unknown engine 'fortran'"):
        autograd.load(path, engine="fortran")


def test_saving_replaces_a_file_atomically(engine, tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    first = MLP(2, [2, 1], engine=engine, seed=0)
    autograd.save(first, path)
    second = MLP(2, [2, 1], engine=engine, seed=1)

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        autograd.save(second, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["m.json"]               # the temporary file was removed
    assert autograd.load(path).state_dict() == first.state_dict()
    autograd.save(second, path)
    assert autograd.load(path).state_dict() == second.state_dict()


def test_loading_leaves_the_global_random_state_alone(tmp_path):
    path = tmp_path / "m.json"
    autograd.save(MLP(2, [8, 1], seed=0), path)
    random.seed(5)
    state = random.getstate()
    autograd.load(path)
    assert random.getstate() == state


@pytest.mark.parametrize("make", [lambda: autograd.train.SGD(momentum=0.9, weight_decay=1e-3),
                                  lambda: autograd.train.Adam(weight_decay=1e-3),
                                  lambda: autograd.train.AdamW()], ids=["sgd", "adam", "adamw"])
def test_training_resumed_from_a_checkpoint_gives_the_bits_of_one_run(engine, tmp_path, make):
    # train 6 steps, save model and optimizer, load both fresh, train 6 more: the same
    # parameters, bit for bit, as 12 steps in one run (full batch, constant lr)
    import autograd.train
    rng = random.Random(0)
    xs = [[rng.uniform(-1, 1) for _ in range(3)] for _ in range(20)]
    ys = [rng.randrange(3) for _ in range(20)]
    settings = dict(lr=0.05, loss="cross_entropy", progress=False)
    whole, opt = MLP(3, [5, 3], engine=engine, seed=7), make()
    autograd.train.train(whole, xs, ys, steps=12, optimizer=opt, **settings)
    first, opt = MLP(3, [5, 3], engine=engine, seed=7), make()
    autograd.train.train(first, xs, ys, steps=6, optimizer=opt, **settings)
    path = tmp_path / "checkpoint.json"
    autograd.save(first, path, optimizer=opt)
    resumed_opt = make()
    resumed = autograd.load(path, optimizer=resumed_opt, engine=engine)
    assert resumed_opt.state_dict() == opt.state_dict()
    autograd.train.train(resumed, xs, ys, steps=6, optimizer=resumed_opt, **settings)
    assert [_bits(p.data) for p in resumed.parameters()] == [_bits(p.data) for p in whole.parameters()]
