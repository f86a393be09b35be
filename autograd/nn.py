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
import random
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from autograd.engine import Value

Engine = Union[str, ModuleType, None]
"""An engine: "cython", "python", the engine module itself, or None for the default."""
Inputs = Sequence[Union["Value", float]]
"""What a model takes for a sample: Values or plain numbers."""

from autograd import engine as _default_engine

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

    The weights start uniform in [-1, 1] (from the `random` module), the
    bias at 0.  The neuron computes w . x + b as one fused `dot` node,
    bitwise equal to micrograd's sum.

    Args:
        nin: The number of inputs.
        nonlin: False for a linear neuron, whatever `activation` says.
        activation: "relu", "tanh", "sigmoid", "softplus", "gelu" or "linear".
        engine: The engine whose Values the neuron holds (see `Engine`).

    Attributes:
        w: The weights, a list of `nin` Values.
        b: The bias, a Value.
        nonlin: As given.
        engine: The engine's name, "cython" or "python".

    Raises:
        ValueError: An unknown activation or engine name.
    """

    def __init__(self, nin: int, nonlin: bool = True, activation: str = "relu",
                 engine: Engine = None) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: choose one of {ACTIVATIONS}")
        module = _engine_module(engine)
        self.engine = _engine_name(module)
        self.w = [module.Value(random.uniform(-1, 1)) for _ in range(nin)]
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
        nin: The number of inputs of each neuron.
        nout: The number of neurons.
        **kwargs: Given to each Neuron: nonlin, activation, engine.

    Attributes:
        neurons: The Neurons, a list.
        engine: The engine's name, "cython" or "python" (None without neurons).
        activation: The neurons' activation ("linear" without neurons).

    Raises:
        ValueError: An unknown activation or engine name.
        TypeError: An unknown keyword argument.
    """

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]
        self.engine = self.neurons[0].engine if self.neurons else None
        self.activation = self.neurons[0].activation if self.neurons else "linear"

    def __call__(self, x: Inputs) -> Value | list[Value]:
        """The layer's outputs for one sample, in one call of the engine's dense().

        Args:
            x: `nin` Values or numbers.

        Returns:
            One Value for a layer of one neuron, else a list of one new
                Value per neuron ([] for a layer of none).

        Raises:
            ValueError: `x` does not hold `nin` items.
            TypeError: An item is neither a Value of this engine nor a number.
        """
        if not self.neurons:
            return []
        module = _engine_module(self.engine)
        Value = module.Value
        # numbers become leaves once per layer call, not once per neuron
        x = [xi if type(xi) is Value else Value(xi) for xi in x]
        neurons = self.neurons
        # the whole layer in one call: the same nodes as calling each neuron
        out = module.dense([n.w for n in neurons], x, [n.b for n in neurons], self.activation)
        return out[0] if len(out) == 1 else out

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

    Args:
        nin: The number of inputs.
        nouts: The number of neurons of each layer, in order.
        activation: The hidden layers' activation: "relu", "tanh",
            "sigmoid", "softplus", "gelu" or "linear".
        engine: The engine whose Values the model holds (see `Engine`).

    Attributes:
        nin: As given.
        layers: The Layers, a list.

    Raises:
        ValueError: An unknown activation or engine name.

    Examples:
        >>> model = MLP(2, [16, 16, 1])
        >>> len(model.parameters())
        337
        >>> type(model([0.5, -1.0])).__name__
        'Value'
    """

    def __init__(self, nin: int, nouts: Sequence[int], activation: str = "relu",
                 engine: Engine = None) -> None:
        sz = [nin] + list(nouts)
        self.nin = nin
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1,
                             activation=activation, engine=engine)
                       for i in range(len(nouts))]

    def __call__(self, x: Inputs) -> Value | list[Value]:
        """The model's output for one sample: the layers applied in turn.

        Args:
            x: `nin` Values or numbers.

        Returns:
            One Value where the last layer has one neuron, else a list of
                Values.

        Raises:
            ValueError: `x` does not hold `nin` items.
            TypeError: An item is neither a Value of this engine nor a number.
        """
        out: Any = x
        for layer in self.layers:
            out = layer(out)
        return out

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

def _engine_of_values(values):
    for v in values:
        if not isinstance(v, numbers.Real):
            return importlib.import_module(type(v).__module__)
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
