"""Neural collapse at vocabulary scale: next-token classes on a language model's residual stream.

"Linguistic collapse" (Wu & Papyan, NeurIPS 2024) treats every position of a
language model as a sample whose class is the *next* token, so K is the
vocabulary (2,048 for the bundled tiny models, 50,257 for GPT-2) and is usually
larger than the width d. :class:`TiledNCAccumulator` streams batches into
per-class counts, means and scatter traces plus the pooled d x d within-class
scatter, touching only the classes present in each batch, and its result is
computed tile by tile (:mod:`workbench.collapse.tiled`): no K x K matrix is
ever formed. :func:`next_token_collapse` feeds it from the hook cache.
"""

from __future__ import annotations

import numbers
import os
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr

from workbench.collapse._validate import (
    as_classifier,
    as_labels,
    check_choice,
    check_count,
    check_dense_size,
    raise_non_finite,
)
from workbench.collapse.accumulator import NCAccumulator, _add_upper_gram
from workbench.collapse.geometry import GLOBAL_MEANS, NC3_FORMS
from workbench.collapse.tiled import metrics_tiled

#: The hook whose activations the unembedding reads: logits = h @ W_U + b_U.
UNEMBED_INPUT = "ln_final.hook_out"


class TiledNCAccumulator(NCAccumulator):
    """Streaming NC metrics for very many classes, d < K - 1 allowed, classes without samples skipped.

    Keeps per-class counts, means (K x d) and within-class scatter traces, and
    the pooled within-class scatter (d x d), all float64 and merged exactly
    (Chan et al.) whatever the batch split. :meth:`result` computes the metrics
    of :func:`~workbench.collapse.nc_metrics` over the classes that have
    samples, every K x K quantity as a sum over tiles of ``tile`` classes, plus
    the CDNV (:func:`~workbench.collapse.cdnv`); see :mod:`workbench.collapse.tiled`
    for how NC1 is defined when d < K - 1 and which metrics lose their zero
    then. NC4 is not computed (NaN): it needs a second pass over the samples.

    Parameters
    ----------
    n_classes : int
        K, e.g. the vocabulary size; labels are integers in ``[0, K)``.
    dim : int
        Feature dimension d (any d >= 1).
    tile : int
        Classes per tile: the largest temporary is about 6 x ``tile`` x K
        float64 values (256 x 50,257: 0.6 GB).
    device : str or torch.device, optional
        Default CUDA when available, else CPU.

    Raises
    ------
    workbench.memory.TooLargeError
        A ``ValueError`` naming ``n_classes`` and the size, when the class
        means, the scatter and a tile would not fit in the memory available.

    Examples
    --------
    Ten classes in three dimensions (d < K - 1), two of them never seen:

    >>> rng = np.random.default_rng(0)
    >>> y = rng.choice([0, 1, 2, 3, 5, 6, 7, 9], size=400)
    >>> x = rng.normal(size=(10, 3))[y] + 0.01 * rng.normal(size=(400, 3))
    >>> acc = TiledNCAccumulator(10, 3, tile=4, device="cpu")
    >>> for rows in np.array_split(np.arange(400), 3):
    ...     _ = acc.update(x[rows], y[rows])
    >>> ds = acc.result()
    >>> ds.attrs["n_classes_present"], ds.attrs["empty_classes_first"], bool(ds.nc1 < 1e-3)
    (8, [4, 8], True)
    """

    def __init__(self, n_classes: int, dim: int, *, tile: int = 256,
                 device: str | torch.device | None = None) -> None:
        self.tile = check_count("tile", tile)
        super().__init__(n_classes, dim, scatter="full", device=device)
        self.class_scatter_ = torch.zeros(self.n_classes, dtype=torch.float64, device=self.device)

    def _check_size(self, n_classes: int, dim: int) -> None:
        for name, value, least in (("n_classes", n_classes, 2), ("dim", dim, 1)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
            if value < least:
                raise ValueError(f"{name}: expected an int >= {least}, got {value}")
        k, d = int(n_classes), int(dim)
        check_dense_size("n_classes", {"class means": (k, d), "within-class scatter": (d, d),
                                       "per-class vectors (about 8)": (8, k),
                                       f"tiles of {self.tile} classes (about 6)": (6, min(self.tile, k), k)})

    def update(self, features: Any, labels: Any) -> "TiledNCAccumulator":
        """Add a batch of features (sample, dim) with integer labels (sample,).

        Only the classes present in the batch are touched, so a batch costs
        O(n d^2) whatever K is.

        Examples
        --------
        >>> acc = TiledNCAccumulator(50_000, 2, device="cpu").update([[0.0, 1.0], [2.0, 1.0]], [7, 49_999])
        >>> int(acc.counts_.sum()), acc.means_[49_999].tolist()
        (2, [2.0, 1.0])
        """
        x = self._features(features, dtype=torch.float64)
        y = as_labels(labels, x.shape[0], self.n_classes, self.device)
        if x.shape[0] == 0:
            return self
        classes, inverse = torch.unique(y, return_inverse=True)
        m = torch.bincount(inverse, minlength=classes.numel()).to(torch.float64)
        sums = torch.zeros(classes.numel(), self.dim, dtype=torch.float64, device=self.device)
        sums.index_add_(0, inverse, x)
        if not bool(torch.isfinite(sums).all()):
            raise_non_finite(x)
        batch_means = sums / m[:, None]
        centred = x - batch_means[inverse]
        _add_upper_gram(self._scatter_upper, centred)
        within = torch.zeros_like(m).index_add_(0, inverse, (centred**2).sum(dim=1))
        before = self.counts_[classes]
        total = before + m
        delta = batch_means - self.means_[classes]
        cross = before * m / total
        self._scatter_upper.addmm_((delta * cross[:, None]).T, delta)
        self.class_scatter_[classes] += within + cross * (delta**2).sum(dim=1)
        self.means_[classes] += delta * (m / total)[:, None]
        self.counts_[classes] = total
        return self

    def second_pass(self, *args: Any, **kwargs: Any) -> "TiledNCAccumulator":
        """Not used: the tiled accumulator is one pass (and reports no NC4)."""
        raise NotImplementedError("second_pass: TiledNCAccumulator needs no second pass and does not compute NC4")

    def result(self, W: Any = None, b: Any = None, *, global_mean: str = "class_means",
               nc3: str = "papyan", min_count: int = 1) -> xr.Dataset:
        """NC metrics over the classes with at least ``min_count`` samples; see :mod:`workbench.collapse.tiled`.

        Returns
        -------
        xarray.Dataset
            Scalars ``nc1``, ``nc2_*``, ``nc3``, ``gnc2_log``, ``unc3``,
            ``cdnv``, ``cdnv_var``, ``sigma_w_trace``, ``sigma_b_trace`` (``nc4``
            NaN); over ``class`` (all K, NaN where a class has no samples):
            ``counts``, ``present``, ``mean_norm``, ``centred_mean_norm``,
            ``classifier_norm``, ``classifier_mean_dot``, ``class_variance``.
            ``present`` marks the classes kept. Attrs ``n_classes_present``
            (kept), ``n_classes_empty``, ``empty_classes_first`` (the first 20
            classes without samples) and ``n_classes_too_few`` (with samples,
            but fewer than ``min_count``).

        Examples
        --------
        >>> x, y = [[1.0, 0.0], [1.2, 0.0], [0.0, 1.0], [0.0, 1.2]], [0, 0, 2, 2]
        >>> ds = TiledNCAccumulator(3, 2, device="cpu").update(x, y).result()
        >>> ds.counts.values.tolist(), ds.attrs["n_classes_empty"]
        ([2, 0, 2], 1)
        """
        check_choice("global_mean", global_mean, GLOBAL_MEANS)
        check_choice("nc3", nc3, NC3_FORMS)
        min_count = check_count("min_count", min_count)
        w, bias = as_classifier(W, b, self.n_classes, self.dim)
        return metrics_tiled(self.counts_, self.means_, self.scatter_, self.class_scatter_, w, bias,
                             global_mean=global_mean, nc3=nc3, tile=self.tile, min_count=min_count)


def next_token_collapse(model: Any, tokens: Any, hooks: Sequence[str] | None = None, *,
                        cache: Any = None, batch_size: int = 32, tile: int = 256,
                        global_mean: str = "class_means", nc3: str = "papyan", min_count: int = 1,
                        device: str | torch.device | None = None) -> xr.Dataset:
    """Linguistic collapse: NC metrics of residual-stream features with the next token as the class.

    Every position but the last of every sequence is a sample; its label is
    the token that follows. The activations come from the hook cache (computed
    once, then read back chunk by chunk) and are streamed into one
    :class:`TiledNCAccumulator` per hook, with K = ``model.cfg.d_vocab``.
    At ``ln_final.hook_out`` (the unembedding's input) the classifier is
    ``W_U^T`` with bias ``b_U``, so NC3, UNC3 and the classifier norms are
    reported there; other hooks have none.

    Parameters
    ----------
    model : TransformerBridge
        E.g. from :func:`workbench.models.load_model`.
    tokens : torch.LongTensor (seq, pos)
        On the model's device.
    hooks : sequence of str, optional
        Default: every block's ``hook_resid_post`` and ``ln_final.hook_out``.
    cache : HookCache, str or PathLike, optional
        The cache (or its folder); default the user's cache folder.
    batch_size : int
        Sequences per forward pass and per streamed block.
    tile, global_mean, nc3, min_count, device
        As in :class:`TiledNCAccumulator` and its ``result``.

    Returns
    -------
    xarray.Dataset
        The variables of :meth:`TiledNCAccumulator.result` stacked over
        ``hook``, and ``layer_dim``.

    Examples
    --------
    >>> import tempfile
    >>> from workbench.models import corpus_tokens, load_model
    >>> model = load_model("tiny-gelu-2l")
    >>> ds = next_token_collapse(model, corpus_tokens(model, 8, 32), cache=tempfile.mkdtemp(), device="cpu")
    >>> ds.hook.values.tolist()
    ['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post', 'ln_final.hook_out']
    >>> ds.sizes["class"], int(ds.counts.sel(hook="ln_final.hook_out").sum())  # 8 x 31 next tokens
    (2048, 248)
    """
    from workbench.hooks import HookCache

    batch_size = check_count("batch_size", batch_size)
    if hooks is None:
        hooks = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)] + [UNEMBED_INPUT]
    if isinstance(hooks, str):
        hooks = [hooks]
    store = cache if isinstance(cache, HookCache) else HookCache(cache if cache is None
                                                                 else os.fspath(cache))
    acts = store.activations(model, tokens, list(hooks), batch_size=batch_size, progress=False)
    labels = np.asarray(acts.tokens.values, dtype=np.int64)
    if labels.shape[1] < 2:
        raise ValueError(f"tokens: expected sequences of at least 2 tokens (one to read, one to predict), "
                         f"got shape {labels.shape}")
    k = int(model.cfg.d_vocab)
    results = []
    for hook in hooks:
        values = acts[hook]
        if values.ndim != 3:
            raise ValueError(f"hooks: expected residual-stream hooks of shape (seq, pos, d_model), got {hook!r} "
                             f"with dims {values.dims}")
        acc = TiledNCAccumulator(k, int(values.shape[-1]), tile=tile, device=device)
        for start in range(0, labels.shape[0], batch_size):
            block = np.asarray(values[start:start + batch_size, :-1].values)
            acc.update(block.reshape(-1, block.shape[-1]), labels[start:start + batch_size, 1:].reshape(-1))
        w, b = (None, None)
        if hook == UNEMBED_INPUT:
            w, b = model.W_U.detach().T.cpu().double(), model.b_U.detach().cpu().double()
        ds = acc.result(w, b, global_mean=global_mean, nc3=nc3, min_count=min_count)
        ds["layer_dim"] = ((), acc.dim)
        results.append(ds)
    out = xr.concat(results, dim=xr.DataArray(list(hooks), dims="hook", name="hook"), data_vars="all",
                    coords="minimal", compat="override", combine_attrs="drop_conflicts")
    out.attrs.update({"model_id": acts.attrs.get("model_id"), "n_sequences": int(labels.shape[0]),
                      "labels": "next token", "n_classes": k})
    return out
