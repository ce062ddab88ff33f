/*
 * sweeps_tan.c -- the one compilation, per build, of the ranged records' tangent element
 * loops (sweeps.h; see FA_SWEEP_API there), apart from the adjoint ones (sweeps_adj.c) so
 * that the two compile in parallel.  Only the modules that run tangent sweeps link it
 * (fastad._tape, fastad._batch).
 */
#define FA_SWEEPS_TAN
#include "sweeps.h"
