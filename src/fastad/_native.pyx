# cython: language_level=3, boundscheck=False, wraparound=False
"""Loading a tape's machine code: dlopen, dlsym, and the atomic swap into the tape.

fastad.native writes and compiles the C (docs/native.md); this module only opens the
shared object, checks that it is the one asked for (the key it carries must match), and
publishes its sweep functions to the tape, whose sweeps (_tape.pyx) then call them
through function pointers.  Shared objects stay loaded for the life of the process: a
replay in another thread may be running their code, and the same file serves every tape
with the same structure.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport malloc, free
from libc.string cimport strcmp
cimport numpy as cnp
import numpy as np

from fastad._tape cimport Tape, fa_tape, fa_rec, native_runtime
from fastad.ops import Op

cdef int _LOOP = Op.LOOP

cnp.import_array()

cdef extern from "<dlfcn.h>" nogil:
    void *dlopen(const char *filename, int flags)
    void *dlsym(void *handle, const char *symbol)
    int dlclose(void *handle)
    char *dlerror()
    int RTLD_NOW
    int RTLD_LOCAL

cdef extern from "native_abi.h" nogil:
    ctypedef struct fa_native:
        void *fwd
        void *tan
        void *rev
        int fused
        const int64_t *assigned
        int64_t nassigned
        void *fwd_x
        void *rev_x
        void *vg_x
    const fa_native *fa_native_get(const fa_tape *t)
    void fa_native_set(fa_tape *t, fa_native *n)


def raw_records(Tape tape):
    """The tape's records as an int64 array of rows (op, flags, r, a, b), and their bytes
    (what the cache key hashes: the code depends on nothing else of the tape)."""
    cdef fa_tape *t = tape.c
    cdef int64_t i, n = t.nrec
    out = np.empty((n, 5), dtype=np.int64)
    cdef int64_t[:, ::1] o = out
    for i in range(n):
        o[i, 0] = t.rec[i].op
        o[i, 1] = t.rec[i].flags
        o[i, 2] = t.rec[i].r
        o[i, 3] = t.rec[i].a
        o[i, 4] = t.rec[i].b
    return out


def straight_line(Tape tape, bint executed=False):
    """Records that are not ranged (nor EXT words): the generated code's statements.
    `executed`: the scalar records a replay runs instead, a LOOP record counting its trip
    count times its body (what the interpreter dispatches one by one)."""
    cdef fa_tape *t = tape.c
    cdef int64_t i, n = 0
    for i in range(t.nrec):
        if not (t.rec[i].flags & 1):        # FA_RANGED
            n += 1
        elif executed and t.rec[i].op == _LOOP and i + 1 < t.nrec:
            n += <int64_t>t.rec[i + 1].r * t.rec[i + 1].a     # EXT word: T, P (csrc/loop.h)
    return n


def record_bytes(Tape tape):
    cdef fa_tape *t = tape.c
    return (<char *>t.rec)[:t.nrec * sizeof(fa_rec)] if t.nrec else b""


def index_pool(Tape tape):
    """Copy of the tape's gather index pool (int32)."""
    cdef fa_tape *t = tape.c
    out = np.empty(t.nix, dtype=np.int32)
    cdef int32_t[::1] o = out
    cdef int64_t i
    for i in range(t.nix):
        o[i] = t.ix[i]
    return out


def is_native(Tape tape):
    return fa_native_get(tape.c) != NULL


cdef void *symbol(void *h, bytes name):
    return dlsym(h, <const char *>name)


def install(Tape tape, str path, bytes key, bint fwd, bint tan, bint rev):
    """Open the shared object at `path`, check it carries `key`, and make the tape's sweeps
    call its code (the sweeps not asked for stay interpreted).  Raises OSError if the file
    cannot be loaded or is not the one asked for; then nothing changes."""
    cdef bytes bpath = path.encode()
    cdef void *h = dlopen(bpath, RTLD_NOW | RTLD_LOCAL)
    cdef const char *k
    cdef fa_native *n
    cdef const int64_t *na
    cdef void (*set_rt)(const void *) noexcept nogil
    if h == NULL:
        err = dlerror()
        raise OSError(f"cannot load {path}: {err.decode(errors='replace') if err else '?'}")
    k = <const char *>symbol(h, b"fastad_key")
    if k == NULL or strcmp(k, <const char *>key) != 0:
        # closed, so that a rebuilt file under this name is loaded afresh (the loader
        # would otherwise hand back this object, matched by its name)
        dlclose(h)
        raise OSError(f"{path} does not carry the expected key (a stale or foreign file)")
    # the runtime's kernels for the records native code calls back for (set before the
    # sweeps are published below; the same constant for every object and tape)
    set_rt = <void (*)(const void *) noexcept nogil>symbol(h, b"fastad_set_rt")
    if set_rt != NULL:
        set_rt(native_runtime())
    n = <fa_native *>malloc(sizeof(fa_native))
    if n == NULL:
        raise MemoryError("fastad: cannot allocate the native function table")
    n.fwd = symbol(h, b"fastad_fwd") if fwd else NULL
    n.tan = symbol(h, b"fastad_tan") if tan else NULL
    n.rev = symbol(h, b"fastad_rev") if rev else NULL
    # code that runs the fused chains as planned marks itself (_codegen.generate): its
    # reverse sweep then needs only the adjoints fa_fused_zero zeroes
    n.fused = symbol(h, b"fastad_fused") != NULL
    # adjoint ranges its reverse sweep assigns rather than adds to (_codegen.assigned_loops):
    # the sweeps zero only the others (fa_native_zero)
    n.assigned = <const int64_t *>symbol(h, b"fastad_assigned") if rev else NULL
    na = <const int64_t *>symbol(h, b"fastad_nassigned")
    n.nassigned = na[0] if (n.assigned != NULL and na != NULL) else 0
    # in-place sweeps (docs/native.md, "Inputs read in place"): both, or neither
    n.fwd_x = symbol(h, b"fastad_fwd_x") if fwd and rev else NULL
    n.rev_x = symbol(h, b"fastad_rev_x") if fwd and rev else NULL
    n.vg_x = symbol(h, b"fastad_vg_x") if fwd and rev else NULL
    if n.fwd_x == NULL or n.rev_x == NULL or not n.fused:
        n.fwd_x = n.rev_x = n.vg_x = NULL
    if (fwd and n.fwd == NULL) or (tan and n.tan == NULL) or (rev and n.rev == NULL):
        free(n)
        raise OSError(f"{path} lacks a sweep function it should have")
    if fa_native_get(tape.c) != NULL:      # installed already (by another thread): keep it
        free(n)
        return False
    # the GIL serialises installers; replaying threads read the pointer atomically
    fa_native_set(tape.c, n)
    return True
