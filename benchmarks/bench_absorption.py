"""Benchmark: feature absorption of TopK, BatchTopK and Matryoshka SAEs on a planted hierarchy, at the same L0.

Activations from :func:`workbench.data.synthetic_sae.planted_hierarchy` (4
parents with 4 children each, 4 independent features, 64-d, 20,000 tokens):
a child only fires with its parent. Each architecture trains a 24-latent SAE
(one latent per planted feature) with k = 3 (the planted mean L0 is about
2.6) on 200,000 tokens; Matryoshka's first prefix has 4 latents, one per
parent. Reports :func:`workbench.sae.absorption_rate` (pooled over parents),
the inference L0 and the FVU, per seed and averaged; writes
benchmarks/results/absorption.json.

    python benchmarks/bench_absorption.py [--seeds 3] [--tokens 200000]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

import workbench
from workbench.data.synthetic_sae import planted_hierarchy
from workbench.sae import absorption_rate, train

ARCHITECTURES = {"topk": {}, "batchtopk": {}, "matryoshka": {"matryoshka_widths": (4, 24)}}


def run(seed: int, n_tokens: int) -> dict:
    ds = planted_hierarchy(n_tokens=20_000, d_in=64, n_parents=4, children_per_parent=4, n_independent=4, seed=seed)
    x = torch.from_numpy(ds["acts"].values)
    out = {}
    for arch, extra in ARCHITECTURES.items():
        sae, _ = train(x, d_sae=24, architecture=arch, k=3, lr=3e-3, batch_size=256, n_tokens=n_tokens,
                       progress=False, seed=seed, **extra)
        with torch.no_grad():
            f = sae.encode(x)
            fvu = float((sae.decode(f) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
        rates = absorption_rate(sae, ds)
        out[arch] = {"absorption_rate": rates.attrs["absorption_rate"],
                     "per_parent": rates["absorption_rate"].values.round(4).tolist(),
                     "l0": float((f > 0).sum(-1).float().mean()), "fvu": fvu}
        print(f"seed {seed} {arch:>10}: absorption {out[arch]['absorption_rate']:.3f}, L0 {out[arch]['l0']:.2f}, "
              f"FVU {fvu:.3f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=200_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = [run(seed, args.tokens) for seed in range(args.seeds)]
    mean = {arch: {key: float(np.mean([r[arch][key] for r in runs])) for key in ("absorption_rate", "l0", "fvu")}
            for arch in ARCHITECTURES}
    for arch, row in mean.items():
        print(f"mean {arch:>10}: absorption {row['absorption_rate']:.3f}, L0 {row['l0']:.2f}, FVU {row['fvu']:.3f}")
    path = Path(__file__).parent / "results" / "absorption.json"
    path.write_text(json.dumps({"workbench_version": workbench.__version__, "platform": platform.platform(),
                                "tokens": args.tokens, "seeds": args.seeds, "mean": mean, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
