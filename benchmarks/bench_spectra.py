"""Benchmark: ``layer_spectra`` + ``rank_metrics`` against WeightWatcher's ``analyze()``.

Both tools see exactly the same matrices: every whole weight matrix of the
model (attention Q/K/V/O, MLP in/out, embeddings, unembedding), copied in
float64 into one ``nn.Sequential`` of ``nn.Linear`` layers. WeightWatcher runs
with ``min_evals=1`` and ``max_N`` raised so it skips none of them (by default
it silently drops the 50,257-row embedding and unembedding), and with
``mp_fit=True`` so it computes the Marchenko-Pastur metrics we report too.
Metric values are compared matrix by matrix.

Models: the two bundled models and a randomly initialised model with GPT-2
small shapes. Also timed (not compared): ``layer_spectra`` on the bridge
itself, with per-head slices and OV/QK circuits, which WeightWatcher cannot do.

Usage::

    python benchmarks/bench_spectra.py [--skip-gpt2]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np
import torch

from workbench.models import boot_native, load_model
from workbench.spectra import layer_spectra
from workbench.spectra.weights import model_matrices

RESULTS = Path(__file__).parent / "results" / "spectra.json"
GPT2_SMALL = dict(d_model=768, n_layers=12, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, d_vocab=50257,
                  act_fn="gelu", normalization_type="LN")
#: (ours, WeightWatcher's column, relative tolerance the issue asks for; None = reported only)
COMPARED = [("stable_rank", "stable_rank", 1e-4), ("log_norm", "log_norm", 1e-4),
            ("log_spectral_norm", "log_spectral_norm", 1e-4), ("numerical_rank", "matrix_rank", 1e-4),
            ("alpha", "alpha", 1e-3), ("alpha_weighted", "alpha_weighted", 1e-3), ("ks_distance", "D", 1e-3),
            ("mp_softrank", "mp_softrank", None), ("num_spikes", "num_spikes", None)]


def same_matrices(model) -> tuple[torch.nn.Sequential, list[str]]:
    """The model's whole weight matrices as float64 ``nn.Linear`` layers, one per matrix."""
    groups, _ = model_matrices(model, per_head=False)
    layers, names = [], []
    for g in groups:
        W = g.matrices[0].detach().to(torch.float64)
        lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=torch.float64)
        lin.weight.data = W.clone()
        layers.append(lin)
        names.append(g.names[0])
    return torch.nn.Sequential(*layers), names


def compare(ours, theirs) -> dict:
    out = {}
    for mine, col, rtol in COMPARED:
        a = ours[mine].values.astype(np.float64)
        b = theirs[col].to_numpy(dtype=np.float64)
        # Counts can be 0 (num_spikes): compare them in absolute terms there.
        rel = np.abs(a - b) / np.where(b == 0, 1.0, np.abs(b))
        entry = {"max_rel_diff": float(np.nanmax(rel)), "median_rel_diff": float(np.nanmedian(rel))}
        if rtol is not None:
            entry.update(rtol=rtol, n_match=int((rel <= rtol).sum()), n=int(rel.size),
                         mismatched=[str(m) for m in ours.matrix.values[rel > rtol]][:10])
        out[mine] = entry
    return out


def run(name: str, model) -> dict:
    import weightwatcher as ww

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    module, names = same_matrices(model)
    start = time.perf_counter()
    ours = layer_spectra(module, kinds=("weights",), progress=False, device="cpu")
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = ww.WeightWatcher(model=module).analyze(min_evals=1, max_N=10 ** 9, mp_fit=True)
    ww_s = time.perf_counter() - start
    assert len(theirs) == len(names), (len(theirs), len(names))
    start = time.perf_counter()
    full = layer_spectra(model, progress=False, device="cpu")
    full_s = time.perf_counter() - start
    result = {"model": name, "n_matrices": len(names), "ours_seconds": round(ours_s, 3),
              "weightwatcher_seconds": round(ww_s, 3), "speedup": round(ww_s / ours_s, 2),
              "full_layer_spectra_seconds": round(full_s, 3), "full_layer_spectra_matrices": int(full.sizes["matrix"]),
              "metrics": compare(ours, theirs)}
    print(f"{name}: {len(names)} matrices, ours {ours_s:.2f}s, WeightWatcher {ww_s:.2f}s, "
          f"speedup {ww_s / ours_s:.1f}x; full layer_spectra ({full.sizes['matrix']} matrices incl. heads "
          f"and circuits) {full_s:.2f}s")
    for metric, entry in result["metrics"].items():
        match = f"{entry['n_match']}/{entry['n']} within rtol {entry['rtol']}" if "rtol" in entry else "reported"
        print(f"  {metric:18s} max rel diff {entry['max_rel_diff']:.2e}  ({match})")
    return result


def warm_up() -> None:
    """One untimed call of each tool: first calls pay one-off imports (xarray's duck-array
    backends, pandas, scipy.optimize) that are not the work being compared."""
    import weightwatcher as ww

    module = torch.nn.Sequential(torch.nn.Linear(40, 60, dtype=torch.float64))
    layer_spectra(module, kinds=("weights",), progress=False, device="cpu")
    ww.WeightWatcher(model=module).analyze(min_evals=1, mp_fit=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--skip-gpt2", action="store_true")
    args = p.parse_args(argv)
    import weightwatcher

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    warm_up()
    results = [run(n, load_model(n, device="cpu")) for n in ("tiny-attn-2l", "tiny-gelu-2l")]
    if not args.skip_gpt2:
        results.append(run("random-gpt2-small-shape", boot_native(GPT2_SMALL, device="cpu", name="gpt2-shape")))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "layer_spectra + rank_metrics vs WeightWatcher.analyze(mp_fit=True) on the same matrices",
        "weightwatcher_version": weightwatcher.__version__, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "machine": platform.platform(), "results": results}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
