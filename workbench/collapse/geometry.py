"""Papyan's NC1-NC4 from sufficient statistics (class counts, means, pooled scatter).

Both the batch function :func:`~workbench.collapse.nc_metrics` and the streaming
:class:`~workbench.collapse.NCAccumulator` end here, so the definitions live in
one place.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import workbench
from workbench.collapse.theory import etf_gram, of_gram

GLOBAL_MEANS = ("class_means", "samples")
NC3_FORMS = ("papyan", "zhu_etf", "dang_of")


def _normalised_distance(gram: np.ndarray, target: np.ndarray) -> float:
    norm = np.linalg.norm(gram)
    return float(np.linalg.norm(gram / norm - target)) if norm > 0 else np.nan


def _nc1(centred: np.ndarray, sigma_w: np.ndarray) -> float:
    """tr(Sigma_W Sigma_B^+) / K with Sigma_B = M~ M~^T / K inverted on its top K-1 eigenvalues.

    Sigma_B shares its nonzero spectrum with the K x K matrix A^T A (A = M~ / sqrt(K)),
    so the eigendecomposition is done there: Sigma_B^+ = A V diag(lam^-2) V^T A^T.
    Each term q^T Sigma_W q / lam^2 is non-negative, so NC1 >= 0 even when Sigma_B
    is nearly singular (a default-rcond pinv can return negative values there).
    """
    k = centred.shape[0]
    a = centred.T / np.sqrt(k)
    lam, vec = np.linalg.eigh(a.T @ a)
    order = np.argsort(lam)[::-1][: k - 1]
    lam, vec = lam[order], vec[:, order]
    keep = lam > lam[0] * k * np.finfo(np.float64).eps if lam[0] > 0 else np.zeros_like(lam, dtype=bool)
    if not keep.any():
        return np.inf if np.trace(sigma_w) > 0 else np.nan
    q = a @ vec[:, keep]
    quad = np.einsum("di,di->i", q, sigma_w @ q)
    return float(np.sum(quad / lam[keep] ** 2) / k)


def _equinorm(norms: np.ndarray) -> float:
    return float(norms.std() / norms.mean()) if norms.mean() > 0 else np.nan


def metrics_from_moments(counts: np.ndarray, means: np.ndarray, scatter: np.ndarray, W: np.ndarray | None,
                         b: np.ndarray | None, nc4_fraction: float | None, *, global_mean: str,
                         nc3: str) -> xr.Dataset:
    """NC metrics from (n_k, mu_k, sum_k M2_k); see :func:`workbench.collapse.nc_metrics`."""
    k, d = means.shape
    total = counts.sum()
    sigma_w = scatter / total
    mu_g = means.mean(axis=0) if global_mean == "class_means" else counts @ means / total
    centred = means - mu_g
    gram = centred @ centred.T
    gram_u = means @ means.T
    norms = np.sqrt(np.diag(gram))
    cos = gram / np.outer(norms, norms)
    off = cos[~np.eye(k, dtype=bool)]
    sigma_b = gram / k

    values = {
        "nc1": _nc1(centred, sigma_w),
        "nc2_equinorm_h": _equinorm(norms),
        "nc2_equinorm_w": np.nan,
        "nc2_equiangle": float(off.std()),
        "nc2_max_angle": float(np.mean(np.abs(off + 1.0 / (k - 1)))),
        "nc2_etf": _normalised_distance(gram, etf_gram(k)),
        "nc2_of": _normalised_distance(gram_u, of_gram(k)),
        "nc3": np.nan,
        "nc4": np.nan,
        "sigma_w_trace": float(np.trace(sigma_w)),
        "sigma_b_trace": float(np.trace(sigma_b)),
    }
    w_norm = np.full(k, np.nan)
    w_dot = np.full(k, np.nan)
    if W is not None:
        w_norm = np.linalg.norm(W, axis=1)
        w_dot = np.einsum("kd,kd->k", W, means)
        values["nc2_equinorm_w"] = _equinorm(w_norm)
        if nc3 == "papyan":
            values["nc3"] = float(np.linalg.norm(W / np.linalg.norm(W) - centred / np.linalg.norm(centred)) ** 2)
        elif nc3 == "zhu_etf":
            values["nc3"] = _normalised_distance(W @ centred.T, etf_gram(k))
        else:
            values["nc3"] = _normalised_distance(W @ means.T, of_gram(k))
        if nc4_fraction is not None:
            values["nc4"] = float(nc4_fraction)

    cls = np.arange(k)
    data = {name: ((), value) for name, value in values.items()}
    data.update({
        "counts": ("class", counts.astype(np.int64)),
        "class_means": (("class", "dim"), means),
        "mean_norm": ("class", np.linalg.norm(means, axis=1)),
        "centred_mean_norm": ("class", norms),
        "classifier_norm": ("class", w_norm),
        "classifier_mean_dot": ("class", w_dot),
        "gram": (("class", "other_class"), gram),
        "gram_uncentred": (("class", "other_class"), gram_u),
    })
    return xr.Dataset(
        data,
        coords={"class": cls, "other_class": cls, "dim": np.arange(d)},
        attrs={"n_samples": int(total), "n_classes": k, "dim": d, "global_mean": global_mean, "nc3_form": nc3,
               "workbench_version": workbench.__version__},
    )
