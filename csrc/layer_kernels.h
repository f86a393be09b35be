/* The replay's layer kernels (see replay.pxi): J neurons that read the same
 * n input rows, evaluated and differentiated together over B samples,
 *
 *     out[j][b] = bias[j] + w[j][0]*x[0][b] + w[j][1]*x[1][b] + ...
 *
 * Each kernel is blocked like a GEMM micro-kernel, so that one load of an
 * input (or a gradient) serves several neurons (or inputs) at once, while
 * every output keeps exactly the order of additions of the neuron kernels in
 * batch_kernels.h, and so of the scalar engine and the pure one:
 *
 *   - an output adds its terms left to right (k = 0, 1, ...), from its bias;
 *   - a weight's gradient is a batch sum: sample b in lane b % 4, then
 *     (l0 + l1) + (l2 + l3);
 *   - an input's gradient gets w[j][k] * g[j][b] from each neuron j in the
 *     order the caller lists them (the order of the backward sweep).
 *
 * No FMA (-ffp-contract=off, and AVX2 alone does not enable it), so the
 * baseline and AVX2 builds give the same bits, as in batch_kernels.h; the
 * AVX-512 build (layer_kernels_avx512.h) keeps the same sums in larger tiles.
 *
 * Threads.  The work is split by neurons (forward, weight gradients) or by
 * inputs (input gradients) into contiguous ranges, one per thread; no sum is
 * ever split, so the result is the same for any number of threads.  The
 * kernels run without the GIL: they read and write only the rows they are
 * given (memory the Replay owns, which cannot move or be freed meanwhile)
 * and run no Python code.  On Windows the work runs on the calling thread.
 */
#ifndef AUTOGRAD_LAYER_KERNELS_H
#define AUTOGRAD_LAYER_KERNELS_H

#include "batch_kernels.h"

/* the arguments of one layer kernel call */
typedef struct {
    Py_ssize_t J, n, B;
    const double *const *w;     /* J weight rows of n */
    const double *bias;         /* J biases (forward) */
    const double *const *xs;    /* n input rows of B */
    double *const *out;         /* forward: J output rows of B */
    const double *const *g;     /* backward: J gradient rows of B, in sweep order */
    double *const *gw;          /* J weight-gradient rows of n, added into */
    double *const *gx;          /* input-gradient rows of B, added into (m of them) */
    const Py_ssize_t *gk;       /* the input each of them is (ascending) */
    Py_ssize_t m;
} lk_layer;

/* Four doubles, added and multiplied lane by lane: a vector register (GCC,
 * clang: one AVX2 register, or two SSE2 ones in the baseline build), or a
 * plain struct elsewhere.  The kernels below are written once, with these. */
#if defined(__GNUC__)
#if !defined(__clang__)        /* the helpers are always inlined: no vector crosses a call */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef double lk_v4 __attribute__((vector_size(32)));
#define LK_INLINE static inline __attribute__((always_inline))
LK_INLINE lk_v4 lk_add(lk_v4 a, lk_v4 b) { return a + b; }
LK_INLINE lk_v4 lk_mul(lk_v4 a, lk_v4 b) { return a * b; }
LK_INLINE lk_v4 lk_splat(double c) { lk_v4 v = {c, c, c, c}; return v; }
#else
typedef struct { double v[4]; } lk_v4;
#define LK_INLINE BK_STATIC_INLINE
LK_INLINE lk_v4 lk_add(lk_v4 a, lk_v4 b)
{
    int t;
    for (t = 0; t < 4; t++) a.v[t] = a.v[t] + b.v[t];
    return a;
}
LK_INLINE lk_v4 lk_mul(lk_v4 a, lk_v4 b)
{
    int t;
    for (t = 0; t < 4; t++) a.v[t] = a.v[t] * b.v[t];
    return a;
}
LK_INLINE lk_v4 lk_splat(double c) { lk_v4 v; v.v[0] = v.v[1] = v.v[2] = v.v[3] = c; return v; }
#endif
LK_INLINE lk_v4 lk_load(const double *p) { lk_v4 v; memcpy(&v, p, sizeof v); return v; }
LK_INLINE void lk_store(double *p, lk_v4 v) { memcpy(p, &v, sizeof v); }
/* a + c * x, rounded twice (no FMA) */
LK_INLINE lk_v4 lk_madd(lk_v4 a, lk_v4 c, lk_v4 x) { return lk_add(a, lk_mul(c, x)); }

/* a block of rows of B doubles that fits in 256 KiB (the L2 cache), counted
 * in samples (forward, input gradients: `rows` rows of a block of samples)
 * or rows (weight gradients: rows of `rows` samples); a multiple of 16 (the
 * AVX-512 build's tiles) */
LK_INLINE Py_ssize_t lk_block(Py_ssize_t rows)
{
    Py_ssize_t count = 32768 / (rows > 0 ? rows : 1);
    count -= count % 16;
    return count > 16 ? count : 16;
}

/* -- forward: four neurons by eight samples per pass over the inputs ------------ */
BK_INLINE void lk_forward_block(const lk_layer *L, Py_ssize_t j0, Py_ssize_t j1,
                                Py_ssize_t b0, Py_ssize_t B);

/* the samples in blocks whose inputs stay in the L2 cache while every neuron
 * of the range reads them (the order of each output's sum is unchanged) */
BK_INLINE void lk_forward_body(const lk_layer *L, Py_ssize_t j0, Py_ssize_t j1)
{
    Py_ssize_t b0, step = lk_block(L->n);
    for (b0 = 0; b0 < L->B; b0 += step)
        lk_forward_block(L, j0, j1, b0, b0 + step < L->B ? b0 + step : L->B);
}

BK_INLINE void lk_forward_block(const lk_layer *L, Py_ssize_t j0, Py_ssize_t j1,
                                Py_ssize_t b0, Py_ssize_t B)
{
    const Py_ssize_t n = L->n;
    Py_ssize_t j = j0, b, k;
    for (; j + 4 <= j1; j += 4) {
        const double *w0 = L->w[j], *w1 = L->w[j + 1], *w2 = L->w[j + 2], *w3 = L->w[j + 3];
        for (b = b0; b + 8 <= B; b += 8) {
            lk_v4 a0 = lk_splat(L->bias[j]), a1 = lk_splat(L->bias[j + 1]);
            lk_v4 a2 = lk_splat(L->bias[j + 2]), a3 = lk_splat(L->bias[j + 3]);
            lk_v4 e0 = a0, e1 = a1, e2 = a2, e3 = a3;     /* samples b+4..b+7 */
            for (k = 0; k < n; k++) {
                const lk_v4 x = lk_load(L->xs[k] + b), y = lk_load(L->xs[k] + b + 4);
                const lk_v4 c0 = lk_splat(w0[k]), c1 = lk_splat(w1[k]);
                const lk_v4 c2 = lk_splat(w2[k]), c3 = lk_splat(w3[k]);
                a0 = lk_madd(a0, c0, x); e0 = lk_madd(e0, c0, y);
                a1 = lk_madd(a1, c1, x); e1 = lk_madd(e1, c1, y);
                a2 = lk_madd(a2, c2, x); e2 = lk_madd(e2, c2, y);
                a3 = lk_madd(a3, c3, x); e3 = lk_madd(e3, c3, y);
            }
            lk_store(L->out[j] + b, a0); lk_store(L->out[j] + b + 4, e0);
            lk_store(L->out[j + 1] + b, a1); lk_store(L->out[j + 1] + b + 4, e1);
            lk_store(L->out[j + 2] + b, a2); lk_store(L->out[j + 2] + b + 4, e2);
            lk_store(L->out[j + 3] + b, a3); lk_store(L->out[j + 3] + b + 4, e3);
        }
        for (; b < B; b++) {            /* the last samples, one at a time */
            double a0 = L->bias[j], a1 = L->bias[j + 1], a2 = L->bias[j + 2], a3 = L->bias[j + 3];
            for (k = 0; k < n; k++) {
                const double x = L->xs[k][b];
                a0 = a0 + w0[k] * x;
                a1 = a1 + w1[k] * x;
                a2 = a2 + w2[k] * x;
                a3 = a3 + w3[k] * x;
            }
            L->out[j][b] = a0;
            L->out[j + 1][b] = a1;
            L->out[j + 2][b] = a2;
            L->out[j + 3][b] = a3;
        }
    }
    for (; j < j1; j++) {               /* the last neurons, one at a time */
        const double *wj = L->w[j];
        double *o = L->out[j];
        for (b = b0; b < B; b++)
            o[b] = L->bias[j];
        for (k = 0; k < n; k++) {
            const double *x = L->xs[k];
            const double c = wj[k];
            for (b = b0; b < B; b++)
                o[b] = o[b] + c * x[b];
        }
    }
}

/* the four lanes of a batch sum (in memory), with the tail samples b..
 * (fewer than four) added to lanes 0, 1, 2, then (l0 + l1) + (l2 + l3):
 * batch_dot's order.  No vector in its signature: the AVX-512 build calls it
 * too (clang refuses a vector argument across builds of different ISAs). */
LK_INLINE double lk_lanes_sum_of(const double *lanes, const double *x, const double *g,
                                 Py_ssize_t b, Py_ssize_t B)
{
    double l0 = lanes[0], l1 = lanes[1], l2 = lanes[2], l3 = lanes[3];
    if (b < B) l0 = l0 + x[b] * g[b];
    if (b + 1 < B) l1 = l1 + x[b + 1] * g[b + 1];
    if (b + 2 < B) l2 = l2 + x[b + 2] * g[b + 2];
    return (l0 + l1) + (l2 + l3);
}

LK_INLINE double lk_lanes_sum(lk_v4 lanes, const double *x, const double *g, Py_ssize_t b, Py_ssize_t B)
{
    double l[4];
    lk_store(l, lanes);
    return lk_lanes_sum_of(l, x, g, b, B);
}

/* -- weight gradients: gw[j][k] += batch_dot(x[k], g[j]), four neurons by two
 *    inputs per pass over the batch, each sum in its four lanes -------------- */
BK_INLINE void lk_weight_grads_block(const lk_layer *L, Py_ssize_t j0, Py_ssize_t j1,
                                     Py_ssize_t k0, Py_ssize_t n);

/* the inputs in blocks that stay in the L2 cache while every neuron of the
 * range reads them (each weight's sum is one, over the whole batch) */
BK_INLINE void lk_weight_grads_body(const lk_layer *L, Py_ssize_t j0, Py_ssize_t j1)
{
    Py_ssize_t k0, step = lk_block(L->B);
    for (k0 = 0; k0 < L->n; k0 += step)
        lk_weight_grads_block(L, j0, j1, k0, k0 + step < L->n ? k0 + step : L->n);
}

BK_INLINE void lk_weight_grads_block(const lk_layer *L, Py_ssize_t j0, Py_ssize_t j1,
                                     Py_ssize_t k0, Py_ssize_t n)
{
    const Py_ssize_t B = L->B;
    Py_ssize_t j = j0, k, b;
    int r;
    for (; j + 4 <= j1; j += 4) {
        const double *g0 = L->g[j], *g1 = L->g[j + 1], *g2 = L->g[j + 2], *g3 = L->g[j + 3];
        for (k = k0; k + 2 <= n; k += 2) {
            const double *x = L->xs[k], *y = L->xs[k + 1];
            lk_v4 a0 = lk_splat(0.0), a1 = a0, a2 = a0, a3 = a0;   /* input k */
            lk_v4 e0 = a0, e1 = a0, e2 = a0, e3 = a0;              /* input k + 1 */
            for (b = 0; b + 4 <= B; b += 4) {
                const lk_v4 xv = lk_load(x + b), yv = lk_load(y + b);
                const lk_v4 h0 = lk_load(g0 + b), h1 = lk_load(g1 + b);
                const lk_v4 h2 = lk_load(g2 + b), h3 = lk_load(g3 + b);
                a0 = lk_madd(a0, xv, h0); e0 = lk_madd(e0, yv, h0);
                a1 = lk_madd(a1, xv, h1); e1 = lk_madd(e1, yv, h1);
                a2 = lk_madd(a2, xv, h2); e2 = lk_madd(e2, yv, h2);
                a3 = lk_madd(a3, xv, h3); e3 = lk_madd(e3, yv, h3);
            }
            L->gw[j][k] += lk_lanes_sum(a0, x, g0, b, B);
            L->gw[j + 1][k] += lk_lanes_sum(a1, x, g1, b, B);
            L->gw[j + 2][k] += lk_lanes_sum(a2, x, g2, b, B);
            L->gw[j + 3][k] += lk_lanes_sum(a3, x, g3, b, B);
            L->gw[j][k + 1] += lk_lanes_sum(e0, y, g0, b, B);
            L->gw[j + 1][k + 1] += lk_lanes_sum(e1, y, g1, b, B);
            L->gw[j + 2][k + 1] += lk_lanes_sum(e2, y, g2, b, B);
            L->gw[j + 3][k + 1] += lk_lanes_sum(e3, y, g3, b, B);
        }
        for (; k < n; k++)
            for (r = 0; r < 4; r++)
                L->gw[j + r][k] += batch_dot(L->xs[k], L->g[j + r], B);
    }
    for (; j < j1; j++)
        for (k = k0; k < n; k++)
            L->gw[j][k] += batch_dot(L->xs[k], L->g[j], B);
}

/* -- input gradients: gx[i][b] += w[j][gk[i]] * g[j][b] for each neuron j in
 *    order, four inputs by eight samples per pass over the neurons ---------- */
BK_INLINE void lk_input_grads_block(const lk_layer *L, Py_ssize_t i0, Py_ssize_t i1,
                                    Py_ssize_t b0, Py_ssize_t B);

/* the samples in blocks whose gradients stay in the L2 cache while every
 * input of the range reads them (each output's order is unchanged) */
BK_INLINE void lk_input_grads_body(const lk_layer *L, Py_ssize_t i0, Py_ssize_t i1)
{
    Py_ssize_t b0, step = lk_block(L->J);
    for (b0 = 0; b0 < L->B; b0 += step)
        lk_input_grads_block(L, i0, i1, b0, b0 + step < L->B ? b0 + step : L->B);
}

BK_INLINE void lk_input_grads_block(const lk_layer *L, Py_ssize_t i0, Py_ssize_t i1,
                                    Py_ssize_t b0, Py_ssize_t B)
{
    const Py_ssize_t J = L->J;
    Py_ssize_t i = i0, b, j;
    for (; i + 4 <= i1; i += 4) {
        const Py_ssize_t k0 = L->gk[i], k1 = L->gk[i + 1], k2 = L->gk[i + 2], k3 = L->gk[i + 3];
        double *x0 = L->gx[i], *x1 = L->gx[i + 1], *x2 = L->gx[i + 2], *x3 = L->gx[i + 3];
        for (b = b0; b + 8 <= B; b += 8) {
            lk_v4 a0 = lk_load(x0 + b), a1 = lk_load(x1 + b), a2 = lk_load(x2 + b), a3 = lk_load(x3 + b);
            lk_v4 e0 = lk_load(x0 + b + 4), e1 = lk_load(x1 + b + 4);
            lk_v4 e2 = lk_load(x2 + b + 4), e3 = lk_load(x3 + b + 4);
            for (j = 0; j < J; j++) {
                const double *w = L->w[j];
                const lk_v4 g = lk_load(L->g[j] + b), h = lk_load(L->g[j] + b + 4);
                const lk_v4 c0 = lk_splat(w[k0]), c1 = lk_splat(w[k1]);
                const lk_v4 c2 = lk_splat(w[k2]), c3 = lk_splat(w[k3]);
                a0 = lk_madd(a0, c0, g); e0 = lk_madd(e0, c0, h);
                a1 = lk_madd(a1, c1, g); e1 = lk_madd(e1, c1, h);
                a2 = lk_madd(a2, c2, g); e2 = lk_madd(e2, c2, h);
                a3 = lk_madd(a3, c3, g); e3 = lk_madd(e3, c3, h);
            }
            lk_store(x0 + b, a0); lk_store(x0 + b + 4, e0);
            lk_store(x1 + b, a1); lk_store(x1 + b + 4, e1);
            lk_store(x2 + b, a2); lk_store(x2 + b + 4, e2);
            lk_store(x3 + b, a3); lk_store(x3 + b + 4, e3);
        }
        for (; b < B; b++)
            for (j = 0; j < J; j++) {
                const double gb = L->g[j][b], *w = L->w[j];
                x0[b] = x0[b] + w[k0] * gb;
                x1[b] = x1[b] + w[k1] * gb;
                x2[b] = x2[b] + w[k2] * gb;
                x3[b] = x3[b] + w[k3] * gb;
            }
    }
    for (; i < i1; i++) {
        double *x = L->gx[i];
        const Py_ssize_t kk = L->gk[i];
        for (j = 0; j < J; j++) {
            const double c = L->w[j][kk], *g = L->g[j];
            for (b = b0; b < B; b++)
                x[b] = x[b] + c * g[b];
        }
    }
}

typedef void (*lk_part)(const lk_layer *, Py_ssize_t, Py_ssize_t);

static void lk_forward_baseline(const lk_layer *L, Py_ssize_t a, Py_ssize_t z) { lk_forward_body(L, a, z); }
static void lk_weight_grads_baseline(const lk_layer *L, Py_ssize_t a, Py_ssize_t z) { lk_weight_grads_body(L, a, z); }
static void lk_input_grads_baseline(const lk_layer *L, Py_ssize_t a, Py_ssize_t z) { lk_input_grads_body(L, a, z); }
#if BK_AVX2_BUILD
BK_AVX2 static void lk_forward_avx2(const lk_layer *L, Py_ssize_t a, Py_ssize_t z) { lk_forward_body(L, a, z); }
BK_AVX2 static void lk_weight_grads_avx2(const lk_layer *L, Py_ssize_t a, Py_ssize_t z) { lk_weight_grads_body(L, a, z); }
BK_AVX2 static void lk_input_grads_avx2(const lk_layer *L, Py_ssize_t a, Py_ssize_t z) { lk_input_grads_body(L, a, z); }
#endif
#include "layer_kernels_avx512.h"       /* the AVX-512 build: larger tiles, the same sums */

#include "layer_threads.h"      /* lk_run: a part over [0, count) on up to `threads` threads */

/* the build in use: 0 baseline, 1 AVX2, 2 AVX-512 */
static lk_part lk_forward = lk_forward_baseline;
static lk_part lk_weight_grads = lk_weight_grads_baseline;
static lk_part lk_input_grads = lk_input_grads_baseline;
static int lk_level = 0;

/* Use the highest build up to `level` that this CPU can run (level 1 needs
 * the AVX2 neuron kernels in use: batch_kernels_init); returns its level. */
static int layer_kernels_init(int level)
{
#if LK_HAVE_AVX512
    if (level >= 2 && batch_kernels_avx2_in_use() && lk_have_avx512()) {
        lk_forward = lk_forward_avx512;
        lk_weight_grads = lk_weight_grads_avx512;
        lk_input_grads = lk_input_grads_avx512;
        return lk_level = 2;
    }
#endif
#if BK_AVX2_BUILD
    if (level >= 1 && batch_kernels_avx2_in_use()) {
        lk_forward = lk_forward_avx2;
        lk_weight_grads = lk_weight_grads_avx2;
        lk_input_grads = lk_input_grads_avx2;
        return lk_level = 1;
    }
#endif
    lk_forward = lk_forward_baseline;
    lk_weight_grads = lk_weight_grads_baseline;
    lk_input_grads = lk_input_grads_baseline;
    return lk_level = 0;
}

static int layer_kernels_level(void)
{
    return lk_level;
}

/* the three kernels of a layer; each returns the number of threads it used */
static int layer_forward(const lk_layer *L, int threads)
{
    return lk_run(lk_forward, L, L->J, (double)L->J * L->n * L->B, threads);
}

static int layer_weight_grads(const lk_layer *L, int threads)
{
    return lk_run(lk_weight_grads, L, L->J, (double)L->J * L->n * L->B, threads);
}

static int layer_input_grads(const lk_layer *L, int threads)
{
    if (L->m == 0)
        return 1;
    return lk_run(lk_input_grads, L, L->m, (double)L->J * L->m * L->B, threads);
}

#endif
