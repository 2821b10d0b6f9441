"""Spectra of activations: how many directions a layer's outputs actually use.

For a hook's activations ``x`` (every token position a sample, every axis
after ``pos`` a feature) the centred covariance has eigenvalues ``mu_1 >= ...``;

* participation ratio ``PR = (sum mu)^2 / sum mu^2`` (between 1 and the width;
  ``d`` for isotropic activations, 1 for a single direction);
* effective rank ``exp(-sum p ln p)`` with ``p_i = sqrt(mu_i) / sum sqrt(mu)``,
  the Roy-Vetterli rank of the centred activation matrix (same convention as
  :func:`rank_metrics` on weights).

Activations come from :class:`workbench.hooks.HookCache` (computed once,
reopened lazily) and the covariance is accumulated chunk by chunk along
``seq``, so caches larger than memory work.

Examples
--------
>>> import numpy as np
>>> participation_ratio(np.array([1.0, 1.0, 1.0, 1.0]))
4.0
"""

from __future__ import annotations

import warnings

from typing import Any

import numpy as np
import torch
import xarray as xr

from workbench.spectra._validate import resolve_device


def participation_ratio(eigenvalues: np.ndarray) -> float:
    """``(sum mu)^2 / sum mu^2`` of covariance eigenvalues ``mu``.

    Negative eigenvalues (round-off of a PSD matrix) count as 0. NaN or inf
    is refused; all zero (constant activations) has no participation ratio:
    NaN, with a warning.

    Examples
    --------
    >>> participation_ratio(np.array([3.0, 0.0, 0.0]))
    1.0
    """
    mu = np.asarray(eigenvalues, dtype=np.float64)
    if not np.isfinite(mu).all():
        raise ValueError(f"eigenvalues: expected finite values, got {int((~np.isfinite(mu)).sum())} NaN or inf "
                         f"of {mu.size}")
    mu = np.clip(mu, 0.0, None)
    if not mu.any():
        warnings.warn("participation_ratio: every eigenvalue is 0 (constant activations); returning NaN",
                      RuntimeWarning, stacklevel=2)
        return float("nan")
    return float(mu.sum() ** 2 / (mu ** 2).sum())


def _effective_rank(mu: np.ndarray) -> float:
    s = np.sqrt(np.clip(mu, 0.0, None))
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum())) if p.size else float("nan")


def covariance_eigenvalues(activations: xr.DataArray, *, device: str | torch.device | None = None) -> np.ndarray:
    """Eigenvalues (descending) of the centred covariance of a hook's activations.

    ``activations`` has ``seq`` first and ``pos`` second; every later axis is
    a feature. Chunks along ``seq`` are loaded one at a time.

    Examples
    --------
    >>> x = xr.DataArray(np.random.default_rng(0).standard_normal((50, 20, 3)), dims=("seq", "pos", "d_model"))
    >>> covariance_eigenvalues(x, device="cpu").shape
    (3,)
    """
    dev = resolve_device(device)
    n_feat = int(np.prod(activations.shape[2:]))
    gram = torch.zeros(n_feat, n_feat, dtype=torch.float64, device=dev)
    total = torch.zeros(n_feat, dtype=torch.float64, device=dev)
    chunks = activations.chunks[0] if activations.chunks else (activations.shape[0],)
    start, n = 0, 0
    for size in chunks:
        block = np.asarray(activations.isel(seq=slice(start, start + size)).values)
        x = torch.from_numpy(block.reshape(-1, n_feat)).to(dev, torch.float64)
        gram += x.T @ x
        total += x.sum(0)
        n += x.shape[0]
        start += size
    mean = total / n
    cov = (gram - n * torch.outer(mean, mean)) / max(n - 1, 1)
    return torch.linalg.eigvalsh(cov).flip(0).clamp_min(0.0).cpu().numpy()


def default_hooks(model) -> list[str]:
    """Residual stream after every block, and the MLP hidden activations where there is an MLP."""
    hooks = []
    for layer in range(model.cfg.n_layers):
        hooks.append(f"blocks.{layer}.hook_resid_post")
        mlp_hook = f"blocks.{layer}.mlp.hook_post"
        if not getattr(model.cfg, "attn_only", False) and mlp_hook in model.hook_dict:
            hooks.append(mlp_hook)
    return hooks


def activation_spectra(model, tokens: torch.Tensor, *, hooks: list[str] | None = None, cache: Any = None,
                       device: str | torch.device | None = None, progress: bool = True) -> xr.Dataset:
    """Covariance spectra, participation ratio and effective rank of hook activations.

    Parameters
    ----------
    model : TransformerBridge
    tokens : torch.LongTensor [seq, pos]
    hooks : list of str, optional
        Default :func:`default_hooks`.
    cache : workbench.hooks.HookCache, optional
        Default ``HookCache()`` (the user cache folder).
    device : str or torch.device, optional
    progress : bool

    Returns
    -------
    xarray.Dataset
        ``activation_eigenvalue`` (hook, component; NaN-padded), the
        covariance eigenvalues in principal-component order,
        ``participation_ratio`` (hook) and ``activation_effective_rank`` (hook).

    Examples
    --------
    >>> import tempfile
    >>> from workbench.hooks import HookCache
    >>> from workbench.models import load_model, tokenize
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> tokens = tokenize(model, ["def f(x):", "import os"], seq_len=16)
    >>> ds = activation_spectra(model, tokens, cache=HookCache(tempfile.mkdtemp()), progress=False)
    >>> ds.hook.values.tolist(), ds.participation_ratio.dims
    (['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post'], ('hook',))
    """
    from workbench.hooks import HookCache

    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        raise ValueError(f"tokens: expected a LongTensor [seq, pos], got {type(tokens).__name__} "
                         f"{tuple(getattr(tokens, 'shape', ()))}")
    hooks = default_hooks(model) if hooks is None else list(hooks)
    cache = cache if cache is not None else HookCache()
    ds = cache.activations(model, tokens, hooks, progress=progress)
    spectra = [covariance_eigenvalues(ds[h], device=device) for h in hooks]
    width = max(s.size for s in spectra)
    padded = np.full((len(hooks), width), np.nan)
    for i, s in enumerate(spectra):
        padded[i, : s.size] = s
    coords = {"hook": hooks, "component": np.arange(width)}
    return xr.Dataset(
        {"activation_eigenvalue": (("hook", "component"), padded),
         "participation_ratio": ("hook", [participation_ratio(s) for s in spectra]),
         "activation_effective_rank": ("hook", [_effective_rank(s) for s in spectra])},
        coords=coords, attrs={"n_samples": int(tokens.numel())})
