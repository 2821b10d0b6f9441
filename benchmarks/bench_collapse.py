"""Benchmark: streaming NC metrics (workbench.collapse) against a two-pass NumPy Papyan reference.

All read the same float32 feature chunks (generated from a seed, so 1e6 x 512
samples never sit in memory at once), chunk by chunk in turn, and compute NC1-NC4
with float64 results; only the metric code is timed, not the generation. Each
reads the data twice. The reference: class means, then the centred covariance
and NC4. The workbench in its two modes: ``scatter="projected"`` (what
``nc_metrics`` runs): class means, then the within-class scatter projected on
the centred means and NC4; ``scatter="full"``: the one-pass d x d statistics,
then NC4 (which needs the final means). Also times the default digits
experiment. Prints ratios and writes benchmarks/results/collapse.json.

    python benchmarks/bench_collapse.py [--samples 1000000] [--dim 512] [--classes 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import workbench
from workbench.collapse import NCAccumulator, run_experiment

METRICS = ["nc1", "nc2_equinorm_h", "nc2_equinorm_w", "nc2_equiangle", "nc2_max_angle", "nc2_etf", "nc2_of", "nc3",
           "nc4"]


def make_chunks(n_samples: int, dim: int, n_classes: int, chunk: int, seed: int = 0):
    """A re-iterable source of (float32 features, int labels) chunks with planted class structure."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)).astype(np.float32) * 2.0

    def chunks():
        for i, start in enumerate(range(0, n_samples, chunk)):
            r = np.random.default_rng([seed, i])
            n = min(chunk, n_samples - start)
            y = r.integers(0, n_classes, size=n)
            x = centres[y] + r.standard_normal((n, dim), dtype=np.float32)
            yield x, y

    return chunks, centres


class NumpyPapyan:
    """Papyan et al.'s definitions, vectorised NumPy, two passes: class means, then covariance and NC4."""

    def __init__(self, n_classes: int, dim: int, W: np.ndarray, b: np.ndarray) -> None:
        self.k, self.W, self.b = n_classes, W, b
        self.sums, self.counts = np.zeros((n_classes, dim)), np.zeros(n_classes)
        self.sigma_w, self.mismatches = np.zeros((dim, dim)), 0

    def first_pass(self, x: np.ndarray, y: np.ndarray) -> None:
        np.add.at(self.sums, y, x.astype(np.float64))
        self.counts += np.bincount(y, minlength=self.k)

    def second_pass(self, x: np.ndarray, y: np.ndarray) -> None:
        if not hasattr(self, "means"):
            self.means = self.sums / self.counts[:, None]
            self.sq_means = (self.means**2).sum(axis=1)
        x = x.astype(np.float64)
        centred = x - self.means[y]
        self.sigma_w += centred.T @ centred
        decided = np.argmax(x @ self.W.T + self.b, axis=1)
        nearest = np.argmin(self.sq_means - 2 * x @ self.means.T, axis=1)
        self.mismatches += int((decided != nearest).sum())

    def result(self) -> dict[str, float]:
        k, W, means = self.k, self.W, self.means
        n = self.counts.sum()
        sigma_w = self.sigma_w / n
        mt = means - means.mean(axis=0)
        lam, vec = np.linalg.eigh(mt.T @ mt / k)
        lam, vec = lam[::-1][: k - 1], vec[:, ::-1][:, : k - 1]
        norms = np.linalg.norm(mt, axis=1)
        cos = (mt @ mt.T / np.outer(norms, norms))[~np.eye(k, dtype=bool)]
        gram, gram_u, wn = mt @ mt.T, means @ means.T, np.linalg.norm(W, axis=1)
        out = {
            "nc1": np.trace(sigma_w @ (vec / lam) @ vec.T) / k,
            "nc2_equinorm_h": norms.std() / norms.mean(),
            "nc2_equinorm_w": wn.std() / wn.mean(),
            "nc2_equiangle": cos.std(),
            "nc2_max_angle": np.abs(cos + 1 / (k - 1)).mean(),
            "nc2_etf": np.linalg.norm(gram / np.linalg.norm(gram) - (np.eye(k) - 1 / k) / np.sqrt(k - 1)),
            "nc2_of": np.linalg.norm(gram_u / np.linalg.norm(gram_u) - np.eye(k) / np.sqrt(k)),
            "nc3": np.linalg.norm(W.T / np.linalg.norm(W) - mt.T / np.linalg.norm(mt)) ** 2,
            "nc4": self.mismatches / n,
        }
        return {key: float(v) for key, v in out.items()}


def compare(chunks, n_classes: int, dim: int, W: np.ndarray, b: np.ndarray,
            device: str) -> tuple[dict[str, dict], dict[str, float]]:
    """Run every contestant on the same chunks, interleaved chunk by chunk so that load
    from other processes on a shared machine falls on all alike; only the metric code is timed.

    Returns each contestant's metrics and seconds, keyed "projected", "full" and "numpy".
    """
    clock = {"projected": 0.0, "full": 0.0, "numpy": 0.0}

    def timed(who: str, fn, *args) -> None:
        t = time.perf_counter()
        fn(*args)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        clock[who] += time.perf_counter() - t

    accs = {mode: NCAccumulator(n_classes, dim, scatter=mode, device=device) for mode in ("projected", "full")}
    ref = NumpyPapyan(n_classes, dim, W, b)
    for x, y in chunks():
        for mode, acc in accs.items():
            timed(mode, acc.update, x, y)
        timed("numpy", ref.first_pass, x, y)
    for x, y in chunks():
        for mode, acc in accs.items():
            timed(mode, acc.second_pass, x, y, W, b)
        timed("numpy", ref.second_pass, x, y)
    out: dict[str, dict] = {}
    for mode, acc in accs.items():
        timed(mode, lambda: out.__setitem__(mode, acc.result(W, b)))
    timed("numpy", lambda: out.__setitem__("numpy", ref.result()))
    values = {mode: {name: float(out[mode][name]) for name in METRICS} for mode in accs}
    values["numpy"] = out["numpy"]
    return values, clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-experiment", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "collapse.json"))
    args = parser.parse_args()

    chunks, centres = make_chunks(args.samples, args.dim, args.classes, args.chunk)
    rng = np.random.default_rng(1)
    W = centres.astype(np.float64) + rng.normal(size=centres.shape)
    b = rng.normal(size=args.classes) * 0.1

    values, seconds = compare(chunks, args.classes, args.dim, W, b, args.device)
    ref, t_ref = values["numpy"], seconds["numpy"]
    print(f"NC metrics, {args.samples:.0e} samples x d={args.dim} x K={args.classes} on {args.device}")
    print(f"  numpy ref            {t_ref:8.2f} s  {args.samples / t_ref:12.0f} samples/s")
    contestants = {}
    for mode in ("projected", "full"):
        rel = {k: abs(values[mode][k] - ref[k]) / max(abs(ref[k]), 1e-300) for k in METRICS}
        t = seconds[mode]
        contestants[mode] = {"seconds": t, "samples_per_s": args.samples / t, "speed_ratio": t_ref / t,
                             "max_relative_disagreement": max(rel.values()), "relative_disagreement": rel,
                             "values": values[mode]}
        print(f"  workbench {mode:10s} {t:8.2f} s  {args.samples / t:12.0f} samples/s   "
              f"{t_ref / t:.2f}x numpy   worst relative disagreement {max(rel.values()):.1e}")
    headline = contestants["projected"]  # what nc_metrics runs

    result = {
        "benchmark": "collapse",
        "workbench_version": workbench.__version__,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "device": args.device, "torch": torch.__version__,
                    "numpy": np.__version__},
        "metrics": {
            "samples": args.samples, "dim": args.dim, "classes": args.classes, "chunk": args.chunk,
            "headline": "scatter='projected', the algorithm nc_metrics runs",
            "workbench_seconds": headline["seconds"], "numpy_seconds": t_ref,
            "workbench_samples_per_s": headline["samples_per_s"], "numpy_samples_per_s": args.samples / t_ref,
            "speed_ratio": headline["speed_ratio"], "target_ratio": 2.0,
            "max_relative_disagreement": headline["max_relative_disagreement"],
            "by_scatter_mode": contestants, "numpy": ref,
        },
    }
    if not args.skip_experiment:
        t = time.perf_counter()
        ds = run_experiment(progress=False, device=args.device)
        seconds = time.perf_counter() - t
        last = ds.isel(epoch=-1)
        print(f"default digits experiment: {seconds:.1f} s, final train accuracy {float(last.train_accuracy):.4f}, "
              f"NC1 at the last layer {float(last.nc1.isel(layer=-1)):.3g}")
        result["digits_experiment"] = {
            "seconds": seconds, "epochs": int(ds.attrs["epochs"]), "train_accuracy": float(last.train_accuracy),
            "nc1_by_layer": dict(zip(ds.layer.values.tolist(), map(float, last.nc1.values))),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
