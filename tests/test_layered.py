"""Replay.layered(): dense layers and a head, made from their description.

The program must be the one Replay() records from the graph dense() builds
layer after layer, bit for bit: values, the parameters' grads, on every
kernel build and thread count; and train() takes this path for an MLP.
"""
import gc
import math
import random
import weakref
from array import array

import pytest

from autograd.nn import MLP, Layer
from autograd.train import (_Replayed, _Sample, _check_data, cross_entropy_loss, hinge_loss,
                            mse_vector_loss, train)
from helpers import collecting_at_every_allocation, is_core


def specs_of(model):
    layers = model.layers if isinstance(model, MLP) else [model]
    return [([n.w for n in layer.neurons], [n.b for n in layer.neurons], layer.activation)
            for layer in layers]


def ce_head(E):
    return lambda outs, targets: [cross_entropy_loss(outs, targets)] + outs


def table_for(nin, ntargets, batch, seed=3):
    rng = random.Random(seed)
    return array("d", [rng.uniform(-2, 2) for _ in range(batch * (nin + ntargets))])


def run(replay, params, table, batch, outputs, j=0, seed=0.5):
    """(every output's values, the parameters' grads) after one forward and
    one backward from output j."""
    for p in params:
        p.grad = 0.0
    replay.load(table, range(batch))
    replay.forward()
    values = [replay.values(i) for i in range(outputs)]
    replay.backward(j, seed)
    return values, [p.grad for p in params]


SHAPES = [(3, [4, 2], "relu"), (5, [8, 8, 3], "tanh"), (4, [1], "relu"), (4, [6, 1], "relu"),
          (2, [3], "linear"), (6, [5, 4], "sigmoid"), (3, [7, 2], "gelu"), (3, [2, 2], "softplus")]


@pytest.mark.parametrize("nin,sizes,activation", SHAPES)
def test_layered_gives_the_recorded_replays_bits(engine, nin, sizes, activation):
    random.seed(1)
    model = MLP(nin, sizes, engine=engine)
    for layer in model.layers[:-1]:
        layer.activation = activation
    k = sizes[-1]
    head = ce_head(engine) if k > 1 else (lambda outs, t: [hinge_loss(outs[0], t[0])] + outs)
    layered = engine.Replay.layered(specs_of(model), head, k)
    xs = [engine.Value(0.0) for _ in range(nin)]
    targets = [engine.Value(0.0) for _ in range(k)]
    recorded = engine.Replay(head(model.outputs(xs), targets), xs + targets, model.parameters())
    assert list(layered.params) == model.parameters()
    table = table_for(nin, k, 6)
    for j in range(k + 1):             # the loss, then each output (below some neurons)
        assert run(layered, model.parameters(), table, 6, k + 1, j) == \
            run(recorded, model.parameters(), table, 6, k + 1, j)


def test_both_engines_give_the_same_bits(engines):
    results = []
    for E in engines:
        random.seed(2)
        model = MLP(5, [7, 6, 3], engine=E)
        replay = E.Replay.layered(specs_of(model), lambda o, t: [mse_vector_loss(o, t)] + o, 3)
        table = table_for(5, 3, 9)
        results.append([run(replay, model.parameters(), table, 9, 4, j) for j in range(4)])
    assert results[0] == results[1]


def test_the_grads_are_the_derivatives(engine):
    random.seed(4)
    model = MLP(3, [4, 2], engine=engine)
    replay = engine.Replay.layered(specs_of(model), ce_head(engine), 2)
    table = table_for(3, 2, 5)
    _, grads = run(replay, model.parameters(), table, 5, 3, 0, 1.0)

    def loss():
        replay.load(table, range(5))
        replay.forward()
        return replay.sum(0)

    for p, g in zip(model.parameters(), grads):
        x, h = p.data, 1e-6
        p.data = x + h
        up = loss()
        p.data = x - h
        down = loss()
        p.data = x
        assert math.isclose(g, (up - down) / (2 * h), rel_tol=1e-5, abs_tol=1e-7)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_kernel_build_and_thread_count_gives_the_same_bits(core, threads):
    random.seed(5)
    model = MLP(9, [11, 13, 4], engine=core)
    table = table_for(9, 4, 37)
    old_work, old_build = core._layer_min_work(), core._batch_kernels()
    results = []
    try:
        core._layer_min_work(1)
        for build in core._KERNEL_BUILDS:
            core._batch_kernels(build)
            replay = core.Replay.layered(specs_of(model), ce_head(core), 4)
            replay.threads = threads
            results.append(run(replay, model.parameters(), table, 37, 5))
            assert replay._layers_info()["sizes"] == [11, 13, 4]
    finally:
        core._layer_min_work(old_work)
        core._batch_kernels(old_build)
    assert all(r == results[0] for r in results)


def test_a_head_of_placeholders_and_constants(engine):
    """The head may return the outputs themselves, targets and constants."""
    random.seed(6)
    layer = Layer(3, 2, engine=engine, activation="tanh")
    seen = []

    def head(outs, targets):
        seen.append((len(outs), len(targets), all(isinstance(v, engine.Value) for v in outs + targets)))
        return [outs[1], targets[0], engine.Value(2.5) * outs[0], engine.Value(7.0)]

    replay = engine.Replay.layered(specs_of(layer), head, 1)
    assert seen == [(2, 1, True)]
    table = array("d", [0.5, -1.0, 2.0, 9.0, 1.5, 0.25, -3.0, -4.0])
    replay.load(table, [0, 1])
    replay.forward()
    for b, row in enumerate([[0.5, -1.0, 2.0], [1.5, 0.25, -3.0]]):
        with engine.no_grad():
            out = layer(row)
        assert replay.values(0)[b] == out[1].data
        assert replay.values(1)[b] == table[4 * b + 3]
        assert replay.values(2)[b] == (2.5 * out[0]).data
        assert replay.values(3)[b] == 7.0


def errors_of(E, layers, head=None, targets=0):
    with pytest.raises((TypeError, ValueError)) as info:
        E.Replay.layered(layers, head or (lambda o, t: o), targets)
    return info.type, str(info.value)


def test_bad_descriptions_are_refused_alike_on_both_engines(engines):
    def cases(E):
        w = [[E.Value(1.0), E.Value(2.0)], [E.Value(3.0), E.Value(4.0)]]
        b = [E.Value(0.0), E.Value(0.0)]
        shared = E.Value(1.0)
        return [
            ([], None, 0),
            ([(w, b)], None, 0),
            ([(w, b, "swish")], None, 0),
            ([(w, b[:1], "relu")], None, 0),
            ([(w, b, "relu"), ([[E.Value(1.0)] * 3], [E.Value(0.0)], "relu")], None, 0),
            ([([w[0], w[1][:1]], b, "relu")], None, 0),
            ([([[], []], b, "relu")], None, 0),
            ([([], [], "relu")], None, 0),
            ([([[1.0, E.Value(2.0)], w[1]], b, "relu")], None, 0),
            ([([[shared, shared], w[1]], b, "relu")], None, 0),
            ([(w, b, "relu")], lambda o, t: [o[0] * w[0][0]], 0),
            ([(w, b, "relu")], lambda o, t: [], 0),
            ([(w, b, "relu")], lambda o, t: [1.0], 0),
            ([(w, b, "relu")], None, -1),
        ]
    compiled, pure = engines
    for (lc, hc, tc), (lp, hp, tp) in zip(cases(compiled), cases(pure)):
        got, want = errors_of(compiled, lc, hc, tc), errors_of(pure, lp, hp, tp)
        assert got == want


def test_train_uses_it_for_an_mlp(engine):
    random.seed(7)
    model = MLP(4, [5, 3], engine=engine)
    xs = [[random.uniform(-1, 1) for _ in range(4)] for _ in range(12)]
    ys = [random.randrange(3) for _ in range(12)]
    made_with_the_model = model._flat_parameters
    assert made_with_the_model == tuple(model.parameters())
    rows, targets, sample = _check_data(model, xs, ys, "cross_entropy")
    assert sample.layers is not None and sample.outputs is None     # the model never ran
    replayed = _Replayed(sample, rows, cross_entropy_loss, targets)
    assert sample.params is made_with_the_model             # held again, not made anew
    if is_core(engine):
        assert replayed.replay._layers_info()["sizes"] == [5, 3]
    # the steps give the bits of the recorded path, which a subclass takes
    class Recorded(MLP):
        pass
    random.seed(7)
    other = Recorded(4, [5, 3], engine=engine)
    assert _Sample(other, rows).layers is None
    for m in (model, other):
        train(m, xs, ys, steps=4, lr=0.1, loss="cross_entropy", batch_size=5, seed=3,
              progress=False)
    assert [p.data for p in model.parameters()] == [p.data for p in other.parameters()]


def test_tied_weights_are_trained_once(engine):
    random.seed(8)
    model = MLP(2, [2, 1], engine=engine)
    tied = model.layers[0].neurons[1]
    tied.w[0] = model.layers[0].neurons[0].w[0]
    xs, ys = [[1.0, 2.0], [-1.0, 0.5]], [1.0, -1.0]
    before = tied.w[0].data
    history = train(model, xs, ys, steps=3, lr=0.05, loss="hinge", progress=False)
    assert len(history.loss) == 3 and all(math.isfinite(x) for x in history.loss)
    assert tied.w[0] is model.layers[0].neurons[0].w[0] and tied.w[0].data != before
    # the recorded path's answer (a subclass is recorded): the same bits
    class Recorded(MLP):
        pass
    random.seed(8)
    other = Recorded(2, [2, 1], engine=engine)
    other.layers[0].neurons[1].w[0] = other.layers[0].neurons[0].w[0]
    train(other, xs, ys, steps=3, lr=0.05, loss="hinge", progress=False)
    assert [p.data for p in model.parameters()] == [p.data for p in other.parameters()]


def test_python_code_compacting_while_it_is_made(core):
    """A GC callback at every allocation compacts the arena (moving every
    node) while layered() builds its lists and runs the head: the replay
    still reads the parameters where they are."""
    random.seed(9)
    model = MLP(3, [4, 2], engine=core)
    table = table_for(3, 2, 4)
    want = run(core.Replay.layered(specs_of(model), ce_head(core), 2), model.parameters(), table, 4, 3)
    garbage = []

    def compact(phase, info):
        if phase == "start":
            garbage.append([core.Value(1.0) * 2 for _ in range(3)])
            del garbage[:-1]
            core.collect()

    with collecting_at_every_allocation(compact):
        replay = core.Replay.layered(specs_of(model), ce_head(core), 2)

        def head(outs, targets):
            core.collect()
            return ce_head(core)(outs, targets)

        other = core.Replay.layered(specs_of(model), head, 2)
    assert run(replay, model.parameters(), table, 4, 3) == want
    assert run(other, model.parameters(), table, 4, 3) == want


def test_plain_leaves_are_not_tracked_until_they_hold_references(core):
    """A model's 10^5 parameters cost the cyclic GC nothing; a leaf that
    gets attributes or a chain rule is tracked, and its cycles collected."""
    v = core.Value(1.0)
    assert not gc.is_tracked(v)
    v.me = v                        # a cycle through its attributes
    assert gc.is_tracked(v)
    gone = weakref.ref(v)
    del v
    gc.collect()
    assert gone() is None
    u = core.Value(2.0)
    u._backward = lambda: u         # a cycle through its chain rule
    assert gc.is_tracked(u)
    gone = weakref.ref(u)
    del u
    gc.collect()
    assert gone() is None


def test_a_tuple_of_the_very_parameters_is_held_again(engine):
    random.seed(10)
    model = MLP(3, [4, 2], engine=engine)
    first = engine.Replay.layered(specs_of(model), ce_head(engine), 2)
    again = engine.Replay.layered(specs_of(model), ce_head(engine), 2, first.params)
    assert again.params is first.params
    for other in (list(first.params), first.params[:-1], first.params[1:] + first.params[:1]):
        made = engine.Replay.layered(specs_of(model), ce_head(engine), 2, other)
        assert made.params is not other and made.params == first.params
    model.layers[1].neurons[0].w[2] = engine.Value(0.5)        # no longer those Values
    made = engine.Replay.layered(specs_of(model), ce_head(engine), 2, first.params)
    assert made.params is not first.params and list(made.params) == model.parameters()


def test_train_trains_a_parameter_replaced_between_calls(engine):
    """train() hands Replay.layered() the tuple of the model's last call: a
    Value put in the model meanwhile is trained, the one it replaced not."""
    random.seed(11)
    model = MLP(2, [3, 1], engine=engine)
    xs, ys = [[1.0, 2.0], [-1.0, 0.5], [0.5, -2.0]], [1.0, -1.0, 1.0]
    train(model, xs, ys, steps=2, lr=0.1, loss="mse", progress=False)
    old, new = model.layers[0].neurons[2].w[1], engine.Value(0.75)
    model.layers[0].neurons[2].w[1] = new
    before = old.data
    train(model, xs, ys, steps=2, lr=0.1, loss="mse", progress=False)
    assert old.data == before and new.data != 0.75


def test_a_head_that_changes_the_layers_lists(engines):
    """The lists are read after the head runs, by both engines alike; a last
    layer that no longer has one neuron per placeholder is refused (the
    compiled engine read past its placeholders' nodes)."""
    def outcome(E, change):
        random.seed(12)
        model = MLP(2, [2, 2], engine=E)
        specs = specs_of(model)

        def head(outs, targets):
            change(E, specs)
            return outs

        try:
            replay = E.Replay.layered(specs, head, 0)
        except (TypeError, ValueError) as exc:
            return type(exc), str(exc)
        return [p.data for p in replay.params]

    changes = [
        lambda E, s: s[0][0][0].__setitem__(0, E.Value(9.0)),          # a weight replaced
        lambda E, s: s[0][0][0].append(E.Value(9.0)),
        lambda E, s: s[0][0].__setitem__(0, 5),
        lambda E, s: s[1][1].clear(),
        lambda E, s: (s[1][0].pop(), s[1][1].pop()),                   # a neuron fewer
        lambda E, s: (s[1][0].append([E.Value(1.0), E.Value(2.0)]), s[1][1].append(E.Value(0.5))),
    ]
    compiled, pure = engines
    got = [outcome(compiled, change) for change in changes]
    assert got == [outcome(pure, change) for change in changes]
    assert got[0][0] == 9.0
    assert got[2] == (TypeError, "Replay.layered(): layer 0's weight row 0 is not a sequence")
    assert got[4] == (ValueError, "Replay.layered(): the last layer has 1 neurons, not the 2 it "
                                  "had when the head was called")
    assert got[5] == (ValueError, "Replay.layered(): the last layer has 3 neurons, not the 2 it "
                                  "had when the head was called")


def test_a_cycle_through_the_parameters_tuple_is_collected(engine):
    """A parameter that gets an attribute is tracked by the GC; its cycle
    through the Replay's tuple of parameters is collected."""
    class Holder:
        pass

    def make():
        model = MLP(2, [3, 2], engine=engine)
        replay = engine.Replay.layered(specs_of(model), lambda o, t: o, 0)
        holder = Holder()
        holder.replay = replay
        replay.params[0].holder = holder        # holder -> replay -> params -> holder
        return weakref.ref(holder)

    gone = make()
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("kind", ["mlp", "layer"])
def test_a_parameter_that_refers_to_its_model_does_not_keep_it_alive(engine, kind):
    """The model's tuple of parameters (made with an MLP, kept by train()) is
    a cycle like any other: the GC frees the model."""
    random.seed(12)
    model = MLP(2, [3, 2], engine=engine) if kind == "mlp" else Layer(2, 2, engine=engine)
    model.parameters()[0].owner = model
    train(model, [[1.0, 2.0], [0.5, -1.0]], [0, 1], steps=2, lr=0.1, loss="cross_entropy",
          progress=False)
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None
