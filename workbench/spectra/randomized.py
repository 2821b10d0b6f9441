"""Metrics from the top of a spectrum only, for ``layer_spectra(method="randomized")``.

A randomized SVD gives the ``k`` largest singular values, not the rest. Of
the rank metrics, three are exact from those and the Frobenius norm (which
is computed from the matrix itself, not from singular values):

* ``log_spectral_norm`` ``= log10 sigma_1^2``;
* ``log_norm`` ``= log10 ||W||_F^2``;
* ``stable_rank`` ``= ||W||_F^2 / sigma_1^2``.

Every other metric needs the whole spectrum (effective and numerical rank,
energy ranks, the power-law fit's choice of ``xmin``, the Marchenko-Pastur
bulk) and is refused.

Examples
--------
>>> m = top_metrics(np.array([2.0, 1.0]), frobenius_sq=6.0)
>>> m["stable_rank"], bool(m["log_norm"] == np.log10(6.0))
(1.5, True)
"""

from __future__ import annotations

import numpy as np

from workbench.spectra.metrics import FIT_QUALITY_NAMES, METRIC_NAMES

TOP_METRICS = ("stable_rank", "log_norm", "log_spectral_norm")
METHODS = ("exact", "randomized")


def check_metrics(metrics, method: str) -> tuple[str, ...]:
    """The metric names ``layer_spectra`` computes for ``method`` (validated).

    Examples
    --------
    >>> check_metrics(None, "randomized")
    ('stable_rank', 'log_norm', 'log_spectral_norm')
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    every = METRIC_NAMES + FIT_QUALITY_NAMES
    if metrics is None:
        return TOP_METRICS if method == "randomized" else every
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in metrics if m not in every]
    if unknown or not metrics:
        raise ValueError(f"metrics: expected a non-empty subset of {every}, got {metrics!r}")
    if method == "randomized":
        whole = [m for m in metrics if m not in TOP_METRICS]
        if whole:
            raise ValueError(f"metrics: {whole} need the whole spectrum, which method='randomized' does not "
                             f"compute (it gives the top_k singular values only); use method='exact' for them, "
                             f"or ask randomized for a subset of {TOP_METRICS}")
    return metrics


def top_metrics(sigma_top: np.ndarray, frobenius_sq: float) -> dict:
    """:data:`TOP_METRICS` from the largest singular values and the squared Frobenius norm."""
    s = np.asarray(sigma_top, dtype=np.float64)
    if s.size == 0 or not s[0] > 0:
        return {name: np.nan for name in TOP_METRICS}
    lam1 = s[0] ** 2
    return {"stable_rank": float(frobenius_sq / lam1), "log_norm": float(np.log10(frobenius_sq)),
            "log_spectral_norm": float(np.log10(lam1))}
