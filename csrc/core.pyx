# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled core of Mini Autograd: scalar nodes in one flat arena.

Every node lives in a struct-of-arrays arena (op code, two child slots, data,
grad, flags, and a borrowed pointer to its Python handle, if it has one).
A child's index is always smaller than its parent's, so creation order is a
topological order: backward is one reverse sweep over indices and forward()
one forward sweep.  No recursion anywhere.

`Value` is a small handle holding an index.  There is at most one handle per
node, so identity, sets and dicts behave as with micrograd.  Nodes without a
handle that no live node uses are dead; a dead node on top of the arena is
popped at once, the rest are reclaimed by compaction (mark from the handles in
one reverse sweep, then slide live nodes down and re-point the handles).

The public semantics are documented in autograd/pure.py, the pure-Python
reference with the same API; both must give the same numbers.
"""

cimport cython
from cpython.ref cimport PyObject
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.exc cimport PyErr_CheckSignals, PyErr_Fetch, PyErr_Restore
from cpython.object cimport PyTypeObject, destructor
from libc.stdlib cimport malloc, realloc, free
from libc.stdint cimport uint8_t, int32_t, INT32_MAX
from libc.math cimport exp, log, sqrt, tanh, pow, fabs, isfinite

import math
import numbers

cdef extern from "Python.h":
    int PyGC_Disable()
    int PyGC_Enable()

cdef extern from *:
    """
    #ifndef AUTOGRAD_DEBUG
    #define AUTOGRAD_DEBUG 0
    #endif
    """
    # 1 in a debug build (AUTOGRAD_CYTHON_DEBUG=1): the arena's invariants are
    # verified after every compaction and before every sweep.
    const bint AUTOGRAD_DEBUG

# ---------------------------------------------------------------------------
# Op codes.  For unary ops `a` is the child; for binary ops `a`, `b`; for the
# n-ary ops (SUM, DOT) `a` is the first edge and `b` the edge count.
# ---------------------------------------------------------------------------
cdef enum:
    LEAF = 0
    ADD
    SUB
    MUL
    DIV
    NEG
    POW        # x ** y, gradient to both
    POWC       # x ** c, c a constant leaf in `b` that gets no gradient
    RELU
    TANH
    SIGMOID
    EXP
    LOG
    SQRT
    ABS
    SUM        # e0 + e1 + ... left to right
    DOT        # bias + w0*x0 + w1*x1 + ... left to right (a neuron); edges:
               # bias, w0..w(n-1), x0..x(n-1)

cdef tuple OP_SYMBOLS = ("", "+", "-", "*", "/", "neg", "**", "**", "ReLU",
                         "tanh", "sigmoid", "exp", "log", "sqrt", "abs",
                         "sum", "dot")

cdef enum:
    MARK = 1       # scratch bit for sweeps (liveness, reachability)
    LABELED = 2    # the node has an entry in _labels

# Node indices are 32-bit: half the memory traffic of a sweep, and 2**31-1
# nodes (about 70 GB of arena) is more than any machine here can hold.
ctypedef int32_t idx_t
cdef Py_ssize_t MAX_NODES = INT32_MAX

DEBUG_BUILD = bool(AUTOGRAD_DEBUG)

# Bytes the arena spends on one node without a handle:
# op, flags, two children, data, grad, handle pointer.
BYTES_PER_NODE = 1 + 1 + 4 + 4 + 8 + 8 + 8


cdef struct Arena:
    Py_ssize_t n            # nodes in use: indices [0, n)
    Py_ssize_t cap
    uint8_t* op
    uint8_t* flags
    idx_t* a
    idx_t* b
    double* data
    double* grad
    PyObject** handle       # borrowed; the handle clears its slot when it dies
    idx_t* edges            # children of n-ary nodes, in node order
    Py_ssize_t nedges
    Py_ssize_t edgecap
    size_t epoch            # bumped whenever compaction moves nodes
    Py_ssize_t compactions
    Py_ssize_t handles      # live handles (for arena_info)
    int sweeping            # a backward/forward sweep is running (no compaction)

cdef Arena A
cdef dict _labels = {}      # node index -> label, only for labeled nodes
cdef extern from *:
    """
    /* no_grad() nesting depth, per thread as PyTorch's grad mode is.
       initial-exec: read at a fixed offset from the thread pointer, with no
       __tls_get_addr call on every op. */
    #if defined(__GNUC__)
    static _Thread_local int autograd_no_grad_depth __attribute__((tls_model("initial-exec"))) = 0;
    #else
    static _Thread_local int autograd_no_grad_depth = 0;
    #endif
    """
    int _no_grad_depth "autograd_no_grad_depth"


# ---------------------------------------------------------------------------
# Arena management
# ---------------------------------------------------------------------------

cdef int _grow_nodes(Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = A.cap * 2 if A.cap else 1024
    while cap < need:
        cap *= 2
    if cap > MAX_NODES:
        cap = MAX_NODES
        if cap < need:
            raise MemoryError("autograd arena: more than %d nodes" % MAX_NODES)
    # realloc each array; on failure keep the old (still valid) arrays.
    cdef void* p
    p = realloc(A.op, cap * sizeof(uint8_t))
    if p == NULL: raise MemoryError("autograd arena: cannot grow to %d nodes" % cap)
    A.op = <uint8_t*>p
    p = realloc(A.flags, cap * sizeof(uint8_t))
    if p == NULL: raise MemoryError("autograd arena: cannot grow to %d nodes" % cap)
    A.flags = <uint8_t*>p
    p = realloc(A.a, cap * sizeof(idx_t))
    if p == NULL: raise MemoryError("autograd arena: cannot grow to %d nodes" % cap)
    A.a = <idx_t*>p
    p = realloc(A.b, cap * sizeof(idx_t))
    if p == NULL: raise MemoryError("autograd arena: cannot grow to %d nodes" % cap)
    A.b = <idx_t*>p
    p = realloc(A.data, cap * sizeof(double))
    if p == NULL: raise MemoryError("autograd arena: cannot grow to %d nodes" % cap)
    A.data = <double*>p
    p = realloc(A.grad, cap * sizeof(double))
    if p == NULL: raise MemoryError("autograd arena: cannot grow to %d nodes" % cap)
    A.grad = <double*>p
    p = realloc(A.handle, cap * sizeof(PyObject*))
    if p == NULL: raise MemoryError("autograd arena: cannot grow to %d nodes" % cap)
    A.handle = <PyObject**>p
    A.cap = cap
    return 0


cdef int _grow_edges(Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = A.edgecap * 2 if A.edgecap else 1024
    while cap < need:
        cap *= 2
    if cap > MAX_NODES:
        cap = MAX_NODES
        if cap < need:
            raise MemoryError("autograd arena: more than %d edges" % MAX_NODES)
    cdef void* p = realloc(A.edges, cap * sizeof(idx_t))
    if p == NULL: raise MemoryError("autograd arena: cannot grow to %d edges" % cap)
    A.edges = <idx_t*>p
    A.edgecap = cap
    return 0


cdef inline bint _is_nary(uint8_t op) noexcept:
    return op == SUM or op == DOT


cdef Py_ssize_t _mark_live(Py_ssize_t* live_edges) noexcept:
    """Set MARK on every live node; return their count.

    A node is live if it has a handle or a live node has it as a child.
    Children have smaller indices, so one reverse sweep settles it.
    """
    cdef Py_ssize_t i, k, live = 0, edges = 0
    cdef uint8_t op
    for i in range(A.n - 1, -1, -1):
        if A.handle[i] == NULL and not (A.flags[i] & MARK):
            continue
        A.flags[i] |= MARK
        live += 1
        op = A.op[i]
        if op == LEAF:
            continue
        if _is_nary(op):
            edges += A.b[i]
            for k in range(A.a[i], A.a[i] + A.b[i]):
                A.flags[A.edges[k]] |= MARK
        else:
            A.flags[A.a[i]] |= MARK
            if A.b[i] >= 0:
                A.flags[A.b[i]] |= MARK
    live_edges[0] = edges
    return live


cdef int _compact() except -1:
    """Slide the MARKed nodes down in order, re-point children and handles."""
    cdef Py_ssize_t n = A.n
    cdef idx_t* remap = <idx_t*>malloc((n if n else 1) * sizeof(idx_t))
    cdef Py_ssize_t i, j = 0, k, e = 0, start, count
    if remap == NULL:
        _clear_marks(n)
        raise MemoryError("autograd arena: no memory to compact")
    cdef uint8_t op
    for i in range(n):
        if not (A.flags[i] & MARK):
            remap[i] = -1
            continue
        A.flags[i] &= ~MARK
        remap[i] = j
        op = A.op[i]
        if _is_nary(op):
            start = A.a[i]
            count = A.b[i]
            for k in range(count):  # e <= start: an in-place forward copy is safe
                A.edges[e + k] = remap[A.edges[start + k]]
            A.a[j] = e
            A.b[j] = count
            e += count
        else:
            A.a[j] = remap[A.a[i]] if A.a[i] >= 0 else -1
            A.b[j] = remap[A.b[i]] if A.b[i] >= 0 else -1
        A.op[j] = op
        A.flags[j] = A.flags[i]
        A.data[j] = A.data[i]
        A.grad[j] = A.grad[i]
        A.handle[j] = A.handle[i]
        if A.handle[j] != NULL:
            (<Value>A.handle[j]).idx = j
        j += 1
    A.n = j
    A.nedges = e
    A.epoch += 1
    A.compactions += 1
    if AUTOGRAD_DEBUG:
        _verify_arena()
    # Re-key the labels.  GC is paused so no handle can die mid-rebuild.
    global _labels
    cdef int gc_was_on = PyGC_Disable()
    try:
        if _labels:
            _labels = {remap[old]: text for old, text in _labels.items() if remap[old] >= 0}
    finally:
        free(remap)
        if gc_was_on:
            PyGC_Enable()
    return 0


cdef inline int _reserve(Py_ssize_t nodes, Py_ssize_t edges) except -1:
    """Make room for `nodes` more nodes and `edges` more edges.

    Handle indices may change; read them after this call.
    """
    if A.n + nodes <= A.cap and A.nedges + edges <= A.edgecap:
        return 0
    return _make_room(nodes, edges)


cdef int _make_room(Py_ssize_t nodes, Py_ssize_t edges) except -1:
    """The arena is full: compact if that frees at least half of the full
    array, otherwise grow."""
    cdef Py_ssize_t i, live, live_edges = 0
    if A.n > 0 and not A.sweeping:
        live = _mark_live(&live_edges)
        if ((A.n + nodes > A.cap and 2 * live <= A.n) or
                (A.nedges + edges > A.edgecap and 2 * live_edges <= A.nedges)):
            _compact()
        else:
            for i in range(A.n):
                A.flags[i] &= ~MARK
    if A.n + nodes > A.cap:
        _grow_nodes(A.n + nodes)
    if A.nedges + edges > A.edgecap:
        _grow_edges(A.nedges + edges)
    return 0


cdef void _drop_label(Py_ssize_t i) noexcept:
    # May run while an exception is propagating (a handle dying in a
    # traceback's frame): keep that exception as it is.
    cdef PyObject* etype
    cdef PyObject* evalue
    cdef PyObject* etb
    PyErr_Fetch(&etype, &evalue, &etb)
    if _labels is not None:
        _labels.pop(i, None)
    PyErr_Restore(etype, evalue, etb)


cdef void _pop_dead_top() noexcept:
    """Drop handle-less nodes from the top: nothing can refer to them."""
    cdef Py_ssize_t i
    while A.n > 0 and A.handle[A.n - 1] == NULL:
        i = A.n - 1
        if A.flags[i] & LABELED:
            _drop_label(i)
        A.flags[i] = 0
        if _is_nary(A.op[i]):
            A.nedges = A.a[i]
        A.n = i


# ---------------------------------------------------------------------------
# Op kernels: each op's forward formula beside its local derivative.
# A backward kernel returns the contributions dx (and dy) that the sweep adds
# to the children's grads; g is the node's grad, out its data.  The pure
# reference (autograd/pure.py) evaluates exactly the same expressions.
# ---------------------------------------------------------------------------

cdef object _math = math

# x + y            d/dx = 1, d/dy = 1
# x - y            d/dx = 1, d/dy = -1
# x * y            d/dx = y, d/dy = x
cdef inline double arith_f(uint8_t op, double x, double y) noexcept:
    if op == ADD:
        return x + y
    if op == SUB:
        return x - y
    return x * y

# x / y            d/dx = 1/y, d/dy = -out/y            (y == 0 raises, as floats)
cdef inline double div_f(double x, double y) except? -1.0:
    if y == 0.0:
        raise ZeroDivisionError("float division by zero")
    return x / y

# x ** y as math.pow: d/dx = y * x**(y-1) (0 where y == 0),
#                     d/dy = out * log(x) (0 where x == 0 and y >= 0)
cdef inline double pow_f(double x, double y) except? -1.0:
    cdef double r
    if isfinite(x) and isfinite(y):
        r = pow(x, y)
        if isfinite(r):
            return r
    # Infinities and NaNs by math.pow's own rules; it raises ValueError or
    # OverflowError exactly where it should (0 ** -1, (-8) ** 0.5, overflow).
    return _math.pow(x, y)

cdef inline double pow_dx(double g, double x, double y) noexcept:
    return 0.0 if y == 0.0 else y * pow(x, y - 1.0) * g

cdef inline double pow_dy(double g, double x, double y, double out) noexcept:
    return 0.0 if (x == 0.0 and y >= 0.0) else out * log(x) * g

# relu(x) = 0 if x < 0 else x          d/dx = 1 where out > 0, else 0
cdef inline double relu_f(double x) noexcept:
    return 0.0 if x < 0.0 else x

# tanh(x)                              d/dx = 1 - out**2
# sigmoid(x), stable for any x         d/dx = out * (1 - out)
cdef inline double sigmoid_f(double x) noexcept:
    cdef double e
    if x >= 0.0:
        return 1.0 / (1.0 + exp(-x))
    e = exp(x)
    return e / (1.0 + e)

# exp(x) as math.exp (overflow raises)  d/dx = out
cdef inline double exp_f(double x) except? -1.0:
    cdef double r = exp(x)
    if not isfinite(r) and isfinite(x):
        return _math.exp(x)         # raises OverflowError
    return r

# log(x) as math.log (x <= 0 raises)    d/dx = 1/x
cdef inline double log_f(double x) except? -1.0:
    if x > 0.0:
        return log(x)
    return _math.log(x)             # nan -> nan; otherwise ValueError

# sqrt(x) as math.sqrt (x < 0 raises)   d/dx = 1/(2*out)
cdef inline double sqrt_f(double x) except? -1.0:
    if x >= 0.0:
        return sqrt(x)
    return _math.sqrt(x)            # nan -> nan; otherwise ValueError

# abs(x)                               d/dx = sign(x), 0 at 0
cdef inline double abs_dx(double g, double x) noexcept:
    return g if x > 0.0 else (-g if x < 0.0 else 0.0)


cdef int _eval(Py_ssize_t i) except -1:
    """Compute data[i] from its children's data (forward formula)."""
    cdef uint8_t op = A.op[i]
    cdef Py_ssize_t k, end, w, n
    cdef double x, y = 0.0, r
    if op == LEAF:
        return 0
    if op == SUM:
        end = A.a[i] + A.b[i]
        r = A.data[A.edges[A.a[i]]]
        for k in range(A.a[i] + 1, end):
            r = r + A.data[A.edges[k]]
        A.data[i] = r
        return 0
    if op == DOT:
        w = A.a[i] + 1
        n = (A.b[i] - 1) // 2
        r = A.data[A.edges[A.a[i]]]
        for k in range(n):
            r = r + A.data[A.edges[w + k]] * A.data[A.edges[w + n + k]]
        A.data[i] = r
        return 0
    x = A.data[A.a[i]]
    if A.b[i] >= 0:
        y = A.data[A.b[i]]
    if op == ADD or op == SUB or op == MUL:
        r = arith_f(op, x, y)
    elif op == DIV:
        r = div_f(x, y)
    elif op == NEG:
        r = -x
    elif op == POW or op == POWC:
        r = pow_f(x, y)
    elif op == RELU:
        r = relu_f(x)
    elif op == TANH:
        r = tanh(x)
    elif op == SIGMOID:
        r = sigmoid_f(x)
    elif op == EXP:
        r = exp_f(x)
    elif op == LOG:
        r = log_f(x)
    elif op == SQRT:
        r = sqrt_f(x)
    else:  # ABS
        r = fabs(x)
    A.data[i] = r
    return 0


cdef inline void _backprop(Py_ssize_t i) noexcept:
    """Add node i's contributions to its children's grads (chain rule).

    Each branch loads only what its op needs: a sweep is memory-bound.
    """
    cdef uint8_t op = A.op[i]
    if op == LEAF:
        return
    cdef double g = A.grad[i]
    cdef Py_ssize_t a = A.a[i], b, k
    if op == ADD:
        b = A.b[i]
        A.grad[a] += g
        A.grad[b] += g
    elif op == SUB:
        b = A.b[i]
        A.grad[a] += g
        A.grad[b] += -g
    elif op == MUL:
        b = A.b[i]
        A.grad[a] += A.data[b] * g
        A.grad[b] += A.data[a] * g
    elif op == DIV:
        b = A.b[i]
        A.grad[a] += g / A.data[b]
        A.grad[b] += -(A.data[i] * g / A.data[b])
    elif op == NEG:
        A.grad[a] += -g
    elif op == POW:
        b = A.b[i]
        A.grad[a] += pow_dx(g, A.data[a], A.data[b])
        A.grad[b] += pow_dy(g, A.data[a], A.data[b], A.data[i])
    elif op == POWC:
        A.grad[a] += pow_dx(g, A.data[a], A.data[A.b[i]])
    elif op == RELU:
        A.grad[a] += g if A.data[i] > 0.0 else 0.0
    elif op == TANH:
        A.grad[a] += (1.0 - A.data[i] * A.data[i]) * g
    elif op == SIGMOID:
        A.grad[a] += A.data[i] * (1.0 - A.data[i]) * g
    elif op == EXP:
        A.grad[a] += A.data[i] * g
    elif op == LOG:
        A.grad[a] += g / A.data[a]
    elif op == SQRT:
        A.grad[a] += g / (2.0 * A.data[i])
    elif op == ABS:
        A.grad[a] += abs_dx(g, A.data[a])
    elif op == SUM:                     # a: first edge, b: edge count
        b = A.b[i]
        for k in range(a, a + b):
            A.grad[A.edges[k]] += g
    elif op == DOT:                     # edges: bias, w0..w(n-1), x0..x(n-1)
        b = (A.b[i] - 1) // 2           # n
        A.grad[A.edges[a]] += g
        a += 1
        for k in range(b):              # d/dw_k = x_k, d/dx_k = w_k
            A.grad[A.edges[a + k]] += A.data[A.edges[a + b + k]] * g
            A.grad[A.edges[a + b + k]] += A.data[A.edges[a + k]] * g


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


cdef double _real(object o, str what) except? -1.0:
    cdef double d
    if not _as_float(o, &d):
        raise TypeError("%s must be a real number (int, float, bool), not %s"
                        % (what, type(o).__name__))
    return d


cdef str _exponent_text(double c):
    return repr(int(c)) if c == c and fabs(c) < 1e16 and c == <double><long long>c else repr(c)


# ---------------------------------------------------------------------------
# Building nodes
# ---------------------------------------------------------------------------

cdef inline int _check(Value v) except -1:
    """A handle is valid when the handle table points back at it (a bare
    Value.__new__(Value) is not)."""
    if <size_t>v.idx >= <size_t>A.n or A.handle[v.idx] != <PyObject*>v:
        raise RuntimeError("this Value was never initialized (made by Value.__new__?)")
    return 0


cdef inline Value _new_handle():
    cdef Value h = Value.__new__(Value)
    return h


cdef inline void _commit(Py_ssize_t i, Py_ssize_t new_n, Value h) noexcept:
    A.n = new_n
    A.handle[i] = <PyObject*>h
    A.handles += 1
    h.idx = i


cdef inline Value _emit(uint8_t op, Py_ssize_t top, Value h):
    """Evaluate the node written at `top` and commit it (with anything below
    it from A.n up).  Under no_grad the result is stored as a fresh leaf."""
    if (op == ADD or op == SUB or op == MUL) and not _no_grad_depth:
        # the commonest ops cannot fail: no need for the general _eval
        A.data[top] = arith_f(op, A.data[A.a[top]], A.data[A.b[top]])
        _commit(top, top + 1, h)
        return h
    _eval(top)   # raises before anything is committed
    if _no_grad_depth:
        A.data[A.n] = A.data[top]
        top = A.n
        A.op[top] = LEAF
        A.a[top] = -1
        A.b[top] = -1
    A.flags[top] = 0
    A.grad[top] = 0.0
    _commit(top, top + 1, h)
    return h


cdef inline void _write_leaf(Py_ssize_t i, double d) noexcept:
    A.op[i] = LEAF
    A.flags[i] = 0
    A.a[i] = -1
    A.b[i] = -1
    A.data[i] = d
    A.grad[i] = 0.0
    A.handle[i] = NULL


cdef inline void _write_node(Py_ssize_t i, uint8_t op, Py_ssize_t a, Py_ssize_t b) noexcept:
    A.op[i] = op
    A.flags[i] = 0
    A.a[i] = a
    A.b[i] = b
    A.grad[i] = 0.0
    A.handle[i] = NULL


cdef Value _new_leaf(double d):
    cdef Value h = _new_handle()
    _reserve(1, 0)
    _write_leaf(A.n, d)
    _commit(A.n, A.n + 1, h)
    return h


cdef object _binary(uint8_t op, Value x, object other, bint reflected):
    """x <op> other, or other <op> x when reflected."""
    cdef Value h, y
    cdef double c
    cdef Py_ssize_t top, ci, xi, yi
    _check(x)
    if type(other) is Value:
        y = <Value>other
        _check(y)
        h = _new_handle()
        _reserve(1, 0)
        top = A.n
        xi, yi = x.idx, y.idx
        if reflected:
            xi, yi = yi, xi
        _write_node(top, op, xi, yi)
        return _emit(op, top, h)
    if not _as_float(other, &c):
        return NotImplemented
    h = _new_handle()
    _reserve(2, 0)
    ci = A.n                       # the constant becomes a leaf just below
    _write_leaf(ci, c)
    top = ci + 1
    if reflected:
        _write_node(top, op, ci, x.idx)
    else:
        _write_node(top, POWC if op == POW else op, x.idx, ci)
    return _emit(op, top, h)


cdef Value _unary(uint8_t op, Value x):
    _check(x)
    cdef Value h = _new_handle()
    _reserve(1, 0)
    cdef Py_ssize_t top = A.n
    _write_node(top, op, x.idx, -1)
    return _emit(op, top, h)


cdef Value _nary(uint8_t op, list items, str name):
    """One fused node over `items` (Values or numbers), in order."""
    cdef Py_ssize_t count = len(items), k, nconst = 0, top, e
    cdef double small[64]
    cdef double* consts = &small[0] if count <= 64 else <double*>malloc(count * sizeof(double))
    if consts == NULL:
        raise MemoryError()
    cdef Value h
    cdef object o
    try:
        for k in range(count):
            o = items[k]
            if type(o) is Value:
                _check(<Value>o)
            else:
                if not _as_float(o, &consts[k]):
                    raise TypeError("%s() takes Values or real numbers, not %s"
                                    % (name, type(o).__name__))
                nconst += 1
        h = _new_handle()
        _reserve(nconst + 1, count)
        top = A.n
        e = A.nedges
        for k in range(count):
            o = items[k]
            if type(o) is Value:
                A.edges[e + k] = (<Value>o).idx
            else:
                _write_leaf(top, consts[k])
                A.edges[e + k] = top
                top += 1
        _write_node(top, op, e, count)
        _eval(top)
        A.nedges = e + count
        if _no_grad_depth:
            # keep only the result, as a leaf where the constants would go
            A.nedges = e
            A.data[A.n] = A.data[top]
            top = A.n
            _write_leaf(top, A.data[top])
        _commit(top, top + 1, h)
        return h
    finally:
        if consts != &small[0]:
            free(consts)


def vsum(values):
    """The sum v0 + v1 + ... + vn, left to right, as one fused node.

    Bitwise equal to adding the values with `+` one by one; an empty
    sequence gives Value(0.0).
    """
    items = list(values)
    if not items:
        return _new_leaf(0.0)
    return _nary(SUM, items, "vsum")


def dot(weights, inputs, bias=0.0):
    """bias + w0*x0 + w1*x1 + ..., left to right, as one fused node.

    Bitwise equal to micrograd's `sum((wi*xi for wi, xi in zip(w, x)), b)`.
    """
    cdef list ws = weights if type(weights) is list else list(weights)
    cdef list xs = inputs if type(inputs) is list else list(inputs)
    if len(ws) != len(xs):
        raise ValueError("dot(): %d weights but %d inputs" % (len(ws), len(xs)))
    return _nary(DOT, [bias] + ws + xs, "dot")


cdef inline bint _is_live_handle(object o) noexcept:
    return (type(o) is Value and <size_t>(<Value>o).idx < <size_t>A.n
            and A.handle[(<Value>o).idx] == <PyObject*>o)


cdef int _reject_value(object o, str name) except -1:
    """Raise the error for something that is not a live Value handle."""
    if type(o) is not Value:
        raise TypeError("%s() takes Values, not %s" % (name, type(o).__name__))
    return _check(<Value>o)


cdef inline int _check_value(object o, str name) except -1:
    if not _is_live_handle(o):
        _reject_value(o, name)
    return 0


cdef dict _ACTIVATIONS = {"relu": RELU, "tanh": TANH, "sigmoid": SIGMOID, "linear": LEAF}


def dense(list weights, list inputs, list biases, str activation="relu"):
    """One layer of neurons: [act(b_j + w_j . x) for each j], in one call.

    Each neuron is a DOT node plus (unless "linear") its activation node,
    created in that order, exactly as dot(w_j, x, b_j).relu() would.
    `weights` is a list of weight lists, `inputs` and `biases` lists of
    Values.  Under no_grad it falls back to one dot() call per neuron.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError("unknown activation %r: choose one of %s" % (activation, tuple(_ACTIVATIONS)))
    cdef uint8_t act = _ACTIVATIONS[activation]
    cdef Py_ssize_t nout = len(weights), nin = len(inputs), j, k, top, e
    cdef list w
    cdef list out
    if len(biases) != nout:
        raise ValueError("dense(): %d weight rows but %d biases" % (nout, len(biases)))
    for j in range(nout):
        w = weights[j]
        if len(w) != nin:
            raise ValueError("dense(): weight row %d has %d weights but there are %d inputs"
                             % (j, len(w), nin))
        for k in range(nin):
            _check_value(w[k], "dense")
        _check_value(biases[j], "dense")
    for k in range(nin):
        _check_value(inputs[k], "dense")
    if _no_grad_depth:
        out = [dot(weights[j], inputs, biases[j]) for j in range(nout)]
        return out if act == LEAF else [getattr(v, activation)() for v in out]
    out = [_new_handle() for j in range(nout)]
    _reserve(nout * (1 if act == LEAF else 2), nout * (2 * nin + 1))
    top = A.n
    e = A.nedges
    for j in range(nout):
        w = weights[j]
        A.edges[e] = (<Value>biases[j]).idx
        for k in range(nin):
            A.edges[e + 1 + k] = (<Value>w[k]).idx
            A.edges[e + 1 + nin + k] = (<Value>inputs[k]).idx
        _write_node(top, DOT, e, 2 * nin + 1)
        _eval(top)                       # DOT and the activations never raise
        e += 2 * nin + 1
        if act != LEAF:
            top += 1
            _write_node(top, act, top - 1, -1)
            _eval(top)
        A.handle[top] = <PyObject*>out[j]
        (<Value>out[j]).idx = top
        top += 1
    A.handles += nout
    A.n = top
    A.nedges = e
    return out


# ---------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------

cdef idx_t* _reachable(Py_ssize_t root, Py_ssize_t* nruns, bint backprop) except NULL:
    """The nodes reachable from root, as runs of consecutive indices.

    Returns pairs (hi, lo), highest run first: sweeping each run from hi down
    to lo visits every node after all of its users (reverse topological
    order).  A chain is a single run, so a replay streams the arena itself.

    One downward sweep from root: a node is visited if a visited node marked
    it, and the sweep stops once no marked node is pending.

    With `backprop`, the sweep is backward() itself: a node is visited after
    all of its users, so its grad is final and it back-propagates at once;
    an interior child's grad is zeroed when the child is first marked, before
    any user adds to it.  One pass over the graph instead of three.
    """
    cdef Py_ssize_t cap = 64, n = 0, i = root, pending = 1, k, c
    cdef idx_t* runs = <idx_t*>malloc(cap * sizeof(idx_t))
    cdef idx_t* grown
    cdef uint8_t op
    if runs == NULL:
        raise MemoryError()
    A.flags[root] |= MARK
    while pending:
        if A.flags[i] & MARK:
            A.flags[i] &= ~MARK
            pending -= 1
            if n > 0 and runs[n - 1] == i + 1:
                runs[n - 1] = i                     # extends the current run
            else:
                if n + 2 > cap:
                    grown = <idx_t*>realloc(runs, 2 * cap * sizeof(idx_t))
                    if grown == NULL:
                        _clear_marks(i)
                        free(runs)
                        raise MemoryError()
                    runs = grown
                    cap *= 2
                runs[n] = i
                runs[n + 1] = i
                n += 2
            op = A.op[i]
            if op != LEAF:
                if _is_nary(op):
                    for k in range(A.a[i], A.a[i] + A.b[i]):
                        _mark_child(A.edges[k], &pending, backprop)
                else:
                    _mark_child(A.a[i], &pending, backprop)
                    if A.b[i] >= 0:
                        _mark_child(A.b[i], &pending, backprop)
                if backprop:
                    _backprop(i)
        if (i & 0xFFFF) == 0:
            try:
                PyErr_CheckSignals()
            except BaseException:
                _clear_marks(i)
                free(runs)
                raise
        i -= 1
    nruns[0] = n // 2
    return runs


cdef inline void _mark_child(Py_ssize_t c, Py_ssize_t* pending, bint zero_grads) noexcept:
    if not (A.flags[c] & MARK):
        A.flags[c] |= MARK
        pending[0] += 1
        if zero_grads and A.op[c] != LEAF:
            A.grad[c] = 0.0


cdef void _clear_marks(Py_ssize_t below) noexcept:
    cdef Py_ssize_t i
    for i in range(below):
        A.flags[i] &= ~MARK


# ---------------------------------------------------------------------------
# no_grad
# ---------------------------------------------------------------------------

class no_grad:
    """Context manager: ops inside record no graph (results are leaves).

    It applies to the thread that entered it, as PyTorch's no_grad does.
    """

    def __enter__(self):
        global _no_grad_depth
        _no_grad_depth += 1
        return self

    def __exit__(self, *exc):
        global _no_grad_depth
        _no_grad_depth -= 1
        return False


def is_grad_enabled():
    return _no_grad_depth == 0


# ---------------------------------------------------------------------------
# The handle
# ---------------------------------------------------------------------------

def _restore(data, grad, label):
    v = Value(data, label)
    v.grad = grad
    return v


@cython.final
@cython.freelist(1024)
@cython.no_gc
cdef class Value:
    """A scalar with a gradient: a handle to one node of the arena."""

    cdef Py_ssize_t idx
    cdef idx_t* runs            # cached reachable set: (hi, lo) runs, see _reachable
    cdef Py_ssize_t nruns
    cdef size_t runs_epoch      # the arena epoch the cache was made in

    __array_ufunc__ = None      # numpy scalars on the left defer to our ops

    # No __cinit__: a new handle is zero-filled (idx 0, no cache) and is only
    # valid once the handle table points back at it; see _check.

    def __init__(self, data, label=""):
        cdef double d = _real(data, "Value data")
        if not isinstance(label, str):
            raise TypeError("Value label must be a str, not %s" % type(label).__name__)
        self._release()
        _reserve(1, 0)
        _write_leaf(A.n, d)
        _commit(A.n, A.n + 1, self)
        if label:
            self.label = label

    cdef void _release(self) noexcept:
        _release_handle(<PyObject*>self)

    cdef inline Py_ssize_t _i(self) except -1:
        _check(self)
        return self.idx

    # -- attributes --------------------------------------------------------
    @property
    def data(self):
        return A.data[self._i()]

    @data.setter
    def data(self, value):
        A.data[self._i()] = _real(value, "Value data")

    @property
    def grad(self):
        return A.grad[self._i()]

    @grad.setter
    def grad(self, value):
        A.grad[self._i()] = _real(value, "Value grad")

    @property
    def label(self):
        cdef Py_ssize_t i = self._i()
        if A.flags[i] & LABELED:
            return _labels[i]
        return ""

    @label.setter
    def label(self, value):
        cdef Py_ssize_t i = self._i()
        if not isinstance(value, str):
            raise TypeError("Value label must be a str, not %s" % type(value).__name__)
        if value:
            _labels[i] = value
            A.flags[i] |= LABELED
        elif A.flags[i] & LABELED:
            del _labels[i]
            A.flags[i] &= ~LABELED

    @property
    def _op(self):
        cdef Py_ssize_t i = self._i()
        cdef uint8_t op = A.op[i]
        if op == POWC:
            return "**" + _exponent_text(A.data[A.b[i]])
        return OP_SYMBOLS[op]

    @property
    def _children(self):
        """The children in order (constants included, fused inputs in order)."""
        cdef Py_ssize_t i = self._i()
        cdef uint8_t op = A.op[i]
        cdef Py_ssize_t k
        if op == LEAF:
            return ()
        if _is_nary(op):
            return tuple([_handle_of(A.edges[k]) for k in range(A.a[i], A.a[i] + A.b[i])])
        if A.b[i] < 0 or op == POWC:
            return (_handle_of(A.a[i]),)
        return (_handle_of(A.a[i]), _handle_of(A.b[i]))

    @property
    def _prev(self):
        """The set of children, as micrograd's `_prev`."""
        return set(self._children)

    def __repr__(self):
        return "Value(data=%r, grad=%r)" % (self.data, self.grad)

    def __reduce__(self):
        # A Value pickles and copies as a leaf with its data, grad and label;
        # the graph behind it is not carried along.
        return (_restore, (self.data, self.grad, self.label))

    # -- arithmetic ----------------------------------------------------------
    def __add__(self, other):
        return _binary(ADD, self, other, False)

    def __radd__(self, other):
        return _binary(ADD, self, other, True)

    def __sub__(self, other):
        return _binary(SUB, self, other, False)

    def __rsub__(self, other):
        return _binary(SUB, self, other, True)

    def __mul__(self, other):
        return _binary(MUL, self, other, False)

    def __rmul__(self, other):
        return _binary(MUL, self, other, True)

    def __truediv__(self, other):
        return _binary(DIV, self, other, False)

    def __rtruediv__(self, other):
        return _binary(DIV, self, other, True)

    def __pow__(self, other, modulo):
        if modulo is not None:
            return NotImplemented
        return _binary(POW, self, other, False)

    def __rpow__(self, other, modulo):
        if modulo is not None:
            return NotImplemented
        return _binary(POW, self, other, True)

    def __neg__(self):
        return _unary(NEG, self)

    def relu(self):
        return _unary(RELU, self)

    def tanh(self):
        return _unary(TANH, self)

    def sigmoid(self):
        return _unary(SIGMOID, self)

    def exp(self):
        return _unary(EXP, self)

    def log(self):
        return _unary(LOG, self)

    def sqrt(self):
        return _unary(SQRT, self)

    def abs(self):
        return _unary(ABS, self)

    def __abs__(self):
        return _unary(ABS, self)

    def detach(self):
        """A new leaf with this Value's data, outside any graph."""
        return _new_leaf(A.data[self._i()])

    # -- sweeps --------------------------------------------------------------
    cdef bint _ensure_runs(self, bint backprop) except -1:
        """Cache the reachable set; True if it was just found (and, with
        `backprop`, the backward pass done on the way)."""
        cdef Py_ssize_t nruns
        if A.sweeping:
            raise RuntimeError("backward()/forward() cannot run inside another sweep")
        if AUTOGRAD_DEBUG:
            _verify_arena()
        if self.runs != NULL and self.runs_epoch == A.epoch:
            return False
        if self.runs != NULL:
            free(self.runs)
            self.runs = NULL
        if backprop:
            A.grad[self.idx] = 1.0
        A.sweeping = 1
        try:
            self.runs = _reachable(self._i(), &nruns, backprop)
        finally:
            A.sweeping = 0
        self.nruns = nruns
        self.runs_epoch = A.epoch
        return True

    def backward(self):
        """Gradients of this Value with respect to every node of its graph.

        Interior grads are reset first; this Value's grad becomes 1; leaves
        accumulate, so two calls give twice the leaf grads.
        """
        if self._ensure_runs(True):
            return                      # first call: the discovery sweep did it all
        cdef Py_ssize_t r, i, hi, lo, stop
        cdef idx_t* runs = self.runs
        A.sweeping = 1
        try:
            for r in range(self.nruns):
                for i in range(runs[2 * r], runs[2 * r + 1] - 1, -1):
                    if A.op[i] != LEAF:
                        A.grad[i] = 0.0
            A.grad[self.idx] = 1.0
            for r in range(self.nruns):
                hi = runs[2 * r]
                lo = runs[2 * r + 1]
                while hi >= lo:           # blocks of 2**16, then a signal check
                    stop = hi - 0xFFFF if hi - 0xFFFF > lo else lo
                    for i in range(hi, stop - 1, -1):
                        _backprop(i)
                    PyErr_CheckSignals()
                    hi = stop - 1
        finally:
            A.sweeping = 0

    def forward(self):
        """Recompute every interior node of this graph from the leaves' data."""
        self._ensure_runs(False)
        cdef Py_ssize_t r, i, hi
        cdef idx_t* runs = self.runs
        A.sweeping = 1
        try:
            for r in range(self.nruns - 1, -1, -1):
                i = runs[2 * r + 1]
                hi = runs[2 * r]
                while i <= hi:
                    _eval(i)
                    i += 1
                    if (i & 0xFFFF) == 0:
                        PyErr_CheckSignals()
        finally:
            A.sweeping = 0
        return self


cdef void _release_handle(PyObject* o) noexcept:
    """Detach a handle from its node (the handle is dying or re-initialized).

    Works on the borrowed pointer: no reference is taken, so it is safe from
    inside tp_dealloc.
    """
    cdef Py_ssize_t i = (<Value>o).idx
    if (<Value>o).runs != NULL:
        free((<Value>o).runs)
        (<Value>o).runs = NULL
    if <size_t>i < <size_t>A.n and A.handle[i] == o:
        A.handle[i] = NULL
        A.handles -= 1
        if i == A.n - 1 and not A.sweeping:
            _pop_dead_top()
    (<Value>o).idx = -1


# Handles die by the million, so their deallocation is lean: Value has no
# __dealloc__ (whose wrapper saves and restores the exception state on every
# call); instead this slot detaches the handle, then hands the object to the
# type's own deallocator (the freelist).
cdef destructor _base_value_dealloc = (<PyTypeObject*>Value).tp_dealloc

cdef void _value_dealloc(PyObject* o) noexcept:
    _release_handle(o)
    _base_value_dealloc(o)

(<PyTypeObject*>Value).tp_dealloc = _value_dealloc


cdef Value _handle_of(Py_ssize_t i):
    """The node's handle, made if it has none (never a second one)."""
    if A.handle[i] != NULL:
        return <Value>A.handle[i]
    cdef Value h = _new_handle()
    A.handle[i] = <PyObject*>h
    A.handles += 1
    h.idx = i
    return h


# ---------------------------------------------------------------------------
# Introspection (tests and benchmarks)
# ---------------------------------------------------------------------------

def arena_info():
    """Counts describing the arena: nodes, capacity, edges, handles, compactions."""
    return {
        "nodes": A.n,
        "capacity": A.cap,
        "edges": A.nedges,
        "edge_capacity": A.edgecap,
        "handles": A.handles,
        "compactions": A.compactions,
        "bytes_per_node": BYTES_PER_NODE,
    }


cdef int _verify_arena() except -1:
    """Raise AssertionError naming the first broken invariant of the arena."""
    cdef Py_ssize_t i, k, c, edge_end = 0, handles = 0
    cdef uint8_t op
    for i in range(A.n):
        op = A.op[i]
        if A.handle[i] != NULL:
            handles += 1
        if op > DOT:
            raise AssertionError("node %d has an unknown op code %d" % (i, op))
        if A.flags[i] & MARK:
            raise AssertionError("node %d carries a stale MARK bit" % i)
        if A.handle[i] != NULL and (<Value>A.handle[i]).idx != i:
            raise AssertionError("the handle of node %d points at node %d" % (i, (<Value>A.handle[i]).idx))
        if op == LEAF:
            continue
        if _is_nary(op):
            if A.a[i] != edge_end or A.b[i] < 1 or A.a[i] + A.b[i] > A.nedges:
                raise AssertionError("node %d has edges [%d, %d) out of order or range"
                                     % (i, A.a[i], A.a[i] + A.b[i]))
            edge_end = A.a[i] + A.b[i]
            for k in range(A.a[i], edge_end):
                c = A.edges[k]
                if not 0 <= c < i:
                    raise AssertionError("node %d has child %d, not below it" % (i, c))
        else:
            if not 0 <= A.a[i] < i or not -1 <= A.b[i] < i:
                raise AssertionError("node %d has children %d, %d, not below it" % (i, A.a[i], A.b[i]))
    if edge_end != A.nedges:
        raise AssertionError("%d edges in use but the last n-ary node ends at %d" % (A.nedges, edge_end))
    if handles != A.handles:
        raise AssertionError("%d handles in the table but the count says %d" % (handles, A.handles))
    return 0


def check_arena():
    """Verify the arena's invariants (children below parents, handles pointing
    back, edges in order); raise AssertionError naming the first broken one."""
    _verify_arena()


def collect():
    """Compact the arena now; return the number of live nodes."""
    cdef Py_ssize_t live_edges
    if A.sweeping:
        raise RuntimeError("collect() cannot run inside a sweep")
    if A.n == 0:
        return 0
    _mark_live(&live_edges)
    _compact()
    return A.n
