"""Attribute SAE features to attention heads and to source positions.

- Head attribution: feature ``i``'s decoder row split into the heads' blocks,
  ``h_{i,k} = ||d_{i,k}|| / sum_j ||d_{i,j}||``; rows sum to 1.
- Direct feature attribution (DFA): because ``z[dest, h] = sum_src A_h[dest, src] v_h[src]``
  is linear in the values, the encoder input ``z_cat[dest] . W_enc[:, i]`` splits
  exactly over source positions:
  ``DFA_i[dest, src] = sum_h A_h[dest, src] (v_h[src] . W_enc[h-block, i])``.

Examples
--------
>>> import torch
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> share = head_attribution(AttentionSAE(SAEConfig(d_in=8, d_sae=4, k=1)), n_heads=2)
>>> torch.allclose(torch.tensor(share.sum("head").values), torch.ones(4, dtype=torch.float64))
True
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import xarray as xr

from workbench.sae._validate import check_layer, check_positive_int, check_sae_matches_model
from workbench.sae.evaluation import _check_tokens, hook_z_name


def head_attribution(sae, n_heads: int) -> xr.DataArray:
    """Share of each feature's decoder norm written to each head's block: DataArray (feature, head).

    Examples
    --------
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> head_attribution(AttentionSAE(SAEConfig(d_in=8, d_sae=4, k=1)), 4).dims
    ('feature', 'head')
    """
    n_heads = check_positive_int("n_heads", n_heads)
    if sae.cfg.n_heads is not None and n_heads != sae.cfg.n_heads:
        raise ValueError(f"n_heads: the SAE's config says it reads {sae.cfg.n_heads} heads, got {n_heads}")
    if sae.cfg.d_in % n_heads:
        raise ValueError(f"n_heads: expected a divisor of d_in={sae.cfg.d_in}, got {n_heads}")
    W = sae.W_dec.detach().double().cpu().reshape(sae.cfg.d_sae, n_heads, -1)
    norms = W.norm(dim=-1)
    share = norms / norms.sum(-1, keepdim=True).clamp_min(1e-300)
    return xr.DataArray(share.numpy(), dims=("feature", "head"),
                        coords={"feature": np.arange(sae.cfg.d_sae), "head": np.arange(n_heads)},
                        name="head_attribution", attrs={"n_heads": n_heads})


def _check_features(sae, features) -> list[int]:
    """``features`` as a non-empty list of latent indices of ``sae``."""
    if isinstance(features, numbers.Integral):
        features = [features]
    features = list(np.asarray(features).reshape(-1)) if not isinstance(features, list) else features
    bad = [f for f in features
           if isinstance(f, bool) or not isinstance(f, numbers.Integral) or not 0 <= f < sae.cfg.d_sae]
    if not features or bad:
        raise ValueError(f"features: expected latent indices in [0, {sae.cfg.d_sae}), got {bad or features!r}")
    return [int(f) for f in features]


@torch.no_grad()
def dfa(sae, model, tokens: torch.Tensor, layer: int, features, *, batch_size: int = 8) -> xr.DataArray:
    """Direct feature attribution by source position: DataArray (feature, seq, dest, src).

    Summed over ``src`` it equals ``z_cat[dest] . W_enc[:, i]``, the feature's
    pre-activation without biases; ``attrs["bias"]`` holds the per-feature
    offset (``b_enc - b_dec . W_enc``) that completes it.

    Examples
    --------
    >>> from workbench.models import load_model, tokenize
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> out = dfa(AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=2)), model,
    ...           tokenize(model, ["x = 1"], seq_len=6), layer=1, features=[0, 3])
    >>> out.dims, out.shape
    (('feature', 'seq', 'dest', 'src'), (2, 1, 6, 6))
    """
    layer = check_layer(model, layer)
    check_sae_matches_model(sae, model, layer)
    tokens = _check_tokens(model, tokens)
    features = _check_features(sae, features)
    batch_size = check_positive_int("batch_size", batch_size)
    n_heads, d_head = model.cfg.n_heads, model.cfg.d_head
    W = sae.W_enc.detach()[:, features].reshape(n_heads, d_head, len(features))
    names = [f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.attn.hook_v"]
    parts = []
    for start in range(0, tokens.shape[0], batch_size):
        _, cache = model.run_with_cache(tokens[start:start + batch_size], names_filter=lambda n: n in names)
        pattern, v = cache[names[0]].to(W), cache[names[1]].to(W)
        if v.shape[2] != n_heads:  # grouped-query attention: each value head serves several query heads
            v = v.repeat_interleave(n_heads // v.shape[2], dim=2)
        per_source = torch.einsum("bshd,hdf->bshf", v, W)
        parts.append(torch.einsum("bhqs,bshf->fbqs", pattern, per_source).cpu())
    values = torch.cat(parts, dim=1).numpy()
    W_all = sae.W_enc.detach()[:, features]
    bias = sae.b_enc.detach()[features] - (sae.b_dec.detach() @ W_all if sae.cfg.apply_b_dec_to_input else 0)
    n_pos = tokens.shape[1]
    return xr.DataArray(values, dims=("feature", "seq", "dest", "src"),
                        coords={"feature": features, "seq": np.arange(tokens.shape[0]),
                                "dest": np.arange(n_pos), "src": np.arange(n_pos)},
                        name="dfa", attrs={"layer": layer, "hook_name": hook_z_name(layer),
                                           "bias": bias.cpu().numpy().tolist()})
