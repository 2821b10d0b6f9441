"""Overview: the models at hand, what the hook cache holds, and caching a model's hooks.

Examples
--------
>>> import tempfile
>>> page = OverviewPage(cache_dir=tempfile.mkdtemp())
>>> page.model in page.param.model.objects, page.entries
(True, [])
"""

from __future__ import annotations

import functools
from typing import Any

import panel as pn
import param
import plotly.graph_objects as go
import xarray as xr

from widgets.jobs import Job
from widgets.pages.base import Page
from widgets.results import result_key


@functools.lru_cache(maxsize=2)
def _model(name: str):
    # Loading imports TransformerLens and reads weights (seconds); pages only read the model.
    from workbench.models import load_model

    return load_model(name, device="cpu")


def cache_table(entries: list[dict]) -> list[dict]:
    """Rows for the cache table: short key, model, hook, shape, size in KiB.

    Examples
    --------
    >>> cache_table([{"key": "ab" * 32, "model_id": "m", "hook": "h", "n_seq": 2, "seq_len": 8,
    ...               "dtype": "float32", "nbytes": 2048, "status": "ok"}])[0]["size_kib"]
    2.0
    """
    return [{"key": e["key"][:12], "model": e.get("model_id"), "hook": e.get("hook"),
             "seq x pos": f"{e.get('n_seq')} x {e.get('seq_len')}", "dtype": e.get("dtype"),
             "size_kib": round(e["nbytes"] / 1024, 1), "status": e.get("status")} for e in entries]


def induction_figures(ds: xr.Dataset, model: str | None = None) -> dict[str, go.Figure]:
    """The induction-score heatmap of a stored ``induction_scores`` result.

    Examples
    --------
    >>> import numpy as np
    >>> ds = xr.Dataset({"induction_score": (("layer", "head"), np.eye(2))})
    >>> induction_figures(ds, "m")["induction"].layout.title.text
    'Induction score: m'
    """
    from workbench.figures.models import induction_heatmap

    name = model or ds.attrs.get("model", "")
    return {"induction": induction_heatmap(ds["induction_score"], title=f"Induction score: {name}")}


class OverviewPage(Page):
    """Bundled models with their induction scores, the hook cache, and a button to fill it.

    Parameters
    ----------
    cache_dir : path, optional
        Holds the hook cache (``<cache>/hooks``) and dashboard results.
    """

    title = "Overview"
    slug = "overview"

    model = param.Selector(default=None, objects=[], doc="Bundled model (see `workbench models`).")
    n_seq = param.Integer(default=8, bounds=(1, 512), doc="Corpus windows to cache.")
    seq_len = param.Integer(default=32, bounds=(4, 512), doc="Tokens per window.")
    entries = param.List(default=[], doc="Complete stores in the hook cache (HookCache.list()).")
    induction = param.Parameter(default=None, doc="Induction scores (layer, head) of `model`, once computed.")

    def __init__(self, cache_dir=None, **params: Any):
        from workbench.models import list_models

        models = list_models()
        params.setdefault("model", models[0] if models else None)  # before init: no watcher fires
        super().__init__(cache_dir=cache_dir, **params)
        self.param.model.objects = models
        self.refresh()
        self._load_cached()

    @property
    def hook_cache(self):
        """The :class:`~workbench.hooks.HookCache` under ``<cache>/hooks``."""
        from workbench.hooks import HookCache

        return HookCache(self.cache_dir / "hooks")

    def refresh(self) -> list[dict]:
        """Re-read the hook cache listing into :attr:`entries`."""
        self.entries = self.hook_cache.list()
        return self.entries

    def _key(self) -> str:
        return result_key("induction", {"model": self.model})

    def _load_cached(self) -> bool:
        ds = self.store.load(self._key())
        self.induction = None if ds is None else ds["induction_score"]
        self.revision += 1
        return ds is not None

    @param.depends("model", watch=True)
    def _model_changed(self) -> None:
        if not self._load_cached():
            self.compute_induction()

    def compute_induction(self) -> Job | None:
        """Induction scores of :attr:`model` in the background, saved to the result store."""
        name, key = self.model, self._key()

        def work(job: Job) -> xr.DataArray:
            from workbench.models import induction_scores

            job.report(None, f"loading {name}")
            model = _model(name)
            job.check()
            job.report(0.5, f"induction scores of {name}")
            scores = induction_scores(model)
            self.store.save(key, scores.to_dataset().assign_attrs(model=name))
            return scores

        def done(scores: xr.DataArray) -> None:
            if name == self.model:  # the user may have picked another model meanwhile
                self.induction = scores
                self.revision += 1

        return self.start(work, f"induction scores of {name}", done)

    def on_open(self) -> None:
        """Served page opened: compute what is not cached yet."""
        if self.induction is None and self.model is not None:
            self.compute_induction()

    def cache_hooks(self) -> Job | None:
        """Cache every layer's ``attn.hook_z`` and the last ``hook_resid_post`` of :attr:`model`.

        Hooks are cached one at a time so the progress bar moves and cancel
        takes effect between hooks; a cancelled run keeps the hooks already done.
        """
        name, n_seq, seq_len, cache = self.model, self.n_seq, self.seq_len, self.hook_cache

        def work(job: Job) -> int:
            from workbench.hooks import default_hooks
            from workbench.models import corpus_tokens

            job.report(None, f"loading {name}")
            model = _model(name)
            tokens = corpus_tokens(model, n_seq, seq_len)
            hooks = default_hooks(model)
            for i, hook in enumerate(hooks):
                job.check()
                job.report(i / len(hooks), f"caching {hook} ({i + 1}/{len(hooks)})")
                cache.activations(model, tokens, [hook], progress=False)
            return len(hooks)

        def done(n_hooks: int) -> None:
            self.refresh()
            self.status = f"cached {n_hooks} hooks of {name} ({n_seq} x {seq_len} tokens)"

        return self.start(work, f"caching {name}", done)

    def poll(self) -> bool:
        running = super().poll()
        if not running and self._job is not None and self._job.name.startswith("caching"):
            self.entries = self.hook_cache.list()  # a cancelled run still added stores
        return running

    def figures(self) -> dict[str, go.Figure]:
        """The induction-score heatmap of :attr:`model`, once known."""
        return {} if self.induction is None else induction_figures(self.induction.to_dataset(), self.model)

    def controls(self) -> list:
        cache = pn.widgets.Button(label="Cache hooks", button_type="primary", css_classes=["wb-run"],
                                  disabled=self.param.running)
        cache.on_click(lambda _: self.cache_hooks())
        refresh = pn.widgets.Button(label="Refresh cache list")
        refresh.on_click(lambda _: self.refresh())
        widgets = pn.Param(self.param, parameters=["model", "n_seq", "seq_len"], show_name=False,
                           widgets={"model": {"css_classes": ["wb-model"]}})
        return [widgets, cache, refresh]

    def body(self) -> pn.viewable.Viewable:
        import pandas as pd

        table = pn.pane.DataFrame(self.param.entries.rx.pipe(lambda e: pd.DataFrame(cache_table(e))),
                                  index=False, sizing_mode="stretch_width", css_classes=["wb-cache-table"])
        return pn.Column(super().body(), pn.pane.Markdown(f"### Hook cache `{self.hook_cache.root}`"), table,
                         sizing_mode="stretch_width")
