"""Benchmark: ``layer_spectra`` (singular values + ``rank_metrics``) against WeightWatcher's ``analyze()``.

Both sides see exactly the same matrices: every whole weight matrix of a
model, as float32 ``nn.Linear`` layers of one ``nn.Sequential`` (WeightWatcher
converts torch weights to float32 anyway, then computes in float64; ours
computes in float64 too). WeightWatcher runs ``analyze(mp_fit=False)``: the
power-law fit and norms we compute, without its Marchenko-Pastur fit, whose
outputs we do not reproduce; ``min_evals=1`` and ``max_N`` raised so that it
skips no matrix (by default it silently drops the 50,257-row embedding and
unembedding). Metrics compared matrix by matrix, asserted to 1e-10 relative:
stable rank, log norm, log spectral norm, power-law alpha, weighted alpha,
KS distance, xmin. Numerical rank is reported, not asserted: ours counts
singular values above ``s_1 N eps`` with the epsilon of the input (float32
here), WeightWatcher's ``matrix_rank`` with float64's, so they differ by
design on near-singular float32 matrices.

``--mp-fit`` adds the Marchenko-Pastur fit to both sides: WeightWatcher's
``analyze(mp_fit=True)`` against ``layer_spectra(mp_fit="weightwatcher")``
(our re-derivation of its kernel-density fit, :mod:`workbench.spectra.mp_weightwatcher`);
``bulk_max``, ``mp_softrank`` and ``num_spikes`` asserted to 1e-6 relative
(the fit's grid search and Nelder-Mead polish see the same float64
eigenvalues on both sides). Where ours is NaN (a rank-deficient matrix: the
law does not apply, ``mp_reason`` says why) WeightWatcher still reports
numbers: those matrices are counted in the row, not compared.

Cases (each at least five interleaved runs per side):

* ``gpt2-small-heavy-tailed``: the 75 whole matrices of GPT-2 small's shapes
  (12 x Q, K, V, O 768 x 768, MLP 768 x 3072 both ways, 50,257 x 768 token
  embedding and unembedding, 1,024 x 768 positions) with trained-like
  heavy-tailed entries (Student-t, 3 degrees of freedom) plus a few rank-one
  spikes, so that the power-law fits see real tails;
* ``tiny-attn-2l``: the bundled trained model.

    python benchmarks/bench_spectra.py              # both cases, 1 thread (about 15 min)
    python benchmarks/bench_spectra.py --quick      # a scaled-down model: agreement and the JSON only
    python benchmarks/bench_spectra.py --quick --mp-fit   # the same with both sides' Marchenko-Pastur fit

``--stream``: ``layer_spectra`` straight from a generated Llama-3.2-1B-shaped
float16 checkpoint (``benchmarks/_stream_ckpt.py``), one tensor at a time:
time and peak RSS against the largest matrix (the 128,256 x 2,048 embedding,
501 MiB in float16), asserted below ``RSS_LIMIT`` times it plus ``RSS_SLACK``; exact against
``method="randomized"``; and the randomized top-k error and speed against the
exact spectrum, on the checkpoint's matrices (a flat random bulk: the hard
case) and on a planted power-law spectrum. ``--layers`` takes fewer layers
(the largest matrix, hence the memory bound, is the same).

    python benchmarks/bench_spectra.py --stream --threads 2 [--layers 4]
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from _harness import Report, arguments, interleave
from workbench.models import load_model
from workbench.spectra import layer_spectra
from workbench.spectra.weights import model_matrices

#: (ours, WeightWatcher's column)
COMPARED = [("stable_rank", "stable_rank"), ("log_norm", "log_norm"), ("log_spectral_norm", "log_spectral_norm"),
            ("alpha", "alpha"), ("alpha_weighted", "alpha_weighted"),
            ("ks_distance", "D"), ("xmin", "xmin")]
#: Compared with --mp-fit: (ours, WeightWatcher's column), ours from layer_spectra(mp_fit="weightwatcher").
MP_COMPARED = [("bulk_max", "bulk_max"), ("mp_softrank", "mp_softrank"), ("num_spikes", "num_spikes")]
GPT2_SMALL = dict(d_model=768, n_layers=12, d_mlp=3072, d_vocab=50257, n_ctx=1024)
QUICK = dict(d_model=128, n_layers=2, d_mlp=512, d_vocab=2000, n_ctx=256)
#: The streamed run may add at most this many times the largest matrix (as stored) to the process's RSS,
#: plus ``RSS_SLACK`` bytes for the interpreter's own growth (allocator arenas, the result dataset).
RSS_LIMIT = 4.0
RSS_SLACK = 256 * 2**20


def heavy_tailed(shape: tuple[int, int], rng: np.random.Generator, n_spikes: int = 3) -> np.ndarray:
    """Student-t (3 dof) entries at init scale plus ``n_spikes`` rank-one spikes, float32."""
    m, n = shape
    w = rng.standard_t(3, size=shape) * (0.5 / np.sqrt(n))
    for s in range(n_spikes):
        w += (2.0 + s) * np.outer(rng.normal(size=m) / np.sqrt(m), rng.normal(size=n) / np.sqrt(n))
    return w.astype(np.float32)


def gpt2_like(d_model: int, n_layers: int, d_mlp: int, d_vocab: int, n_ctx: int, seed: int = 0) -> list[np.ndarray]:
    """The whole weight matrices of a GPT-2-shaped model, heavy-tailed (out x in, as ``nn.Linear`` stores them)."""
    rng = np.random.default_rng(seed)
    shapes = [(d_vocab, d_model), (n_ctx, d_model)]
    for _ in range(n_layers):
        shapes += [(d_model, d_model)] * 4 + [(d_mlp, d_model), (d_model, d_mlp)]
    shapes.append((d_vocab, d_model))
    return [heavy_tailed(s, rng) for s in shapes]


def trained_matrices(name: str) -> list[np.ndarray]:
    groups, _ = model_matrices(load_model(name, device="cpu"), per_head=False)
    return [g.matrices[0].detach().float().numpy() for g in groups]


def as_module(matrices: list[np.ndarray]) -> torch.nn.Sequential:
    """One float32 bias-free ``nn.Linear`` per matrix (what both tools are given)."""
    layers = []
    for w in matrices:
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight.data = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        layers.append(lin)
    return torch.nn.Sequential(*layers)


def stream(args, argv) -> None:
    """The streamed-checkpoint benchmark (``--stream``)."""
    import shutil
    import tempfile
    from pathlib import Path

    import _stream_ckpt as sc

    shape = dict(sc.LLAMA_1B, n_layers=args.layers or sc.LLAMA_1B["n_layers"])
    if args.quick:
        shape = dict(d_model=256, n_layers=2, n_heads=4, n_kv=2, d_head=64, d_mlp=1024, vocab=8000)
    report = Report("spectra_stream", args.threads, args.quick, argv)
    root = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    try:
        start = time.perf_counter()
        info = sc.write_checkpoint(root / "ckpt", **shape)
        info["write_seconds"] = time.perf_counter() - start
        sc.write_checkpoint(root / "warm", d_model=64, n_layers=1, n_heads=4, n_kv=2, d_head=16, d_mlp=128, vocab=256)
        print(f"checkpoint {shape}: {info['n_params'] / 1e9:.3f} B parameters, {info['bytes_on_disk'] / 2**30:.2f} GiB, "
              f"written in {info['write_seconds']:.0f} s", flush=True)
        runs = {}
        for method, k in (("exact", None), ("randomized", 32)):
            runs[method] = sc.run_worker(root / "ckpt", method, k, args.threads, root / "warm")
            r = runs[method]
            r["rss_added_over_largest_matrix"] = r["rss_added_bytes"] / info["largest_matrix_bytes"]
            print(f"streamed layer_spectra {method}: {r['seconds']:.1f} s, {r['n_matrices']} matrices, peak RSS "
                  f"{r['rss_peak_bytes'] / 2**30:.2f} GiB (+{r['rss_added_bytes'] / 2**30:.2f} GiB = "
                  f"{r['rss_added_over_largest_matrix']:.2f} x the largest matrix)", flush=True)
        ex, rd = runs["exact"]["log_spectral_norm"], runs["randomized"]["log_spectral_norm"]
        worst = max(abs(10 ** ((rd[k] - ex[k]) / 2) - 1) for k in ex)  # relative error of sigma_1
        print(f"randomized (top 32) vs exact sigma_1 over the whole matrices: worst relative {worst:.1e}", flush=True)
        for r in runs.values():
            r["log_spectral_norm"] = len(r["log_spectral_norm"])  # the per-matrix values are not kept in the JSON
        runs["randomized"]["sigma_1_worst_relative_error_vs_exact"] = worst
        names = {"W_Q (2048 x 2048)": "blocks.0.attn.W_Q", "W_in (2048 x 8192)": "blocks.0.mlp.W_in",
                 "W_E (128256 x 2048)": "W_E"} if not args.quick else {"W_E": "W_E"}
        errors = sc.randomized_errors(root / "ckpt", names)
        planted = [e for e in errors if e["matrix"].startswith("planted") and e["k"] == 10]
        report.check("stream: randomized top-10 of a planted power law vs exact", [e["max_relative_error"] for e in planted],
                     [0.0] * len(planted), rtol=0.0, atol=1e-3, dtype="float32 randomized vs float64 exact")
        report.data["streamed"] = {"checkpoint": {**info, "shape": shape}, "runs": runs, "randomized_vs_exact": errors,
                                   "rss_limit_over_largest_matrix": RSS_LIMIT, "rss_slack_bytes": RSS_SLACK}
        for method, r in runs.items():
            if r["rss_added_bytes"] > RSS_LIMIT * info["largest_matrix_bytes"] + RSS_SLACK:
                report.failures.append(f"stream {method}: RSS grew {r['rss_added_bytes'] / 2**20:.0f} MiB, over "
                                       f"{RSS_LIMIT} x the largest matrix + {RSS_SLACK / 2**20:.0f} MiB")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report.write(args.out)


def main(argv=None) -> None:
    parser = arguments(__doc__, "a GPT-2-like model at d_model 128, 2 layers")
    parser.add_argument("--mp-fit", action="store_true",
                        help="both sides fit the Marchenko-Pastur bulk (WeightWatcher's KDE fit on ours)")
    parser.add_argument("--stream", action="store_true", help="streamed spectra of a generated 1B-shaped checkpoint")
    parser.add_argument("--layers", type=int, default=None, help="--stream: layers of the checkpoint (default 16)")
    args = parser.parse_args(argv)
    if args.stream:
        return stream(args, argv)
    mp = bool(args.mp_fit)
    report = Report("spectra", args.threads, args.quick, argv)
    import weightwatcher as ww

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    cases = {("gpt2-like-heavy-tailed (quick scale)" if args.quick else "gpt2-small-heavy-tailed"):
             lambda: gpt2_like(**(QUICK if args.quick else GPT2_SMALL))}
    if not args.quick:
        cases["tiny-attn-2l (trained)"] = lambda: trained_matrices("tiny-attn-2l")
    reference = (f"WeightWatcher {ww.__version__} analyze(mp_fit={mp}, min_evals=1, max_N=1e9) on the same float32 "
                 "matrices (float64 SVD)")
    for case, make in cases.items():
        module = as_module(make())
        out = {}

        def ours():
            out["ours"] = layer_spectra(module, kinds=("weights",), progress=False, device="cpu",
                                        mp_fit="weightwatcher" if mp else "median")

        def theirs():
            out["reference"] = ww.WeightWatcher(model=module).analyze(min_evals=1, max_N=10**9, mp_fit=mp)

        runs = interleave({"ours": ours, "reference": theirs}, repeats=args.repeats)
        if len(out["reference"]) != len(module):
            raise SystemExit(f"{case}: WeightWatcher analysed {len(out['reference'])} of {len(module)} matrices")
        mine = {m: out["ours"][m].values.astype(np.float64) for m, _ in COMPARED}
        theirs_ = {m: out["reference"][c].to_numpy(dtype=np.float64) for m, c in COMPARED}
        report.check(f"spectra {case}", mine, theirs_, rtol=1e-10, dtype="float64 from float32 matrices")
        mp_extra = {}
        if mp:
            applies = out["ours"]["mp_reason"].values == ""
            mp_ours = {m: out["ours"][m].values.astype(np.float64)[applies] for m, _ in MP_COMPARED}
            mp_ref = {m: out["reference"][c].to_numpy(dtype=np.float64)[applies] for m, c in MP_COMPARED}
            report.check(f"MP fit {case}", mp_ours, mp_ref, rtol=1e-6, dtype="float64 from float32 matrices")
            mp_extra = dict(mp_compared=int(applies.sum()), mp_nan_ours=int((~applies).sum()),
                            spikes_total=float(mp_ours["num_spikes"].sum()))
        rank_ours = out["ours"]["numerical_rank"].values.astype(np.int64)
        rank_ww = out["reference"]["matrix_rank"].to_numpy(dtype=np.int64)
        shapes = sorted({tuple(lin.weight.shape) for lin in module})
        report.row(f"spectra {case}, {len(module)} matrices",
                   ours=f"layer_spectra(kinds=('weights',), mp_fit={'weightwatcher' if mp else 'median'!r})",
                   reference=reference, runs=runs, target=10.0, n_matrices=len(module), shapes=shapes,
                   numerical_rank_differs_on=int((rank_ours != rank_ww).sum()),
                   alpha_range=[float(np.nanmin(mine["alpha"])), float(np.nanmax(mine["alpha"]))], **mp_extra)
    report.write(args.out)


if __name__ == "__main__":
    main()
