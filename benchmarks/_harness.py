"""Shared harness of the benchmarks: fair, repeated, interleaved timings with agreement asserted.

Every benchmark in this folder times our code against a reference the same way:

* both sides get the same thread count (:func:`configure_threads` sets the
  OpenMP / BLAS / numba environment variables, threadpoolctl's limits and
  torch's; a reference in its own process gets :func:`thread_env`);
* each side is warmed up first (imports, JIT compilation, allocator), untimed;
* then the sides run in turn, ours, reference, ours, reference, ... at least
  five times each (:func:`interleave`), so that load from other processes on
  a shared machine falls on both alike; a reference living in another
  virtual environment stays one long-lived process (:class:`Worker`) so that
  its start-up is not timed;
* :func:`summary` gives min / median / max of each side and of the paired
  ratio reference / ours (> 1: ours is faster);
* :func:`assert_agreement` compares our answer with the reference's; a
  disagreement beyond the stated tolerance makes the benchmark exit non-zero
  (:meth:`Report.write` writes the JSON first, with the failure in it);
* the JSON (:class:`Report`) records the hardware (CPU model, measured
  single-thread float32 GEMM GFLOP/s and copy bandwidth), the thread counts,
  the load average before and after, and per row the reference's
  configuration, which ``scripts/bench_table.py`` turns into the README table.

Only the standard library is imported at module level, so reference workers
in other environments can import :func:`serve` from here.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the checkout's workbench, not an installed copy
    sys.path.insert(0, str(ROOT))
RESULTS = Path(__file__).resolve().parent / "results"
QUICK_RESULTS = RESULTS / "quick"
MIN_REPEATS = 5
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")
_RESULT_TAG = "@@RESULT "


class Disagreement(AssertionError):
    """Our answer differs from the reference's beyond the stated tolerance."""


# ---------------------------------------------------------------- threads and hardware

def thread_env(threads: int) -> dict[str, str]:
    """The environment variables that hold every native thread pool to ``threads``."""
    return {name: str(int(threads)) for name in _THREAD_VARS}


def configure_threads(threads: int) -> dict[str, Any]:
    """Hold this process's thread pools (env vars, threadpoolctl, torch if imported) to ``threads``.

    Returns the counts actually in force, for the JSON.
    """
    if int(threads) < 1:
        raise ValueError(f"threads: expected a positive integer, got {threads!r}")
    os.environ.update(thread_env(threads))
    counts: dict[str, Any] = {"requested": int(threads)}
    try:
        from threadpoolctl import threadpool_info, threadpool_limits

        threadpool_limits(int(threads))
        counts["threadpools"] = sorted({(p["internal_api"], p["num_threads"]) for p in threadpool_info()})
    except ImportError:
        counts["threadpools"] = "threadpoolctl not installed"
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(int(threads))
        counts["torch"] = torch.get_num_threads()
    return counts


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Measured single-thread float32 GEMM throughput (best of ``repeats`` n x n x n products), GFLOP/s."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    with threadpool_limits(1):
        a @ b
        best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def copy_bandwidth_gb_s(n_bytes: int = 1 << 28, repeats: int = 5) -> float:
    """Measured single-thread copy bandwidth of a large array (bytes read + written per second), GB/s."""
    import numpy as np

    src = np.ones(n_bytes // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_seconds(lambda: np.copyto(dst, src)) for _ in range(repeats))
    return 2 * n_bytes / best / 1e9


def hardware() -> dict[str, Any]:
    """CPU model and count, measured single-thread GEMM and copy bandwidth, versions."""
    import numpy as np

    info = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "gemm_float32_1thread_gflops": round(gemm_gflops(), 2),
            "copy_bandwidth_1thread_gb_s": round(copy_bandwidth_gb_s(), 2)}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def arguments(doc: str, quick_help: str):
    """The options every benchmark takes: --threads (both sides), --repeats, --quick, --out."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="threads of both sides (BLAS, OpenMP, torch, numba)")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS, help="interleaved runs per side")
    parser.add_argument("--quick", action="store_true", help=quick_help + "; written to results/quick/")
    parser.add_argument("--out", default=None, help="the result JSON (default results/NAME.json)")
    return parser


# ---------------------------------------------------------------- timing

def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stats(values) -> dict[str, float]:
    """min, median and max of ``values`` (and how many)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("values: expected at least one number, got none")
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def interleave(sides: dict[str, Callable[[], Any]], repeats: int = MIN_REPEATS, warmup: int = 1
               ) -> dict[str, list[dict[str, Any]]]:
    """Run each side ``warmup`` times untimed, then ``repeats`` times each in turn (a, b, a, b, ...).

    A side is a callable; it returns its measured seconds (a float) or a dict
    with ``"seconds"`` and whatever else it measured (a reference worker
    reports its own timing, so talking to it is not counted). A side that
    returns None, or a dict without ``"seconds"``, is timed here, around the call.

    Returns each side's list of per-run dicts, in run order.
    """
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats: expected at least {MIN_REPEATS} runs per side, got {repeats}")
    for _ in range(warmup):
        for fn in sides.values():
            fn()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            start = time.perf_counter()
            out = fn()
            elapsed = time.perf_counter() - start
            if out is None:
                out = {"seconds": elapsed}
            elif isinstance(out, dict):
                out = {"seconds": elapsed, **out}  # a "seconds" of its own wins
            else:
                out = {"seconds": float(out)}
            runs[name].append(out)
    return runs


def summary(runs: dict[str, list[dict[str, Any]]], ours: str, reference: str) -> dict[str, Any]:
    """min / median / max seconds of both sides and of the per-round ratio reference / ours."""
    a = [r["seconds"] for r in runs[ours]]
    b = [r["seconds"] for r in runs[reference]]
    if len(a) != len(b):
        raise ValueError(f"runs: expected as many runs of {ours!r} as of {reference!r}, got {len(a)} and {len(b)}")
    return {"ours_seconds": stats(a), "reference_seconds": stats(b),
            "ratio": stats([y / x for x, y in zip(a, b)]), "samples": {"ours": a, "reference": b}}


# ---------------------------------------------------------------- agreement

def _leaves(value, prefix: str = "") -> dict[str, Any]:
    """Nested dicts flattened to {"a.b": leaf}; leaves are numbers or arrays."""
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            out.update(_leaves(v, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def assert_agreement(name: str, ours, ref, rtol: float, *, atol: float = 0.0, dtype: str = "float64"
                     ) -> dict[str, Any]:
    """Check ``|ours - ref| <= rtol * |ref| + atol`` entry by entry; raise :class:`Disagreement` if not.

    ``ours`` and ``ref`` are numbers, arrays or (nested) dicts of them with
    the same keys and shapes; NaN on either side fails. ``dtype`` says in
    what precision the compared values were computed (recorded, not used).
    Returns the record that goes in the JSON: the worst relative
    disagreement, the tolerance and whether it held.
    """
    import numpy as np

    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"rtol, atol: expected non-negative tolerances, got {rtol!r}, {atol!r}")
    a, b = _leaves(ours), _leaves(ref)
    if a.keys() != b.keys():
        raise Disagreement(f"{name}: ours and the reference report different quantities: "
                           f"{sorted(a.keys() ^ b.keys())}", {"name": name, "passed": False})
    worst_key, worst_rel, failed, n = None, 0.0, [], 0
    for key in a:
        x, y = np.asarray(a[key], dtype=np.float64), np.asarray(b[key], dtype=np.float64)
        if x.shape != y.shape:
            raise Disagreement(f"{name}: {key or 'value'} has shape {x.shape} here, {y.shape} in the reference",
                               {"name": name, "passed": False})
        diff = np.abs(x - y)
        bad = ~(diff <= rtol * np.abs(y) + atol)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(diff == 0, 0.0, diff / np.abs(y))
        rel = np.where(np.isnan(rel), np.inf, rel)
        n += x.size
        if bad.any():
            failed.append(f"{key or 'value'}{[int(i) for i in np.argwhere(bad)[0]] if x.ndim else ''}")
        if x.size and rel.max() > worst_rel:
            worst_key, worst_rel = key or "value", float(rel.max())
    record = {"name": name, "rtol": rtol, "atol": atol, "dtype": dtype, "max_relative_disagreement": worst_rel,
              "worst": worst_key, "n_compared": n, "passed": not failed}
    if failed:
        record["failed"] = failed[:20]
        raise Disagreement(f"{name}: values differ beyond rtol {rtol} / atol {atol} in {len(failed)} of "
                           f"{len(a)} quantities (worst {worst_key}: relative {worst_rel:.3g}); e.g. {failed[:5]}",
                           record)
    return record


# ---------------------------------------------------------------- the result file

class Report:
    """One benchmark's JSON: machine, threads, load, rows (one per comparison) and agreement checks."""

    def __init__(self, benchmark: str, threads: int, quick: bool, argv: list[str] | None = None) -> None:
        self.data: dict[str, Any] = {
            "benchmark": benchmark, "format": "harness-1", "quick": bool(quick),
            "command": " ".join(["python", _script(), *(sys.argv[1:] if argv is None else argv)]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average": {"before": load_average()},
            "threads": configure_threads(threads),
            "hardware": hardware(),
            "rows": [], "agreement": [],
        }
        self.failures: list[str] = []
        self._pending: list[dict] = []  # agreement checks made since the last row

    def check(self, name: str, ours, ref, rtol: float, **kw) -> bool:
        """:func:`assert_agreement`, recorded; a failure is kept and ends the run non-zero at :meth:`write`."""
        try:
            record = assert_agreement(name, ours, ref, rtol, **kw)
        except Disagreement as exc:
            record = exc.args[1] if len(exc.args) > 1 else {"name": name, "passed": False}
            self.failures.append(exc.args[0])
            print(f"DISAGREEMENT {exc.args[0]}", file=sys.stderr, flush=True)
        else:
            print(f"agreement {name}: worst relative {record['max_relative_disagreement']:.2e} "
                  f"(rtol {rtol}, {record['dtype']})", flush=True)
        self.data["agreement"].append(record)
        self._pending.append(record)
        return record["passed"]

    def row(self, name: str, *, ours: str, reference: str, runs: dict[str, list[dict]], ours_key: str = "ours",
            reference_key: str = "reference", target: float | None = None, agreement: list[dict] | None = None,
            **extra) -> dict[str, Any]:
        """Add a comparison row: what ran on each side (``reference`` is its configuration) and the timings.

        ``agreement``: the checks that vouch for this row; default those made since the previous row.
        """
        if agreement is None:
            agreement, self._pending = self._pending, []
        row = {"name": name, "ours": ours, "reference": reference, "target_ratio": target,
               **summary(runs, ours_key, reference_key), "agreement": agreement, **extra}
        self.data["rows"].append(row)
        r, o, f = row["ratio"], row["ours_seconds"], row["reference_seconds"]
        print(f"{name}: ours {o['median']:.4g} s [{o['min']:.4g}, {o['max']:.4g}], reference "
              f"{f['median']:.4g} s [{f['min']:.4g}, {f['max']:.4g}]; ratio {r['median']:.2f}x "
              f"[{r['min']:.2f}, {r['max']:.2f}] over {r['n']} interleaved rounds", flush=True)
        return row

    def write(self, path: Path | None = None) -> Path:
        """Write the JSON (``results/quick/`` for a quick run); exit non-zero if any agreement failed."""
        self.data["load_average"]["after"] = load_average()
        self.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.data["agreement_passed"] = not self.failures
        if path is None:
            path = (QUICK_RESULTS if self.data["quick"] else RESULTS) / f"{self.data['benchmark']}.json"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.data, indent=1, default=_jsonable) + "\n")
        print(f"wrote {path}", flush=True)
        if self.failures:
            raise SystemExit("agreement failed:\n  " + "\n  ".join(self.failures))
        return path


def _script() -> str:
    """The running script's path relative to the checkout (as the command to rerun it)."""
    path = Path(sys.argv[0]).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---------------------------------------------------------------- reference workers in other environments

class Worker:
    """A long-lived reference process (another venv's python running ``script``), driven by JSON lines.

    ``call(**message)`` sends one message and returns the worker's reply (a
    dict); the worker times its own work, so start-up and the pipe are not
    counted. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, python, script, threads: int, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, **thread_env(threads), "PYTHONPATH": str(Path(__file__).resolve().parent),
                    **(env or {})}
        self.proc = subprocess.Popen([str(python), str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=full_env, bufsize=1)

    def call(self, **message) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(_RESULT_TAG):
                reply = json.loads(line[len(_RESULT_TAG):])
                if "error" in reply:
                    raise RuntimeError(f"reference worker failed:\n{reply['error']}")
                return reply
        raise RuntimeError(f"reference worker exited (code {self.proc.wait()}) before replying")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(handler: Callable[[dict], dict]) -> None:
    """The worker's side of :class:`Worker`: answer each JSON line of stdin with ``handler(message)``."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = handler(json.loads(line))
        except Exception:  # sent back to the parent, which raises it
            reply = {"error": traceback.format_exc()}
        print(_RESULT_TAG + json.dumps(reply, default=_jsonable), flush=True)
