"""tensortools side of bench_ntf.py, run by the tensortools venv's python (see reference_envs.py).

Each message names a float32 tensor (.npy), a file of starting factors (.npz
with A, B, C of shape (restarts, n, rank)) and an iteration count; the worker
fits ``tensortools.ncp_hals`` from each listed restart's start in turn (tol 0,
so exactly ``iters`` iterations) and returns its own wall time and each fit's
final relative error (recomputed in float64, untimed).
"""

import time

import numpy as np
import tensortools as tt

from _harness import serve

_cache = {}


def _load(path):
    if path not in _cache:
        _cache[path] = np.load(path)
    return _cache[path]


def fit(msg):
    X = _load(msg["tensor"])
    start = _load(msg["init"])
    inits = [tt.KTensor([np.ascontiguousarray(start[m][b], dtype=np.float32) for m in "ABC"])
             for b in msg["restarts"]]
    t0 = time.perf_counter()
    fits = [tt.ncp_hals(X, msg["rank"], init=u, max_iter=msg["iters"], tol=0, verbose=False) for u in inits]
    seconds = time.perf_counter() - t0
    # untimed: each fit's relative error recomputed exactly (float64), not tensortools' float32 running estimate
    X64 = X.astype(np.float64)
    errors = [float(np.linalg.norm(X64 - np.einsum("ir,jr,kr->ijk", *[f.astype(np.float64) for f in fit.factors]))
                    / np.linalg.norm(X64)) for fit in fits]
    return {"seconds": seconds, "errors": errors, "reported_errors": [float(f.obj_hist[-1]) for f in fits],
            "dtype": str(X.dtype)}


if __name__ == "__main__":
    serve(fit)
