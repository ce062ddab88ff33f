/*
 * ops.h -- the one table of fastad's operations.
 *
 * Every elementwise op is one line: its code, its numpy name, its arity, its value rule
 * and its partial derivatives with respect to each operand.  The op enumeration, the
 * recording-time evaluator, the three sweeps (sweeps.h) and the Python-level dispatch
 * (numpy ufunc -> op code, fastad.sin & co.) are all generated from these lists, so
 * adding an op is one edit here.  Recording evaluates a new record with the same forward
 * kernel that replays it, so a value rule exists exactly once.
 *
 * Ops whose name starts with "_" are internal building blocks (selects, array comparisons):
 * the tracer uses them, users do not see them as functions.
 *
 * In the rules, `a` and `b` are the operand values and `r` is the result value (the
 * sweeps have it, so rules like exp' = r cost nothing extra).
 *
 * Kink conventions follow JAX: abs'(0) = 1, maximum/minimum split a tie 0.5/0.5,
 * sqrt'(0) = inf, d/db a**b at a == 0 is 0, d/da a**0 is 0, and sign/floor/ceil/rint
 * have derivative 0.  fmax/fmin ignore a NaN operand, and so does their derivative.
 */
#ifndef FASTAD_OPS_H
#define FASTAD_OPS_H

#include <math.h>
#include "special.h"

#define FA_LN2 0.693147180559945309417232121458176568
#define FA_LN10 2.30258509299404568401799145468436421
#define FA_2_SQRTPI 1.12837916709551257389615890312154517

/* Helpers for value rules that do not fit one expression. */
static inline double fa_sign(double a) { return a > 0 ? 1.0 : a < 0 ? -1.0 : a == 0 ? 0.0 : a; }
static inline double fa_max(double a, double b) { return (a >= b || a != a) ? a : b; }
static inline double fa_min(double a, double b) { return (a <= b || a != a) ? a : b; }
/* share of a tie: 1 if a wins, 0.5 on a tie, 0 if b wins */
static inline double fa_gt_share(double a, double b) { return a > b ? 1.0 : a == b ? 0.5 : 0.0; }
static inline double fa_fmax_da(double a, double b) { return b != b ? 1.0 : a != a ? 0.0 : fa_gt_share(a, b); }
static inline double fa_logaddexp(double a, double b) {
    if (a == b) return a + FA_LN2;          /* also right for a = b = +-inf */
    double m = a > b ? a : b, d = a > b ? b - a : a - b;
    return d != d ? d : m + log1p(exp(d));  /* NaN stays NaN */
}
/* numpy's npy_divmod: the floor quotient and Python-style remainder of a / b, rounded the
 * way numpy rounds them (fmod first, then the quotient snapped to an integer) */
static inline double fa_divmod(double a, double b, double *mod) {
    double m = fmod(a, b), div, fl;
    if (!b) { *mod = m; return a / b; }
    div = (a - m) / b;
    if (m) { if ((b < 0) != (m < 0)) { m += b; div -= 1.0; } }
    else m = copysign(0.0, b);
    if (div) { fl = floor(div); if (div - fl > 0.5) fl += 1.0; }
    else fl = copysign(0.0, a / b);
    *mod = m;
    return fl;
}
static inline double fa_remainder(double a, double b) { double m; fa_divmod(a, b, &m); return m; }
static inline double fa_floor_divide(double a, double b) { double m; return fa_divmod(a, b, &m); }
static inline double fa_expit(double a) {
    /* numerically stable logistic: never exp of a large positive number */
    if (a >= 0) return 1.0 / (1.0 + exp(-a));
    double e = exp(a);
    return e / (1.0 + e);
}

/*
 * The partial derivatives are written in a small language of ops, D_*, so that one rule
 * has two readings: here, plain C arithmetic (what the sweeps compute), and in emit.c,
 * records appended to a tape (the derivative computation recorded as a tape, which is how
 * fastad takes derivatives of derivatives).  Every D_ op is itself an op of this table.
 */
#ifndef FA_DSL_EMIT
#define D_K(c)           (c)
#define D_ADD(x, y)      ((x) + (y))
#define D_SUB(x, y)      ((x) - (y))
#define D_MUL(x, y)      ((x) * (y))
#define D_DIV(x, y)      ((x) / (y))
#define D_NEG(x)         (-(x))
#define D_RECIP(x)       (1.0 / (x))
#define D_SQRT(x)        sqrt(x)
#define D_EXP(x)         exp(x)
#define D_LOG(x)         log(x)
#define D_SIN(x)         sin(x)
#define D_COS(x)         cos(x)
#define D_SINH(x)        sinh(x)
#define D_COSH(x)        cosh(x)
#define D_HYPOT(x, y)    hypot(x, y)
#define D_POW(x, y)      pow(x, y)
#define D_EQ(x, y)       ((x) == (y) ? 1.0 : 0.0)
#define D_NE(x, y)       ((x) != (y) ? 1.0 : 0.0)
#define D_SELNOT(c, x)   ((c) != 0 ? 0.0 : (x))
#define D_SIGNPOS(x)     ((x) >= 0 ? 1.0 : -1.0)
#define D_GTSHARE(x, y)  fa_gt_share(x, y)
#define D_FMAXDA(x, y)   fa_fmax_da(x, y)
#define D_LOG1P(x)       log1p(x)
#define D_POLYGAMMA(n, x) fa_polygamma(n, x)
#define D_GAMMAINC_DA(a, x) fa_gammainc_da(a, x)
#define D_GAMMAINC_DX(a, x) fa_gammainc_dx(a, x)
#define D_GAMMAINC_DA2(a, x) fa_gammainc_da2(a, x)
#define D_GAMMAINC_DA3(a, x) fa_gammainc_da3(a, x)
#endif

#define D_0 D_K(0.0)
#define D_1 D_K(1.0)

/* X(NAME, "numpy_name", value, d/da)  -- a is the operand, r the result */
#define FA_UNARY_OPS(X)                                                                    \
    X(NEGATIVE,   "negative",   -a,          D_K(-1.0))                                    \
    X(SQUARE,     "square",     a * a,       D_MUL(D_K(2.0), a))                           \
    X(SQRT,       "sqrt",       sqrt(a),     D_DIV(D_K(0.5), r))                           \
    X(CBRT,       "cbrt",       cbrt(a),     D_RECIP(D_MUL(D_K(3.0), D_MUL(r, r))))        \
    X(RECIPROCAL, "reciprocal", 1.0 / a,     D_NEG(D_MUL(r, r)))                           \
    X(EXP,        "exp",        exp(a),      r)                                            \
    X(EXP2,       "exp2",       exp2(a),     D_MUL(r, D_K(FA_LN2)))                        \
    X(EXPM1,      "expm1",      expm1(a),    D_EXP(a))                                     \
    X(LOG,        "log",        log(a),      D_RECIP(a))                                   \
    X(LOG2,       "log2",       log2(a),     D_RECIP(D_MUL(a, D_K(FA_LN2))))               \
    X(LOG10,      "log10",      log10(a),    D_RECIP(D_MUL(a, D_K(FA_LN10))))              \
    X(LOG1P,      "log1p",      log1p(a),    D_RECIP(D_ADD(D_1, a)))                       \
    X(SIN,        "sin",        sin(a),      D_COS(a))                                     \
    X(COS,        "cos",        cos(a),      D_NEG(D_SIN(a)))                              \
    X(TAN,        "tan",        tan(a),      D_ADD(D_1, D_MUL(r, r)))                      \
    X(ARCSIN,     "arcsin",     asin(a),     D_RECIP(D_SQRT(D_MUL(D_SUB(D_1, a), D_ADD(D_1, a))))) \
    X(ARCCOS,     "arccos",     acos(a),     D_NEG(D_RECIP(D_SQRT(D_MUL(D_SUB(D_1, a), D_ADD(D_1, a)))))) \
    X(ARCTAN,     "arctan",     atan(a),     D_RECIP(D_ADD(D_1, D_MUL(a, a))))             \
    X(SINH,       "sinh",       sinh(a),     D_COSH(a))                                    \
    X(COSH,       "cosh",       cosh(a),     D_SINH(a))                                    \
    X(TANH,       "tanh",       tanh(a),     D_SUB(D_1, D_MUL(r, r)))                      \
    X(ARCSINH,    "arcsinh",    asinh(a),    D_RECIP(D_HYPOT(a, D_1)))                     \
    X(ARCCOSH,    "arccosh",    acosh(a),    D_RECIP(D_SQRT(D_MUL(D_SUB(a, D_1), D_ADD(a, D_1))))) \
    X(ARCTANH,    "arctanh",    atanh(a),    D_RECIP(D_MUL(D_SUB(D_1, a), D_ADD(D_1, a)))) \
    X(ABSOLUTE,   "absolute",   fabs(a),     D_SIGNPOS(a))                                 \
    X(SIGN,       "sign",       fa_sign(a),  D_0)                                          \
    X(FLOOR,      "floor",      floor(a),    D_0)                                          \
    X(CEIL,       "ceil",       ceil(a),     D_0)                                          \
    X(RINT,       "rint",       nearbyint(a), D_0)                                         \
    X(TRUNC,      "trunc",      trunc(a),    D_0)       /* int(x), astype(int), fmod */   \
    X(ERF,        "erf",        erf(a),      D_MUL(D_K(FA_2_SQRTPI), D_EXP(D_NEG(D_MUL(a, a))))) \
    X(ERFC,       "erfc",       erfc(a),     D_MUL(D_K(-FA_2_SQRTPI), D_EXP(D_NEG(D_MUL(a, a))))) \
    X(EXPIT,      "expit",      fa_expit(a), D_MUL(r, D_SUB(D_1, r)))                      \
    X(LOGIT,      "logit",      log(a / (1.0 - a)), D_RECIP(D_MUL(a, D_SUB(D_1, a))))      \
    /* scipy.special (csrc/special.h): psi^(n) is polygamma(n, .) */                      \
    X(GAMMALN,    "gammaln",    fa_gammaln(a), D_POLYGAMMA(D_0, a))                        \
    X(DIGAMMA,    "digamma",    fa_digamma(a), D_POLYGAMMA(D_1, a))                        \
    X(ERFINV,     "erfinv",     fa_erfinv(a),  D_MUL(D_K(FA_SQRTPI_2), D_EXP(D_MUL(r, r)))) \
    X(NDTR,       "ndtr",       fa_ndtr(a),                                                \
      D_MUL(D_K(FA_1_SQRT2PI), D_EXP(D_MUL(D_K(-0.5), D_MUL(a, a)))))                      \
    X(LOG_NDTR,   "log_ndtr",   fa_log_ndtr(a),                                            \
      D_MUL(D_K(FA_1_SQRT2PI), D_EXP(D_SUB(D_MUL(D_K(-0.5), D_MUL(a, a)), r))))            \
    /* internal: the identity (a fresh variable for nested derivatives), stop_gradient, and
     * abs's slope */ \
    X(COPY,       "_copy",      a,           D_1)                                          \
    X(STOP,       "_stop",      a,           D_0)       /* stop_gradient */               \
    X(SIGNPOS,    "_signpos",   a >= 0 ? 1.0 : -1.0, D_0)

/* X(NAME, "numpy_name", value, d/da, d/db) -- a, b are the operands, r the result */
#define FA_BINARY_OPS(X)                                                                   \
    X(ADD,      "add",      a + b,        D_1,                 D_1)                        \
    X(SUBTRACT, "subtract", a - b,        D_1,                 D_K(-1.0))                  \
    X(MULTIPLY, "multiply", a * b,        b,                   a)                          \
    X(DIVIDE,   "divide",   a / b,        D_RECIP(b),          D_NEG(D_DIV(r, b)))         \
    X(POWER,    "power",    pow(a, b),                                                     \
      D_SELNOT(D_EQ(b, D_0), D_MUL(b, D_POW(a, D_SUB(b, D_1)))),                           \
      D_SELNOT(D_EQ(a, D_0), D_MUL(r, D_LOG(a))))                                          \
    X(ARCTAN2,  "arctan2",  atan2(a, b),                                                   \
      D_DIV(b, D_ADD(D_MUL(a, a), D_MUL(b, b))),                                           \
      D_NEG(D_DIV(a, D_ADD(D_MUL(a, a), D_MUL(b, b)))))                                    \
    X(HYPOT,    "hypot",    hypot(a, b),                                                   \
      D_SELNOT(D_EQ(r, D_0), D_DIV(a, r)), D_SELNOT(D_EQ(r, D_0), D_DIV(b, r)))            \
    X(MAXIMUM,  "maximum",  fa_max(a, b), D_GTSHARE(a, b),     D_GTSHARE(b, a))            \
    X(MINIMUM,  "minimum",  fa_min(a, b), D_GTSHARE(b, a),     D_GTSHARE(a, b))            \
    X(FMAX,     "fmax",     fmax(a, b),   D_FMAXDA(a, b),      D_FMAXDA(b, a))             \
    X(FMIN,     "fmin",     fmin(a, b),   D_FMAXDA(D_NEG(a), D_NEG(b)), D_FMAXDA(D_NEG(b), D_NEG(a))) \
    X(LOGADDEXP, "logaddexp", fa_logaddexp(a, b), D_EXP(D_SUB(a, r)), D_EXP(D_SUB(b, r)))  \
    /* numpy's floor division and remainders (fa_divmod); d/db of a remainder is minus the \
     * quotient, (a - r) / b, an integer up to rounding */                                 \
    X(REMAINDER, "remainder", fa_remainder(a, b), D_1, D_NEG(D_DIV(D_SUB(a, r), b)))       \
    X(FMOD,     "fmod",     fmod(a, b),   D_1,                 D_NEG(D_DIV(D_SUB(a, r), b))) \
    X(FLOOR_DIVIDE, "floor_divide", fa_floor_divide(a, b), D_0, D_0)                       \
    /* scipy.special: x log y, x log1p y (0 at x = 0); polygamma(n, x) for integer n */  \
    X(XLOGY,    "xlogy",    fa_xlogy(a, b),   D_LOG(b),   D_SELNOT(D_EQ(a, D_0), D_DIV(a, b))) \
    X(XLOG1PY,  "xlog1py",  fa_xlog1py(a, b), D_LOG1P(b),                                  \
      D_SELNOT(D_EQ(a, D_0), D_DIV(a, D_ADD(D_1, b))))                                     \
    X(POLYGAMMA, "_polygamma", fa_polygamma(a, b), D_0, D_POLYGAMMA(D_ADD(a, D_1), b))      \
    /* regularized incomplete gamma P(a, x), Q(a, x) (special.h); dP/da by the same series \
     * carried as Taylor series in a (taylor.h), to the third derivative in a */           \
    X(GAMMAINC,  "gammainc",  fa_gammainc(a, b),  D_GAMMAINC_DA(a, b), D_GAMMAINC_DX(a, b)) \
    X(GAMMAINCC, "gammaincc", fa_gammaincc(a, b),                                          \
      D_NEG(D_GAMMAINC_DA(a, b)), D_NEG(D_GAMMAINC_DX(a, b)))                              \
    X(GAMMAINC_DX, "_gammainc_dx", fa_gammainc_dx(a, b),                                   \
      D_MUL(r, D_SUB(D_LOG(b), D_POLYGAMMA(D_0, a))),                                      \
      D_MUL(r, D_SUB(D_DIV(D_SUB(a, D_1), b), D_1)))                                       \
    X(GAMMAINC_DA, "_gammainc_da", fa_gammainc_da(a, b), D_GAMMAINC_DA2(a, b),             \
      D_MUL(D_GAMMAINC_DX(a, b), D_SUB(D_LOG(b), D_POLYGAMMA(D_0, a))))                    \
    /* d2P/da2 and d3P/da3 by the same series in Taylor arithmetic (taylor.h); d/dx of    \
     * each is d/da^n of x^(a-1) e^-x / Gamma(a), L = log x - psi(a): f (L^2 - psi'(a)),  \
     * f (L^3 - 3 L psi'(a) - psi''(a)); the fourth derivative in a is NaN */             \
    X(GAMMAINC_DA2, "_gammainc_da2", fa_gammainc_da2(a, b), D_GAMMAINC_DA3(a, b),          \
      D_MUL(D_GAMMAINC_DX(a, b), D_SUB(D_MUL(D_SUB(D_LOG(b), D_POLYGAMMA(D_0, a)),         \
                                             D_SUB(D_LOG(b), D_POLYGAMMA(D_0, a))),        \
                                       D_POLYGAMMA(D_1, a))))                              \
    X(GAMMAINC_DA3, "_gammainc_da3", fa_gammainc_da3(a, b), D_K(NAN),                      \
      D_MUL(D_GAMMAINC_DX(a, b),                                                           \
            D_SUB(D_MUL(D_SUB(D_LOG(b), D_POLYGAMMA(D_0, a)),                              \
                        D_SUB(D_MUL(D_SUB(D_LOG(b), D_POLYGAMMA(D_0, a)),                  \
                                    D_SUB(D_LOG(b), D_POLYGAMMA(D_0, a))),                 \
                              D_MUL(D_K(3.0), D_POLYGAMMA(D_1, a)))),                      \
                  D_POLYGAMMA(D_K(2.0), a))))                                              \
    /* select: a is a 0/1 condition, b the value; the untaken side gets adjoint 0 */       \
    X(SELECT,     "_select",     a != 0 ? b : 0.0, D_0,        D_NE(a, D_0))               \
    X(SELECT_NOT, "_select_not", a != 0 ? 0.0 : b, D_0,        D_EQ(a, D_0))               \
    /* comparisons of arrays as 0/1 values (masks for select); no derivative */           \
    X(LESS_MASK,       "_less_mask",       a < b ? 1.0 : 0.0,  D_0, D_0)                   \
    X(LESS_EQUAL_MASK, "_less_equal_mask", a <= b ? 1.0 : 0.0, D_0, D_0)                   \
    X(EQUAL_MASK,      "_equal_mask",      a == b ? 1.0 : 0.0, D_0, D_0)                   \
    X(NOT_EQUAL_MASK,  "_not_equal_mask",  a != b ? 1.0 : 0.0, D_0, D_0)                   \
    /* internal: the slopes of maximum/fmax, and the absolute-zero product a*b: 0 when    \
     * either factor is 0, even if the other is infinite or NaN -- the product the sweeps   \
     * use (FA_AZ in sweeps.h), so that a recorded adjoint (emit.c) and its derivatives of  \
     * any order follow the same convention (docs/conventions.md) */                        \
    X(GTSHARE,  "_gtshare", fa_gt_share(a, b), D_0, D_0)                                   \
    X(FMAXDA,   "_fmaxda",  fa_fmax_da(a, b),  D_0, D_0)                                   \
    X(AZMUL,    "_azmul",   (a == 0 || b == 0) ? 0.0 : a * b, b, a)

/* Guards: comparisons the traced program made.  A guard has no result slot; its
 * record's flags hold the outcome seen while tracing, and a replay whose outcome
 * differs stops and asks for a retrace.  X(NAME, "numpy_name", test) */
#define FA_GUARD_OPS(X)                                  \
    X(LESS,       "less",       a < b)                   \
    X(LESS_EQUAL, "less_equal", a <= b)                  \
    X(EQUAL,      "equal",      a == b)                  \
    X(NOT_EQUAL,  "not_equal",  a != b)

/*
 * Structural ops over ranges, whose sweeps are written out in sweeps.h.  Each has an EXT
 * word (below: ext.r, ext.a, ext.b are its three fields).
 *   GATHER   r[k] = v[ix[a + k]], k < ext.r        (views, broadcasts, fancy indexing)
 *   SUM      r[j] = sum_k a[j*n + k]               (n = ext.r, j < m = ext.a)
 *   PROD     r[j] = prod_k a[j*n + k]
 *   MAX, MIN r[j] = max/min_k a[j*n + k]           (NaN propagates; ties share the derivative)
 *   CUMSUM   r[j*n + k] = sum_{i<=k} a[j*n + i]
 *   MATMUL   r (m x p) = a (m x k) @ b (k x p)     (m, k, p = ext.r, ext.a, ext.b; row-major)
 *   SOLVE, SLOGDET, CHOLESKY, TRSOLVE, EIGH: linear algebra through LAPACK, see linalg.h
 *   SVD      the thin singular value decomposition of an m x n matrix (linalg_svd.h)
 *   QR       the reduced QR factorization of an m x n matrix, m >= n (linalg_qr.h)
 *   BETAINC  I_x(a, b) elementwise, with its partials (linalg_betainc.h)
 *   EIG      the eigendecomposition of a general n x n matrix, real spectrum (linalg_eig.h)
 *   CALLBACK r[0..m) = a user function of a[0..n)  (n, m, id = ext.r, ext.a, ext.b): a
 *            custom_vjp function; the sweeps in _tape.pyx call back into Python for it
 *   LOOP     a true recurrence kept in order, its body stored once (loop.h): ext.r = T
 *            iterations of ext.a body records, each operand advancing by its own stride
 *   EXT      the extension word itself (a no-op in every sweep)
 * X(NAME, "name")
 */
#define FA_STRUCT_OPS(X)    \
    X(GATHER, "gather")     \
    X(SUM, "sum")           \
    X(PROD, "prod")         \
    X(MAX, "max")           \
    X(MIN, "min")           \
    X(CUMSUM, "cumsum")     \
    X(MATMUL, "matmul")     \
    /* linear algebra (csrc/linalg.h); consecutive: FA_IS_LINALG */ \
    X(SOLVE, "solve")       \
    X(SLOGDET, "slogdet")   \
    X(CHOLESKY, "cholesky") \
    X(TRSOLVE, "solve_triangular") \
    X(EIGH, "eigh")         \
    X(SVD, "svd")           \
    X(QR, "qr")             \
    /* the regularized incomplete beta function and its derivatives (linalg_betainc.h): \
     * three operands, elementwise; recorded like the linear algebra above */           \
    X(BETAINC, "betainc")   \
    /* the eigendecomposition of a general matrix with a real spectrum (linalg_eig.h) */ \
    X(EIG, "eig")           \
    X(CALLBACK, "callback") \
    X(LOOP, "loop")         \
    X(EXT, "ext")

typedef enum {
#define FA_ENUM1(N, S, V, DA) FA_##N,
#define FA_ENUM2(N, S, V, DA, DB) FA_##N,
#define FA_ENUMG(N, S, T) FA_##N,
#define FA_ENUMS(N, S) FA_##N,
    FA_UNARY_OPS(FA_ENUM1)
    FA_BINARY_OPS(FA_ENUM2)
    FA_GUARD_OPS(FA_ENUMG)
    FA_STRUCT_OPS(FA_ENUMS)
#undef FA_ENUM1
#undef FA_ENUM2
#undef FA_ENUMG
#undef FA_ENUMS
    FA_NUM_OPS
} fa_op;

/* Op kinds, for the Python layer's dispatch table. */
enum { FA_KIND_UNARY = 1, FA_KIND_BINARY = 2, FA_KIND_GUARD = 3, FA_KIND_STRUCT = 4 };

typedef struct {
    const char *name;
    int kind;
    const char *da, *db;   /* the partials as written in the table (D_* text), or NULL */
} fa_op_info;

/* Defined in tape.c, generated from the lists above. */
extern const fa_op_info fa_op_table[FA_NUM_OPS];

#endif /* FASTAD_OPS_H */
