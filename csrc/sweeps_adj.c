/*
 * sweeps_adj.c -- the one compilation, per extension module, of the ranged records'
 * tangent and adjoint element loops (sweeps.h; see FA_SWEEP_API there).  Only the modules
 * that run tangent or reverse sweeps link it (fastad._tape, fastad._batch).
 */
#define FA_SWEEPS_ADJ
#include "sweeps.h"
