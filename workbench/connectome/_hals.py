"""Batched non-negative CP by HALS for 3-way tensors, in torch.

Shapes: the tensor is ``X[i, j, k]`` (I, J, K) and is kept only as its mode-0
unfolding ``X0`` (I, J*K), which *is* its row-major memory, so no transposed
copies are made. Factors carry a leading restart dim: ``A`` (b, I, R),
``B`` (b, J, R), ``C`` (b, K, R).

Per outer iteration the tensor is read twice, not three times:

* mode 0: ``KR(B, C)^T @ X0^T`` with all restarts' Khatri-Rao products
  stacked, one GEMM of (b*R, J*K) x (J*K, I);
* modes 1 and 2: ``Y = A^T @ X0`` (b*R, J*K) once; both MTTKRPs are small
  contractions of ``Y`` with C resp. B. ``Y`` depends on A only, which does not
  change between the two updates, so sharing it is exact.

Gram matrices are Hadamard products of the R x R grams of the other factors.
Each factor is updated with ``n_inner`` HALS sweeps per MTTKRP (the MTTKRP is
the expensive part; extra sweeps are almost free and cut outer iterations).

Extrapolation (no missing entries): after each accepted iteration the next
one starts from ``F + beta (F - F_previous)`` (clipped at 0), with one step
size ``beta`` per restart that grows while the error falls and shrinks when
an iteration ends worse than the last accepted one, which is then discarded
(Ang & Gillis 2019, "Accelerating nonnegative matrix factorization
algorithms using extrapolation"). The iteration after a discard starts at the
accepted point itself, a plain HALS step, and is always accepted: in exact
arithmetic it cannot increase the error, so an apparent increase is rounding,
and refusing it would restart the same deterministic step forever (restarts
used to freeze this way in float32, far from the optimum). The accepted error
therefore never increases beyond rounding; on the paper-scale tensor
extrapolation cuts the iterations to a given error about 2x.

Error: ``||X - [[A,B,C]]||^2 = ||X||^2 - 2 <C, M_C> + sum(G_A * G_B * G_C)``
with the small terms (grams, the last MTTKRP's contraction) accumulated in
float64. At a good fit the squared error is a small difference of numbers near
``||X||^2``, so float32 grams (1e-6 relative) left the error of a 4% fit known to
only 2e-4 relative, far above the default ``tol`` and the steps extrapolation
must tell apart; with float64 accumulation what remains (the float32 products
with the tensor) is ~3e-5 there.

Compression (no missing entries, large tensors): the mode-0 unfolding is
first replaced by its randomized range approximation ``X0 ~ Q G`` (Halko,
Martinsson & Tropp 2011; ``Q`` (I, L) orthonormal, ``G = Q^T X0`` (L, J*K),
L = R plus a third, one power iteration). HALS on ``Q G`` costs O(L) instead of O(I) per
column of the tensor, so the fit converges there almost for free; a few
iterations on the full tensor then finish it, and they alone decide the
reported error and the stopping rule.

Missing entries: exact EM for least squares on the observed entries. Before
each sweep the missing entries of each restart's copy of the tensor are set to
that restart's current model; one HALS sweep on the completed tensor cannot
increase the completed loss, which equals the observed loss at the current
model and bounds it from above afterwards, so the observed loss never
increases. The model is rebuilt whole, as one GEMM ``A KR(B, C)^T`` per
restart, and merged with the observed entries by the mask a few rows at a time
while they are in cache (one read and one write of each copy): gathering only the
missing entries (``A[i] * B[j] * C[k]`` over their index lists) builds three
(n_missing, R) temporaries and was 40x slower than the GEMM at 60% missing.
"""

from __future__ import annotations

import torch

_TINY = 1e-30
# At most this many iterations on the range approximation: it only has to bring the factors close
# (on the paper-scale tensor 30 leave one full iteration to reach tensorly's 30-iteration error).
COMPRESSED_ITERATIONS = 30
# Extrapolation step sizes: start, growth on success, growth of the cap, shrink on failure.
_BETA0, _GROW, _GROW_CAP, _SHRINK = 0.5, 1.1, 1.05, 1.5


def khatri_rao(B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """(b, J, R), (b, K, R) -> (b, J*K, R) with k fastest, matching ``X0``'s columns.

    Examples
    --------
    >>> import torch
    >>> B, C = torch.tensor([[[1.0], [2.0]]]), torch.tensor([[[3.0], [4.0], [5.0]]])
    >>> khatri_rao(B, C)[0, :, 0].tolist()
    [3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
    """
    b, J, R = B.shape
    return (B[:, :, None, :] * C[:, None, :, :]).reshape(b, J * C.shape[1], R)


class Compressed:
    """The randomized range approximation ``Q @ G`` of a mode-0 unfolding, used in its place."""

    def __init__(self, X0: torch.Tensor, width: int, seed: int, power: int = 1):
        gen = torch.Generator().manual_seed(int(seed))
        omega = torch.randn(width, X0.shape[1], generator=gen).to(device=X0.device, dtype=X0.dtype)
        sketch = (omega @ X0.T).T  # (I, L): the range of X0, as seen by L random probes
        for _ in range(power):  # one power iteration sharpens the range where the spectrum decays slowly
            Q, _ = torch.linalg.qr(sketch)
            W, _ = torch.linalg.qr((Q.T @ X0).T)
            sketch = (W.T @ X0.T).T
        self.Q, _ = torch.linalg.qr(sketch)
        self.G = self.Q.T @ X0

    def mttkrp_mode0(self, kr_t: torch.Tensor) -> torch.Tensor:
        return (kr_t @ self.G.T) @ self.Q.T

    def project_mode0(self, a_t: torch.Tensor) -> torch.Tensor:
        return (a_t @ self.Q) @ self.G


def mttkrp_mode0(X0: torch.Tensor | Compressed, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``M[b, i, r] = sum_jk X[i, j, k] B[b, j, r] C[b, k, r]``.

    Computed as ``KR^T X0^T`` (R rows out) rather than ``X0 KR``: BLAS runs the
    skinny product about 2x faster with the short dimension on the left.
    """
    kr = khatri_rao(B, C)
    b, jk, R = kr.shape
    if isinstance(X0, Compressed) or X0.dim() == 2:
        kr_t = kr.permute(0, 2, 1).reshape(b * R, jk)
        out = X0.mttkrp_mode0(kr_t) if isinstance(X0, Compressed) else kr_t @ X0.T  # (b*R, I)
        return out.reshape(b, R, -1).transpose(1, 2)
    return torch.bmm(kr.transpose(1, 2), X0.transpose(1, 2)).transpose(1, 2)


def project_mode0(X0: torch.Tensor | Compressed, A: torch.Tensor, J: int, K: int) -> torch.Tensor:
    """``Y[b, r, j, k] = sum_i A[b, i, r] X[i, j, k]``, as ``A^T X0`` (short dimension on the left)."""
    b, _, R = A.shape
    if isinstance(X0, Compressed) or X0.dim() == 2:
        a_t = A.permute(0, 2, 1).reshape(b * R, -1)
        return (X0.project_mode0(a_t) if isinstance(X0, Compressed) else a_t @ X0).reshape(b, R, J, K)
    return torch.bmm(A.transpose(1, 2), X0).reshape(b, R, J, K)


def gram(F: torch.Tensor) -> torch.Tensor:
    return F.transpose(1, 2) @ F


def hals_sweeps(F: torch.Tensor, M: torch.Tensor, G: torch.Tensor, n_inner: int, eps: float) -> None:
    """In place: minimise ||X_(n) - F KR^T||^2 over F >= eps column by column.

    The HALS column update ``f_r <- max(eps, f_r + (m_r - F g_r) / g_rr)`` is
    rewritten as ``max(eps, m_r / g_rr - F h_r)`` with ``h_r = g_r / g_rr`` and
    ``h_rr = 0``: one fused ``baddbmm`` per column, which matters because these
    small ops, not the flops, dominate on small tensors.
    """
    R = F.shape[2]
    diag = torch.diagonal(G, dim1=1, dim2=2).clamp_min(_TINY)
    H = G / diag[:, None, :]
    H.diagonal(dim1=1, dim2=2).zero_()
    Mn = (M / diag[:, None, :]).permute(2, 0, 1).unsqueeze(-1).contiguous()  # (R, b, n, 1)
    Hc = H.permute(2, 0, 1).unsqueeze(-1).contiguous()  # (R, b, R, 1)
    for _ in range(n_inner):
        for r in range(R):
            F[:, :, r : r + 1] = torch.baddbmm(Mn[r], F, Hc[r], alpha=-1).clamp_min_(eps)


def normalise(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> None:
    """Unit-norm columns of B and C, scale moved into A (keeps HALS well conditioned)."""
    nb = B.norm(dim=1, keepdim=True).clamp_min(_TINY)
    nc = C.norm(dim=1, keepdim=True).clamp_min(_TINY)
    B /= nb
    C /= nc
    A *= nb * nc


def complete(X0: torch.Tensor, observed: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             chunk: int = 1 << 18) -> torch.Tensor:
    """In place: each restart's copy ``X0[b]`` (b, I, J*K) takes that restart's model where ``observed`` is False.

    ``observed`` (I, J*K) is shared by the restarts. The model is built a few
    rows at a time (about ``chunk`` entries), merged and summed while still in
    cache, so the completion reads and writes ``X0`` once. Returns
    ``||completed||^2`` per restart in float64 (float32 sums of cache-sized
    pieces, as in :func:`squared_norm`).

    Examples
    --------
    >>> import torch
    >>> A, B, C = torch.ones(1, 2, 1), torch.ones(1, 1, 1), 2 * torch.ones(1, 1, 1)
    >>> X0, seen = torch.tensor([[[5.0], [0.0]]]), torch.tensor([[True], [False]])
    >>> norm_sq = complete(X0, seen, A, B, C)
    >>> X0.flatten().tolist(), float(norm_sq[0])
    ([5.0, 2.0], 29.0)
    """
    kr_t = khatri_rao(B, C).transpose(1, 2)  # (b, R, J*K)
    b, I, jk = X0.shape
    rows = max(1, chunk // (b * jk))
    parts = []
    for start in range(0, I, rows):
        piece = X0[:, start:start + rows]
        model = torch.bmm(A[:, start:start + rows], kr_t)
        torch.where(observed[start:start + rows], piece, model, out=piece)
        parts.append(piece.square().sum((1, 2)).double())
    return torch.stack(parts).sum(0)


def squared_norm(X: torch.Tensor, chunk: int = 1 << 20) -> torch.Tensor:
    """``sum(X**2)`` in float64: each cache-sized chunk is summed in its own dtype
    (torch's cascade summation: ~1e-8 relative in float32), the chunk sums in float64."""
    parts = [c.square().sum().double() for c in X.reshape(-1).split(chunk)]
    return torch.stack(parts).sum()


class Extrapolator:
    """Per-restart extrapolation between HALS iterations with accept/reject on the exact error."""

    def __init__(self, factors: list[torch.Tensor], error: torch.Tensor):
        self.accepted = [f.clone() for f in factors]
        self.error = error.clone()
        self.beta = torch.full((error.shape[0], 1, 1), _BETA0, dtype=factors[0].dtype, device=factors[0].device)
        self.cap = torch.ones_like(self.beta)
        # True where the iterate being scored began at the accepted point (no extrapolation).
        self.plain = torch.ones_like(error, dtype=torch.bool)

    def step(self, factors: list[torch.Tensor], error: torch.Tensor) -> torch.Tensor:
        """Accept or discard the iterate in ``factors`` (in place: becomes the next start); returns accepted errors."""
        better = (error <= self.error) | self.plain
        keep = better[:, None, None]
        beta = self.beta
        self.cap = torch.where(keep, (self.cap * _GROW_CAP).clamp_max(1.0), beta)
        self.beta = torch.where(keep, torch.minimum(beta * _GROW, self.cap), beta / _SHRINK)
        for f, acc in zip(factors, self.accepted):
            start = (f + self.beta * (f - acc)).clamp_min_(0)
            acc.copy_(torch.where(keep, f, acc))
            f.copy_(torch.where(keep, start, acc))
        self.error = torch.where(better, error, self.error)
        self.plain = ~better
        return self.error

    def restore(self, factors: list[torch.Tensor]) -> None:
        for f, acc in zip(factors, self.accepted):
            f.copy_(acc)


def iteration(X0: torch.Tensor, shape: tuple[int, int, int], A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
              norm_sq: torch.Tensor, n_inner: int, eps: float) -> torch.Tensor:
    """One outer HALS iteration in place (A, then B, then C); returns the relative error per restart."""
    I, J, K = shape
    GB, GC = gram(B), gram(C)
    hals_sweeps(A, mttkrp_mode0(X0, B, C), GB * GC, n_inner, eps)
    return update_b_c(project_mode0(X0, A, J, K), A, B, C, GC, norm_sq, n_inner, eps) / norm_sq.sqrt()


def update_b_c(Y: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, GC: torch.Tensor,
               norm_sq: torch.Tensor, n_inner: int, eps: float) -> torch.Tensor:
    """In place: B, then C, from ``Y = A^T X`` (b, R, J, K); returns ``||X - [[A, B, C]]||`` per restart
    for a tensor of squared norm ``norm_sq``."""
    GA = gram(A)
    hals_sweeps(B, torch.einsum("brjk,bkr->bjr", Y, C), GA * GC, n_inner, eps)
    GB = gram(B)
    MC = torch.einsum("brjk,bjr->bkr", Y.double(), B.double())
    hals_sweeps(C, MC.to(C.dtype), GA * GB, n_inner, eps)
    # ||X - [[A,B,C]]||^2 = ||X||^2 - 2 <C, MC> + sum(GA * GB * GC): no model tensor is built.
    inner = (C.double() * MC).sum((1, 2))
    return (norm_sq - 2 * inner + model_norm_sq(A, B, C)).clamp_min(0).sqrt()


def model_norm_sq(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``||[[A, B, C]]||^2`` per restart from the grams, accumulated in float64 (see the module docstring).

    Examples
    --------
    >>> import torch
    >>> A, B, C = (torch.rand(1, n, 2) for n in (4, 3, 2))
    >>> explicit = torch.einsum("bir,bjr,bkr->bijk", A, B, C).double().square().sum()
    >>> bool(torch.isclose(model_norm_sq(A, B, C)[0], explicit, rtol=1e-5))
    True
    """
    return (gram(A.double()) * gram(B.double()) * gram(C.double())).sum((1, 2))


def fit(X0: torch.Tensor, shape: tuple[int, int, int], A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, *,
        observed: torch.Tensor | None, max_iter: int, tol: float, n_inner: int, eps: float,
        extrapolate: bool = True, compress: int | None = None, seed: int = 0,
        observed_sq: torch.Tensor | None = None, progress=None) -> tuple[torch.Tensor, int]:
    """Run HALS in place on the factors; returns (relative error per restart, iterations).

    ``X0`` is (I, J*K) shared by all restarts, or (b, I, J*K) when entries are
    missing (each restart completes its own copy; the caller zeroes the
    missing entries). The error is over the observed entries, relative to
    their norm. Extrapolation applies only when no entry is missing (EM's
    monotonicity argument needs plain HALS steps). The run stops after
    ``max_iter`` iterations, when ``progress(iteration, errors)`` returns
    True, or when every restart's error changes by at most ``tol`` relative.
    ``compress=L`` (no missing entries) first fits the rank-L range
    approximation of the tensor (see the module docstring); its iterations
    are not reported to ``progress`` nor counted in the returned iterations.
    """
    factors = [A, B, C]
    if compress is not None and observed is None:
        small = Compressed(X0, compress, seed)
        _iterate(small, shape, factors, squared_norm(small.G), None, min(max_iter, COMPRESSED_ITERATIONS),
                 max(tol, 1e-4), n_inner, eps, extrapolate, None)
    if observed_sq is None:  # the caller may already have summed it (one pass over the tensor)
        observed_sq = squared_norm(X0[0] if observed is not None else X0)
    error, n_iter = _iterate(X0, shape, factors, observed_sq, observed, max_iter, tol, n_inner, eps, extrapolate,
                             progress)
    if observed is not None:
        # The completed loss bounds the observed one; report the observed loss exactly.
        norm_sq = complete(X0, observed, A, B, C)
        inner = (A.double() * mttkrp_mode0(X0, B, C).double()).sum((1, 2))
        model_sq = model_norm_sq(A, B, C)
        error = (norm_sq - 2 * inner + model_sq).clamp_min(0).sqrt() / observed_sq.sqrt()
    return error, n_iter


def _iterate(X0, shape, factors, observed_sq, observed, max_iter, tol, n_inner, eps, extrapolate, progress,
             first=1):
    """The outer loop of :func:`fit` on one tensor (full, compressed, or EM-completed copies).

    Each restart stops once its error changes by at most ``tol`` (relative).
    With the tensor shared by all restarts, once half of them have stopped
    the others continue as a smaller batch, so a slow restart does not keep
    the finished ones computing.
    """
    A, B, C = factors
    # One restart's completed copy is a plain matrix: the 2-D products are faster than batched ones.
    tensor = X0[0] if observed is not None and X0.shape[0] == 1 else X0
    extrapolator = None
    previous = None
    finished = torch.zeros(A.shape[0], dtype=torch.bool, device=A.device)
    n_iter = first - 1
    for n_iter in range(first, max_iter + 1):
        norm_sq = observed_sq
        if observed is not None:
            norm_sq = complete(X0, observed, A, B, C)
        error = iteration(tensor, shape, A, B, C, norm_sq, n_inner, eps)
        normalise(A, B, C)
        if previous is not None:
            finished |= (previous - error).abs() <= tol * previous
        if extrapolate and observed is None:
            if extrapolator is None:
                extrapolator = Extrapolator(factors, error)
            else:
                error = extrapolator.step(factors, error)
        if progress is not None and progress(n_iter, error):
            break
        if bool(finished.all()):
            break
        previous = error
        if observed is None and n_iter < max_iter and 2 * int(finished.sum()) >= A.shape[0] > 1:
            if extrapolator is not None:
                extrapolator.restore(factors)
                error = extrapolator.error
            return _continue_unfinished(X0, shape, factors, error, ~finished, observed_sq, max_iter, tol, n_inner,
                                        eps, extrapolate, progress, n_iter + 1)
    if extrapolator is not None:
        extrapolator.restore(factors)
        error = extrapolator.error
    return error, n_iter


def _continue_unfinished(X0, shape, factors, error, unfinished, observed_sq, max_iter, tol, n_inner, eps, extrapolate,
                         progress, first):
    """Run :func:`_iterate` on the unfinished restarts only and write their results back."""
    idx = unfinished.nonzero().squeeze(1)
    subset = [f[idx] for f in factors]
    error = error.clone()

    def report(it, err):
        error[idx] = err
        return progress(it, error)

    sub_error, n_iter = _iterate(X0, shape, subset, observed_sq, None, max_iter, tol, n_inner, eps, extrapolate,
                                 report if progress is not None else None, first)
    for f, sub in zip(factors, subset):
        f[idx] = sub
    error[idx] = sub_error
    return error, n_iter
