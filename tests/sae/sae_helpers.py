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


def logit_writer_sae(model, layer: int, feature: int, token: int, d_sae: int = 8) -> AttentionSAE:
    """A ReLU SAE on ``blocks.{layer}.attn.hook_z`` whose decoder row ``feature`` (unit norm) writes, through
    ``W_O`` and the unembedding, a logit direction whose largest entry is ``token``.

    The residual direction ``u`` is the least-squares solution of ``u W_U = e_token`` with its mean removed
    (the final LayerNorm removes it anyway); the row solves ``row W_O = u`` (``W_O`` of every head stacked).
    """
    W_O = model.W_O[layer].detach().double()  # [head, d_head, d_model]
    W_U = model.W_U.detach().double()  # [d_model, d_vocab]
    target = torch.zeros(W_U.shape[1], dtype=torch.float64)
    target[token] = 1.0
    u = torch.linalg.lstsq(W_U.T, target[:, None]).solution[:, 0]
    u = u - u.mean()
    row = torch.linalg.lstsq(W_O.reshape(-1, W_O.shape[-1]).T, u[:, None]).solution[:, 0]
    logits = torch.einsum("hd,hdm->m", row.reshape(W_O.shape[:2]), W_O) @ W_U
    assert int(logits.argmax()) == token, "the planted direction does not favour the token"
    sae = AttentionSAE(SAEConfig(d_in=W_O.shape[0] * W_O.shape[1], d_sae=d_sae, architecture="standard"))
    with torch.no_grad():
        sae.W_dec[feature] = (row / row.norm()).float()
    return sae
