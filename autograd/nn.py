"""Neural networks over Value, with micrograd's classes and signatures.

    model = MLP(2, [16, 16, 1])      # ReLU hidden layers, linear output
    score = model([0.5, -1.0])

A neuron computes bias + w.x as one fused node (`dot`), bitwise equal to
micrograd's `sum((wi*xi for wi, xi in zip(self.w, x)), self.b)`.  Every class
takes `engine=` ("cython", "python" or the engine module) to pick the Value
type; the default is the engine autograd was imported with.
"""
from __future__ import annotations

import importlib
import numbers
import operator
import random
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from types import ModuleType
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from autograd.engine import Value

Engine = Union[str, ModuleType, None]
"""An engine: "cython", "python", the engine module itself, or None for the default."""
Inputs = Sequence[Union["Value", float]]
"""What a model takes for a sample: Values or plain numbers."""

from autograd import engine as _default_engine
from autograd.engine import engine_of

ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "gelu", "linear")
"""The activations a Neuron, Layer or MLP takes."""


_modules: dict[str, Any] = {}   # engine name -> module, so a call costs one dict look-up


def _engine_module(engine):
    """The engine module for a name, a module, or None (the default)."""
    if engine is None:
        return _default_engine
    if not isinstance(engine, str):
        return engine
    module = _modules.get(engine)
    if module is None:
        if engine not in ("cython", "python"):
            raise ValueError(f"unknown engine {engine!r}: use 'cython' or 'python'")
        module = _modules[engine] = importlib.import_module(
            "autograd.core" if engine == "cython" else "autograd.pure")
    return module


def _engine_name(module):
    return "python" if module.Value.__module__ == "autograd.pure" else "cython"


def _size(value: Any, what: str) -> int:
    """`value` as a size of at least 1: an int or anything with __index__
    (numpy integers), not a bool; errors name `what` and the value."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{what} must be an int, not {type(value).__name__} ({value!r})")
    n = operator.index(value)
    if n < 1:
        raise ValueError(f"{what} must be at least 1, not {n}")
    return n


def _sizes(nouts: Any, what: str) -> list[int]:
    """MLP's `nouts` as a non-empty list of sizes."""
    if isinstance(nouts, (str, bytes)) or not isinstance(nouts, Iterable):
        raise TypeError(f"{what}: nouts must be a sequence of ints (one per layer), "
                        f"not {type(nouts).__name__} ({nouts!r})")
    sizes = list(nouts)
    if not sizes:
        raise ValueError(f"{what}: nouts must hold at least one layer size, not {nouts!r}")
    return [_size(n, f"{what}: nouts[{i}]") for i, n in enumerate(sizes)]


def _activation(activation: Any, what: str) -> str:
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"{what}: unknown activation {activation!r}: choose one of {ACTIVATIONS}")
    return activation


Seed = Union[int, random.Random, None]
"""Where initial weights come from: None for the global `random` module (as
micrograd, so `random.seed()` reproduces them), an int for a private
`random.Random(seed)` (the global state is left alone), or a `random.Random`."""


def _rng(seed: Any, what: str) -> Any:
    """The generator `seed` names: the `random` module itself for None."""
    if seed is None or seed is random:      # (an MLP hands its layers the module itself)
        return random
    if isinstance(seed, random.Random):
        return seed
    if isinstance(seed, bool) or not hasattr(type(seed), "__index__"):
        raise TypeError(f"{what}: seed must be None, an int or a random.Random, "
                        f"not {type(seed).__name__} ({seed!r})")
    return random.Random(operator.index(seed))


class Module:
    """Base class, as micrograd's: parameters, zero_grad, and saving/restoring parameters.

    A subclass overrides parameters() and named_parameters().
    """

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0."""
        for p in self.parameters():
            p.grad = 0.0

    def parameters(self) -> list[Value]:
        """The parameters, in a fixed order.

        Returns:
            A new list of the parameter Values ([] for this base class).
        """
        return []

    def named_parameters(self) -> list[tuple[str, Value]]:
        """The parameters with their names, in the order of parameters().

        Returns:
            A list of (name, parameter) pairs; names such as "layers.0.neurons.1.w.2".
        """
        return []

    def num_parameters(self) -> int:
        """How many parameters the model has.

        Returns:
            len(self.parameters()).
        """
        return len(self.parameters())

    def state_dict(self) -> dict[str, float]:
        """The parameters' data by name, in order.

        Returns:
            A new dict {name: float}, which load_state_dict() takes back.
        """
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        """Set every parameter's data from `state`.

        Nothing is changed unless all of `state` is accepted.

        Args:
            state: {name: number} with exactly the names of named_parameters(),
                as state_dict() makes it.

        Raises:
            KeyError: A name is missing from `state`, or `state` has a name
                the model does not.
            TypeError: A value is not a real number.
        """
        named = dict(self.named_parameters())
        missing = [k for k in named if k not in state]
        unexpected = [k for k in state if k not in named]
        if missing or unexpected:
            raise KeyError(f"state_dict does not fit this model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
        values: dict[str, float] = {}
        for name in named:
            value = state[name]
            if not isinstance(value, numbers.Real):
                raise TypeError(f"state_dict[{name!r}] must be a number, not {type(value).__name__}")
            values[name] = float(value)
        for name, p in named.items():
            p.data = values[name]


class Neuron(Module):
    """One neuron, as micrograd's: act(w . x + b).

    The weights start uniform in [-1, 1], the bias at 0.  The neuron
    computes w . x + b as one fused `dot` node, bitwise equal to micrograd's
    sum.

    Args:
        nin: The number of inputs: an int (or a numpy integer) of at least 1.
        nonlin: False for a linear neuron, whatever `activation` says.
        activation: "relu", "tanh", "sigmoid", "softplus", "gelu" or "linear".
        engine: The engine whose Values the neuron holds (see `Engine`).
        seed: Where the weights come from (see `Seed`): None for the global
            `random` module, as micrograd; an int for a private
            `random.Random(seed)`.

    Attributes:
        w: The weights, a list of `nin` Values.
        b: The bias, a Value.
        nonlin: As given.
        engine: The engine's name, "cython" or "python".

    Raises:
        TypeError: `nin` is not an int (a bool, a float, a str), or `seed`
            is neither None, an int nor a random.Random.
        ValueError: `nin` is below 1, or an unknown activation or engine
            name.
    """

    def __init__(self, nin: int, nonlin: bool = True, activation: str = "relu",
                 engine: Engine = None, seed: Seed = None) -> None:
        nin = _size(nin, "Neuron(): nin")
        _activation(activation, "Neuron()")
        rng = _rng(seed, "Neuron()")
        module = _engine_module(engine)
        self.engine = _engine_name(module)
        self.w = [module.Value(rng.uniform(-1, 1)) for _ in range(nin)]
        self.b = module.Value(0)
        self.nonlin = nonlin
        self._activation = activation if nonlin else "linear"

    @property
    def activation(self) -> str:
        """relu, tanh, sigmoid, softplus, gelu or linear: fixed when the neuron is made."""
        return self._activation

    def __call__(self, x: Inputs) -> Value:
        """The neuron's output for one sample.

        Args:
            x: `nin` Values or numbers.

        Returns:
            A new Value.

        Raises:
            ValueError: `x` does not hold `nin` items.
            TypeError: An item is neither a Value of this engine nor a number.
        """
        x = _sample(x, len(self.w), "Neuron")
        act = _engine_module(self.engine).dot(self.w, x, self.b)
        if self.activation == "linear":
            return act
        return getattr(act, self.activation)()

    def parameters(self) -> list[Value]:
        """The weights, then the bias.

        Returns:
            A new list of Values.
        """
        return self.w + [self.b]

    def named_parameters(self) -> list[tuple[str, Value]]:
        """The parameters with their names: "w.0", "w.1", ..., then "b".

        Returns:
            A list of (name, parameter) pairs.
        """
        return [(f"w.{i}", w) for i, w in enumerate(self.w)] + [("b", self.b)]

    def __repr__(self) -> str:
        kind = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "softplus": "Softplus", "gelu": "GELU",
                "linear": "Linear"}[self.activation]
        return f"{kind}Neuron({len(self.w)})"


class Layer(Module):
    """A layer of neurons that all take the same inputs, as micrograd's.

    Args:
        nin: The number of inputs of each neuron: an int of at least 1.
        nout: The number of neurons: an int of at least 1.
        **kwargs: Given to each Neuron: nonlin, activation, engine, seed
            (an int seeds one private generator for the whole layer).

    Attributes:
        neurons: The Neurons, a list.
        engine: The engine's name, "cython" or "python".
        activation: The neurons' activation.

    Raises:
        TypeError: `nin` or `nout` is not an int, a bad `seed`, or an
            unknown keyword argument.
        ValueError: `nin` or `nout` is below 1, or an unknown activation or
            engine name.
    """

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        nin = _size(nin, "Layer(): nin")
        nout = _size(nout, "Layer(): nout")
        unknown = [k for k in kwargs if k not in ("nonlin", "activation", "engine", "seed")]
        if unknown:
            raise TypeError(f"Layer() got an unexpected keyword argument {unknown[0]!r}")
        _activation(kwargs.get("activation", "relu"), "Layer()")
        kwargs["seed"] = _rng(kwargs.get("seed"), "Layer()")   # one generator for every neuron
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]
        self.engine = self.neurons[0].engine
        self.activation = self.neurons[0].activation

    def __call__(self, x: Inputs) -> Any:
        """The layer's outputs for one sample, in one call of the engine's dense().

        As micrograd's: one Value for a layer of one neuron, else a list.
        Which of the two depends on the layer's size, so this is typed
        `Any`, and micrograd's `layer(x).data` and `layer(x)[0]` both type-check;
        `output()` and `outputs()` give the same nodes with precise types.

        Args:
            x: `nin` Values or numbers.

        Returns:
            One Value for a layer of one neuron, else a list of one new
                Value per neuron.

        Raises:
            ValueError: `x` does not hold `nin` items.
            TypeError: An item is neither a Value of this engine nor a number.
        """
        out = self.outputs(x)
        return out[0] if len(out) == 1 else out

    def outputs(self, x: Inputs) -> list[Value]:
        """The layer's outputs for one sample as a list, whatever its size.

        Args:
            x: `nin` Values or numbers.

        Returns:
            A list of one new Value per neuron.

        Raises:
            ValueError: `x` does not hold `nin` items.
            TypeError: An item is neither a Value of this engine nor a number.
        """
        if not self.neurons:
            return []
        module = _engine_module(self.engine)
        Value = module.Value
        # numbers become leaves once per layer call, not once per neuron
        # (a Value subclass's instance, as the micrograd lecture makes, is a Value)
        x = [xi if type(xi) is Value or isinstance(xi, Value) else Value(xi)
             for xi in _sample(x, len(self.neurons[0].w), "Layer")]
        neurons = self.neurons
        # the whole layer in one call: the same nodes as calling each neuron
        return module.dense([n.w for n in neurons], x, [n.b for n in neurons], self.activation)

    def output(self, x: Inputs) -> Value:
        """The output of a layer of one neuron, typed as a Value.

        Args:
            x: `nin` Values or numbers.

        Returns:
            A new Value.

        Raises:
            ValueError: The layer has more than one neuron, or `x` does not
                hold `nin` items.
            TypeError: An item is neither a Value of this engine nor a number.
        """
        if len(self.neurons) != 1:
            raise ValueError(f"output() is for a layer of one neuron; this one has "
                             f"{len(self.neurons)}: use outputs()")
        return self.outputs(x)[0]

    def parameters(self) -> list[Value]:
        """Each neuron's parameters (weights, then bias), neuron by neuron.

        Returns:
            A new list of Values.
        """
        return self._add_parameters([])

    def _add_parameters(self, params: list[Value]) -> list[Value]:
        for n in self.neurons:      # extended a neuron at a time: 400k parameters in 3 ms
            params += n.w
            params.append(n.b)
        return params

    def named_parameters(self) -> list[tuple[str, Value]]:
        """The parameters with their names: "neurons.0.w.0", ..., "neurons.0.b", ...

        Returns:
            A list of (name, parameter) pairs, in the order of parameters().
        """
        return [(f"neurons.{i}.{name}", p) for i, n in enumerate(self.neurons)
                for name, p in n.named_parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """A multi-layer perceptron, as micrograd's: hidden layers with `activation`, a linear last layer.

    Calling the model gives micrograd's result: one Value when the last
    layer has one neuron, else a list of Values.  Which of the two depends
    on `nouts`, a run-time list, so `__call__` is typed `Any`: micrograd's
    `model(x).data` and `model(x)[0]` both type-check.  `output(x)` (one
    Value) and `outputs(x)` (a list, for any width) are the same call with
    precise types, for code that wants its types checked.

    Args:
        nin: The number of inputs: an int (or a numpy integer) of at least 1.
        nouts: The number of neurons of each layer, in order: a non-empty
            sequence of ints of at least 1.
        activation: The hidden layers' activation: "relu", "tanh",
            "sigmoid", "softplus", "gelu" or "linear".
        engine: The engine whose Values the model holds (see `Engine`).
        seed: Where the initial weights come from (see `Seed`): None for the
            global `random` module, as micrograd (`random.seed(s)` first
            reproduces them); an int for a private `random.Random(seed)`,
            which gives the same weights as `random.seed(seed)` would and
            leaves the global generator alone.

    Attributes:
        nin: As given.
        activation: The hidden layers' activation, as given.
        layers: The Layers, a list.

    Raises:
        TypeError: `nin` or a size in `nouts` is not an int (a bool, a
            float, a str), `nouts` is not a sequence, or a bad `seed`.
        ValueError: `nin` or a size is below 1, `nouts` is empty, or an
            unknown activation or engine name.

    Examples:
        >>> model = MLP(2, [16, 16, 1], seed=0)
        >>> model.num_parameters()
        337
        >>> type(model([0.5, -1.0])).__name__
        'Value'
    """

    def __init__(self, nin: int, nouts: Sequence[int], activation: str = "relu",
                 engine: Engine = None, seed: Seed = None) -> None:
        # every argument is checked before any weight is drawn
        nin = _size(nin, "MLP(): nin")
        sizes = _sizes(nouts, "MLP()")
        _activation(activation, "MLP()")
        _engine_module(engine)
        rng = _rng(seed, "MLP()")
        sz = [nin] + sizes
        self.nin = nin
        self.activation = activation
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(sizes) - 1,
                             activation=activation, engine=engine, seed=rng)
                       for i in range(len(sizes))]
        # the parameters as one tuple, in parameters()' order: a hint that
        # train() hands to Replay.layered(), which holds it again only where it
        # still has the model's very Values (the replay of train()'s last call
        # puts its own here).  Made with the model rather than in train()'s
        # set-up, where a pass over every parameter object is milliseconds at
        # MNIST widths.  (An attribute, not a table beside the model: a
        # parameter that refers to its model must not keep it alive.)
        self._flat_parameters = tuple(chain.from_iterable(
            chain(n.w, (n.b,)) for layer in self.layers for n in layer.neurons))

    def __call__(self, x: Inputs) -> Any:
        """The model's output for one sample: the layers applied in turn.

        Typed `Any` (see the class): a Value or a list of Values.

        Args:
            x: `nin` Values or numbers.

        Returns:
            One Value where the last layer has one neuron, else a list of
                Values.

        Raises:
            ValueError: `x` does not hold `nin` items.
            TypeError: An item is neither a Value of this engine nor a number.
        """
        out = self.outputs(x)
        return out[0] if len(out) == 1 else out

    def outputs(self, x: Inputs) -> list[Value]:
        """The model's outputs for one sample as a list, whatever the last layer's width.

        Args:
            x: `nin` Values or numbers.

        Returns:
            A list of new Values, one per neuron of the last layer.

        Raises:
            ValueError: `x` does not hold `nin` items.
            TypeError: An item is neither a Value of this engine nor a number.
        """
        out: Any = _sample(x, self.nin, "MLP")
        for layer in self.layers:
            out = layer(out)            # a Layer subclass's own __call__ too
            if not isinstance(out, list):
                out = [out]             # a layer of one neuron gives a Value
        return out

    def output(self, x: Inputs) -> Value:
        """The output of a model whose last layer has one neuron, typed as a Value.

        Args:
            x: `nin` Values or numbers.

        Returns:
            A new Value.

        Raises:
            ValueError: The last layer has more than one neuron, or `x` does
                not hold `nin` items.
            TypeError: An item is neither a Value of this engine nor a number.
        """
        width = len(self.layers[-1].neurons)
        if width != 1:
            raise ValueError(f"output() is for a model with one output; this one has {width}: "
                             "use outputs()")
        return self.outputs(x)[0]

    def summary(self) -> str:
        """A table of the layers: inputs, outputs, activation, parameters.

        Returned, not printed (`print(model.summary())` shows it), so that it
        can be logged, compared or shown in a notebook cell.

        Returns:
            The table as a str: one row per layer, then the total number of
                parameters.
        """
        rows = [("layer", "inputs", "outputs", "activation", "parameters")]
        for i, layer in enumerate(self.layers):
            neurons = layer.neurons
            nin = len(neurons[0].w) if neurons else 0
            rows.append((str(i), str(nin), str(len(neurons)), layer.activation,
                         f"{layer.num_parameters():,}"))
        widths = [max(len(row[c]) for row in rows) for c in range(5)]
        lines = ["  ".join(cell.ljust(w) if c in (0, 3) else cell.rjust(w)
                           for c, (cell, w) in enumerate(zip(row, widths))).rstrip()
                 for row in rows]
        rule = "-" * len(lines[0])
        return "\n".join([lines[0], rule, *lines[1:], rule, f"total parameters: {self.num_parameters():,}"])

    def parameters(self) -> list[Value]:
        """Every layer's parameters, layer by layer.

        Returns:
            A new list of Values.
        """
        params: list[Value] = []
        for layer in self.layers:
            if type(layer) is Layer and "parameters" not in vars(layer):    # not overridden:
                layer._add_parameters(params)   # straight into one list (a temporary list per
                                                # layer made it 3x slower, 400k: 10 ms)
            else:
                params += layer.parameters()
        return params

    def named_parameters(self) -> list[tuple[str, Value]]:
        """The parameters with their names: "layers.0.neurons.0.w.0", ...

        Returns:
            A list of (name, parameter) pairs, in the order of parameters().
        """
        return [(f"layers.{i}.{name}", p) for i, layer in enumerate(self.layers)
                for name, p in layer.named_parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"


# -- softmax over a list of Values (k outputs of a model) -----------------------------

def _sample(x, nin, kind):
    """x as a list of nin items, or a ValueError naming the model's width
    (rather than the engine's dot() or dense() it would reach)."""
    if not isinstance(x, (list, tuple)):
        x = list(x)
    if len(x) != nin:
        raise ValueError(f"this {kind} takes {nin} inputs per sample, not {len(x)}")
    return x


def _engine_of_values(values):
    for v in values:
        if not isinstance(v, numbers.Real):
            return engine_of(v)
    return _default_engine


def log_softmax(values: Iterable[Value | float]) -> list[Value]:
    """Log-probabilities [v_k - logsumexp(values)], stable for any values.

    Args:
        values: Values (of one engine) or numbers: k logits.

    Returns:
        A list of k new Values.

    Raises:
        ValueError: `values` is empty.
    """
    values = list(values)
    lse = _engine_of_values(values).logsumexp(values)
    return [v - lse for v in values]


def softmax(values: Iterable[Value | float]) -> list[Value]:
    """Probabilities [exp(v_k - logsumexp(values))] that sum to 1.

    Args:
        values: Values (of one engine) or numbers: k logits.

    Returns:
        A list of k new Values.

    Raises:
        ValueError: `values` is empty.

    Examples:
        >>> [round(p.data, 4) for p in softmax([1.0, 2.0, 3.0])]
        [0.09, 0.2447, 0.6652]
    """

    return [p.exp() for p in log_softmax(values)]
