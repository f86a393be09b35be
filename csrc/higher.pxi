# Derivative graphs: the backward sweep emitting nodes instead of numbers
# (autograd.higher.gradients with create_graph=True).
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.
#
# autograd/higher.py writes each op's derivative with Value ops; this sweep
# emits exactly the nodes those ops would make, in the same order, with the
# same data (the same kernels), so the two give the same graph, bit for bit,
# and the pure engine's too.  It runs inside a sweep (_sweep_begin): nodes do
# not move and no handle-less node is popped until it ends, so indices stay
# valid; the arena may grow (reallocate), so only A.* is read, never a
# pointer into it.  Graphs with custom nodes (their Python code lives on
# handles, which emitted nodes do not have) are left to higher.py.

cdef inline Py_ssize_t _emit_leaf(double d) except -1:
    _reserve(1, 0)
    cdef Py_ssize_t i = A.n
    _write_leaf(i, d)
    A.n = i + 1
    return i


cdef Py_ssize_t _emit(uint8_t op, Py_ssize_t x, Py_ssize_t y) except -1:
    """x <op> y (y = -1 for one-input ops), as _binary and _unary make it."""
    cdef double r = _apply(op, A.data[x], A.data[y] if y >= 0 else 0.0)
    _reserve(1, 0)
    cdef Py_ssize_t i = A.n
    _write_node(i, op, x, y, r)
    A.n = i + 1
    return i


cdef Py_ssize_t _emit_number(uint8_t op, Py_ssize_t x, double c, bint number_first) except -1:
    """x <op> c, or c <op> x with number_first, for a number c, as _binary
    makes it: a leaf for c, then the node (x ** c is a POWC node)."""
    cdef double r = _apply(op, c, A.data[x]) if number_first else _apply(op, A.data[x], c)
    _reserve(2, 0)
    cdef Py_ssize_t ci = A.n
    _write_leaf(ci, c)
    if number_first:
        _write_node(ci + 1, op, ci, x, r)
    else:
        _write_node(ci + 1, POWC if op == POW else IPOWC if op == IPOW else op, x, ci, r)
    A.n = ci + 2
    return ci + 1


cdef Py_ssize_t _emit_sum(const Py_ssize_t* terms, Py_ssize_t count) except -1:
    """vsum of the nodes `terms`, left to right, one SUM node."""
    cdef double r = A.data[terms[0]]
    cdef Py_ssize_t k, e, i
    for k in range(1, count):
        r = r + A.data[terms[k]]
    _reserve(1, count)
    e = A.nedges
    for k in range(count):
        A.edges[e + k] = terms[k]
    A.nedges = e + count
    i = A.n
    _write_node(i, SUM, e, count, r)
    A.n = i + 1
    return i


cdef struct _Terms:
    # every node's contributions, in order: linked lists through `next`
    Py_ssize_t* first       # per node index: its first term, or -1
    Py_ssize_t* last        # its last term
    Py_ssize_t* node        # per term: the emitted node
    Py_ssize_t* next        # the node's next term, or -1
    Py_ssize_t count, cap


cdef int _add_term(_Terms* t, Py_ssize_t child, Py_ssize_t term) except -1:
    cdef Py_ssize_t* grown
    if t.count == t.cap:
        grown = <Py_ssize_t*>realloc(t.node, 2 * t.cap * sizeof(Py_ssize_t))
        if grown == NULL:
            raise MemoryError()
        t.node = grown
        grown = <Py_ssize_t*>realloc(t.next, 2 * t.cap * sizeof(Py_ssize_t))
        if grown == NULL:
            raise MemoryError()
        t.next = grown
        t.cap *= 2
    t.node[t.count] = term
    t.next[t.count] = -1
    if t.first[child] < 0:
        t.first[child] = t.count
    else:
        t.next[t.last[child]] = t.count
    t.last[child] = t.count
    t.count += 1
    return 0


cdef int _emit_rule(_Terms* t, Py_ssize_t i, Py_ssize_t g) except -1:
    """Node i's contributions to its children, for its adjoint g: the rules
    of autograd/higher.py's _contributions, op by op."""
    cdef uint8_t op = A.op[i]
    cdef Py_ssize_t a = A.a[i], b = A.b[i], k, n, e, w, x, s
    cdef double c
    if op == ADD:
        _add_term(t, a, g)
        _add_term(t, b, g)
    elif op == SUB:
        _add_term(t, a, g)
        _add_term(t, b, _emit(NEG, g, -1))
    elif op == MUL:
        _add_term(t, a, _emit(MUL, b, g))
        _add_term(t, b, _emit(MUL, a, g))
    elif op == DIV or op == IDIV:       # g / y; -((out * g) / y), divisions with IEEE results
        _add_term(t, a, _emit(IDIV, g, b))
        _add_term(t, b, _emit(NEG, _emit(IDIV, _emit(MUL, i, g), b), -1))
    elif op == NEG:
        _add_term(t, a, _emit(NEG, g, -1))
    elif op == POWC or op == IPOWC:     # c * x ** (c - 1) * g
        c = A.data[b]
        if c != 0.0:
            _add_term(t, a, _emit(MUL, _emit_number(MUL, _emit_number(IPOW, a, c - 1.0, False), c, True), g))
    elif op == POW or op == IPOW:       # y * x ** (y - 1) * g; out * log(x) * g
        if A.data[b] != 0.0:
            x = _emit(IPOW, a, _emit_number(SUB, b, 1.0, False))
            _add_term(t, a, _emit(MUL, _emit(MUL, b, x), g))
        if not (A.data[a] == 0.0 and A.data[b] >= 0.0):
            _add_term(t, b, _emit(MUL, _emit(MUL, i, _emit(ILOG, a, -1)), g))
    elif op == RELU:                    # a constant mask
        if A.data[i] > 0.0:
            _add_term(t, a, g)
    elif op == ABS:
        if A.data[a] > 0.0:
            _add_term(t, a, g)
        elif A.data[a] < 0.0:
            _add_term(t, a, _emit(NEG, g, -1))
    elif _is_row(op):                   # unary.pxi: slope * g, or g / slope
        s = ROWS[op].slope_node(a, i)
        _add_term(t, a, _emit(IDIV, g, s) if ROWS[op].divides else _emit(MUL, s, g))
    elif op == SUM:
        for k in range(b):
            _add_term(t, A.edges[a + k], g)
    elif op == DOT:                     # bias, w0..w(n-1), x0..x(n-1)
        n = (b - 1) // 2
        _add_term(t, A.edges[a], g)
        for k in range(n):
            w, x = A.edges[a + 1 + k], A.edges[a + 1 + n + k]
            _add_term(t, w, _emit(MUL, x, g))
            _add_term(t, x, _emit(MUL, w, g))
    elif op == LSE:                     # exp(x_k - out) * g
        for k in range(b):
            e = A.edges[a + k]
            _add_term(t, e, _emit(MUL, _emit(EXP, _emit(SUB, e, i), -1), g))
    return 0


cdef list _derivative_graph(Value output, list inputs):
    """The adjoints of `inputs` (handles, None where output does not use
    one), emitted as nodes; or None where higher.py must build them (a
    custom node between the output and the oldest input it uses, or inside
    no_grad())."""
    cdef Py_ssize_t nin = len(inputs), root, nruns = 0, r, i, k, count, g, term, lowest, stop
    cdef list out = _nones(nin)            # the last GC point before the sweep
    cdef _Terms t
    cdef Py_ssize_t* adj = NULL
    cdef Py_ssize_t small[64]
    cdef Py_ssize_t* terms = &small[0]
    cdef Py_ssize_t terms_cap = 64
    cdef idx_t* runs = NULL
    if _no_grad_depth:
        return None
    root = _index(output)
    t.first = t.last = t.node = t.next = NULL
    _sweep_begin()
    try:
        runs = _reachable(root, &nruns, False)
        # A node older than every input the output uses cannot lead to one: the sweep
        # stops at the oldest of them, so a grad inside a grad does not visit (and emit
        # adjoints for) the outer graph below it.  _built_with_ops stops at the same node.
        lowest = root + 1
        for k in range(nin):
            i = _index(<Value?>inputs[k])
            if i < lowest and _in_runs(runs, nruns, i):
                lowest = i
        for r in range(nruns):
            if runs[2 * r] < lowest:
                break
            stop = runs[2 * r + 1] if runs[2 * r + 1] > lowest else lowest
            for i in range(runs[2 * r], stop - 1, -1):
                if A.op[i] == CUSTOM or A.flags[i] & KEEP:
                    return None
        t.first = <Py_ssize_t*>malloc((root + 1) * sizeof(Py_ssize_t))
        t.last = <Py_ssize_t*>malloc((root + 1) * sizeof(Py_ssize_t))
        adj = <Py_ssize_t*>malloc((root + 1) * sizeof(Py_ssize_t))
        t.cap = 64
        t.count = 0
        t.node = <Py_ssize_t*>malloc(t.cap * sizeof(Py_ssize_t))
        t.next = <Py_ssize_t*>malloc(t.cap * sizeof(Py_ssize_t))
        if t.first == NULL or t.last == NULL or adj == NULL or t.node == NULL or t.next == NULL:
            raise MemoryError()
        for i in range(root + 1):
            t.first[i] = -1
            adj[i] = -1
        _add_term(&t, root, _emit_leaf(1.0))            # the seed
        for r in range(nruns):
            if runs[2 * r] < lowest:
                break
            stop = runs[2 * r + 1] if runs[2 * r + 1] > lowest else lowest
            for i in range(runs[2 * r], stop - 1, -1):
                if t.first[i] < 0:
                    continue
                count = 0
                term = t.first[i]
                while term >= 0:
                    if count == terms_cap:
                        terms = _grow_terms(terms, &small[0], &terms_cap)
                    terms[count] = t.node[term]
                    count += 1
                    term = t.next[term]
                g = terms[0] if count == 1 else _emit_sum(terms, count)
                adj[i] = g
                if A.op[i] != LEAF:
                    _emit_rule(&t, i, g)
                if (i & 0xFFFF) == 0:
                    PyErr_CheckSignals()     # handlers may grow the arena: nothing moves
        for k in range(nin):
            i = _index(<Value?>inputs[k])
            if i <= root and adj[i] >= 0:
                out[k] = _handle_of(adj[i])
        return out
    finally:
        free(runs)
        free(adj)
        free(t.first)
        free(t.last)
        free(t.node)
        free(t.next)
        if terms != &small[0]:
            free(terms)
        _sweep_end()


cdef Py_ssize_t* _grow_terms(Py_ssize_t* terms, Py_ssize_t* small, Py_ssize_t* cap) except NULL:
    cdef Py_ssize_t* grown = <Py_ssize_t*>malloc(2 * cap[0] * sizeof(Py_ssize_t))
    if grown == NULL:
        raise MemoryError()
    memcpy(grown, terms, cap[0] * sizeof(Py_ssize_t))
    if terms != small:
        free(terms)
    cap[0] *= 2
    return grown


cdef bint _in_runs(const idx_t* runs, Py_ssize_t nruns, Py_ssize_t i) noexcept:
    """Whether node i is in the runs _reachable gave: (hi, lo) pairs, highest
    first, so a binary search finds the first run with lo <= i."""
    cdef Py_ssize_t lo = 0, hi = nruns, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if runs[2 * mid + 1] <= i:
            hi = mid
        else:
            lo = mid + 1
    return lo < nruns and i <= runs[2 * lo]


cdef tuple _uses_of(Value output, list inputs):
    """Value._uses: one discovery sweep from the output; an input is used if
    its index lies in one of the reachable runs, and a node older than every
    input is used if the lowest reachable index is below theirs (creation
    order is index order, and compaction keeps it)."""
    cdef Py_ssize_t nin = len(inputs), root, nruns = 0, k, i, oldest = -1
    cdef list used = _nones(nin)           # the last GC point before the sweep
    cdef bint older = False
    cdef idx_t* runs = NULL
    root = _index(output)
    _sweep_begin()
    try:
        runs = _reachable(root, &nruns, False)
        # indices read after the sweep's signal checks; nothing moves until _sweep_end
        for k in range(nin):
            i = _index(<Value?>inputs[k])
            if oldest < 0 or i < oldest:
                oldest = i
            used[k] = _in_runs(runs, nruns, i)
        older = nin > 0 and runs[2 * nruns - 1] < oldest
    finally:
        free(runs)
        _sweep_end()
    return used, older


# -- the derivative graphs' division, power and log, with IEEE results: for the
#    rules of autograd/higher.py (graphs with custom nodes), where this sweep
#    emits IDIV, IPOW(C) and ILOG
def _ieee_div(x, y):
    """x / y, inf or NaN where y is 0 (a derivative at a pole), as a node."""
    return _binary(IDIV, <Value?>x, y, False)


def _ieee_pow(x, y):
    """x ** y, inf or NaN where math.pow raises, as a node (y a number: x ** c)."""
    return _binary(IPOW, <Value?>x, y, False)


def _ieee_log(x):
    """log(x), -inf at 0 and NaN below, as a node."""
    return _unary(ILOG, <Value?>x)
