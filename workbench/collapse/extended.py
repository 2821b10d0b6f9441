"""Collapse metrics beyond Papyan's NC1-NC4: CDNV, hyperspherical uniformity, uniform duality, OOD orthogonality.

With many classes (a language model's vocabulary) or imbalance, the simplex
ETF is out of reach and NC2/NC3 stop being informative; these metrics measure
the same tendencies in a form that still has a meaningful optimum:

* **CDNV** (Galanti et al. 2022) replaces NC1's matrix ratio by pairwise
  variance-over-distance ratios;
* **GNC2** (hyperspherical uniformity; Liu et al. 2023, used by Wu & Papyan
  2024) asks the normalised class means to spread evenly on the sphere, scored
  by a repulsive kernel that the regular simplex minimises;
* **UNC3** (uniform duality; Wu & Papyan 2024) asks every classifier row to be
  equally well aligned with its class mean, whatever that alignment is;
* **NC5** (Ammar et al. 2024, NECO) asks out-of-distribution features to be
  orthogonal to the in-distribution class means.

Pairwise quantities are computed in tiles of ``tile`` classes, so a vocabulary
of 50,257 classes never forms a K x K matrix.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import xarray as xr

from workbench.collapse._validate import as_features, as_labels, check_choice, check_count
from workbench.device import resolve_device

KERNELS = ("log", "riesz")


def _pairwise_tiles(x: torch.Tensor, tile: int, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    extra: torch.Tensor | None = None) -> tuple[float, float, int]:
    """Sum and sum of squares of ``fn`` over pairs i < j, tile by tile (at most tile x K values at once)."""
    k = x.shape[0]
    total, total_sq, pairs = 0.0, 0.0, 0
    for start in range(0, k, tile):
        rows = x[start:start + tile]
        block = fn(rows, x) if extra is None else fn(rows, x, extra[start:start + tile], extra)
        i = torch.arange(start, start + rows.shape[0], device=x.device)[:, None]
        upper = torch.arange(k, device=x.device)[None, :] > i
        vals = block[upper]
        total += float(vals.sum())
        total_sq += float((vals**2).sum())
        pairs += int(vals.numel())
    return total, total_sq, pairs


def _mean_var(total: float, total_sq: float, pairs: int) -> tuple[float, float]:
    mean = total / pairs
    return mean, max(total_sq / pairs - mean**2, 0.0)


def cdnv_ratio(mi: torch.Tensor, mj: torch.Tensor, vi: torch.Tensor, vj: torch.Tensor) -> torch.Tensor:
    """(Var_i + Var_j) / (2 ||mu_i - mu_j||^2) for every pair of rows of ``mi`` and ``mj``."""
    return (vi[:, None] + vj[None, :]) / (2 * torch.cdist(mi, mj) ** 2)


def cdnv(features: Any, labels: Any, *, n_classes: int | None = None, tile: int = 1024,
         device: str | torch.device | None = None) -> xr.Dataset:
    """Class-distance normalised variance (Galanti, Gyorgy & Hutter, ICLR 2022).

    For classes i != j with means mu_i and variances
    ``Var_i = E_{h in class i} ||h - mu_i||^2`` (the trace of the class covariance),

    ``CDNV(i, j) = (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)``;

    it falls to 0 as features collapse onto well separated means. Reported: the
    mean over pairs and its variance, and the per-class variances.

    Parameters
    ----------
    features : array-like (sample, dim)
    labels : array-like of int (sample,)
        Every class in ``[0, K)`` needs a sample.
    n_classes : int, optional
        K; default ``labels.max() + 1``.
    tile : int
        Classes per tile of the pairwise computation.
    device : str or torch.device, optional

    Returns
    -------
    xarray.Dataset
        Scalars ``cdnv`` (mean over i < j) and ``cdnv_var``; ``class_variance``
        and ``counts`` over ``class``.

    Examples
    --------
    Two classes at distance 4, each with variance 2 (points at +-1 on two axes):

    >>> x = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], float)
    >>> x = np.vstack([x * np.sqrt(2), x * np.sqrt(2) + [4, 0]])
    >>> float(cdnv(x, np.repeat([0, 1], 4), device="cpu").cdnv)  # (2 + 2) / (2 * 16)
    0.125
    """
    tile = check_count("tile", tile)
    dev = resolve_device(device)
    x = as_features(features, dev)
    y = as_labels(labels, x.shape[0], n_classes, dev)
    k = int(y.max()) + 1 if n_classes is None else int(n_classes)
    counts = torch.bincount(y, minlength=k).to(torch.float64)
    if k < 2 or (counts == 0).any():
        raise ValueError(f"labels: expected at least 2 classes, each with a sample; got counts {counts.tolist()[:10]}")
    means = torch.zeros(k, x.shape[1], dtype=torch.float64, device=dev).index_add_(0, y, x) / counts[:, None]
    variance = torch.zeros(k, dtype=torch.float64, device=dev).index_add_(0, y, ((x - means[y]) ** 2).sum(1)) / counts

    mean, var = _mean_var(*_pairwise_tiles(means, tile, cdnv_ratio, variance))
    return xr.Dataset({"cdnv": ((), mean), "cdnv_var": ((), var),
                       "class_variance": ("class", variance.cpu().numpy()),
                       "counts": ("class", counts.cpu().numpy().astype(np.int64))},
                      coords={"class": np.arange(k)},
                      attrs={"reference": "Galanti, Gyorgy & Hutter, ICLR 2022"})


def _centred_unit(means: Any, global_mean: Any, device: torch.device) -> torch.Tensor:
    m = as_features(means, device, name="means")
    g = m.mean(0) if global_mean is None else as_features(np.atleast_2d(np.asarray(global_mean, float)), device,
                                                          name="global_mean")[0]
    c = m - g
    return c / c.norm(dim=1, keepdim=True)


def hyperspherical_uniformity(means: Any, *, kernel: str = "log", global_mean: Any = None, tile: int = 1024,
                              device: str | torch.device | None = None) -> xr.Dataset:
    """GNC2: how evenly the centred, normalised class means spread on the sphere (Wu & Papyan 2024).

    With u_k = (mu_k - mu_G) / ||mu_k - mu_G||, the energy of the pairs i < j
    under a repulsive kernel (Liu et al. 2023, "Generalizing and decoupling
    neural collapse via hyperspherical uniformity gap"):

    * ``"log"``: ``log(1 / ||u_i - u_j||)``;
    * ``"riesz"``: ``||u_i - u_j||^-s`` with ``s = dim - 2`` (for dim = 2,
      where s = 0, the log kernel is the Riesz limit and is used instead).

    Lower mean energy is more uniform. For K <= dim + 1 the regular simplex
    (a simplex ETF) minimises both, with every distance
    ``sqrt(2K / (K - 1))`` and zero variance; Wu & Papyan ("Linguistic
    Collapse", NeurIPS 2024) track the mean and the variance over pairs.

    Parameters
    ----------
    means : array-like (class, dim)
        Class means, e.g. ``nc_metrics(...).class_means``.
    kernel : {"log", "riesz"}
    global_mean : array-like (dim,), optional
        mu_G; default the mean of the class means.
    tile : int
        Classes per tile (memory is tile x K values).
    device : str or torch.device, optional

    Returns
    -------
    xarray.Dataset
        Scalars ``gnc2`` (mean energy over pairs) and ``gnc2_var``.

    Examples
    --------
    Four means on a regular tetrahedron (a simplex ETF) reach the minimum
    ``-log(sqrt(8/3))``:

    >>> etf = np.eye(4) - 0.25
    >>> ds = hyperspherical_uniformity(etf, device="cpu")
    >>> round(float(ds.gnc2), 9), round(float(-0.5 * np.log(8 / 3)), 9), float(ds.gnc2_var) < 1e-15
    (-0.490414627, -0.490414627, True)
    """
    check_choice("kernel", kernel, KERNELS)
    tile = check_count("tile", tile)
    dev = resolve_device(device)
    u = _centred_unit(means, global_mean, dev)
    s = u.shape[1] - 2
    if kernel == "riesz" and s > 0:
        def energy(a, b):
            return torch.cdist(a, b) ** (-s)
    else:
        def energy(a, b):
            return -torch.log(torch.cdist(a, b))
    mean, var = _mean_var(*_pairwise_tiles(u, tile, energy))
    return xr.Dataset({"gnc2": ((), mean), "gnc2_var": ((), var)},
                      attrs={"kernel": kernel if kernel == "log" or s > 0 else "log (riesz with s = 0)",
                             "riesz_s": s, "reference": "Wu & Papyan, NeurIPS 2024; Liu et al., ICLR 2023"})


def uniform_duality(means: Any, W: Any, *, global_mean: Any = None,
                    device: str | torch.device | None = None) -> xr.Dataset:
    """UNC3: variability of classifier-to-mean alignment across classes (Wu & Papyan 2024).

    With c_k = cos(w_k, mu_k - mu_G), uniform duality is the coefficient of
    variation ``std_k(c_k) / mean_k(c_k)``: 0 when every class is aligned
    equally well, whether or not the alignment is perfect (self-duality, NC3,
    would need c_k = 1). ``duality`` reports the mean cosine.

    Parameters
    ----------
    means : array-like (class, dim)
    W : array-like (class, dim)
        Classifier rows.
    global_mean : array-like (dim,), optional
        mu_G; default the mean of the class means.
    device : str or torch.device, optional

    Returns
    -------
    xarray.Dataset
        Scalars ``unc3`` and ``duality``; ``cosine`` over ``class``.

    Examples
    --------
    Every row at 60 degrees from its (centred) mean: uniform, so UNC3 = 0:

    >>> means = np.array([[1.0, 0.0], [-1.0, 0.0]])
    >>> W = np.array([[0.5, np.sqrt(3) / 2], [-0.5, -np.sqrt(3) / 2]])
    >>> ds = uniform_duality(means, W, device="cpu")
    >>> round(float(ds.duality), 12), round(float(ds.unc3), 12)
    (0.5, 0.0)
    """
    dev = resolve_device(device)
    u = _centred_unit(means, global_mean, dev)
    w = as_features(W, dev, name="W")
    if w.shape != u.shape:
        raise ValueError(f"W: expected shape (class, dim) = {tuple(u.shape)} like the means, got {tuple(w.shape)}")
    cos = (u * w).sum(1) / w.norm(dim=1)
    mean = float(cos.mean())
    return xr.Dataset({"unc3": ((), float(cos.std(unbiased=False)) / abs(mean) if mean != 0 else np.nan),
                       "duality": ((), mean), "cosine": ("class", cos.cpu().numpy())},
                      coords={"class": np.arange(u.shape[0])},
                      attrs={"reference": "Wu & Papyan, NeurIPS 2024"})


def ood_orthogonality(means: Any, ood_features: Any, *, device: str | torch.device | None = None) -> xr.Dataset:
    """NC5: out-of-distribution features orthogonal to the in-distribution class means (Ammar et al. 2024).

    With mu_G^OOD the mean of the OOD features, NECO's deviation from
    orthogonality is ``mean_k |cos(mu_k, mu_G^OOD)|``: 0 when the OOD mean is
    orthogonal to every class mean.

    Parameters
    ----------
    means : array-like (class, dim)
        In-distribution class means.
    ood_features : array-like (sample, dim)
        Features of out-of-distribution inputs.
    device : str or torch.device, optional

    Returns
    -------
    xarray.Dataset
        Scalar ``nc5``; ``cosine`` (signed) over ``class``.

    Examples
    --------
    >>> means = np.eye(3)[:2] * 5.0                  # two classes in the x-y plane
    >>> ood = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]])  # mean along z
    >>> float(ood_orthogonality(means, ood, device="cpu").nc5)
    0.0
    """
    dev = resolve_device(device)
    m = as_features(means, dev, name="means")
    ood = as_features(ood_features, dev, name="ood_features")
    if ood.shape[1] != m.shape[1] or ood.shape[0] == 0:
        raise ValueError(f"ood_features: expected (sample, {m.shape[1]}) with at least one sample, "
                         f"got {tuple(ood.shape)}")
    g = ood.mean(0)
    cos = (m @ g) / (m.norm(dim=1) * g.norm())
    return xr.Dataset({"nc5": ((), float(cos.abs().mean())), "cosine": ("class", cos.cpu().numpy())},
                      coords={"class": np.arange(m.shape[0])},
                      attrs={"reference": "Ammar et al., ICLR 2024 (NECO)"})


