# The smooth one-input functions, one row each: the forward formula, its
# derivative as a number, and the same derivative written with ops.
# Part of core.pyx (included there): the re-entrancy rule at its top applies
# to every line.

# ---------------------------------------------------------------------------
# Each row of the table below is a whole op: everything else (building the
# node, backward(), forward(), gradients() with and without create_graph,
# the batched replay, the names) reads the table.  autograd/pure.py has the
# same rows (_FUNCTIONS), with the same operations in the same order, so
# both engines give the same bits.
#
#   forward(x)       the value, exactly what Python's `math` function of the
#                    same name gives (libm's, which `math` calls), raising
#                    where it raises: see _as_math (the logarithms and sqrt
#                    hand Python every x outside their domain, NaN included:
#                    math gives a NaN back as it came)
#   slope(x, out)    d out / dx from the input and the output, with IEEE
#                    results (inf, NaN), never an exception
#   slope_node(x, out)  the same, written with ops on the nodes x and out:
#                    the derivative graph (create_graph) emits it
#   divides          the chain rule is g / slope (backward() adds exactly
#                    that), else slope * g
#
# Adding a function: its op code and row here, its method on Value (value.pxi),
# its row and method in autograd/pure.py, its stub in autograd/core.pyi.  The tests walk the table
# (tests/test_functions.py).
# ---------------------------------------------------------------------------

from libc.math cimport (sin, cos, tan, asin, acos, atan, sinh, cosh, asinh, acosh, atanh,
                        expm1, exp2, log1p, log2, log10, cbrt, erf, erfc)

cdef enum:                          # the op codes of the functions after IPOWC
    SIN = IPOWC + 1
    COS
    TAN
    ASIN
    ACOS
    ATAN
    SINH
    COSH
    ASINH
    ACOSH
    ATANH
    EXPM1
    EXP2
    LOG1P
    LOG2
    LOG10
    CBRT
    ERF
    ERFC
    SOFTPLUS
    GELU
    ILOG            # log with IEEE results (-inf at 0, NaN below): derivative graphs
    LAST_OP = ILOG

ctypedef double (*forward_t)(double) except? -1.0
ctypedef double (*slope_t)(double, double) noexcept
ctypedef Py_ssize_t (*slope_node_t)(Py_ssize_t, Py_ssize_t) except -1

cdef struct Row:
    forward_t forward
    slope_t slope
    slope_node_t slope_node
    bint divides

cdef Row ROWS[256]                  # by op code; forward == NULL: not a row of this table
cdef dict _MATH = {}                # op code -> Python's math function (raises as it does)
cdef dict _ROW_NAMES = {}           # op code -> name


cdef inline bint _is_row(uint8_t op) noexcept:
    return ROWS[op].forward != NULL


cdef double _as_math(uint8_t op, double x, double r) except? -1.0:
    """libm's result r of op at x, or math's exception: where r is NaN from a
    number, or infinite from a finite x, Python's function decides (it raises
    ValueError or OverflowError with its message, or returns the same r)."""
    if (r != r and x == x) or (not isfinite(r) and isfinite(x)):
        return _MATH[op](x)
    return r


cdef inline double _chain(uint8_t op, double g, double x, double out) noexcept:
    """What backward() adds to the input of a row's node: g times d out/dx."""
    if ROWS[op].divides:
        return g / ROWS[op].slope(x, out)
    return ROWS[op].slope(x, out) * g


cdef double LN2 = math.log(2.0)
cdef double LN10 = math.log(10.0)
cdef double TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
cdef double SQRT1_2 = math.sqrt(0.5)
cdef double GELU_PDF = TWO_OVER_SQRT_PI * SQRT1_2 * 0.5      # 1 / sqrt(2 pi)


# -- ops written with ops: small helpers for the slope_node column ----------
cdef inline Py_ssize_t _op1(uint8_t op, Py_ssize_t x) except -1:
    return _emit(op, x, -1)

cdef inline Py_ssize_t _square(Py_ssize_t x) except -1:
    return _emit(MUL, x, x)

cdef inline Py_ssize_t _const_op(uint8_t op, double c, Py_ssize_t x) except -1:
    """c <op> x, for a number c (the leaf first, as `c - v` makes it)."""
    return _emit_number(op, x, c, True)

cdef inline Py_ssize_t _op_const(uint8_t op, Py_ssize_t x, double c) except -1:
    """x <op> c, for a number c."""
    return _emit_number(op, x, c, False)


# -- the rows ------------------------------------------------------------------
#    name              forward(x)                          slope(x, out)                       slope written with ops
# tanh: d = 1 - out**2
cdef double tanh_f(double x) except? -1.0: return tanh(x)
cdef double tanh_s(double x, double o) noexcept: return 1.0 - o * o
cdef Py_ssize_t tanh_n(Py_ssize_t x, Py_ssize_t o) except -1: return _const_op(SUB, 1.0, _square(o))

# sigmoid, stable for any x: d = out * (1 - out)
cdef inline double _sigmoid(double x) noexcept:
    cdef double e
    if x >= 0.0:
        return 1.0 / (1.0 + exp(-x))
    e = exp(x)
    return e / (1.0 + e)
cdef double sigmoid_f(double x) except? -1.0: return _sigmoid(x)
cdef double sigmoid_s(double x, double o) noexcept: return o * (1.0 - o)
cdef Py_ssize_t sigmoid_n(Py_ssize_t x, Py_ssize_t o) except -1: return _emit(MUL, o, _const_op(SUB, 1.0, o))

# exp: d = out
cdef double exp_f(double x) except? -1.0: return _as_math(EXP, x, exp(x))
cdef double exp_s(double x, double o) noexcept: return o
cdef Py_ssize_t exp_n(Py_ssize_t x, Py_ssize_t o) except -1: return o

# log: g / x
cdef double log_f(double x) except? -1.0: return log(x) if x > 0.0 else _MATH[LOG](x)
cdef double log_s(double x, double o) noexcept: return x
cdef Py_ssize_t log_n(Py_ssize_t x, Py_ssize_t o) except -1: return x

# sqrt: g / (2 * out)
cdef double sqrt_f(double x) except? -1.0: return sqrt(x) if x >= 0.0 else _MATH[SQRT](x)
cdef double sqrt_s(double x, double o) noexcept: return 2.0 * o
cdef Py_ssize_t sqrt_n(Py_ssize_t x, Py_ssize_t o) except -1: return _const_op(MUL, 2.0, o)

# sin: d = cos(x)
cdef double sin_f(double x) except? -1.0: return _as_math(SIN, x, sin(x))
cdef double sin_s(double x, double o) noexcept: return cos(x)
cdef Py_ssize_t sin_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op1(COS, x)

# cos: d = -sin(x)
cdef double cos_f(double x) except? -1.0: return _as_math(COS, x, cos(x))
cdef double cos_s(double x, double o) noexcept: return negate(sin(x))
cdef Py_ssize_t cos_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op1(NEG, _op1(SIN, x))

# tan: d = 1 + out**2
cdef double tan_f(double x) except? -1.0: return _as_math(TAN, x, tan(x))
cdef double tan_s(double x, double o) noexcept: return 1.0 + o * o
cdef Py_ssize_t tan_n(Py_ssize_t x, Py_ssize_t o) except -1: return _const_op(ADD, 1.0, _square(o))

# asin: g / sqrt(1 - x**2)
cdef double asin_f(double x) except? -1.0: return _as_math(ASIN, x, asin(x))
cdef double asin_s(double x, double o) noexcept: return sqrt(1.0 - x * x)
cdef Py_ssize_t asin_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op1(SQRT, _const_op(SUB, 1.0, _square(x)))

# acos: g / -sqrt(1 - x**2)
cdef double acos_f(double x) except? -1.0: return _as_math(ACOS, x, acos(x))
cdef double acos_s(double x, double o) noexcept: return negate(sqrt(1.0 - x * x))
cdef Py_ssize_t acos_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op1(NEG, _op1(SQRT, _const_op(SUB, 1.0, _square(x))))

# atan: g / (1 + x**2)
cdef double atan_f(double x) except? -1.0: return _as_math(ATAN, x, atan(x))
cdef double atan_s(double x, double o) noexcept: return 1.0 + x * x
cdef Py_ssize_t atan_n(Py_ssize_t x, Py_ssize_t o) except -1: return _const_op(ADD, 1.0, _square(x))

# sinh: d = cosh(x)
cdef double sinh_f(double x) except? -1.0: return _as_math(SINH, x, sinh(x))
cdef double sinh_s(double x, double o) noexcept: return cosh(x)
cdef Py_ssize_t sinh_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op1(COSH, x)

# cosh: d = sinh(x)
cdef double cosh_f(double x) except? -1.0: return _as_math(COSH, x, cosh(x))
cdef double cosh_s(double x, double o) noexcept: return sinh(x)
cdef Py_ssize_t cosh_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op1(SINH, x)

# asinh: g / sqrt(x**2 + 1)
cdef double asinh_f(double x) except? -1.0: return _as_math(ASINH, x, asinh(x))
cdef double asinh_s(double x, double o) noexcept: return sqrt(x * x + 1.0)
cdef Py_ssize_t asinh_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op1(SQRT, _op_const(ADD, _square(x), 1.0))

# acosh: g / sqrt(x**2 - 1)
cdef double acosh_f(double x) except? -1.0: return _as_math(ACOSH, x, acosh(x))
cdef double acosh_s(double x, double o) noexcept: return sqrt(x * x - 1.0)
cdef Py_ssize_t acosh_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op1(SQRT, _op_const(SUB, _square(x), 1.0))

# atanh: g / (1 - x**2)
cdef double atanh_f(double x) except? -1.0: return _as_math(ATANH, x, atanh(x))
cdef double atanh_s(double x, double o) noexcept: return 1.0 - x * x
cdef Py_ssize_t atanh_n(Py_ssize_t x, Py_ssize_t o) except -1: return _const_op(SUB, 1.0, _square(x))

# expm1: d = exp(x) (not out + 1, which is 0 below x = -37)
cdef double expm1_f(double x) except? -1.0: return _as_math(EXPM1, x, expm1(x))
cdef double expm1_s(double x, double o) noexcept: return exp(x)
cdef Py_ssize_t expm1_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op1(EXP, x)

# exp2: d = out * ln 2
cdef double exp2_f(double x) except? -1.0: return _as_math(EXP2, x, exp2(x))
cdef double exp2_s(double x, double o) noexcept: return o * LN2
cdef Py_ssize_t exp2_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op_const(MUL, o, LN2)

# log1p: g / (1 + x)
cdef double log1p_f(double x) except? -1.0: return log1p(x) if x > -1.0 else _MATH[LOG1P](x)
cdef double log1p_s(double x, double o) noexcept: return 1.0 + x
cdef Py_ssize_t log1p_n(Py_ssize_t x, Py_ssize_t o) except -1: return _const_op(ADD, 1.0, x)

# log2: g / (x * ln 2)
cdef double log2_f(double x) except? -1.0: return log2(x) if x > 0.0 else _MATH[LOG2](x)
cdef double log2_s(double x, double o) noexcept: return x * LN2
cdef Py_ssize_t log2_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op_const(MUL, x, LN2)

# log10: g / (x * ln 10)
cdef double log10_f(double x) except? -1.0: return log10(x) if x > 0.0 else _MATH[LOG10](x)
cdef double log10_s(double x, double o) noexcept: return x * LN10
cdef Py_ssize_t log10_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op_const(MUL, x, LN10)

# cbrt: g / (3 * out**2)
cdef double cbrt_f(double x) except? -1.0: return cbrt(x)
cdef double cbrt_s(double x, double o) noexcept: return 3.0 * o * o
cdef Py_ssize_t cbrt_n(Py_ssize_t x, Py_ssize_t o) except -1: return _emit(MUL, _const_op(MUL, 3.0, o), o)

# erf: d = 2/sqrt(pi) * exp(-x**2)
cdef double erf_f(double x) except? -1.0: return erf(x)
cdef double erf_s(double x, double o) noexcept: return TWO_OVER_SQRT_PI * exp(-(x * x))
cdef Py_ssize_t erf_n(Py_ssize_t x, Py_ssize_t o) except -1: return _const_op(MUL, TWO_OVER_SQRT_PI, _op1(EXP, _op1(NEG, _square(x))))

# erfc: d = -2/sqrt(pi) * exp(-x**2)
cdef double erfc_f(double x) except? -1.0: return erfc(x)
cdef double erfc_s(double x, double o) noexcept: return -TWO_OVER_SQRT_PI * exp(-(x * x))
cdef Py_ssize_t erfc_n(Py_ssize_t x, Py_ssize_t o) except -1: return _const_op(MUL, -TWO_OVER_SQRT_PI, _op1(EXP, _op1(NEG, _square(x))))

# softplus(x) = log(1 + exp(x)), stable for any x: d = sigmoid(x)
cdef double softplus_f(double x) except? -1.0: return (x if x > 0.0 else 0.0) + log1p(exp(-fabs(x)))
cdef double softplus_s(double x, double o) noexcept: return _sigmoid(x)
cdef Py_ssize_t softplus_n(Py_ssize_t x, Py_ssize_t o) except -1: return _op1(SIGMOID, x)

# ilog: log with IEEE results, for derivative graphs (pow's d/dy): g / x
cdef double ilog_f(double x) except? -1.0: return log_ieee(x)

# gelu(x) = x * Phi(x), PyTorch's exact form: d = Phi(x) + x * phi(x)
cdef double gelu_f(double x) except? -1.0: return x * 0.5 * (1.0 + erf(x * SQRT1_2))
cdef double gelu_s(double x, double o) noexcept: return 0.5 * (1.0 + erf(x * SQRT1_2)) + x * (exp(-0.5 * x * x) * GELU_PDF)
cdef Py_ssize_t gelu_n(Py_ssize_t x, Py_ssize_t o) except -1:
    cdef Py_ssize_t cdf = _const_op(MUL, 0.5, _const_op(ADD, 1.0, _op1(ERF, _op_const(MUL, x, SQRT1_2))))
    cdef Py_ssize_t pdf = _op_const(MUL, _op1(EXP, _emit(MUL, _const_op(MUL, -0.5, x), x)), GELU_PDF)
    return _emit(ADD, cdf, _emit(MUL, x, pdf))


cdef void _row(uint8_t op, str name, forward_t forward, slope_t slope, slope_node_t slope_node,
               bint divides) noexcept:
    """One row of the table.  exp2 and cbrt are Python's from 3.11 on: on
    3.10 they are left out, as `math` leaves them out there (the pure engine
    could not give math's numbers for them)."""
    if name in _AFTER_310 and not hasattr(math, name):
        return
    ROWS[op].forward, ROWS[op].slope, ROWS[op].slope_node, ROWS[op].divides = forward, slope, slope_node, divides
    _ROW_NAMES[op] = name
    _MATH[op] = getattr(math, name, None)

cdef tuple _AFTER_310 = ("exp2", "cbrt")

#    op        name        forward     slope       slope_node  divides
_row(TANH,     "tanh",     tanh_f,     tanh_s,     tanh_n,     False)
_row(SIGMOID,  "sigmoid",  sigmoid_f,  sigmoid_s,  sigmoid_n,  False)
_row(EXP,      "exp",      exp_f,      exp_s,      exp_n,      False)
_row(LOG,      "log",      log_f,      log_s,      log_n,      True)
_row(SQRT,     "sqrt",     sqrt_f,     sqrt_s,     sqrt_n,     True)
_row(SIN,      "sin",      sin_f,      sin_s,      sin_n,      False)
_row(COS,      "cos",      cos_f,      cos_s,      cos_n,      False)
_row(TAN,      "tan",      tan_f,      tan_s,      tan_n,      False)
_row(ASIN,     "asin",     asin_f,     asin_s,     asin_n,     True)
_row(ACOS,     "acos",     acos_f,     acos_s,     acos_n,     True)
_row(ATAN,     "atan",     atan_f,     atan_s,     atan_n,     True)
_row(SINH,     "sinh",     sinh_f,     sinh_s,     sinh_n,     False)
_row(COSH,     "cosh",     cosh_f,     cosh_s,     cosh_n,     False)
_row(ASINH,    "asinh",    asinh_f,    asinh_s,    asinh_n,    True)
_row(ACOSH,    "acosh",    acosh_f,    acosh_s,    acosh_n,    True)
_row(ATANH,    "atanh",    atanh_f,    atanh_s,    atanh_n,    True)
_row(EXPM1,    "expm1",    expm1_f,    expm1_s,    expm1_n,    False)
_row(EXP2,     "exp2",     exp2_f,     exp2_s,     exp2_n,     False)
_row(LOG1P,    "log1p",    log1p_f,    log1p_s,    log1p_n,    True)
_row(LOG2,     "log2",     log2_f,     log2_s,     log2_n,     True)
_row(LOG10,    "log10",    log10_f,    log10_s,    log10_n,    True)
_row(CBRT,     "cbrt",     cbrt_f,     cbrt_s,     cbrt_n,     True)
_row(ERF,      "erf",      erf_f,      erf_s,      erf_n,      False)
_row(ERFC,     "erfc",     erfc_f,     erfc_s,     erfc_n,     False)
_row(SOFTPLUS, "softplus", softplus_f, softplus_s, softplus_n, False)
_row(GELU,     "gelu",     gelu_f,     gelu_s,     gelu_n,     False)
_row(ILOG,     "ilog",     ilog_f,     log_s,      log_n,      True)

# the names, by op code (core.pyx): Value._op and the pure engine's kinds
while len(OP_SYMBOLS) <= LAST_OP:
    OP_SYMBOLS.append(None)
    KIND_NAMES.append(None)
for _code, _name in _ROW_NAMES.items():
    OP_SYMBOLS[_code] = KIND_NAMES[_code] = _name

# the functions' names, in op-code order (ILOG is the derivative graphs' own)
FUNCTIONS = tuple(_ROW_NAMES[code] for code in sorted(_ROW_NAMES) if code != ILOG)
