/* Shared helpers for the hand-written C gradients of the benchmark suite.
 *
 * Every problem exports
 *   double NAME_vg(const double *x, long n, double *g);      value, gradient into g
 *   double NAME_vg_repeat(const double *x, long n, double *g, long reps);
 * The repeat entry point runs the same computation reps times inside C, so the
 * per-call cost of going through ctypes can be separated from the arithmetic.
 * NAME_vg is kept out of line and the loop has a compiler barrier, so -O2 cannot
 * merge or hoist the repeated calls.
 */
#ifndef FASTAD_BENCH_COMMON_H
#define FASTAD_BENCH_COMMON_H
#include <math.h>

#define DEFINE_REPEAT(NAME)                                                   \
    double NAME##_vg_repeat(const double *x, long n, double *g, long reps) { \
        double v = 0.0;                                                       \
        for (long r = 0; r < reps; ++r) {                                     \
            v = NAME##_vg(x, n, g);                                           \
            __asm__ __volatile__("" : : "g"(v), "r"(g), "r"(x) : "memory");   \
        }                                                                     \
        return v;                                                             \
    }

#define NOINLINE __attribute__((noinline))
#endif
