"""Boundary checks shared by the SAE functions; messages name argument, expectation and value.

Examples
--------
>>> check_positive_int("k", 4)
4
"""

from __future__ import annotations

import math
import numbers
import re
from pathlib import Path

import torch

from workbench.device import resolve_device


def check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def check_positive_float(name: str, value) -> float:
    """``value`` as a float > 0, else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def check_device(device) -> torch.device:
    """A usable ``torch.device`` from ``device`` (``None``: CUDA when present, else CPU)."""
    return resolve_device(device)


def check_folder(name: str, path) -> Path:
    """``path`` as a ``Path`` that is a folder or does not exist yet (so files can be written into it)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{name}: expected a folder, got the existing file {folder}")
    return folder


def check_activations(name: str, x, d_in: int) -> torch.Tensor:
    """``x`` as a finite floating tensor ``[..., d_in]``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor [..., {d_in}], got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if x.ndim == 0 or x.shape[-1] != d_in:
        raise ValueError(f"{name}: expected last dim d_in={d_in}, got shape {tuple(x.shape)}")
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf entries")
    return x


def check_layer(model, layer) -> int:
    """``layer`` as an int in ``[0, n_layers)`` of ``model``."""
    n_layers = model.cfg.n_layers
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not 0 <= layer < n_layers:
        raise ValueError(f"layer: expected an int in [0, {n_layers}) for this model, got {layer!r}")
    return int(layer)


def check_sae_matches_model(sae, model, layer: int) -> None:
    """The SAE reads ``blocks.{layer}.attn.hook_z`` of ``model``: its d_in must be n_heads * d_head.

    Where the SAE's config records them, its head count and its hook_z layer must be the model's too.
    """
    d_z = model.cfg.n_heads * model.cfg.d_head
    if sae.cfg.d_in != d_z:
        raise ValueError(f"sae: expected d_in = n_heads * d_head = {d_z} for layer {layer}'s hook_z, "
                         f"got d_in={sae.cfg.d_in}")
    if sae.cfg.n_heads is not None and sae.cfg.n_heads != model.cfg.n_heads:
        raise ValueError(f"sae: expected n_heads={model.cfg.n_heads} (heads of {model.cfg.d_head}) as in the model, "
                         f"got n_heads={sae.cfg.n_heads} in its config")
    trained_at = re.fullmatch(r"blocks\.(\d+)\.attn\.hook_z", sae.cfg.hook_name or "")
    if trained_at and int(trained_at.group(1)) != layer:
        raise ValueError(f"sae: it reads {sae.cfg.hook_name!r} (cfg.hook_name), not layer {layer}'s hook_z; pass "
                         f"layer={trained_at.group(1)}, or clear the config's hook_name to apply it elsewhere")


def check_trainable_dtype(dtype: str) -> str:
    """Adam cannot train float16 weights: its second moments and eps (1e-8) underflow and the step divides by 0.

    Examples
    --------
    >>> check_trainable_dtype("bfloat16")
    'bfloat16'
    """
    if dtype == "float16":
        raise ValueError("dtype: expected float32, float64 or bfloat16 to train in, got 'float16' (Adam's second "
                         "moments and eps underflow in float16 and the weights turn to NaN at the first step); "
                         "train in bfloat16 or float32 and cast the SAE afterwards")
    return dtype


def check_finite_float(name: str, value) -> float:
    """``value`` as a finite float (any sign), else ``ValueError`` naming ``name``.

    Examples
    --------
    >>> check_finite_float("scale", -2)
    -2.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def check_indices(name: str, value, size: int, *, what: str, negative: bool = False) -> list[int]:
    """``value`` (an int or a non-empty sequence of ints) as a list of distinct indices in ``[0, size)``.

    With ``negative``, ``-size <= i < 0`` count from the end (as in Python) and are returned as ``i + size``.

    Examples
    --------
    >>> check_indices("features", 3, 8, what="a feature of the SAE")
    [3]
    >>> check_indices("positions", [0, -1], 5, what="a prompt position", negative=True)
    [0, 4]
    """
    items = [value] if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    if isinstance(items, torch.Tensor):
        items = items.tolist()
    low = -size if negative else 0
    try:
        items = list(items)
    except TypeError:
        raise ValueError(f"{name}: expected an int or a list of ints, got {value!r}") from None
    if not items:
        raise ValueError(f"{name}: expected at least one index, got an empty {type(value).__name__}")
    for i in items:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not low <= i < size:
            raise ValueError(f"{name}: expected ints in [{low}, {size}) ({what}), got {i!r}")
    out = [int(i) % size for i in items]
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: expected distinct indices, got {value!r}")
    return out
