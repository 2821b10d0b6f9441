"""Standard SAE, as in Kissane et al. 2024: ReLU latents, L1 penalty, unit-norm decoder rows.

Loss ``sum_d (x_hat - x)^2 + l1_coefficient * ||f||_1`` (mean over the batch).
After every step the decoder rows are renormalised to unit length, and
before it the gradient component parallel to each row is removed, so Adam
does not spend its steps fighting the constraint. Dead latents are
resampled from badly reconstructed inputs (Bricken et al. 2023).

Examples
--------
>>> import torch
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> sae = AttentionSAE(SAEConfig(d_in=4, d_sae=8, architecture="standard", l1_coefficient=1.0))
>>> torch.allclose(sae.W_dec.norm(dim=1), torch.ones(8))
True
"""

from __future__ import annotations

import torch

from workbench.sae._sparse_relu import relu_autoencode
from workbench.sae.registry import TrainingStep, UnitNormDecoder, register
from workbench.sae.topk import centred

#: Encoder norm of a resampled latent, relative to the mean norm of the live ones.
RESAMPLE_ENCODER_SCALE = 0.2


@register("standard")
class Standard(UnitNormDecoder):
    """ReLU + L1 with unit-norm decoder rows and dead-latent resampling."""

    @classmethod
    def activate(cls, sae, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu()

    @classmethod
    def training_loss(cls, sae, x: torch.Tensor, dead: torch.Tensor) -> TrainingStep:
        # sparse decoder and backward once few latents fire (see workbench.sae._sparse_relu)
        out, l1_sum, fired, l0 = relu_autoencode(centred(sae, x), sae.W_enc, sae.b_enc, sae.W_dec)
        x_hat = out + sae.b_dec
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = l1_sum / x.shape[0]  # f >= 0, so the L1 norm is the sum
        coefficient = sae.cfg.l1_coefficient if sae.cfg.l1_coefficient is not None else 1.0
        return TrainingStep(loss=mse + coefficient * l1, x_hat=x_hat, fired=fired, l0=l0,
                            terms={"mse": mse, "l1": l1})

    @classmethod
    @torch.no_grad()
    def resample(cls, sae, dead: torch.Tensor, x: torch.Tensor, optimizer, generator) -> int:
        dead_idx = dead.nonzero().squeeze(1)
        if dead_idx.numel() == 0:
            return 0
        x_in = centred(sae, x)
        x_hat = (x_in @ sae.W_enc + sae.b_enc).relu() @ sae.W_dec + sae.b_dec
        loss = (x_hat - x).pow(2).sum(-1)
        # Inputs drawn with probability ~ loss^2: new latents aim at what is reconstructed worst.
        weights = loss.pow(2).cpu().double() + 1e-12
        picks = torch.multinomial(weights, dead_idx.numel(), replacement=True, generator=generator).to(x.device)
        directions = x_in[picks]
        directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
        alive = ~dead
        enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else torch.tensor(1.0)
        sae.W_dec.data[dead_idx] = directions
        sae.W_enc.data[:, dead_idx] = directions.t() * enc_norm * RESAMPLE_ENCODER_SCALE
        sae.b_enc.data[dead_idx] = 0.0
        _reset_adam_rows(optimizer, sae, dead_idx)
        return int(dead_idx.numel())


def _reset_adam_rows(optimizer, sae, idx: torch.Tensor) -> None:
    """Zero Adam's moments of the resampled latents so stale momentum does not undo the reset."""
    for param, dim in ((sae.W_dec, 0), (sae.W_enc, 1), (sae.b_enc, 0)):
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].index_fill_(dim, idx, 0.0)
