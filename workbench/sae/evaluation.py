"""Evaluate an attention-output SAE spliced into the model at ``blocks.{layer}.attn.hook_z``.

Reconstruction: L0, explained variance ``1 - E||x - x_hat||^2 / E||x - E x||^2``
(numerator and denominator averaged separately, so the mean predictor scores
exactly 0) and FVU. Downstream: cross-entropy with the clean hook, with the
SAE's reconstruction, and with the hook zero-ablated; CE loss recovered
``(CE_zero - CE_sae) / (CE_zero - CE_clean)``; KL(clean || SAE). Dead
latents never fire over the evaluation tokens.

Examples
--------
>>> import torch
>>> from workbench.models import load_model, tokenize
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> model = load_model("tiny-attn-2l", device="cpu")
>>> sae = AttentionSAE(SAEConfig(d_in=128, d_sae=256, k=8))
>>> ev = evaluate(sae, model, tokenize(model, ["import os"] * 2, seq_len=8), layer=0)
>>> float(ev["l0"]) <= 8
True
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from workbench import __version__
from workbench.sae._validate import check_layer, check_positive_int, check_sae_matches_model

#: Floor of the log10 firing-frequency histogram (dead latents are reported separately).
LOG10_FLOOR = -8.0


def hook_z_name(layer: int) -> str:
    """Name of layer ``layer``'s concatenated-heads hook.

    Examples
    --------
    >>> hook_z_name(3)
    'blocks.3.attn.hook_z'
    """
    return f"blocks.{layer}.attn.hook_z"


def _check_tokens(model, tokens) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.dtype.is_floating_point:
        desc = f"shape {tuple(tokens.shape)}, dtype {tokens.dtype}" if isinstance(tokens, torch.Tensor) \
            else type(tokens).__name__
        raise ValueError(f"tokens: expected a 2-D integer tensor [seq, pos], got {desc}")
    if tokens.shape[0] == 0:
        raise ValueError(f"tokens: expected at least one sequence, got shape {tuple(tokens.shape)}")
    if tokens.shape[1] < 2:
        raise ValueError(f"tokens: expected at least 2 positions for next-token loss, got {tokens.shape[1]}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= model.cfg.d_vocab:
        raise ValueError(f"tokens: expected token ids in [0, {model.cfg.d_vocab}), got ids from {low} to {high}")
    return tokens.to(next(model.parameters()).device)


def _next_token_ce(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="sum")


@torch.no_grad()
def evaluate(sae, model, tokens: torch.Tensor, layer: int, *, batch_size: int = 16, n_bins: int = 40) -> xr.Dataset:
    """Reconstruction and downstream-loss metrics of ``sae`` at ``blocks.{layer}.attn.hook_z``.

    Parameters
    ----------
    sae : AttentionSAE
        With ``d_in = n_heads * d_head`` of the model.
    model : TransformerBridge
    tokens : torch.LongTensor [seq, pos]
    layer : int
    batch_size : int
        Sequences per forward pass.
    n_bins : int
        Bins of the log10 firing-frequency histogram.

    Returns
    -------
    xr.Dataset
        Scalars ``l0``, ``explained_variance``, ``fvu``, ``ce_clean``,
        ``ce_sae``, ``ce_zero_ablation``, ``ce_loss_recovered``, ``ce_delta``
        (``ce_sae - ce_clean``), ``kl_sae``, ``kl_zero_ablation``,
        ``dead_fraction``; ``firing_frequency`` (feature) and
        ``firing_histogram`` (log10_frequency) over the live latents.

    Examples
    --------
    >>> import torch
    >>> from workbench.models import load_model, tokenize
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> zero = AttentionSAE(SAEConfig(d_in=128, d_sae=8, architecture="standard"))
    >>> _ = zero.W_dec.data.zero_()
    >>> ev = evaluate(zero, model, tokenize(model, ["def f(x): return x"] * 2, seq_len=12), layer=1)
    >>> abs(float(ev["ce_loss_recovered"])) < 1e-6
    True
    """
    layer = check_layer(model, layer)
    check_sae_matches_model(sae, model, layer)
    tokens = _check_tokens(model, tokens)
    batch_size = check_positive_int("batch_size", batch_size)
    n_bins = check_positive_int("n_bins", n_bins)
    hook = hook_z_name(layer)
    d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
    sums = dict.fromkeys(("ce_clean", "ce_sae", "ce_zero_ablation", "kl_sae", "kl_zero_ablation", "sq_err", "l0"),
                         0.0)
    sum_x = torch.zeros(d_in, dtype=torch.float64)
    sum_x2 = torch.zeros(d_in, dtype=torch.float64)
    fired = torch.zeros(d_sae, dtype=torch.float64)
    n_tok = n_pred = 0
    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start:start + batch_size]
        seen = {}

        def reconstruct(z, hook):
            x = z.reshape(*z.shape[:2], d_in)
            f = sae.encode(x.to(sae.device))
            seen["x"], seen["f"] = x.double().cpu(), f.cpu()
            return sae.decode(f).to(z.dtype).reshape(z.shape).to(z.device)

        clean = model(batch).float()
        spliced = model.run_with_hooks(batch, fwd_hooks=[(hook, reconstruct)]).float()
        zeroed = model.run_with_hooks(batch, fwd_hooks=[(hook, lambda z, hook: torch.zeros_like(z))]).float()
        log_clean = clean.log_softmax(-1)
        for name, logits in (("clean", clean), ("sae", spliced), ("zero_ablation", zeroed)):
            sums[f"ce_{name}"] += _next_token_ce(logits, batch).item()
            if name != "clean":
                kl = (log_clean.exp() * (log_clean - logits.log_softmax(-1))).sum()
                sums[f"kl_{name}"] += kl.item()
        x, f = seen["x"].reshape(-1, d_in), seen["f"].reshape(-1, d_sae)
        x_hat = sae.decode(f.to(sae.device)).double().cpu()
        sums["sq_err"] += (x - x_hat).pow(2).sum().item()
        sums["l0"] += (f > 0).sum().item()
        sum_x += x.sum(0)
        sum_x2 += x.pow(2).sum(0)
        fired += (f > 0).sum(0).double()
        n_tok += x.shape[0]
        n_pred += batch[:, 1:].numel()
    # Total variance about the mean, from the two moments; both terms are per-token averages.
    variance = float((sum_x2 / n_tok - (sum_x / n_tok).pow(2)).sum())
    mse = sums["sq_err"] / n_tok
    ev = 1.0 - mse / variance if variance > 0 else float("nan")
    ce = {name: sums[name] / n_pred for name in ("ce_clean", "ce_sae", "ce_zero_ablation")}
    gap = ce["ce_zero_ablation"] - ce["ce_clean"]
    frequency = (fired / n_tok).numpy()
    live = frequency[frequency > 0]
    edges = np.linspace(LOG10_FLOOR, 0.0, n_bins + 1)
    counts, _ = np.histogram(np.log10(np.clip(live, 10 ** LOG10_FLOOR, 1.0)), bins=edges)
    scalars = {"l0": sums["l0"] / n_tok, "explained_variance": ev, "fvu": 1.0 - ev, **ce,
               "ce_loss_recovered": (ce["ce_zero_ablation"] - ce["ce_sae"]) / gap if gap != 0 else math.nan,
               "ce_delta": ce["ce_sae"] - ce["ce_clean"], "kl_sae": sums["kl_sae"] / n_tok,
               "kl_zero_ablation": sums["kl_zero_ablation"] / n_tok,
               "dead_fraction": float((frequency == 0).mean())}
    return xr.Dataset(
        {**{name: ((), value) for name, value in scalars.items()},
         "firing_frequency": ("feature", frequency),
         "firing_histogram": ("log10_frequency", counts)},
        coords={"feature": np.arange(d_sae), "log10_frequency": 0.5 * (edges[1:] + edges[:-1])},
        attrs={"layer": layer, "hook_name": hook, "n_tokens": n_tok, "architecture": sae.cfg.architecture,
               "model_id": str(getattr(model, "workbench_id", model.cfg.model_name)),
               "workbench_version": __version__},
    )
