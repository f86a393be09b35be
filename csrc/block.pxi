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

cdef class Block:
    """A fixed sequence of Values with bulk operations on their data and grads.

        params = Block(model.parameters())
        params.zero_grad(); loss.backward(); params.sgd_step(0.01)
    """
    cdef tuple values           # owned: the nodes stay live, the handles valid

    def __init__(self, values):
        cdef list items = list(values)          # private: nothing else can change it
        cdef Py_ssize_t k
        for k in range(len(items)):
            if not isinstance(items[k], Value):
                raise TypeError("Block() takes Values of this engine, not %s.%s (item %d)"
                                % (type(items[k]).__module__, type(items[k]).__qualname__, k))
            _check(<Value>items[k])
        self.values = tuple(items)

    def __len__(self):
        return len(self.values)

    def __iter__(self):
        return iter(self.values)

    @property
    def data(self):
        """The Values' data, as a list of floats."""
        cdef Py_ssize_t n = len(self.values), k
        cdef list out = [None] * n              # a GC point: the nodes are read after it
        for k in range(n):
            out[k] = A.data[(<Value>self.values[k]).idx]
        return out

    @property
    def grad(self):
        """The Values' grads, as a list of floats."""
        cdef Py_ssize_t n = len(self.values), k
        cdef list out = [None] * n
        for k in range(n):
            out[k] = A.grad[(<Value>self.values[k]).idx]
        return out

    def set_data(self, numbers):
        """Set every Value's data: `numbers` is a sequence of as many real numbers."""
        cdef Py_ssize_t n = len(self.values), k
        cdef double* d = <double*>malloc((n if n else 1) * sizeof(double))
        if d == NULL:
            raise MemoryError()
        try:
            # 1. the numbers to doubles (a __float__ may run any code)
            _doubles(numbers, d, n, "set_data()")
            # 2./3. the Values are owned and valid: read their indices and write
            for k in range(n):
                A.data[(<Value>self.values[k]).idx] = d[k]
        finally:
            free(d)

    def zero_grad(self):
        """Set every Value's grad to 0."""
        cdef Py_ssize_t k
        for k in range(len(self.values)):
            A.grad[(<Value>self.values[k]).idx] = 0.0

    def sgd_step(self, double lr):
        """data -= lr * grad, for every Value."""
        cdef Py_ssize_t k, i
        for k in range(len(self.values)):
            i = (<Value>self.values[k]).idx
            A.data[i] = A.data[i] - lr * A.grad[i]

    def momentum_step(self, double lr, double momentum, double[::1] velocity not None):
        """v = momentum * v + grad; data -= lr * v (PyTorch's SGD momentum)."""
        cdef Py_ssize_t k, i
        _check_state(velocity, len(self.values), "velocity")
        for k in range(len(self.values)):
            i = (<Value>self.values[k]).idx
            velocity[k] = momentum * velocity[k] + A.grad[i]
            A.data[i] = A.data[i] - lr * velocity[k]

    def adam_step(self, double lr, double beta1, double beta2, double eps, double c1, double c2,
                  double[::1] m not None, double[::1] v not None):
        """Adam with bias corrections c1 = 1 - beta1**t and c2 = 1 - beta2**t."""
        cdef Py_ssize_t k, i
        cdef double g
        _check_state(m, len(self.values), "m")
        _check_state(v, len(self.values), "v")
        for k in range(len(self.values)):
            i = (<Value>self.values[k]).idx
            g = A.grad[i]
            m[k] = beta1 * m[k] + (1.0 - beta1) * g
            v[k] = beta2 * v[k] + (1.0 - beta2) * g * g
            A.data[i] = A.data[i] - lr * (m[k] / c1) / (sqrt(v[k] / c2) + eps)


cdef int _check_state(double[::1] state, Py_ssize_t n, str name) except -1:
    if state.shape[0] != n:
        raise ValueError("%s has %d entries for %d Values" % (name, state.shape[0], n))
    return 0


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
