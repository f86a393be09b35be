# Layers of the batched replay: neurons that read the same inputs, run together.
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.

# ---------------------------------------------------------------------------
# A Replay finds its layers when it is recorded: NEURON slots with the same
# input slots, in the same order.  The whole layer is evaluated at its first
# (lowest) member's slot and differentiated there too, by the blocked
# kernels of layer_kernels.h, which keep every output's order of additions:
# the results are those of the neurons one by one, bit for bit.
#
# Doing every member's work at the first member's slot is the same
# computation as slot by slot when:
#   - the weights and the bias are leaves used by this neuron alone: they are
#     ready before any member, and no other slot adds to their gradients;
#   - the weights are parameters at consecutive offsets of the shared
#     values: the kernels read them, and add to their gradients, in place;
#   - an input appears once per neuron, and no slot between the first and
#     the last member reads an input: the backward sweep, which reaches the
#     members last to first, would have added to the inputs' gradients
#     nothing but the members' contributions meanwhile, which the kernel adds
#     in that same order.
#
# Replay.layered() is given its layers instead (add()): each neuron of a
# dense layer is a slot whose edges are the layer's inputs alone, its
# weights a range of the shared values (woff) and its bias a slot (bslot);
# the conditions above hold by construction (the layer's inputs are the
# layer before's outputs, distinct slots, and only the members' activations
# lie between the members).  Recorded layers keep the same per-member
# numbers, so both kinds run through the same code.
#
# The kernels run without the GIL, on up to Replay.threads threads: they read
# and write only the Replay's own buffers, which cannot move or be freed while
# the Replay is busy (load() refuses), and no Python code runs in them.
# ---------------------------------------------------------------------------

@cython.auto_pickle(False)
cdef class _Layers:
    """The layers of one Replay: their members' slots and the kernels' rows."""
    cdef Py_ssize_t count               # layers
    cdef Py_ssize_t* of                 # per slot: its layer, or -1
    cdef Py_ssize_t* first              # per layer: where its members start in `members`
    cdef Py_ssize_t* size               # per layer: its number of members J
    cdef Py_ssize_t* members            # the members' slots, ascending, layer after layer
    cdef Py_ssize_t* woff               # per member: its first weight's offset in svals
    cdef Py_ssize_t* bslot              # per member: its bias's slot
    cdef Py_ssize_t* nin                # per layer: its inputs,
    cdef Py_ssize_t* inedge             # their slots: r.edges[inedge ... inedge + nin)
    cdef Py_ssize_t widest              # the most members of a layer
    # the kernels' arguments: rows, one per member (w, bias, out, g, gw) or input (xs, gx)
    cdef const double** w
    cdef double* bias
    cdef double** out
    cdef const double** g
    cdef double** gw
    cdef const double** xs
    cdef double** gx
    cdef Py_ssize_t* gk
    cdef int last_threads               # threads the last kernel call used (tests)

    def __dealloc__(self):
        free(self.of); free(self.first); free(self.size); free(self.members)
        free(self.woff); free(self.bslot); free(self.nin); free(self.inedge)
        free(self.w); free(self.bias); free(self.out); free(self.g); free(self.gw)
        free(self.xs); free(self.gx); free(self.gk)

    cdef int find(self, Replay r) except -1:
        """Group r's NEURON slots into layers (see the top); mark the members."""
        cdef Py_ssize_t n = r.n, s, k, lead = -1, start = 0
        cdef bint candidate
        cdef Py_ssize_t* uses = <Py_ssize_t*>calloc(n + 1, sizeof(Py_ssize_t))
        cdef uint8_t* reads = <uint8_t*>calloc(n + 1, 1)   # 1: an input of the open layer
        try:
            if uses == NULL or reads == NULL:
                raise MemoryError()
            self.reserve(n, n, n)
            for s in range(n):
                for k in range(_child_count(r, s)):
                    uses[_child(r, s, k)] += 1
            for s in range(n):
                candidate = r.kind[s] & NEURON and _groupable(r, s, uses, reads)
                if candidate and lead >= 0 and _same_inputs(r, lead, s):
                    self.members[start + self.size[self.count]] = s
                    self.size[self.count] += 1
                    continue
                if lead >= 0 and (candidate or _reads_any(r, s, reads)):
                    self._close(r, lead, start, reads)      # no member beyond this slot
                    lead = -1
                if candidate:
                    lead = s
                    start = self._open(r, s, reads)
            if lead >= 0:
                self._close(r, lead, start, reads)
            self._allocate(r.width)
        finally:
            free(uses)
            free(reads)
        return 0

    cdef int reserve(self, Py_ssize_t slots, Py_ssize_t layers, Py_ssize_t members) except -1:
        """Room for `layers` layers of `members` members in all, over `slots`
        slots (none of them a member yet)."""
        cdef Py_ssize_t s
        self.of = <Py_ssize_t*>malloc((slots + 1) * sizeof(Py_ssize_t))
        self.first = <Py_ssize_t*>malloc((layers + 1) * sizeof(Py_ssize_t))
        self.size = <Py_ssize_t*>malloc((layers + 1) * sizeof(Py_ssize_t))
        self.nin = <Py_ssize_t*>malloc((layers + 1) * sizeof(Py_ssize_t))
        self.inedge = <Py_ssize_t*>malloc((layers + 1) * sizeof(Py_ssize_t))
        self.members = <Py_ssize_t*>malloc((members + 1) * sizeof(Py_ssize_t))
        self.woff = <Py_ssize_t*>malloc((members + 1) * sizeof(Py_ssize_t))
        self.bslot = <Py_ssize_t*>malloc((members + 1) * sizeof(Py_ssize_t))
        if (self.of == NULL or self.first == NULL or self.size == NULL or self.nin == NULL
                or self.inedge == NULL or self.members == NULL or self.woff == NULL
                or self.bslot == NULL):
            raise MemoryError()
        for s in range(slots):
            self.of[s] = -1
        return 0

    cdef void add(self, Replay r, Py_ssize_t inedge, Py_ssize_t nin, const Py_ssize_t* slots,
                  const Py_ssize_t* woff, const Py_ssize_t* bslot, Py_ssize_t J) noexcept:
        """A layer made as one (Replay.layered()): its J members' slots
        (ascending), weights and biases, reading the nin slots at
        r.edges[inedge...]."""
        cdef Py_ssize_t start = 0, j
        if self.count > 0:
            start = self.first[self.count - 1] + self.size[self.count - 1]
        self.first[self.count], self.size[self.count] = start, J
        self.nin[self.count], self.inedge[self.count] = nin, inedge
        for j in range(J):
            self.members[start + j] = slots[j]
            self.woff[start + j] = woff[j]
            self.bslot[start + j] = bslot[j]
            self.of[slots[j]] = self.count
            r.kind[slots[j]] |= LAYER
        self.widest = max(self.widest, J)
        self.count += 1

    cdef Py_ssize_t _open(self, Replay r, Py_ssize_t s, uint8_t* reads):
        """Start a layer with neuron s as its first member; mark its inputs."""
        cdef Py_ssize_t e = r.ka[s], nin = (r.kb[s] - 1) // 2, k, start = 0
        if self.count > 0:
            start = self.first[self.count - 1] + self.size[self.count - 1]
        self.first[self.count] = start
        self.size[self.count] = 1
        self.members[start] = s
        for k in range(nin):
            reads[r.edges[e + 1 + nin + k]] = 1
        return start

    cdef int _close(self, Replay r, Py_ssize_t lead, Py_ssize_t start, uint8_t* reads) except -1:
        """End the open layer: keep it if it has two members or more."""
        cdef Py_ssize_t e = r.ka[lead], nin = (r.kb[lead] - 1) // 2, k, J = self.size[self.count]
        for k in range(nin):
            reads[r.edges[e + 1 + nin + k]] = 0
        if J < 2:
            return 0
        self.nin[self.count], self.inedge[self.count] = nin, e + 1 + nin
        for k in range(J):
            e = r.ka[self.members[start + k]]
            self.woff[start + k] = r.off[r.edges[e + 1]]
            self.bslot[start + k] = r.edges[e]
            self.of[self.members[start + k]] = self.count
            r.kind[self.members[start + k]] |= LAYER
        self.widest = max(self.widest, J)
        self.count += 1
        return 0

    cdef int _allocate(self, Py_ssize_t width) except -1:
        cdef Py_ssize_t J = self.widest + 1, n = width + 1
        self.w = <const double**>malloc(J * sizeof(double*))
        self.bias = <double*>malloc(J * sizeof(double))
        self.out = <double**>malloc(J * sizeof(double*))
        self.g = <const double**>malloc(J * sizeof(double*))
        self.gw = <double**>malloc(J * sizeof(double*))
        self.xs = <const double**>malloc(n * sizeof(double*))
        self.gx = <double**>malloc(n * sizeof(double*))
        self.gk = <Py_ssize_t*>malloc(n * sizeof(Py_ssize_t))
        if (self.w == NULL or self.bias == NULL or self.out == NULL or self.g == NULL
                or self.gw == NULL or self.xs == NULL or self.gx == NULL or self.gk == NULL):
            raise MemoryError()
        return 0

    cdef inline bint starts_at(self, Py_ssize_t s) noexcept:
        """Slot s is the first member of a layer."""
        return self.of[s] >= 0 and self.members[self.first[self.of[s]]] == s

    cdef int forward(self, Replay r, Py_ssize_t s) except -1:
        """Evaluate the layer whose first member is slot s, every member."""
        cdef lk_layer L
        cdef Py_ssize_t lid = self.of[s], j, m, e
        self._inputs(r, s, &L)
        L.J = self.size[lid]
        for j in range(L.J):
            m = self.first[lid] + j
            self.w[j] = r.svals + self.woff[m]
            self.bias[j] = r.svals[r.off[self.bslot[m]]]
            self.out[j] = r.bvals + r.off[self.members[m]] * r.stride
        L.w, L.bias, L.out = self.w, self.bias, self.out
        with nogil:
            self.last_threads = layer_forward(&L, r.nthreads)
        return 0

    cdef int backward(self, Replay r, Py_ssize_t s, Py_ssize_t root) except -1:
        """The chain rule of the layer whose first member is slot s, for its
        members the sweep from `root` reached, last to first."""
        cdef lk_layer L
        cdef Py_ssize_t lid = self.of[s], j, k, m, s_m, c, bias
        self._inputs(r, s, &L)
        L.J = 0
        for j in range(self.size[lid] - 1, -1, -1):
            m = self.first[lid] + j
            s_m = self.members[m]
            if s_m > root:
                continue
            bias = self.bslot[m]
            if r.kind[bias] & NEEDS_GRAD:
                r.sgrad[r.off[bias]] += batch_sum(r.bgrad + r.off[s_m] * r.stride, r.B)
            self.w[L.J] = r.svals + self.woff[m]
            self.g[L.J] = r.bgrad + r.off[s_m] * r.stride
            self.gw[L.J] = r.sgrad + self.woff[m]
            L.J += 1
        L.m = 0
        for k in range(L.n):
            c = r.edges[self.inedge[lid] + k]
            if r.kind[c] & NEEDS_GRAD:
                self.gx[L.m] = r.bgrad + r.off[c] * r.stride
                self.gk[L.m] = k
                L.m += 1
        L.w, L.g, L.gw, L.gx, L.gk = self.w, self.g, self.gw, self.gx, self.gk
        with nogil:
            self.last_threads = layer_weight_grads(&L, r.nthreads)
            layer_input_grads(&L, r.nthreads)
        return 0

    cdef void _inputs(self, Replay r, Py_ssize_t s, lk_layer* L) noexcept:
        """The input rows of the layer whose first member is slot s."""
        cdef Py_ssize_t lid = self.of[s], e = self.inedge[lid], k
        L.n = self.nin[lid]
        L.B = r.B
        for k in range(L.n):
            self.xs[k] = r.bvals + r.off[r.edges[e + k]] * r.stride
        L.xs = self.xs


cdef inline Py_ssize_t _child_count(Replay r, Py_ssize_t s) noexcept:
    if r.op[s] == LEAF:
        return 0
    if _is_nary(r.op[s]):
        return r.kb[s]
    return 2 if r.kb[s] >= 0 else 1


cdef inline Py_ssize_t _child(Replay r, Py_ssize_t s, Py_ssize_t k) noexcept:
    if _is_nary(r.op[s]):
        return r.edges[r.ka[s] + k]
    return r.ka[s] if k == 0 else r.kb[s]


cdef bint _reads_any(Replay r, Py_ssize_t s, const uint8_t* reads) noexcept:
    """Slot s reads one of the marked slots."""
    cdef Py_ssize_t k
    for k in range(_child_count(r, s)):
        if reads[_child(r, s, k)]:
            return True
    return False


cdef bint _groupable(Replay r, Py_ssize_t s, const Py_ssize_t* uses, uint8_t* reads) noexcept:
    """Neuron s may be a layer's member (see the top of this file)."""
    cdef Py_ssize_t e = r.ka[s], nin = (r.kb[s] - 1) // 2, k, w, x, w0 = r.edges[e + 1]
    cdef bint ok = True
    if r.op[r.edges[e]] != LEAF or uses[r.edges[e]] != 1:
        return False
    for k in range(nin):
        w = r.edges[e + 1 + k]
        if (r.op[w] != LEAF or not (r.kind[w] & NEEDS_GRAD) or uses[w] != 1
                or r.off[w] != r.off[w0] + k):
            return False
    for k in range(nin):                # each input once (marks 2, then cleared)
        x = r.edges[e + 1 + nin + k]
        if reads[x] & 2:
            ok = False
        reads[x] |= 2
    for k in range(nin):
        reads[r.edges[e + 1 + nin + k]] &= ~2
    return ok


cdef bint _same_inputs(Replay r, Py_ssize_t a, Py_ssize_t b) noexcept:
    cdef Py_ssize_t ea = r.ka[a], eb = r.ka[b], n = (r.kb[a] - 1) // 2, k
    if r.kb[a] != r.kb[b]:
        return False
    for k in range(n):
        if r.edges[ea + 1 + n + k] != r.edges[eb + 1 + n + k]:
            return False
    return True
