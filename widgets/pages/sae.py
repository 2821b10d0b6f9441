"""Attention SAEs: choose model, layer and SAE; browse features, explore and steer a prompt, train a new SAE.

Everything a click shows is computed once, in a background job
(:func:`workbench.sae.sae_dashboard`), and saved with the result store: each
feature's examples, DFA on its top example, head shares and logit effects,
the feature families, and the features and DFA of the prompt. Selecting a
feature or clicking a token is then a lookup that redraws one small figure.
SAEs are kept in the SAELens folder layout (:func:`workbench.sae.save_sae`)
under ``<cache>/saes/<model>/layer_<L>/``, so any SAELens-layout folder
dropped there shows up too.

This module holds the page's state; the background work is in
:mod:`widgets.pages.sae_jobs`, the figures in :mod:`widgets.pages.sae_figures`
and the widgets in :mod:`widgets.pages.sae_layout`.

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

import contextlib
import functools
import math
import threading
from pathlib import Path
from typing import Any, Iterator

import panel as pn
import param
import plotly.graph_objects as go
import xarray as xr

from widgets.jobs import Job
from widgets.pages import sae_jobs, sae_layout
from widgets.pages.base import Page
from widgets.pages.sae_figures import figure_builders, live_training_builder, sae_figures
from widgets.pages.sae_jobs import ARCHITECTURES, BATCH_SIZE, TRAIN_SETTINGS, analysis_key, sae_folder
from widgets.template import clicked_point
from workbench.sae.browse import (
    DEFAULT_PROMPT,
    N_EXAMPLES,
    family_features,
    most_active_feature,
    most_active_token,
    saved_saes,
    unpack_prompt,
)
from workbench.sae.features import FAMILIES

__all__ = ["SAEPage", "sae_figures"]  # what widgets.app imports

QUERY = ("model", "layer", "sae", "feature", "family", *TRAIN_SETTINGS, "eval_seq")  # settable from the URL


class SAEPage(Page):
    """Model, layer and SAE; the feature, family and prompt being looked at; training settings."""

    title = "Attention SAEs"
    slug = "sae"
    summary = "Sparse autoencoders on attention outputs: train one, browse its features, steer with them."
    intro = ("Sparse autoencoders (SAEs) on a layer's attention output: how well they reconstruct it, and what each "
             "feature fires on. Try first: press **Train a new SAE** (a minute on a laptop), then browse features "
             "by family or type a prompt.")
    terms = ("l0", "fvu", "ce_loss_recovered", "dead", "dfa", "head_share", "feature_family", "logit_effect")
    help = {"model": "model", "layer": "sae_layer", "sae": "saved_sae", "architecture": "architecture",
            "d_sae": "d_sae", "k": "k", "l1_coefficient": "l1_coefficient", "lr": "learning_rate",
            "n_seq": "n_seq", "seq_len": "seq_len", "n_tokens": "n_tokens", "eval_seq": "eval_seq", "seed": "seed",
            "feature": "feature", "family": "feature_family", "prompt": "prompt", "token": "token",
            "steer_scale": "steer_scale", "steer_prompt": "steer_prompt"}

    model = param.String(default="tiny-attn-2l", doc="Bundled model name or model folder.")
    layer = param.Integer(default=1, doc="Layer whose attn.hook_z the SAE reads.")
    sae = param.Selector(default=None, objects=[], doc="A saved SAE of this model and layer.")
    architecture = param.Selector(default="topk", objects=list(ARCHITECTURES))
    d_sae = param.Integer(default=256, bounds=(4, 16384), doc="Latents of a new SAE.")
    k = param.Integer(default=8, bounds=(1, 512), doc="Active latents per token (topk, batchtopk, matryoshka).")
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
    steer_scale = param.Number(default=10.0, doc="Multiple of the feature's decoder row added at hook_z.")
    steer_prompt = param.String(default="import os\nimport", doc="Text the steered model continues.")
    result = param.Parameter(default=None, doc="sae_dashboard Dataset of the chosen SAE.")
    prompt_result = param.Parameter(default=None, doc="prompt_features Dataset of `prompt`.")
    steering = param.Parameter(default=None, doc="SteeringResult of the last steer run.")

    def __init__(self, cache_dir=None, **params: Any):
        super().__init__(cache_dir=cache_dir, **params)
        self._live: tuple = ()  # (step, tokens, fvu, l0) of the held-out curve while an SAE trains
        self._shown, self._token = self.feature, self.token  # the last valid choices, which the figures show
        self._feature_chosen = "feature" in params  # else each SAE opens on its most active feature
        self._held = 0  # > 0 inside _one_redraw
        self.refresh()
        self._load_cached()

    # ----- where things are ---------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The SAE folder of the current model and layer."""
        return sae_folder(self.cache_dir, self.model, self.layer)

    def refresh(self, choose: str | None = None) -> list[str]:
        """Re-list the saved SAEs of the model and layer; choose ``choose``, else keep the choice when it still
        exists, else take the last."""
        names = saved_saes(self.folder)
        keep = next((name for name in (choose, self.sae) if name in names), names[-1] if names else None)
        self._choose("sae", names, keep)
        return names

    def train_settings(self) -> dict:
        """The settings that define a new SAE (and its folder name)."""
        return {name: getattr(self, name) for name in TRAIN_SETTINGS}

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
        if not self._choosing:
            self.open()

    def open(self) -> Job | None:
        """Show the chosen SAE: from the result store, else analyse it; without an SAE, check model and layer."""
        self._live = ()
        if self._load_cached():  # replaces what is shown in one redraw
            self.status = "loaded from cache"
            return None
        self.result, self.prompt_result = None, None
        self._redraw()
        return self.analyse() if self.sae is not None else self.prepare()

    # ----- jobs ---------------------------------------------------------------------------------
    def prepare(self) -> Job | None:
        """Load the model and check the layer in the background; says so when there is no SAE yet."""
        name, layer = self.model, self.layer

        def done(_: int) -> None:
            self.status = f"no SAE for blocks.{layer}.attn.hook_z of {name} yet: press Train"

        return self.start(functools.partial(sae_jobs.load_and_check, model_name=name, layer=layer),
                          f"loading {name}", done)

    def analyse(self) -> Job | None:
        """Compute (in the background) and save everything the page shows for the chosen SAE."""
        if self.sae is None:
            self.message = "sae: train an SAE or choose a saved one first"
            return None
        work = functools.partial(sae_jobs.analyse, store=self.store, key=self._key(), model_name=self.model,
                                 layer=self.layer, folder=self.folder / self.sae, eval_seq=self.eval_seq,
                                 seq_len=self.seq_len)
        return self.start(work, f"analysing {self.sae}", self._show)

    def train(self) -> Job | None:
        """Train a new SAE with the current settings (live loss and L0), save it, then analyse it.

        The held-out curve is measured every few steps on ``PROBE_SEQ``
        held-out windows; cancel stops at the next step and saves nothing.
        """
        settings, name, layer = self.train_settings(), self.model, self.layer
        if self.n_seq * self.seq_len < BATCH_SIZE:
            self.message = (f"n_seq: expected n_seq x seq_len >= {BATCH_SIZE} training tokens (one batch), got "
                            f"{self.n_seq} x {self.seq_len} = {self.n_seq * self.seq_len}")
            return None
        folder = self.folder / sae_jobs.sae_name(name, layer, settings)
        work = functools.partial(sae_jobs.train, store=self.store, cache_dir=self.cache_dir, model_name=name,
                                 layer=layer, settings=settings, folder=folder, eval_seq=self.eval_seq)

        def done(ds: xr.Dataset) -> None:
            if (name, layer) != (self.model, self.layer):
                return  # the user moved on; the SAE is saved and listed there
            self.refresh(choose=folder.name)
            self._show(ds)

        job = self.start(work, f"training {folder.name}", done, share=str(folder))
        if job is not None:
            self._live = ()
        return job

    @classmethod
    def warm_up(cls, cache_dir) -> threading.Thread:
        """Before the first visitor: load the default model in a thread, so the first job starts at once."""
        return cls.warm_up_in_background(cache_dir, sae_jobs.shared_model, cls.param.model.default)

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
        self._redraw()

    def wait(self, timeout: float = 300.0) -> "SAEPage":
        """:meth:`Page.wait`, allowing for training and analysis (tests and scripts)."""
        return super().wait(timeout)

    # ----- showing results ----------------------------------------------------------------------
    def _redraw(self) -> None:
        """Redraw the figures (bump ``revision``): now, or once at the end of :meth:`_one_redraw`."""
        if not self._held:
            self.revision += 1

    @contextlib.contextmanager
    def _one_redraw(self) -> Iterator[None]:
        """Redraw once, at the end, for all the changes made inside."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            self._redraw()

    def _show(self, ds: xr.Dataset) -> None:
        self.forget_figures()
        with self._one_redraw():  # a new result, its feature and its prompt: every figure is drawn once
            with param.parameterized.discard_events(self):
                self.result, self.prompt_result, self.steering = ds, None, None  # nothing of the SAE shown before
            if not (self._feature_chosen and 0 <= self.feature < ds.sizes["feature"]):
                chosen, self.feature = self._feature_chosen, most_active_feature(ds)  # the widget follows
                self._feature_chosen = chosen
            self._shown = self.feature
            self.matches = family_features(ds, self.family)
            if self.prompt == ds.attrs["prompt"]:
                self._set_prompt(unpack_prompt(ds))
            else:
                self.run_prompt()
            recovered = ds.attrs["ce_loss_recovered"]  # NaN when ablating the layer barely moves the loss
            recovered = "n/a (ablation barely moves the loss)" if math.isnan(recovered) else f"{recovered:.2f}"
            self.status = (f"{ds.attrs['sae']}: CE loss recovered {recovered}, explained "
                           f"variance {ds.attrs['explained_variance']:.2f}, L0 {ds.attrs['l0']:.1f}, "
                           f"dead {100 * ds.attrs['dead_fraction']:.0f}%")

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
        self._redraw()

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
        work = functools.partial(sae_jobs.explore_prompt, model_name=self.model, layer=self.layer,
                                 folder=self.folder / self.sae, text=text)
        return self.start(work, "prompt", self._set_prompt)

    def steer(self) -> Job | None:
        """Steer along the shown feature by :attr:`steer_scale` on :attr:`steer_prompt` (a background job): the
        tokens that move and the continuations with and without steering."""
        text, feature, scale = self.steer_prompt, self._shown, self.steer_scale
        if not text.strip():
            self.message = "steer_prompt: expected some text to continue, got an empty prompt"
            return None
        if not math.isfinite(scale):
            self.message = f"steer_scale: expected a finite number, got {scale!r}"
            return None
        if self.sae is None or self.result is None:
            self.message = "sae: train an SAE or choose a saved one before steering"
            return None
        work = functools.partial(sae_jobs.steer_prompt, model_name=self.model, layer=self.layer,
                                 folder=self.folder / self.sae, feature=feature, scale=scale, text=text)
        return self.start(work, f"steering feature {feature}", self._set_steering)

    def _set_steering(self, steering) -> None:
        self.steering = steering
        self._redraw()

    def steering_html(self) -> str:
        """The continuations without and with steering, side by side (empty before the first run)."""
        from workbench.figures.sae_steering import continuation_html

        return "" if self.steering is None else continuation_html(self.steering)

    def _set_prompt(self, prompt: xr.Dataset) -> None:
        with param.parameterized.discard_events(self):
            self.prompt_result = prompt
            self.token = self._token = most_active_token(prompt)
        if prompt.attrs.get("truncated"):
            self.status = f"prompt cut to its first {prompt.sizes['pos']} tokens"
        self._redraw()

    @param.depends("token", watch=True)
    def _token_changed(self) -> None:
        if self.prompt_result is None:
            return
        n = self.prompt_result.sizes["pos"]
        if not 0 <= self.token < n:
            self.message = f"token: expected a position in [0, {n}) of the prompt, got {self.token}"
            return
        self.message, self._token = "", self.token
        self._redraw()

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
        live = self._live
        builders = figure_builders(self.result, self.prompt_result, self._shown, self._token, self.steering)
        if live and (self._training() or "training" not in builders):
            builders = {"training": live_training_builder(live),
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
        return sae_layout.controls(self)

    def body(self) -> pn.viewable.Viewable:
        return sae_layout.body(self)
