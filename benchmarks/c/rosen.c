/* Rosenbrock: sum_i 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2, value and gradient. */
#include "common.h"

NOINLINE double rosen_vg(const double *x, long n, double *g) {
    double s = 0.0;
    if (n <= 0) return 0.0;
    g[0] = 0.0;
    for (long i = 0; i < n - 1; ++i) {
        double a = x[i], d = x[i + 1] - a * a, o = 1.0 - a;
        s += 100.0 * d * d + o * o;
        g[i] += -400.0 * a * d - 2.0 * o;
        g[i + 1] = 200.0 * d;
    }
    return s;
}

DEFINE_REPEAT(rosen)
