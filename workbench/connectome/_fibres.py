"""Masked NTF when whole time fibres are missing (a neuron not identified in an animal), without tensor copies.

If the mask does not depend on time, ``observed[i, j, k] = o[i, k]`` (pair
``i`` recorded in animal ``k`` or not), the EM step of :mod:`._hals` (complete
the missing entries with the current model, one HALS iteration on the
completed tensor) can be taken on the tensor with zeros at the missing
entries, shared by every restart, plus small corrections. With ``m = 1 - o``,
``G_B = B^T B`` and the current ``A0, B0, C0``:

* mode 0: ``MTTKRP(completed)[i, r] = MTTKRP(X)[i, r]
  + sum_s A0[i, s] G_B[s, r] W[i, s, r]``, ``W[i, s, r] = sum_k m[i, k] C0[k, s] C0[k, r]``;
* modes 1 and 2, after ``A`` moved to ``A1``: ``A1^T completed = A1^T X + Y'``,
  ``Y'[r, j, k] = sum_s B0[j, s] C0[k, s] P[k, r, s]``, ``P[k, r, s] = sum_i m[i, k] A1[i, r] A0[i, s]``;
* ``||completed||^2 = ||X||^2 + sum_{s,t} G_B[s, t] sum_i A0[i, s] A0[i, t] W[i, s, t]``.

The corrections cost O(I K R^2 + J K R^2) against O(I J K R) for the products
with the tensor, so an iteration costs about what the fully observed one does,
for any number of restarts. Same iterates as the EM path up to rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.connectome._hals import (gram, hals_sweeps, model_norm_sq, mttkrp_mode0, normalise, project_mode0,
                                        update_b_c)


def missing_fibres(observed: np.ndarray) -> np.ndarray | None:
    """``m[i, k]`` = 1 where pair ``i`` is missing in animal ``k`` at every time, if the mask is time-independent.

    Examples
    --------
    >>> import numpy as np
    >>> seen = np.ones((2, 3, 2), bool); seen[0, :, 1] = False
    >>> missing_fibres(seen).tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    >>> seen[1, 0, 0] = False
    >>> missing_fibres(seen) is None
    True
    """
    first = observed[:, 0, :]
    if not (observed == first[:, None, :]).all():
        return None
    return (~first).astype(float)


def _outer(F: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """``F[..., s] * G[..., t]`` as (..., R, R)."""
    return F[..., :, None] * G[..., None, :]


def _weights(m: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``W[b, i, s, r] = sum_k m[i, k] C[b, k, s] C[b, k, r]`` as one GEMM."""
    b, K, R = C.shape
    return (m @ _outer(C, C).reshape(b, K, R * R)).reshape(b, -1, R, R)


def _correction(A0, GB, W):
    """``corr[b, i, r] = sum_s A0[i, s] G_B[s, r] W[i, s, r]`` (the mode-0 MTTKRP of the missing part) and
    ``||(1 - mask) * model||^2 = sum_ir corr[i, r] A0[i, r]`` per restart (float64 sum)."""
    corr = (A0[:, :, None, :] @ (W * GB[:, None])).squeeze(2)
    return corr, (corr * A0).double().sum((1, 2))


def fit_fibres(X0: torch.Tensor, shape: tuple[int, int, int], A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
               missing: torch.Tensor, *, max_iter: int, tol: float, n_inner: int, eps: float,
               observed_sq: torch.Tensor, progress=None) -> tuple[torch.Tensor, int]:
    """:func:`workbench.connectome._hals.fit` for a time-independent mask: ``X0`` (I, J*K) with zeros at the
    missing entries, shared by the restarts; ``missing`` (I, K) from :func:`missing_fibres`."""
    _, J, K = shape
    m = missing.to(device=A.device, dtype=A.dtype)
    finished = torch.zeros(A.shape[0], dtype=torch.bool, device=A.device)
    previous, n_iter = None, 0
    for n_iter in range(1, max_iter + 1):
        A0, GB, GC = A.clone(), gram(B), gram(C)
        W = _weights(m, C)
        corr, missing_sq = _correction(A0, GB, W)
        norm_sq = observed_sq + missing_sq
        hals_sweeps(A, mttkrp_mode0(X0, B, C) + corr, GB * GC, n_inner, eps)
        b, _, R = A.shape
        P = (m.T @ _outer(A, A0).reshape(b, -1, R * R)).reshape(b, K, R, R)  # sum_i m[i, k] A1[i, r] A0[i, s]
        Q = (C[:, :, None, :] * P).reshape(b, K * R, R)  # C0[k, s] P[k, r, s]
        Y = project_mode0(X0, A, J, K) + (B @ Q.transpose(1, 2)).reshape(b, J, K, R).permute(0, 3, 1, 2)
        error = update_b_c(Y, A, B, C, GC, norm_sq, n_inner, eps) / observed_sq.sqrt()
        normalise(A, B, C)
        if previous is not None:
            finished |= (previous - error).abs() <= tol * previous
        if progress is not None and progress(n_iter, error):
            break
        if bool(finished.all()):
            break
        previous = error
    # the observed loss at the final model: ||X||^2 - 2 <X, model> + ||mask * model||^2
    W = _weights(m, C)
    observed_model_sq = model_norm_sq(A, B, C) - _correction(A, gram(B), W)[1]
    inner = (A.double() * mttkrp_mode0(X0, B, C).double()).sum((1, 2))
    error = (observed_sq - 2 * inner + observed_model_sq).clamp_min(0).sqrt() / observed_sq.sqrt()
    return error, n_iter
