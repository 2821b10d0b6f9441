"""JumpReLU SAE (Rajamanoharan et al. 2024): a latent fires only above its own threshold.

``f_i = z_i * H(z_i - theta_i)`` with ``z = ReLU(pre)``. The step ``H`` has no
useful gradient, so the thresholds learn through a straight-through estimator
with a rectangle kernel of width ``jumprelu_bandwidth``; the sparsity penalty
is ``l1_coefficient * L0`` through the same estimator.

The thresholds train as ``log_threshold``; thresholds set from outside (a
loaded folder, ``jumprelu_init_threshold``) are also kept as given, and used
at inference and on save until training moves ``log_threshold``
(:func:`thresholds`): ``exp(log(t))`` is not ``t`` in float32, and the ~1e-7
drift flips latents that sit at the threshold. Thresholds of 0 (SAELens'
initialisation) are valid: ``f = ReLU(pre)``.

Examples
--------
>>> import torch
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> sae = AttentionSAE(SAEConfig(d_in=4, d_sae=8, architecture="jumprelu"))
>>> round(float(sae.log_threshold.exp()[0]), 4)
0.01
"""

from __future__ import annotations

import math

import torch

from workbench.sae.registry import Architecture, TrainingStep, register
from workbench.sae.topk import centred


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, threshold, bandwidth):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return z * (z > threshold)

    @staticmethod
    def backward(ctx, grad):
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_z = grad * (z > threshold)
        grad_t = (-(threshold / eps) * _rectangle((z - threshold) / eps) * grad).sum(0)
        return grad_z, grad_t, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, threshold, bandwidth):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_t = (-(1.0 / eps) * _rectangle((z - threshold) / eps) * grad).sum(0)
        return torch.zeros_like(z), grad_t, None


def set_thresholds(sae, threshold: torch.Tensor) -> None:
    """Set the thresholds to ``threshold`` exactly (kept beside their log, which training moves)."""
    with torch.no_grad():
        sae.log_threshold.copy_(threshold.clamp_min(torch.finfo(threshold.dtype).tiny).log())
    sae._exact_threshold = threshold.detach().clone().to(sae.log_threshold)
    sae._exact_stamp = sae.log_threshold.detach().clone()


def thresholds(sae) -> torch.Tensor:
    """The inference thresholds: as last set by :func:`set_thresholds`, or ``exp(log_threshold)`` once it moved.

    Examples
    --------
    >>> import torch
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> sae = AttentionSAE(SAEConfig(d_in=4, d_sae=3, architecture="jumprelu"))
    >>> set_thresholds(sae, torch.tensor([0.0, 0.3, 0.7]))
    >>> thresholds(sae).tolist() == torch.tensor([0.0, 0.3, 0.7]).tolist()
    True
    """
    exact = sae._exact_threshold
    if exact is not None and torch.equal(sae._exact_stamp, sae.log_threshold.detach()):
        return exact
    return sae.log_threshold.exp()


@register("jumprelu")
class JumpReLU(Architecture):
    """Per-latent learned thresholds; MSE + coefficient * L0 (straight-through)."""

    extra_tensors = ("threshold",)
    #: Unit rows: the thresholds and bandwidth are in units of the latents, which this keeps at |x| scale.
    decoder_init_norm = 1.0

    @classmethod
    def check_config(cls, cfg) -> None:
        if not cfg.jumprelu_bandwidth > 0 or not 0 <= cfg.jumprelu_init_threshold < math.inf:
            raise ValueError("jumprelu_bandwidth, jumprelu_init_threshold: expected a positive number and a finite "
                             "number >= 0, got "
                             f"{cfg.jumprelu_bandwidth!r}, {cfg.jumprelu_init_threshold!r}")

    @classmethod
    def init_extra(cls, sae) -> None:
        # Learned in log space so the threshold stays positive; the exact values live beside it (non-persistent).
        sae.log_threshold = torch.nn.Parameter(torch.zeros(sae.cfg.d_sae))
        sae.register_buffer("_exact_threshold", None, persistent=False)
        sae.register_buffer("_exact_stamp", None, persistent=False)
        set_thresholds(sae, torch.full((sae.cfg.d_sae,), float(sae.cfg.jumprelu_init_threshold)))

    @classmethod
    def export_extra(cls, sae) -> dict[str, torch.Tensor]:
        return {"threshold": thresholds(sae).detach()}

    @classmethod
    def import_extra(cls, sae, tensors: dict[str, torch.Tensor]) -> None:
        threshold = tensors["threshold"]
        if not bool(torch.isfinite(threshold).all()) or bool((threshold < 0).any()):
            raise ValueError("threshold: expected finite JumpReLU thresholds >= 0, got negative or non-finite values")
        set_thresholds(sae, threshold)

    @classmethod
    def activate(cls, sae, pre: torch.Tensor) -> torch.Tensor:
        z = pre.relu()
        return z * (z > thresholds(sae))

    @classmethod
    def training_loss(cls, sae, x: torch.Tensor, dead: torch.Tensor) -> TrainingStep:
        # The straight-through kernel is taken on the pre-activation itself, as in the paper and SAELens:
        # on ReLU(pre), every negative pre sits at 0, inside the kernel window whenever theta < bandwidth / 2,
        # and the threshold gradient counted every one of them.
        # With theta > 0, pre * (pre > theta) is ReLU(pre) * (ReLU(pre) > theta): the forward is unchanged.
        pre = centred(sae, x) @ sae.W_enc + sae.b_enc
        threshold = sae.log_threshold.exp()
        bandwidth = sae.cfg.jumprelu_bandwidth
        f = _JumpReLU.apply(pre, threshold, bandwidth)
        x_hat = f @ sae.W_dec + sae.b_dec
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l0 = _Step.apply(pre, threshold, bandwidth).sum(-1).mean()
        coefficient = sae.cfg.l1_coefficient if sae.cfg.l1_coefficient is not None else 1.0
        active = f > 0
        return TrainingStep(loss=mse + coefficient * l0, x_hat=x_hat, fired=active.any(0),
                            l0=active.sum(-1).float().mean(), terms={"mse": mse, "l0_penalty": l0})
