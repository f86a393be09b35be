# The op kernels: each op's forward formula beside its local derivative.
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.

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
cdef object _py_pow = math.pow      # (the one-input functions': unary.pxi's _MATH)

cdef extern from *:
    """
    /* -g exactly as Python computes it, NaN signs included.  Through
       memory on both sides: the compiler may neither fold `x + (-g)` into
       `x - g` (gcc), which keeps the sign of a NaN g instead of flipping it,
       nor move the negation into how g was computed, `-(a*b/c)` into
       `(-a)*b/c` (clang), which flips a different operand's NaN. */
    static double autograd_negate(double g) {
        volatile double in = g;
        volatile double minus_g = -in;
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

# tanh, sigmoid, exp, log, sqrt and the other smooth one-input functions:
# one row each in unary.pxi

# abs(x)                               d/dx = sign(x), 0 at 0
cdef inline double abs_dx(double g, double x) noexcept:
    return g if x > 0.0 else (negate(g) if x < 0.0 else 0.0)


cdef double _apply(uint8_t op, double x, double y) except? -1.0:
    """The forward formula of a one- or two-input op (y unused for one)."""
    if op == ADD or op == SUB or op == MUL:
        return arith_f(op, x, y)
    if op == DIV:
        return div_f(x, y)
    if op == IDIV:
        return x / y                # IEEE (cdivision): a derivative graph's division
    if op == IPOW or op == IPOWC:
        return pow_ieee(x, y)
    if op == NEG:
        return -x
    if op == POW or op == POWC:
        return pow_f(x, y)
    if op == RELU:
        return relu_f(x)
    if op == ABS:
        return fabs(x)
    return ROWS[op].forward(x)      # unary.pxi


cdef inline double _dot_data(Py_ssize_t first, Py_ssize_t count) noexcept:
    """bias + w0*x0 + ... over the edges [first, first + count)."""
    cdef Py_ssize_t k, w = first + 1, n = (count - 1) // 2
    cdef double r = A.data[A.edges[first]]
    for k in range(n):
        r = r + A.data[A.edges[w + k]] * A.data[A.edges[w + n + k]]
    return r


# logsumexp(x) = m + log(exp(x0 - m) + exp(x1 - m) + ...), m = max(x), taken
# whenever it is evaluated, so a replay never overflows     d/dx_k = exp(x_k - out)
# A NaN input gives that NaN (the first one); m = +-inf gives m.
cdef inline double lse_f(double* x, Py_ssize_t n) noexcept:
    cdef Py_ssize_t k
    cdef double m = x[0], s = 0.0
    for k in range(n):
        if x[k] != x[k]:
            return x[k]
        if x[k] > m:
            m = x[k]
    if not isfinite(m):
        return m
    for k in range(n):
        s = s + exp(x[k] - m)
    return m + log(s)


cdef int _lse_data(Py_ssize_t i) except -1:
    """data[i] of an LSE node, from its children's data."""
    cdef Py_ssize_t k, first = A.a[i], n = A.b[i]
    cdef double small[64]
    cdef double* x = &small[0] if n <= 64 else <double*>malloc(n * sizeof(double))
    if x == NULL:
        raise MemoryError()
    for k in range(n):
        x[k] = A.data[A.edges[first + k]]
    A.data[i] = lse_f(x, n)
    if x != &small[0]:
        free(x)
    return 0


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
    if op == LSE:
        return _lse_data(i)
    if A.b[i] >= 0:
        y = A.data[A.b[i]]
    A.data[i] = _apply(op, A.data[A.a[i]], y)
    return 0


cdef inline void _backprop(Py_ssize_t i) noexcept:
    """Add node i's contributions to its children's grads (chain rule)."""
    _backprop_into(i, A.grad)


cdef inline void _backprop_into(Py_ssize_t i, double* grad) noexcept:
    """Node i's chain rule, with the grads in `grad`, indexed as the arena:
    A.grad for backward(), a private array for gradients().

    Each branch loads only what its op needs: a sweep is memory-bound.
    A CUSTOM node's rule is Python code: the sweeps call _run_custom for it.
    """
    cdef uint8_t op = A.op[i]
    if op == LEAF:
        return
    cdef double g = grad[i]
    cdef Py_ssize_t a = A.a[i], b, k
    if op == ADD:
        b = A.b[i]
        grad[a] += g
        grad[b] += g
    elif op == SUB:
        b = A.b[i]
        grad[a] += g
        grad[b] += negate(g)
    elif op == MUL:
        b = A.b[i]
        grad[a] += A.data[b] * g
        grad[b] += A.data[a] * g
    elif op == DIV or op == IDIV:
        b = A.b[i]
        grad[a] += g / A.data[b]
        grad[b] += negate(A.data[i] * g / A.data[b])
    elif op == NEG:
        grad[a] += negate(g)
    elif op == POW or op == IPOW:
        b = A.b[i]
        grad[a] += pow_dx(g, A.data[a], A.data[b])
        grad[b] += pow_dy(g, A.data[a], A.data[b], A.data[i])
    elif op == POWC or op == IPOWC:
        grad[a] += pow_dx(g, A.data[a], A.data[A.b[i]])
    elif op == RELU:
        grad[a] += g if A.data[i] > 0.0 else 0.0
    elif _is_row(op):                   # unary.pxi
        grad[a] += _chain(op, g, A.data[a], A.data[i])
    elif op == ABS:
        grad[a] += abs_dx(g, A.data[a])
    elif op == SUM:                     # a: first edge, b: edge count
        b = A.b[i]
        for k in range(a, a + b):
            grad[A.edges[k]] += g
    elif op == LSE:                     # d/dx_k = exp(x_k - out): the softmax
        b = A.b[i]
        for k in range(a, a + b):
            grad[A.edges[k]] += exp(A.data[A.edges[k]] - A.data[i]) * g
    elif op == DOT:                     # edges: bias, w0..w(n-1), x0..x(n-1)
        b = (A.b[i] - 1) // 2           # n
        grad[A.edges[a]] += g
        a += 1
        for k in range(b):              # d/dw_k = x_k, d/dx_k = w_k
            grad[A.edges[a + k]] += A.data[A.edges[a + b + k]] * g
            grad[A.edges[a + b + k]] += A.data[A.edges[a + k]] * g
