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

A loop whose bound was taken before a GC point runs over what the function
owns: a local reference to an immutable tuple (`cdef tuple vals =
self.values`, then `vals[k]`; never `self.values[k]`, which Cython compiles
to an unchecked PyTuple_GET_ITEM of whatever the attribute holds by then), a
list it made itself, bounded by its own len(), or C memory it owns.  A
result list is made by _nones(n), n read once (Cython's `[None] * self.B`
reads self.B again to fill the list, after the allocation, a GC point), and
the object is checked again after its last GC point (Replay._per_sample).
Blocks, Replays and functions are made once (a second __init__ raises), so
what a method loops over is never replaced under it.  How this is kept:
tests/test_source_rules.py checks these rules over csrc/ as text, and the
re-entrancy fuzz (tests/test_reentrancy_fuzz.py) runs every public callable
and property of this module with Python code at its GC points; a test there
fails naming any callable the fuzz does not use.

A sweep owns what it iterates: it takes its run array from the root's handle
and gives it back (or frees it) at the end, so re-initializing or dropping
the root from a signal handler frees nothing under it.  Each discovery sweep
marks nodes with its own flag bit, so sweeps may nest (a signal handler's
backward()) or interleave (threads, when a handler releases the GIL).
While any sweep is in progress nothing compacts or pops nodes: indices stay
put, and collect() is carried out when the last sweep ends.

Code that runs without the GIL: only the replay's layer kernels
(layer_kernels.h, on a pool of threads: layer_threads.h).  While they run,
other Python threads may do anything, the arena included (grow it, compact
it), so the kernels never touch it: they read and write only the Replay's
own buffers, which cannot be freed or resized meanwhile (the Replay is busy:
load() and every other method refuse), and run no Python code.  The
parameters are copied into those buffers before and their gradients added
back after, with the GIL held.
"""

cimport cython
from cpython.ref cimport PyObject
from cpython.pyport cimport PY_SSIZE_T_MAX
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsDouble
from cpython cimport array
from cpython.unicode cimport PyUnicode_FromObject
from cpython.sequence cimport PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals, PyErr_Fetch, PyErr_Restore
from cpython.object cimport PyTypeObject, destructor
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memset, memcpy
from libc.stdint cimport uint8_t, int32_t, INT32_MAX
from libc.math cimport exp, log, sqrt, tanh, pow, fabs, isfinite, INFINITY

import array
import functools
import math
import numbers
import operator
import os

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
    /* someone holds a weak reference to o (its weak list is not empty) */
    static int autograd_has_weakrefs(PyObject* o) {
        Py_ssize_t offset = Py_TYPE(o)->tp_weaklistoffset;
        return offset > 0 && *(PyObject**)((char*)o + offset) != NULL;
    }
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
    bint has_weakrefs "autograd_has_weakrefs"(PyObject* o)
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
    LSE        # log(exp(e0) + exp(e1) + ...), shifted by the max when evaluated
    # The derivative graphs' division and power (create_graph): IEEE results
    # (inf, NaN) where DIV and POW raise, as backward() computes them, so a
    # derivative at a pole is backward()'s inf, not an exception.  Their own
    # derivatives are DIV's and POW's.  (And ILOG, a row of unary.pxi.)
    IDIV
    IPOW
    IPOWC
    # (op codes above IPOWC: unary.pxi's functions, SIN ... LAST_OP)

# Op names, by op code: as Value._op shows them, and as the pure engine names
# its kinds (Value._rule).  The table's functions are named by their rows.
cdef list OP_SYMBOLS = ["", "+", "-", "*", "/", "neg", "**", "**", "ReLU",
                        None, None, None, None, None, "abs", "sum", "dot", "custom", "logsumexp",
                        "/", "**", "**"]
cdef list KIND_NAMES = ["leaf", "add", "sub", "mul", "div", "neg", "pow", "powc", "relu",
                        None, None, None, None, None, "abs", "sum", "dot", "custom", "lse",
                        "idiv", "ipow", "ipowc"]

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
    #elif defined(_MSC_VER)
    static __declspec(thread) int autograd_no_grad_depth = 0;    /* C11's keyword needs /std:c11 */
    #else
    static _Thread_local int autograd_no_grad_depth = 0;
    #endif
    """
    int _no_grad_depth "autograd_no_grad_depth"


# The core is one module (one arena, no calls across modules on the hot
# paths), written in parts by concern; each part is included here:
#   arena.pxi    growing the arena, marking live nodes, compaction
#   kernels.pxi  each op's forward formula beside its local derivative
#   unary.pxi    the smooth one-input functions, one row each (sin, exp, ...)
#   custom.pxi   custom nodes: a user's `_backward`, autograd.function
#   build.pxi    conversions, handles, the ops, vsum, dot, dense
#   sweeps.pxi   discovery, backward and forward over runs of the arena
#   value.pxi    the Value handle, its deallocation and GC slots
#   runs.pxi     a tuple of Values' nodes as runs of consecutive indices
#   block.pxi    bulk operations over a fixed sequence of Values (training steps)
#   replay.pxi   one sample's graph replayed over a batch (training steps)
#   layers.pxi   the replay's layers: neurons with the same inputs, run together
include "arena.pxi"
include "kernels.pxi"
include "unary.pxi"
include "custom.pxi"
include "build.pxi"
include "sweeps.pxi"

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
    """Whether ops record a graph in this thread (False inside no_grad())."""
    return _no_grad_depth == 0


class enable_grad:
    """Context manager: ops inside record their graph even within no_grad(),
    as torch.enable_grad (train(), evaluate() and predict() record their
    graph so, whatever the caller's mode); the mode comes back on exit.
    It applies to the thread that entered it."""

    def __enter__(self):
        global _no_grad_depth
        self.depth = _no_grad_depth
        _no_grad_depth = 0
        return self

    def __exit__(self, *exc):
        global _no_grad_depth
        _no_grad_depth = self.depth
        return False


include "value.pxi"
include "higher.pxi"
include "runs.pxi"
include "block.pxi"
include "replay.pxi"
include "layers.pxi"

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
        if op > LAST_OP or (op > IPOWC and not _is_row(op)):
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
