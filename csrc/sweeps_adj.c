/*
 * sweeps_adj.c -- the one compilation, per build, of the ranged records' adjoint element
 * loops (sweeps.h; see FA_SWEEP_API there); the tangent ones are in sweeps_tan.c.  Only
 * the modules that run reverse sweeps link it (fastad._tape, fastad._batch).
 */
#define FA_SWEEPS_ADJ
#include "sweeps.h"
