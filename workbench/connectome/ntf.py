"""Non-negative tensor factorization (non-negative CP) with batched random restarts.

The tensor ``X`` (e.g. pair x time x animal) is approximated by ``R`` rank-one
terms, ``X[i, j, k] ~ sum_r w_r a_ir b_jr c_kr`` with every factor
non-negative, fitted by HALS (hierarchical alternating least squares) in torch.
All restarts run side by side as one batch; see :mod:`workbench.connectome._hals`
for the kernels and for how missing entries are handled (exact EM on the
observed entries: missing values never enter the loss), and
:mod:`workbench.connectome._fibres` for the fast EM when whole time fibres are
missing (pairs of neurons not identified in some animals).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import xarray as xr

from workbench.connectome import _fibres, _hals
from workbench.connectome.fms import pairwise_scores

#: Below this many multiply-adds per MTTKRP, CPU runs use one thread: the HALS
#: loop is then a stream of tiny ops whose thread hand-offs cost more than the
#: work (measured 12x slower with 2 threads on a busy 2-core machine).
_SINGLE_THREAD_FLOPS = 5e7

#: ``compress="auto"`` fits a range approximation of width ``_auto_width(rank)`` first when the
#: tensor has at least ``_COMPRESS_MIN_ENTRIES`` entries, none missing, and both sides of its mode-0
#: unfolding are at least 8 times that width (so each product over the tensor shrinks at least 8x).
_COMPRESS_MIN_ENTRIES = 1_000_000


def _auto_width(rank: int) -> int:
    """Rank plus an oversampling of a third of it, at least 5 (Halko et al. 2011 use 5-10).

    Each range-finder pass costs in proportion to the width; at paper scale
    (rank 15) width 20 instead of 30 saves a third of them and still leaves one
    full iteration to reach tensorly's 30-iteration error, for one restart or ten.
    """
    return rank + max(5, -(-rank // 3))

#: A tensor whose largest entry is beyond 2**±_SAFE_EXPONENT is fitted multiplied by a power of two that
#: brings it to about 1 (exact; the weights are scaled back): squares of 1e30 overflow float32 and the
#: squared column norms of 1e-30 data fall below the HALS guard ``_hals._TINY``.
_SAFE_EXPONENT = 32

#: Upper bound on the per-chunk copies of the tensor that EM needs when entries are missing.
_MISSING_BATCH_BYTES = 1 << 30


def default_device() -> torch.device:
    """CUDA when available, else CPU.

    Examples
    --------
    >>> default_device().type in ("cpu", "cuda")
    True
    """
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class NTFResult:
    """A fitted non-negative CP model: the best restart plus restart diagnostics.

    Attributes
    ----------
    factors : tuple of xr.DataArray (dim_m, component)
        Unit-norm non-negative factor per mode, components sorted by weight.
    weights : xr.DataArray (component)
        Term weights (product of the column norms before normalising).
    error : float
        Relative error ``||X - model|| / ||X||`` over observed entries, best restart.
    errors : xr.DataArray (restart)
        The same for every restart.
    similarity : xr.DataArray (restart, restart_)
        Factor match score between every two restarts.
    n_iter : int
        Outer HALS iterations run.
    restarts : list
        Every restart's model as ``(weights, [factors])`` numpy arrays.
    """

    factors: tuple[xr.DataArray, ...]
    weights: xr.DataArray
    error: float
    errors: xr.DataArray
    similarity: xr.DataArray
    n_iter: int
    restarts: list = field(repr=False, default_factory=list)

    @property
    def rank(self) -> int:
        return int(self.weights.size)

    @property
    def stability(self) -> float:
        """Median factor match score over all pairs of restarts (1.0 with one restart)."""
        sim = self.similarity.values
        upper = sim[np.triu_indices(sim.shape[0], k=1)]
        return float(np.median(upper)) if upper.size else 1.0

    def factor(self, dim: str) -> xr.DataArray:
        """The factor of mode ``dim`` (e.g. ``"pair"``)."""
        for f in self.factors:
            if f.dims[0] == dim:
                return f
        raise ValueError(f"dim: expected one of {[f.dims[0] for f in self.factors]}, got {dim!r}")

    def reconstruct(self) -> xr.DataArray:
        """The model tensor ``sum_r w_r a_r o b_r o c_r`` with the input's dims."""
        a, b, c = (f.values for f in self.factors)
        values = np.einsum("ir,jr,kr,r->ijk", a, b, c, self.weights.values)
        coords = {}
        for f in self.factors:
            coords.update({k: v for k, v in f.coords.items() if k != "component"})
        return xr.DataArray(values, dims=[f.dims[0] for f in self.factors], coords=coords)

    def to_dataset(self) -> xr.Dataset:
        """Factors, weights and diagnostics in one Dataset (for netCDF/zarr)."""
        data = {f"{f.dims[0]}_factor": f for f in self.factors}
        data.update(weights=self.weights, errors=self.errors, similarity=self.similarity)
        return xr.Dataset(data, attrs={"error": self.error, "n_iter": self.n_iter, "stability": self.stability})


def max_cp_rank(shape) -> int:
    """``min(IJ, IK, JK)``: no 3-way tensor of this shape has a larger CP rank.

    The ``K`` slices ``X[:, :, k]`` (I x J) each have ``I`` rows, so ``X`` is
    a sum of at most ``IK`` rank-one tensors ``e_i o x_ik o e_k``; likewise
    ``IJ`` and ``JK``. A single mode bounds nothing: a ``pair x time x 1``
    tensor is a matrix whose CP rank can reach ``min(pair, time)``.

    Examples
    --------
    >>> max_cp_rank((300, 150, 1))
    150
    """
    I, J, K = (int(n) for n in shape)
    return min(I * J, I * K, J * K)


def tensor_values(tensor, mask=None) -> tuple[np.ndarray, np.ndarray | None]:
    """The tensor as a float numpy array and its mask as a bool array (or None), checked as :func:`ntf` does."""
    if isinstance(tensor, xr.DataArray):
        values = tensor.values
    elif isinstance(tensor, torch.Tensor):
        values = tensor.detach().cpu().numpy()
    elif isinstance(tensor, np.ndarray):
        values = tensor
    else:
        raise TypeError(f"tensor: expected an xr.DataArray, numpy array or torch tensor, got {type(tensor).__name__}")
    if values.ndim != 3:
        raise ValueError(f"tensor: expected a 3-way tensor, got shape {values.shape}")
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise TypeError(f"tensor: expected real numbers (an integer or float dtype), got {values.dtype}")
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    if isinstance(mask, xr.DataArray) and isinstance(tensor, xr.DataArray):
        if set(mask.dims) != set(tensor.dims):
            raise ValueError(f"mask: expected dims {tensor.dims} like tensor, got {mask.dims}")
        mask = mask.transpose(*tensor.dims)
    if mask is not None:
        mask = np.asarray(mask.values if isinstance(mask, xr.DataArray) else mask)
        if mask.shape != values.shape or mask.dtype != bool:
            raise ValueError(f"mask: expected a bool array of shape {values.shape}, got {mask.dtype} {mask.shape}")
    return values, mask


def _validate(tensor, rank, mask, n_restarts, max_iter, tol, n_inner, dtype):
    values, mask = tensor_values(tensor, mask)
    if not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank: expected a positive integer, got {rank!r}")
    if rank > max_cp_rank(values.shape):
        raise ValueError(f"rank: expected at most min(IJ, IK, JK) = {max_cp_rank(values.shape)}, the largest CP rank "
                         f"a tensor of shape {values.shape} can have, got {rank}")
    if not isinstance(n_restarts, (int, np.integer)) or n_restarts < 1:
        raise ValueError(f"n_restarts: expected a positive integer, got {n_restarts!r}")
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter: expected a positive integer, got {max_iter!r}")
    if not isinstance(n_inner, (int, np.integer)) or n_inner < 1:
        raise ValueError(f"n_inner: expected a positive integer, got {n_inner!r}")
    if not tol >= 0:  # also refuses NaN
        raise ValueError(f"tol: expected tol >= 0, got {tol!r}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
    return values, mask


def _load(values: np.ndarray, mask: np.ndarray | None, dtype: torch.dtype):
    """The (I, J*K) tensor on the CPU, its observed entries (None: all), their squared norm and the scale.

    A fully observed tensor is converted, checked (finite, >= 0) and summed in
    one pass of cache-sized chunks; NaN entries or a mask take the slower path
    that zeroes the missing entries first. See :func:`_rescale` for the scale.
    """
    I, J, K = values.shape
    if mask is None:
        X0, low, high, observed_sq = _load_chunks(values.reshape(I, J * K), dtype)
        if np.isfinite(low) and np.isfinite(high):  # NaN-propagating: nothing is missing or infinite
            _check_range(low, high)
            return _rescale(X0, None, observed_sq, high)
    observed = ~np.isnan(values) if mask is None else ~np.isnan(values) & mask
    if not observed.any():
        raise ValueError("tensor: expected some observed entries, got every entry missing (NaN or masked)")
    high = values[observed].max()
    _check_range(values[observed].min(), high)
    values = np.where(observed, values, 0.0).astype(values.dtype, copy=False)
    X0 = torch.as_tensor(values.reshape(I, J * K), dtype=dtype)
    return _rescale(X0, (None if observed.all() else observed), None, high)


def _check_range(low: float, high: float) -> None:
    if not np.isfinite(high) or not np.isfinite(low):
        raise ValueError("tensor: expected finite entries, got inf")
    if low < 0:
        raise ValueError(f"tensor: expected non-negative entries, got minimum {low:.4g}")
    if high == 0:
        raise ValueError("tensor: expected some non-zero observed entries, got all zeros (no relative error exists)")


def _rescale(X0: torch.Tensor, observed, observed_sq: torch.Tensor | None, high: float):
    """``X0`` times the power of two ``scale`` that brings its largest entry ``high`` near 1, if it is far.

    Multiplying by a power of two is exact, so only the representable range
    changes; the weights are divided by ``scale`` again in :func:`_package`.
    """
    exponent = int(np.round(np.log2(high)))
    scale = 1.0 if abs(exponent) <= _SAFE_EXPONENT else 2.0 ** -exponent
    if scale != 1.0:
        X0 = X0 * scale  # a new tensor: X0 may share the caller's memory
        observed_sq = None
    if observed_sq is None:
        observed_sq = _hals.squared_norm(X0)
    return X0, observed, observed_sq, scale


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _load_chunks(X0: np.ndarray, dtype: torch.dtype, chunk: int = 1 << 18):
    """``X0`` as a ``dtype`` tensor with its min, max and float64 squared norm, in one pass.

    Each chunk is converted and then reduced while it is still in cache; a
    C-ordered array already in ``dtype`` is shared, not copied.
    """
    source = torch.from_numpy(np.ascontiguousarray(X0))
    # numpy allocates large arrays with madvise(MADV_HUGEPAGE): first touch costs ~3x less than torch.empty's
    out = source if source.dtype == dtype else torch.from_numpy(np.empty(source.shape, dtype=_NUMPY_DTYPES[dtype]))
    flat_in, flat_out = source.view(-1), out.view(-1)
    lows, highs, squares = [], [], []
    for start in range(0, flat_out.numel(), chunk):
        piece = flat_out[start:start + chunk]
        if out is not source:
            piece.copy_(flat_in[start:start + chunk])
        low, high = torch.aminmax(piece)
        lows.append(low)
        highs.append(high)
        squares.append(piece.square().sum().double())
    return out, float(torch.stack(lows).min()), float(torch.stack(highs).max()), torch.stack(squares).sum()


def _init(shape, rank, n_restarts, seed, norm, device, dtype):
    # Drawn in float64 on the CPU so a seed gives the same start on every device.
    gen = torch.Generator().manual_seed(int(seed))
    factors = [torch.rand((n_restarts, n, rank), generator=gen, dtype=torch.float64) for n in shape]
    model_sq = (_hals.gram(factors[0]) * _hals.gram(factors[1]) * _hals.gram(factors[2])).sum((1, 2))
    factors[0] *= (norm / model_sq.sqrt())[:, None, None]
    return [f.to(device=device, dtype=dtype) for f in factors]


@contextmanager
def _threads_for(work: float, device: torch.device):
    previous = torch.get_num_threads()
    small = device.type == "cpu" and work < _SINGLE_THREAD_FLOPS
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(previous)


def _coords_for(tensor, axis: int, size: int):
    if isinstance(tensor, xr.DataArray):
        dim = tensor.dims[axis]
        coords = {k: v for k, v in tensor.coords.items() if v.dims == (dim,)}
        return dim, coords
    dim = f"mode{axis}"
    return dim, {dim: np.arange(size)}


def ntf(tensor, rank: int, *, n_restarts: int = 10, mask=None, seed: int = 0, max_iter: int = 500,
        tol: float = 1e-5, n_inner: int = 3, compress: int | str | None = "auto",
        dtype: torch.dtype = torch.float32, device=None,
        progress: bool = False, callback: Callable[[int, np.ndarray], bool | None] | None = None) -> NTFResult:
    """Non-negative CP decomposition by batched HALS with random restarts.

    Parameters
    ----------
    tensor : xr.DataArray, ndarray or torch.Tensor, 3-way, non-negative
        E.g. the (pair, time, animal) output of :func:`affinity`. NaN entries
        are missing.
    rank : int
        Number of rank-one components. A mode size does not bound it (a
        ``pair x time x 1`` tensor is a matrix and its non-negative CP is
        NMF, with rank up to ``min(pair, time)``); the only hard bound is
        ``min(IJ, IK, JK)`` (:func:`max_cp_rank`). Above the smallest mode,
        and whenever one mode has size 1 (one animal), the factors are not
        unique by Kruskal's condition alone: whether they are reproducible
        rests on the agreement of the restarts (``similarity``, and
        :func:`workbench.connectome.rank_sweep`'s stability).
    n_restarts : int
        Random initialisations, fitted together as one batch.
    mask : bool array, optional
        Same shape as ``tensor``; ``True`` = observed. Entries that are
        ``False`` (or NaN) are excluded from the fit (EM, not zero-imputation).
        A mask that does not change over the middle (time) mode, as when
        neurons are missing from some animals, takes a faster route to the
        same iterates (:mod:`workbench.connectome._fibres`): about as fast per
        iteration as a fully observed tensor.
        A DataArray mask of a DataArray tensor is matched to it by dim names.
    seed : int
        Seed of the initial factors; the same seed gives the same result.
    max_iter, tol : int, float
        Stop after ``max_iter`` outer iterations; each restart stops earlier
        once its relative error changes by at most ``tol`` (relative) in an
        iteration (once half have stopped, the rest run as a smaller batch).
        In float32 the error itself is known to about 3e-5 relative at a 4%
        fit (the precision scales as 1 / error^2: the squared error is a
        small difference of numbers near ``||X||^2``), so a tight ``tol`` on a
        close fit needs ``dtype=torch.float64``.
    n_inner : int
        HALS sweeps per factor update (reuse of each MTTKRP).
    compress : "auto", int or None
        Width ``L`` of a randomized range approximation of the tensor's
        mode-0 unfolding that is fitted first (cheaply: products with the
        tensor shrink from I to L rows); iterations on the full tensor then
        finish the fit, so the result is a fit of the tensor itself. "auto"
        uses ``L = rank + max(5, ceil(rank / 3))`` on large, fully observed
        tensors (on the paper-scale 5886 x 240 x 21 tensor at rank 15 this cut
        the full iterations from 13 to 1); None never compresses. Ignored
        when entries are missing.
    dtype : torch.float32 or torch.float64
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    progress : bool
        Show a tqdm bar over iterations.
    callback : callable, optional
        ``callback(iteration, errors)`` after every outer iteration with the
        current relative error of each restart (of the running chunk when
        entries are missing); returning True stops the fit there.

    Returns
    -------
    NTFResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.einsum("ir,jr,kr->ijk", rng.random((8, 2)), rng.random((6, 2)), rng.random((5, 2)))
    >>> res = ntf(x, 2, n_restarts=3, device="cpu")
    >>> res.error < 1e-2, res.factor("mode0").dims
    (True, ('mode0', 'component'))
    """
    values, mask = _validate(tensor, rank, mask, n_restarts, max_iter, tol, n_inner, dtype)
    device = torch.device(device) if device is not None else default_device()
    I, J, K = values.shape
    X0, observed, observed_sq, scale = _load(values, mask, dtype)  # missing entries are zero in X0
    X0, observed_sq = X0.to(device), observed_sq.to(device)
    fraction = 1.0 if observed is None else observed.mean()
    norm = float(observed_sq.sqrt()) / np.sqrt(fraction)
    A, B, C = _init((I, J, K), rank, n_restarts, seed, norm, device, dtype)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc=f"ntf rank {rank}", leave=False)

    def report(it, err):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(error=f"{float(err.min()):.4f}")
        return bool(callback(it, err.cpu().numpy())) if callback is not None else False

    width = _compress_width(compress, rank, values.shape, observed is None)
    fibres = None if observed is None else _fibres.missing_fibres(observed)
    seen = None if observed is None or fibres is not None else torch.as_tensor(observed.reshape(I, J * K),
                                                                               device=device)
    with _threads_for(values.size * rank * n_restarts, device):
        if fibres is not None:  # whole time fibres missing: EM on the shared tensor plus small corrections
            errors, n_iter = _fibres.fit_fibres(X0, (I, J, K), A, B, C, torch.as_tensor(fibres), max_iter=max_iter,
                                                tol=tol, n_inner=n_inner, eps=0.0, observed_sq=observed_sq,
                                                progress=report if (bar or callback) else None)
        else:
            errors, n_iter = _run(X0, (I, J, K), A, B, C, seen, max_iter, tol, n_inner, width, seed, observed_sq,
                                  report if (bar or callback) else None)
    if bar:
        bar.close()
    return _package(tensor, [A, B, C], errors.cpu().numpy(), n_iter, scale)


def _compress_width(compress, rank: int, shape: tuple[int, int, int], complete: bool) -> int | None:
    """The range-approximation width to use, or None (see ``compress`` in :func:`ntf`)."""
    if compress is None:
        return None
    if compress == "auto":
        width = _auto_width(rank)
        big = np.prod(shape) >= _COMPRESS_MIN_ENTRIES and min(shape[0], shape[1] * shape[2]) >= 8 * width
        return width if complete and big else None
    if isinstance(compress, (int, np.integer)) and not isinstance(compress, bool) and compress >= rank:
        return int(compress) if complete and compress < min(shape[0], shape[1] * shape[2]) else None
    raise ValueError(f"compress: expected 'auto', None or an integer >= rank ({rank}), got {compress!r}")


def _run(X0, shape, A, B, C, observed, max_iter, tol, n_inner, width, seed, observed_sq, report):
    if observed is None:
        return _hals.fit(X0, shape, A, B, C, observed=None, max_iter=max_iter, tol=tol, n_inner=n_inner, eps=0.0,
                         compress=width, seed=seed, observed_sq=observed_sq, progress=report)
    # EM completes one copy of the tensor per restart: run restarts in chunks that fit in memory. On the CPU
    # one restart at a time: its 2-D GEMMs beat batched ones (10 restarts: 0.57 -> 0.36 s/it at 1770 x 240 x 7),
    # and each restart then stops at its own tolerance.
    chunk = 1 if X0.device.type == "cpu" else max(1, _MISSING_BATCH_BYTES // X0.element_size() // X0.numel())
    errors, n_iter = [], 0
    for start in range(0, A.shape[0], chunk):
        part = slice(start, start + chunk)
        Xb = X0.unsqueeze(0).repeat(A[part].shape[0], 1, 1)
        err, it = _hals.fit(Xb, shape, A[part], B[part], C[part], observed=observed, max_iter=max_iter, tol=tol,
                            n_inner=n_inner, eps=0.0, observed_sq=observed_sq, progress=report)
        errors.append(err)
        n_iter = max(n_iter, it)
    return torch.cat(errors), n_iter


def _package(tensor, factors, errors, n_iter, scale: float = 1.0) -> NTFResult:
    mats = [f.detach().double().cpu().numpy() for f in factors]
    mats[0] = mats[0] / scale  # the fit was of ``scale * tensor`` (see _rescale)
    models = []
    for b in range(mats[0].shape[0]):
        norms = [np.linalg.norm(m[b], axis=0) for m in mats]
        weights = np.prod(norms, axis=0)
        order = np.argsort(-weights, kind="stable")
        unit = [(m[b] / np.where(n > 0, n, 1.0))[:, order] for m, n in zip(mats, norms)]
        models.append((weights[order], unit))
    best = int(np.argmin(errors))
    weights, unit = models[best]
    component = np.arange(len(weights))
    out = []
    for axis, f in enumerate(unit):
        dim, coords = _coords_for(tensor, axis, f.shape[0])
        out.append(xr.DataArray(f, dims=(dim, "component"), coords={**coords, "component": component}))
    sim = pairwise_scores([list(m[1]) for m in _scaled(models)])
    restart = np.arange(len(models))
    return NTFResult(
        factors=tuple(out),
        weights=xr.DataArray(weights, dims=("component",), coords={"component": component}),
        error=float(errors[best]),
        errors=xr.DataArray(errors.astype(float), dims=("restart",), coords={"restart": restart}),
        similarity=xr.DataArray(sim, dims=("restart", "restart_"), coords={"restart": restart, "restart_": restart}),
        n_iter=int(n_iter),
        restarts=models,
    )


def _scaled(models):
    """Restart models with weights folded into the first factor, for factor_match_score."""
    return [(w, [u[0] * w[None, :], *u[1:]]) for w, u in models]
