/*
 * fuse.h -- fusion of elementwise chains (fuse.c; docs/design.md, "Fusion").
 *
 * After the optimizer has rolled the loops, consecutive ranged elementwise records of one
 * length (numpy expressions such as 100*(x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2, with
 * their views, gathers and broadcast scalars), optionally ended by the SUM that consumes
 * them, form a chain.  The pass leaves the records as they are -- every other reader of the
 * tape (recorded adjoints, vmap, sparsity, pickling, native code, fd.trace) sees the tape
 * as recorded -- and builds a plan beside them that the interpreter's sweeps follow: a
 * chain runs tile by tile (FA_FUSE_TILE elements), its intermediates in small buffers that
 * stay in L1, and only its live results (read outside the chain, or kept) go to memory.
 * The reverse and tangent sweeps recompute a tile's intermediates from the chain's inputs
 * and propagate through them at once.  The element rules are those of ops.h, through the
 * same macros as sweeps.h, so the results are those of the unfused sweeps, bit for bit,
 * except where one slot's adjoint collects contributions of shifted views at a tile
 * boundary in another order (docs/conventions.md, "Fused chains").
 */
#ifndef FASTAD_FUSE_H
#define FASTAD_FUSE_H

#include "tape.h"

#define FA_FUSE_TILE 512     /* elements per tile: a few chains' buffers fit in L1/L2 */
#define FA_FUSE_MAXM 64      /* longest chain, in records (its buffers are allocated per sweep) */

typedef struct fa_fuse_plan fa_fuse_plan;

typedef struct {
    int64_t chains;          /* chains fused */
    int64_t records;         /* records (headers) inside them */
    int64_t live;            /* of those, results still written to memory */
    int64_t sums;            /* chains ending in the SUM that consumes them */
    int64_t words_after;     /* tape words if each chain were one record (two words) */
} fa_fuse_stats;

/* Plan the fusion of the finished tape t; keep[0..nkeep) are slots the caller reads after
 * a replay (outputs, auxiliary data).  *out is NULL when nothing is fused.  The plan is
 * valid for t as it is now (records are not changed); the sweeps ignore a plan made for
 * another number of records.  Chains shorter than min_n elements are left unfused: while
 * a chain's arrays fit in the caches, tiling costs more than the memory passes it saves
 * (FA_FUSE_MIN_N, measured in docs/benchmarks.md). */
#define FA_FUSE_MIN_N 32768
int fa_fuse(const fa_tape *t, const int32_t *keep, int64_t nkeep, int64_t min_n,
            fa_fuse_plan **out, fa_fuse_stats *st);
void fa_fuse_free(fa_fuse_plan *p);

/* The three sweeps, following the plan (t->fused) where it has a chain and the records
 * elsewhere; same contracts as sweep_forward (-1 or the index of the first failed guard),
 * sweep_tangent and sweep_reverse_seeded in _tape.pyx. */
int64_t fa_fused_forward(const fa_tape *t, double *v);
void fa_fused_tangent(const fa_tape *t, const double *v, double *tan);
void fa_fused_reverse(const fa_tape *t, const double *v, double *adj);

/* Zero the adjoints a reverse sweep reads: all but those of the intermediates fused chains
 * keep in their tile buffers (on a tape of 10^6-element chains, most of the slots).  Only
 * for a sweep that follows the plan (the interpreter's, or native code of fused chains). */
void fa_fused_zero(const fa_tape *t, double *adj);
/* the same from slot `from` on (the in-place reverse sweep: docs/native.md) */
void fa_fused_zero_from(const fa_tape *t, double *adj, int64_t from);

/* The chains, for the native tier and for tests: chain c covers records [first, end) and
 * `live` (an array of the chain's member count) says which member results are written. */
int64_t fa_fuse_count(const fa_fuse_plan *p);
int fa_fuse_chain(const fa_fuse_plan *p, int64_t c, int64_t *first, int64_t *end,
                  int64_t *nmembers, uint8_t *live, int64_t cap);

#endif /* FASTAD_FUSE_H */
