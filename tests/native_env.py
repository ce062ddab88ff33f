"""What the native-code tests share: a private code cache with -Werror on the generated
code (a module-scoped autouse fixture, imported by each module), and bit-for-bit equality."""
import os

import numpy as np
import pytest


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """A private cache for the importing module, and -Werror on the generated code."""
    d = tmp_path_factory.mktemp("native-cache")
    old = {k: os.environ.get(k) for k in ("FASTAD_CACHE_DIR", "FASTAD_NATIVE_CFLAGS")}
    os.environ["FASTAD_CACHE_DIR"] = str(d)
    # -Werror on top of what the caller passes (tools/sanitize.sh: the sanitizers)
    os.environ["FASTAD_NATIVE_CFLAGS"] = (old["FASTAD_NATIVE_CFLAGS"] or "") + " -Werror"
    yield d
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def same(a, b):
    """Bit-for-bit equality of floats and arrays (NaNs included)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and a.tobytes() == b.tobytes()
