"""Derivatives of derivatives: `gradients`, and HIPS autograd's `grad`,
`value_and_grad` and `hessian`, which nest as HIPS autograd's do.

    from autograd import Value, gradients, grad
    x = Value(0.5)
    y = x.tanh()
    [dy] = gradients(y, [x], create_graph=True)    # 1 - tanh(x)**2, as a node
    [d2y] = gradients(dy, [x])                      # -2 tanh(x) (1 - tanh(x)**2)
    grad(grad(lambda x: x.tanh()))(0.5)             # the same, over numbers
    grad(grad(lambda x, y: x * x * y, 0), 1)(3.0, 2.0)      # 2x = 6, across arguments

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

import operator
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from autograd.pure import _WITH_OPS, FUNCTIONS

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
    # division, power and log in a derivative are IEEE's (engine._ieee_div, _pow,
    # _log: inf or NaN at a pole, as backward() computes, instead of an exception)
    div, pow_, log = engine._ieee_div, engine._ieee_pow, engine._ieee_log
    if kind in ("div", "idiv"):
        return [(kids[0], div(g, kids[1])), (kids[1], -div(node * g, kids[1]))]
    if kind == "neg":
        return [(kids[0], -g)]
    if kind in ("powc", "ipowc"):                   # x ** c: c * x ** (c - 1)
        return [] if exponent == 0.0 else [(kids[0], exponent * pow_(kids[0], exponent - 1.0) * g)]
    if kind in ("pow", "ipow"):                     # x ** y
        x, y = kids
        out = [] if y.data == 0.0 else [(x, y * pow_(x, y - 1.0) * g)]
        if not (x.data == 0.0 and y.data >= 0.0):
            out.append((y, node * log(x) * g))
        return out
    if kind == "ilog":
        return [(kids[0], div(g, kids[0]))]
    if kind == "relu":                              # a constant mask
        return [(kids[0], g)] if node.data > 0.0 else []
    if kind == "abs":
        x = kids[0].data
        return [(kids[0], g)] if x > 0.0 else [(kids[0], -g)] if x < 0.0 else []
    if kind in FUNCTIONS:                           # tanh, exp, sin, ...: one row each
        _, slope, divides = FUNCTIONS[kind]
        s = slope(_WITH_OPS, kids[0], node)
        return [(kids[0], div(g, s) if divides else s * g)]
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


class _FirstOrderOnly(TypeError):
    """A custom node whose derivative cannot be written with ops: backward()
    goes through it, create_graph=True cannot."""


def _custom_contributions(kids, partials, op, g, engine):
    if partials is None:
        raise _FirstOrderOnly(f"cannot differentiate through the custom node '{op}' with "
                              f"create_graph=True: its `_backward` adds numbers into .grad. Make "
                              f"it with autograd.function(forward, *partials), with partials "
                              f"written with Value ops, to differentiate it again")
    out = []
    for k, (kid, partial) in enumerate(zip(kids, partials)):
        try:
            d = partial(*kids)
        except Exception as exc:
            raise _FirstOrderOnly(f"cannot differentiate the custom node '{op}' again: its "
                                  f"partial derivative {k} does not take Values "
                                  f"({type(exc).__name__}: {exc}); write it with Value ops "
                                  f"(x.exp(), x * y, ...) rather than math functions") from exc
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
    """d output / d input for each of `inputs`, as Values, touching no .grad (as torch.autograd.grad).

    An input that `output` does not depend on gets Value(0.0).  Without
    create_graph the results are leaves holding backward()'s numbers; with
    create_graph=True they are nodes of the graph, built from each op's
    derivative written with ops, so they can be differentiated again.

    Args:
        output: The Value differentiated.
        inputs: A list of Values of the output's engine.
        create_graph: Build the derivatives as nodes of the graph.

    Returns:
        One Value per input, in order.

    Raises:
        TypeError: `output` is not a Value, `inputs` is a single Value or
            holds something other than Values of the output's engine, or
            (with create_graph=True) the graph holds a custom node whose
            derivative is not written with Value ops.

    Examples:
        >>> from autograd.pure import Value
        >>> x = Value(3.0)
        >>> y = x * x * x
        >>> [dy] = gradients(y, [x], create_graph=True)
        >>> [d2y] = gradients(dy, [x])
        >>> dy.data, d2y.data
        (27.0, 18.0)
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
    # A node older than every input the output uses cannot lead to one: the sweep stops
    # after the oldest of them, so a grad inside a grad does not emit adjoints for the
    # outer graph below it.  The core's sweep stops at the same node (csrc/higher.pxi).
    left = {x for x in inputs if x in rules}
    for node in nodes:
        if not left:
            break
        left.discard(node)
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


# -- the functional API (HIPS autograd's names) ------------------------------------------
#
# Each call of a grad'ed function differentiates with respect to leaves of its own: a number
# in the differentiated argument becomes a fresh leaf, a Value a fresh identity node over it
# (a one-input vsum: the same bits, derivative 1).  The identity node is what keeps nested
# calls apart (no "perturbation confusion"): the inner call differentiates with respect to its
# own node, so the outer Value's other uses are constants for it; and the node is computed
# from the outer Value, so the outer call's derivative flows through it.
#
# The leaves are made first, so a node made before the first of them comes from outside the
# call (an argument not differentiated, a closure over an outer Value, an outer call's leaf).
# Creation order is a topological order in both engines, so one discovery sweep from the
# output (Value._uses) tells whether the output involves anything from outside and which
# leaves it used.  Outside Values involved: the gradients are built with create_graph=True and
# returned as Values in the graph, so an outer call can differentiate them again.  Nothing
# from outside: the result is plain floats, backward()'s numbers, as over plain numbers always.

_active = threading.local()


def _active_engines():
    """This thread's calls in progress, by their engines, innermost last: an
    inner call over plain numbers makes its leaves in its enclosing call's
    engine, so that they mix with the outer Values its function closes over."""
    if not hasattr(_active, "engines"):
        _active.engines = []
    return _active.engines


def value_and_grad(f: Callable[..., Any], argnum: int | tuple[int, ...] = 0
                   ) -> Callable[..., tuple[Any, Any]]:
    """A function giving (f(*args, **kwargs), d f / d args[argnum]).

    args[argnum] is a number, a Value, or a list of them (then its gradient
    is a list).  `argnum` may be a tuple of ints (negative ones count from
    the end): the gradients then come as a tuple, one per argument.
    Keyword arguments go to f as they are and are not differentiated.

    The results are floats when f's output involves no Value from outside
    the call.  They are Values in the graph, built so that they can be
    differentiated again, when args[argnum] holds Values, or when the output
    depends on a Value from outside (another argument, a closure over a
    Value, an enclosing grad's argument): so grad(grad(f)), grad(grad(f, 0),
    1) and grad of a function that calls grad all give true derivatives.
    (Numbers in, outside Values involved, and a custom node on the way whose
    derivative is not written with ops: backward()'s numbers, with a
    UserWarning that their dependence on the outside Values is not kept.)

    An argument the output does not depend on gets a zero gradient (0.0, or
    zeros in a list), and f returning a plain number (a constant) gives
    zeros for all; both with a UserWarning naming the arguments, as HIPS
    autograd warns.

    Args:
        f: The function: it takes the arguments and returns one Value (or a
            plain number, a constant).
        argnum: The position of the argument differentiated in, or a tuple
            of positions.

    Returns:
        A function taking f's arguments and giving (value, gradient).

    Raises:
        TypeError: `argnum` is not an int or a tuple of ints; when the
            returned function is called, f returns neither a Value nor a
            number, or an argument differentiated in is neither a number
            nor a Value nor a list of them.
        ValueError: `argnum` is (); when the returned function is called,
            a position is out of range or repeated, or an argument
            differentiated in is an empty list.

    Examples:
        >>> value_and_grad(lambda x: x * x * x)(2.0)
        (8.0, 12.0)
    """
    positions, as_tuple = _argnums(argnum)

    def value_and_gradient(*args, **kwargs):
        call = _Call(f, positions, args, kwargs)
        out = call.run()
        call.finish(out, "value_and_grad")
        grads = call.first_derivatives(out, "value_and_grad")
        return call.value(out), call.shaped(grads, as_tuple)
    return value_and_gradient


def grad(f: Callable[..., Any], argnum: int | tuple[int, ...] = 0) -> Callable[..., Any]:
    """A function giving d f / d args[argnum], as HIPS autograd's grad.

    The gradient of value_and_grad(f, argnum), with the same rules (floats,
    or Values in the graph when Values from outside are involved; a tuple of
    gradients for a tuple argnum; zero, with a UserWarning, for an argument
    f does not use or a constant output).

    Args:
        f: The function: it takes the arguments and returns one Value (or a
            plain number, a constant).
        argnum: The position of the argument differentiated in, or a tuple
            of positions.

    Returns:
        A function taking f's arguments and giving the gradient.

    Raises:
        TypeError: As value_and_grad() raises.
        ValueError: As value_and_grad() raises.

    Examples:
        >>> grad(lambda x, y: x * x * y, 0)(3.0, 2.0)
        12.0
        >>> grad(grad(lambda x: x * x * x))(2.0)
        12.0
    """
    positions, as_tuple = _argnums(argnum)

    def gradient(*args, **kwargs):
        call = _Call(f, positions, args, kwargs)
        out = call.run()
        call.finish(out, "grad")
        return call.shaped(call.first_derivatives(out, "grad"), as_tuple)
    return gradient


def hessian(f: Callable[..., Any], argnum: int | tuple[int, ...] = 0) -> Callable[..., Any]:
    """A function giving the second derivatives of f in args[argnum].

    A number for one number, a list of rows for a list.  For a tuple argnum,
    a tuple of tuples of blocks, block `[i][j]` holding d2 f / d args[argnum[i]]
    d args[argnum[j]] (as JAX's hessian).  The same rules as grad: floats, or
    Values in the graph when Values from outside are involved; zeros, with a
    UserWarning, for an argument f does not use or a constant output.

    Args:
        f: The function: it takes the arguments and returns one Value (or a
            plain number, a constant).
        argnum: The position of the argument differentiated in, or a tuple
            of positions.

    Returns:
        A function taking f's arguments and giving the second derivatives.

    Raises:
        TypeError: As value_and_grad() raises.
        ValueError: As value_and_grad() raises.

    Examples:
        >>> hessian(lambda xs: xs[0] * xs[0] * xs[1])([3.0, 2.0])
        [[4.0, 6.0], [6.0, 0.0]]
    """

    positions, as_tuple = _argnums(argnum)

    def hess(*args, **kwargs):
        call = _Call(f, positions, args, kwargs)
        out = call.run()
        call.finish(out, "hessian")
        if call.const:
            rows = [call.zeros() for _ in call.leaves]
        else:
            rows = [gradients(g, call.leaves, create_graph=call.nested)
                    for g in gradients(out, call.leaves, create_graph=True)]
            if not call.nested:
                rows = [[h.data for h in row] for row in rows]
        return call.blocks(rows, as_tuple)
    return hess


def _argnums(argnum):
    """(the argument positions as a tuple, whether argnum was a tuple); a
    TypeError for anything but an int or a non-empty tuple of ints."""
    as_tuple = isinstance(argnum, tuple)
    items = argnum if as_tuple else (argnum,)
    if as_tuple and not items:
        raise ValueError("argnum=() names no argument to differentiate in")
    positions = []
    for a in items:
        if isinstance(a, bool):             # an int to Python, but surely a mistake here
            raise TypeError(f"argnum must be an int or a tuple of ints, not bool ({argnum!r})")
        try:
            positions.append(operator.index(a))
        except TypeError:
            raise TypeError(f"argnum must be an int or a tuple of ints, not "
                            f"{type(a).__name__} ({argnum!r})") from None
    return tuple(positions), as_tuple


class _Call:
    """One call of f with fresh leaves in its differentiated arguments."""

    def __init__(self, f, positions, args, kwargs):
        self.f, self.kwargs = f, kwargs
        self.positions = _in_range(positions, len(args))
        self.engine = _engine_of_call([args[p] for p in self.positions], args, kwargs)
        self.values_in = False          # a Value among the differentiated arguments
        self.const = self.nested = False    # set by finish()
        self.leaves = []                # every argument's leaves, in order: leaves[0] is the oldest
        self.spans = []                 # per argument: (its first leaf, its last + 1, is it a list)
        self.args = list(args)
        for p in self.positions:
            x = args[p]
            many = isinstance(x, (list, tuple))
            items = list(x) if many else [x]
            if not items:
                raise ValueError(f"cannot differentiate in an empty list (argument {p})")
            first = len(self.leaves)
            self.leaves += [self._leaf(v) for v in items]
            self.spans.append((first, len(self.leaves), many))
            self.args[p] = self.leaves[first:] if many else self.leaves[first]

    def _leaf(self, v):
        engine = self.engine
        if isinstance(v, engine.Value):
            self.values_in = True
            return engine.vsum([v])     # an identity node of this call's own (see above)
        if _engine_for(v) is not None:
            raise TypeError(f"cannot differentiate in Values of two engines "
                            f"({_engine_for(v).__name__} and {engine.__name__})")
        if not _is_plain_number(v):
            raise TypeError(f"cannot differentiate in a {type(v).__name__}: give numbers or Values")
        return engine.Value(float(v))

    def run(self):
        """f's output, with this call's engine the one nested calls default to."""
        stack = _active_engines()
        stack.append(self.engine)
        try:
            return self.f(*self.args, **self.kwargs)
        finally:
            stack.pop()

    def finish(self, out, who):
        """Check f's output, and warn about the arguments it did not use.  Sets
        self.const (f returned a plain number) and self.nested (the results
        stay in the graph: Values came in, or the output involves Values from
        outside the call)."""
        name = getattr(self.f, "__name__", repr(self.f))
        if _is_plain_number(out):
            _warn(f"{who}: {name} returned a constant ({type(out).__name__}), not a Value "
                  f"computed from its arguments: its derivatives are zero")
            self.const, self.nested = True, self.values_in
            return
        if _engine_for(out) is not self.engine:
            if _engine_for(out) is not None:
                raise TypeError(f"{name} returned a Value of {_engine_for(out).__name__}, but it "
                                f"is differentiated in Values of {self.engine.__name__}")
            raise TypeError(f"{name} must return one Value (a scalar) to be differentiated, "
                            f"not {type(out).__name__}")
        used, outside = out._uses(self.leaves)
        unused = [p for p, (first, last, _) in zip(self.positions, self.spans)
                  if not any(used[first:last])]
        if unused:
            which = ", ".join(str(p) for p in unused)
            _warn(f"{who}: the output of {name} does not depend on argument"
                  f"{'s' if len(unused) > 1 else ''} {which}: the derivatives in "
                  f"{'them' if len(unused) > 1 else 'it'} are zero")
        self.const, self.nested = False, outside or self.values_in

    def value(self, out):
        """f's output as value_and_grad gives it: a float, or the Value itself
        when the results stay in the graph."""
        if self.const:
            return float(out)
        return out if self.nested else out.data

    def first_derivatives(self, out, who):
        """d out / d leaf for every leaf: floats, or Values in the graph."""
        if self.const:
            return self.zeros()
        if self.nested:
            try:
                return gradients(out, self.leaves, create_graph=True)
            except _FirstOrderOnly as exc:
                # Numbers came in, and the output involves outside Values only as constants
                # of a function with a lecture-style custom node (a model's parameters,
                # say): backward()'s numbers, as before nesting existed, and a warning
                # that derivatives with respect to those outside Values are not kept.
                if self.values_in:
                    raise
                _warn(f"{who}: the output involves Values from outside the call, but the "
                      f"gradient is returned as numbers, without its dependence on them: {exc}")
                self.nested = False
        return [g.data for g in gradients(out, self.leaves)]

    def zeros(self):
        """A zero per leaf: Values when the results stay in the graph."""
        return [self.engine.Value(0.0) if self.nested else 0.0 for _ in self.leaves]

    def shaped(self, grads, as_tuple):
        """Per-leaf results as the arguments were: a list for a list, a tuple
        for a tuple argnum."""
        out = tuple(grads[first:last] if many else grads[first] for first, last, many in self.spans)
        return out if as_tuple else out[0]

    def blocks(self, rows, as_tuple):
        """A matrix over all leaves cut into blocks per pair of arguments."""
        def block(si, sj):
            (fi, li, mi), (fj, lj, mj) = si, sj
            cut = [row[fj:lj] if mj else row[fj] for row in rows[fi:li]]
            return cut if mi else cut[0]
        out = tuple(tuple(block(si, sj) for sj in self.spans) for si in self.spans)
        return out if as_tuple else out[0][0]


def _in_range(positions, nargs):
    """The positions counted from 0; a ValueError for one out of range or named twice."""
    out = []
    for a in positions:
        p = a + nargs if a < 0 else a
        if not 0 <= p < nargs:
            raise ValueError(f"argnum {a} is out of range for {nargs} positional "
                             f"argument{'s' if nargs != 1 else ''}")
        if p in out:
            raise ValueError(f"argnum {a} names argument {p} a second time")
        out.append(p)
    return out


def _engine_of_call(differentiated, args, kwargs):
    """The engine whose leaves the call makes: that of the first Value among the
    differentiated arguments, else among the others (an inner grad given an
    outer Value), else the enclosing call's (an inner grad over numbers that
    closes over outer Values), else the engine in use."""
    for group in (differentiated, list(args) + list(kwargs.values())):
        for x in group:
            for v in (x if isinstance(x, (list, tuple)) else [x]):
                engine = _engine_for(v)
                if engine is not None:
                    return engine
    stack = _active_engines()
    if stack:
        return stack[-1]
    from autograd import engine as default
    return sys.modules[default.Value.__module__]


def _warn(message):
    # stacklevel 4: the user's call, through gradient() / hess() and finish()
    warnings.warn(message, UserWarning, stacklevel=4)


def _is_plain_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)
