"""Streaming, exactly mergeable neural-collapse statistics, in one pass or two.

Each batch is summarised by its per-class counts m_k, means nu_k and pooled
within-class scatter (features centred on their *batch* class means, which
keeps the sum numerically stable), then merged into the running totals with
Chan et al.'s pairwise update

    S_W <- S_W + S_batch + sum_k (n_k m_k / (n_k + m_k)) (nu_k - mu_k)(nu_k - mu_k)^T,

which is exact whatever the batch split. Only the pooled scatter is kept, so
memory is O(K d + d^2), never per-class covariances (``scatter="full"``).

NC1 = tr(Sigma_W Sigma_B^+) / K only sees Sigma_W on the (K-1)-dimensional span
of the centred class means, so with a second pass over the data, once the
means are final, the K x K scatter of the projections Mc (h - mu_y) on the
centred means is all that is needed (``scatter="projected"``): n d K multiply-adds instead of the n d^2 / 2
of the pooled scatter, memory O(K d + K^2), and the nearest-class-mean decision
of NC4 falls out of the same product.
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
    check_dense_size,
    check_problem_size,
    raise_non_finite,
    rows_numbered_in,
)
from workbench.collapse.geometry import GLOBAL_MEANS, NC3_FORMS, metrics_from_moments

#: Column blocks of the upper-triangular Gram update; four skip 3/8 of the flops of a full matmul.
GRAM_BLOCKS = 4

#: How the within-class scatter is kept: the d x d matrix in one pass, or its projection in a second pass.
SCATTER_MODES = ("full", "projected")

#: Rows per block of the projected passes, so that a block's float64 copy stays in cache.
SECOND_PASS_ROWS = 1024


def _add_upper_gram(target: torch.Tensor, x: torch.Tensor) -> None:
    """target += x^T x on and above the diagonal blocks (torch exposes no BLAS syrk)."""
    d = x.shape[1]
    step = -(-d // GRAM_BLOCKS)
    for i in range(0, d, step):
        target[i:i + step, i:].addmm_(x[:, i:i + step].T, x[:, i:])


def _float64_blocks(x: torch.Tensor, labels: torch.Tensor):
    """(rows, labels) in blocks of :data:`SECOND_PASS_ROWS`, the rows as float64.

    A lower-precision ``x`` is copied block by block into one reused float64
    buffer, which is much faster than a fresh full-size conversion.
    """
    if x.dtype == torch.float64:
        yield x, labels
        return
    out = torch.empty(min(SECOND_PASS_ROWS, x.shape[0]), x.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], SECOND_PASS_ROWS):
        rows = x[start:start + SECOND_PASS_ROWS]
        yield out[:rows.shape[0]].copy_(rows), labels[start:start + SECOND_PASS_ROWS]


def _top_two_gap(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    top = scores.topk(2, dim=1)
    return top.indices[:, 0], top.values[:, 0] - top.values[:, 1]


def _exact_argmaxes(x: torch.Tensor, rows: torch.Tensor, offsets: torch.Tensor,
                    sizes: list[int]) -> list[torch.Tensor]:
    """argmax over each group of ``sizes`` columns of the float64 scores x rows^T + offsets.

    Scores come from one float32 matmul. A float32 dot product of length d is
    within (d + 4) u ||h|| ||v|| of the exact one (u = 2^-24, with room for
    rounding h and v to float32), so a sample whose top-two gap exceeds twice
    that bound has the float64 decision; the others are rescored in float64.
    """
    x32 = x.float()
    scores = (x32 @ rows.float().T).double() + offsets
    # TF32 / bf16 matmuls (allowed by the user's torch settings) round inputs to 10 / 7 bits
    exact_fp32 = torch.get_float32_matmul_precision() == "highest" and not (
        x.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)
    unit = 2.0**-24 if exact_fp32 else 2.0**-8
    # the float32 row norms are themselves within d u of exact: 1.01 covers it for any d < 10^5
    bound = 1.01 * (x.shape[1] + 4) * unit * x32.norm(dim=1).double() * rows.norm(dim=1).max()
    picks, unsure = [], torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for group in scores.split(sizes, dim=1):
        pick, gap = _top_two_gap(group)
        if not bool(torch.isfinite(gap).all()):  # NaN/inf in a row reaches its gaps
            raise_non_finite(x)
        picks.append(pick)
        unsure |= gap <= 2 * bound
    unsure = torch.nonzero(unsure).flatten()
    if unsure.numel():
        exact = x[unsure].double() @ rows.T + offsets
        for pick, group in zip(picks, exact.split(sizes, dim=1)):
            pick[unsure] = group.argmax(dim=1)
    return picks


class NCAccumulator:
    """Streaming NC1-NC4 statistics over batches of (features, labels).

    Parameters
    ----------
    n_classes : int
        Number of classes K; labels are integers in ``[0, K)``.
    dim : int
        Feature dimension d (at least K - 1).
    scatter : {"full", "projected"}
        ``"full"`` (default) keeps the d x d pooled within-class scatter: NC1-NC3
        after a single pass of :meth:`update`. ``"projected"`` keeps only class
        counts and means in the first pass and needs a second pass of
        :meth:`second_pass` over the same samples, which accumulates the K x K
        scatter of Mc (h - mu_y) (Mc: the centred class means) and the scatter's trace: about d / (2K) times
        fewer flops, and O(K^2) memory instead of O(d^2). Both give the same
        metrics to rounding.
    device : str or torch.device, optional
        Where the running statistics live; default CUDA when available, else CPU.
        Statistics are float64 on every device.

    Attributes
    ----------
    counts_, means_ : torch.Tensor
        Per-class counts (K,) and class means (K, d).
    scatter_ : torch.Tensor
        ``scatter="full"`` only: the pooled within-class scatter
        sum_k sum_i (h - mu_k)(h - mu_k)^T (d, d).

    Notes
    -----
    NC4 compares each sample's classifier decision with its nearest *final*
    class mean, so it needs the second pass too: give ``W`` (and ``b``) to
    :meth:`second_pass` once all :meth:`update` calls are done; NC4 is the
    mismatch fraction over the samples of that pass. Without it ``nc4`` is NaN.
    The second pass must see every sample of the first exactly once (per-class
    counts are checked). A class with a single sample is allowed; it adds no
    within-class scatter.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(600, 8)), np.arange(600) % 3
    >>> acc = NCAccumulator(3, 8, device="cpu")
    >>> for rows in np.array_split(np.arange(600), 7):
    ...     _ = acc.update(x[rows], y[rows])
    >>> one_pass = float(acc.result().nc1)
    >>> two = NCAccumulator(3, 8, scatter="projected", device="cpu").update(x, y)
    >>> bool(np.isclose(float(two.second_pass(x, y).result().nc1), one_pass, rtol=1e-12))
    True
    """

    def __init__(self, n_classes: int, dim: int, *, scatter: str = "full",
                 device: str | torch.device | None = None) -> None:
        self.scatter = check_choice("scatter", scatter, SCATTER_MODES)
        self._check_size(n_classes, dim)
        self.n_classes = int(n_classes)
        self.dim = int(dim)
        self.device = resolve_device(device)
        opts = dict(dtype=torch.float64, device=self.device)
        self.counts_ = torch.zeros(self.n_classes, **opts)
        self.means_ = torch.zeros(self.n_classes, self.dim, **opts)
        self._scatter_upper = torch.zeros(self.dim, self.dim, **opts) if scatter == "full" else None
        self._second: dict[str, Any] | None = None  # the second pass's running totals, once it starts

    def _check_size(self, n_classes: int, dim: int) -> None:
        """Refuse d < K - 1, and outputs that would not fit in memory."""
        check_problem_size(n_classes, dim)
        k, d = int(n_classes), int(dim)
        # the result holds ~8 class-by-class float64 matrices (Grams, projected scatter, eigenvectors)
        check_dense_size("n_classes", {"class x class matrices (about 8)": (8, k, k), "class means": (k, d),
                                       **({"scatter": (d, d)} if self.scatter == "full" else {})})

    @property
    def scatter_(self) -> torch.Tensor:
        """The pooled within-class scatter (d, d); only its upper triangle is accumulated."""
        if self._scatter_upper is None:
            raise AttributeError("scatter_: a scatter='projected' accumulator keeps no d x d scatter")
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
        if self._second is not None:
            raise RuntimeError("update: the second pass has started; the class means are final")
        # finiteness is checked on the batch sums below: NaN or inf in any row reaches them
        full = self._scatter_upper is not None
        x = self._features(features, dtype=torch.float64 if full else None)
        y = as_labels(labels, x.shape[0], self.n_classes, self.device)
        if x.shape[0] == 0:
            return self
        m = torch.bincount(y, minlength=self.n_classes).to(torch.float64)
        sums = torch.zeros_like(self.means_)
        for rows, ys in _float64_blocks(x, y):
            sums.index_add_(0, ys, rows)
        if not bool(torch.isfinite(sums).all()):
            raise_non_finite(x)
        batch_means = sums / m.clamp(min=1.0)[:, None]
        total = self.counts_ + m
        delta = batch_means - self.means_
        if full:
            centred = batch_means[y]
            centred.sub_(x)  # nu_y - h: the sign does not change the scatter, and it saves a copy
            _add_upper_gram(self._scatter_upper, centred)
            cross = torch.where(total > 0, self.counts_ * m / total.clamp(min=1.0), torch.zeros_like(total))
            self._scatter_upper.addmm_((delta * cross[:, None]).T, delta)
        self.means_ += delta * (m / total.clamp(min=1.0))[:, None]
        self.counts_ = total
        return self

    def second_pass(self, features: Any, labels: Any, W: Any = None, b: Any = None) -> "NCAccumulator":
        """Add a batch to the second pass, over the same samples as :meth:`update`, after all of it.

        It accumulates the projected scatter (``scatter="projected"``) and, given
        the classifier ``W`` (class, dim) and bias ``b``, the samples whose
        decision argmax(W h + b) differs from the nearest class mean (NC4). Use
        the same ``W`` and ``b`` in every call and in :meth:`result`.
        Decisions are exact float64 decisions.

        Examples
        --------
        >>> x, y = [[0.0, 0.0], [4.0, 0.0], [0.1, 0.0]], [0, 1, 0]
        >>> acc = NCAccumulator(2, 2, device="cpu").update(x, y)
        >>> W = [[-1.0, 0.0], [1.0, 0.0]]
        >>> float(acc.second_pass(x, y, W, [2.0, -2.0]).result(W, [2.0, -2.0]).nc4)
        0.0
        """
        self._check_complete()
        w, bias = as_classifier(W, b, self.n_classes, self.dim)
        if w is None and self._scatter_upper is not None:
            raise ValueError("W: expected a classifier of shape (n_classes, dim); the second pass of a "
                             "scatter='full' accumulator only serves NC4, got None")
        x = self._features(features, dtype=None)
        y = as_labels(labels, x.shape[0], self.n_classes, self.device)
        started = self._second is not None
        state = self._second_state(w, bias)
        totals = ("counts", "projected", "trace", "mismatches")
        before = {key: state[key].clone() if isinstance(state[key], torch.Tensor) else state[key] for key in totals}
        scratch = torch.empty(min(SECOND_PASS_ROWS, x.shape[0]), self.dim, dtype=torch.float64, device=self.device)
        try:
            with rows_numbered_in(x):
                self._second_pass_blocks(x, y, w, scratch, state)
        except BaseException:  # a batch counts whole or not at all: the totals are as before the call
            if started:
                state.update(before)
            else:
                self._second = None
            raise
        return self

    def _second_pass_blocks(self, x, y, w, scratch, state) -> None:
        for start in range(0, x.shape[0], SECOND_PASS_ROWS):
            rows, ys = x[start:start + SECOND_PASS_ROWS], y[start:start + SECOND_PASS_ROWS]
            nearest = None
            if self._scatter_upper is None:
                nearest = self._project(scratch[:rows.shape[0]].copy_(rows), ys, state)
            if w is not None:
                state["mismatches"] += self._count_mismatches(rows, nearest, state)
            state["counts"] += torch.bincount(ys, minlength=self.n_classes).to(torch.float64)

    def _features(self, features: Any, dtype: torch.dtype | None = torch.float64) -> torch.Tensor:
        x = as_features(features, self.device, dtype=dtype, check_finite=False)
        if x.shape[1] != self.dim:
            raise ValueError(f"features: expected {self.dim} columns (dim), got {x.shape[1]}")
        return x

    def _second_state(self, w: np.ndarray | None, bias: np.ndarray | None) -> dict[str, Any]:
        """The second pass's totals, started on the first call; later calls must bring the same classifier."""
        if self._second is None:
            opts = dict(dtype=torch.float64, device=self.device)
            centred_means = self.means_ - self.means_.mean(dim=0)
            self._second = {
                "W": w, "b": bias, "counts": torch.zeros(self.n_classes, **opts), "mismatches": 0.0,
                "projected": torch.zeros(self.n_classes, self.n_classes, **opts),
                "trace": torch.zeros((), **opts), "centred_means": centred_means,
                # nearest mean: argmax_k mc_k.(h - mu_y) + mc_k.mc_y - ||mc_k||^2 / 2, with mc = mu - mean(mu)
                "nearest_offsets": centred_means @ centred_means.T - (centred_means**2).sum(dim=1) / 2,
            }
            if w is not None:
                self._second["rows"] = torch.from_numpy(w).to(self.device)
                self._second["offsets"] = torch.from_numpy(bias).to(self.device)
                if self._scatter_upper is not None:  # no projection to reuse: score the means alongside W
                    self._second["rows"] = torch.cat([self._second["rows"], self.means_])
                    self._second["offsets"] = torch.cat([self._second["offsets"],
                                                         -(self.means_ * self.means_).sum(dim=1) / 2])
        state = self._second
        same = (w is None) == (state["W"] is None) and (
            w is None or (np.array_equal(w, state["W"]) and np.array_equal(bias, state["b"])))
        if not same:
            raise ValueError("W, b: expected the classifier used in earlier second_pass calls, got a different one")
        return state

    def _project(self, rows: torch.Tensor, labels: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        """Add Mc (h - mu_y) to the projected scatter and the trace; return the nearest class means.

        ``rows`` is a float64 scratch block: it is centred in place.
        """
        centred = rows.sub_(self.means_.index_select(0, labels))
        flat = centred.view(-1)
        square_sum = torch.dot(flat, flat)
        if not bool(torch.isfinite(square_sum)):
            raise_non_finite(rows)
        state["trace"] += square_sum
        projected = centred @ state["centred_means"].T
        state["projected"].addmm_(projected.T, projected)
        return (projected + state["nearest_offsets"][labels]).argmax(dim=1)

    def _count_mismatches(self, rows: torch.Tensor, nearest: torch.Tensor | None, state: dict[str, Any]) -> float:
        """Samples where argmax(W h + b) differs from the nearest class mean."""
        k = self.n_classes
        if nearest is None:
            decided, nearest = _exact_argmaxes(rows, state["rows"], state["offsets"], [k, k])
        else:
            (decided,) = _exact_argmaxes(rows, state["rows"], state["offsets"], [k])
        return float((decided != nearest).sum())

    def _check_complete(self) -> None:
        empty = torch.nonzero(self.counts_ == 0).flatten().tolist()
        if empty:
            raise ValueError(f"labels: expected every class 0..{self.n_classes - 1} to have samples, "
                             f"got none for classes {empty[:10]}")

    def _second_pass_totals(self, w: np.ndarray | None, bias: np.ndarray | None) -> dict[str, Any] | None:
        """The finished second pass, checked against the first; None when there was none."""
        state = self._second
        if state is None:
            if self._scatter_upper is None:
                raise ValueError("second_pass: a scatter='projected' accumulator needs a second pass over the "
                                 "samples before result(); got none")
            return None
        if not torch.equal(state["counts"], self.counts_):
            raise ValueError(f"second_pass: expected the samples of the first pass once each "
                             f"({int(self.counts_.sum())} in all, counted per class), "
                             f"got {int(state['counts'].sum())} with different class counts")
        if state["W"] is not None and (w is None or not (
                np.array_equal(w, state["W"]) and np.array_equal(bias, state["b"]))):
            raise ValueError("W, b: expected the classifier given to second_pass, got a different one")
        return state

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
        state = self._second_pass_totals(w, bias)
        means = self.means_.cpu().numpy()
        if self._scatter_upper is None:
            projected, trace = state["projected"].cpu().numpy(), float(state["trace"])
        else:
            scatter = self.scatter_.cpu().numpy()
            centred = means - means.mean(axis=0)
            projected, trace = centred @ scatter @ centred.T, float(np.trace(scatter))
        mismatches = None if state is None or state["W"] is None else state["mismatches"] / float(
            state["counts"].sum())
        return metrics_from_moments(self.counts_.cpu().numpy(), means, projected, trace, w, bias, mismatches,
                                    global_mean=global_mean, nc3=nc3)
