/*
 * loop_sweeps.h -- the sweeps of a LOOP record (loop.h), included at the end of sweeps.h:
 * the body's scalar kernels, iteration after iteration (the reverse sweep backwards), in
 * exactly the order of the unrolled records, so results are the same bit for bit.
 *
 * The kernels are the op table's scalar ones (the same expressions as fa_fwd / fa_tan /
 * fa_rev), in a switch of their own: a body record is always scalar, so there is no
 * ranged test per record, and an iteration's slots are plain int64 locals (body slot plus
 * iteration times stride), never a record built in memory -- a record struct passed to
 * the generic kernels went through the stack, and the loads of the values waited on it
 * (the LOOP record then ran about 1.45x slower than its unrolled records).
 */
#ifndef FASTAD_LOOP_SWEEPS_H
#define FASTAD_LOOP_SWEEPS_H

#include "loop.h"

/* Iteration j's slots of body record q: ir, ia, ib (fa_loop_valid checked every
 * iteration's slots lie inside the tape).  ib of a unary record is unused. */
#define FA_LOOP_SLOTS(body, step, q, j)                                         \
    const int64_t ir = (body)[q].r + (j) * (int64_t)(step)[q].r;                \
    const int64_t ia = (body)[q].a + (j) * (int64_t)(step)[q].a;                \
    const int64_t ib = (body)[q].b + (j) * (int64_t)(step)[q].b;                \
    const unsigned fl = (body)[q].flags;                                        \
    (void)ir; (void)ib; (void)fl

#define FA_KNONE(N, S, T) case FA_##N: break;

static int fa_loop_fwd_switch(const fa_rec *p, double *v, const int32_t *ix)
{
    const int64_t trips = p[1].r, P = p[1].a;
    const fa_rec *body = p + 2, *step = p + 2 + P;
    (void)ix;
    for (int64_t j = 0; j < trips; j++)
        for (int64_t q = 0; q < P; q++) {
            FA_LOOP_SLOTS(body, step, q, j);
            switch (step[q].flags) {
#define FA_K1(N, S, V, DA) case FA_##N: FA_S_FWD1(V, ir, ia) break;
#define FA_K2(N, S, V, DA, DB) case FA_##N: FA_S_FWD2(V, ir, ia, ib) break;
#define FA_KG(N, S, T) case FA_##N: FA_S_GUARD(T, ia, ib, fl, return 1) break;
            FA_UNARY_OPS(FA_K1)
            FA_BINARY_OPS(FA_K2)
            FA_GUARD_OPS(FA_KG)
#undef FA_K1
#undef FA_K2
#undef FA_KG
            default:    /* fa_loop_valid admits no other op */
                __builtin_unreachable();
            }
        }
    return 0;
}

void fa_loop_tan(const fa_rec *p, const double *v, double *t, const int32_t *ix)
{
    const int64_t trips = p[1].r, P = p[1].a;
    const fa_rec *body = p + 2, *step = p + 2 + P;
    (void)ix;
    for (int64_t j = 0; j < trips; j++)
        for (int64_t q = 0; q < P; q++) {
            FA_LOOP_SLOTS(body, step, q, j);
            switch (step[q].flags) {
#define FA_K1(N, S, V, DA) case FA_##N: FA_S_TAN1(DA, ir, ia) break;
#define FA_K2(N, S, V, DA, DB) case FA_##N: FA_S_TAN2(DA, DB, ir, ia, ib) break;
            FA_UNARY_OPS(FA_K1)
            FA_BINARY_OPS(FA_K2)
            FA_GUARD_OPS(FA_KNONE)     /* guards carry no derivative */
#undef FA_K1
#undef FA_K2
            default:    /* fa_loop_valid admits no other op */
                __builtin_unreachable();
            }
        }
}

/* A zero adjoint skips the record, as fa_rev does. */
static void fa_loop_rev_switch(const fa_rec *p, const double *v, double *g, const int32_t *ix)
{
    const int64_t trips = p[1].r, P = p[1].a;
    const fa_rec *body = p + 2, *step = p + 2 + P;
    (void)ix;
    for (int64_t j = trips - 1; j >= 0; j--)
        for (int64_t q = P - 1; q >= 0; q--) {
            FA_LOOP_SLOTS(body, step, q, j);
            switch (step[q].flags) {
#define FA_K1(N, S, V, DA) case FA_##N: FA_S_REV1(DA, ir, ia, fl) break;
#define FA_K2(N, S, V, DA, DB) case FA_##N: FA_S_REV2(DA, DB, ir, ia, ib, fl) break;
            FA_UNARY_OPS(FA_K1)
            FA_BINARY_OPS(FA_K2)
            FA_GUARD_OPS(FA_KNONE)
#undef FA_K1
#undef FA_K2
            default:    /* fa_loop_valid admits no other op */
                __builtin_unreachable();
            }
        }
}

/* ---- threaded kernels (GCC / Clang: labels as values) ------------------------------
 * Once per sweep the body becomes a plan: per record the address of its kernel, its
 * iteration-0 slots and strides, and its flags.  A kernel computes its slots as slot +
 * j * stride (multiplies beat advancing the slots in memory) and jumps straight to the
 * next record's kernel (no loop test, no switch bound check, one indirect jump per kernel,
 * which the CPU predicts from the body's periodic order): a LOOP record replays faster
 * than its unrolled records (docs/design.md, "LOOP records").  The plan lives on the stack for bodies of
 * up to FA_LOOP_PLAN_STACK records, else in one malloc per sweep; if that fails, the
 * switch kernels above run. */
#if defined(__GNUC__)
#define FA_LOOP_PLAN_STACK 64

typedef struct {
    const void *lab;          /* the kernel of the record's op */
    int64_t r, a, b;          /* its slots in iteration 0 */
    int64_t dr, da, db;       /* their strides */
    unsigned fl;              /* its flags (guard outcome, passive operands) */
} fa_loop_plan;

/* The plan of p's body, its kernels from labs; NULL when out of memory. */
static fa_loop_plan *fa_loop_plan_make(const fa_rec *p, const void *const *labs,
                                       fa_loop_plan *stack)
{
    const int64_t P = p[1].a;
    const fa_rec *body = p + 2, *step = p + 2 + P;
    fa_loop_plan *plan = stack;
    if (P + 2 > FA_LOOP_PLAN_STACK) {
        plan = (fa_loop_plan *)malloc((size_t)(P + 2) * sizeof(fa_loop_plan));
        if (!plan) return NULL;
    }
    for (int64_t q = 0; q < P; q++) {
        fa_loop_plan *c = &plan[q + 1];
        c->lab = labs[step[q].flags];
        c->dr = step[q].r; c->da = step[q].a; c->db = step[q].b;
        c->r = body[q].r;
        c->a = body[q].a;
        c->b = body[q].b;
        c->fl = body[q].flags;
    }
    return plan;
}

/* record c's slots in iteration j */
#define FA_SR (c->r + j * c->dr)
#define FA_SA (c->a + j * c->da)
#define FA_SB (c->b + j * c->db)

int fa_loop_fwd(const fa_rec *p, double *v, const int32_t *ix)
{
    static const void *const labs[FA_NUM_OPS] = {       /* read-only */
#define FA_L(N, ...) [FA_##N] = &&fwd_##N,
        FA_UNARY_OPS(FA_L) FA_BINARY_OPS(FA_L) FA_GUARD_OPS(FA_L)
#undef FA_L
    };
    const int64_t trips = p[1].r, P = p[1].a;
    if (trips <= 0) return 0;
    fa_loop_plan stack[FA_LOOP_PLAN_STACK];
    fa_loop_plan *plan = fa_loop_plan_make(p, labs, stack), *c;
    if (!plan) return fa_loop_fwd_switch(p, v, ix);
    plan[P + 1].lab = &&next;
    int64_t j = 0;
    int failed = 0;
    c = plan + 1;
    goto *c->lab;
#define FA_ADV() c++; goto *c->lab
#define FA_K1(N, S, V, DA) fwd_##N: FA_S_FWD1(V, FA_SR, FA_SA) FA_ADV();
#define FA_K2(N, S, V, DA, DB) fwd_##N: FA_S_FWD2(V, FA_SR, FA_SA, FA_SB) FA_ADV();
#define FA_KG(N, S, T) fwd_##N: \
        FA_S_GUARD(T, FA_SA, FA_SB, c->fl, failed = 1; goto done) FA_ADV();
    FA_UNARY_OPS(FA_K1)
    FA_BINARY_OPS(FA_K2)
    FA_GUARD_OPS(FA_KG)
#undef FA_K1
#undef FA_K2
#undef FA_KG
next:
    if (++j < trips) { c = plan + 1; goto *c->lab; }
done:
    if (plan != stack) free(plan);
    return failed;
}

void fa_loop_rev(const fa_rec *p, const double *v, double *g, const int32_t *ix)
{
    static const void *const labs[FA_NUM_OPS] = {       /* read-only */
#define FA_L(N, ...) [FA_##N] = &&rev_##N,
        FA_UNARY_OPS(FA_L) FA_BINARY_OPS(FA_L) FA_GUARD_OPS(FA_L)
#undef FA_L
    };
    const int64_t trips = p[1].r, P = p[1].a;
    if (trips <= 0) return;
    fa_loop_plan stack[FA_LOOP_PLAN_STACK];
    fa_loop_plan *plan = fa_loop_plan_make(p, labs, stack), *c;
    if (!plan) { fa_loop_rev_switch(p, v, g, ix); return; }
    plan[0].lab = &&next;
    int64_t j = trips - 1;
    c = plan + P;
    goto *c->lab;
#undef FA_ADV
#define FA_ADV() c--; goto *c->lab
#define FA_K1(N, S, V, DA) rev_##N: FA_S_REV1(DA, FA_SR, FA_SA, c->fl) FA_ADV();
#define FA_K2(N, S, V, DA, DB) rev_##N: FA_S_REV2(DA, DB, FA_SR, FA_SA, FA_SB, c->fl) FA_ADV();
#define FA_KG(N, S, T) rev_##N: { FA_ADV(); }      /* guards carry no derivative */
    FA_UNARY_OPS(FA_K1)
    FA_BINARY_OPS(FA_K2)
    FA_GUARD_OPS(FA_KG)
#undef FA_K1
#undef FA_K2
#undef FA_KG
#undef FA_ADV
next:
    if (--j >= 0) { c = plan + P; goto *c->lab; }
    if (plan != stack) free(plan);
}
#undef FA_SR
#undef FA_SA
#undef FA_SB
#else
int fa_loop_fwd(const fa_rec *p, double *v, const int32_t *ix)
{
    return fa_loop_fwd_switch(p, v, ix);
}

void fa_loop_rev(const fa_rec *p, const double *v, double *g, const int32_t *ix)
{
    fa_loop_rev_switch(p, v, g, ix);
}
#endif

#undef FA_LOOP_SLOTS
#undef FA_KNONE

#endif /* FASTAD_LOOP_SWEEPS_H */
