"""Choosing the NTF rank: restart stability of the worst component and cross-validated error.

Two questions decide a rank (Williams et al. 2018, tensortools; Bro & Kiers 2003):

* **Is every component reproducible?** Each restart is matched to the
  best-fitting restart (Hungarian matching on term congruence) and scored by
  its *worst* matched term (:func:`~workbench.connectome.fms.worst_matched`); a
  mean over terms would hide one random term among many.
* **Does the extra component predict data it has not seen?** A random subset
  of the observed entries (or whole time blocks of each pair's series, which
  neighbouring-bin correlation cannot leak into) is held out through ``ntf``'s
  mask, the model is fitted on the rest, and its relative error on the held-out
  entries is compared across ranks. Beyond the true rank, extra components fit
  noise and held-out error stops falling.
"""

from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np
import xarray as xr

from workbench.connectome.fms import worst_matched
from workbench.connectome.ntf import _scaled, ntf, tensor_values

#: Restarts whose error is within this fraction of the best restart's count towards stability; the others
#: are stuck in poorer optima, which says nothing about whether the best model is unique.
_NEAR_BEST = 0.01
#: ... plus this much relative error, so that exact fits (error ~1e-4, known to ~1e-5) are all near the best.
_NEAR_BEST_ABS = 1e-3

#: Fraction of the held-out error by which a larger rank must beat a smaller one before its
#: restart spread is even considered: float32 fits know their error to ~3e-5 (see ``ntf``).
_MIN_GAIN = 1e-3


def _check_holdout(holdout, holdout_block) -> None:
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float, np.integer, np.floating)) \
            or not 0 < holdout <= 0.5:
        raise ValueError(f"holdout: expected a fraction in (0, 0.5] of the observed entries, got {holdout!r}")
    if holdout_block is not None and (isinstance(holdout_block, bool) or not isinstance(holdout_block, (int, np.integer))
                                      or holdout_block < 1):
        raise ValueError(f"holdout_block: expected None or a positive number of time bins, got {holdout_block!r}")


def holdout_mask(tensor, holdout: float = 0.1, *, block: int | None = None, seed: int = 0, mask=None) -> np.ndarray:
    """Entries to hold out for cross-validation: ``True`` = held out (among observed entries only).

    Parameters
    ----------
    tensor : 3-way tensor (as for :func:`ntf`); NaN entries are not observed.
    holdout : float in (0, 0.5]
        Probability that an observed entry (or a block) is held out.
    block : int, optional
        Hold out whole runs of ``block`` consecutive time bins of each
        (pair, animal) series instead of single entries. The time axis is the
        ``time`` dim of a DataArray, else axis 1.
    seed : int
    mask : bool array, optional
        ``False`` entries are not observed (as in :func:`ntf`) and never held out.

    Examples
    --------
    >>> import numpy as np
    >>> held = holdout_mask(np.ones((50, 40, 2)), 0.2, seed=0)
    >>> bool(0.18 < held.mean() < 0.22)
    True
    >>> held = holdout_mask(np.ones((3, 12, 1)), 0.5, block=4, seed=1)
    >>> held[0, :, 0].reshape(3, 4).all(1) == held[0, :, 0].reshape(3, 4).any(1)  # whole blocks
    array([ True,  True,  True])
    """
    _check_holdout(holdout, block)
    values, mask = tensor_values(tensor, mask)
    observed = ~np.isnan(values) if mask is None else ~np.isnan(values) & mask
    rng = np.random.default_rng(seed)
    if block is None:
        held = rng.random(values.shape) < holdout
    else:
        axis = tensor.dims.index("time") if isinstance(tensor, xr.DataArray) and "time" in tensor.dims else 1
        moved = np.moveaxis(values, axis, -1).shape
        n_blocks = -(-moved[-1] // block)
        chosen = rng.random((*moved[:-1], n_blocks)) < holdout
        held = np.moveaxis(np.repeat(chosen, block, axis=-1)[..., : moved[-1]], -1, axis)
    return held & observed


def _heldout_errors(values: np.ndarray, held: np.ndarray, models: list) -> np.ndarray:
    """``||X_h - model_h|| / ||X_h||`` over the held-out entries, for every restart's model."""
    idx = np.nonzero(held)
    target = values[idx].astype(float)
    out = []
    for weights, (a, b, c) in models:
        predicted = (a[idx[0]] * b[idx[1]] * c[idx[2]]) @ weights
        out.append(np.linalg.norm(target - predicted))
    return np.asarray(out) / np.linalg.norm(target)


def _restart_stability(result) -> np.ndarray:
    """Worst matched term of every restart against the best-fitting one (NaN for the best itself).

    Terms are compared by the congruence of their factors only: a term's weight
    converges more slowly than its factors, so at the default ``tol`` restarts
    that agree on every factor (congruence 0.98-1.0) still differ by 5-25% in
    some weight, which the weight penalty would read as a different term.
    """
    models = _scaled(result.restarts)
    best = int(np.argmin(result.errors.values))
    out = np.full(len(models), np.nan)
    for b, model in enumerate(models):
        if b != best:
            out[b] = worst_matched(list(models[best][1]), list(model[1]), consider_weights=False)
    return out


def _near_best(errors: np.ndarray) -> np.ndarray:
    """(rank, restart): restarts whose error is within ``_NEAR_BEST`` of their rank's best."""
    best = errors.min(1, keepdims=True)
    return errors <= best * (1 + _NEAR_BEST) + _NEAR_BEST_ABS


def _decide(ranks, stability, heldout, spread, threshold: float) -> tuple[int, str, str]:
    """(rank, rule, reason): the rule of :func:`suggest_rank`, with the numbers that decided it."""
    ranks, stability = np.asarray(ranks), np.asarray(stability, dtype=float)
    heldout, spread = np.asarray(heldout, dtype=float), np.asarray(spread, dtype=float)
    stable = stability >= threshold
    if not stable.any():
        best = int(np.nanargmax(stability)) if np.isfinite(stability).any() else 0
        return (int(ranks.min()), "no_stable_rank",
                f"no rank reached stability {threshold} (best {stability[best]:.2f} at rank {ranks[best]}); "
                f"the smallest rank {ranks.min()} is returned")
    for i in np.flatnonzero(stable):
        if i == len(ranks) - 1:
            break
        gain = heldout[i] - heldout[i + 1:]
        margin = np.maximum(spread[i + 1:], _MIN_GAIN * heldout[i])
        if not (gain > margin).any():
            j = i + 1 + int(np.argmax(gain - margin))
            return (int(ranks[i]), "heldout_plateau",
                    f"rank {ranks[i]} is stable ({stability[i]:.2f} >= {threshold}) and no larger rank lowers its "
                    f"held-out error {heldout[i]:.4g} by more than that rank's restart spread (closest: rank "
                    f"{ranks[j]}, gain {gain[j - i - 1]:.2g} vs spread {margin[j - i - 1]:.2g})")
    top = int(np.flatnonzero(stable)[-1])
    return (int(ranks[top]), "largest_stable",
            f"held-out error still falls beyond every stable rank; rank {ranks[top]} is the largest stable one "
            f"({stability[top]:.2f} >= {threshold})")


def suggest_rank(ranks, stability, heldout, spread, *, threshold: float = 0.9) -> int:
    """The smallest stable rank after which held-out error stops falling by more than its restart spread.

    Rank ``r`` qualifies when its stability is at least ``threshold`` and no
    larger rank ``s`` has a held-out error below ``heldout[r] - max(spread[s],
    1e-3 * heldout[r])``: a gain counts only when it exceeds the spread of the
    larger rank's own restarts (the floor ignores gains below what a float32
    fit can tell apart). If held-out error keeps falling past every stable
    rank, the largest stable rank is returned; if no rank is stable, the
    smallest rank.

    Parameters
    ----------
    ranks : sequence of int, increasing
    stability : sequence of float
        Per rank, e.g. the median worst-matched-term congruence of :func:`rank_sweep`.
    heldout, spread : sequence of float
        Per rank, the held-out error and its spread over restarts.
    threshold : float

    Examples
    --------
    >>> suggest_rank([2, 3, 4, 5], [1.0, 0.99, 0.97, 0.4], [0.50, 0.30, 0.299, 0.298], [0.005] * 4)
    3
    """
    return _decide(ranks, stability, heldout, spread, threshold)[0]


def rank_sweep(tensor, ranks: Iterable[int], n_restarts: int = 10, *, holdout: float = 0.1,
               holdout_block: int | None = None, threshold: float = 0.9, seed: int = 0, progress: bool = True,
               **ntf_kwargs) -> xr.Dataset:
    """Fit NTF at each rank; report training error, held-out error and restart stability.

    Parameters
    ----------
    tensor : 3-way non-negative tensor (as for :func:`ntf`)
    ranks : iterable of int
        Any ranks up to ``min(IJ, IK, JK)``; a mode of size 1 (one animal) bounds nothing.
    n_restarts : int
        Restarts per rank (at least 2 for a stability estimate).
    holdout : float in (0, 0.5]
        Fraction of the observed entries held out for the cross-validated error.
    holdout_block : int, optional
        Hold out whole runs of this many time bins per (pair, animal) series
        instead of single entries (see :func:`holdout_mask`).
    threshold : float
        Stability (worst matched term) needed for a rank to be suggested.
    seed : int
        Seeds the restarts and the held-out entries.
    progress : bool
        Show a tqdm bar over ranks.
    **ntf_kwargs
        Passed on to :func:`ntf` (``mask``, ``max_iter``, ``tol``, ``device``...).

    Returns
    -------
    xr.Dataset (rank, restart)
        ``error`` (best restart on all observed entries), ``errors`` (rank,
        restart); ``restart_stability`` (rank, restart): the worst matched
        term's factor congruence between each restart and the best-fitting
        one (NaN for that one), summarised as ``stability`` (median) and
        ``stability_low``/``stability_high`` (its quartiles) over the
        ``n_near_best`` other restarts whose error is within 1% (+0.001) of the best
        (a restart stuck in a poorer optimum says nothing about whether the
        best model is unique; NaN, i.e. not stable, when there are none);
        ``heldout_errors`` (rank, restart): each restart's relative error on
        the held-out entries when fitted on the others (``train_errors``:
        its error on those), summarised over the restarts whose training
        error is within 1% (+0.001) of the best as ``heldout_error`` (median) and
        ``heldout_spread`` (interquartile range). ``attrs``:
        ``suggested_rank`` (:func:`suggest_rank`), ``rule`` (which rule
        decided: ``heldout_plateau``, ``largest_stable`` or
        ``no_stable_rank``), ``reason`` (why, with the numbers), ``stable``,
        ``threshold``, ``holdout``, ``holdout_block``. A warning says when no rank
        is stable, and when held-out error still falls past every stable rank
        (the suggestion is then only the largest stable rank tried).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.einsum("ir,jr,kr->ijk", rng.random((20, 2)), rng.random((15, 2)), rng.random((6, 2)))
    >>> x = x + 0.01 * rng.random(x.shape)
    >>> sweep = rank_sweep(x, [1, 2, 3], n_restarts=4, progress=False, device="cpu")
    >>> sweep.attrs["suggested_rank"], sweep.attrs["rule"]
    (2, 'heldout_plateau')
    """
    ranks = list(ranks)
    if not all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in ranks):
        raise ValueError(f"ranks: expected integers, got {ranks}")
    ranks = sorted({int(r) for r in ranks})
    if not ranks:
        raise ValueError("ranks: expected at least one rank, got none")
    if not isinstance(n_restarts, (int, np.integer)) or n_restarts < 2:
        raise ValueError(f"n_restarts: expected an integer >= 2 to measure stability, got {n_restarts!r}")
    _check_holdout(holdout, holdout_block)
    mask = ntf_kwargs.pop("mask", None)
    values, mask = tensor_values(tensor, mask)
    held = holdout_mask(tensor, holdout, block=holdout_block, seed=seed, mask=mask)
    if not held.any():
        raise ValueError(f"holdout: expected some held-out entries, got none at holdout={holdout} on shape {values.shape}")
    train = ~held if mask is None else mask & ~held
    iterator = ranks
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(ranks, desc="rank sweep")
    rows = []
    for rank in iterator:
        full = ntf(tensor, rank, n_restarts=n_restarts, seed=seed, mask=mask, **ntf_kwargs)
        cv = ntf(tensor, rank, n_restarts=n_restarts, seed=seed, mask=train, **ntf_kwargs)
        out = _heldout_errors(values, held, cv.restarts)
        rows.append((full.error, full.errors.values, _restart_stability(full), cv.errors.values, out))
    error, errors, restart_stability, train_errors, heldout_errors = (np.asarray(v) for v in zip(*rows))
    near = _near_best(errors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows need no warning: NaN is the answer
        low, stability, high = np.nanpercentile(np.where(near, restart_stability, np.nan), [25, 50, 75], axis=1)
    q1, heldout, q3 = np.nanpercentile(np.where(_near_best(train_errors), heldout_errors, np.nan), [25, 50, 75],
                                       axis=1)
    spread = q3 - q1
    suggested, rule, reason = _decide(ranks, stability, heldout, spread, threshold)
    if rule == "no_stable_rank":
        warnings.warn(f"rank_sweep: {reason}. More data (time, animals), more restarts or smaller ranks may help.",
                      stacklevel=2)
    elif rule == "largest_stable":
        warnings.warn(f"rank_sweep: {reason}, so the suggestion is bounded by the ranks tried, not found in the "
                      f"data. Try larger ranks, or read the elbow of held-out error in the sweep figure: real "
                      f"affinities carry small structured terms (noise floors, per-animal timing) that keep "
                      f"lowering it.", stacklevel=2)
    return xr.Dataset(
        {
            "error": ("rank", error),
            "errors": (("rank", "restart"), errors),
            "restart_stability": (("rank", "restart"), restart_stability),
            "stability": ("rank", stability),
            "stability_low": ("rank", low),
            "stability_high": ("rank", high),
            "n_near_best": ("rank", near.sum(1) - 1),
            "heldout_error": ("rank", heldout),
            "heldout_errors": (("rank", "restart"), heldout_errors),
            "heldout_spread": ("rank", spread),
            "train_errors": (("rank", "restart"), train_errors),
        },
        coords={"rank": ranks, "restart": np.arange(n_restarts)},
        attrs={"suggested_rank": suggested, "rule": rule, "reason": reason, "stable": int(rule != "no_stable_rank"),
               "threshold": float(threshold), "holdout": float(holdout),
               "holdout_block": int(holdout_block) if holdout_block is not None else 0},
    )
