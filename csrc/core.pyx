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

THE RE-ENTRANCY RULE (every line of this file keeps it)
-------------------------------------------------------
Python code can run inside this module wherever it allocates a GC-tracked
object (a list, tuple, dict or exception: the cyclic GC may start and run
gc.callbacks and __del__ of garbage), calls a method of an object a user
passed in (__float__, __index__, __bool__, __hash__, __eq__, __class__,
__iter__, __len__), drops a reference that may be the last (__del__), or
checks for signals (the handlers).  That code may create or drop Values,
compact the arena, re-initialize a Value or start a sweep of its own.

Whatever was read before such a point (a node index, a handle, a run array,
an item of a sequence, A.n, a pointer into the arena) is not used after it
unless it is read and validated again.  Every op is shaped so that this is
easy to see:

  1. turn every Python-level input into C locals and owned references:
     numbers into doubles, labels into exact `str`, sequences into private
     lists (or, in dense(), lists and tuples read only after the last GC point);
  2. validate the handles (no Python code runs from here on) and compute
     the result from the children's data;
  3. reserve room (may compact, which runs no Python code: labels are exact
     strings and the GC is paused), read the children's indices, write the
     nodes and commit them.

A sweep owns what it iterates: it takes its run array from the root's handle
and gives it back (or frees it) at the end, so re-initializing or dropping
the root from a signal handler frees nothing under it.  Each discovery sweep
marks nodes with its own flag bit, so sweeps may nest (a signal handler's
backward()) or interleave (threads, when a handler releases the GIL).
While any sweep is in progress nothing compacts or pops nodes: indices stay
put, and collect() is carried out when the last sweep ends.
"""

cimport cython
from cpython.ref cimport PyObject
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.unicode cimport PyUnicode_FromObject
from cpython.sequence cimport PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals, PyErr_Fetch, PyErr_Restore
from cpython.object cimport PyTypeObject, destructor
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.stdint cimport uint8_t, int32_t, INT32_MAX
from libc.math cimport exp, log, sqrt, tanh, pow, fabs, isfinite, INFINITY

import math
import numbers

cdef extern from "Python.h":
    int PyGC_Disable()
    int PyGC_Enable()
    void PyObject_GC_Track(void*)
    void PyObject_GC_UnTrack(void*)
    int PyObject_GC_IsTracked(object)
    PyObject* PyObject_Init(PyObject*, PyTypeObject*)
    unsigned long Py_TPFLAGS_IMMUTABLETYPE

cdef extern from *:
    """
    typedef int (*autograd_setattrofunc)(PyObject*, PyObject*, PyObject*);
    static autograd_setattrofunc autograd_get_setattro(PyTypeObject* t) { return t->tp_setattro; }
    static void autograd_set_setattro(PyTypeObject* t, autograd_setattrofunc f) { t->tp_setattro = f; }
    static void autograd_set_dictoffset(PyTypeObject* t, Py_ssize_t offset) { t->tp_dictoffset = offset; }
    static traverseproc autograd_get_traverse(PyTypeObject* t) { return t->tp_traverse; }
    static void autograd_set_traverse(PyTypeObject* t, traverseproc f) { t->tp_traverse = f; }
    static inquiry autograd_get_clear(PyTypeObject* t) { return t->tp_clear; }
    static void autograd_set_clear(PyTypeObject* t, inquiry f) { t->tp_clear = f; }
    static int autograd_visit(visitproc visit, PyObject* o, void* arg) { return o ? visit(o, arg) : 0; }
    /* v.__dict__ (and vars(v)): the attributes' dict, made on first use.
       Whoever holds it may fill it, so the handle is then treated as one
       with attributes (autograd_attrs_taken: tracked by the GC, KEEP). */
    static void (*autograd_attrs_taken)(PyObject*) = NULL;
    static PyObject* autograd_get_dict(PyObject* o, void* closure) {
        PyObject* d = PyObject_GenericGetDict(o, closure);
        if (d != NULL && autograd_attrs_taken != NULL) autograd_attrs_taken(o);
        return d;
    }
    static PyGetSetDef autograd_dict_getset = {"__dict__", autograd_get_dict, PyObject_GenericSetDict,
                                               "the Value's attributes", NULL};
    static int autograd_add_dict_descriptor(PyTypeObject* t, void (*taken)(PyObject*)) {
        PyObject* descr;
        int r;
        autograd_attrs_taken = taken;
        descr = PyDescr_NewGetSet(t, &autograd_dict_getset);
        if (descr == NULL) return -1;
        r = PyDict_SetItemString(t->tp_dict, "__dict__", descr);
        Py_DECREF(descr);
        PyType_Modified(t);
        return r;
    }
    """
    ctypedef int (*visitproc)(PyObject*, void*)
    ctypedef int (*traverseproc)(PyObject*, visitproc, void*)
    ctypedef int (*inquiry)(PyObject*)
    void set_dictoffset "autograd_set_dictoffset"(PyTypeObject* t, Py_ssize_t offset)
    traverseproc get_traverse "autograd_get_traverse"(PyTypeObject* t)
    void set_traverse "autograd_set_traverse"(PyTypeObject* t, traverseproc f)
    inquiry get_clear "autograd_get_clear"(PyTypeObject* t)
    void set_clear "autograd_set_clear"(PyTypeObject* t, inquiry f)
    int visit_object "autograd_visit"(visitproc visit, PyObject* o, void* arg)
    int add_dict_descriptor "autograd_add_dict_descriptor"(PyTypeObject* t, void (*taken)(PyObject*) noexcept) except -1
    bint is_none "Py_IsNone"(object o)
    ctypedef int (*setattrofunc "autograd_setattrofunc")(PyObject*, PyObject*, PyObject*) except -1
    setattrofunc get_setattro "autograd_get_setattro"(PyTypeObject* t)
    void set_setattro "autograd_set_setattro"(PyTypeObject* t, setattrofunc f)

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
    CUSTOM     # a user's op: children in edges, its Python code on the handle
               # (a `_backward` function, or an autograd.function's formulas)

cdef tuple OP_SYMBOLS = ("", "+", "-", "*", "/", "neg", "**", "**", "ReLU",
                         "tanh", "sigmoid", "exp", "log", "sqrt", "abs",
                         "sum", "dot", "custom")

cdef enum:
    LABELED = 1    # the node has an entry in _labels
    KEEP = 2       # the node's handle carries Python state (a custom node, a
                   # subclass instance, attributes) or a child's handle does:
                   # every node using it holds its handle (see _adopt_children)
    ALL_MARKS = 0xFC   # bits 2..7: one scratch bit per sweep in progress

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
    size_t epoch            # bumped whenever nodes move or a graph changes shape
    Py_ssize_t compactions
    Py_ssize_t handles      # live handles (for arena_info)
    int sweeps              # sweeps in progress, in any thread: no compaction, no pops
    bint compact_pending    # collect() was called during a sweep
    uint8_t marks_in_use    # the mark bits of the sweeps in progress
    bint any_custom         # a custom node was ever made (forward() checks them)

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
    return op == SUM or op == DOT or op == CUSTOM


cdef uint8_t _take_mark() noexcept:
    """A flag bit of its own for a sweep that marks nodes; 0 if all six are
    in use (then the sweep marks in a private array: see _Marks)."""
    cdef uint8_t bit = 4
    while bit:
        if not (A.marks_in_use & bit):
            A.marks_in_use |= bit
            return bit
        bit <<= 1
    return 0


cdef inline void _give_mark(uint8_t bit) noexcept:
    A.marks_in_use &= ~bit


cdef void _clear_marks(Py_ssize_t below, uint8_t bit) noexcept:
    cdef Py_ssize_t i
    for i in range(below):
        A.flags[i] &= ~bit


# Where a sweep keeps its marks: a flag bit of its own in A.flags, or, when
# more sweeps are in progress than there are bits (nested signal handlers,
# threads whose custom nodes release the GIL), a private array of its own.
# A.flags is read afresh on every access: Python code may grow the arena.
cdef struct _Marks:
    uint8_t* own            # the private array, or NULL for A.flags
    uint8_t bit

cdef int _marks_begin(_Marks* m, Py_ssize_t nodes) except -1:
    m.bit = _take_mark()
    m.own = NULL
    if m.bit == 0:
        m.own = <uint8_t*>calloc(nodes if nodes else 1, 1)
        if m.own == NULL:
            raise MemoryError()
        m.bit = 1
    return 0

cdef inline uint8_t* _marks_of(_Marks* m) noexcept:
    return m.own if m.own != NULL else A.flags

cdef void _marks_end(_Marks* m, Py_ssize_t below) noexcept:
    """Give the marks back; nodes below `below` may still carry one."""
    if m.own != NULL:
        free(m.own)
        m.own = NULL
    else:
        _clear_marks(below, m.bit)
        _give_mark(m.bit)


cdef Py_ssize_t _mark_live(uint8_t* marks, uint8_t bit, Py_ssize_t* live_edges) noexcept:
    """Set `bit` in `marks` on every live node; return their count.

    A node is live if it has a handle or a live node has it as a child.
    Children have smaller indices, so one reverse sweep settles it.
    """
    cdef Py_ssize_t i, k, live = 0, edges = 0
    cdef uint8_t op
    for i in range(A.n - 1, -1, -1):
        if A.handle[i] == NULL and not (marks[i] & bit):
            continue
        marks[i] |= bit
        live += 1
        op = A.op[i]
        if op == LEAF:
            continue
        if _is_nary(op):
            edges += A.b[i]
            for k in range(A.a[i], A.a[i] + A.b[i]):
                marks[A.edges[k]] |= bit
        else:
            marks[A.a[i]] |= bit
            if A.b[i] >= 0:
                marks[A.b[i]] |= bit
    live_edges[0] = edges
    return live


cdef int _compact(uint8_t bit) except -1:
    """Slide the nodes marked with `bit` down in order, re-point children and
    handles.  Runs no Python code (see the rule at the top)."""
    cdef Py_ssize_t n = A.n
    cdef idx_t* remap = <idx_t*>malloc((n if n else 1) * sizeof(idx_t))
    cdef Py_ssize_t i, j = 0, k, e = 0, start, count
    if remap == NULL:
        _clear_marks(n, bit)
        raise MemoryError("autograd arena: no memory to compact")
    cdef uint8_t op
    for i in range(n):
        if not (A.flags[i] & bit):
            remap[i] = -1
            continue
        A.flags[i] &= ~bit
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
    # Re-key the labels.  They are exact strings and the keys ints, so no
    # Python code runs here; the GC is paused so that allocating the new dict
    # cannot start a collection (gc.callbacks, __del__ of cyclic garbage).
    global _labels
    cdef int gc_was_on = PyGC_Disable()
    try:
        if _labels:
            _labels = {remap[old]: text for old, text in _labels.items() if remap[old] >= 0}
    finally:
        free(remap)
        if gc_was_on:
            PyGC_Enable()
    if AUTOGRAD_DEBUG:
        _verify_arena()
    return 0


cdef int _collect_now() except -1:
    """Mark the live nodes and compact.  Only while no sweep is in progress."""
    cdef Py_ssize_t live_edges
    cdef uint8_t bit = _take_mark()     # no sweep in progress: every bit is free
    try:
        _mark_live(A.flags, bit, &live_edges)
        _compact(bit)
    finally:
        _give_mark(bit)
    return 0


cdef inline int _reserve(Py_ssize_t nodes, Py_ssize_t edges) except -1:
    """Make room for `nodes` more nodes and `edges` more edges.

    Handle indices may change (compaction): read them after this call.
    No Python code runs in it (an exception only on failure).
    """
    if A.n + nodes <= A.cap and A.nedges + edges <= A.edgecap:
        return 0
    return _make_room(nodes, edges)


cdef int _make_room(Py_ssize_t nodes, Py_ssize_t edges) except -1:
    """The arena is full: compact if that frees at least half of the full
    array, otherwise grow.  During a sweep nodes must stay put: grow."""
    cdef Py_ssize_t live, live_edges = 0
    cdef uint8_t bit
    if A.n > 0 and A.sweeps == 0:
        bit = _take_mark()          # no sweep in progress: every bit is free
        try:
            live = _mark_live(A.flags, bit, &live_edges)
            if ((A.n + nodes > A.cap and 2 * live <= A.n) or
                    (A.nedges + edges > A.edgecap and 2 * live_edges <= A.nedges)):
                _compact(bit)
            else:
                _clear_marks(A.n, bit)
        finally:
            _give_mark(bit)
    if A.n + nodes > A.cap:
        _grow_nodes(A.n + nodes)
    if A.nedges + edges > A.edgecap:
        _grow_edges(A.nedges + edges)
    return 0


cdef void _drop_label(Py_ssize_t i) noexcept:
    # May run while an exception is propagating (a handle dying in a
    # traceback's frame): keep that exception as it is.  Labels are exact
    # strings and keys ints: dropping one runs no Python code.
    cdef PyObject* etype
    cdef PyObject* evalue
    cdef PyObject* etb
    PyErr_Fetch(&etype, &evalue, &etb)
    if _labels is not None:
        _labels.pop(i, None)
    PyErr_Restore(etype, evalue, etb)


cdef void _pop_dead_top() noexcept:
    """Drop handle-less nodes from the top: nothing can refer to them.
    Not during a sweep: it may still visit them."""
    cdef Py_ssize_t i
    cdef bint labeled
    while A.n > 0 and A.handle[A.n - 1] == NULL and A.sweeps == 0:
        i = A.n - 1
        if _is_nary(A.op[i]):
            A.nedges = A.a[i]
        A.n = i                         # the arena is consistent before the label goes
        labeled = A.flags[i] & LABELED
        A.flags[i] = 0
        if labeled:
            _drop_label(i)


cdef inline void _sweep_begin() noexcept:
    A.sweeps += 1


cdef void _sweep_end() noexcept:
    """The end of a sweep; the last one carries out a collect() asked for
    meanwhile (best effort: without memory for it, the arena stays as is)."""
    A.sweeps -= 1
    if A.sweeps == 0 and A.compact_pending:
        A.compact_pending = False
        try:
            _collect_now()
        except MemoryError:
            pass


# ---------------------------------------------------------------------------
# Op kernels: each op's forward formula beside its local derivative.
# A backward kernel returns the contributions dx (and dy) that the sweep adds
# to the children's grads; g is the node's grad, out its data.  The pure
# reference (autograd/pure.py) evaluates exactly the same expressions.
# ---------------------------------------------------------------------------

# Python's own math functions, taken once at import: they give the same
# exceptions and messages as the pure engine's calls.  They are called only
# for the special values and errors that C's libm reports differently, run no
# Python code but an exception's allocation, and a user replacing math.pow
# later cannot run code in the middle of an op.
cdef object _py_pow = math.pow
cdef object _py_exp = math.exp
cdef object _py_log = math.log
cdef object _py_sqrt = math.sqrt

cdef extern from *:
    """
    /* -g exactly as Python computes it: the compiler may not fold
       `x + (-g)` into `x - g`, which keeps the sign of a NaN g instead of
       flipping it (the pure engine adds the negated value). */
    static double autograd_negate(double g) {
        volatile double minus_g = -g;
        return minus_g;
    }
    """
    double negate "autograd_negate"(double g) noexcept nogil

cdef extern from *:
    """
    #include <math.h>
    /* x ** y for infinite or NaN x or y, by math.pow's own rules (CPython's
       mathmodule.c), so that NaNs come out exactly as the pure engine's. */
    static double autograd_pow_special(double x, double y) {
        int odd_y;
        if (isnan(x)) return y == 0.0 ? 1.0 : x;
        if (isnan(y)) return x == 1.0 ? 1.0 : y;
        if (isinf(x)) {
            odd_y = isfinite(y) && fmod(fabs(y), 2.0) == 1.0;
            if (y > 0.0) return odd_y ? x : fabs(x);
            if (y == 0.0) return 1.0;
            return odd_y ? copysign(0.0, x) : 0.0;
        }
        if (fabs(x) == 1.0) return 1.0;           /* y is infinite */
        if (y > 0.0 && fabs(x) > 1.0) return y;
        if (y < 0.0 && fabs(x) < 1.0) return -y;
        return 0.0;
    }
    /* x ** y with IEEE results instead of errors (poles give inf, invalid
       bases NaN), as the backward formulas need. */
    static double autograd_pow_ieee(double x, double y) {
        if (isfinite(x) && isfinite(y)) return pow(x, y);
        return autograd_pow_special(x, y);
    }
    """
    double pow_special "autograd_pow_special"(double x, double y) noexcept nogil
    double pow_ieee "autograd_pow_ieee"(double x, double y) noexcept nogil

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
    if not (isfinite(x) and isfinite(y)):
        return pow_special(x, y)    # infinities and NaNs never raise
    r = pow(x, y)
    if isfinite(r):
        return r
    # math.pow raises ValueError or OverflowError, with its own message,
    # exactly where it should (0 ** -1, (-8) ** 0.5, overflow)
    return _py_pow(x, y)

cdef inline double pow_dx(double g, double x, double y) noexcept:
    return 0.0 if y == 0.0 else y * pow_ieee(x, y - 1.0) * g

cdef inline double pow_dy(double g, double x, double y, double out) noexcept:
    return 0.0 if (x == 0.0 and y >= 0.0) else out * log_ieee(x) * g

# The NaN an invalid operation gives on this machine, computed at run time
# as the pure engine computes it (a C constant would be folded at compile time).
cdef double INVALID = math.inf - math.inf

# log(x) with IEEE results instead of errors: -inf at 0, INVALID below
cdef inline double log_ieee(double x) noexcept:
    if x > 0.0 or x != x:
        return log(x)
    return -INFINITY if x == 0.0 else INVALID

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
        return _py_exp(x)           # raises OverflowError
    return r

# log(x) as math.log (x <= 0 raises)    d/dx = 1/x
cdef inline double log_f(double x) except? -1.0:
    if x > 0.0:
        return log(x)
    return _py_log(x)               # nan -> nan; otherwise ValueError

# sqrt(x) as math.sqrt (x < 0 raises)   d/dx = 1/(2*out)
cdef inline double sqrt_f(double x) except? -1.0:
    if x >= 0.0:
        return sqrt(x)
    return _py_sqrt(x)              # nan -> nan; otherwise ValueError

# abs(x)                               d/dx = sign(x), 0 at 0
cdef inline double abs_dx(double g, double x) noexcept:
    return g if x > 0.0 else (negate(g) if x < 0.0 else 0.0)


cdef double _apply(uint8_t op, double x, double y) except? -1.0:
    """The forward formula of a one- or two-input op (y unused for one)."""
    if op == ADD or op == SUB or op == MUL:
        return arith_f(op, x, y)
    if op == DIV:
        return div_f(x, y)
    if op == NEG:
        return -x
    if op == POW or op == POWC:
        return pow_f(x, y)
    if op == RELU:
        return relu_f(x)
    if op == TANH:
        return tanh(x)
    if op == SIGMOID:
        return sigmoid_f(x)
    if op == EXP:
        return exp_f(x)
    if op == LOG:
        return log_f(x)
    if op == SQRT:
        return sqrt_f(x)
    return fabs(x)  # ABS


cdef inline double _dot_data(Py_ssize_t first, Py_ssize_t count) noexcept:
    """bias + w0*x0 + ... over the edges [first, first + count)."""
    cdef Py_ssize_t k, w = first + 1, n = (count - 1) // 2
    cdef double r = A.data[A.edges[first]]
    for k in range(n):
        r = r + A.data[A.edges[w + k]] * A.data[A.edges[w + n + k]]
    return r


cdef int _eval(Py_ssize_t i) except -1:
    """Compute data[i] from its children's data (forward formula)."""
    cdef uint8_t op = A.op[i]
    cdef Py_ssize_t k, end
    cdef double y = 0.0, r
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
        A.data[i] = _dot_data(A.a[i], A.b[i])
        return 0
    if op == CUSTOM:
        return _custom_forward(i)
    if A.b[i] >= 0:
        y = A.data[A.b[i]]
    A.data[i] = _apply(op, A.data[A.a[i]], y)
    return 0


cdef inline void _backprop(Py_ssize_t i) noexcept:
    """Add node i's contributions to its children's grads (chain rule).

    Each branch loads only what its op needs: a sweep is memory-bound.
    A CUSTOM node's rule is Python code: the sweeps call _run_custom for it.
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
        A.grad[b] += negate(g)
    elif op == MUL:
        b = A.b[i]
        A.grad[a] += A.data[b] * g
        A.grad[b] += A.data[a] * g
    elif op == DIV:
        b = A.b[i]
        A.grad[a] += g / A.data[b]
        A.grad[b] += negate(A.data[i] * g / A.data[b])
    elif op == NEG:
        A.grad[a] += negate(g)
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
# Custom nodes: a user's op, whose rules are Python code.
#
# A custom node's handle lives as long as its node does: the handle holds the
# node's Python state (the `_backward` function, which usually captures the
# handle itself, as micrograd's closures capture `out`), and every node that
# uses a KEEP node holds its handle in its own handle's `kids`.  So the
# objects form the same graph as micrograd's, visible to the cyclic GC, and
# a closure that captures its own output is collected with it.
# ---------------------------------------------------------------------------

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
    cdef list xs = [None] * n           # a GC point: the node is read after it
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
    cdef double small[16]
    cdef double* ds = &small[0] if n <= 16 else <double*>malloc(n * sizeof(double))
    cdef double g
    if ds == NULL:
        raise MemoryError()
    try:
        for k in range(n):              # Python code: anything may happen meanwhile
            ds[k] = _real(info.partials[k](*xs), "the partial derivative %d of '%s'" % (k, info.op))
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
    return 2 if (A.b[i] >= 0 and op != POWC) else 1


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


cdef str _label_text(object value):
    """A label as an exact str.  A str subclass is copied, so that none of its
    methods (__del__, __hash__, __bool__, ...) can ever run inside the core."""
    if type(value) is str:
        return <str>value
    if isinstance(value, str):          # a flag test: runs no Python code
        return PyUnicode_FromObject(value)
    raise TypeError("Value label must be a str, not %s" % type(value).__name__)


cdef str _op_text(object op):
    """A custom node's `_op` as an exact str."""
    if type(op) is str:
        return <str>op
    if isinstance(op, str):
        return PyUnicode_FromObject(op)
    raise TypeError("Value _op must be a str, not %s" % type(op).__name__)


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
            _write_node(top, POWC if op == POW else op, x.idx, ci, r)
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


cdef dict _ACTIVATIONS = {"relu": RELU, "tanh": TANH, "sigmoid": SIGMOID, "linear": LEAF}


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
    cdef str act_name = _label_text(activation) if isinstance(activation, str) else None
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
    for j in range(nout):
        w = <object>PySequence_Fast_GET_ITEM(rows, j)
        if not _is_list_or_tuple(w):        # only if the rows changed meanwhile
            raise TypeError("dense(): weight row %d is not a sequence" % j)
        if PySequence_Fast_GET_SIZE(w) != nin:
            raise ValueError("dense(): weight row %d has %d weights but there are %d inputs"
                             % (j, len(w), nin))
        for k in range(nin):
            keep |= _check_value(<object>PySequence_Fast_GET_ITEM(w, k), "dense")
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
    for j in range(nout):
        w = <object>PySequence_Fast_GET_ITEM(rows, j)
        A.edges[e] = (<Value>PySequence_Fast_GET_ITEM(bs, j)).idx
        for k in range(nin):
            A.edges[e + 1 + k] = (<Value>PySequence_Fast_GET_ITEM(w, k)).idx
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


# ---------------------------------------------------------------------------
# autograd.function: a custom op with its forward formula and partials
# ---------------------------------------------------------------------------

cdef class Function:
    """A custom op: `forward(*inputs)` computes the result from numbers and
    `partials[k](*inputs)` its derivative with respect to input k.

    Calling it on Values (or numbers) makes one custom node, which
    backward() differentiates with the partials (child k's grad gets
    partial_k(*inputs) * grad, in order) and forward() recomputes with the
    forward formula.  Made by autograd.function(forward, *partials, name=...).
    """
    cdef readonly str name
    cdef readonly object forward
    cdef readonly tuple partials
    cdef _Custom info

    def __init__(self, forward, *partials, name=None):
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
        self.name = _op_text(name)
        self.forward = forward
        self.partials = partials
        self.info = _Custom(self.name, None, forward, partials)

    def __call__(self, *args):
        return _call_function(self, list(args))

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
    cdef Py_ssize_t n = len(f.partials), k, top, e
    cdef double c
    cdef object o
    if len(kids) != n:
        raise TypeError("'%s' takes %d inputs (one per partial derivative), not %d"
                        % (f.name, n, len(kids)))
    # 1. Python-level input: numbers to floats, then the forward formula
    cdef list xs = [None] * n
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
    # 2. validate; no Python code runs from here to the end
    for k in range(n):
        _check(<Value>kids[k])
    # 3. reserve, read the children's indices, write
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
    h.kids = kids_t
    h.custom = f.info
    _track(h)
    return h


# ---------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------

cdef idx_t* _reachable(Py_ssize_t root, Py_ssize_t* nruns, bint backprop) except NULL:
    """The nodes reachable from root, as runs of consecutive indices.

    Returns pairs (hi, lo), highest run first: sweeping each run from hi down
    to lo visits every node after all of its users (reverse topological
    order).  A chain is a single run, so a replay streams the arena itself.

    One downward sweep from root: a node is visited if a visited node marked
    it, and the sweep stops once no marked node is pending.  The marks are
    this sweep's own flag bit, so another discovery may run meanwhile (from
    a signal handler, or another thread).

    With `backprop`, the sweep is backward() itself: a node is visited after
    all of its users, so its grad is final and it back-propagates at once;
    an interior child's grad is zeroed when the child is first marked, before
    any user adds to it.  One pass over the graph instead of three.

    Only A.* is read across the signal checks and custom nodes, never a
    pointer into it: Python code's ops may grow (reallocate) the arena.
    """
    cdef Py_ssize_t cap = 64, n = 0, i = root, pending = 1, k
    cdef _Marks m
    cdef idx_t* runs = <idx_t*>malloc(cap * sizeof(idx_t))
    cdef idx_t* grown
    cdef uint8_t op
    if runs == NULL:
        raise MemoryError()
    try:
        _marks_begin(&m, root + 1)
    except MemoryError:
        free(runs)
        raise
    _marks_of(&m)[root] |= m.bit
    while pending:
        if _marks_of(&m)[i] & m.bit:
            _marks_of(&m)[i] &= ~m.bit
            pending -= 1
            if n > 0 and runs[n - 1] == i + 1:
                runs[n - 1] = i                     # extends the current run
            else:
                if n + 2 > cap:
                    grown = <idx_t*>realloc(runs, 2 * cap * sizeof(idx_t))
                    if grown == NULL:
                        _marks_end(&m, i)
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
                        _mark_child(A.edges[k], &m, &pending, backprop)
                else:
                    _mark_child(A.a[i], &m, &pending, backprop)
                    if A.b[i] >= 0:
                        _mark_child(A.b[i], &m, &pending, backprop)
                if backprop:
                    if op != CUSTOM:
                        _backprop(i)
                    else:
                        try:            # Python code: see the rule at the top
                            _run_custom(i)
                        except BaseException:
                            _marks_end(&m, i)
                            free(runs)
                            raise
        if (i & 0xFFFF) == 0:
            try:
                PyErr_CheckSignals()
            except BaseException:
                _marks_end(&m, i)
                free(runs)
                raise
        i -= 1
    _marks_end(&m, 0)
    nruns[0] = n // 2
    return runs


cdef inline void _mark_child(Py_ssize_t c, _Marks* m, Py_ssize_t* pending, bint zero_grads) noexcept:
    cdef uint8_t* marks = _marks_of(m)
    if not (marks[c] & m.bit):
        marks[c] |= m.bit
        pending[0] += 1
        if zero_grads and A.op[c] != LEAF:
            A.grad[c] = 0.0


cdef int _backward_runs(Py_ssize_t root, idx_t* runs, Py_ssize_t nruns) except -1:
    """backward() over a cached reachable set: zero interior grads, seed the
    root, then propagate, checking for signals every 2**16 nodes."""
    cdef Py_ssize_t r, i, hi, lo, stop
    for r in range(nruns):
        for i in range(runs[2 * r], runs[2 * r + 1] - 1, -1):
            if A.op[i] != LEAF:
                A.grad[i] = 0.0
    A.grad[root] = 1.0
    for r in range(nruns):
        hi = runs[2 * r]
        lo = runs[2 * r + 1]
        while hi >= lo:           # blocks of 2**16, then a signal check
            stop = hi - 0xFFFF if hi - 0xFFFF > lo else lo
            for i in range(hi, stop - 1, -1):
                if A.op[i] != CUSTOM:
                    _backprop(i)
                else:
                    _run_custom(i)
            PyErr_CheckSignals()
            hi = stop - 1
    return 0


cdef int _forward_runs(idx_t* runs, Py_ssize_t nruns) except -1:
    """forward() over a cached reachable set, in creation order."""
    cdef Py_ssize_t r, i, hi
    for r in range(nruns - 1, -1, -1):
        i = runs[2 * r + 1]
        hi = runs[2 * r]
        while i <= hi:
            _eval(i)
            i += 1
            if (i & 0xFFFF) == 0:
                PyErr_CheckSignals()
    return 0


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

def _restore(data, grad, label, cls=None):
    """A copy or an unpickled Value: a leaf of class `cls` (Value if None)."""
    cdef Value v = Value.__new__(Value if cls is None else cls)
    Value.__init__(v, data, label=label)
    v.grad = grad
    return v


cdef inline Py_ssize_t _index(Value v) except -1:
    _check(v)
    return v.idx


cdef list _children_list(object children):
    """Value(data, _children, ...)'s children as a private list of Values."""
    cdef list kids
    if type(children) is tuple and len(<tuple>children) == 0:
        return []
    if isinstance(children, (str, bytes)):
        kids = None
    else:
        try:
            kids = list(children)
        except TypeError:
            kids = None
    if kids is None:
        raise TypeError("Value _children must be a tuple of Values, not %s (a label is "
                        "given as label=...)" % type(children).__name__)
    cdef Py_ssize_t k
    for k in range(len(kids)):
        if not isinstance(kids[k], Value):
            raise TypeError("Value _children must be Values of this engine, not %s.%s (child %d)"
                            % (type(kids[k]).__module__, type(kids[k]).__qualname__, k))
    return kids


@cython.freelist(1024)
cdef class Value:
    """A scalar with a gradient: a handle to one node of the arena.

    Value(data, _children=(), _op='', label='') as micrograd's: with children
    the node is a custom node, whose data the caller computed and whose chain
    rule is the function assigned to its `_backward`.
    """

    cdef Py_ssize_t idx
    cdef idx_t* runs            # cached reachable set: (hi, lo) runs, see _reachable
    cdef Py_ssize_t nruns
    cdef size_t runs_epoch      # the arena epoch the cache was made in
    cdef tuple kids             # the children's handles, once asked for (_kids_of)
    cdef _Custom custom         # a custom node's code and `_op`; None otherwise
    cdef PyObject* attrs        # its __dict__, made on the first attribute a user
                                # sets (v.name = 'x'); see _value_setattro

    __array_ufunc__ = None      # numpy scalars on the left defer to our ops

    # No __cinit__: a new handle is zero-filled (idx 0, no cache) and is only
    # valid once the handle table points back at it; see _check.

    def __init__(self, data, _children=(), _op="", label=""):
        """A leaf holding `data`, or with `_children` a custom node.

        Called again on a Value, it turns that Value's node into a leaf in
        place, as micrograd's constructor does: every node that used it now
        uses the leaf, and what it was computed from is released.  On an
        error the Value is left as it was.
        """
        # 1. Python-level input to C values and private objects
        cdef double d = _real(data, "Value data")
        cdef str text = _label_text(label)
        cdef str op = _op_text(_op)
        cdef list kids = _children_list(_children)
        cdef Py_ssize_t i, n = len(kids), k, top, e
        cdef _Custom info = _Custom(op) if (op or n) else None
        cdef tuple kids_t = tuple(kids) if (n and not _no_grad_depth) else None
        cdef tuple old_kids = self.kids       # dropped at the end: their __del__
        cdef _Custom old_custom = self.custom  # may run Python code
        cdef uint8_t keep = KEEP if (info is not None or type(self) is not Value) else 0
        if _is_live_handle(self):
            if n:
                raise RuntimeError("a Value gets children only when it is made: "
                                   "Value(data, _children, _op) makes a new custom node")
            # 2./3. no Python code runs from here to the end
            i = self.idx
            if A.op[i] != LEAF:
                A.epoch += 1            # a graph changed shape: every cached order is stale
            A.op[i] = LEAF
            A.a[i] = -1
            A.b[i] = -1
            A.data[i] = d
            A.grad[i] = 0.0
            A.flags[i] |= keep
            if self.runs != NULL:
                free(self.runs)
                self.runs = NULL
            self.kids = None            # dropped below, once the node is consistent
            self.custom = info
        elif kids_t is not None:
            # 2. validate the children; no Python code runs from here to the end
            for k in range(n):
                _check(<Value>kids[k])
            # 3. reserve, read the children's indices, write
            _reserve(1, n)
            top = A.n
            e = A.nedges
            for k in range(n):
                A.edges[e + k] = (<Value>kids[k]).idx
            _write_node(top, CUSTOM, e, n, d)
            A.nedges = e + n
            A.flags[top] = KEEP
            A.any_custom = True
            _commit(top, top + 1, self)
            self.kids = kids_t
            self.custom = info
        else:                           # a leaf (under no_grad also with children)
            _reserve(1, 0)              # a MemoryError here leaves self as it was
            _write_leaf(A.n, d)
            A.flags[A.n] = keep
            _commit(A.n, A.n + 1, self)
            self.custom = info
        if self.custom is not None or type(self) is not Value:
            _track(self)
        self._set_label(text)
        old_kids = None                 # may run __del__ of what they held: last
        old_custom = None

    @cython.final
    cdef int _set_label(self, str text) except -1:
        """Set this node's label; `text` is an exact str (no Python code runs)."""
        cdef Py_ssize_t i = _index(self)
        if text:
            _labels[i] = text
            A.flags[i] |= LABELED
        elif A.flags[i] & LABELED:
            A.flags[i] &= ~LABELED
            _labels.pop(i, None)
        return 0

    # -- attributes --------------------------------------------------------
    # Each setter converts its argument first (which may run Python code),
    # then finds the node.
    @property
    def data(self):
        return A.data[_index(self)]

    @data.setter
    def data(self, value):
        cdef double d = _real(value, "Value data")
        A.data[_index(self)] = d

    @property
    def grad(self):
        return A.grad[_index(self)]

    @grad.setter
    def grad(self, value):
        cdef double d = _real(value, "Value grad")
        A.grad[_index(self)] = d

    @property
    def label(self):
        cdef Py_ssize_t i = _index(self)
        if A.flags[i] & LABELED:
            return _labels[i]
        return ""

    @label.setter
    def label(self, value):
        self._set_label(_label_text(value))

    @property
    def _op(self):
        cdef Py_ssize_t i = _index(self)
        cdef uint8_t op = A.op[i]
        if self.custom is not None:
            return self.custom.op
        if op == POWC:
            return "**" + _exponent_text(A.data[A.b[i]])
        return OP_SYMBOLS[op]

    @property
    def _children(self):
        """The children in order (constants included, fused inputs in order).

        The same objects on every call for as long as this Value lives: they
        are made once and kept on it, as micrograd's `_prev` is."""
        return _kids_of(self)

    @property
    def _backward(self):
        """This node's chain rule, applied once: adds its grad times each
        local derivative into its children's grads (micrograd's `_backward`).

        A custom node's is the function assigned to it; a leaf's does nothing.
        """
        _check(self)
        if self.custom is not None and self.custom.backward is not None:
            return self.custom.backward
        return self._local_backward

    @_backward.setter
    def _backward(self, fn):
        # assigning a new function may drop the last reference to the old
        # one (its __del__ runs Python code): the node is read after that
        if not callable(fn):
            raise TypeError("_backward must be callable, not %s" % type(fn).__name__)
        cdef _Custom info = self.custom
        cdef Py_ssize_t i = _index(self)
        if A.op[i] != CUSTOM and A.op[i] != LEAF:
            raise TypeError("cannot set _backward on a built-in '%s' node: make a custom node "
                            "with Value(data, _children, _op) and set its _backward"
                            % OP_SYMBOLS[A.op[i]])
        if info is None:
            info = _Custom("")
        info.backward, fn = fn, info.backward
        self.custom = info
        i = _index(self)
        A.flags[i] |= KEEP
        _track(self)

    def _local_backward(self):
        """Apply this node's chain rule once (what `_backward` returns for a
        built-in node)."""
        cdef Py_ssize_t i = _index(self)
        if A.op[i] == CUSTOM:
            _run_custom(i)
        else:
            _backprop(i)

    @property
    def _prev(self):
        """The set of children, as micrograd's `_prev`."""
        return set(self._children)

    def __repr__(self):
        return "Value(data=%r, grad=%r)" % (self.data, self.grad)

    def __reduce__(self):
        # A Value pickles and copies as a leaf with its data, grad, label,
        # class and attributes; the graph behind it is not carried along.
        cdef object cls = None if type(self) is Value else type(self)
        cdef object attrs = dict(<object>self.attrs) if self.attrs != NULL else None
        return (_restore, (self.data, self.grad, self.label, cls), attrs or None)

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
        return _new_leaf(A.data[_index(self)])

    # -- sweeps --------------------------------------------------------------
    # A sweep takes the root's cached run array (its handle no longer holds
    # it), so Python code run by a signal check cannot free it under the
    # sweep by re-initializing or dropping the root; at the end the array is
    # cached again if it still describes this root's graph, else freed.
    @cython.final
    cdef idx_t* _claim_runs(self, Py_ssize_t* nruns) noexcept:
        cdef idx_t* runs = self.runs
        self.runs = NULL
        if runs != NULL and self.runs_epoch != A.epoch:
            free(runs)                  # nodes moved, or a graph changed shape
            runs = NULL
        nruns[0] = self.nruns
        return runs

    @cython.final
    cdef void _return_runs(self, Py_ssize_t root, idx_t* runs, Py_ssize_t nruns,
                           size_t epoch) noexcept:
        if runs == NULL:
            return
        if (self.runs == NULL and A.epoch == epoch and self.idx == root
                and _is_live_handle(self)):
            self.runs = runs
            self.nruns = nruns
            self.runs_epoch = epoch
        else:
            free(runs)

    def backward(self):
        """Gradients of this Value with respect to every node of its graph.

        Interior grads are reset first; this Value's grad becomes 1; leaves
        accumulate, so two calls give twice the leaf grads.
        """
        cdef Py_ssize_t root = _index(self), nruns
        cdef size_t epoch = A.epoch
        if AUTOGRAD_DEBUG:
            _verify_arena()
        cdef idx_t* runs = self._claim_runs(&nruns)
        _sweep_begin()
        try:
            if runs == NULL:
                # first call: one discovery sweep that back-propagates as it goes
                A.grad[root] = 1.0
                runs = _reachable(root, &nruns, True)
            else:
                _backward_runs(root, runs, nruns)
        finally:
            self._return_runs(root, runs, nruns, epoch)
            _sweep_end()

    def forward(self):
        """Recompute every interior node of this graph from the leaves' data."""
        cdef Py_ssize_t root = _index(self), nruns
        cdef size_t epoch = A.epoch
        if AUTOGRAD_DEBUG:
            _verify_arena()
        cdef idx_t* runs = self._claim_runs(&nruns)
        _sweep_begin()
        try:
            if runs == NULL:
                runs = _reachable(root, &nruns, False)
            _check_replayable(runs, nruns)
            _forward_runs(runs, nruns)
        finally:
            self._return_runs(root, runs, nruns, epoch)
            _sweep_end()
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
        if i == A.n - 1:
            _pop_dead_top()
    (<Value>o).idx = -1


# Handles die by the million, so their deallocation is lean: Value has no
# __dealloc__ (whose wrapper saves and restores the exception state on every
# call); instead this slot detaches the handle, then hands the object to the
# type's own deallocator (the freelist).
cdef destructor _base_value_dealloc = (<PyTypeObject*>Value).tp_dealloc

cdef inline bint is_exactly_value(PyObject* o) noexcept:
    return <PyTypeObject*>(o.ob_type) == <PyTypeObject*>Value

cdef void _value_dealloc(PyObject* o) noexcept:
    global _nspare
    PyObject_GC_UnTrack(o)              # before anything it holds is released
    _release_handle(o)
    _clear_attrs(o)
    if (_nspare < 1024 and is_exactly_value(o) and is_none((<Value>o).kids)
            and is_none((<Value>o).custom)):
        (<Value>o).idx = 0              # as a new handle: see _check
        _spare_handles[_nspare] = o     # dead until _new_handle revives it
        _nspare += 1
        return
    _base_value_dealloc(o)


# A handle's __dict__ (attrs) is not a field Cython knows: the GC slots are
# extended to see it and to clear it.
cdef traverseproc _base_value_traverse = get_traverse(<PyTypeObject*>Value)
cdef inquiry _base_value_clear = get_clear(<PyTypeObject*>Value)

cdef int _value_traverse(PyObject* o, visitproc visit, void* arg) noexcept:
    cdef int e = _base_value_traverse(o, visit, arg)
    if e:
        return e
    return visit_object(visit, (<Value>o).attrs, arg)

cdef int _value_clear(PyObject* o) noexcept:
    _clear_attrs(o)
    return _base_value_clear(o)

cdef void _clear_attrs(PyObject* o) noexcept:
    cdef PyObject* d = (<Value>o).attrs
    if d != NULL:
        (<Value>o).attrs = NULL
        Py_DECREF(<object>d)

set_traverse(<PyTypeObject*>Value, _value_traverse)
set_clear(<PyTypeObject*>Value, _value_clear)

(<PyTypeObject*>Value).tp_dealloc = _value_dealloc


# Attributes a user sets go into the handle's __dict__: the GC must then see
# the handle (a cycle may go through them), and the node keeps its handle
# while it is used, so the attributes are there when it is reached again.
cdef setattrofunc _base_value_setattro = get_setattro(<PyTypeObject*>Value)

cdef int _value_setattro(PyObject* o, PyObject* name, PyObject* value) except -1:
    _base_value_setattro(o, name, value)
    cdef Value h = <Value>o
    if h.attrs != NULL:
        _track(h)
        if _is_live_handle(h):
            A.flags[h.idx] |= KEEP
    return 0

set_setattro(<PyTypeObject*>Value, _value_setattro)


cdef Py_ssize_t _attrs_offset():
    cdef Value probe = Value.__new__(Value)
    return <char*>&probe.attrs - <char*><PyObject*>probe

set_dictoffset(<PyTypeObject*>Value, _attrs_offset())


cdef void _attrs_taken(PyObject* o) noexcept:
    _track(<Value>o)
    if _is_live_handle(<Value>o):
        A.flags[(<Value>o).idx] |= KEEP

add_dict_descriptor(<PyTypeObject*>Value, _attrs_taken)

# Functions assigned onto the class become methods (Value.exp2 = exp2), as
# on micrograd's Value: the type accepts new attributes.
(<PyTypeObject*>Value).tp_flags &= ~Py_TPFLAGS_IMMUTABLETYPE


cdef Value _handle_of(Py_ssize_t i):
    """The node's handle, made if it has none (never a second one)."""
    if A.handle[i] != NULL:
        return <Value>A.handle[i]
    cdef Value h = _new_handle_quietly()
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
        "sweeps": A.sweeps,             # sweeps in progress (nested or in other threads)
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
        if op > CUSTOM:
            raise AssertionError("node %d has an unknown op code %d" % (i, op))
        if A.flags[i] & ALL_MARKS & ~A.marks_in_use:
            raise AssertionError("node %d carries a stale mark bit (flags %d)" % (i, A.flags[i]))
        if A.handle[i] != NULL and (<Value>A.handle[i]).idx != i:
            raise AssertionError("the handle of node %d points at node %d" % (i, (<Value>A.handle[i]).idx))
        if op == LEAF:
            continue
        if _is_nary(op):
            # edges in node order; a node re-initialized as a leaf leaves a gap
            if A.a[i] < edge_end or A.b[i] < 1 or A.a[i] + A.b[i] > A.nedges:
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
    if edge_end > A.nedges:
        raise AssertionError("%d edges in use but the last n-ary node ends at %d" % (A.nedges, edge_end))
    if handles != A.handles:
        raise AssertionError("%d handles in the table but the count says %d" % (handles, A.handles))
    return 0


def check_arena():
    """Verify the arena's invariants (children below parents, handles pointing
    back, edges in order); raise AssertionError naming the first broken one."""
    _verify_arena()


def collect():
    """Compact the arena now; return the number of live nodes.

    During a sweep (called from a signal handler, or from another thread while
    one runs) nodes must stay put: the compaction is carried out when the
    last sweep ends, and the live nodes are counted now.
    """
    cdef Py_ssize_t live_edges, live
    cdef _Marks m
    if A.n == 0:
        return 0
    if A.sweeps:
        A.compact_pending = True
        _marks_begin(&m, A.n)
        live = _mark_live(_marks_of(&m), m.bit, &live_edges)
        _marks_end(&m, A.n)
        return live
    _collect_now()
    return A.n
