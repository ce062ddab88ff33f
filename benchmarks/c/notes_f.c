/* The notes' f(x1, x2) = x1*x2 + exp(x1*x2) - sin(x2); x = (x1, x2). */
#include "common.h"

NOINLINE double notes_f_vg(const double *x, long n, double *g) {
    (void)n;
    double x1 = x[0], x2 = x[1], t = x1 * x2, e = exp(t);
    g[0] = x2 * (1.0 + e);
    g[1] = x1 * (1.0 + e) - cos(x2);
    return t + e - sin(x2);
}

DEFINE_REPEAT(notes_f)
