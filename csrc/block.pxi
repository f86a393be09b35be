# Blocks: one operation over a fixed sequence of Values, in one call.
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.

# ---------------------------------------------------------------------------
# A training step touches every parameter three times from Python (zero the
# grad, read it, write the data) and every input leaf once: about 100-600 ns
# each through the attribute machinery.  A Block does each of these as one C
# loop over its Values, with the same floating-point operations in the same
# order as the Python loops it replaces (autograd/pure.py has the same Block).
# ---------------------------------------------------------------------------

@cython.auto_pickle(False)
cdef class Block:
    """A fixed sequence of Values with bulk operations on their data and grads.

        params = Block(model.parameters())
        params.zero_grad(); loss.backward(); params.sgd_step(0.01)

    A Block is made once: a second __init__ raises (Python code that runs
    inside a Block's method cannot change what the method is looping over).
    """
    cdef tuple values           # owned: the nodes stay live, the handles valid
    cdef _Runs runs             # their indices, in runs (runs.pxi)

    def __init__(self, values):
        """Make the Block of `values`, Values of this engine (once)."""
        if self.values is not None:
            raise RuntimeError("a Block is made once, with its Values: make a new Block")
        cdef tuple items = tuple(values)        # private: nothing else can change it
        cdef _Runs runs = _Runs()
        cdef Py_ssize_t k, i = -2, r = -1
        cdef PyObject* item
        runs._start(len(items))
        # no Python code runs from here to the end: the runs are made as the
        # nodes are read
        for k in range(len(items)):
            item = PyTuple_GET_ITEM(items, k)
            i = _next_node(item, i)         # in the order of the handle table, mostly
            if i < 0:
                if not isinstance(<object>item, Value):
                    raise TypeError("Block() takes Values of this engine, not %s.%s (item %d)"
                                    % (type(<object>item).__module__,
                                       type(<object>item).__qualname__, k))
                _check(<Value>item)
                i = (<Value>item).idx
            r = runs._add(r, i, k)
        runs._finish(r)
        self.runs = runs
        self.values = items

    def __reduce__(self):
        return (Block, (self._owned(),))

    cdef tuple _owned(self):
        """The Values, as a tuple the caller holds (see the re-entrancy rule:
        loops after a GC point)."""
        if self.values is None:
            raise RuntimeError("this Block was never made (Block.__new__ without __init__)")
        return self.values

    cdef _Runs _runs(self, tuple vals):
        """The Values' nodes as runs of consecutive indices, up to date: call
        it after the last point where Python code may run.  Every loop below
        goes over these runs: Value k is node runs.node[r] + t, where
        k = runs.at[r] + t."""
        self.runs.refresh(vals, NULL)
        return self.runs

    def __len__(self):
        return len(self._owned())

    def __iter__(self):
        return iter(self._owned())

    @property
    def data(self):
        """The Values' data, as a list of floats."""
        return self._read(False)

    @property
    def grad(self):
        """The Values' grads, as a list of floats."""
        return self._read(True)

    cdef list _read(self, bint grads):
        cdef tuple vals = self._owned()
        cdef list out = _nones(len(vals))      # a GC point: the arena is read after it
        cdef _Runs runs = self._runs(vals)
        cdef double* numbers = A.grad if grads else A.data
        cdef Py_ssize_t r, t
        for r in range(runs.count):
            for t in range(runs.length[r]):
                out[runs.at[r] + t] = numbers[runs.node[r] + t]
        return out

    def set_data(self, numbers):
        """Set every Value's data: `numbers` is a sequence of as many real numbers."""
        cdef tuple vals = self._owned()
        cdef Py_ssize_t n = len(vals), k
        cdef _Runs runs
        cdef double* d = <double*>malloc((n if n else 1) * sizeof(double))
        if d == NULL:
            raise MemoryError()
        try:
            # 1. the numbers to doubles (a __float__ may run any code)
            _doubles(numbers, d, n, "set_data()")
            # 2./3. the Values are owned and valid: read their indices and write
            runs = self._runs(vals)
            for k in range(runs.count):
                memcpy(A.data + runs.node[k], d + runs.at[k], runs.length[k] * sizeof(double))
        finally:
            free(d)

    def zero_grad(self):
        """Set every Value's grad to 0."""
        cdef _Runs runs = self._runs(self._owned())
        cdef Py_ssize_t r
        for r in range(runs.count):
            memset(A.grad + runs.node[r], 0, runs.length[r] * sizeof(double))

    def sgd_step(self, lr, weight_decay=0.0):
        """data -= lr * grad, for every Value; with weight_decay (L2, as
        PyTorch's SGD) the step is data -= lr * (grad + weight_decay * data)."""
        cdef double rate = _real(lr, "lr")     # may run Python code: before the Values are read
        cdef double wd = _weight_decay(weight_decay)
        cdef _Runs runs = self._runs(self._owned())
        cdef Py_ssize_t r, i
        for r in range(runs.count):
            for i in range(runs.node[r], runs.node[r] + runs.length[r]):
                if wd != 0.0:
                    A.data[i] = A.data[i] - rate * (A.grad[i] + wd * A.data[i])
                else:
                    A.data[i] = A.data[i] - rate * A.grad[i]

    def momentum_step(self, lr, momentum, velocity, weight_decay=0.0):
        """v = momentum * v + grad; data -= lr * v (PyTorch's SGD momentum),
        grad + weight_decay * data in place of grad with weight_decay.
        `velocity` is a writable buffer of doubles, one per Value."""
        cdef double rate = _real(lr, "lr"), mu = _real(momentum, "momentum")
        cdef double wd = _weight_decay(weight_decay)
        cdef tuple vals = self._owned()
        cdef double[::1] vel = _state(velocity, len(vals), "velocity")
        cdef _Runs runs = self._runs(vals)
        cdef Py_ssize_t r, t, i, k
        cdef double g
        for r in range(runs.count):
            for t in range(runs.length[r]):
                i, k = runs.node[r] + t, runs.at[r] + t
                g = A.grad[i]
                if wd != 0.0:
                    g = g + wd * A.data[i]
                vel[k] = mu * vel[k] + g
                A.data[i] = A.data[i] - rate * vel[k]

    def adam_step(self, lr, beta1, beta2, eps, c1, c2, m, v, weight_decay=0.0,
                  decoupled_weight_decay=False):
        """Adam with bias corrections c1 = 1 - beta1**t and c2 = 1 - beta2**t.
        `m` and `v` are writable buffers of doubles, one per Value.  With
        weight_decay, grad + weight_decay * data takes grad's place (Adam's
        L2), or with decoupled_weight_decay data -= (lr * weight_decay) * data
        comes first (AdamW)."""
        cdef double rate = _real(lr, "Adam's settings"), b1 = _real(beta1, "Adam's settings")
        cdef double b2 = _real(beta2, "Adam's settings"), e = _real(eps, "Adam's settings")
        cdef double k1 = _real(c1, "Adam's settings"), k2 = _real(c2, "Adam's settings")
        cdef double wd = _weight_decay(weight_decay)
        cdef bint decoupled = _flag(decoupled_weight_decay, "decoupled_weight_decay")
        cdef double decay = rate * wd
        cdef tuple vals = self._owned()
        cdef double[::1] mm = _state(m, len(vals), "m")
        cdef double[::1] vv = _state(v, len(vals), "v")
        cdef Py_ssize_t k, i
        cdef double g
        # refused before any work: with these, no square root of a negative
        # number and no division by zero can happen below
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0 and e > 0.0 and 0.0 < k1 <= 1.0
                and 0.0 < k2 <= 1.0):
            raise ValueError(_ADAM_SETTINGS % (b1, b2, e, k1, k2))
        for k in range(len(vals)):
            if vv[k] < 0.0:
                raise ValueError("adam_step(): v[%d] is %r: second moments are not negative"
                                 % (k, vv[k]))
        cdef _Runs runs = self._runs(vals)
        cdef Py_ssize_t r, t
        for r in range(runs.count):
            for t in range(runs.length[r]):
                i, k = runs.node[r] + t, runs.at[r] + t
                g = A.grad[i]
                if wd != 0.0:
                    if decoupled:
                        A.data[i] = A.data[i] - decay * A.data[i]
                    else:
                        g = g + wd * A.data[i]
                mm[k] = b1 * mm[k] + (1.0 - b1) * g
                vv[k] = b2 * vv[k] + (1.0 - b2) * g * g
                A.data[i] = A.data[i] - rate * (mm[k] / k1) / (sqrt(vv[k] / k2) + e)

    def clip_grad_norm(self, max_norm):
        """Scale the grads so that their L2 norm is at most max_norm, as
        PyTorch's clip_grad_norm_: with norm = sqrt(sum of grad**2), every
        grad is multiplied by max_norm / (norm + 1e-6) where that is < 1.
        Returns the norm from before."""
        cdef double limit = _real(max_norm, "max_norm")
        if not (limit > 0.0 and isfinite(limit)):
            raise ValueError("clip_grad_norm(): max_norm must be a positive finite number, not %r"
                             % (limit,))
        cdef _Runs runs = self._runs(self._owned())
        cdef Py_ssize_t r, i
        cdef double total = 0.0, norm, coef
        for r in range(runs.count):             # the squares added in the Values' order
            for i in range(runs.node[r], runs.node[r] + runs.length[r]):
                total = total + A.grad[i] * A.grad[i]
        norm = sqrt(total)
        coef = limit / (norm + 1e-6)
        if coef < 1.0:                          # (NaN: no scaling, as PyTorch's clamp)
            for r in range(runs.count):
                for i in range(runs.node[r], runs.node[r] + runs.length[r]):
                    A.grad[i] = A.grad[i] * coef
        return norm


cdef double _weight_decay(object weight_decay) except? -1.0:
    """weight_decay as a double: a finite number >= 0, or a clear error."""
    cdef double wd = _real(weight_decay, "weight_decay")
    if not (wd >= 0.0 and isfinite(wd)):
        raise ValueError("weight_decay must be a finite number >= 0, not %r" % (wd,))
    return wd


cdef bint _flag(object flag, str what) except -1:
    """A flag that must be a bool (no __bool__ of another object runs)."""
    if flag is True:
        return True
    if flag is False:
        return False
    raise TypeError("%s must be True or False, not %s" % (what, type(flag).__name__))


cdef str _ADAM_SETTINGS = ("adam_step() needs 0 <= beta1 < 1, 0 <= beta2 < 1, eps > 0 and the "
                            "bias corrections c1, c2 in (0, 1]; got beta1=%r, beta2=%r, eps=%r, "
                            "c1=%r, c2=%r")


cdef double[::1] _state(object state, Py_ssize_t n, str name):
    """An optimizer's state as a writable view of n doubles, or a clear error.
    The view holds the buffer: its owner cannot resize it meanwhile."""
    cdef double[::1] view
    try:
        if state is None:
            raise TypeError
        view = state
    except (TypeError, ValueError, BufferError):
        raise TypeError("%s must be a writable buffer of doubles (array('d') or a float64 "
                        "numpy array), not %s" % (name, type(state).__name__)) from None
    if view.shape[0] != n:
        raise ValueError("%s has %d entries for %d Values" % (name, view.shape[0], n))
    return view


cdef int _doubles(object numbers, double* d, Py_ssize_t n, str name) except -1:
    """The n real numbers of `numbers` into d, or a clear error."""
    cdef list items = list(numbers)             # private: a __float__ cannot change it
    cdef Py_ssize_t k
    if len(items) != n:
        raise ValueError("%s got %d numbers for %d Values" % (name, len(items), n))
    for k in range(n):
        if not _as_float(items[k], &d[k]):
            raise TypeError("%s takes real numbers, not %s (item %d)"
                            % (name, type(items[k]).__name__, k))
    return 0
