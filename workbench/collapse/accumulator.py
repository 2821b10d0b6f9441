"""One-pass, exactly mergeable neural-collapse statistics.

Each batch is summarised by its per-class counts m_k, means nu_k and pooled
within-class scatter (features centred on their *batch* class means, which
keeps the sum numerically stable), then merged into the running totals with
Chan et al.'s pairwise update

    S_W <- S_W + S_batch + sum_k (n_k m_k / (n_k + m_k)) (nu_k - mu_k)(nu_k - mu_k)^T,

which is exact whatever the batch split. Only the pooled scatter is kept, so
memory is O(K d + d^2), never per-class covariances.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.device import resolve_device
from workbench.collapse._validate import (
    as_classifier,
    as_features,
    as_labels,
    check_choice,
    check_problem_size,
    raise_non_finite,
)
from workbench.collapse.geometry import GLOBAL_MEANS, NC3_FORMS, metrics_from_moments

#: Column blocks of the upper-triangular Gram update; four skip 3/8 of the flops of a full matmul.
GRAM_BLOCKS = 4


def _add_upper_gram(target: torch.Tensor, x: torch.Tensor) -> None:
    """target += x^T x on and above the diagonal blocks (torch exposes no BLAS syrk)."""
    d = x.shape[1]
    step = -(-d // GRAM_BLOCKS)
    for i in range(0, d, step):
        target[i:i + step, i:].addmm_(x[:, i:i + step].T, x[:, i:])


def _top_two_gap(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    top = scores.topk(2, dim=1)
    return top.indices[:, 0], top.values[:, 0] - top.values[:, 1]


def _count_mismatches(x: torch.Tensor, stacked: torch.Tensor, offsets: torch.Tensor, k: int) -> float:
    """Samples where argmax(W h + b) differs from argmax(mu.h - ||mu||^2/2), i.e. the nearest mean.

    Scores come from one float32 matmul against [W; mu]. A float32 dot product
    of length d is within (d + 4) u ||h|| ||v|| of the exact one (u = 2^-24,
    with room for rounding h and v to float32), so a sample whose top-two gap exceeds
    twice that bound has the float64 decision; the others are rescored in float64.
    """
    x32 = x.float()
    scores = (x32 @ stacked.float().T).double() + offsets
    # TF32 / bf16 matmuls (allowed by the user's torch settings) round inputs to 10 / 7 bits
    exact_fp32 = torch.get_float32_matmul_precision() == "highest" and not (
        x.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)
    unit = 2.0**-24 if exact_fp32 else 2.0**-8
    # the float32 row norms are themselves within d u of exact: 1.01 covers it for any d < 10^5
    bound = 1.01 * (x.shape[1] + 4) * unit * x32.norm(dim=1).double() * stacked.norm(dim=1).max()
    decided, gap_w = _top_two_gap(scores[:, :k])
    nearest, gap_m = _top_two_gap(scores[:, k:])
    if not bool(torch.isfinite(gap_w).all() and torch.isfinite(gap_m).all()):  # NaN/inf in a row reaches its gaps
        raise_non_finite(x)
    unsure = torch.nonzero((gap_w <= 2 * bound) | (gap_m <= 2 * bound)).flatten()
    if unsure.numel():
        exact = x[unsure].double() @ stacked.T + offsets
        decided[unsure], nearest[unsure] = exact[:, :k].argmax(dim=1), exact[:, k:].argmax(dim=1)
    return float((decided != nearest).sum())


class NCAccumulator:
    """Streaming NC1-NC4 statistics over batches of (features, labels).

    Parameters
    ----------
    n_classes : int
        Number of classes K; labels are integers in ``[0, K)``.
    dim : int
        Feature dimension d (at least K - 1).
    device : str or torch.device, optional
        Where the running statistics live; default CUDA when available, else CPU.
        Statistics are float64 on every device.

    Attributes
    ----------
    counts_, means_, scatter_ : torch.Tensor
        Per-class counts (K,), class means (K, d) and the pooled within-class
        scatter sum_k sum_i (h - mu_k)(h - mu_k)^T (d, d).

    Notes
    -----
    NC4 compares each sample's classifier decision with its nearest *final*
    class mean, so it needs a second pass: call :meth:`add_nc4` on the same
    data once all :meth:`update` calls are done; NC4 is the mismatch fraction
    over the samples of that pass. Without it ``nc4`` is NaN.
    A class with a single sample is allowed; it adds no within-class scatter.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(600, 8)), np.arange(600) % 3
    >>> acc = NCAccumulator(3, 8, device="cpu")
    >>> for rows in np.array_split(np.arange(600), 7):
    ...     _ = acc.update(x[rows], y[rows])
    >>> float(acc.result().nc1) > 0
    True
    """

    def __init__(self, n_classes: int, dim: int, *, device: str | torch.device | None = None) -> None:
        check_problem_size(n_classes, dim)
        self.n_classes = int(n_classes)
        self.dim = int(dim)
        self.device = resolve_device(device)
        opts = dict(dtype=torch.float64, device=self.device)
        self.counts_ = torch.zeros(self.n_classes, **opts)
        self.means_ = torch.zeros(self.n_classes, self.dim, **opts)
        self._scatter_upper = torch.zeros(self.dim, self.dim, **opts)
        self._nc4: tuple[np.ndarray, np.ndarray, float, int] | None = None

    @property
    def scatter_(self) -> torch.Tensor:
        """The pooled within-class scatter (d, d); only its upper triangle is accumulated."""
        upper = torch.triu(self._scatter_upper)
        return upper + torch.triu(upper, diagonal=1).T

    def update(self, features: Any, labels: Any) -> "NCAccumulator":
        """Add a batch of features (sample, dim) with integer labels (sample,).

        Examples
        --------
        >>> acc = NCAccumulator(2, 2, device="cpu").update([[0.0, 1.0], [2.0, 1.0]], [0, 1])
        >>> acc.counts_.tolist()
        [1.0, 1.0]
        """
        if self._nc4 is not None:
            raise RuntimeError("update: the NC4 pass has started; the class means are final")
        # finiteness is checked on the batch sums below: NaN or inf in any row reaches them
        x = as_features(features, self.device, check_finite=False)
        if x.shape[1] != self.dim:
            raise ValueError(f"features: expected {self.dim} columns (dim), got {x.shape[1]}")
        y = as_labels(labels, x.shape[0], self.n_classes, self.device)
        if x.shape[0] == 0:
            return self
        m = torch.bincount(y, minlength=self.n_classes).to(torch.float64)
        sums = torch.zeros_like(self.means_).index_add_(0, y, x)
        if not bool(torch.isfinite(sums).all()):
            raise_non_finite(x)
        batch_means = sums / m.clamp(min=1.0)[:, None]
        centred = batch_means[y]
        centred.sub_(x)  # nu_y - h: the sign does not change the scatter, and it saves a copy
        _add_upper_gram(self._scatter_upper, centred)
        total = self.counts_ + m
        delta = batch_means - self.means_
        cross = torch.where(total > 0, self.counts_ * m / total.clamp(min=1.0), torch.zeros_like(total))
        self._scatter_upper.addmm_((delta * cross[:, None]).T, delta)
        self.means_ += delta * (m / total.clamp(min=1.0))[:, None]
        self.counts_ = total
        return self

    def add_nc4(self, features: Any, W: Any, b: Any = None) -> "NCAccumulator":
        """Second pass: count samples whose classifier decision differs from the nearest class mean.

        Use the same ``W`` and ``b`` later in :meth:`result`. Decisions are exact
        float64 decisions: scores are computed in float32 and every sample whose
        margin is within the float32 error bound is scored again in float64.

        Examples
        --------
        >>> x, y = [[0.0, 0.0], [4.0, 0.0], [0.1, 0.0]], [0, 1, 0]
        >>> acc = NCAccumulator(2, 2, device="cpu").update(x, y)
        >>> W = [[-1.0, 0.0], [1.0, 0.0]]
        >>> float(acc.add_nc4(x, W, [2.0, -2.0]).result(W, [2.0, -2.0]).nc4)
        0.0
        """
        self._check_complete()
        w, bias = as_classifier(W, b, self.n_classes, self.dim)
        if w is None:
            raise ValueError("W: the NC4 pass needs a classifier of shape (n_classes, dim), got None")
        if self._nc4 is not None and not (np.array_equal(w, self._nc4[0]) and np.array_equal(bias, self._nc4[1])):
            raise ValueError("W, b: expected the classifier used in earlier add_nc4 calls, got a different one")
        x = as_features(features, self.device, dtype=None, check_finite=False)
        if x.shape[1] != self.dim:
            raise ValueError(f"features: expected {self.dim} columns (dim), got {x.shape[1]}")
        stacked = torch.cat([torch.from_numpy(w).to(self.device), self.means_])
        offsets = torch.cat([torch.from_numpy(bias).to(self.device), -(self.means_ * self.means_).sum(dim=1) / 2])
        mismatches = _count_mismatches(x, stacked, offsets, self.n_classes)
        previous = self._nc4[2:] if self._nc4 is not None else (0.0, 0)
        self._nc4 = (w, bias, previous[0] + mismatches, previous[1] + x.shape[0])
        return self

    def _check_complete(self) -> None:
        empty = torch.nonzero(self.counts_ == 0).flatten().tolist()
        if empty:
            raise ValueError(f"labels: expected every class 0..{self.n_classes - 1} to have samples, "
                             f"got none for classes {empty[:10]}")

    def result(self, W: Any = None, b: Any = None, *, global_mean: str = "class_means",
               nc3: str = "papyan") -> xr.Dataset:
        """The NC metrics of everything seen so far; see :func:`workbench.collapse.nc_metrics`.

        Examples
        --------
        >>> import numpy as np
        >>> x = np.array([[1.0, 0.0], [1.2, 0.0], [0.0, 1.0], [0.0, 1.2]])
        >>> ds = NCAccumulator(2, 2, device="cpu").update(x, [0, 0, 1, 1]).result()
        >>> ds.counts.values.tolist()
        [2, 2]
        """
        check_choice("global_mean", global_mean, GLOBAL_MEANS)
        check_choice("nc3", nc3, NC3_FORMS)
        self._check_complete()
        w, bias = as_classifier(W, b, self.n_classes, self.dim)
        mismatches = None
        if self._nc4 is not None:
            if w is None or not (np.array_equal(w, self._nc4[0]) and np.array_equal(bias, self._nc4[1])):
                raise ValueError("W, b: expected the classifier given to add_nc4, got a different one")
            mismatches = self._nc4[2] / self._nc4[3]
        return metrics_from_moments(self.counts_.cpu().numpy(), self.means_.cpu().numpy(),
                                    self.scatter_.cpu().numpy(), w, bias, mismatches, global_mean=global_mean,
                                    nc3=nc3)
