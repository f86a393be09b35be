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

# an engine: "cython", "python", the module itself, or None for the default
Engine = Union[str, ModuleType, None]
# what a model takes for a sample: Values or plain numbers
Inputs = Sequence[Union["Value", float]]

from autograd import engine as _default_engine

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")


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
    """Base class: parameters, zero_grad, and saving/restoring parameters."""

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0

    def parameters(self) -> list[Value]:
        return []

    def named_parameters(self) -> list[tuple[str, Value]]:
        """[(name, parameter)], in the order of parameters()."""
        return []

    def state_dict(self) -> dict[str, float]:
        """{name: float} for every parameter, in order."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        """Set every parameter from `state` (as made by state_dict())."""
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
        """relu, tanh, sigmoid or linear: fixed when the neuron is made."""
        return self._activation

    def __call__(self, x: Inputs) -> Value:
        act = _engine_module(self.engine).dot(self.w, x, self.b)
        if self.activation == "linear":
            return act
        return getattr(act, self.activation)()

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def named_parameters(self) -> list[tuple[str, Value]]:
        return [(f"w.{i}", w) for i, w in enumerate(self.w)] + [("b", self.b)]

    def __repr__(self) -> str:
        kind = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "linear": "Linear"}[self.activation]
        return f"{kind}Neuron({len(self.w)})"


class Layer(Module):

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]
        self.engine = self.neurons[0].engine if self.neurons else None
        self.activation = self.neurons[0].activation if self.neurons else "linear"

    def __call__(self, x: Inputs) -> Value | list[Value]:
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
        return self._add_parameters([])

    def _add_parameters(self, params: list[Value]) -> list[Value]:
        for n in self.neurons:      # extended a neuron at a time: 400k parameters in 3 ms
            params += n.w
            params.append(n.b)
        return params

    def named_parameters(self) -> list[tuple[str, Value]]:
        return [(f"neurons.{i}.{name}", p) for i, n in enumerate(self.neurons)
                for name, p in n.named_parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):

    def __init__(self, nin: int, nouts: Sequence[int], activation: str = "relu",
                 engine: Engine = None) -> None:
        sz = [nin] + list(nouts)
        self.nin = nin
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1,
                             activation=activation, engine=engine)
                       for i in range(len(nouts))]

    def __call__(self, x: Inputs) -> Value | list[Value]:
        out: Any = x
        for layer in self.layers:
            out = layer(out)
        return out

    def parameters(self) -> list[Value]:
        params: list[Value] = []
        for layer in self.layers:
            if type(layer) is Layer and "parameters" not in vars(layer):    # not overridden:
                layer._add_parameters(params)   # straight into one list (a temporary list per
                                                # layer made it 3x slower, 400k: 10 ms)
            else:
                params += layer.parameters()
        return params

    def named_parameters(self) -> list[tuple[str, Value]]:
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
    """[v_k - logsumexp(values)]: log-probabilities, stable for any values."""
    values = list(values)
    lse = _engine_of_values(values).logsumexp(values)
    return [v - lse for v in values]


def softmax(values: Iterable[Value | float]) -> list[Value]:
    """[exp(v_k - logsumexp(values))]: probabilities that sum to 1."""
    return [p.exp() for p in log_softmax(values)]
