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

#define FA_LN2 0.693147180559945309417232121458176568
#define FA_LN10 2.30258509299404568401799145468436421
#define FA_2_SQRTPI 1.12837916709551257389615890312154517

/* Helpers for rules that do not fit one expression. */
static inline double fa_sign(double a) { return a > 0 ? 1.0 : a < 0 ? -1.0 : a == 0 ? 0.0 : a; }
static inline double fa_max(double a, double b) { return (a >= b || a != a) ? a : b; }
static inline double fa_min(double a, double b) { return (a <= b || a != a) ? a : b; }
/* share of a tie: 1 if a wins, 0.5 on a tie, 0 if b wins */
static inline double fa_gt_share(double a, double b) { return a > b ? 1.0 : a == b ? 0.5 : 0.0; }
static inline double fa_fmax_da(double a, double b) { return b != b ? 1.0 : a != a ? 0.0 : fa_gt_share(a, b); }
static inline double fa_fmin_da(double a, double b) { return b != b ? 1.0 : a != a ? 0.0 : fa_gt_share(b, a); }
static inline double fa_pow_da(double a, double b) { return b == 0 ? 0.0 : b * pow(a, b - 1.0); }
static inline double fa_pow_db(double a, double r) { return a == 0 ? 0.0 : r * log(a); }
static inline double fa_hypot_d(double a, double r) { return r == 0 ? 0.0 : a / r; }
static inline double fa_logaddexp(double a, double b) {
    if (a == b) return a + FA_LN2;          /* also right for a = b = +-inf */
    double m = a > b ? a : b, d = a > b ? b - a : a - b;
    return d != d ? d : m + log1p(exp(d));  /* NaN stays NaN */
}
static inline double fa_expit(double a) {
    /* numerically stable logistic: never exp of a large positive number */
    if (a >= 0) return 1.0 / (1.0 + exp(-a));
    double e = exp(a);
    return e / (1.0 + e);
}

/* X(NAME, "numpy_name", value, d/da)  -- a is the operand, r the result */
#define FA_UNARY_OPS(X)                                                     \
    X(NEGATIVE,   "negative",   -a,               -1.0)                     \
    X(SQUARE,     "square",     a * a,            2.0 * a)                  \
    X(SQRT,       "sqrt",       sqrt(a),          0.5 / r)                  \
    X(CBRT,       "cbrt",       cbrt(a),          1.0 / (3.0 * r * r))      \
    X(RECIPROCAL, "reciprocal", 1.0 / a,          -r * r)                   \
    X(EXP,        "exp",        exp(a),           r)                        \
    X(EXP2,       "exp2",       exp2(a),          r * FA_LN2)               \
    X(EXPM1,      "expm1",      expm1(a),         exp(a))                   \
    X(LOG,        "log",        log(a),           1.0 / a)                  \
    X(LOG2,       "log2",       log2(a),          1.0 / (a * FA_LN2))       \
    X(LOG10,      "log10",      log10(a),         1.0 / (a * FA_LN10))      \
    X(LOG1P,      "log1p",      log1p(a),         1.0 / (1.0 + a))          \
    X(SIN,        "sin",        sin(a),           cos(a))                   \
    X(COS,        "cos",        cos(a),           -sin(a))                  \
    X(TAN,        "tan",        tan(a),           1.0 + r * r)              \
    X(ARCSIN,     "arcsin",     asin(a),          1.0 / sqrt((1.0 - a) * (1.0 + a)))  \
    X(ARCCOS,     "arccos",     acos(a),          -1.0 / sqrt((1.0 - a) * (1.0 + a))) \
    X(ARCTAN,     "arctan",     atan(a),          1.0 / (1.0 + a * a))      \
    X(SINH,       "sinh",       sinh(a),          cosh(a))                  \
    X(COSH,       "cosh",       cosh(a),          sinh(a))                  \
    X(TANH,       "tanh",       tanh(a),          1.0 - r * r)              \
    X(ARCSINH,    "arcsinh",    asinh(a),         1.0 / hypot(a, 1.0))      \
    X(ARCCOSH,    "arccosh",    acosh(a),         1.0 / sqrt((a - 1.0) * (a + 1.0)))  \
    X(ARCTANH,    "arctanh",    atanh(a),         1.0 / ((1.0 - a) * (1.0 + a)))      \
    X(ABSOLUTE,   "absolute",   fabs(a),          a >= 0 ? 1.0 : -1.0)      \
    X(SIGN,       "sign",       fa_sign(a),       0.0)                      \
    X(FLOOR,      "floor",      floor(a),         0.0)                      \
    X(CEIL,       "ceil",       ceil(a),          0.0)                      \
    X(RINT,       "rint",       nearbyint(a),     0.0)                      \
    X(ERF,        "erf",        erf(a),           FA_2_SQRTPI * exp(-a * a))  \
    X(ERFC,       "erfc",       erfc(a),          -FA_2_SQRTPI * exp(-a * a)) \
    X(EXPIT,      "expit",      fa_expit(a),      r * (1.0 - r))            \
    X(LOGIT,      "logit",      log(a / (1.0 - a)), 1.0 / (a * (1.0 - a)))

/* X(NAME, "numpy_name", value, d/da, d/db) -- a, b are the operands, r the result */
#define FA_BINARY_OPS(X)                                                         \
    X(ADD,      "add",      a + b,           1.0,                1.0)            \
    X(SUBTRACT, "subtract", a - b,           1.0,                -1.0)           \
    X(MULTIPLY, "multiply", a * b,           b,                  a)              \
    X(DIVIDE,   "divide",   a / b,           1.0 / b,            -r / b)         \
    X(POWER,    "power",    pow(a, b),       fa_pow_da(a, b),    fa_pow_db(a, r)) \
    X(ARCTAN2,  "arctan2",  atan2(a, b),     b / (a * a + b * b), -a / (a * a + b * b)) \
    X(HYPOT,    "hypot",    hypot(a, b),     fa_hypot_d(a, r),   fa_hypot_d(b, r)) \
    X(MAXIMUM,  "maximum",  fa_max(a, b),    fa_gt_share(a, b),  fa_gt_share(b, a)) \
    X(MINIMUM,  "minimum",  fa_min(a, b),    fa_gt_share(b, a),  fa_gt_share(a, b)) \
    X(FMAX,     "fmax",     fmax(a, b),      fa_fmax_da(a, b),   fa_fmax_da(b, a)) \
    X(FMIN,     "fmin",     fmin(a, b),      fa_fmin_da(a, b),   fa_fmin_da(b, a)) \
    X(LOGADDEXP, "logaddexp", fa_logaddexp(a, b), exp(a - r),   exp(b - r))     \
    /* select: a is a 0/1 condition, b the value; the untaken side gets adjoint 0 */ \
    X(SELECT,     "_select",    a != 0 ? b : 0.0, 0.0,           a != 0 ? 1.0 : 0.0) \
    X(SELECT_NOT, "_select_not",a != 0 ? 0.0 : b, 0.0,           a != 0 ? 0.0 : 1.0) \
    /* comparisons of arrays as 0/1 values (masks for select); no derivative */ \
    X(LESS_MASK,       "_less_mask",      a < b ? 1.0 : 0.0,  0.0, 0.0)            \
    X(LESS_EQUAL_MASK, "_less_equal_mask",a <= b ? 1.0 : 0.0, 0.0, 0.0)            \
    X(EQUAL_MASK,      "_equal_mask",     a == b ? 1.0 : 0.0, 0.0, 0.0)            \
    X(NOT_EQUAL_MASK,  "_not_equal_mask", a != b ? 1.0 : 0.0, 0.0, 0.0)

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
} fa_op_info;

/* Defined in tape.c, generated from the lists above. */
extern const fa_op_info fa_op_table[FA_NUM_OPS];

#endif /* FASTAD_OPS_H */
