"""Per-head OV and QK circuits, decomposed through their d_head-sized factors.

A head ``h`` moves information with ``OV_h = W_V^h W_O^h`` and decides where
to look with ``QK_h = W_Q^h (W_K^h)^T``; both are ``d_model x d_model`` but
have rank at most ``d_head`` (Elhage et al. 2021). Their singular values come
from the ``d_head x d_head`` core of thin QR factorizations
(:func:`workbench.spectra.svd.product_singular_values`), never from the formed
product: for GPT-2 small that is a 64 x 64 SVD per head instead of 768 x 768.

Examples
--------
>>> from workbench.models import load_model
>>> groups = circuit_matrices(load_model("tiny-attn-2l", device="cpu"), kinds=("ov",))
>>> [(g.kind, g.layer, tuple(g.left.shape)) for g in groups]
[('ov', 0, (4, 128, 32)), ('ov', 1, (4, 128, 32))]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.spectra.svd import product_singular_values
from workbench.spectra.weights import is_bridge

CIRCUITS = ("ov", "qk")


@dataclass
class CircuitGroup:
    """The heads of one layer's OV or QK circuit as thin factors: circuit = left @ right.mT."""

    kind: str
    layer: int
    left: torch.Tensor   # [head, d_model, d_head]
    right: torch.Tensor  # [head, d_model, d_head]

    @property
    def names(self) -> list[str]:
        return [f"blocks.{self.layer}.attn.{self.kind.upper()}[{h}]" for h in range(self.left.shape[0])]


def _expand_kv(W: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Repeat grouped key/value heads [kv_head, ...] so that query head h uses kv head h // group."""
    if W.shape[0] == n_heads:
        return W
    if n_heads % W.shape[0]:
        raise ValueError(f"model: {n_heads} query heads do not divide into {W.shape[0]} key/value heads")
    return W.repeat_interleave(n_heads // W.shape[0], dim=0)


def circuit_matrices(model, kinds: tuple[str, ...] = CIRCUITS) -> list[CircuitGroup]:
    """The OV and/or QK factor pairs of every layer of a TransformerLens bridge.

    Parameters
    ----------
    model : TransformerBridge
    kinds : tuple of {"ov", "qk"}

    Returns
    -------
    list of CircuitGroup

    Examples
    --------
    >>> from workbench.models import load_model
    >>> len(circuit_matrices(load_model("tiny-gelu-2l", device="cpu")))
    4
    """
    for kind in kinds:
        if kind not in CIRCUITS:
            raise ValueError(f"kinds: expected entries from {CIRCUITS}, got {kind!r}")
    if not is_bridge(model):
        raise TypeError(f"model: per-head circuits need a TransformerBridge (W_Q/W_K/W_V/W_O views), "
                        f"got {type(model).__name__}")
    groups = []
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            attn = block.attn
            H = attn.W_Q.shape[0]
            for kind in kinds:
                if kind == "ov":
                    left, right = _expand_kv(attn.W_V.detach(), H), attn.W_O.detach().mT
                else:
                    left, right = attn.W_Q.detach(), _expand_kv(attn.W_K.detach(), H)
                groups.append(CircuitGroup(kind, layer, left, right))
    return groups


def circuit_singular_values(group: CircuitGroup, *, device: str | torch.device | None = None,
                            dtype: torch.dtype | None = None) -> torch.Tensor:
    """Singular values [head, d_head] of every head's circuit in ``group``.

    Examples
    --------
    >>> import torch
    >>> g = CircuitGroup("ov", 0, torch.randn(2, 16, 4, dtype=torch.float64), torch.randn(2, 16, 4, dtype=torch.float64))
    >>> full = torch.linalg.svdvals(g.left @ g.right.mT)[:, :4]
    >>> torch.allclose(circuit_singular_values(g, device="cpu"), full)
    True
    """
    return product_singular_values(group.left, group.right, device=device, dtype=dtype)
