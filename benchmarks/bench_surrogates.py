"""Benchmark: calibration and power of the surrogate test of ``dynamic_connectome``.

* **False positives.** Recordings with no coupling (planted synthetic traces,
  each neuron rolled circularly by its own random offset with ``np.roll``) are
  fitted with ``n_surrogates=19``; a seed is a false positive when *any*
  component has ``explained_variance_p <= 0.05``. Under the null this
  family-wise rate is at most 5% (exact for shift surrogates); reported with a
  95% Clopper-Pearson interval, for ``shift`` and ``phase`` surrogates.
* **Power.** Planted recordings (two motifs, one community each) fitted at
  rank 3: the fraction of seeds where both planted components are significant
  and the extra component is not.

Run: ``python benchmarks/bench_surrogates.py [--seeds 200]``; results go to
``benchmarks/results/surrogates.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy.stats import beta

from workbench.connectome import dynamic_connectome, synthetic

OUT = Path(__file__).resolve().parent / "results" / "surrogates.json"


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    low = beta.ppf((1 - level) / 2, k, n - k + 1) if k > 0 else 0.0
    high = beta.ppf(1 - (1 - level) / 2, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


def false_positives(seeds: int, method: str) -> dict:
    hits, min_p, t0 = 0, [], time.perf_counter()
    for seed in range(seeds):
        planted = synthetic(10, 1, 160, 1, seed=seed).traces
        rng = np.random.default_rng(10_000 + seed)
        chance = planted.copy(data=np.stack([[np.roll(t, rng.integers(160)) for t in a] for a in planted.values]))
        out = dynamic_connectome(chance, rank=2, n_restarts=2, max_iter=100, tol=1e-4, n_surrogates=19,
                                 surrogate_method=method, covariates={}, community_method="leiden", seed=seed,
                                 device="cpu")
        p = float(out["explained_variance_p"].min())
        min_p.append(p)
        hits += p <= 0.05
    return {"method": method, "seeds": seeds, "false_positives": int(hits), "rate": hits / seeds,
            "rate_ci95": clopper_pearson(hits, seeds), "mean_min_p": float(np.mean(min_p)),
            "seconds": time.perf_counter() - t0}


def power(seeds: int) -> dict:
    found, t0 = 0, time.perf_counter()
    for seed in range(seeds):
        ds = synthetic(20, 1, 400, 2, communities_per_motif=1, seed=seed)
        out = dynamic_connectome(ds, rank=3, n_restarts=3, tol=1e-4, n_surrogates=19, covariates={},
                                 community_method="leiden", seed=seed, device="cpu")
        ia = np.searchsorted(ds["neuron"].values, out["neuron_a"].values)
        ib = np.searchsorted(ds["neuron"].values, out["neuron_b"].values)
        matched = set()
        for motif in range(2):
            member = ds["community"].values[motif] > 0
            pairs = member[ia] & member[ib]
            matched.add(int(np.argmax([np.corrcoef(pairs, out["pair_factor"][:, c])[0, 1] for c in range(3)])))
        significant = set(np.flatnonzero(out["significant"].values).tolist())
        found += len(matched) == 2 and significant == matched
    return {"seeds": seeds, "exactly_the_planted_significant": found / seeds, "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--power-seeds", type=int, default=20)
    args = parser.parse_args()
    results = {"machine": {"platform": platform.platform(), "processor": platform.processor()},
               "false_positives": [false_positives(args.seeds, m) for m in ("shift", "phase")],
               "power": power(args.power_seeds)}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
