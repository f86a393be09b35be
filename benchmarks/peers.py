"""The engines a benchmark compares: the compiled core, the pure reference,
and, where installed, micrograd and PyTorch (the `bench` extra)."""
import importlib

import pytest

ENGINES = ["cython", "python", "micrograd", "torch"]


def value_factory(who):
    """A callable making a leaf scalar for `who`, or a pytest skip."""
    if who == "cython":
        return pytest.importorskip("autograd.core", reason="the compiled core is not built").Value
    if who == "python":
        return importlib.import_module("autograd.pure").Value
    if who == "micrograd":
        engine = pytest.importorskip("micrograd.engine",
                                     reason="micrograd is not installed (pip install '.[bench]')")
        return engine.Value
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[bench]')")
    torch.set_num_threads(1)
    return lambda x: torch.tensor(float(x), dtype=torch.float64, requires_grad=True)


def zero_grads(who, params):
    for p in params:
        if who == "torch":
            p.grad = None
        else:
            p.grad = 0


def backward(who, root):
    if who == "torch":
        root.backward(retain_graph=True)
    else:
        root.backward()


def update(who, params, lr):
    if who == "torch":
        import torch
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
    else:
        for p in params:
            p.data -= lr * p.grad


def data_of(who, v):
    return v.item() if who == "torch" else v.data
