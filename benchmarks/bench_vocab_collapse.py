"""Benchmark: neural collapse at vocabulary scale (next-token classes), tiled, without K x K matrices.

1. Synthetic GPT-2-sized stream: K = 50,257 classes, d = 768, a few thousand
   float32 tokens with Zipf-distributed labels (most classes empty), streamed
   into ``TiledNCAccumulator``: time and peak resident memory of the update and
   of the tiled result, against the 20 GB a single dense float64 K x K Gram
   would take (the dense path refuses it: d < K - 1 and the size guard).
2. The bundled tiny models (K = 2,048, d = 128) over layers (they ship no
   training checkpoints): ``next_token_collapse`` on held-out corpus tokens,
   read through the hook cache, over the next tokens seen at least twice.

Writes benchmarks/results/vocab_collapse.json and vocab_collapse.png.

    python benchmarks/bench_vocab_collapse.py [--tokens 4096] [--sequences 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import workbench
from workbench.collapse import TiledNCAccumulator, nc_metrics, next_token_collapse
from workbench.figures import PALETTE, export, new_figure
from workbench.models import corpus_tokens, list_models, load_model

RESULTS = Path(__file__).parent / "results"
MIN_COUNT = 2  # next tokens seen once have no within-class spread, and two of them after one context coincide
METRICS = ["nc1", "cdnv", "gnc2_log", "nc2_equinorm_h", "nc2_equiangle", "nc2_etf", "unc3", "nc3", "sigma_w_trace",
           "sigma_b_trace"]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def synthetic(n_tokens: int, k: int = 50_257, d: int = 768, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    labels = np.minimum(rng.zipf(1.2, size=n_tokens) - 1, k - 1)
    centres = {c: rng.normal(size=d).astype(np.float32) for c in np.unique(labels)}
    x = np.stack([centres[c] for c in labels]) + 0.5 * rng.standard_normal((n_tokens, d), dtype=np.float32)
    rss_before = peak_rss_gb()
    start = time.perf_counter()
    acc = TiledNCAccumulator(k, d, tile=256, device="cpu")
    for rows in np.array_split(np.arange(n_tokens), 8):
        acc.update(x[rows], labels[rows])
    updated = time.perf_counter()
    ds = acc.result()
    done = time.perf_counter()
    try:
        nc_metrics(x, labels, n_classes=k, device="cpu")
        dense = "ran"
    except ValueError as err:
        dense = str(err)
    row = {"n_classes": k, "dim": d, "n_tokens": n_tokens, "n_classes_present": ds.attrs["n_classes_present"],
           "n_classes_empty": ds.attrs["n_classes_empty"], "update_seconds": round(updated - start, 2),
           "result_seconds": round(done - updated, 2), "peak_rss_gb_before": round(rss_before, 2),
           "peak_rss_gb_after": round(peak_rss_gb(), 2),
           "dense_kxk_float64_gb": round(k * k * 8 / 1e9, 1), "dense_path": dense,
           **{m: float(ds[m]) for m in METRICS if m not in ("unc3", "nc3")}}
    print(json.dumps(row), flush=True)
    return row


def models_over_layers(n_seq: int, seq_len: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name in list_models():
            model = load_model(name, device="cpu")
            tokens = corpus_tokens(model, n_seq, seq_len)
            start = time.perf_counter()
            ds = next_token_collapse(model, tokens, cache=cache, min_count=MIN_COUNT, device="cpu")
            seconds = time.perf_counter() - start
            for hook in ds.hook.values:
                at = ds.sel(hook=hook)
                rows.append({"model": name, "hook": str(hook), "n_tokens": int(at.counts.sum()), "min_count": MIN_COUNT,
                             "n_classes_present": int(at.present.sum()), "seconds_all_hooks": round(seconds, 1),
                             **{m: float(at[m]) for m in METRICS}})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def figure(rows: list[dict]) -> None:
    fig = new_figure(title="linguistic collapse over layers of the bundled models (next-token classes, K = 2,048)",
                     xaxis_title="hook", yaxis_title="value (log)", yaxis_type="log", height=480, width=900)
    for i, name in enumerate(sorted({r["model"] for r in rows})):
        part = [r for r in rows if r["model"] == name]
        for metric, dash in (("nc1", "solid"), ("cdnv", "dash"), ("nc2_equinorm_h", "dot")):
            fig.add_scatter(x=[r["hook"].replace(".hook_", " ") for r in part], y=[r[metric] for r in part],
                            mode="lines+markers", line=dict(color=PALETTE[i], dash=dash), name=f"{name}: {metric}")
    export(fig, RESULTS / "vocab_collapse.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096, help="synthetic tokens at K = 50,257")
    parser.add_argument("--sequences", type=int, default=64, help="corpus sequences of 128 tokens per model")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = {"benchmark": "vocab_collapse", "workbench_version": workbench.__version__,
           "torch_threads": torch.get_num_threads(), "synthetic": synthetic(args.tokens),
           "models": models_over_layers(args.sequences, 128)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vocab_collapse.json").write_text(json.dumps(out, indent=1))
    figure(out["models"])


if __name__ == "__main__":
    main()
