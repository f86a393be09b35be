# The sweeps: discovery, backward and forward over runs of the arena.
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.

# ---------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------

cdef idx_t* _reachable(Py_ssize_t root, Py_ssize_t* nruns, bint backprop,
                       double* into=NULL, bint* met_custom=NULL) except NULL:
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

    With `into` (gradients()), the sweep back-propagates into that private
    array instead (zeroed by the caller, indexed as the arena); a custom
    node, whose Python code adds into .grad itself, is not run but reported
    in *met_custom, and the discovery goes on.

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
                if into != NULL:
                    if op != CUSTOM:
                        _backprop_into(i, into)
                    else:
                        met_custom[0] = True
                elif backprop:
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
