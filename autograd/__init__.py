"""Mini Autograd: a micrograd-compatible scalar autograd engine, compiled.

    from autograd import Value
    a, b = Value(2.0), Value(-3.0)
    c = (a * b + 1).tanh()
    c.backward()
    a.grad, b.grad

`autograd.BACKEND` says which engine is in use: "cython" (the compiled core,
autograd.core) or "python" (the pure reference, autograd.pure).
"""
from autograd.engine import (BACKEND, Replay, Value, dense, dot, enable_grad, function, is_grad_enabled,
                             logsumexp, no_grad, vsum)
from autograd.higher import grad, gradients, hessian, value_and_grad

__all__ = ["BACKEND", "Value", "no_grad", "enable_grad", "is_grad_enabled", "vsum", "dot", "dense", "logsumexp",
           "log_softmax", "softmax", "function", "Replay", "Graph", "draw_dot",
           "gradients", "grad", "value_and_grad", "hessian", "save", "load"]


def __getattr__(name):
    # the Graphviz pictures load on first use, so `import autograd` stays light
    if name in ("Graph", "draw_dot"):
        from autograd import graph
        return getattr(graph, name)
    if name in ("log_softmax", "softmax"):
        from autograd import nn
        return getattr(nn, name)
    if name in ("save", "load"):
        from autograd import persist
        return getattr(persist, name)
    raise AttributeError(f"module 'autograd' has no attribute {name!r}")
__version__ = "0.1.0"
