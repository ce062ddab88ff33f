/*
 * native_abi.h -- how the library calls a tape's machine code (docs/native.md).
 *
 * A tape's fa_tape.native points to an fa_native (or is NULL: interpreter).  Generated
 * code works on the interpreter's own slot arrays (values, tangents, adjoints), so a sweep
 * may run in either tier and a replay may switch tier between its forward and reverse
 * sweep.  The pointer is published once, with release/acquire atomics, by the thread that
 * compiled the code, while other threads replay the tape without the GIL.
 */
#ifndef FASTAD_NATIVE_ABI_H
#define FASTAD_NATIVE_ABI_H

#include <string.h>
#include "sweeps.h"
#include "native_kernels.h"

typedef int64_t (*fa_native_fwd_fn)(double *v, const int32_t *ix, fa_native_vec_fn vec);
typedef void (*fa_native_tan_fn)(const double *v, double *t, const int32_t *ix);
typedef void (*fa_native_rev_fn)(const double *v, double *g, const int32_t *ix);
/* The same sweeps reading the inputs' values from x[0..nin) instead of v[0..nin), and
 * adding their adjoints to gx[0..nin) instead of g[0..nin) (docs/native.md, "Inputs read
 * in place"): generated only for tapes whose input slots no other record reads. */
typedef int64_t (*fa_native_fwd_x_fn)(double *v, const int32_t *ix, fa_native_vec_fn vec,
                                      const double *x);
typedef void (*fa_native_rev_x_fn)(const double *v, double *g, const int32_t *ix,
                                   const double *x, double *gx);
/* Both in one pass, for a tape that is one fused chain ending in its SUM (no guard): the
 * values of fa_native_fwd_x and the adjoints of fa_native_rev_x, bit for bit. */
typedef void (*fa_native_vg_x_fn)(double *v, double *g, const int32_t *ix, const double *x,
                                  double *gx);

typedef struct {
    fa_native_fwd_fn fwd;   /* each NULL when not generated: that sweep stays interpreted */
    fa_native_tan_fn tan;
    fa_native_rev_fn rev;
    int fused;              /* the code runs the tape's fused chains as the plan says
                             * (_codegen_fuse.py): its reverse sweep reads only the adjoints
                             * fa_fused_zero zeroes, so it needs no memset of every slot */
    const int64_t *assigned;    /* sorted disjoint [lo, hi) slot ranges whose adjoints the
                                 * reverse sweep assigns before it reads them (0.0 + term:
                                 * _codegen.assigned_loops), nassigned of them: they need no
                                 * zeroing, and no seed may lie there */
    int64_t nassigned;
    fa_native_fwd_x_fn fwd_x;   /* both or neither (NULL): the in-place sweeps */
    fa_native_rev_x_fn rev_x;
    fa_native_vg_x_fn vg_x;     /* NULL unless fwd_x and rev_x are set */
} fa_native;

static inline const fa_native *fa_native_get(const fa_tape *t)
{
    return (const fa_native *)__atomic_load_n(&t->native, __ATOMIC_ACQUIRE);
}

static inline void fa_native_set(fa_tape *t, fa_native *n)
{
    __atomic_store_n(&t->native, (void *)n, __ATOMIC_RELEASE);
}

/* Zero the adjoints native code's reverse sweep reads: every slot outside its assigned
 * ranges (fa_native.assigned), which it writes before it reads them.  The ranges come from
 * the object whose key matched the tape; they are clamped to the tape anyway. */
static inline void fa_native_zero(const fa_native *n, double *adj, int64_t nslot)
{
    int64_t s = 0;
    for (int64_t k = 0; k < n->nassigned; k++) {
        int64_t lo = n->assigned[2 * k], hi = n->assigned[2 * k + 1];
        lo = lo < s ? s : lo > nslot ? nslot : lo;
        if (lo > s) memset(adj + s, 0, (size_t)(lo - s) * sizeof(double));
        if (hi > s) s = hi > nslot ? nslot : hi;
    }
    if (nslot > s) memset(adj + s, 0, (size_t)(nslot - s) * sizeof(double));
}

/* Whether slot s lies in an assigned range (a seed there would be overwritten). */
static inline int fa_native_assigned(const fa_native *n, int64_t s)
{
    for (int64_t k = 0; k < n->nassigned; k++)
        if (n->assigned[2 * k] <= s && s < n->assigned[2 * k + 1]) return 1;
    return 0;
}

/* Whether every assigned slot of adj holds +0.0 (all bits clear), as the assigning code
 * assumes: adjoints seeded by the caller (sweep_reverse_seeded) are checked with it. */
static inline int fa_native_clear(const fa_native *n, const double *adj, int64_t nslot)
{
    for (int64_t k = 0; k < n->nassigned; k++) {
        int64_t lo = n->assigned[2 * k], hi = n->assigned[2 * k + 1];
        if (hi > nslot) hi = nslot;
        for (int64_t s = lo < 0 ? 0 : lo; s < hi; s++) {
            uint64_t u;
            memcpy(&u, adj + s, sizeof u);
            if (u) return 0;
        }
    }
    return 1;
}

/* The interpreter's own numpy-loop path for one ranged record (fa_fwd_vec), so values of
 * ranged transcendental ops are the interpreter's bit for bit. */
static int fa_native_vec(int op, double *v, int32_t r, int32_t a, int32_t sa,
                         int32_t b, int32_t sb, int32_t n)
{
    fa_rec p[2];
    p[0].op = (uint8_t)op; p[0].flags = FA_RANGED; p[0].unused = 0;
    p[0].r = r; p[0].a = a; p[0].b = b;
    p[1].op = FA_EXT; p[1].flags = 0; p[1].unused = 0;
    p[1].r = n; p[1].a = sa; p[1].b = sb;
    return fa_fwd_vec(p, v);
}

/* The runtime's kernels for records generated code calls back for (fa_native_rt,
 * native_kernels.h): the interpreter's own fa_fwd / fa_tan / fa_rev on the record rebuilt
 * from its words.  Only fastad._tape instantiates the table (fa_native_runtime), since
 * that module holds the BLAS and LAPACK pointers (fa_dgemm, fa_lapack) these kernels use. */
static inline void fa_native_unpack(const int32_t *w, fa_rec p[2])
{
    p[0].op = (uint8_t)w[0]; p[0].flags = (uint8_t)w[1]; p[0].unused = 0;
    p[0].r = w[2]; p[0].a = w[3]; p[0].b = w[4];
    p[1].op = FA_EXT; p[1].flags = 0; p[1].unused = 0;
    p[1].r = w[5]; p[1].a = w[6]; p[1].b = w[7];
}

static int fa_native_rt_fwd(const int32_t *w, double *v, const int32_t *ix)
{
    fa_rec p[2];
    fa_native_unpack(w, p);
    return fa_fwd(p, v, ix);
}

static void fa_native_rt_tan(const int32_t *w, const double *v, double *t, const int32_t *ix)
{
    fa_rec p[2];
    fa_native_unpack(w, p);
    fa_tan(p, v, t, ix);
}

static void fa_native_rt_rev(const int32_t *w, const double *v, double *g, const int32_t *ix)
{
    fa_rec p[2];
    fa_native_unpack(w, p);
    fa_rev(p, v, g, ix);
}

static const fa_native_rt *fa_native_runtime(void)
{
    static const fa_native_rt rt = {fa_native_rt_fwd, fa_native_rt_tan, fa_native_rt_rev};
    return &rt;
}

#endif /* FASTAD_NATIVE_ABI_H */
