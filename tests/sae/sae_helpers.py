"""Small builders for SAE tests (SAELens keeps its equivalents in tests/helpers.py)."""

from __future__ import annotations

import torch

from workbench.sae import AttentionSAE, SAEConfig


def identity_sae(d_in: int) -> AttentionSAE:
    """A ReLU SAE that reconstructs exactly: latents ``relu(x)`` and ``relu(-x)``, decoder ``[I; -I]``."""
    sae = AttentionSAE(SAEConfig(d_in=d_in, d_sae=2 * d_in, architecture="standard"))
    W = torch.cat([torch.eye(d_in), -torch.eye(d_in)])
    with torch.no_grad():
        sae.W_enc.copy_(W.t())
        sae.W_dec.copy_(W)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def constant_sae(d_in: int, value: torch.Tensor | float = 0.0) -> AttentionSAE:
    """An SAE whose output is the constant ``value`` (zero decoder, ``b_dec = value``)."""
    sae = AttentionSAE(SAEConfig(d_in=d_in, d_sae=4, architecture="standard"))
    with torch.no_grad():
        sae.W_dec.zero_()
        sae.b_dec.copy_(torch.as_tensor(value, dtype=torch.float32).expand(d_in))
    return sae


def z_cat(model, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """The hook_z activations of ``layer`` flattened to [seq, pos, n_heads * d_head]."""
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == name)
    z = cache[name]
    return z.reshape(*z.shape[:2], -1)


def best_cosines(sae: AttentionSAE, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each planted direction: the largest cosine with a decoder row, and that row."""
    W = sae.W_dec.detach()
    cos = directions @ (W / W.norm(dim=1, keepdim=True)).t()
    best = cos.max(dim=1)
    return best.values, best.indices
