"""Saving a model, and an optimizer's state, to a file, and loading them back.

    autograd.save(model, "model.json", optimizer=opt)
    model = autograd.load("model.json")             # an MLP, Layer or Neuron, rebuilt
    autograd.load("net.json", model=net)           # any Module: into its parameters

The file is JSON, so loading it runs no code (unlike a pickle): a format
name and version, the architecture of an MLP, Layer or Neuron (the sizes and
the activation, enough to build the model again), every parameter's data by
its name in `named_parameters()`, and an optimizer's `state_dict()` when one
is given.  Floats are written as Python's shortest repr, which reads back to
the same bits (-0.0, subnormals); JSON has no NaN or infinity, so a model
holding one is refused with the parameter's name.  A file is written to a
temporary file beside it and renamed over it, so a crash never leaves half
a file.
"""
from __future__ import annotations

import errno
import json
import math
import os
import secrets
from typing import Any, Union

from autograd.nn import ACTIVATIONS, MLP, Engine, Layer, Module, Neuron, _engine_module

FORMAT = "mini-autograd"
"""The file's "format" field: what marks a file as one of these."""

VERSION = 1
"""The format version this code writes and reads."""

PathLike = Union[str, "os.PathLike[str]"]
"""A file name: a str or a path object."""


def _architecture(model: Any) -> dict[str, Any] | None:
    """What rebuilds `model`: for an MLP, Layer or Neuron (exactly those
    classes), its class and sizes; None for any other Module."""
    if type(model) is MLP:
        nouts = [len(layer.neurons) for layer in model.layers]
        arch = {"class": "MLP", "nin": model.nin, "nouts": nouts, "activation": model.activation}
        # only a model MLP(...) builds again: not one whose layers were replaced or changed
        sizes = [model.nin] + nouts
        last = len(model.layers) - 1
        same = all(type(layer) is Layer and layer.neurons
                   and all(type(n) is Neuron and len(n.w) == sizes[i] for n in layer.neurons)
                   and layer.activation == ("linear" if i == last else model.activation)
                   and all(n.activation == layer.activation for n in layer.neurons)
                   for i, layer in enumerate(model.layers))
        return arch if same else None
    if type(model) is Layer:
        nin = len(model.neurons[0].w) if model.neurons else 0
        same = bool(model.neurons) and all(type(n) is Neuron and len(n.w) == nin
                                           and n.activation == model.activation for n in model.neurons)
        return ({"class": "Layer", "nin": nin, "nout": len(model.neurons), "activation": model.activation}
                if same else None)
    if type(model) is Neuron:
        return {"class": "Neuron", "nin": len(model.w), "activation": model.activation}
    return None


def _build(arch: dict[str, Any], engine: Engine) -> Module:
    """A new model of the architecture `arch` (its weights are overwritten)."""
    kind = arch["class"]
    if kind == "MLP":
        return MLP(arch["nin"], arch["nouts"], activation=arch["activation"], engine=engine, seed=0)
    if kind == "Layer":
        return Layer(arch["nin"], arch["nout"], activation=arch["activation"], engine=engine, seed=0)
    return Neuron(arch["nin"], activation=arch["activation"], engine=engine, seed=0)


def _parameter_count(arch: dict[str, Any]) -> int | None:
    """How many parameters the (checked) architecture `arch` has; None where
    MLP(), Layer() or Neuron() would refuse it (they name what is wrong)."""
    kind = arch["class"]
    if kind == "MLP":
        sizes = [arch["nin"]] + arch["nouts"]
    else:
        sizes = [arch["nin"], arch["nout"] if kind == "Layer" else 1]
    if len(sizes) < 2 or min(sizes) < 1 or arch["activation"] not in ACTIVATIONS:
        return None
    return sum((nin + 1) * nout for nin, nout in zip(sizes, sizes[1:]))


def save(model: Module, path: PathLike, optimizer: Any = None) -> None:
    """Write `model`'s parameters (and architecture) and an optimizer's state to a JSON file.

    Args:
        model: An MLP, Layer or Neuron (load() can rebuild it), or any
            Module with named_parameters() (load() loads into a given one).
        path: The file to write; replaced if it exists, atomically.
        optimizer: None, or an optimizer with state_dict() giving JSON data
            (numbers, strings, lists, dicts), such as SGD or Adam.

    Raises:
        TypeError: `model` has no named_parameters(), `optimizer` has no
            state_dict(), or its state is not JSON data.
        ValueError: A parameter is NaN or infinite (JSON has neither), two
            parameters have the same name, or the optimizer's state holds
            NaN or infinity.
    """
    if not callable(getattr(model, "named_parameters", None)):
        raise TypeError(f"save() takes a Module (with named_parameters()), not {type(model).__name__}")
    params: dict[str, float] = {}
    for name, p in model.named_parameters():
        value = p.data
        if not math.isfinite(value):
            raise ValueError(f"parameter {name!r} is {value!r}: a model with a NaN or infinite "
                             "parameter is not saved (JSON has neither)")
        if name in params:          # a file holds one value per name
            raise ValueError(_twice(model, name))
        params[name] = value
    document: dict[str, Any] = {"format": FORMAT, "version": VERSION,
                                "model": type(model).__qualname__,
                                "architecture": _architecture(model), "parameters": params,
                                "optimizer": None}
    if optimizer is not None:
        if not callable(getattr(optimizer, "state_dict", None)):
            raise TypeError(f"the optimizer {type(optimizer).__name__} has no state_dict(): "
                            "save() stores an optimizer's state_dict()")
        document["optimizer"] = {"class": type(optimizer).__qualname__, "state": optimizer.state_dict()}
    try:    # the whole text first: an error leaves no file behind
        text = json.dumps(document, allow_nan=False, indent=1)
    except TypeError as exc:
        raise TypeError(f"the optimizer's state_dict() must be JSON data (numbers, strings, "
                        f"lists, dicts): {exc}") from None
    except ValueError:
        raise ValueError("the optimizer's state_dict() holds NaN or infinity, which JSON "
                         "cannot hold") from None
    _write_atomically(os.fspath(path), text)


def _twice(model: Any, name: str) -> str:
    return (f"{type(model).__name__}.named_parameters() gives the name {name!r} to two "
            "parameters: each needs its own name to be saved and loaded")


def _write_atomically(path: str, text: str) -> None:
    """Write to a temporary file in the same folder, then rename it over `path`.

    The temporary file is made as open() makes a file (mode 0o666 less the
    umask), not private as tempfile's are: the renamed file is the saved file."""
    if os.path.isdir(path):         # refused here, not after a temporary file beside it
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):   # named as the user gave it, not as the temporary file
        raise FileNotFoundError(errno.ENOENT, f"no such directory to save into: {folder!r}", path)
    while True:
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:     # another writer's name: draw again
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read(path: str) -> dict[str, Any]:
    """The file's document, checked for the format and version."""
    with open(path, "rb") as f:                     # FileNotFoundError names the path
        raw = f.read()
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except ValueError as exc:                       # not JSON (or not UTF-8 text)
        raise ValueError(f"{path} is not a Mini Autograd model file (not JSON: {exc})") from None
    except RecursionError:                          # arrays nested beyond the parser's depth
        raise ValueError(f"{path} is not a Mini Autograd model file (JSON nested too deeply)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{path} is not a Mini Autograd model file (no \"format\": {FORMAT!r})")
    version = document.get("version")
    if version != VERSION:
        raise ValueError(f"{path} is format version {version!r}; this version of Mini Autograd "
                         f"reads version {VERSION}")
    params = document.get("parameters")
    if not isinstance(params, dict):
        raise ValueError(f"{path} is damaged: its \"parameters\" are not a JSON object")
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path} is damaged: parameter {name!r} is {value!r}, not a number")
        try:
            number = float(value)
        except OverflowError:                       # an int beyond any float
            number = math.inf
        if not math.isfinite(number):               # (a literal such as 1e999 reads as inf)
            raise ValueError(f"{path} is damaged: parameter {name!r} is too large for a float")
        params[name] = number
    return document


def _check_architecture(path: str, arch: Any) -> dict[str, Any]:
    """The file's architecture, checked before anything is built from it."""
    ok = isinstance(arch, dict) and arch.get("class") in ("MLP", "Layer", "Neuron")
    if ok:
        sizes = {"MLP": ["nin"], "Layer": ["nin", "nout"], "Neuron": ["nin"]}[arch["class"]]
        ok = (all(type(arch.get(k)) is int for k in sizes) and isinstance(arch.get("activation"), str)
              and (arch["class"] != "MLP" or (isinstance(arch.get("nouts"), list)
                                              and all(type(n) is int for n in arch["nouts"]))))
    if not ok:
        raise ValueError(f"{path} is damaged: its architecture {arch!r} is not one load() builds")
    return arch


def load(path: PathLike, model: Module | None = None, optimizer: Any = None,
         engine: Engine = None) -> Any:
    """Read a file save() wrote: a model rebuilt from it, or loaded into `model`.

    Nothing is changed unless the whole file fits: every parameter is
    checked before the first is set, and the optimizer's state is loaded
    last.

    Args:
        path: The file to read.
        model: None to build a new model from the file's architecture (an
            MLP, Layer or Neuron was saved); else a Module to load the
            parameters into, by name: it must have exactly the file's
            parameter names (and, if of the saved class, its architecture).
        optimizer: None, or an optimizer of the class that was saved, with
            load_state_dict(); it gets the saved state.
        engine: The engine of a rebuilt model ("cython", "python" or the
            module; None for the default); a given `model` keeps its own.

    Returns:
        The model: the new one, or `model`.

    Raises:
        FileNotFoundError: There is no file at `path`.
        ValueError: The file is not one save() writes, has another format
            version, or does not fit `model` (the message names the first
            parameter or architecture field that differs); the file holds
            no optimizer state but `optimizer` is given; `model` is None and
            the file was saved from a Module load() cannot rebuild; `engine`
            is given with `model`; `model` gives two parameters the same name.
        TypeError: `optimizer` is not of the saved optimizer's class, or has
            no load_state_dict().
    """
    path = os.fspath(path)
    document = _read(path)
    params: dict[str, Any] = document["parameters"]
    arch = document.get("architecture")
    if model is None:
        if arch is None:
            raise ValueError(f"{path} holds the parameters of a {document.get('model')}, which load() "
                             "cannot build: give a model to load them into, load(path, model=...)")
        arch = _check_architecture(path, arch)
        _engine_module(engine)                      # an unknown engine is the caller's error
        count = _parameter_count(arch)              # before building: a file cannot make a
        if count is not None and count != len(params):  # model larger than itself
            raise ValueError(f"{path} is damaged: its architecture has {count} parameters but "
                             f"the file holds {len(params)}")
        try:
            model = _build(arch, engine)
        except (TypeError, ValueError) as exc:      # sizes or an activation MLP() refuses
            raise ValueError(f"{path} is damaged: its architecture {arch!r} is not one load() "
                             f"builds ({exc})") from None
    else:
        if engine is not None:
            raise ValueError("engine= is for a model load() builds; a given model keeps its engine")
        mine = _architecture(model)
        if arch is not None and mine is not None and mine["class"] == arch.get("class"):
            for key in sorted(set(mine) | set(arch)):
                if mine.get(key) != arch.get(key):
                    raise ValueError(f"{path} does not fit this model: its {arch.get('class')}'s {key} "
                                     f"is {arch.get(key)!r}, this model's is {mine.get(key)!r}")
    named = model.named_parameters()
    names: set[str] = set()
    for name, _ in named:
        if name not in params:
            raise ValueError(f"{path} does not fit this model: it has no parameter {name!r}")
        if name in names:
            raise ValueError(_twice(model, name))
        names.add(name)
    if len(params) != len(named):
        extra = next(name for name in params if name not in names)
        raise ValueError(f"{path} does not fit this model: its parameter {extra!r} is not the model's")
    saved: Any = document.get("optimizer")
    if optimizer is not None:
        if not isinstance(saved, dict) or "state" not in saved:
            raise ValueError(f"{path} holds no optimizer state (it was saved without optimizer=)")
        if type(optimizer).__qualname__ != saved.get("class"):
            raise TypeError(f"{path} holds the state of an optimizer of class {saved.get('class')}, "
                            f"not {type(optimizer).__qualname__}")
        if not callable(getattr(optimizer, "load_state_dict", None)):
            raise TypeError(f"the optimizer {type(optimizer).__name__} has no load_state_dict()")
    if optimizer is not None:       # first: if it refuses its state, nothing has changed
        optimizer.load_state_dict(saved["state"])
    for name, p in named:
        p.data = params[name]
    return model
