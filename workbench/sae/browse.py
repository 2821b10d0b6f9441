"""Browse an attention SAE: everything a feature browser shows, computed once into one Dataset.

A browser looks at an SAE three ways:

* **a feature**: its top and quantile examples (:func:`top_activations`),
  which heads write it (:func:`head_attribution`), its family
  (:func:`feature_families`), which source tokens its top example reads
  (:func:`dfa`) and its activation on every token;
* **the layer**: heads x families counts and the :func:`evaluate` metrics;
* **a prompt** (:func:`prompt_features`): the features firing on each token
  and their DFA by source position.

:func:`sae_dashboard` computes all of it, for an example prompt too, into one
``xr.Dataset`` a result store keeps, so choosing a feature or a token later
is a lookup. (While an SAE trains, a browser shows its held-out curve:
:mod:`workbench.sae.history`.)

Worked example: a random TopK SAE on layer 1 of the bundled 2-layer
attention-only model. The DFA of a feature's top example, plus the encoder
bias, is its pre-activation there.

>>> import torch
>>> from workbench.models import load_model
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> model = load_model("tiny-attn-2l", device="cpu")
>>> _ = torch.manual_seed(0)
>>> sae = AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=4))
>>> ds = sae_dashboard(sae, model, 1, analysis_tokens(model, 4, 16))
>>> ds["dfa_top"].dims, ds.sizes["feature"], ds["head_share"].dims
(('feature', 'dest', 'src'), 16, ('feature', 'head'))
>>> list(unpack_prompt(ds).data_vars)
['activation', 'dfa', 'token']
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import xarray as xr

from workbench.sae._validate import check_layer, check_positive_int
from workbench.sae.attribution import dfa, head_attribution
from workbench.sae.evaluation import evaluate, hook_z_name
from workbench.sae.features import FAMILIES, feature_families, top_activations

N_EXAMPLES = 10  # top examples per feature
MAX_PROMPT_TOKENS = 128
MAX_PROMPT_FEATURES = 24
DEFAULT_PROMPT = ("import os\nimport sys\n\ndef main(path):\n    return os.path.join(path, sys.argv[1])\n\n"
                  "print(os.path.join(path, sys.argv[1]))\n")
_PROMPT_DIMS = {"feature": "prompt_feature", "pos": "prompt_pos", "dest": "prompt_dest", "src": "prompt_src"}
_SCALARS = ("ce_loss_recovered", "explained_variance", "l0", "dead_fraction")


def analysis_tokens(model, n_seq: int, seq_len: int) -> torch.Tensor:
    """Held-out corpus windows, then a quarter as many repeated random sequences (so induction can show).

    Examples
    --------
    >>> from workbench.models import load_model
    >>> analysis_tokens(load_model("tiny-attn-2l", device="cpu"), 8, 16).shape
    torch.Size([10, 16])
    """
    from workbench.models import corpus_tokens, repeated_random_tokens

    corpus = corpus_tokens(model, n_seq, seq_len)
    repeated = repeated_random_tokens(model.cfg.d_vocab, n_seqs=max(1, n_seq // 4), period=seq_len // 2, seed=0)
    return torch.cat([corpus, repeated[:, :seq_len].to(corpus.device)])


def hook_z_cat(model, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """``blocks.{layer}.attn.hook_z`` on ``tokens`` with the heads concatenated: [seq * pos, n_heads * d_head].

    Examples
    --------
    >>> from workbench.models import load_model, tokenize
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> hook_z_cat(model, tokenize(model, ["import os"] * 2, seq_len=4), 1).shape
    torch.Size([8, 128])
    """
    from workbench.hooks.cache import compute_hooks

    hook = hook_z_name(check_layer(model, layer))
    z = torch.from_numpy(compute_hooks(model, tokens, [hook], "float32")[hook])
    return z.reshape(-1, z.shape[-2] * z.shape[-1])


def _encode_hook_z(sae, model, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """SAE latents [d_sae, seq * pos] of ``blocks.{layer}.attn.hook_z`` on ``tokens``."""
    with torch.no_grad():
        return sae.encode(hook_z_cat(model, tokens, layer)).T


@torch.no_grad()
def prompt_features(sae, model, layer: int, text: str, *, max_tokens: int = MAX_PROMPT_TOKENS,
                    max_features: int = MAX_PROMPT_FEATURES) -> xr.Dataset:
    """The features firing on each token of ``text`` and their DFA by source position.

    Parameters
    ----------
    sae : AttentionSAE
        Reading ``blocks.{layer}.attn.hook_z`` of ``model``.
    model : TransformerBridge
    layer : int
    text : str
        The prompt; BOS is put first and it is cut to ``max_tokens`` tokens
        (and the model's context).
    max_features : int
        How many features to keep: those with the largest activation anywhere.

    Returns
    -------
    xr.Dataset
        ``activation`` (feature, pos) of the features that fire, ``dfa``
        (feature, dest, src) from :func:`workbench.sae.dfa`, and the decoded
        ``token`` (pos); attrs ``prompt``, ``layer`` and ``truncated`` (1 when cut).

    Examples
    --------
    >>> import torch
    >>> from workbench.models import load_model
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> _ = torch.manual_seed(0)
    >>> prompt = prompt_features(AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=4)), model, 1, "import os")
    >>> prompt["token"].values.tolist()[1:], prompt["dfa"].dims
    (['import', '·os'], ('feature', 'dest', 'src'))
    """
    from workbench.models import tokenize
    from workbench.models.tokenizer import readable_tokens

    if not isinstance(text, str) or not text.strip():
        raise ValueError("prompt: expected some text to analyse, got an empty prompt")
    max_tokens = check_positive_int("max_tokens", max_tokens, minimum=2)
    max_features = check_positive_int("max_features", max_features, minimum=0)
    n_ids = len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
    tokens = tokenize(model, text, seq_len=min(n_ids + 1, max_tokens, model.cfg.n_ctx))
    acts = _encode_hook_z(sae, model, tokens, layer)  # [d_sae, pos]
    peak = acts.max(1).values
    features = [int(f) for f in peak.argsort(descending=True)[:max_features] if peak[f] > 0]
    n_pos = tokens.shape[1]
    if features:
        attribution = dfa(sae, model, tokens, layer, features).isel(seq=0).values
    else:
        attribution = np.zeros((0, n_pos, n_pos))
    return xr.Dataset(
        {"activation": (("feature", "pos"), acts[features].numpy()),
         "dfa": (("feature", "dest", "src"), attribution.astype(np.float32)),
         "token": ("pos", readable_tokens(model, tokens[0]))},
        coords={"feature": features, "pos": np.arange(n_pos), "dest": np.arange(n_pos), "src": np.arange(n_pos)},
        attrs={"prompt": text, "layer": layer, "truncated": int(n_ids + 1 > n_pos)})


def _pack_prompt(prompt: xr.Dataset) -> xr.Dataset:
    prompt = prompt.rename({name: f"prompt_{name}" for name in prompt.data_vars})
    return prompt.rename({old: new for old, new in _PROMPT_DIMS.items() if old in prompt.dims})


def unpack_prompt(ds: xr.Dataset) -> xr.Dataset:
    """The example prompt's :func:`prompt_features` stored inside a :func:`sae_dashboard` result.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> prompt = xr.Dataset({"activation": (("feature", "pos"), np.ones((1, 2)))}, coords={"feature": [3]})
    >>> ds = _pack_prompt(prompt).assign_attrs(prompt="import os")
    >>> unpack_prompt(ds)["activation"].dims, unpack_prompt(ds).attrs["prompt"]
    (('feature', 'pos'), 'import os')
    """
    names = [v for v in ds.data_vars if v.startswith("prompt_")]
    prompt = ds[names].rename({v: v.removeprefix("prompt_") for v in names})
    prompt = prompt.rename({new: old for old, new in _PROMPT_DIMS.items() if new in prompt.dims})
    return prompt.assign_attrs(prompt=ds.attrs["prompt"])


def sae_dashboard(sae, model, layer: int, tokens: torch.Tensor, *, prompt: str = DEFAULT_PROMPT,
                  progress: Callable[[float, str], None] | None = None) -> xr.Dataset:
    """Everything a feature browser shows for one SAE, in one Dataset a result store keeps.

    Parameters
    ----------
    sae : AttentionSAE
        Reading ``blocks.{layer}.attn.hook_z`` of ``model``.
    model : TransformerBridge
    layer : int
    tokens : torch.LongTensor [seq, pos]
        Where examples are searched and metrics measured (e.g. :func:`analysis_tokens`).
    prompt : str
        The example prompt analysed with :func:`prompt_features`.
    progress : callable, optional
        ``progress(fraction, message)`` between stages (it may raise to stop).

    Returns
    -------
    xr.Dataset
        Per feature: the :func:`~workbench.sae.top_activations` examples and
        logit effects, ``head_share`` (:func:`~workbench.sae.head_attribution`),
        ``family_label`` (:func:`~workbench.sae.feature_families`),
        ``dfa_top`` (dest, src): the DFA on the sequence of its top example,
        and ``feature_activation`` over every token (``token_index``). Per
        layer: ``head_counts`` (head, family) and the
        :func:`~workbench.sae.evaluate` metrics, the main ones also as attrs.
        The prompt's features as ``prompt_*`` (read them with :func:`unpack_prompt`).

    Examples
    --------
    >>> import torch
    >>> from workbench.models import load_model
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> sae = AttentionSAE(SAEConfig(d_in=128, d_sae=8, k=2))
    >>> ds = sae_dashboard(sae, model, 1, analysis_tokens(model, 4, 16), prompt="import os")
    >>> ds.attrs["layer"], ds.attrs["n_tokens"], ds["feature_activation"].shape
    (1, 80, (8, 80))
    """
    def step(fraction: float, message: str) -> None:
        if progress is not None:
            progress(fraction, message)

    features = list(range(sae.cfg.d_sae))
    step(0.0, "top examples of every feature")
    top = top_activations(sae, model, tokens, layer, features, k=N_EXAMPLES)
    step(0.3, "feature families")
    families = feature_families({layer: sae}, model, tokens).isel(layer=0)
    step(0.45, "CE loss recovered and firing frequencies")
    evaluation = evaluate(sae, model, tokens, layer)
    step(0.6, "DFA of every feature's top example")
    top_seq = top["seq"].isel(example=0).values
    n_pos = tokens.shape[1]
    dfa_top = np.zeros((len(features), n_pos, n_pos), dtype=np.float32)
    for i, s in enumerate(np.unique(top_seq)):
        which = np.flatnonzero(top_seq == s)
        dfa_top[which] = dfa(sae, model, tokens[s:s + 1], layer, which.tolist()).isel(seq=0).values
        if i % 8 == 0:
            step(0.6 + 0.25 * i / len(np.unique(top_seq)), "DFA of every feature's top example")
    step(0.85, "activations of every feature")
    acts = _encode_hook_z(sae, model, tokens, layer).numpy()
    step(0.95, "the example prompt")
    ds = xr.merge([
        top,
        head_attribution(sae, model.cfg.n_heads).rename("head_share").to_dataset(),
        xr.Dataset({"family_label": families["label"], "head_counts": families["head_counts"]}),
        evaluation,
        xr.Dataset({"dfa_top": (("feature", "dest", "src"), dfa_top),
                    "feature_activation": (("feature", "token_index"), acts.astype(np.float32))}),
        _pack_prompt(prompt_features(sae, model, layer, prompt)),
    ], combine_attrs="drop", compat="override")
    ds = ds.drop_vars([c for c in ("layer",) if c in ds.coords])
    return ds.assign_attrs(layer=layer, hook_name=hook_z_name(layer), d_sae=sae.cfg.d_sae,
                           architecture=sae.cfg.architecture, n_tokens=int(tokens.numel()), prompt=prompt,
                           **{name: float(evaluation[name]) for name in _SCALARS})


def most_active_feature(ds: xr.Dataset) -> int:
    """The feature with the largest top activation in a :func:`sae_dashboard` result.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> most_active_feature(xr.Dataset({"activation": (("feature", "example"), [[1.0], [np.nan], [3.0]])}))
    2
    """
    return int(np.argmax(ds["activation"].isel(example=0).fillna(-np.inf).values))


def most_active_token(prompt: xr.Dataset) -> int:
    """The position (after BOS) where a :func:`prompt_features` result's features fire most in total.

    Examples
    --------
    >>> import xarray as xr
    >>> most_active_token(xr.Dataset({"activation": (("feature", "pos"), [[9.0, 1.0, 2.0], [0.0, 0.0, 0.5]])}))
    2
    """
    if prompt.sizes["feature"] == 0 or prompt.sizes["pos"] < 2:
        return prompt.sizes["pos"] - 1
    return 1 + int(np.argmax(prompt["activation"].values[:, 1:].sum(0)))


def family_features(ds: xr.Dataset, family: str = "any") -> list[int]:
    """The features of ``family`` (``"any"``: all) in a :func:`sae_dashboard` result, most active first.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"activation": (("feature", "example"), [[1.0], [3.0], [2.0]]),
    ...                  "family_label": ("feature", ["induction", "other", "induction"])})
    >>> family_features(ds), family_features(ds, "induction")
    ([1, 2, 0], [2, 0])
    """
    if family != "any" and family not in FAMILIES:
        raise ValueError(f"family: expected one of {('any', *FAMILIES)}, got {family!r}")
    order = np.argsort(-ds["activation"].isel(example=0).fillna(0).values, kind="stable")
    labels = ds["family_label"].values
    return [int(f) for f in order if family == "any" or labels[f] == family]


def saved_saes(folder: str | Path) -> list[str]:
    """Names of the SAELens-layout SAE folders (``cfg.json`` and weights) inside ``folder``, sorted.

    Examples
    --------
    >>> import tempfile
    >>> from workbench.sae import AttentionSAE, SAEConfig, save_sae
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = save_sae(AttentionSAE(SAEConfig(d_in=4, d_sae=8, k=2)), root / "topk-a")
    >>> (root / "notes").mkdir()
    >>> saved_saes(root), saved_saes(root / "none")
    (['topk-a'], [])
    """
    from workbench.sae.io import CFG_FILE, WEIGHTS_FILE

    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / CFG_FILE).is_file() and (p / WEIGHTS_FILE).is_file())
