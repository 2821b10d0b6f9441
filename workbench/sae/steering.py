"""Steer the model along an SAE feature, or ablate features, through a hook on ``blocks.L.attn.hook_z``.

**Steering** (:func:`steer`) adds ``scale * W_dec[feature]`` to the attention
output at chosen positions. ``hook_z`` is ``[batch, pos, head, d_head]``, so
the decoder row (``d_in = n_heads * d_head``) is split into its heads' blocks
and each head's block is added to that head's output; ``W_O`` then carries it
into the residual stream. ``scale`` is in the units of the SAE's latents (the
decoder rows of a trained SAE have unit norm, so ``scale`` is the length of
what is added). It reports how the next-token distribution moves (the tokens
whose log-probability rises and falls most, KL(clean || steered)) and a
greedy continuation with and without the steering.

**Ablation** (:func:`ablate`) runs the *spliced* forward: the SAE's
reconstruction with its error term ``x - x_hat`` added back, so that with no
ablation the layer sees exactly its clean input, and sets chosen latents to
zero or to their mean before decoding. What changes is only what those
features wrote; the per-token loss change is reported.

Both go through :func:`~workbench.sae.evaluation.sae_hook`, the same splice
:func:`~workbench.sae.evaluate` uses.

Examples
--------
>>> import torch
>>> from workbench.models import load_model
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> model = load_model("tiny-attn-2l", device="cpu")
>>> sae = AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=4))
>>> out = steer(model, sae, 1, feature=3, scale=0.0, text="import os", n_new=3)
>>> out.kl, out.continuation_clean == out.continuation_steered
(0.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from workbench.sae._validate import (
    check_finite_float,
    check_indices,
    check_layer,
    check_positive_int,
    check_sae_matches_model,
)
from workbench.sae.evaluation import _check_tokens, hook_z_name, sae_hook

#: Tokens listed as moving up and down.
N_TOP = 10
#: New tokens of the greedy continuations.
N_NEW = 20
HOW = ("zero", "mean")


def _prompt(model, tokens, text, *, min_positions: int) -> torch.Tensor:
    """Exactly one of ``tokens`` [seq, pos] and ``text`` (tokenized with BOS first) as a checked id tensor."""
    from workbench.models import tokenize

    if (tokens is None) == (text is None):
        given = "both" if tokens is not None else "neither"
        raise ValueError(f"tokens, text: expected exactly one of them (token ids or a string), got {given}")
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text: expected a non-empty string, got {text!r}")
        n_ids = len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
        if n_ids + 1 > model.cfg.n_ctx:
            raise ValueError(f"text: expected at most {model.cfg.n_ctx - 1} tokens (the model's context, with BOS), "
                             f"got {n_ids}")
        tokens = tokenize(model, text, seq_len=n_ids + 1)
    elif isinstance(tokens, torch.Tensor) and tokens.ndim == 1:
        tokens = tokens[None]
    return _check_tokens(model, tokens, min_positions=min_positions)


def _top(delta: torch.Tensor, clean: torch.Tensor, steered: torch.Tensor, model, n: int, largest: bool) -> xr.Dataset:
    from workbench.models.tokenizer import readable_tokens  # lazy: transformers loads with a model
    order = delta.topk(n, largest=largest).indices
    return xr.Dataset(
        {"token": ("rank", readable_tokens(model, order, sequence=False)), "token_id": ("rank", order.numpy()),
         "delta": ("rank", delta[order].numpy()), "logprob_clean": ("rank", clean[order].numpy()),
         "logprob_steered": ("rank", steered[order].numpy())},
        coords={"rank": np.arange(n)})


def _table(ds: xr.Dataset) -> str:
    return "\n".join(f"    {tok!r:>16} {d:+8.3f}  ({c:.3f} -> {s:.3f})" for tok, d, c, s in
                     zip(ds["token"].values, ds["delta"].values, ds["logprob_clean"].values,
                         ds["logprob_steered"].values))


@dataclass(repr=False)
class SteeringResult:
    """What steering along one feature did to the next token (last prompt position) and the continuation.

    Attributes
    ----------
    layer, feature : int
    scale : float
    positions : list of int
        Prompt positions the direction was added at.
    prompt : list of str
        The prompt's tokens, decoded (BOS included when it was given or put first).
    text : str
        The prompt as text, without the BOS token.
    next_token : xr.Dataset
        Over ``token_id`` (the vocabulary): ``logprob_clean``, ``logprob_steered`` and
        ``delta`` (steered minus clean) of the token after the prompt.
    top_up, top_down : xr.Dataset
        The ``n_top`` tokens whose log-probability rises (falls) most, by ``rank``:
        ``token``, ``token_id``, ``delta``, ``logprob_clean``, ``logprob_steered``.
    kl : float
        KL(clean || steered) of the next-token distribution, in nats.
    continuation_clean, continuation_steered : str
        Greedy continuations (``n_new`` tokens) without and with steering ("" when ``n_new=0``).
    """

    layer: int
    feature: int
    scale: float
    positions: list[int]
    prompt: list[str]
    text: str
    next_token: xr.Dataset
    top_up: xr.Dataset
    top_down: xr.Dataset
    kl: float
    continuation_clean: str
    continuation_steered: str

    def __repr__(self) -> str:
        where = "every position" if len(self.positions) == len(self.prompt) else f"positions {self.positions}"
        return (f"SteeringResult(feature {self.feature} x {self.scale:g} at {hook_z_name(self.layer)}, {where})\n"
                f"  prompt: {self.text!r}\n  KL(clean || steered) = {self.kl:.4g} nats\n"
                f"  up (token, change in log-prob, clean -> steered):\n{_table(self.top_up)}\n"
                f"  down:\n{_table(self.top_down)}\n"
                f"  continuation, clean:    {self.continuation_clean!r}\n"
                f"  continuation, steered:  {self.continuation_steered!r}")


def _greedy(model, tokens: torch.Tensor, n_new: int, hooks: list) -> torch.Tensor:
    """``n_new`` greedy next tokens of ``tokens`` [1, pos] (full forward each step; the models here are small)."""
    out = tokens
    for _ in range(n_new):
        logits = model.run_with_hooks(out, fwd_hooks=hooks) if hooks else model(out)
        out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return out[:, tokens.shape[1]:]


def _without_bos(model, ids: torch.Tensor) -> torch.Tensor:
    bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    return ids[1:] if bos is not None and len(ids) and int(ids[0]) == bos else ids


def _decode(model, ids: torch.Tensor) -> str:
    from workbench.models.tokenizer import readable_tokens  # lazy: transformers loads with a model
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        return tokenizer.decode(ids.tolist())
    return "".join(readable_tokens(model, ids))


@torch.no_grad()
def steer(model, sae, layer: int, feature: int, scale: float, *, tokens: torch.Tensor | None = None,
          text: str | None = None, positions=None, n_top: int = N_TOP, n_new: int = N_NEW) -> SteeringResult:
    """Add ``scale * W_dec[feature]`` at ``blocks.{layer}.attn.hook_z`` and report what the model predicts.

    Parameters
    ----------
    model : TransformerBridge
    sae : AttentionSAE
        Reading ``blocks.{layer}.attn.hook_z`` (``d_in = n_heads * d_head``).
    layer, feature : int
    scale : float
        Multiple of the decoder row added (any finite number; negative steers away).
    tokens : torch.LongTensor [pos] or [1, pos], optional
        One prompt as token ids; or give ``text`` (tokenized with BOS first).
    text : str, optional
    positions : int or list of int, optional
        Prompt positions to steer at (negative count from the end); default
        every position, including the continuation's new tokens. With
        ``positions`` given, the new tokens are not steered.
    n_top : int
        Tokens listed as moving up and down.
    n_new : int
        Tokens of the greedy continuations (0: none).

    Returns
    -------
    SteeringResult

    Examples
    --------
    >>> import torch
    >>> from workbench.models import load_model
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> sae = AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=4))
    >>> out = steer(model, sae, 1, feature=0, scale=40.0, text="def main(", positions=-1, n_new=0)
    >>> out.kl > 0, out.top_up.sizes["rank"], bool(out.top_up["delta"][0] > 0)
    (True, 10, True)
    """
    from workbench.models.tokenizer import readable_tokens  # lazy: transformers loads with a model

    layer = check_layer(model, layer)
    check_sae_matches_model(sae, model, layer)
    feature = check_indices("feature", feature, sae.cfg.d_sae, what="a latent of the SAE")
    if len(feature) != 1:
        raise ValueError(f"feature: expected one feature to steer along, got {len(feature)}")
    feature, scale = feature[0], check_finite_float("scale", scale)
    n_top = check_positive_int("n_top", n_top)
    n_new = check_positive_int("n_new", n_new, minimum=0)
    tokens = _prompt(model, tokens, text, min_positions=1)
    if tokens.shape[0] != 1:
        raise ValueError(f"tokens: expected one prompt ([pos] or [1, pos]), got {tokens.shape[0]} sequences")
    n_pos = tokens.shape[1]
    if n_pos + n_new > model.cfg.n_ctx:
        raise ValueError(f"n_new: expected at most {model.cfg.n_ctx - n_pos} new tokens (the model's context is "
                         f"{model.cfg.n_ctx} and the prompt has {n_pos}), got {n_new}")
    everywhere = positions is None
    positions = list(range(n_pos)) if everywhere else \
        check_indices("positions", positions, n_pos, what="a prompt position", negative=True)
    direction = scale * sae.W_dec.detach()[feature]

    def add(length: int) -> torch.Tensor:
        mask = torch.ones(length, dtype=torch.bool) if everywhere else \
            torch.zeros(length, dtype=torch.bool).index_fill_(0, torch.tensor(positions), True)
        return mask[:, None].to(direction) * direction

    hooks = [(hook_z_name(layer), sae_hook(sae, error_term=True, add=add))]
    clean = model(tokens)[0, -1].double().log_softmax(-1).cpu()
    steered = model.run_with_hooks(tokens, fwd_hooks=hooks)[0, -1].double().log_softmax(-1).cpu()
    delta = steered - clean
    kl = float((clean.exp() * delta.neg()).sum().clamp_min(0.0))
    n_top = min(n_top, delta.numel())
    next_token = xr.Dataset({"logprob_clean": ("token_id", clean.float().numpy()),
                             "logprob_steered": ("token_id", steered.float().numpy()),
                             "delta": ("token_id", delta.float().numpy())},
                            coords={"token_id": np.arange(delta.numel())})
    return SteeringResult(
        layer=layer, feature=feature, scale=scale, positions=positions,
        prompt=list(readable_tokens(model, tokens[0])), text=_decode(model, _without_bos(model, tokens[0])),
        next_token=next_token,
        top_up=_top(delta, clean, steered, model, n_top, True), top_down=_top(delta, clean, steered, model, n_top, False),
        kl=kl, continuation_clean=_decode(model, _greedy(model, tokens, n_new, [])[0]),
        continuation_steered=_decode(model, _greedy(model, tokens, n_new, hooks)[0]))


@dataclass(repr=False)
class AblationResult:
    """The loss change per token when features are ablated in the spliced forward.

    Attributes
    ----------
    layer : int
    features : list of int
    how : {"zero", "mean"}
    values : xr.DataArray
        What each ablated latent was set to (``feature``): 0, or its mean over the mean's tokens.
    loss : xr.Dataset
        Per ``(seq, pos)`` (``pos`` predicting token ``pos + 1``): ``loss_clean``,
        ``loss_ablated`` and ``delta`` (ablated minus clean, nats), the
        ``next_token`` predicted and ``active`` (whether any ablated feature
        fired at ``pos`` in the clean forward).
    mean_delta : float
        ``delta`` averaged over every predicted token.
    """

    layer: int
    features: list[int]
    how: str
    values: xr.DataArray
    loss: xr.Dataset
    mean_delta: float

    def __repr__(self) -> str:
        delta = self.loss["delta"].stack(token=("seq", "pos"))
        worst = delta.isel(token=np.argsort(-np.abs(delta.values), kind="stable")[:5])
        lines = [f"    seq {int(s)} pos {int(p)} -> {self.loss['next_token'].sel(seq=s, pos=p).item()!r}: {float(d):+.4f}"
                 for s, p, d in zip(worst["seq"].values, worst["pos"].values, worst.values)]
        active = int(self.loss["active"].sum())
        return (f"AblationResult({self.how}-ablated features {self.features} at {hook_z_name(self.layer)})\n"
                f"  mean loss change {self.mean_delta:+.4g} nats per token over {delta.size} tokens "
                f"({active} with an ablated feature active)\n  largest changes:\n" + "\n".join(lines))


def _token_losses(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy per position [seq, pos - 1]."""
    return torch.nn.functional.cross_entropy(logits[:, :-1].double().transpose(1, 2), tokens[:, 1:], reduction="none")


@torch.no_grad()
def ablate(model, sae, layer: int, features, *, tokens: torch.Tensor | None = None, text: str | None = None,
           how: str = "zero", mean_tokens: torch.Tensor | None = None, batch_size: int = 16) -> AblationResult:
    """Zero- or mean-ablate ``features`` of ``sae`` in the spliced forward; the loss change per token.

    The spliced forward sends ``x + decode(f') - decode(f)`` on from
    ``blocks.{layer}.attn.hook_z``, where ``f`` are the SAE's latents of the
    clean ``x`` and ``f'`` the same with the ablated latents replaced: the SAE's
    error term is kept, so only what the ablated features wrote is removed,
    and a feature that never fires changes nothing.

    Parameters
    ----------
    model : TransformerBridge
    sae : AttentionSAE
    layer : int
    features : int or list of int
        Latents to ablate.
    tokens : torch.LongTensor [seq, pos] or [pos], optional
        Or ``text`` (one prompt, tokenized with BOS first).
    text : str, optional
    how : {"zero", "mean"}
        Set the latents to 0, or to their mean activation over ``mean_tokens``.
    mean_tokens : torch.LongTensor [seq, pos], optional
        Where the mean is taken (every sequence and position); default the
        ablated tokens themselves.
    batch_size : int
        Sequences per forward pass.

    Returns
    -------
    AblationResult

    Examples
    --------
    >>> import torch
    >>> from workbench.models import load_model
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> sae = AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=4))
    >>> out = ablate(model, sae, 1, [0, 1], text="import os\\nimport sys")
    >>> out.loss["delta"].dims, out.how
    (('seq', 'pos'), 'zero')
    """
    from workbench.models.tokenizer import readable_tokens  # lazy: transformers loads with a model

    layer = check_layer(model, layer)
    check_sae_matches_model(sae, model, layer)
    features = check_indices("features", features, sae.cfg.d_sae, what="latents of the SAE")
    if how not in HOW:
        raise ValueError(f"how: expected one of {HOW}, got {how!r}")
    batch_size = check_positive_int("batch_size", batch_size)
    tokens = _prompt(model, tokens, text, min_positions=2)
    hook = hook_z_name(layer)
    index = torch.tensor(features, device=sae.device)
    if how == "mean":
        where = tokens if mean_tokens is None else _check_tokens(model, mean_tokens, min_positions=1)
        total = torch.zeros(len(features), dtype=torch.float64)
        for start in range(0, where.shape[0], batch_size):
            seen = {}
            model.run_with_hooks(where[start:start + batch_size], fwd_hooks=[(hook, sae_hook(sae, record=seen))])
            total += seen["f"][..., index.cpu()].double().flatten(0, 1).sum(0)
        values = (total / where.numel()).to(sae.W_dec.dtype).to(sae.device)
    else:
        values = torch.zeros(len(features), dtype=sae.W_dec.dtype, device=sae.device)

    def edit(f: torch.Tensor) -> torch.Tensor:
        f = f.clone()
        f[..., index] = values
        return f

    clean, ablated, active = [], [], []
    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start:start + batch_size]
        seen = {}
        clean.append(_token_losses(model(batch), batch))
        logits = model.run_with_hooks(batch, fwd_hooks=[(hook, sae_hook(sae, error_term=True, edit=edit,
                                                                         record=seen))])
        ablated.append(_token_losses(logits, batch))
        active.append((seen["f"][..., index.cpu()] > 0).any(-1)[:, :-1])
    clean, ablated = torch.cat(clean).cpu(), torch.cat(ablated).cpu()
    delta = ablated - clean
    n_seq, n_pred = delta.shape
    loss = xr.Dataset(
        {"loss_clean": (("seq", "pos"), clean.numpy()), "loss_ablated": (("seq", "pos"), ablated.numpy()),
         "delta": (("seq", "pos"), delta.numpy()),
         "next_token": (("seq", "pos"), readable_tokens(model, tokens)[:, 1:]),
         "active": (("seq", "pos"), torch.cat(active).numpy())},
        coords={"seq": np.arange(n_seq), "pos": np.arange(n_pred)})
    return AblationResult(layer=layer, features=features, how=how,
                          values=xr.DataArray(values.float().cpu().numpy(), dims="feature",
                                              coords={"feature": features}),
                          loss=loss, mean_delta=float(delta.mean()))
