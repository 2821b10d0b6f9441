"""Input checks shared by the spectra modules.

Every public entry point converts its matrices here, so the errors (argument
name, what was expected, what was received) read the same everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.device import resolve_device  # noqa: F401  (re-exported for the spectra modules)

#: Dtypes that are widened to float32 before any linear algebra: LAPACK has no
#: half-precision kernels, and their rounding would swamp small singular values.
_UPCAST = (torch.float16, torch.bfloat16)


def resolve_dtype(dtype: Any, name: str = "dtype") -> torch.dtype | None:
    """``None``, ``"float32"``/``"float64"`` or the matching torch/numpy dtype as a torch dtype."""
    if dtype is None:
        return None
    table = {"float32": torch.float32, "float64": torch.float64}
    key = dtype if isinstance(dtype, str) else str(dtype).replace("torch.", "")
    if key not in table:
        raise ValueError(f"{name}: expected None, 'float32' or 'float64', got {dtype!r}")
    return table[key]


def as_tensor(x: Any, name: str = "W") -> torch.Tensor:
    """``x`` (numpy, torch, xarray, nested lists) as a real floating tensor, not yet moved or cast.

    Half precision is widened to float32; integers become float64 (exact below
    2**53). Complex, boolean and object inputs raise ``TypeError``.
    """
    raw = x.values if isinstance(x, (xr.DataArray, xr.Variable)) else x
    if isinstance(raw, (list, tuple)):
        raw = np.asarray(raw)
    if isinstance(raw, np.ndarray):
        if np.iscomplexobj(raw) or not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
            raise TypeError(f"{name}: expected a real floating array, got dtype {raw.dtype}")
        raw = torch.from_numpy(np.ascontiguousarray(raw))
    if not isinstance(raw, torch.Tensor):
        raise TypeError(f"{name}: expected a numpy array, torch tensor or xarray.DataArray, got {type(x).__name__}")
    raw = raw.detach()
    if raw.is_complex() or raw.dtype == torch.bool:
        raise TypeError(f"{name}: expected a real floating array, got dtype {raw.dtype}")
    if raw.dtype in _UPCAST:
        return raw.float()
    if not raw.is_floating_point():
        return raw.double()
    return raw


def as_matrices(x: Any, name: str = "W") -> torch.Tensor:
    """A matrix ``[m, n]`` or a stack ``[..., m, n]``: finite, non-empty, real."""
    t = as_tensor(x, name)
    if t.ndim < 2:
        raise ValueError(f"{name}: expected a matrix [m, n] or a stack [..., m, n], got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty matrix, got shape {tuple(t.shape)}")
    check_finite(t, name)
    return t


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` when ``t`` holds NaN or inf."""
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN or inf entries in shape {tuple(t.shape)}")


def source_precision(t: torch.Tensor) -> str:
    """Name of the floating precision the data were stored in, for numerical-rank tolerances."""
    return "float64" if t.dtype == torch.float64 else "float32"


def check_int(value: Any, name: str, *, low: int = 1) -> int:
    """``value`` as an int >= ``low``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else ``ValueError``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value
