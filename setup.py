"""Build fastad's Cython extensions against the C tape in csrc/.

Environment switches:
  FASTAD_DEBUG=1      -O0 -g, Cython bounds checks back on
  FASTAD_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer (-O1 -g; any UB report
                      aborts).  Python must then run with the ASan runtime preloaded:
                      see tools/sanitize.sh and docs/hardening.md.
"""
import ctypes.util
import glob
import os
import platform
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

CSRC = ["csrc/tape.c", "csrc/sweeps_fwd.c", "csrc/elem_fwd.c", "csrc/emit.c", "csrc/linalg.c",
        "csrc/loop.c"]
# the tangent and adjoint sweeps of ranged records and their element loops (elem.h), for the
# modules that run those sweeps (sweeps.h)
CSRC_ADJ = ["csrc/sweeps_tan.c", "csrc/sweeps_adj.c", "csrc/elem_tan.c", "csrc/elem_rev_a.c",
            "csrc/elem_rev_b.c"]
DEBUG = os.environ.get("FASTAD_DEBUG") == "1"
SANITIZE = os.environ.get("FASTAD_SANITIZE") == "1"

# -fno-math-errno: fastad never reads errno, and without it sqrt & co. inline and the
# element loops of ranged records vectorize.
compile_args = ["-std=c11", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-function",
                "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
compile_args += ["-O0", "-g"] if DEBUG else ["-O3"]
link_args = []
if SANITIZE:
    # after -O3/-O0 above and Python's own CFLAGS, so these win; -fno-wrapv undoes Python's
    # -fwrapv, so that a signed overflow (a wrapping index) is a UBSan report, not a wrap
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                "-fno-omit-frame-pointer"]
    # one copy of each element loop, not three target clones: the clones are the same C,
    # and checking it three times tripled the sanitizer build's longest compiles
    compile_args += sanitize + ["-O1", "-g", "-fno-wrapv", "-DFASTAD_NO_CLONES"]
    link_args += sanitize

# numpy 2's C API, at the oldest version fastad supports
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]


def extension(name, with_c=False, extra=()):
    return Extension(
        f"fastad.{name}",
        [f"src/fastad/{name}.pyx"] + (CSRC if with_c else []) + list(extra),
        include_dirs=["csrc", np.get_include()],
        depends=sorted(glob.glob("csrc/*.h") + glob.glob("src/fastad/*.pxd")),
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        libraries=["m"],
    )


# glibc's vector math library (sin and cos of a batch's lanes, csrc/batch_trig.h, which
# only fastad._batch includes and links).  The macro goes to every extension: they compile
# the same csrc/*.c files to the same objects, which must not differ between them.
MVEC = (sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")
        and ctypes.util.find_library("mvec") is not None)
if MVEC:
    macros.append(("FA_HAVE_LIBMVEC", "1"))
batch = extension("_batch", with_c=True, extra=CSRC_ADJ)
if MVEC:
    batch.libraries = ["mvec", "m"]
# the optimizer (csrc/optimize.c, csrc/fuse.c) runs on finished tapes: only fastad._tape needs it
extensions = [extension("_tape", with_c=True,
                        extra=CSRC_ADJ + ["csrc/optimize.c", "csrc/fuse.c"]),
              extension("_tracer", with_c=True), extension("_replay"), extension("_sparsity"),
              # batched replay (fastad.vmap): links its own copy of the C core for batch.h
              batch, extension("_native")]


# The element loops (elem.h: each op's loops in three target clones) take most of the
# build's compiler time: started first, so no core waits for one of them at the end.
SLOWEST = ["csrc/elem_rev_a.c", "csrc/elem_rev_b.c", "csrc/elem_tan.c", "csrc/elem_fwd.c"]


class build_ext_once(build_ext):
    """Compile every C file once, all in one pool, then link.

    Three modules link the C core (CSRC): built extension by extension, each compiled it
    again into the same object file (three compilers writing one file at once under a
    parallel build), and one module's files compiled one after another while the other
    core idled.  Here the extensions' compile calls are recorded, each object file is
    compiled once on `parallel` threads (the slowest first), then the links run.  What a
    compile command says is the same as before (docs/design.md, "Building")."""

    def build_extensions(self):
        self.check_extensions_list(self.extensions)
        cc = self.compiler
        jobs, links = {}, []

        def record_compile(sources, output_dir=None, depends=None, **kw):
            # (`depends`, which Cython fills per module, does not reach the command)
            objects = cc.object_filenames(sources, output_dir=output_dir)
            for src, obj in zip(sources, objects):
                job = (src, output_dir, sorted(kw.items(), key=repr))
                if jobs.setdefault(obj, job) != job:
                    raise RuntimeError(f"{src} is compiled with two sets of flags into {obj}")
            return objects

        cc.compile, cc.link_shared_object = record_compile, lambda *a, **kw: links.append((a, kw))
        try:
            for ext in self.extensions:          # up-to-date extensions record nothing
                self.build_extension(ext)
        finally:
            del cc.compile, cc.link_shared_object
        # then the largest files (Cython's) first
        order = sorted(jobs.values(), key=lambda j: (
            SLOWEST.index(j[0]) if j[0] in SLOWEST else len(SLOWEST), -os.path.getsize(j[0])))
        workers = os.cpu_count() if self.parallel is True else int(self.parallel or 1)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for _ in pool.map(lambda j: cc.compile([j[0]], output_dir=j[1], **dict(j[2])),
                              order):
                pass
        for a, kw in links:
            cc.link_shared_object(*a, **kw)


class build_py_with_headers(build_py):
    """Also install the op table's headers as fastad/_csrc/: native code generated at run
    time embeds them (fastad._codegen, docs/native.md)."""

    def run(self):
        super().run()
        dst = os.path.join(self.build_lib, "fastad", "_csrc")
        self.mkpath(dst)
        for h in sorted(f for f in os.listdir("csrc") if f.endswith(".h")):
            self.copy_file(os.path.join("csrc", h), os.path.join(dst, h))


setup(
    cmdclass={"build_py": build_py_with_headers, "build_ext": build_ext_once},
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives={"language_level": 3, "boundscheck": DEBUG, "wraparound": False},
    ),
    # object files compile in parallel on every core (build_ext_once), also under `pip
    # install .` (which passes no -j); sanitized objects get their own build tree, so
    # switching FASTAD_SANITIZE on or off never reuses the other build's objects
    # (build_ext --inplace still needs --force to switch)
    options={"build_ext": {"parallel": os.cpu_count() or 1},
             **({"build": {"build_base": "build/sanitize"}} if SANITIZE else {})},
)
