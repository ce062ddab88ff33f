/*
 * batch_trig.h -- sin and cos of a batch's lanes in one pass (fastad.vmap; docs/scale.md).
 *
 * A batch-major SIN record needs cos of the same lanes in its tangent and reverse sweeps,
 * and a COS record needs sin: the forward sweep computes both at once and keeps the other
 * one beside the values (batch.h: the record's AUX word), so the derivative sweeps read it
 * instead of calling libm a second time.  Two ways to compute the pair:
 *
 *   exact   (the default) glibc's sincos: the bits of libm's separate sin and cos
 *           (checked on 7*10^7 arguments, huge, subnormal, +-0, inf and nan included,
 *           and by tests/unit/test_vmap_trig.py on every run), so a batched point equals
 *           the single call bit for bit.  Elsewhere than glibc: sin and cos.
 *   vector  (fastad.batching.set_vector_math(True)) glibc's libmvec (_ZGVeN8v_sin & co.,
 *           AVX-512 or AVX2 chosen from the CPU at each call), when the build found it
 *           (FA_HAVE_LIBMVEC): 8 or 4 lanes at once, ~10x faster, within 4 ulps of libm
 *           (measured against mpmath by benchmarks/vmap_trig_ulps.py, the bound asserted
 *           in tests/unit/test_vmap_trig.py; docs/conventions.md).  Every element goes
 *           through the same vector function (a short tail is padded), and libmvec
 *           computes each lane on its own, so the results depend neither on a point's
 *           place in the batch nor on the number of threads.
 */
#ifndef FASTAD_BATCH_TRIG_H
#define FASTAD_BATCH_TRIG_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GLIBC__)
void sincos(double x, double *s, double *c);   /* a GNU extension of math.h */
#endif

#if defined(FA_HAVE_LIBMVEC) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FA_TRIG_MVEC 1
#include <immintrin.h>

/* One kernel per vector width: W lanes of type VT through libmvec's SIN and COS; the tail
 * goes through the same functions, padded with zeros. */
#define FA_TRIG_KERNEL(NAME, W, VT, LOAD, STORE, SIN, COS)                                 \
    static void NAME(const double *x, double *s, double *c, int64_t n)                    \
    {                                                                                      \
        int64_t k = 0;                                                                     \
        for (; k + (W) <= n; k += (W)) {                                                   \
            const VT v = LOAD(x + k);                                                      \
            STORE(s + k, SIN(v));                                                          \
            STORE(c + k, COS(v));                                                          \
        }                                                                                  \
        if (k < n) {                                                                       \
            double xt[W] = {0}, st[W], ct[W];                                              \
            memcpy(xt, x + k, (size_t)(n - k) * sizeof(double));                           \
            const VT v = LOAD(xt);                                                         \
            STORE(st, SIN(v));                                                             \
            STORE(ct, COS(v));                                                             \
            memcpy(s + k, st, (size_t)(n - k) * sizeof(double));                           \
            memcpy(c + k, ct, (size_t)(n - k) * sizeof(double));                           \
        }                                                                                  \
    }

#pragma GCC push_options
#pragma GCC target("avx512f")
__m512d _ZGVeN8v_sin(__m512d x);
__m512d _ZGVeN8v_cos(__m512d x);
FA_TRIG_KERNEL(fa_trig_avx512, 8, __m512d, _mm512_loadu_pd, _mm512_storeu_pd,
               _ZGVeN8v_sin, _ZGVeN8v_cos)
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
__m256d _ZGVdN4v_sin(__m256d x);
__m256d _ZGVdN4v_cos(__m256d x);
FA_TRIG_KERNEL(fa_trig_avx2, 4, __m256d, _mm256_loadu_pd, _mm256_storeu_pd,
               _ZGVdN4v_sin, _ZGVdN4v_cos)
#pragma GCC pop_options
#undef FA_TRIG_KERNEL
#endif

/* Is vector math available here (the build has libmvec and the CPU AVX2 or AVX-512)? */
static inline int fa_trig_vector_available(void)
{
#ifdef FA_TRIG_MVEC
    return __builtin_cpu_supports("avx512f")
           || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
#else
    return 0;
#endif
}

/* s[k] = sin(x[k]), c[k] = cos(x[k]) for k < n; vector: libmvec where available (above). */
static inline void fa_trig_sincos(const double *x, double *s, double *c, int64_t n, int vector)
{
#ifdef FA_TRIG_MVEC
    if (vector) {
        if (__builtin_cpu_supports("avx512f")) { fa_trig_avx512(x, s, c, n); return; }
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            fa_trig_avx2(x, s, c, n);
            return;
        }
    }
#else
    (void)vector;
#endif
    for (int64_t k = 0; k < n; k++) {
#if defined(__GLIBC__)
        sincos(x[k], s + k, c + k);
#else
        s[k] = sin(x[k]);
        c[k] = cos(x[k]);
#endif
    }
}

#endif /* FASTAD_BATCH_TRIG_H */
