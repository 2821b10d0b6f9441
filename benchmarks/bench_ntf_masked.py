"""Benchmark: masked ``ntf`` (missing pairs, as in NeuroPAL data) against the same tensor fully observed.

Seconds per iteration of ``ntf`` on a 7-animal tensor (N neurons -> pairs x
240 time x 7 animals, rank 8) with 60% of the pairs missing in each animal
(the pair's whole time fibre, as when a neuron is not identified in that
animal) against the same tensor fully observed, same start, for 1 and 10
restarts. Target (issue 12 section 6): masked within 2x of full. Both sides
are ours, so there is no reference library; wall time over whole fits,
set-up included for both alike.

Run: ``python benchmarks/bench_ntf_masked.py [--neurons 60] [--threads 1]``;
results go to ``benchmarks/results/ntf_masked_N_neurons.json``.
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

from workbench.connectome import ntf

OUT = Path(__file__).parent / "results"


def planted_tensor(shape, rank, seed=0, noise=0.1):
    """Sparse-ish non-negative CP factors (like affinity factors) plus ``noise`` x the clean SD."""
    rng = np.random.default_rng(seed)
    factors = [rng.random((n, rank)) ** 4 for n in shape]
    clean = np.einsum("ir,jr,kr->ijk", *factors, optimize=True)
    return np.abs(clean + noise * clean.std() * rng.standard_normal(shape))


def missing_pairs_mask(shape, fraction=0.6, seed=0):
    """``True`` = observed; in each animal (last mode) a random ``fraction`` of pairs is missing at every time."""
    rng = np.random.default_rng(seed)
    mask = np.ones(shape, dtype=bool)
    for k in range(shape[2]):
        mask[rng.random(shape[0]) < fraction, :, k] = False
    return mask


def masked_speed(n_neurons, rank=8, n_animals=7, n_time=240, iters=20):
    """Seconds per iteration, masked against fully observed (same tensor, same start)."""
    shape = (n_neurons * (n_neurons - 1) // 2, n_time, n_animals)
    x = planted_tensor(shape, rank).astype(np.float32)
    mask = missing_pairs_mask(shape)
    out = {"shape": list(shape), "rank": rank, "missing_fraction": float(1 - mask.mean()), "by_restarts": {}}
    for n_restarts in (1, 10):
        per_it = {}
        for name, m in (("full", None), ("masked", mask)):
            # wall time over all restarts / iterations (masked restarts run one after another on the CPU,
            # so per-callback stamps would time one restart), set-up included for both alike
            t0 = time.perf_counter()
            ntf(x, rank, n_restarts=n_restarts, mask=m, max_iter=iters, tol=0, device="cpu", seed=0, compress=None)
            per_it[name] = (time.perf_counter() - t0) / iters
        per_it["ratio"] = per_it["masked"] / per_it["full"]
        out["by_restarts"][str(n_restarts)] = per_it
        print(f"{shape} rank {rank}, {n_restarts} restarts: full {per_it['full'] * 1e3:.1f} ms/it, "
              f"masked {per_it['masked'] * 1e3:.1f} ms/it, ratio {per_it['ratio']:.2f}")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=60, help="neurons (141 in NeuroPAL recordings)")
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and BLAS alike")
    args = parser.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    result = {"machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                          "torch": torch.__version__, "load_average_at_start": os.getloadavg()},
              "masked": masked_speed(args.neurons)}
    result["machine"]["load_average_at_end"] = os.getloadavg()
    path = OUT / f"ntf_masked_{args.neurons}_neurons.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
