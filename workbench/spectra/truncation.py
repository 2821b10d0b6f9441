"""Low-rank truncation of a linear map: loss-vs-rank curves in closed form, and the factors.

A linear map ``W`` [d_out, d_in] applied to inputs ``x`` is replaced by a
rank-``k`` map ``W_k = A B``. Four ways to choose it:

* ``"svd"``: the top-``k`` singular triplets of ``W`` (best for the *weights*);
* ``"asvd"`` (ASVD): scale input channel ``j`` by ``s_j = mean|x_j|^0.5``,
  truncate ``W diag(s)``, undo the scaling;
* ``"whitened"`` (SVD-LLM): ``C = X^T X = L L^T`` (Cholesky), truncate ``W L``,
  ``A = U_k Sigma_k^(1/2)``, ``B = Sigma_k^(1/2) V_k^T L^(-1)``;
* ``"afm"`` (output-feature PCA, uncentred): project the outputs onto the top
  ``k`` eigenvectors ``P_k`` of ``Y^T Y = W C W^T``: ``A = P_k``, ``B = P_k^T W``.

The activation loss ``||(W - W_k) X^T||_F^2`` over samples ``X`` [n, d_in] is,
for every ``k`` at once, a suffix sum over one decomposition:

* svd: ``sum_{i>k} sigma_i(W)^2 v_i^T C v_i`` (the cross terms vanish because
  the ``u_i`` are orthonormal);
* asvd: the same with ``W diag(s)`` and ``diag(1/s) C diag(1/s)``;
* whitened: ``sum_{i>k} sigma_i(W L)^2``; afm: ``sum_{i>k} lambda_i(W C W^T)``.
  These two are equal (``(W L)(W L)^T = W C W^T``): whitening and output PCA
  reach the same optimum, the smallest activation loss of any rank-``k`` map,
  so ``whitened = afm <= asvd`` and ``<= svd`` for every ``k``. (ASVD below
  plain SVD is typical but not a theorem.)

Everything is float64; only the Gram ``C`` and the channel means ``mean|x_j|``
are needed, so calibration data can be streamed (:class:`ActivationStats`).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> W, X = rng.standard_normal((6, 8)), rng.standard_normal((100, 8)) * np.arange(1, 9)
>>> svd, white = truncation_curve(W, X, method="svd"), truncation_curve(W, X, method="whitened")
>>> bool((white <= svd * (1 + 1e-12)).all()), float(white.sel(rank=6))
(True, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.spectra._validate import as_matrices, as_tensor, check_choice, check_finite, check_int

METHODS = ("svd", "whitened", "asvd", "afm")
ASVD_ALPHA = 0.5
#: Relative ridge added to a singular Gram before its Cholesky factorization
#: (fewer samples than input channels, or dead channels).
_RIDGE = 1e-12


@dataclass
class ActivationStats:
    """Streaming input statistics of one linear map: the Gram ``X^T X`` and ``sum |x_j|``.

    Examples
    --------
    >>> import torch
    >>> stats = ActivationStats(3)
    >>> stats.update(torch.ones(4, 3)); stats.update(torch.ones(2, 3))
    >>> stats.n, stats.gram[0, 0].item(), stats.mean_abs.tolist()
    (6, 6.0, [1.0, 1.0, 1.0])
    """

    d_in: int
    gram: torch.Tensor = field(init=False)
    abs_sum: torch.Tensor = field(init=False)
    n: int = 0

    def __post_init__(self) -> None:
        self.gram = torch.zeros(self.d_in, self.d_in, dtype=torch.float64)
        self.abs_sum = torch.zeros(self.d_in, dtype=torch.float64)

    def update(self, x: torch.Tensor) -> None:
        """Add samples ``x`` [..., d_in] (every leading axis is a sample)."""
        x = x.detach().reshape(-1, x.shape[-1]).to(torch.float64)
        self.gram = self.gram.to(x.device) + x.T @ x
        self.abs_sum = self.abs_sum.to(x.device) + x.abs().sum(0)
        self.n += x.shape[0]

    @property
    def mean_abs(self) -> torch.Tensor:
        return self.abs_sum / max(self.n, 1)

    @classmethod
    def from_samples(cls, X: Any, name: str = "X") -> "ActivationStats":
        """Statistics of an array of samples ``X`` [..., d_in] (numpy, torch or xarray)."""
        t = as_tensor(X, name)
        if t.ndim < 1 or t.numel() == 0:
            raise ValueError(f"{name}: expected samples [..., d_in], got shape {tuple(t.shape)}")
        check_finite(t, name)
        stats = cls(int(t.shape[-1]))
        stats.update(t.cpu())
        return stats


def _asvd_scale(stats: ActivationStats, alpha: float) -> torch.Tensor:
    s = stats.mean_abs.cpu() ** alpha
    # A dead channel (scale 0) carries no activation; any positive scale
    # leaves the loss unchanged, and it keeps diag(s) invertible.
    return torch.where(s > 0, s, s.max().clamp_min(1.0))


def _cholesky(C: torch.Tensor) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(C)
    if int(info) == 0:
        return L
    ridge = _RIDGE * float(torch.trace(C)) / C.shape[0] + torch.finfo(torch.float64).tiny
    return torch.linalg.cholesky(C + ridge * torch.eye(C.shape[0], dtype=C.dtype))


def _tail_sums(terms: torch.Tensor) -> np.ndarray:
    """``out[k] = sum_{i >= k} terms[i]`` for k = 0..n (out[n] = 0)."""
    t = terms.cpu().numpy()
    return np.concatenate([np.cumsum(t[::-1])[::-1], [0.0]])


def _as_matrix(W: Any) -> torch.Tensor:
    """``W`` as one finite real matrix [d_out, d_in]."""
    Wt = as_matrices(W, "W")
    if Wt.ndim != 2:
        raise ValueError(f"W: expected one matrix [d_out, d_in], got shape {tuple(Wt.shape)}")
    return Wt


def loss_terms(W: torch.Tensor, stats: ActivationStats | None, method: str, alpha: float = ASVD_ALPHA) -> torch.Tensor:
    """Per-direction loss terms of ``method``, in truncation order (drop the last first)."""
    W = W.detach().to(torch.float64).cpu()
    if stats is None:
        return torch.linalg.svdvals(W) ** 2
    C = stats.gram.cpu()
    if method == "svd":
        _, s, Vh = torch.linalg.svd(W, full_matrices=False)
        return s ** 2 * torch.einsum("ij,jk,ik->i", Vh, C, Vh)
    if method == "asvd":
        scale = _asvd_scale(stats, alpha)
        _, s, Vh = torch.linalg.svd(W * scale, full_matrices=False)
        Cs = C / scale[:, None] / scale[None, :]
        return s ** 2 * torch.einsum("ij,jk,ik->i", Vh, Cs, Vh)
    if method == "whitened":
        return torch.linalg.svdvals(W @ _cholesky(C)) ** 2
    lam = torch.linalg.eigvalsh(W @ C @ W.T).flip(0).clamp_min(0.0)
    return lam[: min(W.shape)]


def truncation_curve(W: Any, X: Any = None, *, method: str = "svd", alpha: float = ASVD_ALPHA) -> xr.DataArray:
    """Loss of the best rank-``k`` truncation of ``W`` by ``method``, for every ``k``.

    Parameters
    ----------
    W : array_like
        The linear map [d_out, d_in] (``y = W x``; an ``nn.Linear`` weight).
    X : array_like or ActivationStats, optional
        Input samples [..., d_in] (all leading axes are samples) or their
        streamed statistics. Without ``X``: the weight loss
        ``||W - W_k||_F^2 = sum_{i>k} sigma_i^2`` (``method="svd"`` only).
    method : {"svd", "whitened", "asvd", "afm"}
        See the module docstring.
    alpha : float
        ASVD exponent on ``mean|x_j|``.

    Returns
    -------
    xarray.DataArray
        ``loss`` over ``rank`` = 0..min(d_out, d_in): non-increasing, 0 at
        full rank; attrs ``method`` and ``total`` (the loss at rank 0).

    Examples
    --------
    >>> import numpy as np
    >>> truncation_curve(np.diag([3.0, 2.0, 1.0])).values.tolist()
    [14.0, 5.0, 1.0, 0.0]
    """
    check_choice(method, "method", METHODS)
    Wt = _as_matrix(W)
    if X is None and method != "svd":
        raise ValueError(f"X: method={method!r} needs input activations X [..., d_in], got None")
    stats = X if isinstance(X, ActivationStats) or X is None else ActivationStats.from_samples(X)
    if stats is not None and stats.d_in != Wt.shape[1]:
        raise ValueError(f"X: expected a last axis of d_in={Wt.shape[1]} (the columns of W), got {stats.d_in}")
    loss = _tail_sums(loss_terms(Wt, stats, method, alpha))
    loss = np.minimum.accumulate(np.clip(loss, 0.0, None))  # rounding must not make it rise
    return xr.DataArray(loss, dims=("rank",), coords={"rank": np.arange(loss.size)}, name="loss",
                        attrs={"method": method, "total": float(loss[0]),
                               "kind": "weight" if stats is None else "activation"})


def low_rank_factors(W: Any, k: int, *, method: str = "svd", stats: ActivationStats | None = None,
                     alpha: float = ASVD_ALPHA) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors ``A`` [d_out, k] and ``B`` [k, d_in] with ``A @ B`` the rank-``k`` map of ``method``.

    Examples
    --------
    >>> import torch
    >>> A, B = low_rank_factors(torch.diag(torch.tensor([3.0, 2.0, 1.0])), 2)
    >>> (A @ B).diagonal().round().tolist()
    [3.0, 2.0, 0.0]
    """
    check_choice(method, "method", METHODS)
    W64 = _as_matrix(W).to(torch.float64).cpu()
    k = check_int(k, "k", low=0)
    if k > min(W64.shape):
        raise ValueError(f"k: expected a rank <= {min(W64.shape)} (the smaller side of W, shape "
                         f"{tuple(W64.shape)}), got {k}")
    if method != "svd" and stats is None:
        raise ValueError(f"stats: method={method!r} needs activation statistics, got None")
    if method == "afm":
        _, P = torch.linalg.eigh(W64 @ stats.gram.cpu() @ W64.T)
        Pk = P.flip(1)[:, :k]
        return Pk, Pk.T @ W64
    if method == "whitened":
        L = _cholesky(stats.gram.cpu())
        U, s, Vh = torch.linalg.svd(W64 @ L, full_matrices=False)
        root = s[:k].sqrt()
        # B = Sigma_k^(1/2) V_k^T L^(-1), solved rather than inverted: L^T B^T = (Sigma_k^(1/2) V_k^T)^T
        B = torch.linalg.solve_triangular(L.T, (root[:, None] * Vh[:k]).T, upper=True).T
        return U[:, :k] * root, B
    scale = _asvd_scale(stats, alpha) if method == "asvd" else torch.ones(W64.shape[1], dtype=torch.float64)
    U, s, Vh = torch.linalg.svd(W64 * scale, full_matrices=False)
    root = s[:k].sqrt()
    return U[:, :k] * root, root[:, None] * Vh[:k] / scale
