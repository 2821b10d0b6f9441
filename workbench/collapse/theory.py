"""Closed-form neural-collapse geometry: balanced targets and Dang et al.'s imbalanced optimum.

Balanced data collapse to a simplex equiangular tight frame (ETF) when the
classifier has a bias or the loss is cross-entropy, and to an orthogonal frame
(OF) for the bias-free MSE model. With imbalanced class counts the bias-free
deep linear unconstrained-feature model (UFM) still has orthogonal class means,
but their norms depend on the counts (Dang et al., ICML 2023, Thm. 4.1):
majority classes get longer classifier rows and shorter feature means, and a
class with too few samples collapses to zero ("minority collapse").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr
from scipy.optimize import brentq

from workbench.memory import check_fits
from workbench.collapse._validate import check_counts, check_depth, check_positive


def etf_gram(n_classes: int) -> np.ndarray:
    """Unit-Frobenius Gram target of a simplex ETF, ``(I - 11^T/K) / sqrt(K-1)``.

    Examples
    --------
    >>> g = etf_gram(3)
    >>> round(float(np.linalg.norm(g)), 12), round(float(g[0, 1] / g[0, 0]), 12)
    (1.0, -0.5)
    """
    k = int(n_classes)
    check_fits(n_elements=3 * k * k, itemsize=8, argument="n_classes", what=f"a dense {k} x {k} Gram target")
    return (np.eye(k) - np.full((k, k), 1.0 / k)) / np.sqrt(k - 1)


def of_gram(n_classes: int) -> np.ndarray:
    """Unit-Frobenius Gram target of an orthogonal frame, ``I / sqrt(K)``.

    Examples
    --------
    >>> float(np.linalg.norm(of_gram(4)))
    1.0
    """
    k = int(n_classes)
    check_fits(n_elements=2 * k * k, itemsize=8, argument="n_classes", what=f"a dense {k} x {k} Gram target")
    return np.eye(k) / np.sqrt(k)


def _largest_root(depth: int, target: float) -> float:
    """Largest x > 0 with ``M x^(M-1) / (x^M + 1)^2 = target``, or 0 when there is none."""
    m = depth
    if m == 1:  # the left side falls from 1 at x = 0, so one root when target < 1
        return float(np.sqrt(1.0 / target) - 1.0) if target < 1.0 else 0.0

    def f(x: float) -> float:
        return m * x ** (m - 1) / (x**m + 1.0) ** 2 - target

    # The left side rises from 0 to its peak at x^M = (M-1)/(M+1), then falls to 0;
    # the largest root lies on the falling side, which brentq brackets exactly.
    peak = ((m - 1) / (m + 1)) ** (1.0 / m)
    if f(peak) < 0:
        return 0.0
    if f(peak) == 0:
        return peak
    upper = max(peak, (m / target) ** (1.0 / (m + 1))) * 2.0  # there f < M / x^(M+1) <= target
    return float(brentq(f, peak, upper, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))


def imbalanced_geometry(n_per_class: Sequence[int], lambda_W: float, lambda_H: float, depth: int) -> xr.Dataset:
    """Global optimum of the bias-free deep linear MSE unconstrained-feature model.

    The model is ``min (1/2N)||W_M...W_1 H - Y||^2 + (lambda_W/2) sum_m ||W_m||^2
    + (lambda_H/2)||H||^2`` with ``n_per_class[k]`` feature columns in class k.
    At the optimum every feature equals its class mean ``h_bar_k`` (NC1), class
    means are mutually orthogonal, and per class, with ``x_k`` the largest
    positive root of ``M x^(M-1) / (x^M + 1)^2 = b / n_k``,
    ``b = M N lambda_W (N lambda_H)^(1/M)`` (zero when there is none or when the
    root does not lower the per-class objective below its value at 0, the
    zero-root check), and ``s_k^(2M) = N lambda_H x_k^M``:
    ``||h_bar_k||^2 = s^(2M) / (s^(2M) + N lambda_H)^2``, ``||w_k||^2 = s^(2M)``
    and ``w_k . h_bar_k = s^(2M) / (s^(2M) + N lambda_H)`` for the rows ``w_k`` of
    the product ``W_M ... W_1``.

    Parameters
    ----------
    n_per_class : sequence of int
        Samples per class, at least two classes.
    lambda_W, lambda_H : float
        Weight decay on every layer and on the features (positive).
    depth : int
        Number M of linear layers (1 is the plain UFM).

    Returns
    -------
    xarray.Dataset
        Over ``class``: ``n``, ``x`` (the root), ``singular_value`` (s_k, per
        layer), ``mean_norm``, ``classifier_norm``, ``classifier_mean_dot`` and
        ``collapsed`` (True where the class vanishes); scalars ``objective``
        (the optimal loss) and ``b``.

    Examples
    --------
    >>> th = imbalanced_geometry([200, 100, 50, 50], 5e-4, 5e-4, depth=1)
    >>> bool((th.classifier_norm[0] > th.classifier_norm[3]) & (th.mean_norm[0] < th.mean_norm[3]))
    True
    >>> th.collapsed.values.tolist()
    [False, False, False, False]
    """
    n = check_counts(n_per_class).astype(np.float64)
    lam_w = check_positive("lambda_W", lambda_W)
    lam_h = check_positive("lambda_H", lambda_H)
    m = check_depth(depth)
    total = n.sum()
    scale = (total * lam_h) ** (1.0 / m)
    b = m * total * lam_w * scale

    def per_class_objective(x: float, n_k: float) -> float:
        return n_k / (2 * total * (x**m + 1.0)) + 0.5 * m * lam_w * scale * x

    x = np.empty_like(n)
    for k, n_k in enumerate(n):
        root = _largest_root(m, b / n_k)
        x[k] = root if root > 0 and per_class_objective(root, n_k) < per_class_objective(0.0, n_k) else 0.0
    s2m = total * lam_h * x**m
    denom = s2m + total * lam_h
    objective = sum(per_class_objective(xk, nk) for xk, nk in zip(x, n))
    return xr.Dataset(
        {
            "n": ("class", n.astype(np.int64)),
            "x": ("class", x),
            "singular_value": ("class", s2m ** (1.0 / (2 * m))),
            "mean_norm": ("class", np.sqrt(s2m) / denom),
            "classifier_norm": ("class", np.sqrt(s2m)),
            "classifier_mean_dot": ("class", s2m / denom),
            "collapsed": ("class", x == 0),
            "objective": ((), float(objective)),
            "b": ((), float(b)),
        },
        coords={"class": np.arange(n.size)},
        attrs={"lambda_W": lam_w, "lambda_H": lam_h, "depth": m, "n_samples": int(total),
               "model": "bias-free deep linear MSE UFM (Dang et al. 2023)"},
    )
