"""``spectrum``: the singular values of a matrix or a stack of matrices, as xarray.

Examples
--------
>>> import numpy as np
>>> s = spectrum(np.diag([4.0, 1.0, 2.0]))
>>> s.dims, s.values.tolist()
(('index',), [4.0, 2.0, 1.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.spectra._validate import as_matrices, resolve_device, resolve_dtype, source_precision
from workbench.spectra.svd import singular_values


def _batch_dims(W: Any, n_batch: int) -> tuple[str, ...]:
    if isinstance(W, xr.DataArray) and W.ndim == n_batch + 2:
        return tuple(W.dims[:n_batch])
    if n_batch == 1:
        return ("matrix",)
    return tuple(f"batch_{i}" for i in range(n_batch))


def spectrum(W: Any, *, dtype: str | torch.dtype | None = None, device: str | torch.device | None = None,
             method: str = "auto") -> xr.DataArray:
    """Singular values of ``W``, descending, as an ``xr.DataArray`` over ``index``.

    Parameters
    ----------
    W : array_like
        A real matrix ``[m, n]`` or a stack ``[..., m, n]`` (numpy, torch or
        xarray; float16/bfloat16 are upcast to float32, integers to float64).
        NaN, inf, complex values and empty or 1-D arrays are rejected.
    dtype : {None, "float32", "float64"}
        Output precision; default float64 for float64 input, else float32.
        The values are computed through a float64 Gram matrix either way (see
        :mod:`workbench.spectra.svd`); ``"float64"`` keeps them.
    device : str or torch.device, optional
        Where the decomposition runs (default CUDA when available).
    method : {"auto", "gram", "svd"}
        See :func:`workbench.spectra.svd.singular_values`.

    Returns
    -------
    xarray.DataArray
        Dims ``(..., "index")``: leading dims are kept from an xarray input,
        else named ``matrix`` (one stack axis) or ``batch_<i>``. Attributes:
        ``rows``, ``cols`` (the matrix shape) and ``precision`` (the input's
        floating precision, which sets the numerical-rank tolerance in
        :func:`rank_metrics`).

    Examples
    --------
    >>> import torch
    >>> s = spectrum(torch.randn(3, 8, 5), dtype="float64", device="cpu")
    >>> s.dims, s.shape, s.attrs["rows"], s.attrs["cols"]
    (('matrix', 'index'), (3, 5), 8, 5)
    """
    t = as_matrices(W, "W")
    out_dtype = resolve_dtype(dtype)
    sigma = singular_values(t, device=resolve_device(device), dtype=out_dtype, method=method)
    dims = (*_batch_dims(W, t.ndim - 2), "index")
    coords = {"index": np.arange(sigma.shape[-1])}
    if isinstance(W, xr.DataArray):
        coords.update({d: W.coords[d].values for d in dims[:-1] if d in W.coords})
    return xr.DataArray(sigma.cpu().numpy(), dims=dims, coords=coords, name="singular_value",
                        attrs={"rows": int(t.shape[-2]), "cols": int(t.shape[-1]),
                               "precision": source_precision(t), "method": method})
