/*
 * hv_dual.h -- the op table read over dual numbers (value, tangent): fa_dual_op applies an
 * op's value rule and its tangent rule, and the D_* language of ops.h is redefined so that
 * an op's partial D_ expression evaluates to a dual (the partial and its directional
 * derivative).  Used by the forward-over-reverse lanes (hvp_lanes.h) and by the compiled
 * colour lanes (src/fastad/_codegen_lanes.py), which embeds this header in generated C.
 *
 * The D_ macros' plain reading is pushed here (push_macro); a file that needs it back pops
 * them after use (hvp_lanes.h does).
 */
#ifndef FASTAD_HV_DUAL_H
#define FASTAD_HV_DUAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "ops.h"

typedef struct { double v, d; } fa_dual;

/* Folding known factors (generated code only).  The compiled colour lanes
 * (src/fastad/_codegen_lanes.py) define FA_HV_FOLD before this header: where the compiler
 * proves a factor or addend constant (a table constant, a partial such as subtract's -1,
 * a structurally zero lane, the adjoint seed), fa_hv_az and fa_hv_add below skip the
 * absolute-zero masks and the additions of zero.  The value is the same except possibly
 * the sign of a zero (docs/sparse.md, "Compiled colour lanes"; docs/conventions.md):
 *  - a known zero factor: AZ(0, y) = +0.0 for every y, exactly;
 *  - a known finite nonzero factor c: AZ(x, c) = x * c for every x (inf and NaN
 *    included: c is neither 0 nor infinite, so the absolute-zero rule never applies)
 *    except x = +-0, where AZ gives +0.0 and x * c a zero with the product's sign;
 *  - a known zero addend: a + 0 = a except a = -0.0, b = +0.0 (then +0.0).
 * Tangent and adjoint zeros meet only these products and sums, so a zero's sign never
 * reaches a nonzero result.  Without FA_HV_FOLD (the library's own hvp_lanes.h) the
 * tests below are 0 and nothing changes. */
#ifdef FA_HV_FOLD
#define FA_HV_KZERO(y) (__builtin_constant_p(y) && (y) == 0.0)
#define FA_HV_KNZ(y) (__builtin_constant_p(y) && (y) != 0.0 && __builtin_isfinite(y))
#else
#define FA_HV_KZERO(y) 0
#define FA_HV_KNZ(y) 0
#endif

/* FA_AZ's absolute-zero product, branch-free: the product with its bits cleared when a
 * factor is 0 -- the same value (+0.0 then, x * y otherwise, NaN and inf included), but no
 * conditional, so GCC vectorizes the element loops below (it does not if-convert FA_AZ's
 * `?:` on doubles unless told -fno-trapping-math). */
static inline __attribute__((always_inline)) double fa_hv_az(double x, double y)
{
    if (FA_HV_KZERO(x) || FA_HV_KZERO(y))
        return 0.0;
    if (FA_HV_KNZ(x) || FA_HV_KNZ(y))
        return x * y;
    double p = x * y;
    uint64_t bits;
    memcpy(&bits, &p, sizeof bits);
    bits &= -(uint64_t)((x != 0.0) & (y != 0.0));
    memcpy(&p, &bits, sizeof p);
    return p;
}

/* a + b, a known zero addend skipped under FA_HV_FOLD (above) */
static inline __attribute__((always_inline)) double fa_hv_add(double a, double b)
{
    if (FA_HV_KZERO(b))
        return a;
    if (FA_HV_KZERO(a))
        return b;
    return a + b;
}

/* One second-order adjoint term: AZMUL(w, f_a)'s tangent, AZ(wd, f_a) + AZ(w, f_a'). */
static inline __attribute__((always_inline)) double fa_hv_term(fa_dual d, double w, double wd)
{
    return fa_hv_az(wd, d.v) + fa_hv_az(w, d.d);
}

/* op applied to dual numbers: its value rule, and its tangent rule (fa_tan's arithmetic).
 * Written while the D_* language still has its plain reading (the partials are numbers). */
static inline __attribute__((always_inline)) fa_dual fa_dual_op(int op, fa_dual x, fa_dual y)
{
    switch (op) {
#define FA_DQ1(N, S, V, DA) case FA_##N: { \
        const double a = x.v; const double r = (V); (void)r; \
        return (fa_dual){r, fa_hv_az(x.d, (DA))}; }
#define FA_DQ2(N, S, V, DA, DB) case FA_##N: { \
        const double a = x.v, b = y.v; const double r = (V); (void)r; \
        return (fa_dual){r, fa_hv_add(fa_hv_az(x.d, (DA)), fa_hv_az(y.d, (DB)))}; }
    FA_UNARY_OPS(FA_DQ1)
    FA_BINARY_OPS(FA_DQ2)
#undef FA_DQ1
#undef FA_DQ2
    default:
        return (fa_dual){NAN, NAN};
    }
}

/* ---- the D_* language over dual numbers (the third reading; ops.h, emit.c) ---------- */
#pragma push_macro("D_K")
#pragma push_macro("D_ADD")
#pragma push_macro("D_SUB")
#pragma push_macro("D_MUL")
#pragma push_macro("D_DIV")
#pragma push_macro("D_NEG")
#pragma push_macro("D_RECIP")
#pragma push_macro("D_SQRT")
#pragma push_macro("D_EXP")
#pragma push_macro("D_LOG")
#pragma push_macro("D_SIN")
#pragma push_macro("D_COS")
#pragma push_macro("D_SINH")
#pragma push_macro("D_COSH")
#pragma push_macro("D_HYPOT")
#pragma push_macro("D_POW")
#pragma push_macro("D_EQ")
#pragma push_macro("D_NE")
#pragma push_macro("D_SELNOT")
#pragma push_macro("D_SIGNPOS")
#pragma push_macro("D_GTSHARE")
#pragma push_macro("D_FMAXDA")
#pragma push_macro("D_LOG1P")
#pragma push_macro("D_POLYGAMMA")
#pragma push_macro("D_GAMMAINC_DA")
#pragma push_macro("D_GAMMAINC_DX")
#pragma push_macro("D_GAMMAINC_DA2")
#pragma push_macro("D_GAMMAINC_DA3")
#undef D_K
#undef D_ADD
#undef D_SUB
#undef D_MUL
#undef D_DIV
#undef D_NEG
#undef D_RECIP
#undef D_SQRT
#undef D_EXP
#undef D_LOG
#undef D_SIN
#undef D_COS
#undef D_SINH
#undef D_COSH
#undef D_HYPOT
#undef D_POW
#undef D_EQ
#undef D_NE
#undef D_SELNOT
#undef D_SIGNPOS
#undef D_GTSHARE
#undef D_FMAXDA
#undef D_LOG1P
#undef D_POLYGAMMA
#undef D_GAMMAINC_DA
#undef D_GAMMAINC_DX
#undef D_GAMMAINC_DA2
#undef D_GAMMAINC_DA3
/* each D_ op is the table op emit.c records for it */
#define D_K(c)           ((fa_dual){(c), 0.0})
#define D_ADD(x, y)      fa_dual_op(FA_ADD, (x), (y))
#define D_SUB(x, y)      fa_dual_op(FA_SUBTRACT, (x), (y))
#define D_MUL(x, y)      fa_dual_op(FA_MULTIPLY, (x), (y))
#define D_DIV(x, y)      fa_dual_op(FA_DIVIDE, (x), (y))
#define D_NEG(x)         fa_dual_op(FA_NEGATIVE, (x), (x))
#define D_RECIP(x)       fa_dual_op(FA_RECIPROCAL, (x), (x))
#define D_SQRT(x)        fa_dual_op(FA_SQRT, (x), (x))
#define D_EXP(x)         fa_dual_op(FA_EXP, (x), (x))
#define D_LOG(x)         fa_dual_op(FA_LOG, (x), (x))
#define D_SIN(x)         fa_dual_op(FA_SIN, (x), (x))
#define D_COS(x)         fa_dual_op(FA_COS, (x), (x))
#define D_SINH(x)        fa_dual_op(FA_SINH, (x), (x))
#define D_COSH(x)        fa_dual_op(FA_COSH, (x), (x))
#define D_HYPOT(x, y)    fa_dual_op(FA_HYPOT, (x), (y))
#define D_POW(x, y)      fa_dual_op(FA_POWER, (x), (y))
#define D_EQ(x, y)       fa_dual_op(FA_EQUAL_MASK, (x), (y))
#define D_NE(x, y)       fa_dual_op(FA_NOT_EQUAL_MASK, (x), (y))
#define D_SELNOT(c, x)   fa_dual_op(FA_SELECT_NOT, (c), (x))
#define D_SIGNPOS(x)     fa_dual_op(FA_SIGNPOS, (x), (x))
#define D_GTSHARE(x, y)  fa_dual_op(FA_GTSHARE, (x), (y))
#define D_FMAXDA(x, y)   fa_dual_op(FA_FMAXDA, (x), (y))
#define D_LOG1P(x)       fa_dual_op(FA_LOG1P, (x), (x))
#define D_POLYGAMMA(n, x) fa_dual_op(FA_POLYGAMMA, (n), (x))
#define D_GAMMAINC_DA(a, x) fa_dual_op(FA_GAMMAINC_DA, (a), (x))
#define D_GAMMAINC_DX(a, x) fa_dual_op(FA_GAMMAINC_DX, (a), (x))
#define D_GAMMAINC_DA2(a, x) fa_dual_op(FA_GAMMAINC_DA2, (a), (x))
#define D_GAMMAINC_DA3(a, x) fa_dual_op(FA_GAMMAINC_DA3, (a), (x))

#endif /* FASTAD_HV_DUAL_H */
