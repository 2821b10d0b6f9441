"""BatchTopK SAE (Bussmann et al. 2024): keep the ``k * batch`` largest latents of the whole batch.

Tokens that need more latents get more, at the same mean L0. As in TopK,
latents are ranked by ``pre * ||W_dec[i]||`` (what each adds to ``x_hat``).
At inference a batch is not available, so latents fire where that exceeds one
global ``threshold``: during training a running average of the smallest
ranking value kept per batch; after the last step it is re-estimated with
the final weights on :data:`CALIBRATION_BATCHES` further batches (the running
average lags the weights: on a planted dictionary with k = 8 it gave an
inference L0 of 58 after 50 steps, 31 after 100 and 9.0 after 300). It is saved as a per-latent ``threshold`` tensor,
the JumpReLU layout SAELens also uses; :func:`~workbench.sae.train` folds the
decoder norms in at the end, so the saved SAE compares ``pre`` itself.

The decoder rows are kept at unit norm in training (the gradient along each
row removed, the rows renormalised after each step), as the authors'
reference implementation trains BatchTopK. Free rows collapse: the batch-level
choice hands the slots to the largest ``pre * ||W_dec[i]||`` of the batch, the
few latents that win the first steps grow their rows, win more slots and
starve the rest. On layer 1 of the bundled ``tiny-attn-2l`` at k = 4 (100k
tokens) the winners' rows grew from 0.13 to 0.66 while the others stayed at
0.13, 45 latents shared a batch's 2,048 slots and 96% of the latents fired
on no training token; with unit rows 26% did (dead_window 20k tokens), and
after 400k tokens 3.4% (``benchmarks/results/dead_latents.json``).
That data has a second reason for a small live set on natural text: its
repeated random sequences (18% of the tokens) have 2.4 times the norm of
natural text (7.9 vs 3.3) and take 53% of the batch's slots, 12 latents a
token, leaving natural text 2.3 (100k tokens, k = 4); a BatchTopK SAE at
k = 4 then has an inference L0 of 2.0 on held-out natural text and 69% of
its latents fire on none of it. AuxK cannot help: a latent that serves the
repeated sequences fires in training and is never counted dead.

``cfg.max_latents_per_token`` caps any token's share of the batch's slots
(and its latents at inference, after the threshold): at ``2 * k`` the
repeated sequences took 33% of the slots, held-out natural text an L0 of
2.9, 47% dead, FVU 0.386 instead of 0.443 (same run); over 400k tokens 35%
dead and FVU 0.340 instead of 60% and 0.397 at k = 4, FVU 0.185 instead
of 0.224 at k = 16, with the inference L0 on the training mix within 1% of
k. Most of what stays dead is sampling: a latent firing on a fraction p of
natural text misses 8k held-out tokens with probability (1 - p)^8192, and
the rates on the training text predict 29% of 35% (TopK at k = 4: 15% of
20%, 100k tokens). The cap is off by
default (the paper's BatchTopK) and not part of SAELens' ``jumprelu``
layout: SAELens loads the SAE without it, which changes only the tokens the
cap bound (here the repeated sequences).

Examples
--------
>>> import torch
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> sae = AttentionSAE(SAEConfig(d_in=8, d_sae=16, architecture="batchtopk", k=2))
>>> sae.threshold.shape
torch.Size([16])
"""

from __future__ import annotations

import torch

from workbench.sae.registry import TrainingStep, UnitNormDecoder, register
from workbench.sae.topk import INIT_NORM, auxk_loss, centred, check_k, decoder_norms, ranking

#: Weight of the newest batch in the running threshold.
THRESHOLD_MOMENTUM = 0.01
#: Batches after the last step on which the inference threshold is estimated with the final weights.
CALIBRATION_BATCHES = 8


def cap_per_token(key: torch.Tensor, cap: int | None) -> torch.Tensor:
    """``key`` [batch, d_sae] with all but each row's ``cap`` largest entries set to 0 (``None``: unchanged).

    Examples
    --------
    >>> cap_per_token(torch.tensor([[3.0, 1.0, 2.0], [1.0, 5.0, 4.0]]), 2).tolist()
    [[3.0, 0.0, 2.0], [0.0, 5.0, 4.0]]
    """
    if cap is None or cap >= key.shape[-1]:
        return key
    vals, idx = key.topk(cap, dim=-1, sorted=False)
    return torch.zeros_like(key).scatter_(-1, idx, vals)


def _batch_topk(sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_in, acts, kept ranking values, their flat indices)``: the ``k * batch`` largest of the batch
    (each token's ``max_latents_per_token`` largest at most)."""
    x_in = centred(sae, x)
    acts = (x_in @ sae.W_enc + sae.b_enc).relu()
    ranking = cap_per_token(acts.detach() * decoder_norms(sae), sae.cfg.max_latents_per_token).flatten()
    vals, idx = ranking.topk(min(sae.cfg.k * x.shape[0], ranking.numel()), sorted=False)
    return x_in, acts, vals, idx


@register("batchtopk")
class BatchTopK(UnitNormDecoder):
    """Batch-level TopK in training, a learned global threshold at inference; unit-norm decoder rows."""

    extra_tensors = ("threshold",)
    #: SAELens saves a trained BatchTopK SAE as this architecture (its threshold per latent).
    saelens_architecture = "jumprelu"
    #: Latents are ranked by ``pre * ||W_dec[i]||``; :func:`~workbench.sae.train` folds the norms in at the end.
    ranks_by_decoder_norm = True
    #: Encoder columns start along the (unit) decoder rows with TopK's norm.
    encoder_init_norm = INIT_NORM
    #: Latents are chosen over the whole batch (``cfg.max_latents_per_token`` may cap a token's share).
    batch_level = True

    @classmethod
    def check_config(cls, cfg) -> None:
        check_k(cfg)
        cap = cfg.max_latents_per_token
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or not cfg.k <= cap <= cfg.d_sae):
            raise ValueError(f"max_latents_per_token: expected None or an int in [k={cfg.k}, d_sae={cfg.d_sae}], "
                             f"got {cap!r}")

    @classmethod
    def init_extra(cls, sae) -> None:
        sae.register_buffer("threshold", torch.zeros(sae.cfg.d_sae))

    @classmethod
    def activate(cls, sae, pre: torch.Tensor) -> torch.Tensor:
        key, value = ranking(sae, pre)
        return value.relu() * (cap_per_token(key, sae.cfg.max_latents_per_token) > sae.threshold)

    @classmethod
    def training_loss(cls, sae, x: torch.Tensor, dead: torch.Tensor) -> TrainingStep:
        x_in, acts, vals, idx = _batch_topk(sae, x)
        flat = acts.flatten()
        f = torch.zeros_like(flat).scatter(0, idx, flat[idx]).view_as(acts)
        x_hat = f @ sae.W_dec + sae.b_dec
        mse = (x_hat - x).pow(2).sum(-1).mean()
        aux = auxk_loss(sae, x_in, (x - x_hat).detach(), dead)
        extra = cls.extra_losses(sae, x, f)
        positive = vals[vals > 0]
        if positive.numel():
            with torch.no_grad():  # the first batch sets it (no pull towards the initial 0), later ones move it
                weight = torch.where(sae.threshold > 0, THRESHOLD_MOMENTUM, 1.0).to(sae.threshold.dtype)
                sae.threshold.lerp_(positive.min().expand_as(sae.threshold), weight)
        active = f > 0
        return TrainingStep(loss=mse + sae.cfg.aux_coefficient * aux + sum(extra.values()), x_hat=x_hat,
                            fired=active.any(0), l0=active.sum(-1).float().mean(),
                            terms={"mse": mse, "aux": aux, **extra})

    @classmethod
    def extra_losses(cls, sae, x: torch.Tensor, f: torch.Tensor) -> dict[str, torch.Tensor]:
        """Further named loss terms of batch ``x`` with latents ``f`` (none here; Matryoshka adds its prefixes')."""
        return {}

    @classmethod
    def finish(cls, sae, batches) -> None:
        """Set the inference threshold to the mean smallest kept value over further batches, final weights."""
        smallest = []
        for _ in range(CALIBRATION_BATCHES):
            _, _, vals, _ = _batch_topk(sae, next(batches))
            positive = vals[vals > 0]
            if positive.numel():
                smallest.append(positive.min())
        if smallest:
            sae.threshold.fill_(float(torch.stack(smallest).mean()))
