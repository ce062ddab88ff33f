/*
 * optimize.h -- transformations of a finished tape (optimize.c; docs/design.md, "The
 * optimizer").  They emit only record kinds the sweeps already run (ranged elementwise
 * records, GATHER, SUM/PROD/MAX/MIN reductions, guards), so no sweep changes.
 */
#ifndef FASTAD_OPTIMIZE_H
#define FASTAD_OPTIMIZE_H

#include "tape.h"

/* a rolled guard re-evaluated to another outcome than the trace saw (internal: the pass
 * then leaves the tape as recorded) */
#define FA_EGUARD (-100)

typedef struct {
    int64_t loops;           /* runs of a loop body rolled */
    int64_t iterations;      /* iterations they held */
    int64_t rolled_records;  /* records those iterations were */
    int64_t reductions;      /* accumulations turned into SUM/PROD/MAX/MIN records */
    int64_t guards;          /* guards kept per iteration inside rolled loops */
    int64_t abandoned;       /* 1: a rolled guard disagreed, the tape is left as recorded */
    int64_t recurrences;     /* of the loops, true recurrences kept as LOOP records (loop.h) */
} fa_opt_stats;

/* Roll the loops of the finished tape t.  keep[0..nkeep) are the slots the caller reads
 * (outputs, auxiliary data): they keep a slot in the new tape.  On FA_OK, *out is the new
 * tape (NULL: nothing to roll, t is what to use) and map[s] (nslot of t entries) the new
 * slot of old slot s, or -1 for a slot the new tape no longer has (a partial sum). */
int fa_optimize(const fa_tape *t, const int32_t *keep, int64_t nkeep, fa_tape **out,
                int32_t *map, fa_opt_stats *st);

#endif /* FASTAD_OPTIMIZE_H */
