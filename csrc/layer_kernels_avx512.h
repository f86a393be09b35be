/* The layer kernels' AVX-512 build (included by layer_kernels.h, which
 * defines the sums, their order and the four-wide code).
 *
 * The same sums in the same order, with eight doubles per register and 32
 * registers, so larger tiles:
 *
 *   - forward: eight neurons by sixteen samples per pass over the inputs;
 *   - input gradients: eight inputs by sixteen samples per pass over the
 *     neurons;
 *   - weight gradients, whose batch sums keep four lanes (sample b in lane
 *     b % 4): two sums per register, input k in the low half and input k + 1
 *     in the high half, four neurons by eight inputs per pass over the batch.
 *
 * Each register lane holds one output's sum (or one of its four lanes) and
 * adds its terms in the order of the four-wide code; multiplies and adds are
 * separate instructions (never _mm512_fmadd_pd, and the build passes
 * -ffp-contract=off), so the bits are those of the baseline build.  What a
 * tile leaves over (the last neurons, inputs or samples) runs the four-wide
 * code, compiled here for AVX-512.  layer_kernels_init() picks this build
 * where the CPU and its OS have AVX-512F.
 */
#ifndef AUTOGRAD_LAYER_KERNELS_AVX512_H
#define AUTOGRAD_LAYER_KERNELS_AVX512_H

#if BK_AVX2_BUILD
#include <immintrin.h>

#define LK_AVX512 __attribute__((target("avx2,avx512f")))
#define LK_HAVE_AVX512 1

/* a + c * x, rounded twice (no FMA) */
#define LK_MADD8(a, c, x) _mm512_add_pd((a), _mm512_mul_pd((c), (x)))

/* -- forward: out[j][b] = bias[j] + w[j][0]*x[0][b] + ..., eight neurons by
 *    sixteen samples; j1 - j0 a multiple of 8, b1 - b0 of 16 ---------------- */
LK_AVX512 static void lk_forward_tiles512(const lk_layer *L, Py_ssize_t j0, Py_ssize_t j1,
                                          Py_ssize_t b0, Py_ssize_t b1)
{
    const Py_ssize_t n = L->n;
    Py_ssize_t j, b, k;
    int r;
    for (j = j0; j < j1; j += 8) {
        const double *const *w = L->w + j;
        for (b = b0; b < b1; b += 16) {
            __m512d lo[8], hi[8];       /* samples b..b+7 and b+8..b+15 of neuron j + r */
            for (r = 0; r < 8; r++)
                lo[r] = hi[r] = _mm512_set1_pd(L->bias[j + r]);
            for (k = 0; k < n; k++) {
                const __m512d x = _mm512_loadu_pd(L->xs[k] + b);
                const __m512d y = _mm512_loadu_pd(L->xs[k] + b + 8);
                for (r = 0; r < 8; r++) {
                    const __m512d c = _mm512_set1_pd(w[r][k]);
                    lo[r] = LK_MADD8(lo[r], c, x);
                    hi[r] = LK_MADD8(hi[r], c, y);
                }
            }
            for (r = 0; r < 8; r++) {
                _mm512_storeu_pd(L->out[j + r] + b, lo[r]);
                _mm512_storeu_pd(L->out[j + r] + b + 8, hi[r]);
            }
        }
    }
}

LK_AVX512 static void lk_forward_avx512(const lk_layer *L, Py_ssize_t j0, Py_ssize_t j1)
{
    const Py_ssize_t j8 = j0 + (j1 - j0) / 8 * 8, step = lk_block(L->n);
    Py_ssize_t b0;
    for (b0 = 0; b0 < L->B; b0 += step) {       /* blocks of samples, as lk_forward_body */
        const Py_ssize_t b1 = b0 + step < L->B ? b0 + step : L->B;
        const Py_ssize_t b16 = b0 + (b1 - b0) / 16 * 16;
        lk_forward_tiles512(L, j0, j8, b0, b16);
        if (b16 < b1)
            lk_forward_block(L, j0, j8, b16, b1);   /* the last samples */
        if (j8 < j1)
            lk_forward_block(L, j8, j1, b0, b1);    /* the last neurons */
    }
}

/* -- input gradients: gx[i][b] += w[j][gk[i]] * g[j][b], neuron after neuron,
 *    eight inputs by sixteen samples; i1 - i0 a multiple of 8, b1 - b0 of 16 */
LK_AVX512 static void lk_input_grads_tiles512(const lk_layer *L, Py_ssize_t i0, Py_ssize_t i1,
                                              Py_ssize_t b0, Py_ssize_t b1)
{
    const Py_ssize_t J = L->J;
    Py_ssize_t i, b, j;
    int r;
    for (i = i0; i < i1; i += 8) {
        const Py_ssize_t *kk = L->gk + i;
        double *const *gx = L->gx + i;
        for (b = b0; b < b1; b += 16) {
            __m512d lo[8], hi[8];
            for (r = 0; r < 8; r++) {
                lo[r] = _mm512_loadu_pd(gx[r] + b);
                hi[r] = _mm512_loadu_pd(gx[r] + b + 8);
            }
            for (j = 0; j < J; j++) {
                const double *w = L->w[j];
                const __m512d g = _mm512_loadu_pd(L->g[j] + b);
                const __m512d h = _mm512_loadu_pd(L->g[j] + b + 8);
                for (r = 0; r < 8; r++) {
                    const __m512d c = _mm512_set1_pd(w[kk[r]]);
                    lo[r] = LK_MADD8(lo[r], c, g);
                    hi[r] = LK_MADD8(hi[r], c, h);
                }
            }
            for (r = 0; r < 8; r++) {
                _mm512_storeu_pd(gx[r] + b, lo[r]);
                _mm512_storeu_pd(gx[r] + b + 8, hi[r]);
            }
        }
    }
}

LK_AVX512 static void lk_input_grads_avx512(const lk_layer *L, Py_ssize_t i0, Py_ssize_t i1)
{
    const Py_ssize_t i8 = i0 + (i1 - i0) / 8 * 8, step = lk_block(L->J);
    Py_ssize_t b0;
    for (b0 = 0; b0 < L->B; b0 += step) {       /* blocks of samples, as lk_input_grads_body */
        const Py_ssize_t b1 = b0 + step < L->B ? b0 + step : L->B;
        const Py_ssize_t b16 = b0 + (b1 - b0) / 16 * 16;
        lk_input_grads_tiles512(L, i0, i8, b0, b16);
        if (b16 < b1)
            lk_input_grads_block(L, i0, i8, b16, b1);
        if (i8 < i1)
            lk_input_grads_block(L, i8, i1, b0, b1);
    }
}

/* -- weight gradients: gw[j][k] += batch_dot(x[k], g[j]), four neurons by
 *    eight inputs (four registers of two inputs) per pass over the batch;
 *    j1 - j0 a multiple of 4, k1 - k0 of 8 ------------------------------------ */
/* eight batch sums at once: acc[p] holds the four lanes of input 2p (low
 * half) and of input 2p + 1 (high half).  Transposed into L0..L3 (lane l of
 * the eight inputs), each sum is (l0 + l1) + (l2 + l3), lk_lanes_sum_of's
 * order without a tail.  Only AVX-512 code calls it (the vectors never cross
 * builds of different ISAs: see lk_lanes_sum_of). */
LK_AVX512 static inline __m512d lk_lanes_sums8(const __m512d *acc)
{
    const __m512i lo4 = _mm512_set_epi64(13, 9, 5, 1, 12, 8, 4, 0);    /* lanes 0, 1 */
    const __m512i hi4 = _mm512_set_epi64(15, 11, 7, 3, 14, 10, 6, 2);  /* lanes 2, 3 */
    const __m512i low = _mm512_set_epi64(11, 10, 9, 8, 3, 2, 1, 0);
    const __m512i high = _mm512_set_epi64(15, 14, 13, 12, 7, 6, 5, 4);
    const __m512d t01 = _mm512_permutex2var_pd(acc[0], lo4, acc[1]);   /* l0 of 0-3, l1 of 0-3 */
    const __m512d t23 = _mm512_permutex2var_pd(acc[0], hi4, acc[1]);   /* l2 of 0-3, l3 of 0-3 */
    const __m512d u01 = _mm512_permutex2var_pd(acc[2], lo4, acc[3]);   /* the same of 4-7 */
    const __m512d u23 = _mm512_permutex2var_pd(acc[2], hi4, acc[3]);
    const __m512d l0 = _mm512_permutex2var_pd(t01, low, u01);
    const __m512d l1 = _mm512_permutex2var_pd(t01, high, u01);
    const __m512d l2 = _mm512_permutex2var_pd(t23, low, u23);
    const __m512d l3 = _mm512_permutex2var_pd(t23, high, u23);
    return _mm512_add_pd(_mm512_add_pd(l0, l1), _mm512_add_pd(l2, l3));
}

LK_AVX512 static void lk_weight_grads_tiles512(const lk_layer *L, Py_ssize_t j0, Py_ssize_t j1,
                                               Py_ssize_t k0, Py_ssize_t k1)
{
    const Py_ssize_t B = L->B;
    Py_ssize_t j, k, b;
    int r, p;
    double lanes[8];
    for (k = k0; k < k1; k += 8) {     /* eight input rows, kept in L1 while every */
        const double *const *x = L->xs + k;         /* four neurons' rows pass by */
        for (j = j0; j < j1; j += 4) {
            const double *const *g = L->g + j;
            __m512d acc[4][4];          /* neuron j + r; inputs k + 2p (low) and k + 2p + 1 */
            for (r = 0; r < 4; r++)
                for (p = 0; p < 4; p++)
                    acc[r][p] = _mm512_setzero_pd();
            for (b = 0; b + 4 <= B; b += 4) {
                __m512d xs[4];
                for (p = 0; p < 4; p++)
                    xs[p] = _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_loadu_pd(x[2 * p] + b)),
                                               _mm256_loadu_pd(x[2 * p + 1] + b), 1);
                for (r = 0; r < 4; r++) {
                    const __m512d h = _mm512_broadcast_f64x4(_mm256_loadu_pd(g[r] + b));
                    for (p = 0; p < 4; p++)
                        acc[r][p] = LK_MADD8(acc[r][p], xs[p], h);
                }
            }
            if (b == B) {               /* no tail: eight sums at once per neuron */
                for (r = 0; r < 4; r++) {
                    double *gw = L->gw[j + r] + k;
                    _mm512_storeu_pd(gw, _mm512_add_pd(_mm512_loadu_pd(gw),
                                                       lk_lanes_sums8(acc[r])));
                }
                continue;
            }
            for (r = 0; r < 4; r++)
                for (p = 0; p < 4; p++) {
                    _mm512_storeu_pd(lanes, acc[r][p]);
                    L->gw[j + r][k + 2 * p] += lk_lanes_sum_of(lanes, x[2 * p], g[r], b, B);
                    L->gw[j + r][k + 2 * p + 1] += lk_lanes_sum_of(lanes + 4, x[2 * p + 1],
                                                                   g[r], b, B);
                }
        }
    }
}

LK_AVX512 static void lk_weight_grads_avx512(const lk_layer *L, Py_ssize_t j0, Py_ssize_t j1)
{
    const Py_ssize_t j4 = j0 + (j1 - j0) / 4 * 4, step = lk_block(L->B);
    Py_ssize_t k0;
    for (k0 = 0; k0 < L->n; k0 += step) {       /* blocks of inputs, as lk_weight_grads_body */
        const Py_ssize_t k1 = k0 + step < L->n ? k0 + step : L->n;
        const Py_ssize_t k8 = k0 + (k1 - k0) / 8 * 8;
        lk_weight_grads_tiles512(L, j0, j4, k0, k8);
        if (k8 < k1)
            lk_weight_grads_block(L, j0, j4, k8, k1);   /* the last inputs */
        if (j4 < j1)
            lk_weight_grads_block(L, j4, j1, k0, k1);   /* the last neurons */
    }
}

/* 1 if this CPU (and its OS) can run the AVX-512 build */
static int lk_have_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") ? 1 : 0;
}

#else
#define LK_HAVE_AVX512 0
#endif

#endif
