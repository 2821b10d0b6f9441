"""Papyan et al.'s neural-collapse metrics NC1-NC4 for one set of features."""

from __future__ import annotations

from typing import Any

import torch
import xarray as xr

from workbench.device import resolve_device
from workbench.collapse._validate import (
    as_features,
    as_labels,
    check_choice,
    check_problem_size,
    rows_numbered_in,
)
from workbench.collapse.accumulator import NCAccumulator
from workbench.collapse.geometry import GLOBAL_MEANS, NC3_FORMS

#: Rows per streamed block, so a large feature array never needs a full centred copy.
CHUNK_ROWS = 65536


def nc_metrics(features: Any, labels: Any, W: Any = None, b: Any = None, *, global_mean: str = "class_means",
               nc3: str = "papyan", n_classes: int | None = None,
               device: str | torch.device | None = None) -> xr.Dataset:
    """Neural-collapse metrics NC1-NC4 of features with class labels.

    With class means mu_k, global mean mu_G and M~ = [mu_k - mu_G]:

    * ``nc1`` = tr(Sigma_W Sigma_B^+) / K, within-class variability relative to
      between-class; Sigma_B is inverted on its top K-1 eigenvalues in float64.
    * ``nc2_equinorm_h`` / ``nc2_equinorm_w``: std / mean of ||mu~_k|| / ||w_k||;
      ``nc2_equiangle``: std of the off-diagonal cosines of the mu~_k;
      ``nc2_max_angle``: mean |cos + 1/(K-1)|; ``nc2_etf``: distance of the
      unit-norm centred Gram M~^T M~ to the simplex ETF; ``nc2_of``: distance of
      the unit-norm *uncentred* Gram to the orthogonal frame I/sqrt(K) (the
      bias-free target).
    * ``nc3``: self-duality of classifier and means, in the form named by
      ``nc3``: ``"papyan"`` ||W^T/||W|| - M~/||M~|| ||_F^2; ``"zhu_etf"``
      ||W M~ / ||W M~|| - ETF||_F; ``"dang_of"`` the same with uncentred means
      and the OF target.
    * ``nc4``: fraction of samples where argmax_k (w_k.h + b_k) differs from the
      nearest class mean.
    * ``gnc2_log``: hyperspherical uniformity of the centred means with the log
      kernel, and ``unc3``: uniform duality, as from
      :func:`~workbench.collapse.hyperspherical_uniformity` and
      :func:`~workbench.collapse.uniform_duality` (both from the K x K Gram,
      so they cost nothing on the features).

    ``nc2_equinorm_w``, ``nc3``, ``nc4`` and ``unc3`` are NaN without ``W``.

    The features are read twice (see :class:`~workbench.collapse.NCAccumulator`
    with ``scatter="projected"``): once for the class means, once for the
    within-class scatter projected on the centred means, which is all NC1
    needs, and for NC4. That costs n d K multiply-adds rather than the n d^2 of
    a full covariance.

    Parameters
    ----------
    features : array-like (sample, dim)
        numpy, torch or xarray, read in its own precision (float32 stays
        float32 in memory); every statistic is float64. NaN or inf is an error.
    labels : array-like of int (sample,)
        Class indices in ``[0, K)``; every class needs at least one sample (a
        class with a single sample adds no within-class scatter).
    W : array-like (class, dim), optional
        Last-layer classifier rows w_k.
    b : array-like (class,), optional
        Classifier bias (zero when omitted).
    global_mean : {"class_means", "samples"}
        mu_G as the mean of class means or the sample mean (equal when balanced).
    nc3 : {"papyan", "zhu_etf", "dang_of"}
        Which NC3 form to report.
    n_classes : int, optional
        K; default ``labels.max() + 1``.
    device : str or torch.device, optional
        Where the statistics are accumulated; default CUDA when available.

    Returns
    -------
    xarray.Dataset
        Scalars ``nc1`` ... ``nc4``, ``sigma_w_trace``, ``sigma_b_trace``; over
        ``class``: ``counts``, ``mean_norm`` (||mu_k||), ``centred_mean_norm``,
        ``classifier_norm``, ``classifier_mean_dot`` (w_k . mu_k); ``class_means``
        (class, dim); ``gram`` (centred) and ``gram_uncentred`` (class, other_class).

    Examples
    --------
    >>> import numpy as np
    >>> means = np.eye(3) * 5.0
    >>> x = np.repeat(means, 50, axis=0) + np.random.default_rng(0).normal(scale=0.1, size=(150, 3))
    >>> y = np.repeat(np.arange(3), 50)
    >>> ds = nc_metrics(x, y, W=means, device="cpu")
    >>> bool(ds.nc1 < 1e-2), float(ds.nc4)
    (True, 0.0)
    """
    check_choice("global_mean", global_mean, GLOBAL_MEANS)
    check_choice("nc3", nc3, NC3_FORMS)
    dev = resolve_device(device)
    x = as_features(features, dev, dtype=None, check_finite=False)  # checked chunk by chunk, in float64
    y = as_labels(labels, x.shape[0], n_classes, dev)
    if x.shape[0] == 0:
        raise ValueError("features: expected at least one sample, got 0 rows")
    k = int(y.max()) + 1 if n_classes is None else n_classes
    if k < 2:
        raise ValueError(f"labels: expected at least 2 classes, got only class {int(y.max())}")
    if x.shape[1] < k - 1:
        raise ValueError(f"features: expected dim >= n_classes - 1 = {k - 1} (Sigma_B has rank K-1), "
                         f"got dim {x.shape[1]}")
    check_problem_size(k, x.shape[1])
    acc = NCAccumulator(k, x.shape[1], scatter="projected", device=dev)
    with rows_numbered_in(x):
        for start in range(0, x.shape[0], CHUNK_ROWS):
            acc.update(x[start:start + CHUNK_ROWS], y[start:start + CHUNK_ROWS])
        acc.second_pass(x, y, W, b)
    return acc.result(W, b, global_mean=global_mean, nc3=nc3)
