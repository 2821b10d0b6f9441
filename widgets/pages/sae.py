"""Attention SAEs: choose model, layer and SAE; browse features, explore a prompt, train a new SAE.

Everything a click shows is computed once, in a background job
(:func:`workbench.sae.sae_dashboard`), and saved with the result store: each
feature's examples, DFA on its top example, head shares and logit effects,
the feature families, and the features and DFA of the prompt. Selecting a
feature or clicking a token is then a lookup that redraws one small figure.
SAEs are kept in the SAELens folder layout (:func:`workbench.sae.save_sae`)
under ``<cache>/saes/<model>/layer_<L>/``, so any SAELens-layout folder
dropped there shows up too.

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
import re
import threading
from pathlib import Path
from typing import Any, Callable, Hashable

import panel as pn
import param
import plotly.graph_objects as go
import xarray as xr

from widgets.jobs import Job
from widgets.pages.base import USER_ERRORS, Page
from widgets.results import result_key
from widgets.template import FigureSlots, clicked_point, linked_select
from workbench.sae.browse import (
    DEFAULT_PROMPT,
    N_EXAMPLES,
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
from workbench.sae.features import FAMILIES
from workbench.sae.history import (
    held_out_curve,
    load_training_record,
    save_training_record,
    train_with_held_out,
    training_history,
)

ARCHITECTURES = ("topk", "batchtopk", "standard", "jumprelu")
TRAIN_SETTINGS = ("architecture", "d_sae", "k", "l1_coefficient", "lr", "n_seq", "seq_len", "n_tokens", "seed")
QUERY = ("model", "layer", "sae", "feature", "family", *TRAIN_SETTINGS, "eval_seq")  # settable from the URL
BATCH_SIZE = 256
N_PROBES = 40  # held-out measurements while training
PROBE_SEQ = 8  # held-out windows those are measured on

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


def feature_figure(ds: xr.Dataset, feature: int) -> go.Figure:
    """The dashboard of ``feature``: activation histogram, DFA on its top example, head shares, logit effects."""
    from workbench.figures.sae import feature_dashboard

    top_dfa = ds["dfa_top"].sel(feature=[feature]).expand_dims("seq", axis=1)
    fig = feature_dashboard(ds, feature, head_share=ds["head_share"], dfa=top_dfa,
                            firing=ds["feature_activation"].sel(feature=feature))
    family = str(ds["family_label"].sel(feature=feature).values)
    peak = float(ds["activation"].sel(feature=feature).max())
    return fig.update_layout(title=f"feature {feature}: {family.replace('_', ' ')}, top activation {peak:.3g}")


def _figure_builders(ds: xr.Dataset | None, prompt: xr.Dataset | None, feature: int,
                     token: int) -> dict[str, tuple[Hashable, Callable[[], go.Figure]]]:
    """``{name: (key, build)}`` of the figures of a stored result and a prompt, in page order; each key names
    exactly the choices its figure depends on."""
    from workbench.figures.sae import firing_histogram, head_family_matrix, prompt_heatmap, token_dfa, training_curves

    builders = {}
    curves = None if ds is None else training_history(ds)
    if curves is not None:
        builders["training"] = (("training",), lambda: training_curves(*curves))
    if ds is not None:
        builders["feature"] = (("feature", feature), lambda: feature_figure(ds, feature))
    if prompt is not None:
        text = prompt.attrs["prompt"]
        builders["prompt"] = (("prompt", text), lambda: prompt_heatmap(prompt))
        builders["token_dfa"] = (("token_dfa", text, token), lambda: token_dfa(prompt, token))
    if ds is not None:
        layer = int(ds.attrs["layer"])
        builders["families"] = (("families",), lambda: head_family_matrix(
            ds[["head_counts"]].expand_dims(layer=[layer]), layer))
        builders["firing"] = (("firing",), lambda: firing_histogram(ds))
    return builders


def sae_figures(ds: xr.Dataset, feature: int | None = None, token: int | None = None) -> dict[str, go.Figure]:
    """The page's figures for a stored :func:`~workbench.sae.sae_dashboard` result.

    Examples
    --------
    >>> import tempfile
    >>> page = SAEPage(cache_dir=tempfile.mkdtemp(), d_sae=32, k=4, n_seq=16, seq_len=16, n_tokens=512,
    ...                eval_seq=4)
    >>> _ = page.train(); _ = page.wait(300)
    >>> list(sae_figures(page.result))
    ['training', 'feature', 'prompt', 'token_dfa', 'families', 'firing']
    """
    prompt = unpack_prompt(ds)
    feature = most_active_feature(ds) if feature is None else feature
    token = most_active_token(prompt) if token is None else token
    return {name: build() for name, (_, build) in _figure_builders(ds, prompt, feature, token).items()}


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
                                load_training_record(folder))
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
        n_steps = max(1, settings["n_tokens"] // BATCH_SIZE)
        sparse_k = settings["architecture"] in ("topk", "batchtopk")

        def work(job: Job) -> tuple[str, xr.Dataset]:
            from workbench.hooks import HookCache
            from workbench.models import corpus_tokens
            from workbench.sae import hook_z_name, save_sae

            job.report(None, f"loading {name}")
            model = _model(name)
            _check_layer(model, layer)
            hook = hook_z_name(layer)
            job.report(None, f"caching {hook} on {settings['n_seq']} x {settings['seq_len']} tokens")
            with _MODEL_LOCK:
                tokens = corpus_tokens(model, settings["n_seq"], settings["seq_len"], split="train")
                acts = HookCache(cache_dir / "hooks").activations(model, tokens, [hook], progress=False)[hook]
                probe = hook_z_cat(model, corpus_tokens(model, PROBE_SEQ, settings["seq_len"]), layer)

            def measured(points: tuple) -> None:
                step, _, fvu, l0 = points[-1]
                job.publish(points)
                job.report(0.6 * step / n_steps, f"training: step {step}/{n_steps}, held-out FVU {fvu:.3f}, "
                                                  f"L0 {l0:.1f}")

            sae, record = train_with_held_out(
                acts, probe, n_tokens=settings["n_tokens"], batch_size=BATCH_SIZE, n_points=N_PROBES,
                callback=lambda step, sae: job.check(), on_point=measured, d_sae=settings["d_sae"],
                architecture=settings["architecture"], k=settings["k"] if sparse_k else None,
                l1_coefficient=None if sparse_k else settings["l1_coefficient"], lr=settings["lr"],
                seed=settings["seed"], progress=False, device="cpu", model_name=name)
            save_sae(sae, folder)
            save_training_record(folder, record)
            ds = self._analysis(job, 0.6, model, sae, sae_name, layer, eval_seq, settings["seq_len"], record)
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
        return cls.warm_up_in_background(cache_dir, _model, cls.param.model.default)

    def on_open(self) -> None:
        """Served page opened: take settings from the URL query, then analyse the chosen SAE, or train the
        (small, default) one when there is none."""
        self.apply_query(QUERY)
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
        """:meth:`Page.wait`, allowing for training and analysis (tests and scripts)."""
        return super().wait(timeout)

    # ----- showing results ----------------------------------------------------------------------
    def _show(self, ds: xr.Dataset) -> None:
        self.forget_figures()
        with param.parameterized.discard_events(self):
            self.result = ds
        if not (self._feature_chosen and 0 <= self.feature < ds.sizes["feature"]):
            chosen, self.feature = self._feature_chosen, most_active_feature(ds)  # the widget follows
            self._feature_chosen = chosen
        self._shown = self.feature
        self.matches = family_features(ds, self.family)
        if self.prompt == ds.attrs["prompt"]:
            self._set_prompt(unpack_prompt(ds))
        else:
            self.run_prompt()
        self.status = (f"{ds.attrs['sae']}: CE loss recovered {ds.attrs['ce_loss_recovered']:.2f}, explained "
                       f"variance {ds.attrs['explained_variance']:.2f}, L0 {ds.attrs['l0']:.1f}, "
                       f"dead {100 * ds.attrs['dead_fraction']:.0f}%")
        self.revision += 1

    @param.depends("family", watch=True)
    def _family_changed(self) -> None:
        if self.result is None:
            return
        self.matches = family_features(self.result, self.family)
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
            self.token = self._token = most_active_token(prompt)
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
        from workbench.figures.sae import training_curves

        live = self._live
        builders = _figure_builders(self.result, self.prompt_result, self._shown, self._token)
        if live and (self._training() or "training" not in builders):
            curve = held_out_curve(live)
            builders = {"training": (("training", "live", len(live)),
                                     lambda: training_curves(curve.isel(step=slice(0, 0)), curve)),
                        **{name: built for name, built in builders.items() if name != "training"}}
        return {name: self.figure(key, build) for name, (key, build) in builders.items()}

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
        pick = linked_select(self, "feature", "matches", name="features of the family", css_classes=["wb-match"])
        settings = pn.Param(self.param, parameters=[*TRAIN_SETTINGS, "eval_seq"], show_name=False,
                            widgets={name: pn.widgets.IntInput for name in
                                     ("d_sae", "k", "n_seq", "seq_len", "n_tokens", "eval_seq", "seed")})
        train = pn.widgets.Button(label="Train a new SAE", color="primary", css_classes=["wb-train"],
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

        def show_examples(*_) -> None:
            try:
                html = self.examples_html()
            except USER_ERRORS as err:
                self.fail(err)
                return
            if examples.object != html:
                examples.object = html

        self.param.watch(show_examples, "revision")
        show_examples()
        return pn.Column(
            pn.pane.Markdown("### Feature browser"), slots["feature"], examples,
            pn.pane.Markdown("### Prompt explorer"), text, explore, slots["prompt"], slots["token_dfa"],
            pn.pane.Markdown("### Heads x families"), slots["families"], slots["firing"],
            pn.pane.Markdown("### Training"), slots["training"],
            sizing_mode="stretch_width")
