"""Derivatives of derivatives: `gradients`, and HIPS autograd's `grad`,
`value_and_grad` and `hessian` over plain numbers.

    from autograd import Value, gradients, grad
    x = Value(0.5)
    y = x.tanh()
    [dy] = gradients(y, [x], create_graph=True)    # 1 - tanh(x)**2, as a node
    [d2y] = gradients(dy, [x])                      # -2 tanh(x) (1 - tanh(x)**2)
    grad(grad(lambda x: x.tanh()))(0.5)             # the same, over numbers

With create_graph=True the backward sweep emits nodes instead of numbers:
each op's derivative is written with ops (below, one rule per op, next to
the one the engines' backward() uses), into the same graph, so the results
can be differentiated again, to any order.  The compiled core emits the
same nodes from its own sweep (csrc/higher.pxi), except below custom nodes,
whose derivatives are built here.  Nodes are visited in reverse
creation order and each node's contributions are added in the order
backward() adds them, so the values are backward()'s, bit for bit.  Both
engines build the same nodes in the same order: their results agree bit for
bit.  No recursion: the graph is walked with an explicit stack.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any


__all__ = ["gradients", "grad", "value_and_grad", "hessian"]


# -- the graph below an output ----------------------------------------------------------

def _nodes_below(output, engine):
    """(nodes in reverse creation order, each node's rule): every node
    `output` depends on, found with an explicit stack.  Values hash by
    identity, as micrograd's do."""
    rules = {}
    stack = [output]
    while stack:
        node = stack.pop()
        if node not in rules:
            rules[node] = rule = node._rule()
            stack.extend(rule[1])
    nodes = engine._in_creation_order(rules)
    nodes.reverse()
    return nodes, rules


def _engine_for(x):
    """The engine module whose Value x is (a subclass's too), or None."""
    import autograd.pure
    if isinstance(x, autograd.pure.Value):
        return autograd.pure
    core = sys.modules.get("autograd.core")
    if core is not None and isinstance(x, core.Value):
        return core
    return None


# -- each op's derivative, written with ops ---------------------------------------------
# contributions(rule, node, g): [(child, d output / d child * g)] in the order the
# engines' backward() adds them; a derivative that is zero for the current data (relu's
# and abs's masks, pow's special cases) contributes nothing.

def _contributions(rule, node, g, engine):
    kind, kids, exponent, partials, op = rule
    if kind == "leaf":
        return []
    if kind == "add":
        return [(kids[0], g), (kids[1], g)]
    if kind == "sub":
        return [(kids[0], g), (kids[1], -g)]
    if kind == "mul":
        return [(kids[0], kids[1] * g), (kids[1], kids[0] * g)]
    if kind == "div":
        return [(kids[0], g / kids[1]), (kids[1], -((node * g) / kids[1]))]
    if kind == "neg":
        return [(kids[0], -g)]
    if kind == "powc":                              # x ** c: c * x ** (c - 1)
        return [] if exponent == 0.0 else [(kids[0], exponent * kids[0] ** (exponent - 1.0) * g)]
    if kind == "pow":                               # x ** y
        x, y = kids
        out = [] if y.data == 0.0 else [(x, y * x ** (y - 1.0) * g)]
        if not (x.data == 0.0 and y.data >= 0.0):
            out.append((y, node * x.log() * g))
        return out
    if kind == "relu":                              # a constant mask
        return [(kids[0], g)] if node.data > 0.0 else []
    if kind == "abs":
        x = kids[0].data
        return [(kids[0], g)] if x > 0.0 else [(kids[0], -g)] if x < 0.0 else []
    if kind == "tanh":
        return [(kids[0], (1.0 - node * node) * g)]
    if kind == "sigmoid":
        return [(kids[0], node * (1.0 - node) * g)]
    if kind == "exp":
        return [(kids[0], node * g)]
    if kind == "log":
        return [(kids[0], g / kids[0])]
    if kind == "sqrt":
        return [(kids[0], g / (2.0 * node))]
    if kind == "sum":
        return [(kid, g) for kid in kids]
    if kind == "dot":                               # bias, w0..w(n-1), x0..x(n-1)
        n = len(kids) // 2
        out = [(kids[0], g)]
        for w, x in zip(kids[1:n + 1], kids[n + 1:]):
            out += [(w, x * g), (x, w * g)]
        return out
    if kind == "lse":                               # the softmax
        return [(kid, (kid - node).exp() * g) for kid in kids]
    if kind == "custom":
        return _custom_contributions(kids, partials, op, g, engine)
    raise AssertionError(f"no derivative rule for {kind!r}")


def _custom_contributions(kids, partials, op, g, engine):
    if partials is None:
        raise TypeError(f"cannot differentiate through the custom node '{op}' with "
                        f"create_graph=True: its `_backward` adds numbers into .grad. Make it "
                        f"with autograd.function(forward, *partials), with partials written "
                        f"with Value ops, to differentiate it again")
    out = []
    for k, (kid, partial) in enumerate(zip(kids, partials)):
        try:
            d = partial(*kids)
        except Exception as exc:
            raise TypeError(f"cannot differentiate the custom node '{op}' again: its partial "
                            f"derivative {k} does not take Values ({type(exc).__name__}: {exc}); "
                            f"write it with Value ops (x.exp(), x * y, ...) rather than math "
                            f"functions") from exc
        if not isinstance(d, engine.Value):
            d = engine.Value(_number(d, f"the partial derivative {k} of '{op}'"))
        out.append((kid, d * g))
    return out


def _number(x, what):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        try:
            return float(x)
        except (TypeError, ValueError):
            raise TypeError(f"{what} must be a number or a Value, not {type(x).__name__}") from None
    return float(x)


# -- gradients ----------------------------------------------------------------------------

def gradients(output: Any, inputs: Sequence[Any], create_graph: bool = False) -> list[Any]:
    """d output / d input for each of `inputs`, as Values, touching no .grad
    (as torch.autograd.grad).

    An input that `output` does not depend on gets Value(0.0).  Without
    create_graph the results are leaves holding backward()'s numbers; with
    create_graph=True they are nodes of the graph, built from each op's
    derivative written with ops, so they can be differentiated again.
    """
    if not create_graph:
        try:                                        # the engine checks the inputs' types
            return output._gradient_values(inputs)
        except (AttributeError, TypeError):
            _checked_inputs(output, inputs)         # names what was wrong
            raise
    engine, inputs = _checked_inputs(output, inputs)
    if hasattr(type(output), "_derivatives"):          # the compiled core emits the same nodes
        emitted = output._derivatives(inputs)
        if emitted is not None:
            return [g if g is not None else engine.Value(0.0) for g in emitted]
    return _built_with_ops(output, inputs, engine)


def _built_with_ops(output, inputs, engine):
    """The derivative graph built with the engine's ops, rule by rule."""
    nodes, rules = _nodes_below(output, engine)
    pending = {output: [engine.Value(1.0)]}           # each node's contributions, in order
    adjoint = {}
    for node in nodes:
        terms = pending.pop(node, None)
        if terms is None:
            continue
        g = adjoint[node] = terms[0] if len(terms) == 1 else engine.vsum(terms)
        for child, term in _contributions(rules[node], node, g, engine):
            if child in pending:
                pending[child].append(term)
            else:
                pending[child] = [term]
    return [adjoint[x] if x in adjoint else engine.Value(0.0) for x in inputs]


def _checked_inputs(output, inputs):
    """(the output's engine, the inputs as a list), or a TypeError naming
    what is wrong."""
    engine = _engine_for(output)
    if engine is None:
        raise TypeError(f"gradients() takes an output Value (a scalar), not {type(output).__name__}")
    if isinstance(inputs, engine.Value):
        raise TypeError("gradients() takes a list of input Values: write [x] for one")
    inputs = list(inputs)
    for k, x in enumerate(inputs):
        if not isinstance(x, engine.Value):
            raise TypeError(f"inputs[{k}] must be a Value of the output's engine "
                            f"({engine.__name__}), not {type(x).__name__}")
    return engine, inputs


# -- the functional API over numbers (HIPS autograd's names) -------------------------------

def value_and_grad(f: Callable[..., Any], argnum: int = 0) -> Callable[..., tuple[Any, Any]]:
    """A function giving (f(*args), d f / d args[argnum]).

    args[argnum] is a number, a Value, or a list of them (then the gradient
    is a list).  Numbers in give floats out; Values in give Values out,
    nodes of the graph, so that grad(grad(f)) works."""
    def value_and_gradient(*args):
        out, leaves, nested, many = _call_at(f, args, argnum)
        grads = gradients(out, leaves, create_graph=nested)
        if not nested:
            out, grads = out.data, [g.data for g in grads]
        return out, (grads if many else grads[0])
    return value_and_gradient


def grad(f: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """A function giving d f / d args[argnum] (see value_and_grad)."""
    value_and_gradient = value_and_grad(f, argnum)

    def gradient(*args):
        return value_and_gradient(*args)[1]
    return gradient


def hessian(f: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """A function giving the matrix of second derivatives of f in
    args[argnum] (a list of rows for a list of inputs; a number for one)."""
    def hess(*args):
        out, leaves, nested, many = _call_at(f, args, argnum)
        rows = [gradients(g, leaves, create_graph=nested)
                for g in gradients(out, leaves, create_graph=True)]
        if not nested:
            rows = [[h.data for h in row] for row in rows]
        return rows if many else rows[0][0]
    return hess


def _call_at(f, args, argnum):
    """f(*args) with args[argnum] made of leaves to differentiate in: (its
    output, the leaves, whether they came in as Values, whether args[argnum]
    is a list)."""
    if not -len(args) <= argnum < len(args):
        raise IndexError(f"argnum {argnum} is out of range for {len(args)} arguments")
    x = args[argnum]
    many = isinstance(x, (list, tuple))
    leaves, nested = _leaves(x)
    new = list(args)
    new[argnum] = leaves if many else leaves[0]
    out = f(*new)
    _check_scalar(out, f)
    return out, leaves, nested, many


def _leaves(x):
    """The Values to differentiate in, and whether they came in as Values
    (then the results stay in the graph)."""
    from autograd import engine as default
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    if not items:
        raise ValueError("cannot differentiate in an empty list")
    values = [v for v in items if not _is_plain_number(v)]
    if not values:
        return [default.Value(_number(v, "the argument")) for v in items], False
    engine = _engine_for(values[0])
    if engine is None:
        raise TypeError(f"cannot differentiate in a {type(values[0]).__name__}: "
                        f"give numbers or Values")
    return [v if isinstance(v, engine.Value) else engine.Value(_number(v, "the argument"))
            for v in items], True


def _is_plain_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_scalar(out, f):
    if _engine_for(out) is None:
        name = getattr(f, "__name__", repr(f))
        raise TypeError(f"{name} must return one Value (a scalar) to be differentiated, "
                        f"not {type(out).__name__}")
