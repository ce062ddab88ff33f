/*
 * linalg_betainc.h -- the BETAINC record: the regularized incomplete beta function
 * I_x(a, b) and its derivatives, elementwise over n points (docs/linalg.md).  Included
 * by linalg.c (it shares the record plumbing of the linear-algebra records: three
 * operands do not fit the op table's unary and binary lines).
 *
 *   BETAINC   a: a and b (2n slots: a[0..n), then b[0..n)), b: x (n slots);  EXT n, 1,
 *             variant = i | j << 3 | l << 6 | FA_BETAINC_COMPL:
 *             the value d^(i+j+l) I / da^i db^j dx^l (of 1 - I with the complement flag)
 *             results: value (n), its partials in a, b, x (n each), info (1, always 0)
 *
 * A record of variant (i, j, l) stores the three partials its reverse sweep needs; its
 * recorded adjoint (linalg_emit.h) is made of the records of variants (i+1, j, l),
 * (i, j+1, l), (i, j, l+1), so derivatives of every order nest.  All of them come from
 * one Taylor expansion of I in (a, b, x) (taylor.h), exact to the algorithm's accuracy up
 * to total order FA_TK; a record whose partials would need more is given NaN partials.
 *
 * Value: the continued fraction of DLMF 8.17.22 by modified Lentz (Numerical Recipes
 * 6.4, betacf), for x < (a+1)/(a+b+2), else 1 - I_{1-x}(b, a), times the prefactor
 * x^a (1-x)^b / (a B(a, b)) formed in logs.  x-derivatives: dI/dx = x^(a-1) (1-x)^(b-1)
 * / B(a, b), expanded in (a, b, x) in closed form.  Edges as scipy: I = 0 at x = 0 and 1
 * at x = 1 (constant in a, b there), NaN outside 0 <= x <= 1 or for negative a, b; a = 0
 * or b = 0 give scipy's values with NaN derivatives.
 */
#include "taylor.h"
#include "special.h"

static int64_t betainc_nres(int64_t n) { return 4 * n + 1; }

/* log Beta(A, B) of two Taylor values */
static void ty_betaln(const fa_tyo *o, const fa_ty *A, const fa_ty *B, fa_ty *z)
{
    double g[FA_TK + 1];
    int sign;
    fa_ty s, ga, gb;
    const double a = A->c[0][0][0], b = B->c[0][0][0];
    fa_lgamma_coefs(a, lgamma_r(a, &sign), o->K, g);
    ty_compose(o, A, g, &ga);
    fa_lgamma_coefs(b, lgamma_r(b, &sign), o->K, g);
    ty_compose(o, B, g, &gb);
    ty_lin(o, 1.0, A, 1.0, B, &s);
    fa_lgamma_coefs(a + b, lgamma_r(a + b, &sign), o->K, g);
    ty_compose(o, &s, g, &s);
    ty_lin(o, 1.0, &ga, 1.0, &gb, z);
    ty_lin(o, 1.0, z, -1.0, &s, z);
}

/* log of a Taylor value whose constant term's log is given (formed accurately) */
static void ty_log_at(const fa_tyo *o, const fa_ty *x, double logx0, fa_ty *z)
{
    double g[FA_TK + 1], p = 1.0;
    const double x0 = x->c[0][0][0];
    g[0] = logx0;
    for (int m = 1; m <= o->K; m++) { p /= x0; g[m] = (m % 2 ? 1.0 : -1.0) * p / m; }
    ty_compose(o, x, g, z);
}

/* I_xx(aa, bb) for xx < (aa+1)/(aa+bb+2) as a Taylor value in (a, b); 0 if the
 * continued fraction did not converge (then *J is left NaN) */
static int betacf_ty(const fa_tyo *o, const fa_ty *aa, const fa_ty *bb, double xx, fa_ty *J)
{
    const double tiny = 1e-300;
    fa_ty qab, pre, t, c, d, h, an, num, den, del;
    ty_lin(o, 1.0, aa, 1.0, bb, &qab);
    /* log prefactor: aa log xx + bb log1p(-xx) - log aa - log B(aa, bb) */
    ty_lin(o, log(xx), aa, log1p(-xx), bb, &pre);
    ty_log(o, aa, &t);
    ty_lin(o, 1.0, &pre, -1.0, &t, &pre);
    ty_betaln(o, aa, bb, &t);
    ty_lin(o, 1.0, &pre, -1.0, &t, &pre);
    /* d = 1 - qab xx / (aa + 1) */
    ty_lin(o, -xx, &qab, 0.0, &qab, &num);
    ty_copy(o, aa, &den);
    ty_addk(o, &den, 1.0);
    ty_div(o, &num, &den, &d);
    ty_addk(o, &d, 1.0);
    if (fabs(d.c[0][0][0]) < tiny) d.c[0][0][0] = tiny;
    ty_const(o, &t, 1.0);
    ty_div(o, &t, &d, &d);
    ty_const(o, &c, 1.0);
    ty_const(o, &del, 1.0);
    ty_copy(o, &d, &h);
    for (int m = 1; m < 20000; m++) {
        for (int half = 0; half < 2; half++) {
            if (!half) {    /* m (bb - m) xx / ((aa + 2m - 1)(aa + 2m)) */
                ty_copy(o, bb, &num);
                ty_addk(o, &num, -(double)m);
                ty_scale(o, &num, m * xx);
                ty_copy(o, aa, &den);
                ty_addk(o, &den, 2.0 * m - 1.0);
                ty_copy(o, aa, &t);
                ty_addk(o, &t, 2.0 * m);
                ty_mul(o, &den, &t, &den);
            } else {        /* -(aa + m)(qab + m) xx / ((aa + 2m)(aa + 2m + 1)) */
                ty_copy(o, aa, &num);
                ty_addk(o, &num, (double)m);
                ty_copy(o, &qab, &t);
                ty_addk(o, &t, (double)m);
                ty_mul(o, &num, &t, &num);
                ty_scale(o, &num, -xx);
                ty_copy(o, aa, &den);
                ty_addk(o, &den, 2.0 * m);
                ty_copy(o, aa, &t);
                ty_addk(o, &t, 2.0 * m + 1.0);
                ty_mul(o, &den, &t, &den);
            }
            ty_div(o, &num, &den, &an);
            ty_mul(o, &an, &d, &d);                     /* d = 1 / (1 + an d) */
            ty_addk(o, &d, 1.0);
            if (fabs(d.c[0][0][0]) < tiny) d.c[0][0][0] = tiny;
            ty_const(o, &t, 1.0);
            ty_div(o, &t, &d, &d);
            ty_div(o, &an, &c, &c);                     /* c = 1 + an / c */
            ty_addk(o, &c, 1.0);
            if (fabs(c.c[0][0][0]) < tiny) c.c[0][0][0] = tiny;
            ty_mul(o, &d, &c, &del);
            ty_mul(o, &h, &del, &h);
        }
        int done = fabs(del.c[0][0][0] - 1.0) < 1e-15;
        TY_FOR(o, i, j, l) if ((i | j | l) && fabs(del.c[i][j][l]) >= 1e-15) done = 0;
        if (done) {
            ty_exp(o, &pre, &t);
            ty_mul(o, &t, &h, J);
            return 1;
        }
    }
    return 0;
}

/* The Taylor expansion of I_x(a, b) in (a, b, x) within the order o (o->K <= FA_TK), and
 * the complement 1 - I formed where it is accurate.  Returns 0 where every coefficient
 * is NaN (outside the domain, or no convergence). */
static int betainc_ty(double a, double b, double x, const fa_tyo *o, fa_ty *I, double *compl_)
{
    TY_FOR(o, i, j, l) I->c[i][j][l] = NAN;
    *compl_ = NAN;
    if (a != a || b != b || x != x || a < 0.0 || b < 0.0 || x < 0.0 || x > 1.0) return 0;
    if (a == 0.0 || b == 0.0 || isinf(a) || isinf(b)) {     /* scipy's values, no derivative */
        double v = a == 0.0 && b == 0.0 ? NAN : a == 0.0 ? 1.0 : b == 0.0 ? 0.0
                 : isinf(a) && isinf(b) ? NAN : isinf(a) ? (x == 1.0) : (x > 0.0);
        I->c[0][0][0] = v;
        *compl_ = 1.0 - v;
        return 1;
    }
    const fa_tyo o2 = ty_order(o->K, o->m[0], o->m[1], 0);    /* the (a, b) part */
    if (x == 0.0 || x == 1.0) {
        ty_const(&o2, I, x);
        *compl_ = 1.0 - x;
    } else {
        fa_ty A, B, J;
        const int swap = x > (a + 1.0) / (a + b + 2.0);
        ty_var(&o2, &A, a, 0);
        ty_var(&o2, &B, b, 1);
        if (!betacf_ty(&o2, swap ? &B : &A, swap ? &A : &B, swap ? 1.0 - x : x, &J)) return 0;
        if (swap) {
            *compl_ = J.c[0][0][0];
            ty_lin(&o2, -1.0, &J, 0.0, &J, I);
            I->c[0][0][0] = 1.0 - J.c[0][0][0];
        } else {
            ty_copy(&o2, &J, I);
            *compl_ = 1.0 - J.c[0][0][0];
        }
    }
    if (o->K < 1 || o->m[2] < 1) return 1;
    /* dI/dx = exp((A-1) log X + (B-1) log1p(-X) - log B(A, B)), X = x + e2, expanded to
     * one order less; I's coefficient (i, j, l+1) is its (i, j, l) over l + 1 */
    const fa_tyo ox = ty_order(o->K - 1, o->m[0], o->m[1], o->m[2] - 1);
    fa_ty A, B, X, Y, lx, ly, f, t;
    if (x == 0.0 || x == 1.0) {
        /* the first x-derivative is its one-sided limit (0 log 0 = 0 at a = 1 or b = 1);
         * its own derivatives are not expanded at the edge: NaN */
        int sign;
        const double la = a == 1.0 ? 0.0 : (a - 1.0) * log(x);
        const double lb = b == 1.0 ? 0.0 : (b - 1.0) * log1p(-x);
        TY_FOR(&ox, i, j, l) I->c[i][j][l + 1] = NAN;
        I->c[0][0][1] = exp(la + lb - lgamma_r(a, &sign) - lgamma_r(b, &sign)
                            + lgamma_r(a + b, &sign));
        return 1;
    }
    ty_var(&ox, &A, a, 0);
    ty_var(&ox, &B, b, 1);
    ty_var(&ox, &X, x, 2);
    ty_lin(&ox, -1.0, &X, 0.0, &X, &Y);
    ty_addk(&ox, &Y, 1.0);
    ty_log_at(&ox, &X, log(x), &lx);
    ty_log_at(&ox, &Y, log1p(-x), &ly);
    ty_addk(&ox, &A, -1.0);
    ty_addk(&ox, &B, -1.0);
    ty_mul(&ox, &A, &lx, &f);
    ty_mul(&ox, &B, &ly, &t);
    ty_lin(&ox, 1.0, &f, 1.0, &t, &f);
    ty_addk(&ox, &A, 1.0);
    ty_addk(&ox, &B, 1.0);
    ty_betaln(&ox, &A, &B, &t);
    ty_lin(&ox, 1.0, &f, -1.0, &t, &f);
    ty_exp(&ox, &f, &f);
    TY_FOR(&ox, i, j, l) I->c[i][j][l + 1] = f.c[i][j][l] / (l + 1);
    return 1;
}

/* the derivative (i, j, l) of I (or of 1 - I) from its expansion */
static double betainc_pick(const fa_ty *I, double compl_, int i, int j, int l, int complement)
{
    if (!complement) return ty_deriv(I, i, j, l);
    return (i | j | l) ? -ty_deriv(I, i, j, l) : compl_;
}

static void betainc_variant(int variant, int *i, int *j, int *l, int *complement)
{
    *i = variant & 7;
    *j = (variant >> 3) & 7;
    *l = (variant >> 6) & 7;
    *complement = (variant & FA_BETAINC_COMPL) != 0;
}

static int fwd_betainc(const fa_rec *p, double *v)
{
    const int64_t n = p[1].r;
    int i, j, l, cm;
    betainc_variant(p[1].b, &i, &j, &l, &cm);
    const int K = i + j + l + 1;
    const fa_tyo o = ty_order(K, i + 1, j + 1, l + 1);    /* ty_order caps K at FA_TK */
    double *r = v + p->r;
    const double *ab = v + p->a, *x = v + p->b;
    if (K - 1 > FA_TK) {        /* beyond the expansion (linalg_emit.h never records it) */
        for (int64_t k = 0; k < 4 * n; k++) r[k] = NAN;
        r[4 * n] = 0.0;
        return 0;
    }
    for (int64_t k = 0; k < n; k++) {
        fa_ty I;
        double c;
        betainc_ty(ab[k], ab[n + k], x[k], &o, &I, &c);
        r[k] = betainc_pick(&I, c, i, j, l, cm);
        if (K > FA_TK) {        /* beyond the expansion: no partials, never wrong ones */
            r[n + k] = r[2 * n + k] = r[3 * n + k] = NAN;
            continue;
        }
        r[n + k] = betainc_pick(&I, c, i + 1, j, l, cm);
        r[2 * n + k] = betainc_pick(&I, c, i, j + 1, l, cm);
        r[3 * n + k] = betainc_pick(&I, c, i, j, l + 1, cm);
    }
    r[4 * n] = 0.0;
    return 0;
}

static double az(double t, double d) { return t == 0.0 ? 0.0 : t * d; }

static void tan_betainc(const fa_rec *p, const double *v, double *t)
{
    const int64_t n = p[1].r;
    const double *r = v + p->r;
    for (int64_t k = 0; k < n; k++)
        t[p->r + k] = az(t[p->a + k], r[n + k]) + az(t[p->a + n + k], r[2 * n + k])
                      + az(t[p->b + k], r[3 * n + k]);
    /* the stored partials are read by the reverse sweep only; no tangent flows from them */
    for (int64_t k = n; k <= 4 * n; k++) t[p->r + k] = 0.0;
}

static void rev_betainc(const fa_rec *p, const double *v, double *g)
{
    const int64_t n = p[1].r;
    const double *r = v + p->r, *w = g + p->r;
    if (!(p->flags & FA_A_PASSIVE))
        for (int64_t k = 0; k < n; k++) {
            g[p->a + k] += az(w[k], r[n + k]);
            g[p->a + n + k] += az(w[k], r[2 * n + k]);
        }
    if (!(p->flags & FA_B_PASSIVE))
        for (int64_t k = 0; k < n; k++) g[p->b + k] += az(w[k], r[3 * n + k]);
}
