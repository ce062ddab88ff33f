/* Damped spring, explicit Euler, loss = sum over steps of x^2.
 * x: (k, c, x0, v0); n: number of steps; g: d loss / d (k, c, x0, v0). */
#include <stdlib.h>
#include "common.h"

#define DT 0.01

NOINLINE double spring_vg(const double *p, long n, double *g) {
    double k = p[0], c = p[1], x = p[2], v = p[3], loss = 0.0;
    double stack_x[1025], stack_v[1025];
    double *xs = stack_x, *vs = stack_v;
    if (n + 1 > 1025) {
        xs = malloc(sizeof(double) * (size_t)(n + 1));
        vs = malloc(sizeof(double) * (size_t)(n + 1));
    }
    xs[0] = x;
    vs[0] = v;
    for (long i = 0; i < n; ++i) {
        double a = -k * x - c * v;
        x = x + DT * v;
        v = v + DT * a;
        loss += x * x;
        xs[i + 1] = x;
        vs[i + 1] = v;
    }
    double xb = 2.0 * xs[n], vb = 0.0, kb = 0.0, cb = 0.0;
    for (long i = n - 1; i >= 0; --i) {
        double xi = xs[i], vi = vs[i];
        kb -= vb * DT * xi;
        cb -= vb * DT * vi;
        double nxb = xb - vb * DT * k;
        double nvb = xb * DT + vb * (1.0 - DT * c);
        xb = nxb;
        vb = nvb;
        if (i >= 1) xb += 2.0 * xi;
    }
    g[0] = kb;
    g[1] = cb;
    g[2] = xb;
    g[3] = vb;
    if (xs != stack_x) {
        free(xs);
        free(vs);
    }
    return loss;
}

DEFINE_REPEAT(spring)
