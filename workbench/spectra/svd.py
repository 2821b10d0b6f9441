"""Shared SVD helpers: singular values of matrices and of low-rank products.

Every other spectra module (and any analysis that needs singular values)
goes through these functions, so the numerical choices live in one place:

* **Gram route first.** The singular values of a tall or wide matrix are the
  square roots of the eigenvalues of its smaller Gram matrix, accumulated in
  float64. One GEMM plus a symmetric eigensolve is several times faster than a
  bidiagonal SVD on CPU, and batched over stacks.
* **SVD fallback at the noise floor.** The Gram route resolves an eigenvalue
  ``lambda_i`` to an absolute error of about ``n eps64 lambda_1``. When a
  spectrum reaches within ``_FLOOR`` of that (near rank-deficient matrices,
  where numerical rank is decided), those matrices are redone with a direct
  SVD, which resolves singular values down to ``eps sigma_1``.
* **Products through their factors.** The spectrum of ``A B^T`` (a per-head
  OV or QK circuit, rank ``r = d_head``) is that of the small ``r x r`` core
  ``R_A R_B^T`` from thin QR factorizations, never of the formed product.

Examples
--------
>>> import torch
>>> W = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
>>> singular_values(W, device="cpu").tolist()
[3.0, 2.0, 1.0]
"""

from __future__ import annotations

import torch

from workbench.device import one_cpu_thread
from workbench.spectra._validate import resolve_device

#: Gram eigenvalues below ``_FLOOR * n * eps64 * lambda_1`` trigger the direct
#: SVD; above it the Gram route is accurate to about 1e-4 relative.
_FLOOR = 1e4
_EPS64 = torch.finfo(torch.float64).eps


#: Eigen- and singular-value solves up to this size run on one CPU thread.
_ONE_THREAD_MAX = 2048


def _solver_threads(W: torch.Tensor):
    """One CPU thread for small dense solves.

    The tridiagonal / bidiagonal stages of LAPACK's symmetric eigensolver and
    SVD are mostly sequential; on a few shared cores the hand-offs between
    threads cost far more than they save (measured: a 512 x 512 float64
    ``eigvalsh`` took 0.74 s on two busy threads, 0.12 s on one).
    """
    return one_cpu_thread(W.device, enabled=min(W.shape[-2:]) <= _ONE_THREAD_MAX)


#: A matrix with more entries than this has its Gram accumulated over row blocks of
#: this many entries, so that no float64 copy of the whole matrix is made (a 128k x 2k float16
#: embedding would otherwise take 2 GiB twice over).
_BLOCK = 1 << 22


def _blocked_gram(X: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``(X / scale)^T (X / scale)`` for X [..., rows, n], summed over blocks of rows widened to float64."""
    rows, n = X.shape[-2:]
    flat, flat_scale = X.reshape(-1, rows, n), scale.reshape(-1)  # a view for a [1, m, n] stack
    G = torch.zeros(flat.shape[0], n, n, dtype=torch.float64, device=X.device)
    step = max(1, _BLOCK // n)
    for b in range(flat.shape[0]):
        for start in range(0, rows, step):
            block = flat[b, start:start + step].to(torch.float64) / flat_scale[b]
            G[b] += block.mT @ block
    return G.reshape(*X.shape[:-2], n, n)


def _gram_eigenvalues(W: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the smaller Gram matrix of ``W / scale`` [..., m, n], descending, float64.

    A large matrix (alone or in a stack) is widened to float64 one block of rows at a time:
    the Gram is the sum of the blocks' Grams, so the result is the same up to
    the order of the float64 additions.
    """
    X = W if W.shape[-2] >= W.shape[-1] else W.mT  # sum over the longer axis
    rows, n = X.shape[-2:]
    if rows * n > _BLOCK:
        G = _blocked_gram(X, scale)
    else:
        X64 = X.to(torch.float64) / scale[..., None, None]
        G = X64.mT @ X64  # the GEMM keeps every thread
    with _solver_threads(G):
        return torch.linalg.eigvalsh(G).flip(-1).clamp_min(0.0)


def singular_values(W: torch.Tensor, *, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None, method: str = "auto") -> torch.Tensor:
    """Singular values of ``W`` [..., m, n], descending along the last axis.

    Parameters
    ----------
    W : torch.Tensor
        Real floating matrix or stack of matrices (already validated).
    device : str or torch.device, optional
        Where the work runs; default CUDA when available, else CPU.
    dtype : torch.dtype, optional
        Output dtype and, for the direct SVD, compute dtype. Default: float64
        for float64 input, else float32.
    method : {"auto", "gram", "svd"}
        ``"auto"``: the float64 Gram route, with the direct SVD for matrices
        whose spectrum reaches the Gram noise floor. ``"svd"``: always the
        direct SVD. ``"gram"``: never fall back.

    Returns
    -------
    torch.Tensor
        Shape ``[..., min(m, n)]`` on ``device``.

    Examples
    --------
    >>> import torch
    >>> W = torch.randn(6, 4, dtype=torch.float64)
    >>> torch.allclose(singular_values(W, device="cpu"), torch.linalg.svdvals(W))
    True
    """
    if method not in ("auto", "gram", "svd"):
        raise ValueError(f"method: expected 'auto', 'gram' or 'svd', got {method!r}")
    dev = resolve_device(device)
    out_dtype = dtype or (torch.float64 if W.dtype == torch.float64 else torch.float32)
    W = W.to(dev)
    if method == "svd":
        with _solver_threads(W):
            return torch.linalg.svdvals(W.to(out_dtype))
    # Scale each matrix by a power of two (exact) so that its largest entry is
    # in [0.5, 1): the squares in the Gram then neither overflow nor underflow.
    # max |w| as max(max w, -min w): no |W| copy of a large matrix
    top = torch.maximum(W.amax(dim=(-2, -1)), -W.amin(dim=(-2, -1)))
    _, exponent = torch.frexp(top.to(torch.float64))
    scale = torch.ldexp(torch.ones_like(exponent, dtype=torch.float64), exponent)
    lam = _gram_eigenvalues(W, scale)
    sigma = lam.sqrt() * scale[..., None]
    if method == "auto":
        n = lam.shape[-1]
        low = lam[..., -1] < _FLOOR * n * _EPS64 * lam[..., 0]
        if bool(low.any()):
            with _solver_threads(W):
                sigma[low] = torch.linalg.svdvals(W[low].to(out_dtype)).to(torch.float64)
    return sigma.to(out_dtype)


def product_singular_values(A: torch.Tensor, B: torch.Tensor, *, device: str | torch.device | None = None,
                            dtype: torch.dtype | None = None) -> torch.Tensor:
    """Singular values of ``A @ B.mT`` for thin factors ``A`` [..., m, r], ``B`` [..., n, r].

    With ``A = Q_A R_A`` and ``B = Q_B R_B`` (reduced QR), ``A B^T = Q_A (R_A R_B^T) Q_B^T``
    and the orthonormal ``Q``s leave singular values unchanged, so only the
    ``r x r`` core is decomposed: ``O((m + n) r^2)`` work instead of ``O(m n r)``
    to form the product and ``O(m n min(m, n))`` to decompose it.

    Returns
    -------
    torch.Tensor
        ``[..., min(m, n, r)]`` descending.

    Examples
    --------
    >>> import torch
    >>> A, B = torch.randn(50, 4, dtype=torch.float64), torch.randn(40, 4, dtype=torch.float64)
    >>> torch.allclose(product_singular_values(A, B, device="cpu"), torch.linalg.svdvals(A @ B.T)[:4])
    True
    """
    if A.shape[-1] != B.shape[-1] or A.shape[:-2] != B.shape[:-2]:
        raise ValueError(f"A, B: expected [..., m, r] and [..., n, r] with the same r and batch, "
                         f"got {tuple(A.shape)} and {tuple(B.shape)}")
    dev = resolve_device(device)
    out_dtype = dtype or (torch.float64 if torch.float64 in (A.dtype, B.dtype) else torch.float32)
    # QR in float64: the core's small singular values are differences of
    # products, which float32 would round away.
    _, Ra = torch.linalg.qr(A.to(dev, torch.float64))
    _, Rb = torch.linalg.qr(B.to(dev, torch.float64))
    core = Ra @ Rb.mT
    k = min(A.shape[-2], B.shape[-2], A.shape[-1])
    with _solver_threads(core):
        return torch.linalg.svdvals(core)[..., :k].to(out_dtype)



def top_singular_values(W: torch.Tensor, k: int, *, oversample: int = 10, n_iter: int = 4,
                        device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                        seed: int = 0) -> torch.Tensor:
    """The ``k`` largest singular values of ``W`` [..., m, n] by randomized SVD (Halko et al. 2011).

    ``torch.svd_lowrank`` projects ``W`` on ``k + oversample`` random directions
    and sharpens them with ``n_iter`` power iterations; the error of
    ``sigma_i`` shrinks like ``(sigma_{k+p+1} / sigma_i)^(2 n_iter + 1)``, so
    it is small for a decaying spectrum and poor for a flat one (a random
    matrix's bulk). When ``(k + oversample) (2 n_iter + 2)`` reaches
    ``min(m, n)`` the exact values are computed instead (cheaper there).

    Parameters
    ----------
    W : torch.Tensor
        Real floating matrix or stack (already validated); half precision is
        widened to ``dtype``.
    k : int
        How many of the largest singular values.
    oversample, n_iter : int
        Extra random directions, power iterations.
    device : str or torch.device, optional
    dtype : torch.dtype, optional
        Compute and output dtype; default float64 for float64 input, else float32.
    seed : int
        Seed of the random projection (the result is reproducible).

    Returns
    -------
    torch.Tensor
        ``[..., min(k, m, n)]`` descending, on ``device``.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> U, _ = torch.linalg.qr(torch.randn(300, 60, generator=g, dtype=torch.float64))
    >>> V, _ = torch.linalg.qr(torch.randn(200, 60, generator=g, dtype=torch.float64))
    >>> W = U @ torch.diag(0.8 ** torch.arange(60.0, dtype=torch.float64)) @ V.T
    >>> top = top_singular_values(W, 5, device="cpu")
    >>> bool(torch.allclose(top, torch.linalg.svdvals(W)[:5], rtol=1e-10))
    True
    """
    dev = resolve_device(device)
    out_dtype = dtype or (torch.float64 if W.dtype == torch.float64 else torch.float32)
    n = min(W.shape[-2:])
    k = min(k, n)
    X = W.to(dev, out_dtype)
    # The randomized passes cost about (2 n_iter + 2) m n q against m n^2 for the exact values:
    # once q = k + oversample is that large a fraction of n (a per-head slice), exact is cheaper.
    if (k + oversample) * (2 * n_iter + 2) >= n:
        with _solver_threads(X):
            return torch.linalg.svdvals(X)[..., :k]
    state = torch.random.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if dev.type == "cuda" else None
    torch.manual_seed(seed)
    try:
        _, S, _ = torch.svd_lowrank(X, q=k + oversample, niter=n_iter)
    finally:
        torch.random.set_rng_state(state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
    return S[..., :k]


def frobenius_sq(W: torch.Tensor) -> torch.Tensor:
    """``||W||_F^2`` of each matrix of ``W`` [..., m, n] in float64, a large matrix one row block at a time.

    Examples
    --------
    >>> float(frobenius_sq(torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=torch.float16)))
    25.0
    """
    rows, n = W.shape[-2:]
    if rows * n > _BLOCK:
        flat, step = W.reshape(-1, rows, n), max(1, _BLOCK // n)
        sums = [sum((m[i:i + step].to(torch.float64) ** 2).sum() for i in range(0, rows, step)) for m in flat]
        return torch.stack(sums).reshape(W.shape[:-2])
    return (W.to(torch.float64) ** 2).sum(dim=(-2, -1))
