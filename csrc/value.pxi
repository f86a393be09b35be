# The handle: the Value class, its deallocation and its GC slots.
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.

from cpython.object cimport PyObject_RichCompare, Py_LT, Py_LE, Py_GT, Py_GE

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


cdef extern from *:
    """
    static Py_hash_t autograd_base_hash(PyObject* o) { return PyBaseObject_Type.tp_hash(o); }
    """
    Py_hash_t base_hash "autograd_base_hash"(object o) except? -1


cdef object _compare(Value x, object other, int op):
    """x <op> other on the data: an int compared exactly, as Python compares
    a float with it; another real number as the float it converts to (as the
    ops take it); NotImplemented for what is not a real number."""
    cdef double xd, yd
    if isinstance(other, Value):
        yd = A.data[_index(<Value>other)]
    elif isinstance(other, int):                # a flag test: no Python code runs
        return PyObject_RichCompare(A.data[_index(x)], other, op)
    elif not _as_float(other, &yd):             # may run Python code (__float__)
        return NotImplemented
    xd = A.data[_index(x)]                      # so x is read after it
    if op == Py_LT:
        return xd < yd
    if op == Py_LE:
        return xd <= yd
    if op == Py_GT:
        return xd > yd
    return xd >= yd


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
    cdef object __weakref__     # weakref.ref(v) works, as on micrograd's Value

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
        cdef str text = _exact_str(label, "Value label")
        cdef str op = _exact_str(_op, "Value _op")
        cdef list kids = _children_list(_children)
        cdef Py_ssize_t i, n = len(kids)
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
            _commit_custom(self, kids_t, d, info)   # runs no Python code
        else:                           # a leaf (under no_grad also with children)
            _reserve(1, 0)              # a MemoryError here leaves self as it was
            _write_leaf(A.n, d)
            A.flags[A.n] = keep
            _commit(A.n, A.n + 1, self)
            self.custom = info
        if self.custom is not None or type(self) is not Value or self.attrs != NULL:
            _track(self)
        elif self.kids is None:
            # a plain leaf holds no reference the GC could follow, as the
            # handles that ops make (build.pxi): untracked, a model's 10^5
            # parameters cost a collection nothing; whatever gives it a
            # reference later tracks it (_track)
            PyObject_GC_UnTrack(<PyObject*>self)
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
        """The number this Value holds."""
        return A.data[_index(self)]

    @data.setter
    def data(self, value):
        cdef double d = _real(value, "Value data")
        A.data[_index(self)] = d

    @property
    def grad(self):
        """The derivative of the last backward() root with respect to this Value."""
        return A.grad[_index(self)]

    @grad.setter
    def grad(self, value):
        cdef double d = _real(value, "Value grad")
        A.grad[_index(self)] = d

    @property
    def label(self):
        """A name for pictures and debugging; '' by default."""
        cdef Py_ssize_t i = _index(self)
        if A.flags[i] & LABELED:
            return _labels[i]
        return ""

    @label.setter
    def label(self, value):
        self._set_label(_exact_str(value, "Value label"))

    @property
    def _op(self):
        cdef Py_ssize_t i = _index(self)
        cdef uint8_t op = A.op[i]
        if self.custom is not None:
            return self.custom.op
        if op == POWC or op == IPOWC:
            return "**" + _exponent_text(A.data[A.b[i]])
        return OP_SYMBOLS[op]

    @property
    def _children(self):
        """The children in order (constants included, fused inputs in order).

        The same objects on every call for as long as this Value lives: they
        are made once and kept on it, as micrograd's `_prev` is."""
        return _kids_of(self)

    def _rule(self):
        """(kind, children, exponent, partials, op): what autograd.higher
        needs to write this node's derivative with ops.  `kind` as the pure
        engine names it; the children's handles, as `_children`; a `**c`
        node's constant exponent; an autograd.function's partials."""
        cdef tuple kids = _kids_of(self)        # a GC point: the node is read after it
        cdef _Custom info = self.custom
        cdef Py_ssize_t i = _index(self)
        cdef uint8_t op = A.op[i]
        if _kid_count(i) != len(kids):          # re-initialized meanwhile
            return "leaf", (), None, None, ""
        return (KIND_NAMES[op], kids, A.data[A.b[i]] if op == POWC or op == IPOWC else None,
                None if info is None else info.partials, self._op)

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
        # a new record for this node alone: the nodes an autograd.function
        # makes share its record, and their chain rule must stay the partials.
        # This node's is now `fn`; its forward formula still recomputes it.
        info = _Custom("" if info is None else info.op, fn,
                       None if info is None else info.forward, None)
        self.custom = info              # may drop the old record: read the node after
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
        """max(0, x), as micrograd's ReLU."""
        return _unary(RELU, self)

    # the smooth functions of unary.pxi's table, as Python's math names them
    def tanh(self):
        """The hyperbolic tangent, as math.tanh."""
        return _unary(TANH, self)

    def sigmoid(self):
        """The logistic function 1 / (1 + exp(-x)), stable for any x."""
        return _unary(SIGMOID, self)

    def exp(self):
        """e ** x, as math.exp."""
        return _unary(EXP, self)

    def log(self):
        """The natural logarithm, as math.log."""
        return _unary(LOG, self)

    def sqrt(self):
        """The square root, as math.sqrt."""
        return _unary(SQRT, self)

    def sin(self):
        """The sine, as math.sin."""
        return _unary(SIN, self)

    def cos(self):
        """The cosine, as math.cos."""
        return _unary(COS, self)

    def tan(self):
        """The tangent, as math.tan."""
        return _unary(TAN, self)

    def asin(self):
        """The arc sine, as math.asin."""
        return _unary(ASIN, self)

    def acos(self):
        """The arc cosine, as math.acos."""
        return _unary(ACOS, self)

    def atan(self):
        """The arc tangent, as math.atan."""
        return _unary(ATAN, self)

    def sinh(self):
        """The hyperbolic sine, as math.sinh."""
        return _unary(SINH, self)

    def cosh(self):
        """The hyperbolic cosine, as math.cosh."""
        return _unary(COSH, self)

    def asinh(self):
        """The inverse hyperbolic sine, as math.asinh."""
        return _unary(ASINH, self)

    def acosh(self):
        """The inverse hyperbolic cosine, as math.acosh."""
        return _unary(ACOSH, self)

    def atanh(self):
        """The inverse hyperbolic tangent, as math.atanh."""
        return _unary(ATANH, self)

    def expm1(self):
        """e ** x - 1, as math.expm1."""
        return _unary(EXPM1, self)

    def exp2(self):
        """2 ** x, as math.exp2 (Python 3.11+)."""
        return _unary(EXP2, self)

    def log1p(self):
        """log(1 + x), as math.log1p."""
        return _unary(LOG1P, self)

    def log2(self):
        """The base-2 logarithm, as math.log2."""
        return _unary(LOG2, self)

    def log10(self):
        """The base-10 logarithm, as math.log10."""
        return _unary(LOG10, self)

    def cbrt(self):
        """The cube root, as math.cbrt (Python 3.11+)."""
        return _unary(CBRT, self)

    def erf(self):
        """The error function, as math.erf."""
        return _unary(ERF, self)

    def erfc(self):
        """The complementary error function, as math.erfc."""
        return _unary(ERFC, self)

    def softplus(self):
        """log(1 + exp(x)), stable for any x."""
        return _unary(SOFTPLUS, self)

    def gelu(self):
        """x * Phi(x), PyTorch's exact (erf) GELU."""
        return _unary(GELU, self)

    def abs(self):
        """The absolute value, as abs(v)."""
        return _unary(ABS, self)

    def __abs__(self):
        return _unary(ABS, self)

    def detach(self):
        """A new leaf with this Value's data, outside any graph."""
        return _new_leaf(A.data[_index(self)])

    def item(self):
        """The data as a Python float, as torch's Tensor.item()."""
        return A.data[_index(self)]

    # -- ordering ------------------------------------------------------------
    # <, <=, >, >= compare the data and give a bool (no node); == and != stay
    # identity (no __eq__), so Values in sets and dicts behave as micrograd's.
    def __lt__(self, other):
        return _compare(self, other, Py_LT)

    def __le__(self, other):
        return _compare(self, other, Py_LE)

    def __gt__(self, other):
        return _compare(self, other, Py_GT)

    def __ge__(self, other):
        return _compare(self, other, Py_GE)

    def __hash__(self):
        # object's own hash: a type that defines comparisons would otherwise
        # be left unhashable (CPython inherits tp_hash only with tp_richcompare)
        return base_hash(self)

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

    def _derivatives(self, inputs):
        """The adjoints of `inputs` emitted as nodes by the core's sweep
        (higher.pxi): handles, None for an input this Value does not use;
        None where autograd.higher builds them itself."""
        return _derivative_graph(self, list(inputs))

    def _uses(self, inputs):
        """(for each of `inputs` whether this Value depends on it, itself
        included; whether it depends on a node made before every one of
        them): grad() asks which of its arguments a function used and whether
        the result involves Values from outside the call (autograd/higher.py)."""
        return _uses_of(self, list(inputs))

    def _gradients_of(self, inputs):
        """backward()'s gradients of this Value for each of `inputs` (0.0 for
        one it does not use), as floats, touching no grad."""
        cdef list xs = list(inputs)             # Python code may run: before anything is read
        cdef Py_ssize_t n = len(xs), j
        cdef double* out = <double*>calloc(n + 1, sizeof(double))
        if out == NULL:
            raise MemoryError()
        try:
            self._gradients_into(xs, out)
            return [out[j] for j in range(n)]
        finally:
            free(out)

    def _gradient_values(self, inputs):
        """The same as new leaf Values: autograd.higher.gradients() without
        create_graph."""
        cdef list xs = list(inputs)
        cdef Py_ssize_t n = len(xs), j
        cdef double* out = <double*>calloc(n + 1, sizeof(double))
        cdef list values
        if out == NULL:
            raise MemoryError()
        try:
            self._gradients_into(xs, out)
            values = _nones(n)
            for j in range(n):
                values[j] = _new_leaf(out[j])
            return values
        finally:
            free(out)

    @cython.final
    cdef int _gradients_into(self, list xs, double* out) except -1:
        """out[j] = backward()'s gradient of this Value for xs[j] (0.0 for a
        node it does not use); no grad is touched.

        The sweep back-propagates into a private array indexed as the arena
        (nodes do not move until it ends).  Below a custom node, whose Python
        code adds into .grad itself, the reachable grads are copied out
        instead, backward()'s sweep runs, and the copy is written back."""
        cdef Py_ssize_t root = _index(self), nruns = 0, r, i, j, hi, lo, stop
        cdef size_t epoch = A.epoch
        cdef double* grad = NULL
        cdef bint custom = False
        cdef bint borrowed = False
        cdef idx_t* runs = self._claim_runs(&nruns)
        _sweep_begin()
        try:
            grad = _borrow_scratch(root + 1)
            borrowed = grad != NULL
            if not borrowed:
                grad = <double*>calloc(root + 1, sizeof(double))
                if grad == NULL:
                    raise MemoryError()
            grad[root] = 1.0
            if runs == NULL:                    # first call: discovery and sweep in one pass
                runs = _reachable(root, &nruns, False, grad, &custom)
            else:                               # a replay: the cached runs
                for r in range(nruns):
                    for i in range(runs[2 * r], runs[2 * r + 1] - 1, -1):
                        if A.op[i] == CUSTOM:
                            custom = True
                            break
                    if custom:
                        break
                for r in range(nruns):
                    if custom:
                        break
                    hi, lo = runs[2 * r], runs[2 * r + 1]
                    while hi >= lo:             # blocks of 2**16, then a signal check
                        stop = hi - 0xFFFF if hi - 0xFFFF > lo else lo
                        for i in range(hi, stop - 1, -1):
                            _backprop_into(i, grad)
                        PyErr_CheckSignals()    # handlers cannot reach `grad`
                        hi = stop - 1
            if custom:
                _gradients_with_customs(root, runs, nruns, xs, out)
                return 0
            for j in range(len(xs)):
                i = _index(<Value?>xs[j])
                if i <= root:                   # an unused node's entry stayed 0.0
                    out[j] = grad[i]
            return 0
        finally:
            if borrowed:                        # every entry the sweep wrote lies in [lowest, root]
                _return_scratch(grad, runs[2 * nruns - 1] if runs != NULL and nruns > 0 else 0, root)
            else:
                free(grad)
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
    # a handle someone holds a weak reference to goes to the base deallocator,
    # which clears the references (their callbacks may run Python code: the
    # handle is already detached from its node, as on any dropped reference)
    if (_nspare < 1024 and is_exactly_value(o) and is_none((<Value>o).kids)
            and is_none((<Value>o).custom) and not has_weakrefs(o)):
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

for _name in _AFTER_310:            # exp2 and cbrt, as `math` has them: from 3.11 on (unary.pxi)
    if not hasattr(math, _name):
        delattr(Value, _name)


cdef Value _handle_of(Py_ssize_t i):
    """The node's handle, made if it has none (never a second one)."""
    if A.handle[i] != NULL:
        return <Value>A.handle[i]
    cdef Value h = _new_handle_quietly()
    A.handle[i] = <PyObject*>h
    A.handles += 1
    h.idx = i
    return h


def _in_creation_order(values):
    """The Values sorted by when their nodes were made (children first): by
    arena index, every index read with the GC paused, so that no compaction
    runs between two reads (compaction keeps the order, not the indices)."""
    cdef list vs = list(values)
    cdef Py_ssize_t n = len(vs), k
    cdef list keys = _nones(n)
    cdef int gc_was_on = PyGC_Disable()
    try:
        for k in range(n):
            keys[k] = (_index(<Value?>vs[k]), k)
    finally:
        if gc_was_on:
            PyGC_Enable()
    keys.sort()
    return [vs[k] for _, k in keys]


cdef int _gradients_with_customs(Py_ssize_t root, idx_t* runs, Py_ssize_t nruns, list xs,
                                 double* out) except -1:
    """_gradients_of below a custom node: each run's grads copied out and
    zeroed, backward()'s sweep, the inputs' grads read into `out`, the copy
    written back; all inside the caller's sweep, so no node moves."""
    cdef Py_ssize_t r, i, j, k = 0, total = 0
    for r in range(nruns):
        total += runs[2 * r] - runs[2 * r + 1] + 1
    cdef double* saved = <double*>malloc((total + 1) * sizeof(double))
    if saved == NULL:
        raise MemoryError()
    for r in range(nruns):                      # a run is consecutive: copy, then zero it
        i = runs[2 * r + 1]
        memcpy(saved + k, A.grad + i, (runs[2 * r] - i + 1) * sizeof(double))
        memset(A.grad + i, 0, (runs[2 * r] - i + 1) * sizeof(double))
        k += runs[2 * r] - i + 1
    try:
        _backward_runs(root, runs, nruns)       # Python code at the custom nodes
        for j in range(len(xs)):
            i = _index(<Value?>xs[j])
            for r in range(nruns):
                if runs[2 * r + 1] <= i <= runs[2 * r]:
                    out[j] = A.grad[i]
                    break
    finally:
        k = 0
        for r in range(nruns):
            i = runs[2 * r + 1]
            memcpy(A.grad + i, saved + k, (runs[2 * r] - i + 1) * sizeof(double))
            k += runs[2 * r] - i + 1
        free(saved)
    return 0


# gradients()'s private grads, kept between calls (all zero then) so that a
# call writes into pages that are already there; one user at a time: a
# gradients() started meanwhile (a signal handler's) gets a fresh array
cdef double* _scratch = NULL
cdef Py_ssize_t _scratch_len = 0
cdef bint _scratch_busy = False
cdef Py_ssize_t SCRATCH_MAX = 1 << 22          # 32 MiB; larger graphs allocate per call


cdef double* _borrow_scratch(Py_ssize_t n) noexcept:
    """The zeroed scratch array of at least n entries, or NULL (busy, too
    large, or no memory: the caller allocates its own)."""
    global _scratch, _scratch_len, _scratch_busy
    cdef double* grown
    if _scratch_busy or n > SCRATCH_MAX:
        return NULL
    if n > _scratch_len:
        grown = <double*>realloc(_scratch, n * sizeof(double))
        if grown == NULL:
            return NULL
        memset(grown + _scratch_len, 0, (n - _scratch_len) * sizeof(double))
        _scratch, _scratch_len = grown, n
    _scratch_busy = True
    return _scratch


cdef void _return_scratch(double* grad, Py_ssize_t lo, Py_ssize_t hi) noexcept:
    """Zero [lo, hi] of the scratch array again and release it."""
    global _scratch_busy
    memset(grad + lo, 0, (hi - lo + 1) * sizeof(double))
    _scratch_busy = False
