# Index runs: the nodes of a fixed tuple of Values, read and written in place.
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.

# ---------------------------------------------------------------------------
# A Block and a Replay touch every parameter in each training step.  Going
# through each parameter's handle for its index costs a cache miss per
# parameter; but a model makes its parameters one after another, so their
# nodes sit at consecutive indices of the arena.  _Runs keeps those indices
# as runs of consecutive ones, made once, and made again only after a
# compaction (the one thing that moves a live node: A.compactions counts
# them).  A run is also consecutive in the caller's own numbering of the
# Values (their position, or a Replay's offsets of their slots), so a step is
# one loop over contiguous memory per run.
#
# refresh() runs no Python code and is called right before the loops that
# use the runs, after the last point where Python code may run.
# ---------------------------------------------------------------------------

@cython.auto_pickle(False)
cdef class _Runs:
    """Runs of consecutive arena indices of a tuple of Values."""
    cdef Py_ssize_t count               # runs
    cdef Py_ssize_t* node               # per run: its first node's arena index
    cdef Py_ssize_t* at                 # per run: its first Value's own number
    cdef Py_ssize_t* length             # per run: how many Values
    cdef size_t made                    # A.compactions when made
    cdef bint valid

    def __dealloc__(self):
        free(self.node); free(self.at); free(self.length)

    cdef int refresh(self, tuple values, const Py_ssize_t* numbers) except -1:
        """Make the runs again if the arena was compacted since: values[k]
        has number numbers[k] (k if NULL; -1: leave it out)."""
        cdef Py_ssize_t n = len(values), k, r = -1
        if self.valid and self.made == A.compactions:
            return 0
        self._start(n)
        for k in range(n):
            r = self._add(r, (<Value>values[k]).idx, k if numbers == NULL else numbers[k])
        self._finish(r)
        return 0

    cdef int made_of(self, const Py_ssize_t* nodes, const Py_ssize_t* numbers,
                     Py_ssize_t n) except -1:
        """The runs of the n nodes given (node k has number numbers[k], k if
        NULL, -1: leave it out), read from the handles by the caller since
        the last compaction: a Replay records its parameters' nodes, and this
        spares a second pass over their handles, spread in memory."""
        cdef Py_ssize_t k, r = -1
        self._start(n)
        for k in range(n):
            r = self._add(r, nodes[k], k if numbers == NULL else numbers[k])
        self._finish(r)
        return 0

    cdef int _start(self, Py_ssize_t n) except -1:
        self.valid = False
        if self.node == NULL:
            self.node = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
            self.at = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
            self.length = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
            if self.node == NULL or self.at == NULL or self.length == NULL:
                raise MemoryError()
        return 0

    cdef inline Py_ssize_t _add(self, Py_ssize_t r, Py_ssize_t i, Py_ssize_t number) noexcept:
        """Node i, number `number`, after run r: the run it extends or starts."""
        if number < 0:
            return r
        if r >= 0 and i == self.node[r] + self.length[r] and number == self.at[r] + self.length[r]:
            self.length[r] += 1
            return r
        r += 1
        self.node[r], self.at[r], self.length[r] = i, number, 1
        return r

    cdef void _finish(self, Py_ssize_t r) noexcept:
        self.count = r + 1
        self.made = A.compactions
        self.valid = True
