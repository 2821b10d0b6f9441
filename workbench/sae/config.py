"""``SAEConfig``: the hyperparameters that define an attention-output SAE.

Field names follow SAELens (``d_in``, ``d_sae``, ``architecture``, ``k``,
``apply_b_dec_to_input``, ``hook_name``...) so a config round-trips through
the SAELens ``cfg.json`` layout without renaming.

Examples
--------
>>> cfg = SAEConfig(d_in=128, d_sae=512, architecture="topk", k=16)
>>> cfg.k_aux
64
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from workbench.sae._validate import check_positive_int

DTYPES = ("float32", "float64", "float16", "bfloat16")


@dataclass(frozen=True)
class SAEConfig:
    """Shape, architecture and metadata of an :class:`AttentionSAE`.

    Parameters
    ----------
    d_in : int
        Input width; for hook_z SAEs ``n_heads * d_head`` ("z_cat").
    d_sae : int
        Number of latents (features).
    architecture : {"standard", "topk", "batchtopk", "matryoshka", "jumprelu"}
        Registered architecture name (see :func:`workbench.sae.architectures`).
    k : int, optional
        Active latents per token for ``topk``; mean active latents per token
        for ``batchtopk`` and ``matryoshka``. Required by those, ignored by the others.
    matryoshka_widths : tuple of int, optional
        ``matryoshka`` only: the nested prefix sizes (latents ``[0, w)``),
        strictly increasing; ``d_sae`` is appended when the last is smaller
        (as SAELens does). Default ``(d_sae // 4, d_sae // 2, d_sae)``.
    l1_coefficient : float, optional
        Sparsity penalty: L1 for ``standard``, L0 (through the straight-through
        step) for ``jumprelu``.
    n_heads : int, optional
        Heads of the hooked layer; ``d_in`` must divide by it. Used by
        :func:`head_attribution` and DFA.
    apply_b_dec_to_input : bool
        Subtract ``b_dec`` before encoding (the paper's form).
    aux_k : int, optional
        Dead latents used by the AuxK loss of the TopK family; default ``d_in // 2``.
    aux_coefficient : float
        Weight of the AuxK loss (1/32 as in Gao et al. 2024).
    jumprelu_bandwidth, jumprelu_init_threshold : float
        Width of the rectangle kernel of the JumpReLU straight-through
        estimator, and the threshold the latents start at (SAELens' defaults;
        both are in activation units, so scale them with the data).
    rescale_acts_by_decoder_norm : bool, optional
        TopK family only. SAELens' flag: ``True`` ranks latents by
        ``pre * ||W_dec[i]||``, reports that product as the latent's value and
        divides it by the norm again in :meth:`~AttentionSAE.decode`;
        ``False`` ranks by ``pre``. ``None`` (the default, how the family
        trains here) ranks by ``pre * ||W_dec[i]||`` and reports ``pre``: the
        same active set and reconstruction as ``True``. :func:`~workbench.sae.train`
        folds the norms into the encoder at the end, after which all three
        agree; :func:`save_sae` folds them on the way out of ``None``. A loaded
        SAELens folder takes the value in its ``cfg.json`` (false when absent,
        as in SAELens). Other architectures: ``False``.
    max_latents_per_token : int, optional
        ``batchtopk`` and ``matryoshka`` only: no token takes more than this
        many of the batch's ``k * batch`` latents in training, nor more than
        this many at inference (the threshold, then this many largest).
        ``None`` (the default): no cap, the paper's BatchTopK. See
        :mod:`workbench.sae.batchtopk` for when it matters; a cap is not part
        of SAELens' ``jumprelu`` layout, which SAELens loads without it.
    hook_name, model_name : str, optional
        Provenance: the hook the SAE reads (``blocks.L.attn.hook_z``) and the model.
    dtype, device : str
        Parameter dtype and device.
    """

    d_in: int
    d_sae: int
    architecture: str = "topk"
    k: int | None = None
    l1_coefficient: float | None = None
    n_heads: int | None = None
    apply_b_dec_to_input: bool = True
    aux_k: int | None = None
    aux_coefficient: float = 1 / 32
    jumprelu_bandwidth: float = 0.05
    jumprelu_init_threshold: float = 0.01
    rescale_acts_by_decoder_norm: bool | None = None
    matryoshka_widths: tuple[int, ...] | None = None
    max_latents_per_token: int | None = None
    hook_name: str | None = None
    model_name: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    metadata: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        from workbench.sae.registry import get_architecture

        for name in ("d_in", "d_sae"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.n_heads is not None and (not isinstance(self.n_heads, int) or self.n_heads < 1
                                         or self.d_in % self.n_heads):
            raise ValueError(f"n_heads: expected a positive int dividing d_in={self.d_in}, got {self.n_heads!r}")
        if self.aux_k is not None:
            check_positive_int("aux_k", self.aux_k)
        for name in ("l1_coefficient", "aux_coefficient"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {DTYPES}, got {self.dtype!r}")
        arch = get_architecture(self.architecture)
        if self.matryoshka_widths is not None and self.architecture != "matryoshka":
            raise ValueError(f"matryoshka_widths: only for architecture 'matryoshka', got {self.matryoshka_widths!r} "
                             f"for {self.architecture!r}")
        if self.max_latents_per_token is not None and not getattr(arch, "batch_level", False):
            raise ValueError(f"max_latents_per_token: only for architectures 'batchtopk' and 'matryoshka', got "
                             f"{self.max_latents_per_token!r} for {self.architecture!r}")
        ranks = getattr(arch, "ranks_by_decoder_norm", False)
        rescale = self.rescale_acts_by_decoder_norm
        if rescale is None and not ranks:
            object.__setattr__(self, "rescale_acts_by_decoder_norm", False)
        elif rescale is not None and (not isinstance(rescale, bool) or (rescale and not ranks)):
            raise ValueError(f"rescale_acts_by_decoder_norm: expected None or a bool (True only for the TopK "
                             f"family), got {rescale!r} for architecture {self.architecture!r}")
        arch.check_config(self)

    @property
    def k_aux(self) -> int:
        """Dead latents the AuxK loss reconstructs the residual with."""
        return self.aux_k if self.aux_k is not None else max(1, self.d_in // 2)

    @property
    def d_head(self) -> int | None:
        """``d_in // n_heads`` when the head count is known."""
        return None if self.n_heads is None else self.d_in // self.n_heads

    def replace(self, **changes) -> SAEConfig:
        """A copy with ``changes`` applied (and validated).

        Examples
        --------
        >>> SAEConfig(d_in=8, d_sae=16, k=2).replace(d_sae=32).d_sae
        32
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain-JSON form of the config.

        Examples
        --------
        >>> SAEConfig(d_in=8, d_sae=16, k=2).to_dict()["architecture"]
        'topk'
        """
        return dataclasses.asdict(self)
