# The arena: growing it, marking live nodes, compaction, popping dead nodes.
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.

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
    return op == SUM or op == DOT or op == CUSTOM or op == LSE


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
