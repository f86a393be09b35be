# Building nodes: conversions, handles, the ops, vsum, dot and dense.
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.

# ---------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------

cdef inline int _as_float(object o, double* out) except -1:
    """1 and *out set if o is a real number; 0 if it is not a number we take."""
    if type(o) is float:
        out[0] = PyFloat_AS_DOUBLE(o)
        return 1
    if isinstance(o, (int, float)) or isinstance(o, numbers.Real):
        out[0] = float(o)           # OverflowError for an int too large, as floats
        return 1
    return 0


cdef list _nones(Py_ssize_t n):
    """A new list of n Nones, for a result to fill.  Making it is a GC point;
    n is read once, before.  (Cython's `[None] * self.B` reads self.B again
    to fill the list, after the GC point: never write that here.)"""
    cdef list out = PyList_New(n)
    cdef Py_ssize_t k
    for k in range(n):
        Py_INCREF(None)
        PyList_SET_ITEM(out, k, None)
    return out


cdef double _real(object o, str what) except? -1.0:
    cdef double d
    if not _as_float(o, &d):
        raise TypeError("%s must be a real number (int, float, bool), not %s"
                        % (what, type(o).__name__))
    return d


cdef str _exact_str(object value, str what):
    """A label or an `_op` as an exact str.  A str subclass is copied, so that
    none of its methods (__del__, __hash__, __bool__, ...) can ever run inside
    the core."""
    if type(value) is str:
        return <str>value
    if isinstance(value, str):          # a flag test: runs no Python code
        return PyUnicode_FromObject(value)
    raise TypeError("%s must be a str, not %s" % (what, type(value).__name__))


cdef str _exponent_text(double c):
    return repr(int(c)) if c == c and fabs(c) < 1e16 and c == <double><long long>c else repr(c)


# ---------------------------------------------------------------------------
# Building nodes
# ---------------------------------------------------------------------------

cdef inline int _check(Value v) except -1:
    """A handle is valid when the handle table points back at it (a bare
    Value.__new__(Value), or one whose __init__ failed, is not)."""
    if <size_t>v.idx >= <size_t>A.n or A.handle[v.idx] != <PyObject*>v:
        raise RuntimeError("this Value was never initialized (made by Value.__new__, "
                           "or its __init__ failed)")
    return 0


# Handles die and are made by the million.  Dead plain handles are kept here
# and revived, which skips the allocator and the GC's tracking: a plain handle
# is never tracked (it holds no references; _track starts tracking one that
# does, and such a handle is not kept here).
cdef PyObject* _spare_handles[1024]
cdef int _nspare = 0


cdef inline Value _new_handle():
    """A new handle, not yet attached to a node.

    A GC point: the handle is a GC-capable object, and allocating one may
    start a collection (unless a spare one is revived).
    _new_handle_quietly makes one with the GC paused."""
    global _nspare
    cdef Value h
    if _nspare:
        _nspare -= 1
        h = <Value>PyObject_Init(_spare_handles[_nspare], <PyTypeObject*>Value)
        Py_DECREF(h)        # PyObject_Init gave the one reference h holds now
        return h
    h = Value.__new__(Value)
    PyObject_GC_UnTrack(<PyObject*>h)
    return h


cdef Value _new_handle_quietly():
    """A new handle, made without running any Python code (the GC is paused)."""
    if _nspare:
        return _new_handle()
    cdef int gc_was_on = PyGC_Disable()
    cdef Value h = Value.__new__(Value)
    if gc_was_on:
        PyGC_Enable()
    PyObject_GC_UnTrack(<PyObject*>h)
    return h


cdef inline void _commit(Py_ssize_t i, Py_ssize_t new_n, Value h) noexcept:
    A.n = new_n
    A.handle[i] = <PyObject*>h
    A.handles += 1
    h.idx = i


cdef inline void _write_leaf(Py_ssize_t i, double d) noexcept:
    A.op[i] = LEAF
    A.flags[i] = 0
    A.a[i] = -1
    A.b[i] = -1
    A.data[i] = d
    A.grad[i] = 0.0
    A.handle[i] = NULL


cdef inline void _write_node(Py_ssize_t i, uint8_t op, Py_ssize_t a, Py_ssize_t b, double d) noexcept:
    A.op[i] = op
    A.flags[i] = 0
    A.a[i] = a
    A.b[i] = b
    A.data[i] = d
    A.grad[i] = 0.0
    A.handle[i] = NULL


cdef Value _commit_leaf(Value h, double r):
    """A fresh leaf holding r, behind handle h (also an op's result under no_grad)."""
    _reserve(1, 0)
    _write_leaf(A.n, r)
    _commit(A.n, A.n + 1, h)
    return h


cdef Value _new_leaf(double d):
    return _commit_leaf(_new_handle(), d)


cdef object _binary(uint8_t op, Value x, object other, bint reflected):
    """x <op> other, or other <op> x when reflected."""
    cdef Value h, y = None
    cdef double c = 0.0, xd, yd, r
    cdef Py_ssize_t top, ci, xi, yi
    # 1. Python-level input to C (other.__float__ may run any code)
    if isinstance(other, Value):
        y = <Value>other
    elif not _as_float(other, &c):
        return NotImplemented
    # 2. validate, then compute from the data (an error leaves no trace)
    _check(x)
    xd = A.data[x.idx]
    if y is not None:
        _check(y)
        yd = A.data[y.idx]
    else:
        yd = c
    if reflected:
        xd, yd = yd, xd
    if op == ADD or op == SUB or op == MUL:
        r = arith_f(op, xd, yd)
    else:
        r = _apply(op, xd, yd)
    # 3. reserve (may compact), then read the indices and write
    h = _new_handle()
    if _no_grad_depth:
        return _commit_leaf(h, r)
    cdef uint8_t keep
    if y is not None:
        _reserve(1, 0)
        top = A.n
        xi, yi = x.idx, y.idx
        keep = (A.flags[xi] | A.flags[yi]) & KEEP
        if reflected:
            xi, yi = yi, xi
        _write_node(top, op, xi, yi, r)
    else:
        _reserve(2, 0)
        ci = A.n                       # the constant becomes a leaf just below
        _write_leaf(ci, c)
        top = ci + 1
        keep = A.flags[x.idx] & KEEP
        if reflected:
            _write_node(top, op, ci, x.idx, r)
        else:
            _write_node(top, POWC if op == POW else IPOWC if op == IPOW else op, x.idx, ci, r)
    _commit(top, top + 1, h)
    if keep:
        _adopt_children(h)
    return h


cdef Value _unary(uint8_t op, Value x):
    _check(x)
    cdef double r = _apply(op, A.data[x.idx], 0.0)
    cdef Value h = _new_handle()
    if _no_grad_depth:
        return _commit_leaf(h, r)
    _reserve(1, 0)
    cdef Py_ssize_t top = A.n
    _write_node(top, op, x.idx, -1, r)
    _commit(top, top + 1, h)
    if A.flags[x.idx] & KEEP:
        _adopt_children(h)
    return h


cdef Value _nary(uint8_t op, list items, str name):
    """One fused node over `items` (Values or numbers), in order.  `items`
    is the caller's private copy: nothing else can change it."""
    cdef Py_ssize_t count = len(items), k, nconst = 0, top, e, n
    cdef double small[64]
    cdef double* data = &small[0] if count <= 64 else <double*>malloc(count * sizeof(double))
    if data == NULL:
        raise MemoryError()
    cdef Value h
    cdef object o
    cdef double r
    cdef uint8_t keep
    try:
        # 1. numbers to doubles (their __float__ may run any code)
        for k in range(count):
            o = items[k]
            if not isinstance(o, Value):
                if not _as_float(o, &data[k]):
                    raise TypeError("%s() takes Values or real numbers, not %s"
                                    % (name, type(o).__name__))
                nconst += 1
        # 2. validate the Values and compute the result; no Python code from here
        for k in range(count):
            o = items[k]
            if isinstance(o, Value):
                _check(<Value>o)
                data[k] = A.data[(<Value>o).idx]
        r = data[0]
        if op == SUM:
            for k in range(1, count):
                r = r + data[k]
        elif op == LSE:
            r = lse_f(data, count)
        else:                               # DOT: bias, w0..w(n-1), x0..x(n-1)
            n = (count - 1) // 2
            for k in range(n):
                r = r + data[1 + k] * data[1 + n + k]
        # 3. reserve, then write edges, constants and the node
        h = _new_handle()
        if _no_grad_depth:
            return _commit_leaf(h, r)
        _reserve(nconst + 1, count)
        top = A.n
        e = A.nedges
        keep = 0
        for k in range(count):
            o = items[k]
            if isinstance(o, Value):
                A.edges[e + k] = (<Value>o).idx
                keep |= A.flags[(<Value>o).idx] & KEEP
            else:
                _write_leaf(top, data[k])
                A.edges[e + k] = top
                top += 1
        _write_node(top, op, e, count, r)
        A.nedges = e + count
        _commit(top, top + 1, h)
        if keep:
            _adopt_children(h)
        return h
    finally:
        if data != &small[0]:
            free(data)


def vsum(values):
    """The sum v0 + v1 + ... + vn, left to right, as one fused node.

    Bitwise equal to adding the values with `+` one by one; an empty
    sequence gives Value(0.0).
    """
    # list(x) allocates before it reads x: a GC callback cannot change x
    # between the read and the copy (tuple(x) of a list reads first)
    cdef list items = list(values)
    if not items:
        return _new_leaf(0.0)
    return _nary(SUM, items, "vsum")


def logsumexp(values):
    """log(exp(v0) + exp(v1) + ...) as one fused node, stable for any values:
    the max is subtracted whenever the node is evaluated, so forward()
    replays stay exact (logits of +-1000 are fine).  Its derivative is the
    softmax, exp(v_k - out)."""
    cdef list items = list(values)
    if not items:
        raise ValueError("logsumexp() of an empty sequence")
    return _nary(LSE, items, "logsumexp")


def dot(weights, inputs, bias=0.0):
    """bias + w0*x0 + w1*x1 + ..., left to right, as one fused node.

    Bitwise equal to micrograd's `sum((wi*xi for wi, xi in zip(w, x)), b)`.
    """
    cdef list ws = list(weights)
    cdef list xs = list(inputs)
    if len(ws) != len(xs):
        raise ValueError("dot(): %d weights but %d inputs" % (len(ws), len(xs)))
    return _nary(DOT, [bias] + ws + xs, "dot")


cdef inline bint _is_live_handle(object o) noexcept:
    return (isinstance(o, Value) and <size_t>(<Value>o).idx < <size_t>A.n
            and A.handle[(<Value>o).idx] == <PyObject*>o)


cdef inline Py_ssize_t _next_node(PyObject* o, Py_ssize_t prev) noexcept:
    """o's node when o is the handle of node prev + 1, else -1; reads no
    Value object.

    A model makes its parameters one after another, so their nodes follow
    each other in the arena, and a list of them is mostly such steps.  The
    handle table is read in order; the Values themselves are spread in
    memory, and reading each (a type check, its idx) costs a cache miss:
    milliseconds for the 4 * 10^5 weights of an MNIST-sized model.  A
    handle in the table is a live Value of this engine whose idx is its
    node, so the match is the whole check."""
    if <size_t>(prev + 1) < <size_t>A.n and A.handle[prev + 1] == o:
        return prev + 1
    return -1


cdef int _reject_value(object o, str name) except -1:
    """Raise the error for something that is not a live Value handle."""
    if not isinstance(o, Value):
        raise TypeError("%s() takes Values, not %s" % (name, type(o).__name__))
    return _check(<Value>o)


cdef inline int _check_value(object o, str name) except -1:
    """Raise unless o is a live Value; return its node's KEEP flag."""
    if not _is_live_handle(o):
        _reject_value(o, name)
    return A.flags[(<Value>o).idx] & KEEP


cdef list _dense_by_ops(object rows, object xs, object bs, str act_name):
    """dense() one op at a time: the same nodes, each converting and checking
    its own input and making its own handle."""
    if len(rows) != len(bs):
        raise ValueError("dense(): %d weight rows but %d biases" % (len(rows), len(bs)))
    cdef list out = [dot(w, xs, b) for w, b in zip(rows, bs)]
    return out if act_name == "linear" else [getattr(v, act_name)() for v in out]


cdef dict _ACTIVATIONS = {"relu": RELU, "tanh": TANH, "sigmoid": SIGMOID, "softplus": SOFTPLUS,
                          "gelu": GELU, "linear": LEAF}


cdef inline bint _is_list_or_tuple(object o) noexcept:
    return type(o) is list or type(o) is tuple


cdef bint _rows_are_lists_or_tuples(object rows) noexcept:
    cdef Py_ssize_t j
    if not _is_list_or_tuple(rows):
        return False
    for j in range(PySequence_Fast_GET_SIZE(rows)):
        if not _is_list_or_tuple(<object>PySequence_Fast_GET_ITEM(rows, j)):
            return False
    return True


def dense(weights, inputs, biases, activation="relu"):
    """One layer of neurons: [act(b_j + w_j . x) for each j], in one call.

    Each neuron is a DOT node plus (unless "linear") its activation node,
    created in that order, exactly as dot(w_j, x, b_j).relu() would.
    `weights` is a sequence of weight sequences, `inputs` and `biases`
    sequences of Values.  Under no_grad it falls back to one dot() call per
    neuron.
    """
    # 1. Python-level input: the activation as an exact str, sequences other
    #    than lists and tuples as lists (iterating runs Python code), and the
    #    output list.  These are the GC points, all of them before anything
    #    is read: lists and tuples are read as they are from step 2 on.
    cdef str act_name = _exact_str(activation, "activation") if isinstance(activation, str) else None
    if act_name is None or act_name not in _ACTIVATIONS:
        raise ValueError("unknown activation %r: choose one of %s" % (activation, tuple(_ACTIVATIONS)))
    cdef uint8_t act = _ACTIVATIONS[act_name]
    cdef object rows = weights
    if not _rows_are_lists_or_tuples(rows):
        rows = [row if _is_list_or_tuple(row) else list(row) for row in weights]
    cdef object xs = inputs if _is_list_or_tuple(inputs) else list(inputs)
    cdef object bs = biases if _is_list_or_tuple(biases) else list(biases)
    cdef list out
    if _no_grad_depth:           # plain ops, each converting and checking its own input
        return _dense_by_ops(rows, xs, bs, act_name)
    out = []
    # 2. read and validate: no Python code runs from here to the end
    #    (appending to a list allocates nothing the GC tracks; the handles
    #    are made with the GC paused)
    cdef Py_ssize_t nout = PySequence_Fast_GET_SIZE(rows)
    cdef Py_ssize_t nin = PySequence_Fast_GET_SIZE(xs), j, k, top, e
    cdef object w
    cdef uint8_t keep = 0
    if PySequence_Fast_GET_SIZE(bs) != nout:
        raise ValueError("dense(): %d weight rows but %d biases" % (nout, len(bs)))
    cdef Py_ssize_t i = -2                  # the node of the weight just read
    cdef PyObject* item
    for j in range(nout):
        w = <object>PySequence_Fast_GET_ITEM(rows, j)
        if not _is_list_or_tuple(w):        # only if the rows changed meanwhile
            raise TypeError("dense(): weight row %d is not a sequence" % j)
        if PySequence_Fast_GET_SIZE(w) != nin:
            raise ValueError("dense(): weight row %d has %d weights but there are %d inputs"
                             % (j, len(w), nin))
        for k in range(nin):
            item = PySequence_Fast_GET_ITEM(w, k)
            i = _next_node(item, i)
            if i >= 0:
                keep |= A.flags[i] & KEEP
            else:
                keep |= _check_value(<object>item, "dense")
                i = (<Value>item).idx
        keep |= _check_value(<object>PySequence_Fast_GET_ITEM(bs, j), "dense")
    for k in range(nin):
        keep |= _check_value(<object>PySequence_Fast_GET_ITEM(xs, k), "dense")
    if keep:       # a custom node among the inputs: each node needs its handle
        return _dense_by_ops(rows, xs, bs, act_name)
    for j in range(nout):
        out.append(_new_handle_quietly())
    # 3. reserve (may compact), then read indices and write
    _reserve(nout * (1 if act == LEAF else 2), nout * (2 * nin + 1))
    top = A.n
    e = A.nedges
    i = -2
    for j in range(nout):
        w = <object>PySequence_Fast_GET_ITEM(rows, j)
        A.edges[e] = (<Value>PySequence_Fast_GET_ITEM(bs, j)).idx
        for k in range(nin):
            item = PySequence_Fast_GET_ITEM(w, k)
            i = _next_node(item, i)
            if i < 0:
                i = (<Value>item).idx
            A.edges[e + 1 + k] = i
            A.edges[e + 1 + nin + k] = (<Value>PySequence_Fast_GET_ITEM(xs, k)).idx
        _write_node(top, DOT, e, 2 * nin + 1, _dot_data(e, 2 * nin + 1))
        e += 2 * nin + 1
        if act != LEAF:
            top += 1
            _write_node(top, act, top - 1, -1, 0.0)
            _eval(top)                   # the activations never raise
        A.handle[top] = <PyObject*>out[j]
        (<Value>out[j]).idx = top
        top += 1
    A.handles += nout
    A.n = top
    A.nedges = e
    return out
