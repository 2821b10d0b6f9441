"""Read SAE features: top-activating examples with context, and feature families.

:func:`top_activations` gathers what a feature dashboard shows: top and
quantile examples with context windows and per-token activations, the
source token the DFA points at, and the tokens the feature's decoder
direction promotes and suppresses through ``W_dec W_O W_U``.

:func:`feature_families` labels features the way Kissane et al. group them,
from where the feature reads (the DFA peak over source positions on its top
examples):

- ``induction``: the peak source is the token right *after* an earlier
  occurrence of the current token (``tokens[src - 1] == tokens[dest]``);
- ``local_context``: the peak source is at most ``local_range`` tokens back;
- ``long_range_context``: further back;
- ``other``: dead on these tokens, or reading mostly the first (BOS) position.

Examples
--------
>>> from workbench.models import load_model, tokenize
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> model = load_model("tiny-attn-2l", device="cpu")
>>> sae = AttentionSAE(SAEConfig(d_in=128, d_sae=32, k=4))
>>> tokens = tokenize(model, ["def f(x):\\n    return x + 1"] * 4, seq_len=16)
>>> out = feature_families({1: sae}, model, tokens)
>>> int(out["counts"].sum())
32
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import xarray as xr

from workbench.sae._validate import check_layer, check_positive_int, check_sae_matches_model
from workbench.sae.attribution import _check_features, head_attribution
from workbench.sae.evaluation import _check_tokens, hook_z_name

FAMILIES = ("induction", "local_context", "long_range_context", "other")


@torch.no_grad()
def _layer_cache(model, tokens: torch.Tensor, layer: int, batch_size: int):
    """``(z_cat [seq, pos, d_in], pattern [seq, head, dest, src], v [seq, pos, head, d_head])`` on CPU."""
    names = [f"blocks.{layer}.attn.hook_{n}" for n in ("z", "pattern", "v")]
    out = {n: [] for n in names}
    for start in range(0, tokens.shape[0], batch_size):
        _, cache = model.run_with_cache(tokens[start:start + batch_size], names_filter=lambda n: n in names)
        for n in names:
            out[n].append(cache[n].float().cpu())
    z, pattern, v = (torch.cat(out[n]) for n in names)
    if v.shape[2] != pattern.shape[1]:  # grouped-query attention
        v = v.repeat_interleave(pattern.shape[1] // v.shape[2], dim=2)
    return z.flatten(2), pattern, v


def _dfa_rows(sae, pattern, v, seqs, dests, feats, chunk: int = 512) -> torch.Tensor:
    """DFA over sources for selected (seq, dest, feature) triples: [n, src]."""
    n_heads = pattern.shape[1]
    W = sae.W_enc.detach().float().cpu().reshape(n_heads, -1, sae.cfg.d_sae)
    rows = []
    for i in range(0, len(seqs), chunk):
        s, d, f = seqs[i:i + chunk], dests[i:i + chunk], feats[i:i + chunk]
        attn = pattern[s, :, d, :]  # [n, head, src]
        per_source = torch.einsum("nphd,hdn->nph", v[s], W[:, :, f])
        rows.append(torch.einsum("nhp,nph->np", attn, per_source))
    return torch.cat(rows) if rows else torch.zeros(0, pattern.shape[-1])


def _decoder_logits(sae, model, layer: int) -> torch.Tensor:
    """Direct effect of each feature's decoder direction on the logits: [d_sae, d_vocab]."""
    W_O = model.W_O[layer].detach().float().cpu()  # [head, d_head, d_model]
    W_dec = sae.W_dec.detach().float().cpu().reshape(sae.cfg.d_sae, W_O.shape[0], W_O.shape[1])
    return torch.einsum("fhd,hdm->fm", W_dec, W_O) @ model.W_U.detach().float().cpu()


@torch.no_grad()
def top_activations(sae, model, tokens: torch.Tensor, layer: int, features, k: int = 20, *,
                    window: tuple[int, int] = (8, 4), n_quantiles: int = 4, n_logits: int = 10,
                    batch_size: int = 16, seed: int = 0) -> xr.Dataset:
    """Top and quantile examples of ``features`` with context windows, DFA source and logit effects.

    Parameters
    ----------
    sae, model, tokens, layer
        The SAE at ``blocks.{layer}.attn.hook_z`` and the tokens to search.
    features : int or list of int
    k : int
        Top examples per feature; also the number of quantile examples
        (``k // n_quantiles`` per quantile band of the non-zero activations).
    window : (int, int)
        Tokens shown before and after the example token.
    n_quantiles, n_logits, batch_size, seed : int

    Returns
    -------
    xr.Dataset
        Per (feature, example) for ``kind`` in {top, quantile}: ``seq``, ``pos``,
        ``activation``, ``quantile`` (band, -1 for top examples), ``dfa_src``
        and ``dfa_src_token`` (the source position/token the DFA peaks on);
        per (feature, example, offset): ``context_token``, ``context_activation``;
        per (feature, rank): ``top_logit_token``/``top_logit`` and
        ``bottom_logit_token``/``bottom_logit``.

    Examples
    --------
    >>> from workbench.models import load_model, tokenize
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> sae = AttentionSAE(SAEConfig(d_in=128, d_sae=32, k=4))
    >>> tokens = tokenize(model, ["import os, sys"] * 3, seq_len=12)
    >>> ds = top_activations(sae, model, tokens, 0, features=[1, 2], k=4)
    >>> ds["context_token"].dims
    ('feature', 'example', 'offset')
    """
    from workbench.models.tokenizer import readable_tokens  # lazy: transformers loads with a model

    layer = check_layer(model, layer)
    check_sae_matches_model(sae, model, layer)
    tokens = _check_tokens(model, tokens)
    features = _check_features(sae, features)
    k = check_positive_int("k", k)
    n_quantiles = check_positive_int("n_quantiles", n_quantiles)
    before, after = (check_positive_int("window", w, minimum=0) for w in window)
    batch_size = check_positive_int("batch_size", batch_size)
    z, pattern, v = _layer_cache(model, tokens, layer, batch_size)
    n_seq, n_pos = tokens.shape
    acts = sae.encode(z.reshape(-1, sae.cfg.d_in).to(sae.device)).cpu()[:, features]  # [seq*pos, F]
    rng = np.random.default_rng(seed)
    picks, bands = [], []
    for j in range(len(features)):
        a = acts[:, j].numpy()
        top = np.argsort(-a, kind="stable")[:k]
        nonzero = np.flatnonzero(a > 0)
        quant, band = [], []
        if nonzero.size:
            edges = np.quantile(a[nonzero], np.linspace(0, 1, n_quantiles + 1))
            for q in range(n_quantiles):
                inside = nonzero[(a[nonzero] >= edges[q]) & (a[nonzero] <= edges[q + 1])]
                chosen = rng.choice(inside, size=min(max(1, k // n_quantiles), inside.size), replace=False)
                quant += chosen.tolist()
                band += [q] * len(chosen)
        picks.append(np.concatenate([top, np.array(quant, dtype=np.int64)])[: 2 * k])
        bands.append(np.array([-1] * len(top) + band)[: 2 * k])
    width = max(len(p) for p in picks)
    flat = np.full((len(features), width), -1)
    band_arr = np.full((len(features), width), -2)
    for j, (p, b) in enumerate(zip(picks, bands)):
        flat[j, :len(p)], band_arr[j, :len(b)] = p, b
    valid = flat >= 0
    seq, pos = np.where(valid, flat // n_pos, 0), np.where(valid, flat % n_pos, 0)
    offsets = np.arange(-before, after + 1)
    ctx_pos = np.clip(pos[..., None] + offsets, 0, n_pos - 1)
    inside = (pos[..., None] + offsets >= 0) & (pos[..., None] + offsets < n_pos) & valid[..., None]
    tok_np = tokens.cpu().numpy()
    shown = np.full(tok_np.shape, "", dtype=object)  # readable text of the sequences the examples come from
    rows = np.unique(seq[valid])
    shown[rows] = readable_tokens(model, tok_np[rows])
    feat_idx = np.arange(len(features))[:, None, None]
    ctx_act = acts.numpy()[(seq[..., None] * n_pos + ctx_pos), feat_idx]
    feats = np.repeat(np.array(features)[:, None], flat.shape[1], axis=1)
    rows = _dfa_rows(sae, pattern, v, torch.from_numpy(seq.reshape(-1)), torch.from_numpy(pos.reshape(-1)),
                     torch.from_numpy(feats.reshape(-1)))
    dfa_src = rows.argmax(-1).numpy().reshape(flat.shape)
    logits = _decoder_logits(sae, model, layer)[features]
    n_logits = min(check_positive_int("n_logits", n_logits), logits.shape[1])
    top_l, bot_l = logits.topk(n_logits, dim=1), logits.topk(n_logits, dim=1, largest=False)
    ex = ("feature", "example")
    return xr.Dataset(
        {"seq": (ex, np.where(valid, seq, -1)), "pos": (ex, np.where(valid, pos, -1)),
         "activation": (ex, np.where(valid, acts.numpy()[np.where(valid, flat, 0), np.arange(len(features))[:, None]],
                                     np.nan)),
         "kind": (ex, np.where(band_arr == -1, "top", np.where(valid, "quantile", ""))),
         "quantile": (ex, np.where(band_arr >= 0, band_arr, -1)),
         "dfa_src": (ex, np.where(valid, dfa_src, -1)),
         "dfa_src_token": (ex, np.where(valid, shown[seq, dfa_src], "")),
         "context_token": ((*ex, "offset"), np.where(inside, shown[seq[..., None], ctx_pos], "")),
         "context_activation": ((*ex, "offset"), np.where(inside, ctx_act, np.nan)),
         "top_logit_token": (("feature", "rank"), readable_tokens(model, top_l.indices, sequence=False)),
         "top_logit": (("feature", "rank"), top_l.values.numpy()),
         "bottom_logit_token": (("feature", "rank"), readable_tokens(model, bot_l.indices, sequence=False)),
         "bottom_logit": (("feature", "rank"), bot_l.values.numpy())},
        coords={"feature": features, "example": np.arange(width), "offset": offsets, "rank": np.arange(n_logits)},
        attrs={"layer": layer, "hook_name": hook_z_name(layer), "n_quantiles": n_quantiles},
    )


@torch.no_grad()
def _families_one_layer(sae, model, tokens, layer: int, n_examples: int, local_range: int, batch_size: int):
    z, pattern, v = _layer_cache(model, tokens, layer, batch_size)
    n_pos = tokens.shape[1]
    acts = sae.encode(z.reshape(-1, sae.cfg.d_in).to(sae.device)).cpu()  # [seq*pos, d_sae]
    values, flat = acts.topk(min(n_examples, acts.shape[0]), dim=0)  # [n_examples, d_sae]
    fired = values > 0
    feats = torch.arange(sae.cfg.d_sae).expand_as(flat)
    seqs, dests = flat // n_pos, flat % n_pos
    rows = _dfa_rows(sae, pattern, v, seqs.reshape(-1), dests.reshape(-1), feats.reshape(-1))
    src = rows.argmax(-1).reshape(flat.shape)
    tok = tokens.cpu()
    prev = tok[seqs, (src - 1).clamp_min(0)]
    is_induction = (src >= 1) & (dests - src > 1) & (prev == tok[seqs, dests]) & fired
    distance = (dests - src).float().masked_fill(~fired, float("nan"))
    n_fired = fired.sum(0).clamp_min(1)
    induction_fraction = is_induction.sum(0) / n_fired
    bos_fraction = ((src == 0) & fired).sum(0) / n_fired
    median = distance.nanmedian(0).values.numpy()
    family = np.where(~fired.any(0).numpy() | (bos_fraction.numpy() > 0.5), "other",
                      np.where(induction_fraction.numpy() >= 0.5, "induction",
                               np.where(median <= local_range, "local_context", "long_range_context")))
    return family.astype(object), median, induction_fraction.numpy()


def feature_families(saes: Mapping[int, object], model, tokens: torch.Tensor, *, n_examples: int = 10,
                     local_range: int = 3, batch_size: int = 16) -> xr.Dataset:
    """Label every feature's family and count families per layer and per head.

    Parameters
    ----------
    saes : mapping of int to AttentionSAE
        ``{layer: sae}`` for ``blocks.{layer}.attn.hook_z``; all the same ``d_sae``.
    model : TransformerBridge
    tokens : torch.LongTensor [seq, pos]
        Include repeated text (e.g. ``repeated_random_tokens``) so induction can show.
    n_examples : int
        Top examples per feature whose DFA peak is inspected.
    local_range : int
        Largest source distance counted as local context.
    batch_size : int

    Returns
    -------
    xr.Dataset
        ``label`` (layer, feature): the family; ``median_distance``, ``induction_fraction``
        (layer, feature); ``counts`` (layer, family); ``head_counts`` (layer,
        head, family) with each feature assigned to its dominant head;
        ``families_per_head`` (layer, head), counting induction, local and
        long-range only; ``polysemantic_fraction`` (layer): heads spanning >= 2.

    Examples
    --------
    >>> from workbench.models import load_model, tokenize
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> out = feature_families({0: AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=2))}, model,
    ...                        tokenize(model, ["x = [1, 2, 3]"] * 2, seq_len=10))
    >>> out["counts"].coords["family"].values.tolist()
    ['induction', 'local_context', 'long_range_context', 'other']
    """
    if not isinstance(saes, Mapping) or not saes:
        raise TypeError(f"saes: expected a non-empty mapping {{layer: AttentionSAE}}, got {type(saes).__name__}")
    tokens = _check_tokens(model, tokens)
    n_examples = check_positive_int("n_examples", n_examples)
    local_range = check_positive_int("local_range", local_range)
    batch_size = check_positive_int("batch_size", batch_size)
    sizes = {sae.cfg.d_sae for sae in saes.values()}
    if len(sizes) != 1:
        raise ValueError(f"saes: expected one d_sae for all layers, got {sorted(sizes)}")
    layers = sorted(check_layer(model, layer) for layer in saes)
    n_heads = model.cfg.n_heads
    labels, medians, induction, counts, head_counts = [], [], [], [], []
    for layer in layers:
        sae = saes[layer]
        check_sae_matches_model(sae, model, layer)
        family, median, ind = _families_one_layer(sae, model, tokens, layer, n_examples, local_range, batch_size)
        head = head_attribution(sae, n_heads).values.argmax(1)
        labels.append(family)
        medians.append(median)
        induction.append(ind)
        counts.append([int((family == f).sum()) for f in FAMILIES])
        head_counts.append([[int(((family == f) & (head == h)).sum()) for f in FAMILIES] for h in range(n_heads)])
    head_counts = np.array(head_counts)
    per_head = (head_counts[:, :, :3] > 0).sum(-1)
    d_sae = sizes.pop()
    return xr.Dataset(
        {"label": (("layer", "feature"), np.array(labels, dtype=object)),
         "median_distance": (("layer", "feature"), np.array(medians)),
         "induction_fraction": (("layer", "feature"), np.array(induction)),
         "counts": (("layer", "family"), np.array(counts)),
         "head_counts": (("layer", "head", "family"), head_counts),
         "families_per_head": (("layer", "head"), per_head),
         "polysemantic_fraction": ("layer", (per_head >= 2).mean(1))},
        coords={"layer": layers, "feature": np.arange(d_sae), "family": list(FAMILIES), "head": np.arange(n_heads)},
        attrs={"n_examples": n_examples, "local_range": local_range},
    )
