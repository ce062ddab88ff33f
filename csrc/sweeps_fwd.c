/*
 * sweeps_fwd.c -- the one compilation, per extension module, of the ranged records'
 * forward element loops and of the LOOP records' sweeps (sweeps.h, loop_sweeps.h; see
 * FA_SWEEP_API there).  Every module with the C core links it: recording evaluates.
 */
#define FA_SWEEPS_FWD
#include "sweeps.h"
