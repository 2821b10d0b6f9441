"""``AttentionSAE``: a sparse autoencoder over concatenated attention-head outputs.

``f = act((x - b_dec) W_enc + b_enc)`` and ``x_hat = f W_dec + b_dec``, with
the activation ``act`` given by the architecture in ``cfg`` (ReLU, TopK,
BatchTopK or JumpReLU; see :mod:`workbench.sae.registry`).

Examples
--------
>>> import torch
>>> sae = AttentionSAE(SAEConfig(d_in=8, d_sae=32, k=2))
>>> sae(torch.randn(5, 8)).shape
torch.Size([5, 8])
"""

from __future__ import annotations

import os

import torch

from workbench.memory import check_fits
from workbench.sae._validate import check_activations, check_device
from workbench.sae.config import SAEConfig
from workbench.sae.registry import get_architecture
from workbench.sae.topk import decoder_norms

#: Norm of the initial encoder columns, which start along the decoder rows (SAELens' 0.1 "heuristic"),
#: unless the architecture sets its own ``encoder_init_norm``.
ENCODER_INIT_NORM = 0.1


class AttentionSAE(torch.nn.Module):
    """Sparse autoencoder with untied weights ``W_enc [d_in, d_sae]`` and ``W_dec [d_sae, d_in]``.

    Parameters
    ----------
    cfg : SAEConfig
    seed : int
        Seed of the initial weights: decoder rows are random directions of
        norm ``architecture.decoder_init_norm`` and the encoder columns start
        along them with norm ``architecture.encoder_init_norm`` (default 0.1).
    device : str or torch.device, optional
        Default: ``cfg.device``.

    Examples
    --------
    >>> import torch
    >>> sae = AttentionSAE(SAEConfig(d_in=8, d_sae=32, architecture="topk", k=3))
    >>> int((sae.encode(torch.randn(4, 8)) > 0).sum(-1).max()) <= 3
    True
    """

    def __init__(self, cfg: SAEConfig, *, seed: int = 0, device: str | torch.device | None = None):
        super().__init__()
        if not isinstance(cfg, SAEConfig):
            raise TypeError(f"cfg: expected an SAEConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.architecture = get_architecture(cfg.architecture)
        check_fits(n_elements=3 * cfg.d_sae * cfg.d_in, itemsize=8, argument="d_sae",
                   what=f"a {cfg.d_in} x {cfg.d_sae} encoder and decoder (initialised in float64)")
        gen = torch.Generator().manual_seed(int(seed))
        W_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=gen, dtype=torch.float64)
        directions = W_dec / W_dec.norm(dim=1, keepdim=True)
        # Small initial weights keep the first reconstructions small (with unit rows on
        # both sides, d_sae >> d_in latents would start at several times |x|), and small
        # decoder rows move faster under Adam; standard SAEs keep unit decoder rows.
        self.W_dec = torch.nn.Parameter((self.architecture.decoder_init_norm * directions).float())
        encoder_init_norm = getattr(self.architecture, "encoder_init_norm", ENCODER_INIT_NORM)
        self.W_enc = torch.nn.Parameter((encoder_init_norm * directions.t()).contiguous().float())
        self.b_enc = torch.nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = torch.nn.Parameter(torch.zeros(cfg.d_in))
        self.architecture.init_extra(self)
        self.to(device=check_device(device if device is not None else cfg.device), dtype=getattr(torch, cfg.dtype))

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.W_enc.device

    def extra_repr(self) -> str:
        return f"architecture={self.cfg.architecture!r}, d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}"

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - b_dec) W_enc + b_enc`` for ``x [..., d_in]``.

        Examples
        --------
        >>> import torch
        >>> AttentionSAE(SAEConfig(d_in=4, d_sae=6, k=1)).pre_activations(torch.zeros(2, 4)).shape
        torch.Size([2, 6])
        """
        x = check_activations("x", x, self.cfg.d_in).to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents ``f [..., d_sae]`` of ``x [..., d_in]``.

        Examples
        --------
        >>> import torch
        >>> sae = AttentionSAE(SAEConfig(d_in=4, d_sae=6, architecture="standard"))
        >>> bool((sae.encode(torch.randn(3, 4)) >= 0).all())
        True
        """
        return self.architecture.activate(self, self.pre_activations(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``f W_dec + b_dec`` of latents ``f [..., d_sae]``.

        Examples
        --------
        >>> import torch
        >>> sae = AttentionSAE(SAEConfig(d_in=4, d_sae=6, k=1))
        >>> torch.equal(sae.decode(torch.zeros(6)), sae.b_dec)
        True
        """
        if not isinstance(f, torch.Tensor) or f.ndim == 0 or f.shape[-1] != self.cfg.d_sae:
            shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(f"f: expected a tensor [..., d_sae={self.cfg.d_sae}], got {shape}")
        f = f.to(self.W_dec.dtype)
        if self.cfg.rescale_acts_by_decoder_norm:  # latents are in units of pre * ||W_dec[i]|| (SAELens)
            f = f / decoder_norms(self)
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x``: ``decode(encode(x))``."""
        return self.decode(self.encode(x))

    def save(self, path: str | os.PathLike) -> None:  # returns None so the notebook idiom prints nothing
        """Write ``cfg.json`` and ``sae_weights.safetensors`` (SAELens layout) into folder ``path``.

        Examples
        --------
        >>> import tempfile
        >>> sae = AttentionSAE(SAEConfig(d_in=4, d_sae=6, k=1))
        >>> folder = tempfile.mkdtemp()
        >>> sae.save(folder)
        >>> AttentionSAE.load(folder).cfg.d_sae
        6
        """
        from workbench.sae.io import save_sae

        save_sae(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device | None = None) -> AttentionSAE:
        """An SAE from a SAELens-layout folder (ours or a released one such as GPT-2 small hook_z).

        Examples
        --------
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> AttentionSAE(SAEConfig(d_in=4, d_sae=6, architecture="jumprelu")).save(folder)
        >>> AttentionSAE.load(folder).cfg.architecture
        'jumprelu'
        """
        from workbench.sae.io import load_sae

        return load_sae(path, device=device)
