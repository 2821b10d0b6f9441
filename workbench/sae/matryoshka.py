"""Matryoshka BatchTopK SAE (Bussmann et al. 2025; Nabeshima 2024): nested dictionaries that each reconstruct.

The latents are ordered, and ``cfg.matryoshka_widths`` cuts them into nested
prefixes ``[0, w_1) ⊂ [0, w_2) ⊂ ... ⊂ [0, d_sae)``. Latents are chosen by
BatchTopK over the whole dictionary, exactly as :mod:`~workbench.sae.batchtopk`
does; then every prefix decodes on its own,
``x_hat_w = f[:, :w] W_dec[:w] + b_dec``, and the loss sums the squared error
of every prefix (the full one included, with the AuxK term of the TopK
family on top). The first latents must reconstruct without the later ones,
so they learn the general directions (a parent feature) and leave the
specifics (its children) to later latents, instead of folding the parent into
each child latent ("feature absorption", see
:func:`~workbench.sae.absorption.absorption_rate`). This is the loss of
SAELens' ``MatryoshkaBatchTopKTrainingSAE`` with ``use_matryoshka_aux_loss``
false, and, as there, the trained SAE is a BatchTopK one: inference uses the
learned global threshold and the folder is written as SAELens writes it,
``"architecture": "jumprelu"`` with a threshold per latent (the widths are
kept under our ``workbench`` key).

Examples
--------
>>> import torch
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> sae = AttentionSAE(SAEConfig(d_in=8, d_sae=16, architecture="matryoshka", k=2, matryoshka_widths=(4, 8)))
>>> sae.cfg.matryoshka_widths
(4, 8, 16)
>>> step = sae.architecture.training_loss(sae, torch.randn(32, 8), torch.zeros(16, dtype=torch.bool))
>>> sorted(step.terms)
['aux', 'mse', 'mse_prefix_4', 'mse_prefix_8']
"""

from __future__ import annotations

import numbers

import torch

from workbench.sae.batchtopk import BatchTopK
from workbench.sae.registry import register


def default_widths(d_sae: int) -> tuple[int, ...]:
    """``(d_sae // 4, d_sae // 2, d_sae)`` without empty or repeated prefixes.

    Examples
    --------
    >>> default_widths(64), default_widths(2)
    ((16, 32, 64), (1, 2))
    """
    return tuple(sorted({w for w in (d_sae // 4, d_sae // 2, d_sae) if w > 0}))


@register("matryoshka")
class Matryoshka(BatchTopK):
    """BatchTopK latents; the loss sums the reconstruction error of every nested prefix of the dictionary."""

    #: SAELens saves a trained Matryoshka BatchTopK SAE as this architecture.
    saelens_architecture = "jumprelu"

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        widths = cfg.matryoshka_widths
        if widths is None:
            widths = default_widths(cfg.d_sae)
        if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
            raise ValueError(f"matryoshka_widths: expected a sequence of ints, got {widths!r}")
        widths = list(widths)
        if not widths or any(isinstance(w, bool) or not isinstance(w, numbers.Integral) for w in widths):
            raise ValueError(f"matryoshka_widths: expected a non-empty sequence of ints, got {cfg.matryoshka_widths!r}")
        if widths[-1] < cfg.d_sae:
            widths.append(cfg.d_sae)  # the whole dictionary is always the last prefix (SAELens appends it too)
        if widths[0] < 1 or widths[-1] != cfg.d_sae or any(a >= b for a, b in zip(widths, widths[1:])):
            raise ValueError(f"matryoshka_widths: expected strictly increasing ints in [1, d_sae={cfg.d_sae}], "
                             f"got {cfg.matryoshka_widths!r}")
        object.__setattr__(cfg, "matryoshka_widths", tuple(int(w) for w in widths))

    @classmethod
    def extra_losses(cls, sae, x: torch.Tensor, f: torch.Tensor) -> dict[str, torch.Tensor]:
        """Squared error of each inner prefix's reconstruction (the full dictionary's is the ``mse`` term)."""
        out = {}
        x_hat = sae.b_dec.expand_as(x)
        start = 0
        for width in sae.cfg.matryoshka_widths[:-1]:
            x_hat = x_hat + f[:, start:width] @ sae.W_dec[start:width]
            out[f"mse_prefix_{width}"] = (x_hat - x).pow(2).sum(-1).mean()
            start = width
        return out
