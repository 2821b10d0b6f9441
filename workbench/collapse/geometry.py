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


def _nc1(gram: np.ndarray, within: np.ndarray, sigma_w_trace: float) -> float:
    """tr(Sigma_W Sigma_B^+) / K with Sigma_B = M~^T M~ / K inverted on its top K-1 eigenvalues.

    ``gram`` is M~ M~^T and ``within`` is M~ Sigma_W M~^T, both K x K. Sigma_B
    shares its nonzero spectrum with gram / K = V diag(lam) V^T, and
    Sigma_B^+ = A V diag(lam^-2) V^T A^T with A = M~^T / sqrt(K), so
    NC1 = sum_i (v_i^T within v_i) / (K^2 lam_i^2): Sigma_W is only ever seen on the
    span of the centred means. Each term is non-negative, so NC1 >= 0 even when
    Sigma_B is nearly singular (a default-rcond pinv can return negative values there).
    """
    k = gram.shape[0]
    lam, vec = np.linalg.eigh(gram / k)
    order = np.argsort(lam)[::-1][: k - 1]
    lam, vec = lam[order], vec[:, order]
    keep = lam > lam[0] * k * np.finfo(np.float64).eps if lam[0] > 0 else np.zeros_like(lam, dtype=bool)
    if not keep.any():
        return np.inf if sigma_w_trace > 0 else np.nan
    vec = vec[:, keep]
    quad = np.maximum(np.einsum("ki,ki->i", vec, within @ vec), 0.0) / k
    return float(np.sum(quad / lam[keep] ** 2) / k)


def _equinorm(norms: np.ndarray) -> float:
    return float(norms.std() / norms.mean()) if norms.mean() > 0 else np.nan


def metrics_from_moments(counts: np.ndarray, means: np.ndarray, projected_scatter: np.ndarray, scatter_trace: float,
                         W: np.ndarray | None, b: np.ndarray | None, nc4_fraction: float | None, *,
                         global_mean: str, nc3: str) -> xr.Dataset:
    """NC metrics from class counts n_k, means mu_k and the pooled within-class scatter S_W.

    S_W enters only as its trace and its projection Mc S_W Mc^T (K x K) on the
    means centred on their plain average, Mc = M - mean_k mu_k; see
    :func:`workbench.collapse.nc_metrics` for the definitions.
    """
    k, d = means.shape
    total = counts.sum()
    weights = np.full(k, 1.0 / k) if global_mean == "class_means" else counts / total
    mu_g = weights @ means
    # M~ = (I - 1 c^T) Mc for either global mean, since c^T 1 = 1
    to_centred = np.eye(k) - np.outer(np.ones(k), weights)
    within = to_centred @ projected_scatter @ to_centred.T / total
    centred = means - mu_g
    gram = centred @ centred.T
    gram_u = means @ means.T
    norms = np.sqrt(np.diag(gram))
    cos = gram / np.outer(norms, norms)
    off = cos[~np.eye(k, dtype=bool)]
    sigma_b = gram / k

    values = {
        "nc1": _nc1(gram, within, scatter_trace / total),
        "nc2_equinorm_h": _equinorm(norms),
        "nc2_equinorm_w": np.nan,
        "nc2_equiangle": float(off.std()),
        "nc2_max_angle": float(np.mean(np.abs(off + 1.0 / (k - 1)))),
        "nc2_etf": _normalised_distance(gram, etf_gram(k)),
        "nc2_of": _normalised_distance(gram_u, of_gram(k)),
        "nc3": np.nan,
        "nc4": np.nan,
        # GNC2 with the log kernel, from the cosines: ||u_i - u_j||^2 = 2 - 2 cos (see hyperspherical_uniformity)
        "gnc2_log": float(np.mean(-0.5 * np.log(np.maximum(2.0 - 2.0 * off, 0.0)))) if k > 1 else np.nan,
        "unc3": np.nan,
        "sigma_w_trace": float(scatter_trace / total),
        "sigma_b_trace": float(np.trace(sigma_b)),
    }
    w_norm = np.full(k, np.nan)
    w_dot = np.full(k, np.nan)
    if W is not None:
        w_norm = np.linalg.norm(W, axis=1)
        w_dot = np.einsum("kd,kd->k", W, means)
        values["nc2_equinorm_w"] = _equinorm(w_norm)
        with np.errstate(invalid="ignore", divide="ignore"):  # a vanished class or row: NaN
            duality = np.einsum("kd,kd->k", W, centred) / (w_norm * norms)  # uniform_duality's cosines
        values["unc3"] = float(duality.std() / abs(duality.mean())) if duality.mean() != 0 else np.nan
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
