"""TopK SAE (Gao et al. 2024): keep the ``k`` largest pre-activations per token.

Sparsity is set by ``k``, not a penalty; dead latents are revived by the AuxK
loss, which asks the ``k_aux`` largest *dead* latents to reconstruct the
residual ``x - x_hat``. Training runs the sparse kernel of
:mod:`workbench.sae._sparse_topk`.

Examples
--------
>>> import torch
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> sae = AttentionSAE(SAEConfig(d_in=8, d_sae=16, architecture="topk", k=2))
>>> int((sae.encode(torch.randn(3, 8)) != 0).sum(-1).max()) <= 2
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.sae._sparse_topk import topk_autoencode
from workbench.sae.registry import Architecture, TrainingStep, register


def check_k(cfg) -> None:
    """``cfg.k`` must be an int in [1, d_sae] for the TopK family."""
    if isinstance(cfg.k, bool) or not isinstance(cfg.k, int) or not 1 <= cfg.k <= cfg.d_sae:
        raise ValueError(f"k: architecture {cfg.architecture!r} needs an int in [1, d_sae={cfg.d_sae}], got {cfg.k!r}")


def centred(sae, x: torch.Tensor) -> torch.Tensor:
    """``x - b_dec`` when the config asks for it, else ``x``."""
    return x - sae.b_dec if sae.cfg.apply_b_dec_to_input else x


def auxk_loss(sae, x_in: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
    """AuxK: squared error of the top ``k_aux`` dead latents' reconstruction of ``residual``.

    Scaled by ``min(n_dead / k_aux, 1)`` so a handful of dead latents does
    not dominate the loss. Only the dead columns of ``W_enc`` are multiplied.
    """
    dead_idx = dead.nonzero().squeeze(1)
    n_dead = dead_idx.numel()
    if n_dead == 0:
        return residual.new_zeros(())
    k_aux = min(sae.cfg.k_aux, n_dead)
    pre = torch.addmm(sae.b_enc[dead_idx], x_in, sae.W_enc[:, dead_idx])
    vals, idx = pre.topk(k_aux, dim=1, sorted=False)
    recon = F.embedding_bag(idx, sae.W_dec[dead_idx], per_sample_weights=vals.relu(), mode="sum")
    scale = min(n_dead / sae.cfg.k_aux, 1.0)
    return scale * (recon - residual).pow(2).sum(-1).mean()


@register("topk")
class TopK(Architecture):
    """ReLU then keep the top ``k`` per token; MSE + AuxK loss."""

    @classmethod
    def check_config(cls, cfg) -> None:
        check_k(cfg)

    @classmethod
    def activate(cls, sae, pre: torch.Tensor) -> torch.Tensor:
        vals, idx = pre.topk(sae.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())

    @classmethod
    def training_loss(cls, sae, x: torch.Tensor, dead: torch.Tensor) -> TrainingStep:
        x_in = centred(sae, x)
        out, vals, idx = topk_autoencode(x_in, sae.W_enc, sae.b_enc, sae.W_dec, sae.cfg.k)
        x_hat = out + sae.b_dec
        mse = (x_hat - x).pow(2).sum(-1).mean()
        aux = auxk_loss(sae, x_in, (x - x_hat).detach(), dead)
        active = vals > 0
        fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=x.device)
        fired[idx[active]] = True
        return TrainingStep(loss=mse + sae.cfg.aux_coefficient * aux, x_hat=x_hat, fired=fired,
                            l0=active.sum(-1).float().mean(), terms={"mse": mse, "aux": aux})
