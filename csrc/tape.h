/*
 * tape.h -- fastad's flat tape: the record format and the recording API.
 *
 * A tape is a program in static single assignment over float64 "slots":
 *   slots [0, nin)        the inputs, in order;
 *   every other slot      either a constant (value set once while recording, never written
 *                         by a record) or the result of exactly one record.
 * Records are 16 bytes: op code, flags, result slot, two operand slots.  With a value and an
 * adjoint per slot, a scalar binary op costs 16 + 8 + 8 = 32 bytes.
 *
 * A ranged record covers n consecutive result slots r .. r+n-1.  Its header has the
 * FA_RANGED flag and is followed by one FA_EXT word holding n and the operand strides
 * (0: the operand is one slot, broadcast; 1: a range of n slots).  The structural ops of
 * ops.h (gather, reductions, matmul) use the same two-word layout with their own EXT
 * fields; GATHER's indices live in the tape's index pool.  Sweeps treat the
 * EXT word as a no-op, so the forward loop and the backward loop both stay one loop with
 * one case per op.
 *
 * Slot indices are int32 (the layout's width); every function that adds slots or
 * records checks the index width and the allocation, and reports FA_EOVERFLOW or
 * FA_ENOMEM instead of wrapping.
 */
#ifndef FASTAD_TAPE_H
#define FASTAD_TAPE_H

#include <stdint.h>
#include <stddef.h>
#include "ops.h"

/* flags */
#define FA_RANGED 0x01u   /* header of a ranged record; an FA_EXT word follows */
#define FA_TRUE   0x02u   /* guard: the comparison was true while tracing */
#define FA_A_PASSIVE 0x04u  /* operand a needs no adjoint (see fa_mark_passive) */
#define FA_B_PASSIVE 0x08u  /* operand b needs no adjoint */

typedef struct {
    uint8_t op;       /* fa_op */
    uint8_t flags;
    uint16_t unused;  /* keeps the record at 16 bytes and aligned */
    int32_t r;        /* result slot;  EXT word: n, the number of elements */
    int32_t a;        /* operand slot; EXT word: stride of a (0 or 1) */
    int32_t b;        /* operand slot; EXT word: stride of b (0 or 1) */
} fa_rec;

/* error codes returned by the recording functions */
enum { FA_OK = 0, FA_ENOMEM = -1, FA_EOVERFLOW = -2, FA_EORDER = -3, FA_EARG = -4,
       FA_ECALLBACK = -5 /* a derivative would have to be recorded through a callback */ };

/* largest slot count the int32 operand fields can address */
#define FA_MAX_SLOTS ((int64_t)INT32_MAX)

typedef struct {
    fa_rec *rec;          /* the records, in execution order */
    int64_t nrec, caprec;
    double *val;          /* value of every slot at recording time (constants included) */
    int64_t nslot, capslot;
    int32_t nin;          /* inputs are slots 0 .. nin-1 */
    int64_t ncon;         /* number of constant slots (scalars and arrays) */
    int64_t *chash;       /* scalar constants, open addressing: slot + 1, 0 = empty */
    int64_t hcap;         /* power of two, or 0 */
    int64_t *cranges;     /* constant arrays: (first slot, length) pairs */
    int64_t ncranges, capcranges;
    int32_t *ix;          /* index pool of GATHER records */
    int64_t nix, capix;
    int64_t ncb;          /* CALLBACK records: the sweeps must call back into Python */
    void *owner;          /* the Python object owning the tape (for those callbacks) */
    int64_t want;         /* slots the last growth asked for (reported when it fails) */
    void *native;         /* the tape's machine code (native_abi.h), or NULL; owned by Tape */
    void *fused;          /* the fusion plan of its elementwise chains (fuse.h), or NULL;
                           * owned by Tape, which made it (the sweeps ignore a stale one) */
} fa_tape;

fa_tape *fa_tape_new(void);
void fa_tape_free(fa_tape *t);

/* Each returns FA_OK and stores the new slot (or guard outcome), or an error code. */
int fa_input(fa_tape *t, double x, int32_t *slot);
int fa_const(fa_tape *t, double x, int32_t *slot);
int fa_op1(fa_tape *t, int op, int32_t a, int32_t *slot);
int fa_op2(fa_tape *t, int op, int32_t a, int32_t b, int32_t *slot);
int fa_op_ranged(fa_tape *t, int op, int32_t a, int32_t sa, int32_t b, int32_t sb,
                 int32_t n, int32_t *slot);
int fa_const_array(fa_tape *t, const double *x, int64_t n, int32_t *first);
int fa_gather(fa_tape *t, const int64_t *idx, int64_t n, int32_t *first);
int fa_reduce(fa_tape *t, int op, int32_t a, int64_t n, int64_t m, int32_t *first);
int fa_matmul_rec(fa_tape *t, int32_t a, int32_t b, int64_t m, int64_t k, int64_t p,
                  int32_t *first);
int fa_guard(fa_tape *t, int op, int32_t a, int32_t b, int *outcome);
/* A CALLBACK record over the n-slot range at a with m results; values[0..m) are the
 * results at recording time (computed by the caller, who owns the function `id`). */
int fa_callback(fa_tape *t, int32_t a, int64_t n, int64_t m, int32_t id, const double *values,
                int32_t *first);

/* Record the adjoint computation of records [lo, hi) for the adjoint `seed` (a slot) of
 * slot `out` (emit.c).  adj has one entry per slot at the call, all -1; on return adj[s]
 * is the slot holding d out / d s (-1: zero). */
int fa_emit_reverse(fa_tape *t, int64_t lo, int64_t hi, int32_t out, int32_t seed, int32_t *adj);

/* Activity analysis: given which inputs are differentiated (active[i] for input i), flag
 * every operand that depends on none of them, so the reverse sweep skips its adjoint
 * (constants, data inputs, and everything computed from them only). */
int fa_mark_passive(fa_tape *t, const uint8_t *active_inputs);

/* Copy the constants' values into `dst` (a value array of nslot doubles). */
void fa_copy_consts(const fa_tape *t, double *dst);

/* Is `slot` a constant of the pool?  (inputs and results are not) */
int fa_is_const(const fa_tape *t, int32_t slot);

#endif /* FASTAD_TAPE_H */
