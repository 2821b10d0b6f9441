"""Paper-scale digits runs for notebook 05: an MLP whose geometry tracks Dang et al.'s closed form.

Regime (the UFM's assumptions made literal): MSE loss, bias-free linear head of
M layers with weight decay lambda_W, a feature penalty (lambda_H/2) sum_i ||h_i||^2
on the features feeding the head (``feature_decay``), no decay on the MLP body
(``mlp_decay=0``, so the features are as free as the MLP allows), full-batch
SGD with momentum, trained to zero training error and far beyond. Each run is
compared with ``imbalanced_geometry`` by :func:`~workbench.collapse.against_theory`
(correlation per quantity, largest relative error, largest |cos| between class
means and between classifier rows, gap of the UFM objective to the optimum).

Also the runs before this regime (the notebook-02 default: mini-batch SGD,
weight decay on every layer, no feature penalty) for comparison, and the NC2
trajectory of balanced digits. Writes benchmarks/results/dang_digits.json and
benchmarks/results/dang_digits.png.

    python benchmarks/bench_dang_digits.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import workbench
from workbench.collapse import against_theory, run_experiment
from workbench.figures import PALETTE, export, new_figure

COUNTS = (30, 30, 60, 60, 90, 90, 120, 120, 150, 150)
RESULTS = Path(__file__).parent / "results"
NC2 = ["nc2_etf", "nc2_of", "nc2_equinorm_h", "nc2_equiangle"]


def run(name: str, **kwargs) -> tuple[dict, object]:
    start = time.perf_counter()
    ds = run_experiment(progress=False, device="cpu", **kwargs)
    seconds = time.perf_counter() - start
    last = f"relu{len(kwargs['hidden'])}"
    at = ds.isel(epoch=-1).sel(layer=last)
    row = {"name": name, "seconds": round(seconds, 1),
           "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()},
           "train_accuracy": float(at.train_accuracy), "nc1": float(at.nc1),
           **{k: float(at[k]) for k in NC2}}
    lam_h = kwargs.get("feature_decay") or kwargs.get("weight_decay", 5e-4)
    fit = against_theory(ds, lambda_H=lam_h)
    row.update({f"corr_{q}": float(fit.correlation.sel(quantity=q)) for q in fit.quantity.values})
    row.update({f"max_rel_err_{q}": float(fit.max_relative_error.sel(quantity=q)) for q in fit.quantity.values})
    row.update({"max_cos_means": float(fit.max_cos_means), "max_cos_classifier": float(fit.max_cos_classifier),
                "objective_gap": float(fit.objective_gap), "n_collapsed_theory": int(fit.n_collapsed),
                "corr_log_n_feature_norm": float(np.corrcoef(np.log(fit.attrs["n_per_class"]),
                                                             fit.measured.sel(quantity="feature_norm"))[0, 1])})
    row["nc2_etf_by_epoch"] = {int(e): float(v) for e, v in zip(ds.epoch.values, ds.nc2_etf.sel(layer=last).values)}
    print(json.dumps({k: v for k, v in row.items() if k != "nc2_etf_by_epoch"}), flush=True)
    return row, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the epochs, to check the script")
    parser.add_argument("--only", default="", help="run only the runs whose name contains this; merged into the "
                                                   "results file, figure unchanged")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scale = 10 if args.quick else 1
    regime = dict(hidden=(64, 64), batch_size=None, lr=0.1, mlp_decay=0.0, loss="mse")
    runs = [
        ("before: notebook-02 default, M=3", dict(n_per_class=COUNTS, hidden=(256, 256), n_linear=3,
                                                  epochs=200 // scale, weight_decay=5e-4, record_every=10)),
        ("UFM regime M=1, lambda=5e-4", dict(n_per_class=COUNTS, n_linear=1, epochs=5000 // scale,
                                            weight_decay=5e-4, feature_decay=5e-4, record_every=500 // scale,
                                            **regime)),
        ("UFM regime M=3, lambda=1e-4", dict(n_per_class=COUNTS, n_linear=3, epochs=5000 // scale,
                                            weight_decay=1e-4, feature_decay=1e-4, record_every=500 // scale,
                                            **regime)),
        ("UFM regime M=3, lambda=5e-4 (stuck)", dict(n_per_class=COUNTS, n_linear=3, epochs=5000 // scale,
                                                    weight_decay=5e-4, feature_decay=5e-4,
                                                    record_every=500 // scale, **regime)),
        ("balanced, before: notebook-02 default, M=3", dict(hidden=(256, 256), n_linear=3, epochs=200 // scale,
                                                           weight_decay=5e-4, record_every=10)),
        ("balanced, UFM regime M=1, lambda=5e-4", dict(n_linear=1, epochs=5000 // scale, weight_decay=5e-4,
                                                      feature_decay=5e-4, record_every=250 // scale, **regime)),
        ("balanced, UFM regime M=1, lambda=5e-4, constant step", dict(
            n_linear=1, epochs=12000 // scale, weight_decay=5e-4, feature_decay=5e-4, record_every=500 // scale,
            schedule="constant", **regime)),
    ]
    if args.only:
        runs = [(name, kwargs) for name, kwargs in runs if args.only in name]
    rows, fits = [], {}
    for name, kwargs in runs:
        row, fit = run(name, **kwargs)
        rows.append(row)
        fits[name] = fit
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("dang_digits_quick.json" if args.quick else "dang_digits.json")
    if args.only and path.exists():
        done = {row["name"] for row in rows}
        rows = [row for row in json.loads(path.read_text())["runs"] if row["name"] not in done] + rows
    out = {"benchmark": "dang_digits", "workbench_version": workbench.__version__, "quick": args.quick,
           "torch_threads": torch.get_num_threads(), "runs": rows}
    path.write_text(json.dumps(out, indent=1))
    if args.only:
        return

    fig = new_figure(title="imbalanced digits: measured norms against the closed form (one marker per class)",
                     xaxis_title="closed form (imbalanced_geometry)", yaxis_title="measured at the last ReLU layer",
                     height=520, width=900)
    for i, name in enumerate(n for n in fits if n.startswith("UFM")):
        fit = fits[name]
        for quantity, symbol in (("feature_norm", "circle"), ("classifier_norm", "square")):
            fig.add_scatter(x=fit.theory.sel(quantity=quantity), y=fit.measured.sel(quantity=quantity), mode="markers",
                            marker=dict(color=PALETTE[i], symbol=symbol, size=9), name=f"{name}: {quantity}")
    top = max(float(fits[n].theory.max()) for n in fits if n.startswith("UFM")) * 1.1
    fig.add_scatter(x=[0, top], y=[0, top], mode="lines", line=dict(color="grey", dash="dot"), name="equal")
    export(fig, RESULTS / ("dang_digits_quick.png" if args.quick else "dang_digits.png"))


if __name__ == "__main__":
    main()
