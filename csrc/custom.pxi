# Custom nodes: a user's op (Value(data, _children, _op) with `_backward`, or autograd.function).
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.

# ---------------------------------------------------------------------------
# Custom nodes: a user's op, whose rules are Python code.
#
# A custom node's handle lives as long as its node does: the handle holds the
# node's Python state (the `_backward` function, which usually captures the
# handle itself, as micrograd's closures capture `out`), and every node that
# uses a KEEP node holds its handle in its own handle's `kids`.  So the
# objects form the same graph as micrograd's, visible to the cyclic GC, and
# a closure that captures its own output is collected with it.
# ---------------------------------------------------------------------------

@cython.auto_pickle(False)
cdef class _Custom:
    """What a custom node runs: a lecture-style `_backward` function, or the
    forward formula and partial derivatives of an autograd.function."""
    cdef str op              # the node's `_op`
    cdef object backward     # callable(); adds into the children's grads
    cdef object forward      # callable(*inputs) -> number, or None
    cdef tuple partials      # callables(*inputs) -> d out / d input_k, or None

    def __cinit__(self, str op, backward=None, forward=None, tuple partials=None):
        self.op = op
        self.backward = backward
        self.forward = forward
        self.partials = partials


cdef int _name_in_error(BaseException exc, str op) except -1:
    """Say in an exception from a user's code which custom node ran it."""
    if hasattr(exc, "add_note"):        # Python 3.11+
        exc.add_note("(raised by the custom node '%s')" % op)
    return 0


cdef list _child_data(Value h):
    """The data of the custom node h's children, as floats."""
    cdef Py_ssize_t n = A.b[h.idx], i, first, k
    cdef list xs = _nones(n)           # a GC point: the node is read after it
    i = h.idx
    if not _is_live_handle(h) or A.op[i] != CUSTOM or A.b[i] != n:
        raise RuntimeError("a custom node changed while its inputs were read")
    first = A.a[i]
    for k in range(n):
        xs[k] = A.data[A.edges[first + k]]
    return xs


cdef int _function_backward(Value h, _Custom info) except -1:
    """The chain rule of an autograd.function node: each child's grad gets
    partial_k(*inputs) * grad, in order."""
    cdef Py_ssize_t i, n = A.b[h.idx], k, first
    cdef list xs = _child_data(h)
    cdef tuple partials = info.partials     # owned; one per child (checked here)
    cdef double small[16]
    cdef double* ds = &small[0] if n <= 16 else <double*>malloc(n * sizeof(double))
    cdef double g
    if ds == NULL:
        raise MemoryError()
    try:
        if len(partials) != n or len(xs) != n:
            raise RuntimeError("the custom node '%s' has %d inputs for %d partial derivatives"
                               % (info.op, n, len(partials)))
        for k in range(n):              # Python code: anything may happen meanwhile
            ds[k] = _real(partials[k](*xs), "the partial derivative %d of '%s'" % (k, info.op))
        # read the node again: a sweep keeps indices, but the node may have
        # been re-initialized as a leaf by that code
        i = h.idx
        if not _is_live_handle(h) or A.op[i] != CUSTOM or A.b[i] != n:
            return 0
        g = A.grad[i]
        first = A.a[i]
        for k in range(n):
            A.grad[A.edges[first + k]] += ds[k] * g
    finally:
        if ds != &small[0]:
            free(ds)
    return 0


cdef int _run_custom(Py_ssize_t i) except -1:
    """Node i's chain rule when it is a custom node: its Python code."""
    cdef PyObject* p = A.handle[i]
    if p == NULL:                       # its handle died during this sweep:
        return 0                        # it is no longer part of any graph
    cdef Value h = <Value>p             # owned from here on
    cdef _Custom info = h.custom
    if info is None:
        return 0                        # micrograd's default: `lambda: None`
    try:
        if info.backward is not None:
            info.backward()
        elif info.partials is not None:
            _function_backward(h, info)
    except BaseException as exc:
        _name_in_error(exc, info.op)
        raise
    return 0


cdef int _custom_forward(Py_ssize_t i) except -1:
    """Recompute a custom node's data with its forward formula."""
    cdef PyObject* p = A.handle[i]
    if p == NULL:
        return 0                        # dropped during this sweep
    cdef Value h = <Value>p
    cdef _Custom info = h.custom
    if info is None or info.forward is None:
        _no_forward_formula(info.op if info is not None else "")
    cdef list xs = _child_data(h)
    cdef double d
    try:
        d = _real(info.forward(*xs), "the result of '%s'" % info.op)
    except BaseException as exc:
        _name_in_error(exc, info.op)
        raise
    if _is_live_handle(h) and A.op[h.idx] == CUSTOM:
        A.data[h.idx] = d
    return 0


cdef int _no_forward_formula(str op) except -1:
    raise RuntimeError(
        "forward() cannot recompute the custom node '%s': it was made by "
        "Value(data, _children, _op) and has no forward formula. Make the op with "
        "autograd.function(forward, *partials) to replay it." % op)


cdef int _check_replayable(idx_t* runs, Py_ssize_t nruns) except -1:
    """Raise before anything is recomputed if a custom node in these runs has
    no forward formula."""
    cdef Py_ssize_t r, i
    cdef _Custom info
    if not A.any_custom:
        return 0
    for r in range(nruns):
        for i in range(runs[2 * r + 1], runs[2 * r] + 1):
            if A.op[i] == CUSTOM and A.handle[i] != NULL:
                info = (<Value>A.handle[i]).custom
                if info is None or info.forward is None:
                    _no_forward_formula(info.op if info is not None else "")
    return 0


cdef inline void _track(Value h) noexcept:
    """Let the cyclic GC see h: it now holds references (kids, a custom
    node's code, attributes).  Plain handles are not tracked."""
    if not PyObject_GC_IsTracked(h):
        PyObject_GC_Track(<PyObject*>h)


cdef inline Py_ssize_t _kid_count(Py_ssize_t i) noexcept:
    cdef uint8_t op = A.op[i]
    if op == LEAF:
        return 0
    if _is_nary(op):
        return A.b[i]
    return 2 if (A.b[i] >= 0 and op != POWC and op != IPOWC) else 1


cdef tuple _kids_of(Value h):
    """The handles of h's children in order, made once and kept on h: the
    same objects on every call while h lives (micrograd's `_prev`)."""
    cdef tuple kids
    cdef Py_ssize_t i, n, k
    cdef Value c
    cdef int attempt
    for attempt in range(3):
        if h.kids is not None:
            return h.kids
        n = _kid_count(_index(h))
        if n == 0:
            return ()
        kids = PyTuple_New(n)           # a GC point: read the node after it
        i = _index(h)
        if h.kids is not None or _kid_count(i) != n:
            continue                    # changed meanwhile: start again
        # no Python code runs from here on (handles are not GC-tracked)
        for k in range(n):
            if _is_nary(A.op[i]):
                c = _handle_of(A.edges[A.a[i] + k])
            else:
                c = _handle_of(A.a[i] if k == 0 else A.b[i])
            Py_INCREF(c)
            PyTuple_SET_ITEM(kids, k, c)
        h.kids = kids
        _track(h)
        return kids
    raise RuntimeError("the graph kept changing while this Value's children were read")


cdef int _adopt_children(Value h) except -1:
    """h's node uses a KEEP node: it becomes KEEP and h holds its children's
    handles, so they live as long as h's node is used."""
    _kids_of(h)
    A.flags[h.idx] |= KEEP
    return 0


# ---------------------------------------------------------------------------
# autograd.function: a custom op with its forward formula and partials
# ---------------------------------------------------------------------------

@cython.auto_pickle(False)
cdef class Function:
    """A custom op: `forward(*inputs)` computes the result from numbers and
    `partials[k](*inputs)` its derivative with respect to input k.

    Calling it on Values (or numbers) makes one custom node, which
    backward() differentiates with the partials (child k's grad gets
    partial_k(*inputs) * grad, in order) and forward() recomputes with the
    forward formula.  Made by autograd.function(forward, *partials, name=...).
    """
    cdef readonly str name
    """The nodes' `_op`."""
    cdef readonly object forward
    """The forward formula."""
    cdef readonly tuple partials
    """The partial derivatives, one per input."""
    cdef _Custom info

    def __init__(self, forward, *partials, name=None):
        """Make the op from its forward formula and one partial derivative per input."""
        if self.info is not None:
            raise RuntimeError("a function is made once: call autograd.function() for a new one")
        if not callable(forward):
            raise TypeError("function(): forward must be callable, not %s" % type(forward).__name__)
        if not partials:
            raise TypeError("function(): give one partial derivative per input "
                            "(function(forward, d_dx, d_dy, ...))")
        for k, p in enumerate(partials):
            if not callable(p):
                raise TypeError("function(): partial derivative %d must be callable, not %s"
                                % (k, type(p).__name__))
        if name is None:
            name = getattr(forward, "__name__", "function")
        self.name = _exact_str(name, "Value _op")
        self.forward = forward
        self.partials = partials
        self.info = _Custom(self.name, None, forward, partials)

    def __call__(self, *args):
        """One custom node computed from `args`, one Value or number per partial."""
        if self.info is None:
            raise RuntimeError("this function was never made (Function.__new__ without __init__)")
        return _call_function(self, list(args))

    def __reduce__(self):               # pickles as what made it (its formulas by reference)
        return (functools.partial(Function, name=self.name), (self.forward,) + self.partials)

    def __repr__(self):
        return "function(%r, %d inputs)" % (self.name, len(self.partials))


def function(forward, *partials, name=None):
    """A custom op from its forward formula and one partial derivative per
    input, all functions of numbers:

        mul3 = function(lambda x, y: 3*x*y, lambda x, y: 3*y, lambda x, y: 3*x, name="mul3")
        z = mul3(a, b)          # one node; backward() and forward() both work
    """
    return Function(forward, *partials, name=name)


cdef Value _call_function(Function f, list kids):
    """One custom node: f's forward formula applied to kids (Values or numbers)."""
    cdef Py_ssize_t n = len(f.partials), k
    cdef double c
    cdef object o
    if len(kids) != n:
        raise TypeError("'%s' takes %d inputs (one per partial derivative), not %d"
                        % (f.name, n, len(kids)))
    # 1. Python-level input: numbers to floats, then the forward formula
    cdef list xs = _nones(n)
    for k in range(n):
        o = kids[k]
        if not isinstance(o, Value):
            if not _as_float(o, &c):
                raise TypeError("'%s' takes Values or real numbers, not %s" % (f.name, type(o).__name__))
            xs[k] = c
    for k in range(n):                  # no Python code between these reads
        o = kids[k]
        if isinstance(o, Value):
            xs[k] = A.data[_index(<Value>o)]
    cdef double d
    try:
        d = _real(f.forward(*xs), "the result of '%s'" % f.name)
    except BaseException as exc:
        _name_in_error(exc, f.name)
        raise
    if _no_grad_depth:
        return _new_leaf(d)
    for k in range(n):                  # constants become leaves with handles
        if not isinstance(kids[k], Value):
            kids[k] = _new_leaf(xs[k])
    cdef tuple kids_t = tuple(kids)     # a private list: nothing can change it
    cdef Value h = _new_handle()
    _commit_custom(h, kids_t, d, f.info)
    return h


cdef int _commit_custom(Value h, tuple kids, double d, _Custom info) except -1:
    """Steps 2 and 3 of making a custom node behind handle h: validate the
    children (Values), reserve, write the node and commit it.  No Python
    code runs here."""
    cdef Py_ssize_t n = len(kids), k, top, e
    for k in range(n):
        _check(<Value>kids[k])
    _reserve(1, n)
    top = A.n
    e = A.nedges
    for k in range(n):
        A.edges[e + k] = (<Value>kids[k]).idx
    _write_node(top, CUSTOM, e, n, d)
    A.nedges = e + n
    A.flags[top] = KEEP
    A.any_custom = True
    _commit(top, top + 1, h)
    h.kids = kids
    h.custom = info
    _track(h)
    return 0
