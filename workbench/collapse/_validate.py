"""Input checks and conversions shared by the collapse modules.

Every public entry point converts its inputs here once, so the error messages
(argument name, what was expected, what was received) read the same everywhere.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
import xarray as xr

from workbench.memory import check_fits


def _raw(x: Any) -> Any:
    if isinstance(x, (xr.DataArray, xr.Variable)):
        return x.values
    return x


def as_features(features: Any, device: torch.device, *, name: str = "features",
                dtype: torch.dtype | None = torch.float64, check_finite: bool = True) -> torch.Tensor:
    """A (sample, dim) tensor on ``device``, checked finite unless the caller checks later.

    ``dtype=None`` keeps a floating input's precision (integers become float64).
    """
    x = _raw(features)
    if isinstance(x, np.ndarray) or isinstance(x, (list, tuple)):
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"{name}: expected a real-valued array, got dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a numpy array, torch tensor or xarray.DataArray, "
                        f"got {type(features).__name__}")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name}: expected a real-valued array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (sample, dim), got shape {tuple(x.shape)}")
    if dtype is None:
        dtype = x.dtype if x.is_floating_point() else torch.float64
    x = x.to(device=device, dtype=dtype)
    if check_finite and not bool(torch.isfinite(x).all()):
        raise_non_finite(x, name)
    return x


class NonFiniteError(ValueError):
    """NaN or inf in the features (a ``ValueError``)."""


def raise_non_finite(x: torch.Tensor, name: str = "features") -> None:
    """Raise the error for NaN or inf in ``x``, naming the first offending rows."""
    bad = torch.nonzero(~torch.isfinite(x).all(dim=1)).flatten()[:5].tolist()
    if not bad:  # every value is finite, but a float64 sum of them is not
        raise NonFiniteError(f"{name}: expected values whose sums fit in float64, got finite values so large that "
                             f"the class sums overflow (largest magnitude {float(x.abs().max()):.3g})")
    raise NonFiniteError(f"{name}: expected finite values, got NaN or inf in rows {bad} (first few shown)")


@contextmanager
def rows_numbered_in(x: torch.Tensor, name: str = "features") -> Iterator[None]:
    """Report NaN or inf found in any block of ``x`` with the row numbers of ``x`` itself."""
    try:
        yield
    except NonFiniteError:
        raise_non_finite(x, name)


def as_labels(labels: Any, n_samples: int, n_classes: int | None, device: torch.device) -> torch.Tensor:
    """Integer class labels in ``[0, n_classes)`` as an int64 tensor, one per sample."""
    y = _raw(labels)
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels: expected a 1-D array of class indices, got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(f"labels: expected one label per feature row ({n_samples}), got {y.shape[0]}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels: expected integer class indices, got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"labels: expected class indices >= 0, got {int(y.min())}")
    if n_classes is not None and y.size and y.max() >= n_classes:
        raise ValueError(f"labels: expected class indices < n_classes={n_classes}, got {int(y.max())}")
    return torch.from_numpy(y.astype(np.int64)).to(device)


def check_problem_size(n_classes: int, dim: int) -> None:
    """Neural collapse needs two classes and ``dim >= n_classes - 1`` (Sigma_B has rank K-1)."""
    if not isinstance(n_classes, (int, np.integer)) or isinstance(n_classes, bool):
        raise TypeError(f"n_classes: expected an int, got {type(n_classes).__name__}")
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"dim: expected an int, got {type(dim).__name__}")
    if n_classes < 2:
        raise ValueError(f"n_classes: expected at least 2 classes, got {n_classes}")
    if dim < n_classes - 1:
        raise ValueError(
            f"dim: expected a feature dimension >= n_classes - 1 = {n_classes - 1} "
            f"(the between-class covariance has rank K-1), got {dim}"
        )


def as_classifier(W: Any, b: Any, n_classes: int, dim: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``W`` as float64 (class, dim) and ``b`` as float64 (class,), or ``None``."""
    if W is None:
        if b is not None:
            raise ValueError("b: a bias was given without a classifier W")
        return None, None
    w = _raw(W)
    w = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
    if w.shape != (n_classes, dim):
        raise ValueError(f"W: expected shape (n_classes, dim) = ({n_classes}, {dim}), got {w.shape}")
    w = w.astype(np.float64)
    if not np.isfinite(w).all():
        raise ValueError("W: expected finite values, got NaN or inf")
    if b is None:
        return w, np.zeros(n_classes)
    bb = _raw(b)
    bb = bb.detach().cpu().numpy() if isinstance(bb, torch.Tensor) else np.asarray(bb)
    if bb.shape != (n_classes,):
        raise ValueError(f"b: expected shape (n_classes,) = ({n_classes},), got {bb.shape}")
    return w, bb.astype(np.float64)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


def check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a positive number, got {type(value).__name__}")
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


def check_count(name: str, value: Any) -> int:
    """A number of things (steps, epochs, a batch size): an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return int(value)


def check_counts(n_per_class: Any) -> np.ndarray:
    """Per-class sample counts: a sequence of at least two positive integers (integral floats accepted)."""
    n = np.asarray(_raw(n_per_class))
    if n.ndim != 1 or n.size < 2:
        raise ValueError(f"n_per_class: expected a 1-D sequence of >= 2 class counts, got shape {n.shape}")
    if np.issubdtype(n.dtype, np.floating):
        if not np.isfinite(n).all() or (n != np.round(n)).any():
            raise TypeError(f"n_per_class: expected integer counts (integral floats such as 300.0 are accepted), "
                            f"got {n.tolist()}")
    elif np.issubdtype(n.dtype, np.bool_) or not np.issubdtype(n.dtype, np.integer):
        raise TypeError(f"n_per_class: expected integer counts, got dtype {n.dtype}")
    if (n < 1).any():
        raise ValueError(f"n_per_class: expected counts >= 1, got {n.tolist()}")
    if n.max() > np.iinfo(np.int64).max:
        raise ValueError(f"n_per_class: expected counts that fit in int64, got {n.tolist()}")
    return n.astype(np.int64)


def check_dense_size(name: str, arrays: dict[str, tuple[int, ...]], itemsize: int = 8) -> None:
    """Refuse, with the size, dense float arrays that together would not fit in the memory available now."""
    parts = ", ".join(f"{what} {' x '.join(str(s) for s in shape)}" for what, shape in arrays.items())
    check_fits(n_elements=sum(int(np.prod(np.asarray(shape, dtype=np.float64))) for shape in arrays.values()),
               itemsize=itemsize, argument=name, what=f"the dense output ({parts}, float{8 * itemsize})")


def check_depth(depth: Any) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)):
        raise TypeError(f"depth: expected an int >= 1, got {type(depth).__name__}")
    if depth < 1:
        raise ValueError(f"depth: expected an int >= 1, got {depth}")
    return int(depth)
