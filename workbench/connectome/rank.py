"""Choosing the NTF rank from reconstruction error and restart stability."""

from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np
import xarray as xr

from workbench.connectome.ntf import ntf


def suggest_rank(ranks, stability, *, threshold: float = 0.9) -> int:
    """The largest rank whose median restart-to-restart FMS is at least ``threshold``.

    Error falls as rank grows, so the largest rank that restarts still agree on
    is the best-fitting reproducible model. When no rank is stable enough, the
    smallest rank is returned.

    Examples
    --------
    >>> suggest_rank([2, 3, 4], [1.0, 0.95, 0.6])
    3
    """
    ranks, stability = np.asarray(ranks), np.asarray(stability)
    ok = stability >= threshold
    return int(ranks[ok].max()) if ok.any() else int(ranks.min())


def rank_sweep(tensor, ranks: Iterable[int], n_restarts: int = 10, *, threshold: float = 0.9, seed: int = 0,
               progress: bool = True, **ntf_kwargs) -> xr.Dataset:
    """Fit NTF at each rank and report error and stability across restarts.

    Parameters
    ----------
    tensor : 3-way non-negative tensor (as for :func:`ntf`)
    ranks : iterable of int
    n_restarts : int
        Restarts per rank (at least 2 for a stability estimate).
    threshold : float
        Stability needed for a rank to be suggested.
    seed : int
    progress : bool
        Show a tqdm bar over ranks.
    **ntf_kwargs
        Passed on to :func:`ntf` (``mask``, ``max_iter``, ``tol``, ``device``...).

    Returns
    -------
    xr.Dataset (rank, restart)
        ``error`` (best restart), ``errors`` (rank, restart), ``stability``
        (median factor match score over all pairs of restarts). Rule, stored
        in ``attrs["suggested_rank"]``: the largest rank whose stability is
        at least ``threshold`` (see :func:`suggest_rank`).
        ``attrs["stable"]`` says whether any rank reached the threshold; when
        none does, the smallest rank is suggested and a warning says so.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.einsum("ir,jr,kr->ijk", rng.random((12, 2)), rng.random((10, 2)), rng.random((6, 2)))
    >>> sweep = rank_sweep(x, [1, 2, 3], n_restarts=4, progress=False, device="cpu")
    >>> sweep.attrs["suggested_rank"] >= 2
    True
    """
    ranks = list(ranks)
    if not all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in ranks):
        raise ValueError(f"ranks: expected integers, got {ranks}")
    ranks = sorted({int(r) for r in ranks})
    if not ranks:
        raise ValueError("ranks: expected at least one rank, got none")
    if not isinstance(n_restarts, (int, np.integer)) or n_restarts < 2:
        raise ValueError(f"n_restarts: expected an integer >= 2 to measure stability, got {n_restarts!r}")
    iterator = ranks
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(ranks, desc="rank sweep")
    errors, stability, best = [], [], []
    for rank in iterator:
        result = ntf(tensor, rank, n_restarts=n_restarts, seed=seed, **ntf_kwargs)
        errors.append(result.errors.values)
        stability.append(result.stability)
        best.append(result.error)
    suggested = suggest_rank(ranks, stability, threshold=threshold)
    stable = bool(np.max(stability) >= threshold)
    if not stable:
        warnings.warn(f"rank_sweep: no rank reached restart stability {threshold} (best {np.max(stability):.2f} at "
                      f"rank {ranks[int(np.argmax(stability))]}); suggesting the smallest rank {suggested}. "
                      "More data (animals, time) or fewer ranks may help.", stacklevel=2)
    return xr.Dataset(
        {
            "error": ("rank", np.asarray(best)),
            "errors": (("rank", "restart"), np.asarray(errors)),
            "stability": ("rank", np.asarray(stability)),
        },
        coords={"rank": ranks, "restart": np.arange(n_restarts)},
        attrs={"suggested_rank": suggested, "stable": int(stable), "threshold": float(threshold),
               "rule": "largest rank with median restart-to-restart FMS >= threshold"},
    )
