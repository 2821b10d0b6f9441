"""Attention SAEs: choose model, layer and SAE; browse features, explore a prompt, train a new SAE.

Everything a click shows is computed once, in a background job, and saved
with the result store: each feature's examples, DFA on its top example,
head shares and logit effects, the feature families, and the features and
DFA of the prompt. Selecting a feature or clicking a token is then a lookup
that redraws one small figure. SAEs are kept in the SAELens folder layout
(:func:`workbench.sae.save_sae`) under ``<cache>/saes/<model>/layer_<L>/``,
so any SAELens-layout folder dropped there shows up too.

Examples
--------
>>> import tempfile
>>> page = SAEPage(cache_dir=tempfile.mkdtemp())
>>> page.model, page.layer, page.sae, page.figures()
('tiny-attn-2l', 1, None, {})
>>> page.prompt = "   "
>>> page.message
'prompt: expected some text to analyse, got an empty prompt'
"""

from __future__ import annotations

import functools
import json
import re
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import panel as pn
import param
import plotly.graph_objects as go
import torch
import xarray as xr

from widgets.jobs import Job
from widgets.pages.base import USER_ERRORS, Page
from widgets.results import result_key
from workbench.sae.features import FAMILIES

ARCHITECTURES = ("topk", "batchtopk", "standard", "jumprelu")
TRAIN_SETTINGS = ("architecture", "d_sae", "k", "l1_coefficient", "lr", "n_seq", "seq_len", "n_tokens", "seed")
QUERY = ("model", "layer", "sae", "feature", "family", *TRAIN_SETTINGS, "eval_seq")  # settable from the URL
BATCH_SIZE = 256
N_EXAMPLES = 10  # top examples per feature
N_PROBES = 40  # held-out measurements while training
PROBE_SEQ = 8  # held-out windows those are measured on
MAX_PROMPT_TOKENS = 128
MAX_PROMPT_FEATURES = 24
HISTORY_FILE = "history.json"  # beside cfg.json; SAELens ignores it
DEFAULT_PROMPT = ("import os\nimport sys\n\ndef main(path):\n    return os.path.join(path, sys.argv[1])\n\n"
                  "print(os.path.join(path, sys.argv[1]))\n")

# TransformerLens keeps hooks on the module itself: two sessions must not run the same model at once.
_MODEL_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _model(name: str):
    from workbench.models import load_model

    return load_model(name, device="cpu")


def _check_layer(model, layer: int) -> int:
    n_layers = model.cfg.n_layers
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer: expected a layer in [0, {n_layers}) of {model.workbench_id}, got {layer}")
    return layer


def sae_folder(cache_dir: str | Path, model: str, layer: int) -> Path:
    """Where the page keeps the SAEs of ``model``'s ``blocks.{layer}.attn.hook_z``.

    Examples
    --------
    >>> sae_folder("/c", "tiny-attn-2l", 1).as_posix()
    '/c/saes/tiny-attn-2l/layer_1'
    """
    return Path(cache_dir) / "saes" / re.sub(r"[^\w.-]+", "_", str(model)).strip("_") / f"layer_{layer}"


def saved_saes(folder: Path) -> list[str]:
    """Names of the SAELens-layout SAE folders inside ``folder`` (empty when there is none).

    Examples
    --------
    >>> import tempfile
    >>> saved_saes(Path(tempfile.mkdtemp()) / "none")
    []
    """
    from workbench.sae.io import CFG_FILE, WEIGHTS_FILE

    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / CFG_FILE).is_file() and (p / WEIGHTS_FILE).is_file())


def analysis_key(folder: Path, model: str, layer: int, eval_seq: int, seq_len: int) -> str | None:
    """Result-store key of the analysis of the SAE in ``folder`` (None when it has no weights).

    The weights' modification time and size are part of it, so a retrained
    or replaced SAE is never shown with the analysis of its predecessor.
    """
    from workbench.sae.io import WEIGHTS_FILE

    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        return None
    stamp = weights.stat()
    return result_key("sae", {"model": model, "layer": layer, "sae": folder.name,
                              "weights": [stamp.st_mtime_ns, stamp.st_size], "eval_seq": eval_seq,
                              "seq_len": seq_len})


def _token_text(model, ids) -> np.ndarray:
    ids = np.asarray(ids)
    unique, inverse = np.unique(ids, return_inverse=True)
    text = np.array([model.tokenizer.decode([int(i)]) for i in unique] + [""], dtype=object)[:-1]
    return text[inverse].reshape(ids.shape)


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


@torch.no_grad()
def prompt_features(sae, model, layer: int, text: str) -> xr.Dataset:
    """The features firing on each token of ``text`` and their DFA by source position.

    Returns ``activation`` (feature, pos) for the (at most ``MAX_PROMPT_FEATURES``)
    features with the largest activation anywhere, ``dfa`` (feature, dest, src)
    from :func:`workbench.sae.dfa`, and the decoded ``token`` (pos).
    """
    from workbench.hooks.cache import compute_hooks
    from workbench.models import tokenize
    from workbench.sae import dfa, hook_z_name

    if not isinstance(text, str) or not text.strip():
        raise ValueError("prompt: expected some text to analyse, got an empty prompt")
    n_ids = len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
    tokens = tokenize(model, text, seq_len=min(n_ids + 1, MAX_PROMPT_TOKENS, model.cfg.n_ctx))
    hook = hook_z_name(layer)
    z = torch.from_numpy(compute_hooks(model, tokens, [hook], "float32")[hook])
    acts = sae.encode(z.reshape(tokens.shape[1], -1)).T  # [d_sae, pos]
    peak = acts.max(1).values
    features = [int(f) for f in peak.argsort(descending=True)[:MAX_PROMPT_FEATURES] if peak[f] > 0]
    n_pos = tokens.shape[1]
    if features:
        attribution = dfa(sae, model, tokens, layer, features).isel(seq=0).values
    else:
        attribution = np.zeros((0, n_pos, n_pos))
    return xr.Dataset(
        {"activation": (("feature", "pos"), acts[features].numpy()),
         "dfa": (("feature", "dest", "src"), attribution.astype(np.float32)),
         "token": ("pos", _token_text(model, tokens[0].cpu().numpy()))},
        coords={"feature": features, "pos": np.arange(n_pos), "dest": np.arange(n_pos), "src": np.arange(n_pos)},
        attrs={"prompt": text, "layer": layer, "truncated": int(n_ids + 1 > n_pos)})


_PROMPT_DIMS = {"feature": "prompt_feature", "pos": "prompt_pos", "dest": "prompt_dest", "src": "prompt_src"}


def _pack_prompt(prompt: xr.Dataset) -> xr.Dataset:
    return prompt.rename({name: f"prompt_{name}" for name in prompt.data_vars}).rename(_PROMPT_DIMS)


def unpack_prompt(ds: xr.Dataset) -> xr.Dataset:
    """The default prompt's :func:`prompt_features` stored inside a page result."""
    names = [v for v in ds.data_vars if v.startswith("prompt_")]
    prompt = ds[names].rename({v: v.removeprefix("prompt_") for v in names})
    return prompt.rename({new: old for old, new in _PROMPT_DIMS.items()}).assign_attrs(prompt=ds.attrs["prompt"])


def sae_dashboard(sae, model, layer: int, tokens: torch.Tensor, *,
                  progress: Callable[[float, str], None] | None = None) -> xr.Dataset:
    """Everything the page shows for one SAE, in one Dataset the result store keeps.

    Per feature: the :func:`~workbench.sae.top_activations` examples and logit
    effects, ``head_share`` (:func:`~workbench.sae.head_attribution`),
    ``family_label`` (:func:`~workbench.sae.feature_families`), ``dfa_top``
    (dest, src): the DFA on the sequence of its top example, and
    ``feature_activation`` over every token. Per layer: ``head_counts`` (head,
    family) and the :func:`~workbench.sae.evaluate` metrics. Plus the default
    prompt (``prompt_*``, see :func:`unpack_prompt`). ``progress(fraction, message)``
    is called between stages (and may raise to stop).
    """
    from workbench.hooks.cache import compute_hooks
    from workbench.sae import dfa, evaluate, feature_families, head_attribution, hook_z_name, top_activations

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
    hook = hook_z_name(layer)
    z = torch.from_numpy(compute_hooks(model, tokens, [hook], "float32")[hook])
    with torch.no_grad():
        acts = sae.encode(z.reshape(-1, sae.cfg.d_in)).T.numpy()
    step(0.95, "the example prompt")
    prompt = prompt_features(sae, model, layer, DEFAULT_PROMPT)
    ds = xr.merge([
        top,
        head_attribution(sae, model.cfg.n_heads).rename("head_share").to_dataset(),
        xr.Dataset({"family_label": families["label"], "head_counts": families["head_counts"]}),
        evaluation,
        xr.Dataset({"dfa_top": (("feature", "dest", "src"), dfa_top),
                    "feature_activation": (("feature", "token_index"), acts.astype(np.float32))}),
        _pack_prompt(prompt),
    ], combine_attrs="drop", compat="override")
    ds = ds.drop_vars([c for c in ("layer",) if c in ds.coords])
    scalars = ("ce_loss_recovered", "explained_variance", "l0", "dead_fraction")
    return ds.assign_attrs(layer=layer, hook_name=hook, d_sae=sae.cfg.d_sae, architecture=sae.cfg.architecture,
                           n_tokens=int(tokens.numel()), prompt=DEFAULT_PROMPT,
                           **{name: float(evaluation[name]) for name in scalars})


def _history_dataset(rows: list[tuple], prefix: str = "") -> xr.Dataset:
    steps, tokens, fvu, l0 = (np.array(col) for col in zip(*rows)) if rows else ([],) * 4
    return xr.Dataset({f"{prefix}fvu": (f"{prefix}step", fvu), f"{prefix}l0": (f"{prefix}step", l0)},
                      coords={f"{prefix}step": steps, f"{prefix}tokens": (f"{prefix}step", tokens)})


def training_data(ds: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset | None] | None:
    """``(history, held_out)`` for :func:`workbench.figures.sae.training_curves` from a page result, if trained here."""
    if "train_fvu" not in ds:
        return None
    history = ds[["train_fvu", "train_l0"]].rename({"train_fvu": "fvu", "train_l0": "l0", "train_step": "step",
                                                     "train_tokens": "tokens"})
    held = None
    if "probe_fvu" in ds:
        held = ds[["probe_fvu", "probe_l0"]].rename({"probe_fvu": "fvu", "probe_l0": "l0", "probe_step": "step",
                                                     "probe_tokens": "tokens"})
    return history, held


def feature_figure(ds: xr.Dataset, feature: int) -> go.Figure:
    """The dashboard of ``feature``: activation histogram, DFA on its top example, head shares, logit effects."""
    from workbench.figures.sae import feature_dashboard

    top_dfa = ds["dfa_top"].sel(feature=[feature]).expand_dims("seq", axis=1)
    fig = feature_dashboard(ds, feature, head_share=ds["head_share"], dfa=top_dfa,
                            firing=ds["feature_activation"].sel(feature=feature))
    family = str(ds["family_label"].sel(feature=feature).values)
    peak = float(ds["activation"].sel(feature=feature).max())
    return fig.update_layout(title=f"feature {feature}: {family.replace('_', ' ')}, top activation {peak:.3g}")


def default_feature(ds: xr.Dataset) -> int:
    """The feature with the largest top activation."""
    return int(np.argmax(ds["activation"].isel(example=0).fillna(-np.inf).values))


def sae_figures(ds: xr.Dataset, feature: int | None = None, token: int | None = None) -> dict[str, go.Figure]:
    """The page's figures for a stored :func:`sae_dashboard` result.

    Examples
    --------
    >>> import tempfile
    >>> page = SAEPage(cache_dir=tempfile.mkdtemp(), d_sae=32, k=4, n_seq=16, seq_len=16, n_tokens=512,
    ...                eval_seq=4)
    >>> _ = page.train(); _ = page.wait(300)
    >>> list(sae_figures(page.result))
    ['training', 'feature', 'prompt', 'token_dfa', 'families', 'firing']
    """
    from workbench.figures.sae import firing_histogram, head_family_matrix, prompt_heatmap, token_dfa, training_curves

    prompt = unpack_prompt(ds)
    feature = default_feature(ds) if feature is None else feature
    token = default_token(prompt) if token is None else token
    figures = {}
    curves = training_data(ds)
    if curves is not None:
        figures["training"] = training_curves(*curves)
    layer = int(ds.attrs["layer"])
    figures.update({"feature": feature_figure(ds, feature), "prompt": prompt_heatmap(prompt),
                    "token_dfa": token_dfa(prompt, token),
                    "families": head_family_matrix(ds[["head_counts"]].expand_dims(layer=[layer]), layer),
                    "firing": firing_histogram(ds)})
    return figures


def default_token(prompt: xr.Dataset) -> int:
    """The position (after BOS) where the prompt's features fire most."""
    if prompt.sizes["feature"] == 0 or prompt.sizes["pos"] < 2:
        return prompt.sizes["pos"] - 1
    return 1 + int(np.argmax(prompt["activation"].values[:, 1:].sum(0)))


class FigureSlots:
    """Plotly panes in fixed places (unlike :func:`~widgets.template.figure_grid`), each with its export
    control and an optional click handler, updated only when its figure changes.

    A pane is created the first time its figure exists; afterwards a new
    figure object replaces the pane's, and an unchanged one (the same
    memoised object, see :meth:`Page.figure`) sends nothing to the browser;
    the changes of one redraw go out in one message. A figure that goes away
    leaves a blank figure behind: hiding or removing a Plotly pane makes its
    pending resize fail in the browser.
    """

    def __init__(self, page: Page, names: list[str], on_click: dict[str, Callable[[dict], None]] | None = None):
        self.page = page
        self.holders = {name: pn.Column(sizing_mode="stretch_width") for name in names}
        self.panes: dict[str, pn.pane.Plotly] = {}
        self.on_click = on_click or {}

    def __getitem__(self, name: str) -> pn.Column:
        return self.holders[name]

    def redraw(self, figures: dict[str, go.Figure]) -> None:
        from widgets.template import export_control, plotly_pane

        with pn.io.hold():
            for name, holder in self.holders.items():
                fig, pane = figures.get(name, _BLANK if name in self.panes else None), self.panes.get(name)
                if fig is None or (pane is not None and pane.object is fig):
                    continue
                if pane is None:
                    pane = self.panes[name] = plotly_pane(fig, name)
                    pane.css_classes = [*pane.css_classes, f"wb-figure-{name}"]
                    if name in self.on_click:
                        pane.param.watch(lambda event, n=name: self.on_click[n](event.new), "click_data")
                    holder.objects = [pane, export_control(self.page, name)]
                else:
                    pane.param.update(object=fig, **_pane_size(fig))


_BLANK = go.Figure(layout=dict(height=60, width=360, xaxis=dict(visible=False), yaxis=dict(visible=False),
                               template="simple_white", annotations=[dict(text="nothing to show for this selection",
                                                                          showarrow=False)]))


def _pane_size(fig: go.Figure) -> dict:
    """Pane size of a figure, as :func:`widgets.template.plotly_pane` sizes new panes."""
    height = int(fig.layout.height or 450)
    if fig.layout.width:
        return {"sizing_mode": "fixed", "width": int(fig.layout.width), "height": height}
    return {"sizing_mode": "stretch_width", "height": height}


def query_settings(page: param.Parameterized, args: dict, names: tuple[str, ...]) -> dict:
    """Settings named in a URL query (``/sae?layer=0&d_sae=64``), parsed by each parameter's type.

    Examples
    --------
    >>> query_settings(SAEPage, {"layer": [b"0"], "model": [b"tiny-gelu-2l"], "other": [b"1"]}, ("model", "layer"))
    {'model': 'tiny-gelu-2l', 'layer': 0}
    """
    out = {}
    for name in names:
        if name not in args:
            continue
        raw = args[name][-1] if isinstance(args[name], (list, tuple)) else args[name]
        raw = raw.decode() if isinstance(raw, bytes) else str(raw)
        kind = page.param[name]
        try:
            out[name] = int(raw) if isinstance(kind, param.Integer) else \
                float(raw) if isinstance(kind, param.Number) else raw
        except ValueError:
            raise ValueError(f"{name}: expected a number in the URL query, got {raw!r}") from None
    return out


def clicked_point(data: dict | None) -> dict | None:
    """The first point of a Plotly click event, or None.

    Examples
    --------
    >>> clicked_point({"points": [{"x": 3, "y": "f2"}]})
    {'x': 3, 'y': 'f2'}
    """
    points = (data or {}).get("points") or []
    return points[0] if points else None


class SAEPage(Page):
    """Model, layer and SAE; the feature, family and prompt being looked at; training settings."""

    title = "Attention SAEs"
    slug = "sae"

    model = param.String(default="tiny-attn-2l", doc="Bundled model name or model folder.")
    layer = param.Integer(default=1, doc="Layer whose attn.hook_z the SAE reads.")
    sae = param.Selector(default=None, objects=[], doc="A saved SAE of this model and layer.")
    architecture = param.Selector(default="topk", objects=list(ARCHITECTURES))
    d_sae = param.Integer(default=256, bounds=(4, 16384), doc="Latents of a new SAE.")
    k = param.Integer(default=8, bounds=(1, 512), doc="Active latents per token (topk, batchtopk).")
    l1_coefficient = param.Number(default=1.0, bounds=(0.0, None), doc="Sparsity penalty (standard, jumprelu).")
    lr = param.Number(default=3e-3, bounds=(1e-6, 1.0))
    n_seq = param.Integer(default=256, bounds=(1, 100_000), doc="Corpus windows the SAE trains on.")
    seq_len = param.Integer(default=64, bounds=(8, 256), doc="Tokens per window.")
    n_tokens = param.Integer(default=32_768, bounds=(BATCH_SIZE, None), doc="Training budget in tokens.")
    eval_seq = param.Integer(default=32, bounds=(1, 1024), doc="Held-out windows searched for examples.")
    seed = param.Integer(default=0)
    feature = param.Integer(default=0, doc="Feature shown in the browser.")
    family = param.Selector(default="any", objects=["any", *FAMILIES], doc="Browse features of one family.")
    matches = param.List(default=[], doc="Features of `family`, most active first.")
    prompt = param.String(default=DEFAULT_PROMPT, doc="Text whose features the prompt explorer shows.")
    token = param.Integer(default=0, doc="Prompt position whose DFA by source is shown.")
    result = param.Parameter(default=None, doc="sae_dashboard Dataset of the chosen SAE.")
    prompt_result = param.Parameter(default=None, doc="prompt_features Dataset of `prompt`.")

    def __init__(self, cache_dir=None, **params: Any):
        super().__init__(cache_dir=cache_dir, **params)
        self._live: tuple = ()  # (step, tokens, fvu, l0) of the held-out curve while an SAE trains
        self._shown, self._token = self.feature, self.token  # the last valid choices, which the figures show
        self._feature_chosen = "feature" in params  # else each SAE opens on its most active feature
        self._quiet = False  # set while the page itself picks the SAE, which needs no reopening
        self.refresh()
        self._load_cached()

    # ----- where things are ---------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The SAE folder of the current model and layer."""
        return sae_folder(self.cache_dir, self.model, self.layer)

    def refresh(self) -> list[str]:
        """Re-list the saved SAEs of the model and layer; keep the choice when it still exists."""
        names = saved_saes(self.folder)
        self.param.sae.objects = list(names)  # param may add None to the list it is given
        self._pick_sae(self.sae if self.sae in names else (names[-1] if names else None))
        return names

    def _pick_sae(self, name: str | None) -> None:
        self._quiet = True
        try:
            self.sae = name
        finally:
            self._quiet = False

    def train_settings(self) -> dict:
        """The settings that define a new SAE (and its folder name)."""
        return {name: getattr(self, name) for name in TRAIN_SETTINGS}

    def _sae_name(self, settings: dict) -> str:
        sparsity = f"k{settings['k']}" if settings["architecture"] in ("topk", "batchtopk") \
            else f"l1_{settings['l1_coefficient']:g}"
        digest = result_key("sae-train", {"model": self.model, "layer": self.layer, **settings})[-8:]
        return f"{settings['architecture']}-d{settings['d_sae']}-{sparsity}-{digest}"

    def _key(self) -> str | None:
        if self.sae is None:
            return None
        return analysis_key(self.folder / self.sae, self.model, self.layer, self.eval_seq, self.seq_len)

    def _load_cached(self) -> bool:
        key = self._key()
        ds = None if key is None else self.store.load(key)
        if ds is not None:
            self._show(ds)
        return ds is not None

    # ----- selection ----------------------------------------------------------------------------
    @param.depends("model", "layer", watch=True)
    def _target_changed(self) -> None:
        self.refresh()
        self.open()

    @param.depends("sae", watch=True)
    def _sae_changed(self) -> None:
        if not self._quiet:
            self.open()

    def open(self) -> Job | None:
        """Show the chosen SAE: from the result store, else analyse it; without an SAE, check model and layer."""
        self.result, self.prompt_result, self._live = None, None, ()
        self.revision += 1
        if self._load_cached():
            self.status = "loaded from cache"
            return None
        return self.analyse() if self.sae is not None else self.prepare()

    def prepare(self) -> Job | None:
        """Load the model and check the layer in the background; says so when there is no SAE yet."""
        name, layer = self.model, self.layer

        def work(job: Job) -> int:
            job.report(None, f"loading {name}")
            return _check_layer(_model(name), layer)

        def done(_: int) -> None:
            self.status = f"no SAE for blocks.{layer}.attn.hook_z of {name} yet: press Train"

        return self.start(work, f"loading {name}", done)

    def analyse(self) -> Job | None:
        """Compute (in the background) and save everything the page shows for the chosen SAE."""
        if self.sae is None:
            self.message = "sae: train an SAE or choose a saved one first"
            return None
        name, layer, folder, key = self.model, self.layer, self.folder / self.sae, self._key()
        eval_seq, seq_len = self.eval_seq, self.seq_len

        def work(job: Job) -> xr.Dataset:
            from workbench.sae import load_sae

            job.report(None, f"loading {name} and {folder.name}")
            model = _model(name)
            _check_layer(model, layer)
            sae = load_sae(folder)
            ds = self._analysis(job, 0.0, model, sae, folder.name, layer, eval_seq, seq_len,
                                _stored_history(folder))
            self.store.save(key, ds)
            return ds

        return self.start(work, f"analysing {self.sae}", self._show)

    @staticmethod
    def _analysis(job: Job, start: float, model, sae, sae_name: str, layer: int, eval_seq: int, seq_len: int,
                  history: xr.Dataset | None) -> xr.Dataset:
        def progress(fraction: float, message: str) -> None:
            job.check()
            job.report(start + (1 - start) * fraction, f"analysing {sae_name}: {message}")

        with _MODEL_LOCK:
            tokens = analysis_tokens(model, eval_seq, seq_len)
            ds = sae_dashboard(sae, model, layer, tokens, progress=progress)
        ds = ds.assign_attrs(model=str(model.workbench_id), sae=sae_name)
        return ds if history is None else xr.merge([ds, history], combine_attrs="override")

    def train(self) -> Job | None:
        """Train a new SAE with the current settings (live loss and L0), save it, then analyse it.

        The held-out curve is measured every few steps on ``PROBE_SEQ``
        held-out windows; cancel stops at the next step and saves nothing.
        """
        settings, name, layer, cache_dir = self.train_settings(), self.model, self.layer, self.cache_dir
        if self.n_seq * self.seq_len < BATCH_SIZE:
            self.message = (f"n_seq: expected n_seq x seq_len >= {BATCH_SIZE} training tokens (one batch), got "
                            f"{self.n_seq} x {self.seq_len} = {self.n_seq * self.seq_len}")
            return None
        sae_name = self._sae_name(settings)
        folder, eval_seq = self.folder / sae_name, self.eval_seq
        live: list[tuple] = []

        def work(job: Job) -> tuple[str, xr.Dataset]:
            from workbench.hooks import HookCache
            from workbench.hooks.cache import compute_hooks
            from workbench.models import corpus_tokens
            from workbench.sae import hook_z_name, save_sae
            from workbench.sae import train as train_sae

            job.report(None, f"loading {name}")
            model = _model(name)
            _check_layer(model, layer)
            hook = hook_z_name(layer)
            job.report(None, f"caching {hook} on {settings['n_seq']} x {settings['seq_len']} tokens")
            with _MODEL_LOCK:
                tokens = corpus_tokens(model, settings["n_seq"], settings["seq_len"], split="train")
                acts = HookCache(cache_dir / "hooks").activations(model, tokens, [hook], progress=False)[hook]
                probe_tokens = corpus_tokens(model, PROBE_SEQ, settings["seq_len"])
                probe = torch.from_numpy(compute_hooks(model, probe_tokens, [hook], "float32")[hook])
            probe = probe.reshape(-1, probe.shape[-2] * probe.shape[-1])
            variance = (probe - probe.mean(0)).pow(2).sum(-1).mean()
            n_steps = max(1, settings["n_tokens"] // BATCH_SIZE)
            every = max(1, n_steps // N_PROBES)
            sparse_k = settings["architecture"] in ("topk", "batchtopk")

            def measure(step: int, sae) -> None:
                job.check()
                if step % every and step != n_steps:
                    return
                with torch.no_grad():
                    f = sae.encode(probe)
                    fvu = float((sae.decode(f) - probe).pow(2).sum(-1).mean() / variance)
                    l0 = float((f > 0).sum(-1).float().mean())
                live.append((step, step * BATCH_SIZE, fvu, l0))
                job.publish(tuple(live))
                job.report(0.6 * step / n_steps, f"training: step {step}/{n_steps}, held-out FVU {fvu:.3f}, "
                                                  f"L0 {l0:.1f}")

            sae, history = train_sae(acts, d_sae=settings["d_sae"], architecture=settings["architecture"],
                                     k=settings["k"] if sparse_k else None,
                                     l1_coefficient=None if sparse_k else settings["l1_coefficient"],
                                     lr=settings["lr"], batch_size=BATCH_SIZE, n_tokens=settings["n_tokens"],
                                     seed=settings["seed"], progress=False, device="cpu", callback=measure,
                                     model_name=name)
            save_sae(sae, folder)
            stored = _save_history(folder, history, live)
            ds = self._analysis(job, 0.6, model, sae, sae_name, layer, eval_seq, settings["seq_len"], stored)
            self.store.save(analysis_key(folder, name, layer, eval_seq, settings["seq_len"]), ds)
            return sae_name, ds

        def done(out: tuple[str, xr.Dataset]) -> None:
            sae_name, ds = out
            if (name, layer) != (self.model, self.layer):
                return  # the user moved on; the SAE is saved and listed there
            self.refresh()
            self._pick_sae(sae_name)
            self._show(ds)

        job = self.start(work, f"training {sae_name}", done)
        if job is not None:
            self._live = ()
        return job

    @classmethod
    def warm_up(cls, cache_dir) -> threading.Thread:
        """Before the first visitor: load the default model in a thread, so the first job starts at once."""
        super().warm_up(cache_dir)
        thread = threading.Thread(target=_model, args=(cls.param.model.default,), daemon=True,
                                  name="workbench-sae-warm-up")
        thread.start()
        return thread

    def on_open(self) -> None:
        """Served page opened: take settings from the URL query, then analyse the chosen SAE, or train the
        (small, default) one when there is none."""
        settings = self.attempt(lambda: query_settings(self, pn.state.session_args, QUERY))
        if settings:
            self.attempt(lambda: self.param.update(**settings))
        if self.result is None and not self.running and not self.message:
            if self.sae is not None:
                self.analyse()
            else:
                self.train()

    def on_partial(self, partial: tuple) -> None:
        """New held-out points of the SAE being trained: redraw the live curve."""
        self._live = partial
        self.revision += 1

    def wait(self, timeout: float = 300.0) -> "SAEPage":
        """Block until no job runs, including those a finished job starts (tests and scripts)."""
        super().wait(timeout)
        while self.running:
            super().wait(timeout)
        return self

    # ----- showing results ----------------------------------------------------------------------
    def _show(self, ds: xr.Dataset) -> None:
        self.forget_figures()
        with param.parameterized.discard_events(self):
            self.result = ds
        if not (self._feature_chosen and 0 <= self.feature < ds.sizes["feature"]):
            chosen, self.feature = self._feature_chosen, default_feature(ds)  # the widget follows
            self._feature_chosen = chosen
        self._shown = self.feature
        self.matches = self._matches(ds)
        if self.prompt == ds.attrs["prompt"]:
            self._set_prompt(unpack_prompt(ds))
        else:
            self.run_prompt()
        self.status = (f"{ds.attrs['sae']}: CE loss recovered {ds.attrs['ce_loss_recovered']:.2f}, explained "
                       f"variance {ds.attrs['explained_variance']:.2f}, L0 {ds.attrs['l0']:.1f}, "
                       f"dead {100 * ds.attrs['dead_fraction']:.0f}%")
        self.revision += 1

    def _matches(self, ds: xr.Dataset) -> list[int]:
        order = np.argsort(-ds["activation"].isel(example=0).fillna(0).values, kind="stable")
        labels = ds["family_label"].values
        return [int(f) for f in order if self.family == "any" or labels[f] == self.family]

    @param.depends("family", watch=True)
    def _family_changed(self) -> None:
        if self.result is None:
            return
        self.matches = self._matches(self.result)
        if self.matches and self.feature not in self.matches:
            self.feature = self.matches[0]

    @param.depends("feature", watch=True)
    def _feature_changed(self) -> None:
        self._feature_chosen = True
        if self.result is None:
            return
        n = self.result.sizes["feature"]
        if not 0 <= self.feature < n:
            self.message = f"feature: expected an index in [0, {n}) of {self.sae}, got {self.feature}"
            return
        self.message, self._shown = "", self.feature
        self.revision += 1

    @param.depends("prompt", watch=True)
    def _prompt_changed(self) -> None:
        self.run_prompt()

    def run_prompt(self) -> Job | None:
        """Features and DFA of :attr:`prompt` (a lookup for the stored example prompt, else a short job)."""
        text = self.prompt
        if not text.strip():
            self.message = "prompt: expected some text to analyse, got an empty prompt"
            return None
        if self.result is not None and text == self.result.attrs["prompt"]:
            self._set_prompt(unpack_prompt(self.result))
            return None
        if self.sae is None:
            self.message = "sae: train an SAE or choose a saved one before exploring a prompt"
            return None
        name, layer, folder = self.model, self.layer, self.folder / self.sae

        def work(job: Job) -> xr.Dataset:
            from workbench.sae import load_sae

            job.report(None, "features of the prompt")
            model, sae = _model(name), load_sae(folder)
            with _MODEL_LOCK:
                return prompt_features(sae, model, _check_layer(model, layer), text)

        return self.start(work, "prompt", self._set_prompt)

    def _set_prompt(self, prompt: xr.Dataset) -> None:
        with param.parameterized.discard_events(self):
            self.prompt_result = prompt
            self.token = self._token = default_token(prompt)
        if prompt.attrs.get("truncated"):
            self.status = f"prompt cut to its first {prompt.sizes['pos']} tokens"
        self.revision += 1

    @param.depends("token", watch=True)
    def _token_changed(self) -> None:
        if self.prompt_result is None:
            return
        n = self.prompt_result.sizes["pos"]
        if not 0 <= self.token < n:
            self.message = f"token: expected a position in [0, {n}) of the prompt, got {self.token}"
            return
        self.message, self._token = "", self.token
        self.revision += 1

    def click(self, figure: str, data: dict | None) -> None:
        """A click on a figure: a prompt token selects its DFA; a head x family cell selects the family."""
        point = clicked_point(data)
        if point is None:
            return
        if figure == "prompt":
            self.token = int(round(float(point["x"])))
        elif figure == "families" and point.get("x") in FAMILIES:
            self.family = point["x"]

    # ----- figures ------------------------------------------------------------------------------
    def figures(self) -> dict[str, go.Figure]:
        """Training curves, feature dashboard, prompt features and DFA, heads x families, firing."""
        from workbench.figures.sae import (
            firing_histogram,
            head_family_matrix,
            prompt_heatmap,
            token_dfa,
            training_curves,
        )

        ds, prompt, live, figures = self.result, self.prompt_result, self._live, {}
        if live and (self._training() or ds is None or training_data(ds) is None):
            history = _history_dataset(live)
            figures["training"] = self.figure(("training", "live", len(live)),
                                              lambda: training_curves(history.isel(step=slice(0, 0)), history))
        elif ds is not None and training_data(ds) is not None:
            figures["training"] = self.figure(("training",), lambda: training_curves(*training_data(ds)))
        if ds is not None:
            feature = self._shown
            figures["feature"] = self.figure(("feature", feature), lambda: feature_figure(ds, feature))
        if prompt is not None:
            token, text = self._token, prompt.attrs["prompt"]
            figures["prompt"] = self.figure(("prompt", text), lambda: prompt_heatmap(prompt))
            figures["token_dfa"] = self.figure(("token_dfa", text, token), lambda: token_dfa(prompt, token))
        if ds is not None:
            layer = int(ds.attrs["layer"])
            figures["families"] = self.figure(
                ("families",), lambda: head_family_matrix(ds[["head_counts"]].expand_dims(layer=[layer]), layer))
            figures["firing"] = self.figure(("firing",), lambda: firing_histogram(ds))
        return figures

    def _training(self) -> bool:
        return self.running and self._job is not None and self._job.name.startswith("training")

    def examples_html(self) -> str:
        """Token-highlighted top and quantile examples of the shown feature."""
        from workbench.figures.sae import feature_examples_html

        if self.result is None:
            return ""
        return feature_examples_html(self.result, self._shown, max_examples=2 * N_EXAMPLES)

    # ----- view ---------------------------------------------------------------------------------
    def controls(self) -> list:
        from workbench.models import list_models

        choose = pn.Param(self.param, parameters=["model", "layer", "sae"], show_name=False, widgets={
            "model": {"type": pn.widgets.AutocompleteInput, "options": list_models(), "restrict": False,
                      "min_characters": 0, "case_sensitive": False, "css_classes": ["wb-model"]},
            "layer": {"type": pn.widgets.IntInput, "css_classes": ["wb-layer"]},
            "sae": {"css_classes": ["wb-sae"]}})
        analyse = pn.widgets.Button(label="Analyse", css_classes=["wb-analyse"], disabled=self.param.running)
        analyse.on_click(lambda _: self.analyse())
        browse = pn.Param(self.param, parameters=["feature", "family"], show_name=False, widgets={
            "feature": {"type": pn.widgets.IntInput, "css_classes": ["wb-feature"]},
            "family": {"css_classes": ["wb-family"]}})
        pick = pn.widgets.Select(name="features of the family", options=self.matches[:500], css_classes=["wb-match"])
        syncing = []  # options follow `matches` without choosing a feature

        def follow(event) -> None:
            syncing.append(True)
            try:
                pick.options = event.new[:500]
                pick.value = self.feature if self.feature in pick.options else (pick.options or [None])[0]
            finally:
                syncing.clear()

        def show(event) -> None:
            if event.new in pick.options and pick.value != event.new:
                syncing.append(True)
                try:
                    pick.value = event.new
                finally:
                    syncing.clear()

        self.param.watch(follow, "matches")
        self.param.watch(show, "feature")
        pick.param.watch(lambda e: None if syncing or e.new is None else setattr(self, "feature", e.new), "value")
        settings = pn.Param(self.param, parameters=[*TRAIN_SETTINGS, "eval_seq"], show_name=False,
                            widgets={name: pn.widgets.IntInput for name in
                                     ("d_sae", "k", "n_seq", "seq_len", "n_tokens", "eval_seq", "seed")})
        train = pn.widgets.Button(label="Train a new SAE", button_type="primary", css_classes=["wb-train"],
                                  disabled=self.param.running)
        train.on_click(lambda _: self.train())
        return [choose, analyse, pn.pane.Markdown("**Feature browser**"), browse, pick,
                pn.Card(settings, train, title="Train a new SAE", collapsed=True, sizing_mode="stretch_width")]

    def body(self) -> pn.viewable.Viewable:
        slots = FigureSlots(self, ["training", "feature", "prompt", "token_dfa", "families", "firing"],
                            on_click={"prompt": lambda data: self.click("prompt", data),
                                      "families": lambda data: self.click("families", data)})
        examples = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["wb-examples"])
        text = pn.widgets.TextAreaInput(value=self.prompt, rows=4, sizing_mode="stretch_width",
                                        css_classes=["wb-prompt"])
        explore = pn.widgets.Button(label="Explore prompt", css_classes=["wb-explore"], disabled=self.param.running)

        def submit(_) -> None:
            if text.value_input == self.prompt:
                self.run_prompt()
            else:
                self.prompt = text.value_input

        explore.on_click(submit)

        def redraw(*_) -> None:
            try:
                slots.redraw(self.figures())
                html = self.examples_html()
            except USER_ERRORS as err:
                self.fail(err)
                return
            if examples.object != html:
                examples.object = html

        self.param.watch(redraw, "revision")
        redraw()
        return pn.Column(
            pn.pane.Markdown("### Feature browser"), slots["feature"], examples,
            pn.pane.Markdown("### Prompt explorer"), text, explore, slots["prompt"], slots["token_dfa"],
            pn.pane.Markdown("### Heads x families"), slots["families"], slots["firing"],
            pn.pane.Markdown("### Training"), slots["training"],
            sizing_mode="stretch_width")


def _save_history(folder: Path, history: xr.Dataset, probes: list[tuple]) -> xr.Dataset:
    """Keep the training curves beside the SAE, as the page result stores them."""
    stored = _stored_history_from(history, probes)
    (folder / HISTORY_FILE).write_text(json.dumps(stored.to_dict(data="list")))
    return stored


def _stored_history_from(history: xr.Dataset, probes: list[tuple]) -> xr.Dataset:
    train = xr.Dataset({"train_fvu": ("train_step", history["fvu"].values),
                        "train_l0": ("train_step", history["l0"].values)},
                       coords={"train_step": history["step"].values,
                               "train_tokens": ("train_step", history["tokens"].values)})
    return xr.merge([train, _history_dataset(probes, prefix="probe_")])


def _stored_history(folder: Path) -> xr.Dataset | None:
    path = folder / HISTORY_FILE
    return xr.Dataset.from_dict(json.loads(path.read_text())) if path.is_file() else None
