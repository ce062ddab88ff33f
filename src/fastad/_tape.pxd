# cython: language_level=3
"""Declarations of the C tape (csrc/) and of the Tape extension type that owns one."""
from libc.stdint cimport int32_t, int64_t, uint8_t

cdef extern from "tape.h" nogil:
    ctypedef struct fa_rec:
        uint8_t op
        uint8_t flags
        int32_t r
        int32_t a
        int32_t b

    ctypedef struct fa_tape:
        fa_rec *rec
        int64_t nrec
        double *val
        int64_t nslot
        int32_t nin
        int64_t ncon
        int32_t *ix
        int64_t nix
        int64_t ncb
        void *owner
        int64_t want
        void *native
        void *fused

    ctypedef struct fa_op_info:
        const char *name
        int kind
        const char *da
        const char *db

    enum:
        FA_OK, FA_ENOMEM, FA_EOVERFLOW, FA_EORDER, FA_EARG, FA_ECALLBACK
        FA_RANGED, FA_TRUE
        FA_NUM_OPS, FA_EXT, FA_GATHER, FA_SUM, FA_PROD, FA_MAX, FA_MIN, FA_CUMSUM, FA_MATMUL
        FA_CALLBACK
        FA_KIND_UNARY, FA_KIND_BINARY, FA_KIND_GUARD, FA_KIND_STRUCT

    const fa_op_info fa_op_table[]

    fa_tape *fa_tape_new()
    void fa_tape_free(fa_tape *t)
    int fa_input(fa_tape *t, double x, int32_t *slot)
    int fa_const(fa_tape *t, double x, int32_t *slot)
    int fa_op1(fa_tape *t, int op, int32_t a, int32_t *slot)
    int fa_op2(fa_tape *t, int op, int32_t a, int32_t b, int32_t *slot)
    int fa_op_ranged(fa_tape *t, int op, int32_t a, int32_t sa, int32_t b, int32_t sb,
                     int32_t n, int32_t *slot)
    int fa_const_array(fa_tape *t, const double *x, int64_t n, int32_t *first)
    int fa_gather(fa_tape *t, const int64_t *idx, int64_t n, int32_t *first)
    int fa_reduce(fa_tape *t, int op, int32_t a, int64_t n, int64_t m, int32_t *first)
    int fa_matmul_rec(fa_tape *t, int32_t a, int32_t b, int64_t m, int64_t k, int64_t p,
                      int32_t *first)
    int fa_guard(fa_tape *t, int op, int32_t a, int32_t b, int *outcome)
    int fa_is_const(const fa_tape *t, int32_t slot)
    void fa_copy_consts(const fa_tape *t, double *dst)
    int fa_mark_passive(fa_tape *t, const uint8_t *active_inputs)
    int fa_callback(fa_tape *t, int32_t a, int64_t n, int64_t m, int32_t id,
                    const double *values, int32_t *first)
    int fa_emit_reverse(fa_tape *t, int64_t lo, int64_t hi, int32_t out, int32_t seed,
                        int32_t *adj)


cdef extern from "sweeps.h" nogil:
    ctypedef void (*fa_npy_loop)(char **args, const Py_ssize_t *dims, const Py_ssize_t *steps,
                                 void *data)
    ctypedef struct fa_vec_loop:
        fa_npy_loop fn
        void *data
    fa_vec_loop fa_vec_loops[]
    ctypedef void (*fa_dgemm_fn)(char *ta, char *tb, int *m, int *n, int *k, double *alpha,
                                 double *a, int *lda, double *b, int *ldb, double *beta,
                                 double *c, int *ldc) noexcept nogil
    fa_dgemm_fn fa_dgemm


cdef struct Work:
    # One set of sweep arrays.  `val` of the tape's main workspace is the recording's own
    # value array; other workspaces copy its constants.
    double *val
    double *adj
    double *tan


cdef class Tape:
    cdef fa_tape *c
    cdef readonly bint recording     # True while the traced function runs
    cdef readonly int32_t output_slot
    cdef Work main                   # the workspace of calls from one thread at a time
    cdef bint main_busy
    cdef Work *spare[4]              # private workspaces of finished concurrent replays
    cdef int nspare
    cdef public object meta          # the replay layer's record of the outputs (or None)
    cdef public list callbacks       # the custom_vjp functions of CALLBACK records, by id
    cdef public object optimized     # what the optimizer did to this tape (a dict), or None
    # machine code (fastad.native, docs/native.md): its policy object, and the replays left
    # before the policy is asked to compile (0: not counting)
    cdef public object native_policy
    cdef public int64_t native_countdown
    cdef int raise_pending(self) except -1
    cdef int _main(self) except -1
    cdef object __weakref__

    cdef int check(self, int err) except -1
    cdef int _live(self) except -1
    cdef tuple _struct_record(self, str name, const fa_rec *p)
    cdef int finish(self, int32_t out) except -1
    cdef Work *acquire(self) except NULL
    cdef void release(self, Work *w) noexcept
    cdef int ensure_adj(self, Work *w) except -1
    cdef int ensure_tan(self, Work *w) except -1


# Sweeps return 0 (forward: -1) when done, and on a failed guard the forward sweep returns
# the guard's index; -2 (forward) or -1 (others) means a callback raised: Tape.raise_pending.
cdef int64_t sweep_forward(const fa_tape *t, double *v) noexcept nogil
cdef int sweep_tangent(const fa_tape *t, const double *v, double *tan) noexcept nogil
cdef int sweep_reverse(const fa_tape *t, const double *v, double *adj, int32_t out,
                       double seed) noexcept nogil
cdef int sweep_reverse_seeded(const fa_tape *t, const double *v, double *adj) noexcept nogil
# native sweeps reading the inputs from the caller's array (docs/native.md, "Inputs read
# in place"): only when has_inplace, and the output slot is not an input
cdef bint has_inplace(const fa_tape *t) noexcept nogil
cdef int64_t sweep_forward_inplace(const fa_tape *t, double *v, const double *x) noexcept nogil
cdef void sweep_reverse_inplace(const fa_tape *t, double *v, const double *x,
                                double *adj, double *gx, int32_t out) noexcept nogil
# the numpy loops of ranged records, for fastad._batch's own copy of the C core
cdef void copy_vec_loops(fa_vec_loop *dst) noexcept
# the runtime kernels native code calls back for (csrc/native_abi.h, fa_native_rt)
cdef const void *native_runtime() noexcept
