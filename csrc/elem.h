/*
 * elem.h -- the element loops of ops.h's elementwise ops over a range, compiled once.
 *
 * One switch per sweep with one case per op, every case's loop in each stride pattern
 * (sweeps.h's FA_LOOP over n elements, operand strides sa, sb of 0 or 1) and in three
 * target clones (FA_CLONES): together most of the C core's compile time.  Both readers
 * run these: a ranged record's sweep (fa_*_ranged in sweeps.h, over its n elements) and a
 * fused chain's tile (fuse.c, over FA_FUSE_TILE elements), so their results agree bit for
 * bit by construction.  Each kernel is a file of its own (elem_fwd.c, elem_tan.c,
 * elem_rev_a.c, elem_rev_b.c): the four compile in parallel.  Hidden, like FA_SWEEP_API: a
 * clone is always called through its resolver, so the call across files costs nothing
 * more.  Included by sweeps.h.
 */
#ifndef FASTAD_ELEM_H
#define FASTAD_ELEM_H

/* values: R[k] = f(A[ka], B[kb]).  `vec`: numpy's float64 loop for the op (fa_vec_loops),
 * which the caller has checked exists */
FA_SWEEP_API void fa_elem_fwd(int op, int vec, int64_t n, const double *A, int64_t sa,
                              const double *B, int64_t sb, double *R);
/* tangents: TR[k] = f_a TA[ka] + f_b TB[kb], absolute-zero products (FA_AZ) */
FA_SWEEP_API void fa_elem_tan(int op, int64_t n, const double *A, int64_t sa,
                              const double *B, int64_t sb, const double *R,
                              const double *TA, const double *TB, double *TR);
/* adjoints of operand a (rev_a) or b (rev_b, binary ops only): G[k] += W[k] f_x for a
 * range (G = the operand's adjoints), or *acc += W[k] f_x in element order for a
 * broadcast operand (G NULL) */
FA_SWEEP_API void fa_elem_rev_a(int op, int64_t n, const double *A, int64_t sa,
                                const double *B, int64_t sb, const double *R,
                                const double *W, double *G, double *acc);
FA_SWEEP_API void fa_elem_rev_b(int op, int64_t n, const double *A, int64_t sa,
                                const double *B, int64_t sb, const double *R,
                                const double *W, double *G, double *acc);

/* the body of rev_a and rev_b for one op's partial D: into G, or summed in a register */
#define FA_ELEM_REV(D)                                                                   \
    if (G) { FA_LOOP({ const double w = W[k], a = A[ka], b = B[kb], r = R[k];             \
                       (void)a; (void)b; (void)r; G[k] += FA_AZ(w, (D)); }) }             \
    else { double s = *acc;                                                                \
           FA_LOOP({ const double w = W[k], a = A[ka], b = B[kb], r = R[k];               \
                     (void)a; (void)b; (void)r; s += FA_AZ(w, (D)); })                    \
           *acc = s; }

#endif /* FASTAD_ELEM_H */
