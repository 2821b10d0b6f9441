"""Checks of what a caller hands to the hook cache, with messages that say what was expected.

Examples
--------
>>> import torch
>>> check_batch_size(8)
8
"""

from __future__ import annotations

import difflib

import numpy as np
import torch

STORE_DTYPES = ("float32", "float16")


def check_hooks(model, hooks) -> list[str]:
    """Hook names as a sorted, de-duplicated list; unknown names raise with close matches."""
    if isinstance(hooks, str):
        hooks = [hooks]
    if not isinstance(hooks, (list, tuple, set)) or not hooks:
        raise ValueError(f"hooks: expected a hook name or a non-empty list of hook names, got {hooks!r}")
    valid = set(model.hook_dict)
    out = []
    for hook in hooks:
        if not isinstance(hook, str):
            raise ValueError(f"hooks: expected strings, got {hook!r} ({type(hook).__name__})")
        if hook not in valid:
            close = difflib.get_close_matches(hook, sorted(valid), n=5, cutoff=0.6)
            hint = f"; close valid names: {close}" if close else f"; e.g. {sorted(valid)[:5]}"
            raise ValueError(f"hooks: {hook!r} is not a hook of this model{hint}")
        out.append(hook)
    return sorted(set(out))


def check_tokens(model, tokens, name: str = "tokens") -> torch.Tensor:
    """``tokens`` as a 2-D long tensor ``[seq, pos]`` of valid ids on the model's device; errors name ``name``."""
    device = next(model.parameters()).device
    if isinstance(tokens, np.ndarray):
        tokens = torch.from_numpy(tokens)
    if not isinstance(tokens, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.LongTensor [seq, pos], got {type(tokens).__name__}")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer token ids, got dtype {tokens.dtype}")
    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D tensor [seq, pos], got shape {tuple(tokens.shape)}")
    if tokens.device != device:
        raise ValueError(f"{name}: on {tokens.device} but the model is on {device}; move one of them")
    n_ctx = model.cfg.n_ctx
    if tokens.shape[1] > n_ctx:
        raise ValueError(f"{name}: {tokens.shape[1]} positions exceed the model's context n_ctx={n_ctx}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= model.cfg.d_vocab:
        raise ValueError(f"{name}: ids must lie in [0, {model.cfg.d_vocab}), got values in [{low}, {high}]")
    return tokens.long()


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    return int(batch_size)


def check_dtype(dtype: str) -> str:
    if dtype not in STORE_DTYPES:
        raise ValueError(f"dtype: expected one of {STORE_DTYPES} (zarr has no bfloat16), got {dtype!r}")
    return dtype
