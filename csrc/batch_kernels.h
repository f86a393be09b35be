/* The replay's batch kernels (see replay.pxi): the sums over a batch that
 * give shared slots their gradients, and the neuron,
 *
 *     out[b] = bias + w[0]*x[0][b] + w[1]*x[1][b] + ...   (left to right)
 *
 * with its derivatives, over B samples held as contiguous rows.
 *
 * Order of every sum.  A neuron's output adds its terms left to right for
 * each sample, as the scalar DOT node does.  A sum over the batch puts sample
 * b in lane b % 4 and returns (l0 + l1) + (l2 + l3).  The pure engine follows
 * both orders, so the two engines agree bit for bit.
 *
 * Two builds of the neuron kernels.  With GCC or clang on x86 they are
 * compiled twice, for the baseline ISA and with AVX2, and
 * batch_kernels_init() picks one from the CPU at import.  Both give the same
 * bits: AVX2 alone does not enable FMA (and the build passes
 * -ffp-contract=off), and each vector lane holds one of the sums above, so
 * only the width of the vectors differs.  Other compilers (MSVC) and other
 * CPUs get the baseline build alone.
 *
 * These functions run no Python code and touch only the rows they are given.
 */
#ifndef AUTOGRAD_BATCH_KERNELS_H
#define AUTOGRAD_BATCH_KERNELS_H

#include <string.h>
#include <Python.h>

#if defined(_MSC_VER)                  /* C99's keywords, as MSVC's C compiler spells them */
#define BK_STATIC_INLINE static __inline
#define BK_RESTRICT __restrict
#else
#define BK_STATIC_INLINE static inline
#define BK_RESTRICT restrict
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define BK_AVX2_BUILD 1
/* a body inlined into each build, compiled there for that build's ISA */
#define BK_INLINE static inline __attribute__((always_inline))
#define BK_AVX2 __attribute__((target("avx2")))
#else
#define BK_AVX2_BUILD 0
#define BK_INLINE BK_STATIC_INLINE
#endif

/* sum of t[0..n), lanes b % 4, then (l0 + l1) + (l2 + l3) */
BK_STATIC_INLINE double batch_sum(const double *t, Py_ssize_t n)
{
    double l0 = 0.0, l1 = 0.0, l2 = 0.0, l3 = 0.0;
    Py_ssize_t b = 0;
    for (; b + 4 <= n; b += 4) {
        l0 = l0 + t[b];
        l1 = l1 + t[b + 1];
        l2 = l2 + t[b + 2];
        l3 = l3 + t[b + 3];
    }
    if (b < n) l0 = l0 + t[b];
    if (b + 1 < n) l1 = l1 + t[b + 1];
    if (b + 2 < n) l2 = l2 + t[b + 2];
    return (l0 + l1) + (l2 + l3);
}

/* batch_sum of x[b] * g[b], without storing the products */
BK_STATIC_INLINE double batch_dot(const double *x, const double *g, Py_ssize_t n)
{
    double l0 = 0.0, l1 = 0.0, l2 = 0.0, l3 = 0.0;
    Py_ssize_t b = 0;
    for (; b + 4 <= n; b += 4) {
        l0 = l0 + x[b] * g[b];
        l1 = l1 + x[b + 1] * g[b + 1];
        l2 = l2 + x[b + 2] * g[b + 2];
        l3 = l3 + x[b + 3] * g[b + 3];
    }
    if (b < n) l0 = l0 + x[b] * g[b];
    if (b + 1 < n) l1 = l1 + x[b + 1] * g[b + 1];
    if (b + 2 < n) l2 = l2 + x[b + 2] * g[b + 2];
    return (l0 + l1) + (l2 + l3);
}

/* -- the neuron's forward: out[b] = bias, then its terms in order, two
 *    inputs per pass over the row (a pass is a vectorizable loop over b) -- */
BK_INLINE void neuron_forward_body(double *BK_RESTRICT out, double bias, const double *w,
                                   const double *const *xs, Py_ssize_t n, Py_ssize_t B)
{
    Py_ssize_t b, k = 0;
    for (b = 0; b < B; b++)
        out[b] = bias;
    for (; k + 2 <= n; k += 2) {
        const double *BK_RESTRICT x = xs[k], *BK_RESTRICT y = xs[k + 1];
        double wx = w[k], wy = w[k + 1];
        for (b = 0; b < B; b++)
            out[b] = (out[b] + wx * x[b]) + wy * y[b];
    }
    if (k < n) {
        const double *BK_RESTRICT x = xs[k];
        double wx = w[k];
        for (b = 0; b < B; b++)
            out[b] = out[b] + wx * x[b];
    }
}

/* -- its derivatives: d/dw[k] = batch_dot(x[k], g), d/dx[k][b] = w[k] * g[b],
 *    added into gxs[k] in order of k (NULL: that input needs no gradient) -- */
BK_INLINE void neuron_input_grads_body(double *const *gxs, const double *w, const double *BK_RESTRICT g,
                                       Py_ssize_t n, Py_ssize_t B)
{
    Py_ssize_t b, k;
    for (k = 0; k < n; k++) {
        double *BK_RESTRICT gx = gxs[k];
        double wk = w[k];
        if (gx == NULL)
            continue;
        for (b = 0; b < B; b++)
            gx[b] += wk * g[b];
    }
}

static void neuron_forward_baseline(double *out, double bias, const double *w,
                                    const double *const *xs, Py_ssize_t n, Py_ssize_t B)
{
    neuron_forward_body(out, bias, w, xs, n, B);
}

static void neuron_input_grads_baseline(double *const *gxs, const double *w, const double *g,
                                        Py_ssize_t n, Py_ssize_t B)
{
    neuron_input_grads_body(gxs, w, g, n, B);
}

/* gw[k] = batch_dot(xs[k], g) for every k */
static void neuron_weight_grads_baseline(double *gw, const double *const *xs, const double *g,
                                         Py_ssize_t n, Py_ssize_t B)
{
    Py_ssize_t k;
    for (k = 0; k < n; k++)
        gw[k] = batch_dot(xs[k], g, B);
}

#if BK_AVX2_BUILD
BK_AVX2 static void neuron_forward_avx2(double *out, double bias, const double *w,
                                        const double *const *xs, Py_ssize_t n, Py_ssize_t B)
{
    neuron_forward_body(out, bias, w, xs, n, B);
}

BK_AVX2 static void neuron_input_grads_avx2(double *const *gxs, const double *w, const double *g,
                                            Py_ssize_t n, Py_ssize_t B)
{
    neuron_input_grads_body(gxs, w, g, n, B);
}

/* batch_dot for four weights at a time: one vector of the four lanes per
 * weight, four independent add chains (a compiler does not find this in
 * batch_dot's scalar form) */
typedef double bk_lanes __attribute__((vector_size(32)));

BK_AVX2 static void neuron_weight_grads_avx2(double *gw, const double *const *xs, const double *g,
                                             Py_ssize_t n, Py_ssize_t B)
{
    Py_ssize_t b, k = 0;
    int q, j;
    for (; k + 4 <= n; k += 4) {
        bk_lanes acc[4], gv, xv;
        for (q = 0; q < 4; q++)
            acc[q] = (bk_lanes){0.0, 0.0, 0.0, 0.0};
        for (b = 0; b + 4 <= B; b += 4) {
            memcpy(&gv, g + b, sizeof gv);
            for (q = 0; q < 4; q++) {
                memcpy(&xv, xs[k + q] + b, sizeof xv);
                acc[q] = acc[q] + xv * gv;
            }
        }
        for (q = 0; q < 4; q++) {       /* the tail, then the lanes, as batch_dot */
            double l[4] = {acc[q][0], acc[q][1], acc[q][2], acc[q][3]};
            for (j = 0; b + j < B; j++)
                l[j] = l[j] + xs[k + q][b + j] * g[b + j];
            gw[k + q] = (l[0] + l[1]) + (l[2] + l[3]);
        }
    }
    for (; k < n; k++)
        gw[k] = batch_dot(xs[k], g, B);
}
#endif

/* -- the build in use -------------------------------------------------------- */
static void (*neuron_forward)(double *, double, const double *, const double *const *,
                              Py_ssize_t, Py_ssize_t) = neuron_forward_baseline;
static void (*neuron_weight_grads)(double *, const double *const *, const double *,
                                   Py_ssize_t, Py_ssize_t) = neuron_weight_grads_baseline;
static void (*neuron_input_grads)(double *const *, const double *, const double *,
                                  Py_ssize_t, Py_ssize_t) = neuron_input_grads_baseline;

/* 1 if this CPU (and its OS) can run the AVX2 build */
static int batch_kernels_have_avx2(void)
{
#if BK_AVX2_BUILD
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

/* Use the AVX2 build (avx2 = 1, where the CPU has it) or the baseline one;
 * returns 1 if the AVX2 build is in use. */
static int batch_kernels_init(int avx2)
{
#if BK_AVX2_BUILD
    if (avx2 && batch_kernels_have_avx2()) {
        neuron_forward = neuron_forward_avx2;
        neuron_weight_grads = neuron_weight_grads_avx2;
        neuron_input_grads = neuron_input_grads_avx2;
        return 1;
    }
#endif
    (void)avx2;
    neuron_forward = neuron_forward_baseline;
    neuron_weight_grads = neuron_weight_grads_baseline;
    neuron_input_grads = neuron_input_grads_baseline;
    return 0;
}

/* 1 if the AVX2 build is in use */
static int batch_kernels_avx2_in_use(void)
{
#if BK_AVX2_BUILD
    return neuron_forward == neuron_forward_avx2;
#else
    return 0;
#endif
}

#endif
