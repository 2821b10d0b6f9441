"""Sparse autoencoders on attention-layer outputs (Kissane et al. 2024).

An attention layer writes ``z[pos, head, d_head]``: each head's attention-
weighted values. Concatenating the heads gives one vector per token,
``z_cat`` (``d_in = n_heads * d_head``), which an SAE rewrites as a sparse
sum of learned directions::

    f = act((z_cat - b_dec) W_enc + b_enc)        # few latents on per token
    z_hat = f W_dec + b_dec                       # reconstruction

Because ``z_cat`` sits *before* the output projection, every decoder row is
split into the heads' blocks (:func:`head_attribution`: which heads write a
feature), and because ``z`` is linear in the attention-weighted values, each
feature's input splits exactly over source positions (:func:`dfa`: which
earlier tokens a feature reads). Splicing ``z_hat`` back into the forward
pass at ``blocks.L.attn.hook_z`` measures what the SAE loses
(:func:`evaluate`: CE loss recovered, explained variance, L0); with its
error term kept, the same splice steers the model along a feature
(:func:`steer`) or ablates features (:func:`ablate`).

Architectures live one per module in a registry (:func:`architectures`):
``standard`` (ReLU + L1, unit-norm decoder rows), ``topk`` (with a sparse
training kernel), ``batchtopk``, ``matryoshka`` (nested prefixes of the
dictionary that each reconstruct, so parents are not absorbed into their
children: :func:`absorption_rate`) and ``jumprelu``. SAEs save and load in the
SAELens folder layout (``cfg.json`` + ``sae_weights.safetensors``) with
SAELens' semantics, and released sets load by name from a local Hugging Face
cache (``load_sae("gpt2-small-hook-z-kk", sae_id="blocks.5.hook_z")``).

Worked example: plant 32 features in 64-d "attention outputs", train a TopK
SAE, and check every planted direction was found.

>>> import torch
>>> from workbench.data.synthetic_sae import planted_dictionary
>>> from workbench.sae import train, head_attribution
>>> ds = planted_dictionary(n_tokens=8000, d_in=64, n_features=32, n_heads=4, active_per_token=3, seed=0)
>>> sae, history = train(torch.from_numpy(ds["acts"].values), d_sae=64, k=3, lr=3e-3,
...                      batch_size=256, n_tokens=80_000, progress=False)
>>> truth = torch.from_numpy(ds["directions"].values)
>>> decoder = sae.W_dec.detach() / sae.W_dec.detach().norm(dim=1, keepdim=True)
>>> best = (truth @ decoder.T).max(dim=1).values        # best-matching latent per planted feature
>>> bool((best > 0.9).float().mean() >= 0.9)
True
>>> head_attribution(sae, n_heads=4).dims
('feature', 'head')

On a model, :func:`train_layers` caches every layer's ``hook_z`` in one
forward pass and trains one SAE per layer; :func:`evaluate`,
:func:`top_activations` and :func:`feature_families` then take an SAE, the
model, tokens and the layer.
"""

from workbench.sae.absorption import absorption_rate
from workbench.sae.attribution import dfa, head_attribution
from workbench.sae.browse import (
    analysis_tokens,
    family_features,
    hook_z_cat,
    most_active_feature,
    most_active_token,
    prompt_features,
    sae_dashboard,
    saved_saes,
    unpack_prompt,
)
from workbench.sae.config import SAEConfig
from workbench.sae.downstream import finetune_downstream
from workbench.sae.evaluation import CELossRecoveredWarning, evaluate, hook_z_name
from workbench.sae.features import feature_families, top_activations
from workbench.sae.history import (
    held_out_curve,
    held_out_fvu_l0,
    load_training_record,
    save_training_record,
    train_with_held_out,
    training_history,
    training_record,
)
from workbench.sae.io import load_sae, save_sae
from workbench.sae.model import AttentionSAE
from workbench.sae.registry import Architecture, architectures, get_architecture, register
from workbench.sae.releases import release_names
from workbench.sae.source import ActivationSource
from workbench.sae.steering import AblationResult, SteeringResult, ablate, steer
from workbench.sae.training import train, train_layers

__all__ = [
    "AblationResult",
    "ActivationSource",
    "Architecture",
    "AttentionSAE",
    "CELossRecoveredWarning",
    "SAEConfig",
    "SteeringResult",
    "ablate",
    "absorption_rate",
    "analysis_tokens",
    "architectures",
    "dfa",
    "evaluate",
    "family_features",
    "feature_families",
    "finetune_downstream",
    "get_architecture",
    "head_attribution",
    "held_out_curve",
    "held_out_fvu_l0",
    "hook_z_cat",
    "hook_z_name",
    "load_sae",
    "load_training_record",
    "most_active_feature",
    "most_active_token",
    "prompt_features",
    "register",
    "release_names",
    "sae_dashboard",
    "steer",
    "save_sae",
    "save_training_record",
    "saved_saes",
    "top_activations",
    "train",
    "train_layers",
    "train_with_held_out",
    "training_history",
    "training_record",
    "unpack_prompt",
]
