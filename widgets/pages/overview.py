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
import os
import threading
from pathlib import Path
from typing import Any

import panel as pn
import param
import plotly.graph_objects as go
import xarray as xr

from widgets.jobs import Job
from widgets.pages.base import Page
from widgets.results import ResultStore, result_key
from widgets.template import settings

_MODEL_LOCK = threading.Lock()
_RESULT_LOCKS: dict[Path, threading.Lock] = {}
_RESULT_LOCKS_GUARD = threading.Lock()


@functools.lru_cache(maxsize=2)
def _load(name: str):
    from workbench.models import load_model

    return load_model(name, device="cpu")


def _model(name: str):
    # Loading imports TransformerLens and reads weights (seconds); pages only read the model.
    # The lock makes a page and the server's warm-up share one load instead of racing.
    with _MODEL_LOCK:
        return _load(name)


def _result_lock(path: Path) -> threading.Lock:
    with _RESULT_LOCKS_GUARD:
        return _RESULT_LOCKS.setdefault(path, threading.Lock())


def induction_result(store: ResultStore, name: str) -> xr.DataArray:
    """Induction scores of bundled model ``name``: read from ``store``, or computed once and saved there.

    Callers in other threads that ask for the same result meanwhile wait for
    that one computation (the server's warm-up and a first visitor, say).

    Examples
    --------
    >>> import tempfile
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> induction_result(store, "tiny-attn-2l").dims
    ('layer', 'head')
    >>> len(store.keys("induction"))
    1
    """
    key = result_key("induction", {"model": name})
    with _result_lock(store.path(key)):
        ds = store.load(key)
        if ds is not None:
            return ds["induction_score"]
        from workbench.models import induction_scores

        scores = induction_scores(_model(name))
        store.save(key, scores.to_dataset().assign_attrs(model=name))
        return scores


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
    summary = "Models, their induction heads, and the hook cache every analysis reads."
    intro = ("The bundled models, each head's **induction score**, and the hook activations cached on disk. "
             "Try first: pick a model, then press **Cache hooks** so the other pages start from cached activations.")
    terms = ("induction_score",)
    help = {"model": "model", "n_seq": "n_seq", "seq_len": "seq_len"}

    model = param.Selector(default=None, objects=[], doc="Bundled model (see `workbench models`).")
    n_seq = param.Integer(default=8, bounds=(1, 512), doc="Corpus windows to cache.")
    seq_len = param.Integer(default=32, bounds=(4, 512), doc="Tokens per window.")
    entries = param.List(default=[], doc="Complete stores in the hook cache (HookCache.list()).")
    induction = param.Parameter(default=None, doc="Induction scores (layer, head) of `model`, once computed.")

    @classmethod
    def warm_up(cls, cache_dir: str | os.PathLike) -> threading.Thread | None:
        """Before the first visitor: the default model's induction scores now, the other models' in a thread.

        Importing TransformerLens and loading weights took most of a first
        visit (about 20 s on a loaded machine); now the server pays it once
        at start, and the first figure is a result read from the cache.
        Returns the thread working on the other models (None when there are none).
        """
        from workbench.models import list_models

        super().warm_up(cache_dir)
        store, models = ResultStore(cache_dir), list_models()

        def score(names: list[str]) -> None:
            for name in names:
                try:
                    induction_result(store, name)
                except Exception:  # noqa: BLE001  (a visitor's own job shows what went wrong)
                    return

        score(models[:1])
        if len(models) < 2:
            return None
        thread = threading.Thread(target=score, args=(models[1:],), name="workbench-warm-up-overview", daemon=True)
        thread.start()
        return thread

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
        """The :class:`~workbench.hooks.HookCache` under :func:`~workbench.hooks.hooks_root` of the page's cache folder."""
        from workbench.hooks import HookCache, hooks_root

        return HookCache(hooks_root(self.cache_dir))

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
        name = self.model

        def work(job: Job) -> xr.DataArray:
            job.report(None, f"loading {name} and scoring its heads")
            scores = induction_result(self.store, name)
            job.check()
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

        All hooks are cached in one pass over chunks of about an eighth of
        the windows; the progress bar follows the chunks written
        (:meth:`~workbench.hooks.HookCache.activations` reports them) and
        cancel stops after the running chunk, removing the unfinished stores.
        """
        name, n_seq, seq_len, cache = self.model, self.n_seq, self.seq_len, self.hook_cache
        batch_size = min(32, -(-n_seq // 8))  # about 8 chunks (more past 256 windows): the bar moves

        def work(job: Job) -> int:
            from workbench.hooks import default_hooks
            from workbench.models import corpus_tokens

            job.report(None, f"loading {name}")
            model = _model(name)
            job.check()
            tokens = corpus_tokens(model, n_seq, seq_len)
            hooks = default_hooks(model)

            def chunk_written(done: int, total: int) -> None:
                job.check()  # raising here aborts the stores being written
                job.report(done / total, f"caching {len(hooks)} hooks of {name}: chunk {done}/{total}")

            cache.activations(model, tokens, hooks, batch_size=batch_size, progress=chunk_written)
            return len(hooks)

        def done(n_hooks: int) -> None:
            self.refresh()
            self.status = f"cached {n_hooks} hooks of {name} ({n_seq} x {seq_len} tokens)"

        return self.start(work, f"caching {name}", done)

    def figures(self) -> dict[str, go.Figure]:
        """The induction-score heatmap of :attr:`model`, once known."""
        if self.induction is None:
            return {}
        scores, model = self.induction, self.model
        return {"induction": self.figure(("induction", model),
                                         lambda: induction_figures(scores.to_dataset(), model)["induction"])}

    def controls(self) -> list:
        cache = pn.widgets.Button(label="Cache hooks", color="primary", css_classes=["wb-run"],
                                  disabled=self.param.running)
        cache.on_click(lambda _: self.cache_hooks())
        refresh = pn.widgets.Button(label="Refresh cache list")
        refresh.on_click(lambda _: self.refresh())
        widgets = settings(self, ["model", "n_seq", "seq_len"], widgets={"model": {"css_classes": ["wb-model"]}})
        return [widgets, cache, refresh]

    def body(self) -> pn.viewable.Viewable:
        import pandas as pd

        table = pn.pane.DataFrame(self.param.entries.rx.pipe(lambda e: pd.DataFrame(cache_table(e))),
                                  index=False, sizing_mode="stretch_width", css_classes=["wb-cache-table"])
        return pn.Column(super().body(), pn.pane.Markdown(f"### Hook cache `{self.hook_cache.root}`"), table,
                         sizing_mode="stretch_width")
