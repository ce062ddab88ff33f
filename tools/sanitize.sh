#!/usr/bin/env bash
# Run fastad's test suite against an AddressSanitizer + UndefinedBehaviorSanitizer build.
#
#   tools/sanitize.sh [fast|all] [pytest args...]
#
#   all (default)  the whole test suite (tests/)
#   fast           a quick subset: the core, replay, errors, threads, memory and
#                  sanitizer-finding tests (for CI)
#   anything after the mode is passed on to pytest (e.g. -k, -x, a test file)
#
# Environment:
#   FASTAD_SANITIZE_VENV   virtualenv to use (created if missing; default: a fresh one in a
#                          temporary directory, removed afterwards)
#   FASTAD_SANITIZE_LOGS   directory for the sanitizer reports (default: a temporary one)
#
# The extensions are built with FASTAD_SANITIZE=1 (see setup.py) and installed into the
# virtualenv -- never in place, so an editable install's .so files in src/fastad are not
# touched.  Python itself is not instrumented, so the ASan runtime is preloaded; leak
# detection is off because CPython does not free everything at exit.  Every report goes to
# a log file; the script fails if pytest fails or any report was written.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

mode="${1:-all}"
[ $# -gt 0 ] && shift
case "$mode" in
    all)  tests=(tests) ;;
    fast) tests=(tests/oracle/test_notes_example.py tests/contract/test_elementary.py
                 tests/unit/test_replay.py tests/contract/test_errors.py
                 tests/stress/test_threads.py tests/stress/test_memory.py
                 tests/stress/test_regressions.py tests/unit/test_rolling.py
                 tests/unit/test_blas.py tests/unit/test_linalg.py tests/unit/test_vmap.py
                 tests/unit/test_vmap_arrays.py tests/unit/test_vmap_trig.py
                 tests/unit/test_vmap_native.py tests/unit/test_vmap_buffers.py
                 tests/unit/test_fusion.py
                 tests/unit/test_pickle.py tests/unit/test_sparse.py
                 tests/unit/test_recurrence.py tests/unit/test_loops_of_loops.py
                 tests/unit/test_sparse_hvp.py tests/unit/test_sparse_compiled.py
                 tests/oracle/test_conventions_matrix.py) ;;
    *)    echo "usage: tools/sanitize.sh [fast|all] [pytest args...]" >&2; exit 2 ;;
esac

existing=()
for t in "${tests[@]}"; do [ -e "$t" ] && existing+=("$t"); done
tests=("${existing[@]}")

tmp="$(mktemp -d)"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

venv="${FASTAD_SANITIZE_VENV:-$tmp/venv}"
logs="${FASTAD_SANITIZE_LOGS:-$tmp/logs}"
mkdir -p "$logs"
rm -f "$logs"/asan.* "$logs"/ubsan.*

libasan="$(gcc -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
    echo "sanitize.sh: gcc has no libasan.so (Debian: apt-get install libasan8 / gcc)" >&2
    exit 2
fi

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet setuptools wheel "Cython>=3.0" "numpy>=1.26" \
    "pytest>=7" "hypothesis>=6.80" "mpmath>=1.3" "scipy>=1.10"
# Build from a clean copy of the sources (no build/, no generated .c or .so), so nothing
# of an earlier build is reused and the working tree is not touched; no build isolation:
# the venv's Cython and numpy.
mkdir "$tmp/src"
tar -C "$root" -cf - --exclude='*.so' --exclude='src/fastad/*.c' --exclude='*.egg-info' \
    setup.py pyproject.toml README.md csrc src | tar -C "$tmp/src" -xf -
FASTAD_SANITIZE=1 "$py" -m pip install --quiet --no-build-isolation --no-deps \
    --force-reinstall --no-cache-dir "$tmp/src"

# the installed extensions must be the sanitized ones, and must be what the tests import
(cd "$tmp" && "$py" - <<'PY'
import glob, os, subprocess, sys
import importlib.util
spec = importlib.util.find_spec("fastad")
pkg = os.path.dirname(spec.origin)
assert pkg.startswith(sys.prefix), f"fastad comes from {pkg}, not the sanitizer venv"
for so in glob.glob(os.path.join(pkg, "_*.so")):
    deps = subprocess.run(["ldd", so], capture_output=True, text=True).stdout
    assert "libasan" in deps and "libubsan" in deps, f"{so} is not sanitized"
print("sanitized fastad:", pkg)
PY
)

export LD_PRELOAD="$libasan"
# ASan reports (also those of subprocesses the tests start) go to log files; UBSan ignores
# log_path with GCC's split runtimes and writes to stderr, so pytest must leave fd 2 alone
# (--capture=sys) and the output is kept and searched as well.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$logs/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$logs/ubsan"
export PYTHONMALLOC=malloc          # Python objects through malloc too: ASan sees them
export PYTHONFAULTHANDLER=1         # on an abort, the Python stack names the test
unset PYTHONPATH                    # the installed (sanitized) fastad, not src/

set +e
"$py" -m pytest -p no:cacheprovider -q --capture=sys "${tests[@]}" "$@" 2>&1 \
    | tee "$logs/pytest.log"
status=${PIPESTATUS[0]}
set -e
unset LD_PRELOAD

found=0
for r in "$logs"/asan.* "$logs"/ubsan.*; do
    [ -e "$r" ] || continue
    found=1
    echo "==== sanitizer report $r ===="
    cat "$r"
done
if grep -qE "runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer" "$logs/pytest.log"; then
    found=1
    echo "==== sanitizer reports in the test output ===="
    grep -E -A40 "runtime error:|ERROR: AddressSanitizer" "$logs/pytest.log"
fi
if [ "$found" = 1 ]; then
    echo "sanitize.sh: sanitizer reports found (above)" >&2
    [ "$status" = 0 ] && status=1
elif [ "$status" = 0 ]; then
    echo "sanitize.sh: $mode: tests passed, no sanitizer reports"
else
    echo "sanitize.sh: pytest failed (exit $status), no sanitizer report" >&2
fi
exit "$status"
