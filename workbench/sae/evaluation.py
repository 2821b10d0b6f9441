"""Evaluate an attention-output SAE spliced into the model at ``blocks.{layer}.attn.hook_z``.

Reconstruction: L0, explained variance ``1 - E||x - x_hat||^2 / E||x - E x||^2``
(numerator and denominator averaged separately, so the mean predictor scores
exactly 0) and FVU. Downstream: cross-entropy with the clean hook, with the
SAE's reconstruction, and with the hook zero-ablated or mean-ablated (set to
its mean over the evaluation tokens); CE loss recovered
``(CE_abl - CE_sae) / (CE_abl - CE_clean)`` for both baselines, side by side
(zero ablation is the paper's and the default); KL(clean || SAE). When the
ablation barely moves the loss (``|CE_abl - CE_clean| < ce_tolerance``) the
ratio is noise: it is NaN, with a :class:`CELossRecoveredWarning`. Dead
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
import numbers
import warnings

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from workbench import __version__
from workbench.sae._validate import check_layer, check_positive_int, check_sae_matches_model

#: Floor of the log10 firing-frequency histogram (dead latents are reported separately).
LOG10_FLOOR = -8.0
#: Ablation baselines of CE loss recovered: the hook set to zero, or to its mean over the evaluation tokens.
BASELINES = ("zero", "mean")
#: Default ``ce_tolerance`` (nats per token): 0.355 was once reported where the three losses differed by 0.003.
CE_TOLERANCE = 0.01


class CELossRecoveredWarning(UserWarning):
    """CE loss recovered is NaN: ablating the hook moves the loss by less than ``ce_tolerance``.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _recovered(3.0, 3.001, 3.002, "zero", 0.01)
    nan
    >>> caught[0].category.__name__
    'CELossRecoveredWarning'
    """


def _recovered(ce_clean: float, ce_sae: float, ce_ablated: float, baseline: str, tolerance: float) -> float:
    """``(CE_abl - CE_sae) / (CE_abl - CE_clean)``, NaN with a warning when the denominator is below ``tolerance``."""
    gap = ce_ablated - ce_clean
    if abs(gap) < tolerance or gap == 0:
        warnings.warn(f"ce_loss_recovered: the {baseline}-ablated and clean losses differ by {gap:.3g} nats per "
                      f"token, less than ce_tolerance={tolerance:g}, so the ratio would be noise; it is NaN. "
                      f"Compare ce_delta and kl_sae instead, or evaluate on more tokens or another layer.",
                      CELossRecoveredWarning, stacklevel=4)  # _recovered, evaluate, torch.no_grad's wrapper
        return math.nan
    return (ce_ablated - ce_sae) / gap


def hook_z_name(layer: int) -> str:
    """Name of layer ``layer``'s concatenated-heads hook.

    Examples
    --------
    >>> hook_z_name(3)
    'blocks.3.attn.hook_z'
    """
    return f"blocks.{layer}.attn.hook_z"


def sae_hook(sae, *, error_term: bool = False, edit=None, add=None, record: dict | None = None):
    """A TransformerLens hook for ``hook_z`` [batch, pos, head, d_head] that splices ``sae`` into the forward.

    Without ``error_term`` it returns the reconstruction ``decode(encode(x))``
    (what :func:`evaluate` measures). With it, the SAE's error ``x - x_hat``
    is kept, so the layer sees ``x + decode(edit(f)) - decode(f) + add``:
    exactly ``x`` (bit for bit) when nothing is edited or added, whatever the
    SAE's quality. ``edit(f)`` returns edited latents [batch, pos, d_sae]
    (ablation); ``add(n_pos)`` returns a vector [n_pos, d_in] added at every
    sequence (steering). ``record`` receives ``x`` (float64, CPU) and ``f``.

    Examples
    --------
    >>> import torch
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> sae = AttentionSAE(SAEConfig(d_in=8, d_sae=16, k=2))
    >>> z = torch.randn(1, 3, 2, 4)
    >>> torch.equal(sae_hook(sae, error_term=True)(z, hook=None), z)
    True
    >>> torch.allclose(sae_hook(sae)(z, hook=None).reshape(1, 3, 8), sae(z.reshape(1, 3, 8)))
    True
    """
    d_in = sae.cfg.d_in

    def hook_fn(z: torch.Tensor, hook) -> torch.Tensor:
        x = z.reshape(*z.shape[:2], d_in)
        if error_term and edit is None:
            out = x
        else:
            f = sae.encode(x.to(sae.device))
            if record is not None:
                record["x"], record["f"] = x.double().cpu(), f.cpu()
            x_hat = sae.decode(f)
            # the difference of two identical computations is exactly 0: an edit that changes nothing is a no-op
            out = x_hat if not error_term else x + (sae.decode(edit(f)) - x_hat).to(x.device, x.dtype)
        if add is not None:
            out = out + add(z.shape[1]).to(out.device, out.dtype)
        return out.to(z.dtype).reshape(z.shape).to(z.device)

    return hook_fn


def _check_tokens(model, tokens, *, min_positions: int = 2) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.dtype.is_floating_point:
        desc = f"shape {tuple(tokens.shape)}, dtype {tokens.dtype}" if isinstance(tokens, torch.Tensor) \
            else type(tokens).__name__
        raise ValueError(f"tokens: expected a 2-D integer tensor [seq, pos], got {desc}")
    if tokens.shape[0] == 0:
        raise ValueError(f"tokens: expected at least one sequence, got shape {tuple(tokens.shape)}")
    if tokens.shape[1] < min_positions:
        why = " for next-token loss" if min_positions == 2 else ""
        raise ValueError(f"tokens: expected at least {min_positions} positions{why}, got {tokens.shape[1]}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= model.cfg.d_vocab:
        raise ValueError(f"tokens: expected token ids in [0, {model.cfg.d_vocab}), got ids from {low} to {high}")
    return tokens.to(next(model.parameters()).device)


def _next_token_ce(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="sum")


def _ce_and_kl(logits: torch.Tensor, tokens: torch.Tensor, log_clean: torch.Tensor) -> tuple[float, float]:
    """Summed next-token CE of ``logits`` and summed KL(clean || logits) over every position."""
    kl = (log_clean.exp() * (log_clean - logits.float().log_softmax(-1))).sum()
    return _next_token_ce(logits, tokens).item(), kl.item()


@torch.no_grad()
def evaluate(sae, model, tokens: torch.Tensor, layer: int, *, batch_size: int = 16, n_bins: int = 40,
             baseline: str = "zero", ce_tolerance: float = CE_TOLERANCE) -> xr.Dataset:
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
    baseline : {"zero", "mean"}
        Which ablation ``ce_loss_recovered`` is measured against: the hook
        zeroed (the paper's, default) or set to its mean over ``tokens``
        (every sequence and position). Both are reported side by side.
    ce_tolerance : float
        When ``|CE_abl - CE_clean|`` is below this (nats per token) the
        ablation barely matters and CE loss recovered for that baseline is
        NaN, with a :class:`CELossRecoveredWarning`.

    Returns
    -------
    xr.Dataset
        Scalars ``l0``, ``explained_variance``, ``fvu``, ``ce_clean``,
        ``ce_sae``, ``ce_zero_ablation``, ``ce_mean_ablation``,
        ``ce_loss_recovered`` (against ``baseline``),
        ``ce_loss_recovered_zero``, ``ce_loss_recovered_mean``, ``ce_delta``
        (``ce_sae - ce_clean``), ``kl_sae``, ``kl_zero_ablation``,
        ``kl_mean_ablation``, ``dead_fraction``; ``firing_frequency``
        (feature) and ``firing_histogram`` (log10_frequency) over the live
        latents. ``attrs["baseline"]`` and ``attrs["ce_tolerance"]``.

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
    if baseline not in BASELINES:
        raise ValueError(f"baseline: expected one of {BASELINES}, got {baseline!r}")
    if isinstance(ce_tolerance, bool) or not isinstance(ce_tolerance, numbers.Real) or not 0 <= ce_tolerance < math.inf:
        raise ValueError(f"ce_tolerance: expected a finite number >= 0 (nats per token), got {ce_tolerance!r}")
    hook = hook_z_name(layer)
    d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
    sums = dict.fromkeys(("ce_clean", "ce_sae", "ce_zero_ablation", "ce_mean_ablation", "kl_sae", "kl_zero_ablation",
                          "kl_mean_ablation", "sq_err", "l0"), 0.0)
    sum_x = torch.zeros(d_in, dtype=torch.float64)
    sum_x2 = torch.zeros(d_in, dtype=torch.float64)
    fired = torch.zeros(d_sae, dtype=torch.float64)
    n_tok = n_pred = 0
    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start:start + batch_size]
        seen = {}
        clean = model(batch).float()
        spliced = model.run_with_hooks(batch, fwd_hooks=[(hook, sae_hook(sae, record=seen))]).float()
        zeroed = model.run_with_hooks(batch, fwd_hooks=[(hook, lambda z, hook: torch.zeros_like(z))]).float()
        log_clean = clean.log_softmax(-1)
        sums["ce_clean"] += _next_token_ce(clean, batch).item()
        for name, logits in (("sae", spliced), ("zero_ablation", zeroed)):
            ce, kl = _ce_and_kl(logits, batch, log_clean)
            sums[f"ce_{name}"] += ce
            sums[f"kl_{name}"] += kl
        x, f = seen["x"].reshape(-1, d_in), seen["f"].reshape(-1, d_sae)
        x_hat = sae.decode(f.to(sae.device)).double().cpu()
        sums["sq_err"] += (x - x_hat).pow(2).sum().item()
        sums["l0"] += (f > 0).sum().item()
        sum_x += x.sum(0)
        sum_x2 += x.pow(2).sum(0)
        fired += (f > 0).sum(0).double()
        n_tok += x.shape[0]
        n_pred += batch[:, 1:].numel()
    # Mean ablation needs the mean over every evaluation token first: a second pass.
    mean_z = (sum_x / n_tok).float().to(next(model.parameters()).device)
    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start:start + batch_size]
        log_clean = model(batch).float().log_softmax(-1)
        averaged = model.run_with_hooks(
            batch, fwd_hooks=[(hook, lambda z, hook: mean_z.to(z.dtype).reshape(z.shape[2:]).expand_as(z).clone())])
        ce, kl = _ce_and_kl(averaged, batch, log_clean)
        sums["ce_mean_ablation"] += ce
        sums["kl_mean_ablation"] += kl
    # Total variance about the mean, from the two moments; both terms are per-token averages.
    variance = float((sum_x2 / n_tok - (sum_x / n_tok).pow(2)).sum())
    mse = sums["sq_err"] / n_tok
    ev = 1.0 - mse / variance if variance > 0 else float("nan")
    ce = {name: sums[name] / n_pred for name in ("ce_clean", "ce_sae", "ce_zero_ablation", "ce_mean_ablation")}
    recovered = {}
    for name in BASELINES:  # a loop, not a comprehension, so the warning's stacklevel reaches the caller
        recovered[f"ce_loss_recovered_{name}"] = _recovered(ce["ce_clean"], ce["ce_sae"], ce[f"ce_{name}_ablation"],
                                                            name, ce_tolerance)
    frequency = (fired / n_tok).numpy()
    live = frequency[frequency > 0]
    edges = np.linspace(LOG10_FLOOR, 0.0, n_bins + 1)
    counts, _ = np.histogram(np.log10(np.clip(live, 10 ** LOG10_FLOOR, 1.0)), bins=edges)
    scalars = {"l0": sums["l0"] / n_tok, "explained_variance": ev, "fvu": 1.0 - ev, **ce,
               "ce_loss_recovered": recovered[f"ce_loss_recovered_{baseline}"], **recovered,
               "ce_delta": ce["ce_sae"] - ce["ce_clean"], "kl_sae": sums["kl_sae"] / n_tok,
               "kl_zero_ablation": sums["kl_zero_ablation"] / n_tok,
               "kl_mean_ablation": sums["kl_mean_ablation"] / n_tok,
               "dead_fraction": float((frequency == 0).mean())}
    return xr.Dataset(
        {**{name: ((), value) for name, value in scalars.items()},
         "firing_frequency": ("feature", frequency),
         "firing_histogram": ("log10_frequency", counts)},
        coords={"feature": np.arange(d_sae), "log10_frequency": 0.5 * (edges[1:] + edges[:-1])},
        attrs={"layer": layer, "hook_name": hook, "n_tokens": n_tok, "architecture": sae.cfg.architecture,
               "baseline": baseline, "ce_tolerance": float(ce_tolerance),
               "model_id": str(getattr(model, "workbench_id", model.cfg.model_name)),
               "workbench_version": __version__},
    )
