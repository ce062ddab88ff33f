/* Piecewise loss with data-dependent branches (see problems.make_branchy). */
#include "common.h"

NOINLINE double branchy_vg(const double *x, long n, double *g) {
    double s = 0.0;
    for (long i = 0; i < n; ++i) {
        double xi = x[i];
        if (xi > 1.0) {
            double l = log(xi);
            s += xi * l;
            g[i] = l + 1.0;
        } else if (xi > -1.0) {
            s += 0.5 * xi * xi + sin(xi);
            g[i] = xi + cos(xi);
        } else {
            double e = exp(xi + 1.0);
            s += e - xi;
            g[i] = e - 1.0;
        }
        if (s > 10.0) s -= 10.0;
    }
    return s;
}

DEFINE_REPEAT(branchy)
