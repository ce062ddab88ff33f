/*
 * taylor.h -- truncated multivariate Taylor arithmetic, for the derivatives of the special
 * functions whose parameters have no closed-form derivative (the incomplete gamma
 * function in a, the incomplete beta function in a and b; docs/linalg.md).
 *
 * A value is the polynomial sum c[i][j][l] e0^i e1^j e2^l of up to three perturbations,
 * truncated at total order o->K and at order o->m[v] in variable v (so one type serves
 * one, two or three variables).  Running an algorithm -- a series, a continued fraction
 * -- on such values instead of doubles gives the Taylor coefficients of its result: the
 * derivative of order (i, j, l) is i! j! l! c[i][j][l], to the algorithm's own accuracy
 * (the technique of XLA's igamma_grad_a, taken to higher orders).
 *
 * Only coefficients inside the truncation are read or written; nothing here allocates.
 */
#ifndef FASTAD_TAYLOR_H
#define FASTAD_TAYLOR_H

#include <math.h>

#define FA_TK 4                    /* highest total order any caller asks for */

typedef struct { double c[FA_TK + 1][FA_TK + 1][FA_TK + 1]; } fa_ty;
typedef struct { int K, m[3]; } fa_tyo;   /* total order, and each variable's own cap */

/* every kept multi-index (i, j, l) in lexicographic order: componentwise-smaller
 * indices come first, which ty_div relies on */
#define TY_FOR(o, i, j, l)                                                            \
    for (int i = 0; i == 0 || (i <= (o)->K && i <= (o)->m[0]); i++)                   \
        for (int j = 0; j == 0 || (i + j <= (o)->K && j <= (o)->m[1]); j++)           \
            for (int l = 0; l == 0 || (i + j + l <= (o)->K && l <= (o)->m[2]); l++)

static inline fa_tyo ty_order(int K, int m0, int m1, int m2)
{
    fa_tyo o = {K < FA_TK ? K : FA_TK, {m0, m1, m2}};
    return o;
}

/* z = x, the kept coefficients only (a whole fa_ty is 1 KB) */
static inline void ty_copy(const fa_tyo *o, const fa_ty *x, fa_ty *z)
{
    TY_FOR(o, i, j, l) z->c[i][j][l] = x->c[i][j][l];
}

static inline void ty_const(const fa_tyo *o, fa_ty *z, double v)
{
    TY_FOR(o, i, j, l) z->c[i][j][l] = 0.0;
    z->c[0][0][0] = v;
}

/* v + e_which: the value v perturbed in variable `which` */
static inline void ty_var(const fa_tyo *o, fa_ty *z, double v, int which)
{
    ty_const(o, z, v);
    if (o->K >= 1 && o->m[which] >= 1) {
        if (which == 0) z->c[1][0][0] = 1.0;
        else if (which == 1) z->c[0][1][0] = 1.0;
        else z->c[0][0][1] = 1.0;
    }
}

/* z = s x + t y (z may be x or y) */
static inline void ty_lin(const fa_tyo *o, double s, const fa_ty *x, double t, const fa_ty *y, fa_ty *z)
{
    TY_FOR(o, i, j, l) z->c[i][j][l] = s * x->c[i][j][l] + t * y->c[i][j][l];
}

static inline void ty_addk(const fa_tyo *o, fa_ty *z, double k) { (void)o; z->c[0][0][0] += k; }

static inline void ty_scale(const fa_tyo *o, fa_ty *z, double k)
{
    TY_FOR(o, i, j, l) z->c[i][j][l] *= k;
}

/* z = x y (z may alias x or y) */
static inline void ty_mul(const fa_tyo *o, const fa_ty *x, const fa_ty *y, fa_ty *z)
{
    fa_ty w;
    TY_FOR(o, i, j, l) {
        double s = 0.0;
        for (int p = 0; p <= i; p++)
            for (int q = 0; q <= j; q++)
                for (int r = 0; r <= l; r++) s += x->c[p][q][r] * y->c[i - p][j - q][l - r];
        w.c[i][j][l] = s;
    }
    TY_FOR(o, i, j, l) z->c[i][j][l] = w.c[i][j][l];
}

/* z = x / y (z may alias x or y): each coefficient from the ones before it */
static inline void ty_div(const fa_tyo *o, const fa_ty *x, const fa_ty *y, fa_ty *z)
{
    fa_ty w;
    const double y0 = y->c[0][0][0];
    TY_FOR(o, i, j, l) {
        double s = x->c[i][j][l];
        for (int p = 0; p <= i; p++)
            for (int q = 0; q <= j; q++)
                for (int r = 0; r <= l; r++)
                    if (p | q | r) s -= y->c[p][q][r] * w.c[i - p][j - q][l - r];
        w.c[i][j][l] = s / y0;
    }
    TY_FOR(o, i, j, l) z->c[i][j][l] = w.c[i][j][l];
}

/* z = sum_m g[m] (x - x0)^m, m <= K: a function with Taylor coefficients g at x0 applied
 * to x (Horner's rule in the perturbation; z may alias x) */
static inline void ty_compose(const fa_tyo *o, const fa_ty *x, const double *g, fa_ty *z)
{
    fa_ty N, acc;
    ty_copy(o, x, &N);
    N.c[0][0][0] = 0.0;
    ty_const(o, &acc, g[o->K]);
    for (int m = o->K - 1; m >= 0; m--) {
        ty_mul(o, &acc, &N, &acc);
        ty_addk(o, &acc, g[m]);
    }
    ty_copy(o, &acc, z);
}

static inline void ty_exp(const fa_tyo *o, const fa_ty *x, fa_ty *z)
{
    double g[FA_TK + 1], f = 1.0;
    const double e = exp(x->c[0][0][0]);
    for (int m = 0; m <= o->K; m++) { g[m] = e / f; f *= m + 1; }
    ty_compose(o, x, g, z);
}

static inline void ty_log(const fa_tyo *o, const fa_ty *x, fa_ty *z)
{
    double g[FA_TK + 1], p = 1.0;
    const double x0 = x->c[0][0][0];
    g[0] = log(x0);
    for (int m = 1; m <= o->K; m++) { p /= x0; g[m] = (m % 2 ? 1.0 : -1.0) * p / m; }
    ty_compose(o, x, g, z);
}

/* the derivative of order (i, j, l) from the coefficient: i! j! l! c */
static inline double ty_deriv(const fa_ty *x, int i, int j, int l)
{
    static const double fact[FA_TK + 2] = {1, 1, 2, 6, 24, 120};
    return fact[i] * fact[j] * fact[l] * x->c[i][j][l];
}

#endif /* FASTAD_TAYLOR_H */
