"""Benchmark: streaming NC metrics (``NCAccumulator``, what ``nc_metrics`` runs) against plain NumPy.

The reference is the strongest plain implementation a researcher would
write of the same algorithm (the projected K x K one, two passes):

* pass 1, class sums: float32 chunks sorted by label, summed per class with
  ``np.add.reduceat(..., dtype=float64)`` (float64 accumulation; no
  ``np.add.at``), counts by ``np.bincount``;
* pass 2: the chunk once in float64, centred on its class means, projected on
  the K centred class means by one BLAS GEMM (n x d x K); the K x K projected
  scatter by a second GEMM; the nearest class mean from the same projection;
  the classifier's decisions from a float32 BLAS GEMM, rows whose top-two gap
  is within the float32 rounding bound re-decided in float64 (so the NC4
  count is exact, as ours is);
* NC1 = tr(Sigma_W Sigma_B^+) / K from the K x K matrices alone.

Data: planted classes that overlap (centres 0.1 apart per dimension, unit
noise), and a classifier that is not the nearest-class-mean rule, so NC4 is
far from 0. Float32 features, float64 results; agreement asserted to 1e-10
relative on every metric (both in float64). Each side runs both passes over
the same in-memory chunks, interleaved, at least five times.

    python benchmarks/bench_collapse.py                  # 1e6 x 512, K = 100 and 1000, 1 thread
    python benchmarks/bench_collapse.py --threads 2
    python benchmarks/bench_collapse.py --quick          # a small check of agreement and the JSON
"""

from __future__ import annotations


import numpy as np
import torch

from _harness import Report, arguments, interleave
from workbench.collapse import NCAccumulator

METRICS = ["nc1", "nc2_equinorm_h", "nc2_equinorm_w", "nc2_equiangle", "nc2_max_angle", "nc2_etf", "nc2_of", "nc3",
           "nc4"]
REFERENCE = ("NumPy, same projected K x K algorithm: float32 data, float64 accumulation, class sums by "
             "sort + np.add.reduceat, BLAS GEMMs, float32 decisions re-checked in float64")
_F32_EPS = 2.0 ** -24


def make_chunks(n_samples: int, dim: int, n_classes: int, chunk: int, seed: int = 0):
    """(float32 features, int64 labels) chunks of overlapping planted classes, and a classifier (W, b)."""
    rng = np.random.default_rng(seed)
    centres = (rng.normal(size=(n_classes, dim)) * 0.1).astype(np.float32)
    W = centres.astype(np.float64) + 0.05 * rng.normal(size=centres.shape)
    b = rng.normal(size=n_classes) * 0.01
    chunks = []
    for i, start in enumerate(range(0, n_samples, chunk)):
        r = np.random.default_rng([seed, i])
        n = min(chunk, n_samples - start)
        y = r.integers(0, n_classes, size=n)
        chunks.append((centres[y] + r.standard_normal((n, dim), dtype=np.float32), y))
    return chunks, W, b


def class_sums(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class float64 sums of float32 rows: sort by label, then one reduceat."""
    order = np.argsort(y, kind="stable")
    present, starts = np.unique(y[order], return_index=True)
    sums = np.zeros((n_classes, x.shape[1]))
    sums[present] = np.add.reduceat(x[order], starts, axis=0, dtype=np.float64)
    return sums


def exact_argmax(x32: np.ndarray, x64: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmax(x W^T + b) exactly as in float64, from a float32 GEMM plus a float64 re-check of near ties."""
    scores = (x32 @ W.astype(np.float32).T).astype(np.float64) + b
    top2 = np.partition(scores, -2, axis=1)[:, -2:]
    # |float32 score - float64 score| <= (d + 2) eps |x| |w| (products, sums, W rounded to float32)
    bound = (x32.shape[1] + 2) * _F32_EPS * np.linalg.norm(x64, axis=1) * np.linalg.norm(W, axis=1).max()
    decided = scores.argmax(axis=1)
    unsure = np.nonzero(top2[:, 1] - top2[:, 0] <= 2 * bound)[0]
    if unsure.size:
        decided[unsure] = (x64[unsure] @ W.T + b).argmax(axis=1)
    return decided


def numpy_nc_metrics(chunks, n_classes: int, W: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """NC1-NC4 of Papyan et al. by the projected K x K algorithm in plain NumPy (two passes over ``chunks``)."""
    k, d = n_classes, chunks[0][0].shape[1]
    sums, counts = np.zeros((k, d)), np.zeros(k)
    for x, y in chunks:
        sums += class_sums(x, y, k)
        counts += np.bincount(y, minlength=k)
    means = sums / counts[:, None]
    centred_means = means - means.mean(axis=0)
    offsets = centred_means @ centred_means.T - (centred_means**2).sum(axis=1) / 2
    projected, mismatches = np.zeros((k, k)), 0
    for x, y in chunks:
        x64 = x.astype(np.float64)
        p = (x64 - means[y]) @ centred_means.T
        projected += p.T @ p
        nearest = (p + offsets[y]).argmax(axis=1)
        mismatches += int((exact_argmax(x, x64, W, b) != nearest).sum())
    n = counts.sum()
    gram = centred_means @ centred_means.T
    lam, vec = np.linalg.eigh(gram)
    keep = lam > lam.max() * 1e-10
    gram_pinv = (vec[:, keep] / lam[keep]) @ vec[:, keep].T
    norms = np.linalg.norm(centred_means, axis=1)
    cos = (gram / np.outer(norms, norms))[~np.eye(k, dtype=bool)]
    gram_u, wn = means @ means.T, np.linalg.norm(W, axis=1)
    out = {
        # Sigma_B^+ = K Mc^T (Mc Mc^T)^+2 Mc, so tr(Sigma_W Sigma_B^+) / K = tr(P / n (G^+)^2)
        "nc1": np.trace(projected / n @ gram_pinv @ gram_pinv),
        "nc2_equinorm_h": norms.std() / norms.mean(),
        "nc2_equinorm_w": wn.std() / wn.mean(),
        "nc2_equiangle": cos.std(),
        "nc2_max_angle": np.abs(cos + 1 / (k - 1)).mean(),
        "nc2_etf": np.linalg.norm(gram / np.linalg.norm(gram) - (np.eye(k) - 1 / k) / np.sqrt(k - 1)),
        "nc2_of": np.linalg.norm(gram_u / np.linalg.norm(gram_u) - np.eye(k) / np.sqrt(k)),
        "nc3": np.linalg.norm(W / np.linalg.norm(W) - centred_means / np.linalg.norm(centred_means)) ** 2,
        "nc4": mismatches / n,
    }
    return {key: float(v) for key, v in out.items()}


def workbench_nc_metrics(chunks, n_classes: int, W: np.ndarray, b: np.ndarray, device: str) -> dict[str, float]:
    """The same metrics by ``NCAccumulator(scatter="projected")``, what ``nc_metrics`` runs."""
    acc = NCAccumulator(n_classes, chunks[0][0].shape[1], scatter="projected", device=device)
    for x, y in chunks:
        acc.update(x, y)
    for x, y in chunks:
        acc.second_pass(x, y, W, b)
    ds = acc.result(W, b)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {name: float(ds[name]) for name in METRICS}


def main(argv=None) -> None:
    parser = arguments(__doc__, "20,000 x 64, K = 10 and 50")
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", default="100,1000", help="comma-separated K values")
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.dim, args.classes, args.chunk = 20_000, 64, "10,50", 5_000
    name = "collapse" if args.threads == 1 else f"collapse_t{args.threads}"
    report = Report(name, args.threads, args.quick, argv)
    report.data["benchmark_script"] = "collapse"
    for k in (int(c) for c in args.classes.split(",")):
        chunks, W, b = make_chunks(args.samples, args.dim, k, args.chunk)
        values = {}

        def ours():
            values["ours"] = workbench_nc_metrics(chunks, k, W, b, args.device)

        def reference():
            values["reference"] = numpy_nc_metrics(chunks, k, W, b)

        runs = interleave({"ours": ours, "reference": reference}, repeats=args.repeats)
        label = f"NC metrics {args.samples:.0e} x {args.dim}, K = {k}"
        report.check(label, values["ours"], values["reference"], rtol=1e-10, dtype="float64 results of float32 data")
        report.row(label, ours=f"NCAccumulator(scatter='projected', device={args.device!r})", reference=REFERENCE,
                   runs=runs, target=2.0, samples=args.samples, dim=args.dim, classes=k, metrics=values["reference"],
                   samples_per_s_ours=args.samples / min(r["seconds"] for r in runs["ours"]))
        print(f"  NC4 (planted overlap) = {values['reference']['nc4']:.4f}, NC1 = {values['reference']['nc1']:.4g}")
    report.write(args.out)


if __name__ == "__main__":
    main()
