"""Factor match score: how alike two CP models are, up to permutation and scale.

A CP model is a sum of rank-one terms; reordering the terms or moving scale
between the modes of a term gives the same tensor. The score therefore
compares unit-norm factor columns: the congruence of terms ``r`` and ``s`` is
the product over modes of ``|cos(a_m[:, r], b_m[:, s])|``, optionally times the
weight penalty ``1 - |w_r - w_s| / max(w_r, w_s)`` (``w`` = product of the column
norms). The Hungarian algorithm picks the one-to-one matching with the largest
total congruence, and the score is its mean over matched terms: 1 for the same
model, near 0 for unrelated ones.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


def _as_cp(model, name: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """(weights (R,), unit-norm factors [(n_m, R)]) from an NTFResult or factor matrices."""
    if hasattr(model, "factors") and hasattr(model, "weights"):
        factors = [np.asarray(f.values if hasattr(f, "values") else f, dtype=float) for f in model.factors]
        factors[0] = factors[0] * np.asarray(model.weights, dtype=float)[None, :]
    elif isinstance(model, (list, tuple)) and len(model) > 0:
        factors = [np.asarray(f.detach().cpu().numpy() if hasattr(f, "detach") else f, dtype=float) for f in model]
    else:
        raise TypeError(f"{name}: expected an NTFResult or a sequence of factor matrices, got {type(model).__name__}")
    if not all(np.isfinite(f).all() for f in factors):
        raise ValueError(f"{name}: expected finite factors, got NaN or inf")
    if any(f.ndim != 2 for f in factors) or len({f.shape[1] for f in factors}) != 1:
        raise ValueError(f"{name}: expected 2-D factors (n_m, rank) of one rank, got shapes {[f.shape for f in factors]}")
    norms = [np.linalg.norm(f, axis=0) for f in factors]
    weights = np.prod(norms, axis=0)
    unit = [f / np.where(n > 0, n, 1.0) for f, n in zip(factors, norms)]
    return weights, unit


def congruence(a, b, *, consider_weights: bool = True) -> np.ndarray:
    """Term-by-term congruence matrix (R_a, R_b) of two CP models.

    Examples
    --------
    >>> import numpy as np
    >>> f = [np.eye(2), np.eye(2)]
    >>> congruence(f, f).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    wa, fa = _as_cp(a, "a")
    wb, fb = _as_cp(b, "b")
    if [f.shape[0] for f in fa] != [f.shape[0] for f in fb]:
        raise ValueError(
            f"b: expected factors with mode sizes {[f.shape[0] for f in fa]} like a, got {[f.shape[0] for f in fb]}"
        )
    score = np.ones((fa[0].shape[1], fb[0].shape[1]))
    for ua, ub in zip(fa, fb):
        score *= np.abs(ua.T @ ub)
    if consider_weights:
        largest = np.maximum(wa[:, None], wb[None, :])
        score *= 1.0 - np.abs(wa[:, None] - wb[None, :]) / np.where(largest > 0, largest, 1.0)
    return score


def factor_match_score(a, b, *, consider_weights: bool = True, return_permutation: bool = False):
    """Permutation- and scale-invariant similarity of two CP models (Hungarian matching).

    Parameters
    ----------
    a, b : NTFResult or sequence of array-likes (n_m, rank)
        Two CP models over the same mode sizes. Given raw factor matrices, the
        weight of a term is the product of its column norms.
    consider_weights : bool
        Multiply each term's congruence by the weight penalty
        ``1 - |w_a - w_b| / max(w_a, w_b)``.
    return_permutation : bool
        Also return ``perm`` with term ``perm[r]`` of ``b`` matched to term
        ``r`` of ``a`` (``-1`` where ``b`` has fewer terms).

    Returns
    -------
    float or (float, ndarray)
        Mean congruence over the matched terms (over ``min(R_a, R_b)`` terms).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> f = [rng.random((5, 3)), rng.random((4, 3))]
    >>> g = [2 * f[0][:, ::-1], f[1][:, ::-1] / 2]
    >>> round(factor_match_score(f, g), 6)
    1.0
    """
    score = congruence(a, b, consider_weights=consider_weights)
    rows, cols = linear_sum_assignment(score, maximize=True)
    fms = float(score[rows, cols].mean())
    if not return_permutation:
        return fms
    perm = np.full(score.shape[0], -1)
    perm[rows] = cols
    return fms, perm


def worst_matched(a, b, *, consider_weights: bool = True) -> float:
    """Congruence of the worst-matched term after the Hungarian matching of two CP models.

    The factor match score averages over terms, so one irreproducible term
    among many barely moves it (15 matched terms and one random one still
    score about 0.94); the worst term does not hide it (Williams et al. 2018,
    tensortools). Used as the per-restart stability in
    :func:`workbench.connectome.rank_sweep`.

    Examples
    --------
    >>> import numpy as np
    >>> a = [np.eye(3), np.eye(3)]
    >>> b = [np.eye(3)[:, [1, 0, 2]], np.eye(3)[:, [1, 0, 2]]]
    >>> worst_matched(a, b)
    1.0
    >>> c = [np.eye(3), np.array([[1.0, 0, 0], [0, 1, 0], [0, 1, 1]])]
    >>> round(worst_matched(a, c, consider_weights=False), 4)  # c's term 1 is off by cos 1/sqrt(2) in mode 1
    0.7071
    >>> round(worst_matched(a, c), 4)  # ... and its weight sqrt(2) vs 1 costs another 1/sqrt(2)
    0.5
    """
    score = congruence(a, b, consider_weights=consider_weights)
    rows, cols = linear_sum_assignment(score, maximize=True)
    return float(score[rows, cols].min())


def pairwise_scores(models: Sequence, *, consider_weights: bool = True) -> np.ndarray:
    """Symmetric matrix of factor match scores between every two models.

    Examples
    --------
    >>> import numpy as np
    >>> f = [np.eye(2), np.eye(2)]
    >>> pairwise_scores([f, f]).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    n = len(models)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = factor_match_score(models[i], models[j], consider_weights=consider_weights)
    return out
