/*
 * special.h -- value rules of the special functions of the op table (ops.h): log-gamma,
 * digamma and polygamma, the inverse error function, and the normal CDF and its log.
 *
 * Why our own C and not scipy's: the sweeps are C loops without the GIL, and scipy's
 * cython_special functions can only be reached from C through a table of function
 * pointers filled at import -- one more global table, for functions whose well-known
 * algorithms fit in a page.  Each is checked against 50-digit mpmath in
 * tests/unit/test_special.py; the algorithms are cited beside them.  Values at poles and
 * outside the domain follow scipy.special (see docs/linalg.md, "special functions").
 */
#ifndef FASTAD_SPECIAL_H
#define FASTAD_SPECIAL_H

#include <math.h>
#include "taylor.h"

#define FA_PI 3.14159265358979323846264338327950288
#define FA_SQRTPI_2 0.886226925452758013649083741671      /* sqrt(pi) / 2 */
#define FA_1_SQRT2PI 0.398942280401432677939946059934     /* 1 / sqrt(2 pi) */
#define FA_SQRT1_2 0.707106781186547524400844362104849
#define FA_LN_SQRT2PI 0.918938533204672741780329736406    /* log(sqrt(2 pi)) */

/* glibc's lgamma writes the global `signgam`: a data race between threads replaying
 * tapes.  lgamma_r returns the sign through a pointer instead (POSIX/glibc, declared here
 * since it hides behind feature macros). */
extern double lgamma_r(double, int *);

static inline double fa_gammaln(double x)
{
    int sign;
    if (x == -INFINITY) return -INFINITY;      /* scipy.special.gammaln(-inf) */
    return lgamma_r(x, &sign);
}

/* digamma: reflection for x < 0, the recurrence psi(x) = psi(x + 1) - 1/x up to x >= 10,
 * then the asymptotic series ln x - 1/(2x) - sum B_2k / (2k x^2k) (7 terms: < 1e-17 at
 * x = 10).  Abramowitz & Stegun 6.3.5, 6.3.7, 6.3.18. */
static inline double fa_digamma(double x)
{
    double acc = 0.0;
    if (x != x) return x;
    if (x == 0.0) return signbit(x) ? INFINITY : -INFINITY;     /* as scipy */
    if (isinf(x)) return x > 0 ? x : NAN;
    if (x < 0.0) {
        if (x == floor(x)) return NAN;
        /* psi(x) = psi(1 - x) - pi / tan(pi x); tan has period 1, so use the fraction */
        double f = x - floor(x);
        acc = f <= 0.5 ? -FA_PI / tan(FA_PI * f) : FA_PI / tan(FA_PI * (1.0 - f));
        x = 1.0 - x;
    }
    while (x < 10.0) { acc -= 1.0 / x; x += 1.0; }
    const double z = 1.0 / (x * x);
    const double series = z * (1.0 / 12 - z * (1.0 / 120 - z * (1.0 / 252 - z * (1.0 / 240
        - z * (1.0 / 132 - z * (691.0 / 32760 - z * (1.0 / 12)))))));
    return acc + log(x) - 0.5 / x - series;
}

/* polygamma(n, x) = (-1)^(n+1) n! zeta(n + 1, x) for integer n >= 1 (n = 0: digamma).
 * The Hurwitz zeta by the recurrence up to x >= n + 20, then Euler-Maclaurin with ten
 * Bernoulli terms (each term below 2e-16 of the first there).  DLMF 25.11.5, 5.15.1. */
static inline double fa_polygamma(double n, double x)
{
    static const double b2k_over_fact[10] = {   /* B_2k / (2k)! */
        1.0 / 12, -1.0 / 720, 1.0 / 30240, -1.0 / 1209600, 1.0 / 47900160,
        -691.0 / 1307674368000.0, 1.0 / 74724249600.0, -3617.0 / 10670622842880000.0,
        43867.0 / 5109094217170944000.0, -174611.0 / 802857662698291200000.0};
    if (n != n || x != x) return n + x;
    if (n < 0 || n != floor(n) || n > 10000) return NAN;    /* the recurrence is O(n) */
    if (n == 0) return fa_digamma(x);
    if (isinf(x)) return x > 0 ? 0.0 : NAN;
    const double s = n + 1.0;
    double sum = 0.0;
    while (x < n + 20.0) { sum += pow(x, -s); x += 1.0; }
    /* tail: x^(1-s)/(s-1) + x^-s/2 + sum_k B_2k/(2k)! s(s+1)..(s+2k-2) x^(-s-2k+1) */
    double xs = pow(x, -s), tail = x * xs / n + 0.5 * xs;
    double rising = s, xp = xs / x;                 /* s (s+1) .. ; x^(-s-1) */
    for (int k = 0; k < 10; k++) {
        tail += b2k_over_fact[k] * rising * xp;
        rising *= (s + 2 * k + 1) * (s + 2 * k + 2);
        xp /= x * x;
    }
    int sign;
    const double fact = exp(lgamma_r(n + 1.0, &sign));       /* n! */
    return (fmod(n, 2.0) != 0.0 ? 1.0 : -1.0) * fact * (sum + tail);
}

/* inverse error function: Giles' single-precision approximation ("Approximating the erfinv
 * function", GPU Computing Gems, 2010) refined by Halley steps on erf(x) = y, or for |y| > 0.5 by
 * Newton steps on log erfc(x) = log(1 - |y|), which stays well conditioned up to 1 - 1e-16. */
static inline double fa_erfinv(double y)
{
    if (y != y) return y;
    if (y <= -1.0 || y >= 1.0) return y == -1.0 ? -INFINITY : y == 1.0 ? INFINITY : NAN;
    if (y == 0.0) return y;
    const double ay = fabs(y);
    double w = -log((1.0 - ay) * (1.0 + ay)), p;
    if (w < 5.0) {
        w -= 2.5;
        p = 2.81022636e-08;
        p = 3.43273939e-07 + p * w; p = -3.5233877e-06 + p * w; p = -4.39150654e-06 + p * w;
        p = 0.00021858087 + p * w;  p = -0.00125372503 + p * w; p = -0.00417768164 + p * w;
        p = 0.246640727 + p * w;    p = 1.50140941 + p * w;
    } else {
        w = sqrt(w) - 3.0;
        p = -0.000200214257;
        p = 0.000100950558 + p * w; p = 0.00134934322 + p * w;  p = -0.00367342844 + p * w;
        p = 0.00573950773 + p * w;  p = -0.0076224613 + p * w;  p = 0.00943887047 + p * w;
        p = 1.00167406 + p * w;     p = 2.83297682 + p * w;
    }
    double x = p * ay;
    for (int it = 0; it < 4; it++) {
        const double fprime = 2.0 / sqrt(FA_PI) * exp(-x * x);
        if (ay <= 0.5) {                            /* Halley on erf(x) = |y| */
            const double d = (erf(x) - ay) / fprime;
            x -= d / (1.0 + x * d);
        } else {                                    /* Newton on log erfc(x) = log(1 - |y|) */
            const double e = erfc(x);                 /* (1 - |y| is exact for |y| >= 0.5) */
            x += (log(e) - log(1.0 - ay)) * e / fprime;
        }
    }
    return y < 0 ? -x : x;
}

/* standard normal CDF, through erfc so both tails keep their digits */
static inline double fa_ndtr(double x) { return 0.5 * erfc(-x * FA_SQRT1_2); }

/* log of the normal CDF: log1p of the small upper tail for x > 6, log(ndtr) down to
 * x = -20 (no underflow: ndtr(-20) ~ 3e-89), below that the asymptotic series
 * log ndtr(x) = -x^2/2 - log(-x) - log sqrt(2 pi) + log(1 - 1/x^2 + 3/x^4 - ...),
 * A&S 26.2.12 (scipy's split). */
static inline double fa_log_ndtr(double x)
{
    if (x != x) return x;
    if (x > 6.0) return log1p(-0.5 * erfc(x * FA_SQRT1_2));
    if (x > -20.0) return log(fa_ndtr(x));
    const double t = 1.0 / (x * x);
    double term = 1.0, s = 1.0;
    for (int k = 1; k < 12; k++) { term *= -(2.0 * k - 1.0) * t; s += term; }
    return -0.5 * x * x - log(-x) - FA_LN_SQRT2PI + log(s);
}

/* x log y and x log1p y with scipy's 0 at x = 0 (unless y is NaN) */
static inline double fa_xlogy(double x, double y) { return (x == 0 && y == y) ? 0.0 : x * log(y); }
static inline double fa_xlog1py(double x, double y) { return (x == 0 && y == y) ? 0.0 : x * log1p(y); }

/* ---- regularized incomplete gamma functions P(a, x), Q(a, x) = 1 - P ----------------
 * The series (x < a + 1) and Legendre's continued fraction by modified Lentz (x >= a + 1),
 * Numerical Recipes 6.2 / DLMF 8.7.1, 8.9.2, carried as dual numbers in a so the same loop
 * gives dP/da exactly (up to rounding) -- what XLA's igamma_grad_a does.  The prefactor
 * x^a e^-x / Gamma(a + 1) is formed through log1p(x/a - 1) and Stirling's series for
 * a >= 10, so its relative error stays near eps instead of a * eps. */

/* log1p(d) - d, without cancellation for small d */
static inline double fa_log1pmx(double d)
{
    if (fabs(d) > 0.25) return log1p(d) - d;
    double term = d, s = 0.0;
    for (int k = 2; k < 60; k++) {
        term *= -d;
        s += term / k;
        if (fabs(term) < 1e-18 * fabs(s)) break;
    }
    return s;
}

/* log(x^a e^-x / Gamma(a + 1)) */
static inline double fa_igam_logfac(double a, double x)
{
    int sign;
    if (a < 10.0) return a * log(x) - x - lgamma_r(a + 1.0, &sign);
    /* lgamma(a + 1) = (a + 1/2) log a - a + log sqrt(2 pi) + stirling(a), DLMF 5.11.1 */
    const double z = 1.0 / (a * a);
    const double stirling = (1.0 / 12 - z * (1.0 / 360 - z * (1.0 / 1260 - z * (1.0 / 1680
        - z * (1.0 / 1188 - z * (691.0 / 360360)))))) / a;
    return a * fa_log1pmx(x / a - 1.0) - 0.5 * log(a) - FA_LN_SQRT2PI - stirling;
}

/* the Taylor coefficients of log Gamma at x0 (g[0] = lgamma(x0), g[m] = psi^(m-1)(x0) / m!),
 * with g[0] given by the caller (who may have formed it more accurately) */
static inline void fa_lgamma_coefs(double x0, double g0, int K, double *g)
{
    double f = 1.0;
    g[0] = g0;
    for (int m = 1; m <= K; m++) { f *= m; g[m] = fa_polygamma(m - 1.0, x0) / f; }
}

/* The Taylor coefficients P[0..K] of P(a + e, x) in e (K <= FA_TK), and Q(a, x) = 1 - P
 * formed where it is accurate; scipy's values at the edges (NaN for a < 0 or x < 0).  The
 * series and the continued fraction run on truncated Taylor series in a (taylor.h). */
/* noinline: the value rules of the op table are inlined into every sweep and fused
 * kernel; this loop in Taylor arithmetic is compiled once per file instead */
static __attribute__((noinline)) void fa_igam_ty(double a, double x, int K, double *P, double *Q)
{
    for (int m = 0; m <= K; m++) P[m] = NAN;
    *Q = NAN;
    if (a != a || x != x || a < 0.0 || x < 0.0) return;
    if (x == 0.0 || isinf(x) || a == 0.0 || isinf(a)) {
        /* constant in a (the a = 0 boundary has no derivative) */
        const double p = x == 0.0 ? (a == 0.0 ? NAN : 0.0) : isinf(x) || a == 0.0 ? 1.0 : 0.0;
        P[0] = p;
        *Q = 1.0 - p;
        for (int m = 1; m <= K; m++) P[m] = a == 0.0 ? NAN : 0.0;
        return;
    }
    const fa_tyo o = ty_order(K, K, 0, 0);
    fa_ty A, logfac, t;
    double g[FA_TK + 1];
    ty_var(&o, &A, a, 0);
    /* log(x^A e^-x / Gamma(A + 1)): the value accurately, the rest from polygamma */
    fa_lgamma_coefs(a + 1.0, 0.0, K, g);
    for (int m = 1; m <= K; m++) g[m] = -g[m];
    g[0] = fa_igam_logfac(a, x);
    if (K >= 1) g[1] += log(x);
    ty_compose(&o, &A, g, &logfac);
    if (x < a + 1.0) {
        /* P = fac * sum_n x^n / ((A+1)..(A+n)) */
        fa_ty sum, q;
        ty_const(&o, &t, 1.0);
        ty_const(&o, &sum, 1.0);
        for (int n = 1; n < 100000; n++) {
            ty_const(&o, &q, x);
            fa_ty den;
            ty_copy(&o, &A, &den);
            ty_addk(&o, &den, (double)n);
            ty_div(&o, &q, &den, &q);
            ty_mul(&o, &t, &q, &t);
            ty_lin(&o, 1.0, &sum, 1.0, &t, &sum);
            int small = fabs(t.c[0][0][0]) < 1e-17 * sum.c[0][0][0];
            for (int m = 1; m <= K && small; m++) small = fabs(t.c[m][0][0]) <= 1e-17 * fabs(sum.c[m][0][0]);
            if (small) break;
        }
        ty_exp(&o, &logfac, &t);
        ty_mul(&o, &t, &sum, &t);
        for (int m = 0; m <= K; m++) P[m] = t.c[m][0][0];
        *Q = 1.0 - P[0];
        return;
    }
    /* Q = x^A e^-x / Gamma(A) * 1/(x+1-A- 1(1-A)/(x+3-A- 2(2-A)/(x+5-A- ...))), modified
     * Lentz; the tiny-denominator guards act on values only */
    const double tiny = 1e-300;
    fa_ty b, c, d, h, an, D, C, del;
    ty_lin(&o, -1.0, &A, 0.0, &A, &b);
    ty_addk(&o, &b, x + 1.0);
    ty_const(&o, &c, 1.0 / tiny);
    ty_const(&o, &d, 1.0);
    ty_div(&o, &d, &b, &d);
    ty_copy(&o, &d, &h);
    int done = 0;
    for (int i = 1; i < 100000 && !done; i++) {
        ty_lin(&o, (double)i, &A, 0.0, &A, &an);          /* -i (i - A) */
        ty_addk(&o, &an, -(double)i * i);
        ty_addk(&o, &b, 2.0);
        ty_mul(&o, &an, &d, &D);
        ty_lin(&o, 1.0, &D, 1.0, &b, &D);
        if (fabs(D.c[0][0][0]) < tiny) D.c[0][0][0] = tiny;
        ty_const(&o, &d, 1.0);
        ty_div(&o, &d, &D, &d);
        ty_div(&o, &an, &c, &C);
        ty_lin(&o, 1.0, &C, 1.0, &b, &C);
        if (fabs(C.c[0][0][0]) < tiny) C.c[0][0][0] = tiny;
        ty_copy(&o, &C, &c);
        ty_mul(&o, &d, &c, &del);
        ty_mul(&o, &h, &del, &h);
        done = fabs(del.c[0][0][0] - 1.0) < 1e-16;
        for (int m = 1; m <= K && done; m++) done = fabs(del.c[m][0][0]) < 1e-16;
    }
    if (!done) return;
    ty_exp(&o, &logfac, &t);
    ty_mul(&o, &t, &A, &t);                                 /* Gamma(A) = Gamma(A + 1) / A */
    ty_mul(&o, &t, &h, &t);
    *Q = t.c[0][0][0];
    P[0] = 1.0 - *Q;
    for (int m = 1; m <= K; m++) P[m] = -t.c[m][0][0];
}

/* P(a, x), Q(a, x) and dP/da */
static inline void fa_igam(double a, double x, double *P, double *Q, double *dPda)
{
    double c[2];
    fa_igam_ty(a, x, 1, c, Q);
    *P = c[0];
    *dPda = c[1];
}

/* the n-th derivative of P(a, x) in a, n <= FA_TK */
static inline double fa_gammainc_dan(double a, double x, int n)
{
    double c[FA_TK + 1], Q;
    fa_igam_ty(a, x, n, c, &Q);
    fa_ty z;
    z.c[n][0][0] = c[n];
    return ty_deriv(&z, n, 0, 0);
}

static inline double fa_gammainc(double a, double x) { double P, Q, d; fa_igam(a, x, &P, &Q, &d); return P; }
static inline double fa_gammaincc(double a, double x) { double P, Q, d; fa_igam(a, x, &P, &Q, &d); return Q; }
static inline double fa_gammainc_da(double a, double x) { double P, Q, d; fa_igam(a, x, &P, &Q, &d); return d; }
static inline double fa_gammainc_da2(double a, double x) { return fa_gammainc_dan(a, x, 2); }
static inline double fa_gammainc_da3(double a, double x) { return fa_gammainc_dan(a, x, 3); }

/* dP/dx = x^(a-1) e^-x / Gamma(a) */
static inline double fa_gammainc_dx(double a, double x)
{
    if (a != a || x != x || a <= 0.0 || x < 0.0) return NAN;
    if (x == 0.0) return a > 1.0 ? 0.0 : a == 1.0 ? 1.0 : INFINITY;
    if (isinf(x)) return 0.0;
    return a / x * exp(fa_igam_logfac(a, x));
}

#endif /* FASTAD_SPECIAL_H */
