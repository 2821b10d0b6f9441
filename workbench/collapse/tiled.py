"""NC metrics from sufficient statistics without K x K matrices: the vocabulary-scale path.

:func:`~workbench.collapse.geometry.metrics_from_moments` forms K x K Grams,
which a language model's vocabulary (K = 50,257 for GPT-2: 20 GB per float64
Gram) rules out. Here every K x K quantity is a sum over tiles of ``tile``
classes against all of them, so at most ``tile`` x K values exist at once, and
everything else is computed in the d-dimensional feature space:

* NC1 = tr(Sigma_W Sigma_B^+) / K with Sigma_B = M~^T M~ / K (d x d) and the
  pooled Sigma_W (d x d). With d >= K - 1 this is the dense definition
  (Sigma_B has rank K - 1 and is inverted on that span); with d < K - 1,
  Sigma_B generically has full rank d and NC1 = tr(Sigma_W Sigma_B^-1) / K,
  still 0 exactly when every feature sits on its class mean.
* Frobenius norms of K x K products come from d x d ones,
  ||A B^T||_F^2 = <A^T A, B^T B>, and the mean off-diagonal cosine from
  ||sum_k u_k||^2, so the tiles only need one pass.
* Classes without samples (or with fewer than ``min_count``) are left out of
  every metric (K is the number of classes kept) and reported. Two classes
  whose means coincide (two rare next tokens seen once, after the same
  context) give an infinite ``gnc2_log`` and a 0/0 ``cdnv`` pair (NaN);
  ``min_count=2`` or more avoids such singleton classes.

What d < K - 1 changes: a simplex ETF of K vectors needs K - 1 dimensions, so
``nc2_etf``, ``nc2_max_angle`` and the ETF form of NC3 cannot reach 0 (and an
orthogonal frame needs d >= K, so ``nc2_of`` cannot either); they remain
well-defined distances. The hyperspherical uniformity ``gnc2_log``, the
equinorms, ``unc3`` and ``cdnv`` keep their meaning, which is why Wu & Papyan
("Linguistic Collapse", NeurIPS 2024) track those at vocabulary scale.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

import workbench
from workbench.collapse.extended import _mean_var, _pairwise_tiles, cdnv_ratio


def _frobenius(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a b^T||_F from the d x d products: sqrt(<a^T a, b^T b>)."""
    return float(torch.sqrt(torch.clamp((a.T @ a * (b.T @ b)).sum(), min=0.0)))


def _nc1(sigma_w: torch.Tensor, sigma_b: torch.Tensor, k: int) -> float:
    """tr(Sigma_W Sigma_B^+) / K, Sigma_B inverted on at most K - 1 eigenvalues above K eps of the largest."""
    sigma_w, sigma_b = sigma_w.cpu().numpy(), sigma_b.cpu().numpy()  # d x d: LAPACK's eigh is fastest on the CPU
    lam, vec = np.linalg.eigh(sigma_b)
    lam, vec = lam[::-1][: k - 1], vec[:, ::-1][:, : k - 1]
    if not lam[0] > 0:
        return np.inf if np.trace(sigma_w) > 0 else np.nan
    keep = lam > lam[0] * max(k, sigma_b.shape[0]) * np.finfo(np.float64).eps
    vec = vec[:, keep]
    quad = np.maximum(np.einsum("dk,dk->k", sigma_w @ vec, vec), 0.0)
    return float((quad / lam[keep]).sum() / k)


class _Tiles:
    """Sums over the off-diagonal entries (or all entries) of K x K products, ``tile`` rows at a time."""

    def __init__(self, k: int, tile: int, device: torch.device) -> None:
        self.k, self.tile, self.device = k, tile, device
        self.sums: dict[str, float] = {}

    def add(self, name: str, value: torch.Tensor, where: torch.Tensor | None = None) -> None:
        """Add the sum of ``value``, or of its entries where ``where`` is True."""
        if where is not None:
            value = torch.where(where, value, torch.zeros((), dtype=value.dtype, device=value.device))
        self.sums[name] = self.sums.get(name, 0.0) + float(value.sum())

    def run(self, step) -> dict[str, float]:
        for start in range(0, self.k, self.tile):
            rows = slice(start, min(start + self.tile, self.k))
            n = rows.stop - rows.start
            eye = torch.zeros(n, self.k, dtype=torch.float64, device=self.device)
            eye[torch.arange(n), torch.arange(rows.start, rows.stop)] = 1.0
            step(rows, eye)
        return self.sums


def metrics_tiled(counts: torch.Tensor, means: torch.Tensor, scatter: torch.Tensor,
                  class_scatter: torch.Tensor, W: np.ndarray | None, b: np.ndarray | None, *,
                  global_mean: str, nc3: str, tile: int, min_count: int = 1) -> xr.Dataset:
    """NC metrics of the classes with samples, every K x K quantity summed tile by tile.

    ``counts`` (K,), ``means`` (K, d), the pooled within-class ``scatter``
    (d, d) and the per-class scatter traces ``class_scatter`` (K,) are float64
    tensors on one device; see :class:`~workbench.collapse.TiledNCAccumulator`
    for the definitions and the output.
    """
    k_all, d = means.shape
    dev = means.device
    present = counts >= min_count
    idx = torch.nonzero(present).flatten()
    k = int(idx.numel())
    if k < 2:
        raise ValueError(f"labels: expected samples of at least 2 classes, got {k} class(es) with samples"
                         + (f" (at least min_count={min_count} each)" if min_count > 1 else ""))
    n = counts[idx]
    total = float(n.sum())
    mp = means[idx]
    weights = torch.full((k,), 1.0 / k, dtype=torch.float64, device=dev) if global_mean == "class_means" \
        else n / total
    centred = mp - weights @ mp
    sigma_w = scatter / total
    norms = centred.norm(dim=1)
    unit = centred / norms[:, None]
    variance = class_scatter[idx] / n

    g_norm, gu_norm = _frobenius(centred, centred), _frobenius(mp, mp)
    pairs = k * (k - 1)
    cos_mean = float((unit.sum(0) ** 2).sum() - k) / pairs  # sum over i != j of u_i . u_j
    etf_off, etf_diag = -1.0 / (k * np.sqrt(k - 1)), (1.0 - 1.0 / k) / np.sqrt(k - 1)
    w = None if W is None else torch.from_numpy(W).to(dev)[idx]
    nc3_rows = {"zhu_etf": centred, "dang_of": mp}.get(nc3) if w is not None else None
    wm_norm = _frobenius(w, nc3_rows) if nc3_rows is not None else None
    tiles = _Tiles(k, tile, dev)

    def step(rows: slice, eye: torch.Tensor) -> None:
        off = eye == 0
        cos = unit[rows] @ unit.T
        tiles.add("cos_dev2", (cos - cos_mean) ** 2, off)
        tiles.add("max_angle", (cos + 1.0 / (k - 1)).abs(), off)
        tiles.add("gnc2_log", -0.5 * torch.log(torch.clamp(2.0 - 2.0 * cos, min=0.0)), off)
        tiles.add("etf", (centred[rows] @ centred.T / g_norm - (etf_off + (etf_diag - etf_off) * eye)) ** 2)
        tiles.add("of", (mp[rows] @ mp.T / gu_norm - eye / np.sqrt(k)) ** 2)
        if nc3_rows is not None:
            target = etf_off + (etf_diag - etf_off) * eye if nc3 == "zhu_etf" else eye / np.sqrt(k)
            tiles.add("nc3", (w[rows] @ nc3_rows.T / wm_norm - target) ** 2)

    with np.errstate(invalid="ignore", divide="ignore"):
        sums = tiles.run(step)
    cdnv_mean, cdnv_var = _mean_var(*_pairwise_tiles(mp, tile, cdnv_ratio, variance))
    values = {
        "nc1": _nc1(sigma_w, centred.T @ centred / k, k),
        "nc2_equinorm_h": _equinorm(norms),
        "nc2_equinorm_w": np.nan,
        "nc2_equiangle": float(np.sqrt(max(sums["cos_dev2"] / pairs, 0.0))),
        "nc2_max_angle": sums["max_angle"] / pairs,
        "nc2_etf": float(np.sqrt(sums["etf"])),
        "nc2_of": float(np.sqrt(sums["of"])),
        "nc3": np.nan, "nc4": np.nan,
        "gnc2_log": sums["gnc2_log"] / pairs,
        "unc3": np.nan,
        "cdnv": cdnv_mean, "cdnv_var": cdnv_var,
        "sigma_w_trace": float(torch.trace(sigma_w)),
        "sigma_b_trace": float((centred**2).sum() / k),
    }
    per_class = {name: torch.full((k_all,), np.nan, dtype=torch.float64, device=dev)
                 for name in ("mean_norm", "centred_mean_norm", "classifier_mean_dot", "class_variance")}
    per_class["mean_norm"][idx] = mp.norm(dim=1)
    per_class["centred_mean_norm"][idx] = norms
    per_class["class_variance"][idx] = variance
    w_norm = np.full(k_all, np.nan)
    if w is not None:
        w_all = torch.from_numpy(W).to(dev)
        w_norm = w_all.norm(dim=1).cpu().numpy()
        per_class["classifier_mean_dot"][idx] = (w * mp).sum(1)
        values["nc2_equinorm_w"] = _equinorm(w.norm(dim=1))
        duality = (w * centred).sum(1) / (w.norm(dim=1) * norms)
        values["unc3"] = float(duality.std(unbiased=False) / duality.mean().abs())
        if nc3 == "papyan":
            values["nc3"] = float(((w / w.norm() - centred / centred.norm()) ** 2).sum())
        else:
            values["nc3"] = float(np.sqrt(sums["nc3"]))
    empty = torch.nonzero(counts == 0).flatten().cpu().numpy()
    data = {name: ((), float(value)) for name, value in values.items()}
    data.update({name: ("class", value.cpu().numpy()) for name, value in per_class.items()})
    data.update({"counts": ("class", counts.cpu().numpy().astype(np.int64)),
                 "present": ("class", present.cpu().numpy()), "classifier_norm": ("class", w_norm)})
    return xr.Dataset(data, coords={"class": np.arange(k_all)}, attrs={
        "n_samples": int(total), "n_classes": k_all, "n_classes_present": k, "n_classes_empty": int(empty.size),
        "empty_classes_first": empty[:20].tolist(), "min_count": min_count,
        "n_classes_too_few": int(((counts > 0) & ~present).sum()), "dim": d, "tile": tile, "global_mean": global_mean,
        "nc3_form": nc3, "nc4": "not computed on the tiled path (it needs a second pass over the samples)",
        "workbench_version": workbench.__version__})


def _equinorm(norms: torch.Tensor) -> float:
    mean = float(norms.mean())
    return float(norms.std(unbiased=False)) / mean if mean > 0 else np.nan
