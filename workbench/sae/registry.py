"""One registry of SAE architectures; each architecture lives in its own module.

An :class:`Architecture` says how pre-activations become latents at inference
(``activate``), what the training loss is (``training_loss``), which extra
tensors it owns (``extra_tensors``, e.g. JumpReLU's ``threshold``) and what
happens after an optimiser step (``after_step``) and after training
(``finish``). :class:`AttentionSAE` delegates to the architecture named in
its config.

Examples
--------
>>> sorted(architectures())
['batchtopk', 'jumprelu', 'matryoshka', 'standard', 'topk']
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

_REGISTRY: dict[str, type[Architecture]] = {}


@dataclass
class TrainingStep:
    """What one training forward pass hands back to the trainer."""

    loss: torch.Tensor
    x_hat: torch.Tensor
    fired: torch.Tensor  # [d_sae] bool: latents active on this batch
    l0: torch.Tensor  # mean active latents per token
    terms: dict[str, torch.Tensor]  # named loss terms for the history


class Architecture:
    """Base class: the behaviour that differs between SAE architectures."""

    name: str = ""
    #: Names of the per-latent tensors saved beside W_enc, W_dec, b_enc, b_dec.
    extra_tensors: tuple[str, ...] = ()
    #: Norm of the decoder rows at initialisation.
    decoder_init_norm: float = 0.1

    @classmethod
    def check_config(cls, cfg) -> None:
        """Raise ``ValueError`` when ``cfg`` lacks what this architecture needs."""

    @classmethod
    def init_extra(cls, sae) -> None:
        """Create the architecture's extra parameters/buffers on ``sae``."""

    @classmethod
    def export_extra(cls, sae) -> dict[str, torch.Tensor]:
        """The extra tensors as saved on disk (SAELens names)."""
        return {name: getattr(sae, name).detach() for name in cls.extra_tensors}

    @classmethod
    def import_extra(cls, sae, tensors: dict[str, torch.Tensor]) -> None:
        """Set the extra tensors from their on-disk form."""
        for name in cls.extra_tensors:
            getattr(sae, name).data.copy_(tensors[name])

    @classmethod
    def activate(cls, sae, pre: torch.Tensor) -> torch.Tensor:
        """Latents from pre-activations at inference."""
        raise NotImplementedError

    @classmethod
    def training_loss(cls, sae, x: torch.Tensor, dead: torch.Tensor) -> TrainingStep:
        """Loss of one batch ``x`` [batch, d_in]; ``dead`` [d_sae] marks dead latents."""
        raise NotImplementedError

    @classmethod
    def before_step(cls, sae) -> None:
        """Adjust gradients before the optimiser step (e.g. project them)."""

    @classmethod
    def after_step(cls, sae) -> None:
        """Restore constraints after the optimiser step (e.g. unit-norm decoder rows)."""

    @classmethod
    def finish(cls, sae, batches: Iterator[torch.Tensor]) -> None:
        """Last adjustments after the final step (no gradient); ``batches`` yields further training batches."""

    @classmethod
    def resample(cls, sae, dead: torch.Tensor, x: torch.Tensor, optimizer, generator) -> int:
        """Re-initialise ``dead`` latents from batch ``x``; returns how many (default: none)."""
        return 0


class UnitNormDecoder(Architecture):
    """Decoder rows kept at unit norm: the gradient along each row is removed before a step, the rows renormalised after.

    Adam then does not spend its steps fighting the constraint (Standard
    SAEs; BatchTopK as its authors train it).
    """

    decoder_init_norm = 1.0

    @classmethod
    def before_step(cls, sae) -> None:
        grad = sae.W_dec.grad
        if grad is not None:
            W = sae.W_dec.data
            grad -= (grad * W).sum(1, keepdim=True) * W

    @classmethod
    def after_step(cls, sae) -> None:
        W = sae.W_dec.data
        W /= W.norm(dim=1, keepdim=True).clamp_min(1e-12)


def register(name: str):
    """Class decorator adding an :class:`Architecture` to the registry under ``name``.

    Examples
    --------
    >>> "topk" in architectures()
    True
    """

    def wrap(cls: type[Architecture]) -> type[Architecture]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def get_architecture(name: str) -> type[Architecture]:
    """The registered architecture called ``name``.

    Examples
    --------
    >>> get_architecture("standard").name
    'standard'
    """
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"architecture: expected one of {sorted(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]


def architectures() -> list[str]:
    """Names of the registered architectures.

    Examples
    --------
    >>> "jumprelu" in architectures()
    True
    """
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    # Imported lazily: the architecture modules import this one to register.
    from workbench.sae import batchtopk, jumprelu, matryoshka, standard, topk  # noqa: F401
