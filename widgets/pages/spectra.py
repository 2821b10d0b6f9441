"""Spectra: a rank metric of every weight matrix by layer; click a cell for its ESD, heads and truncation.

One background job decomposes every matrix, head and OV/QK circuit of the
model (:func:`workbench.spectra.layer_spectra`) and a second one measures,
on corpus tokens, how much each linear map loses when truncated
(:func:`workbench.spectra.model_truncation.truncation_curves`) and the
loss-vs-parameters frontier of compressing the whole model
(:func:`workbench.spectra.compression_sweep`). Both are saved with the
result store; a click afterwards only looks up already computed singular
values and curves.

Examples
--------
>>> import tempfile
>>> page = SpectraPage(cache_dir=tempfile.mkdtemp())
>>> page.model, page.metric, page.figures()
('tiny-gelu-2l', 'alpha', {})
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
import panel as pn
import param
import plotly.graph_objects as go
import xarray as xr

from widgets.jobs import Job
from widgets.pages.base import Page
from widgets.results import result_key
from widgets.template import FigureSlots, clicked_point, figure_block, figure_row, settings
from workbench.spectra.metrics import METRIC_NAMES

METRICS = ("alpha", *(m for m in METRIC_NAMES if m != "alpha"))
#: Truncation curves (see :func:`~workbench.spectra.model_truncation.truncation_curves`) and their legend labels.
CURVES = {"weights": "weights (SVD)", "svd": "activations: SVD", "whitened": "activations: whitened (SVD-LLM)"}
COMPRESSION = ("svd", "whitened")
RATIOS = (0.25, 0.5, 0.75)
SETTINGS = ("n_seq", "seq_len")
QUERY = ("model", "metric", "circuit", *SETTINGS)  # settable from the URL

# Calibration hooks live on the module itself: two sessions must not run the same model at once.
_MODEL_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _model(name: str):
    from workbench.models import load_model

    return load_model(name, device="cpu")


def model_spectra(model) -> xr.Dataset:
    """:func:`workbench.spectra.layer_spectra` of ``model``, ready for the result store."""
    from workbench.spectra import layer_spectra

    ds = layer_spectra(model, device="cpu", progress=False)
    return ds.assign_attrs(model=str(getattr(model, "workbench_id", ds.attrs["model"])),
                           n_layers=int(model.cfg.n_layers))


def frontier_of(ds: xr.Dataset) -> xr.Dataset:
    """The :func:`~workbench.spectra.compression_sweep` part of a page result, under its own names."""
    return xr.Dataset({"loss": ds["frontier_loss"], "params_kept": ds["frontier_params_kept"]},
                      attrs={"baseline_loss": ds.attrs["baseline_loss"]})


def frontier_figure(ds: xr.Dataset) -> go.Figure:
    """Held-out loss against parameters kept when every block is compressed, one line per method."""
    from workbench.figures.spectra import compression_frontier

    return compression_frontier(frontier_of(ds)).update_layout(title="compressing every block")


def whole_matrix(ds: xr.Dataset, kind: str, layer: int) -> int:
    """Index along ``matrix`` of the whole ``kind`` matrix of ``layer`` (a cell of the heatmap)."""
    found = np.flatnonzero((ds["kind"].values == kind) & (ds["layer"].values == layer) & (ds["head"].values == -1))
    if found.size == 0:
        kinds = sorted(set(ds["kind"].values[(ds["layer"].values == layer) & (ds["head"].values == -1)].tolist()))
        raise ValueError(f"kind: expected one of {kinds} at layer {layer} of {ds.attrs['model']}, got {kind!r}")
    return int(found[0])


def heatmap_kinds(ds: xr.Dataset) -> list[str]:
    """Matrix kinds of the heatmap rows: whole matrices inside the blocks, in model order."""
    inside = (ds["head"].values == -1) & (ds["layer"].values >= 0)
    return list(dict.fromkeys(ds["kind"].values[inside].tolist()))


def eigenvalues(ds: xr.Dataset, kind: str, layer: int) -> np.ndarray:
    """``lambda = sigma^2`` of the whole ``kind`` matrix of ``layer``, descending."""
    sigma = ds["singular_value"].values[whole_matrix(ds, kind, layer)]
    return sigma[np.isfinite(sigma)] ** 2


def esd_for(ds: xr.Dataset, kind: str, layer: int) -> go.Figure:
    """ESD with power-law fit and MP edge of one cell, from the stored singular values and metrics."""
    from workbench.figures.spectra import esd_figure

    i = whole_matrix(ds, kind, layer)
    sigma = ds["singular_value"].isel(matrix=i)
    spectrum = xr.DataArray(sigma.values[np.isfinite(sigma.values)], dims=("index",))
    fig = esd_figure(spectrum, ds[[m for m in METRICS]].isel(matrix=i))
    return fig.update_layout(title=f"ESD of {ds['matrix'].values[i]}")


def truncation_for(ds: xr.Dataset, kind: str, layer: int) -> go.Figure | None:
    """Truncation curves of the linear map behind a cell; None when no map matches it."""
    from workbench.figures.spectra import truncation_figure

    if "truncation" not in ds:
        return None
    found = np.flatnonzero((ds["target_kind"].values == kind) & (ds["target_layer"].values == layer))
    if found.size == 0:
        return None
    row = ds["truncation"].isel(target=int(found[0]))
    curves = {CURVES[c]: row.sel(curve=c).dropna("rank") for c in CURVES}
    fig = truncation_figure(curves)
    return fig.update_layout(title=f"truncating {row['target'].item()}")


def heads_for(ds: xr.Dataset, circuit: str, layer: int) -> go.Figure:
    """Singular values of every head's OV or QK circuit in ``layer``."""
    from workbench.figures.spectra import head_spectra_figure

    fig = head_spectra_figure(ds[["singular_value"]], circuit, layer=layer)
    return fig.update_layout(title=f"{circuit.upper()} circuit of each head, layer {layer}")


def heatmap_for(ds: xr.Dataset, metric: str) -> go.Figure:
    """``metric`` of every whole matrix as (kind x layer)."""
    from workbench.figures.spectra import metric_heatmap

    flags = [v for v in ("alpha_reliable", "alpha_reason") if v in ds]  # unreliable alpha fits are greyed out
    fig = metric_heatmap(ds[[metric, *flags]], metric)
    return fig.update_layout(title=f"{metric} of {ds.attrs['model']} (click a cell)")


def spectra_figures(ds: xr.Dataset, metric: str = "alpha", kind: str | None = None, layer: int = 0,
                    circuit: str = "ov") -> dict[str, go.Figure]:
    """The page's figures for a stored result (``kind`` default: the first heatmap row).

    Examples
    --------
    >>> from workbench.models import load_model
    >>> ds = model_spectra(load_model("tiny-attn-2l", device="cpu"))
    >>> list(spectra_figures(ds))
    ['heatmap', 'esd', 'heads']
    """
    kind = kind if kind is not None else heatmap_kinds(ds)[0]
    figures = {"heatmap": heatmap_for(ds, metric), "esd": esd_for(ds, kind, layer),
               "heads": heads_for(ds, circuit, layer)}
    truncation = truncation_for(ds, kind, layer)
    if truncation is not None:
        figures["truncation"] = truncation
    if "frontier_loss" in ds:
        figures["frontier"] = frontier_figure(ds)
    return figures


class SpectraPage(Page):
    """A model's spectra and truncation results, and which metric, cell and circuit are shown."""

    title = "Spectra"
    slug = "spectra"
    summary = "Eigenvalue spectra and rank measures of every weight matrix, with heavy-tail (alpha) fits."
    intro = ("A heatmap of one rank measure for every weight matrix of the model, and the eigenvalue spectrum "
             "(ESD) of the cell you click. Try first: click a cell of the alpha heatmap to see its ESD and fit.")
    terms = ("alpha", "esd", "stable_rank", "effective_rank", "mp_softrank", "num_spikes", "ks_distance",
             "circuit")
    help = {"model": "model", "metric": "spectra_metric", "kind": "matrix_kind", "layer": "spectra_layer",
            "circuit": "circuit", "n_seq": "calibration_seq", "seq_len": "seq_len"}

    model = param.String(default="tiny-gelu-2l", doc="Bundled model name or model folder.")
    metric = param.Selector(default="alpha", objects=list(METRICS), doc="Rank metric of the heatmap.")
    kind = param.Selector(default=None, objects=[], doc="Matrix kind of the selected cell.")
    layer = param.Integer(default=0, doc="Layer of the selected cell and of the per-head circuits.")
    circuit = param.Selector(default="ov", objects=["ov", "qk"], doc="Per-head circuit shown.")
    n_seq = param.Integer(default=16, bounds=(1, 4096), doc="Corpus windows for calibration and held-out loss.")
    seq_len = param.Integer(default=64, bounds=(8, 256), doc="Tokens per window.")
    result = param.Parameter(default=None, doc="Spectra (and truncation) Dataset of `model`.")

    def __init__(self, cache_dir=None, **params: Any):
        super().__init__(cache_dir=cache_dir, **params)
        self._cell: tuple[str, int] | None = None
        self._load_cached()

    def settings(self) -> dict:
        """What a result depends on (and its cache key)."""
        return {"model": self.model, **{name: getattr(self, name) for name in SETTINGS}, "ratios": list(RATIOS),
                "compression": list(COMPRESSION), "curves": list(CURVES)}

    def _key(self, stage: str = "compressed") -> str:
        """The result key of the spectra alone (``stage="spectra"``) or with the compression curves added.

        Two keys, since a stored result never changes: the spectra are kept as
        soon as they exist, and replaced by the full result once it is stored.
        """
        return result_key(self.slug, {**self.settings(), **({"stage": stage} if stage != "compressed" else {})})

    def _load_cached(self) -> bool:
        ds = self.store.load(self._key())
        if ds is None:
            ds = self.store.load(self._key("spectra"))
        if ds is not None:
            self._show(ds)
        return ds is not None

    @param.depends("model", *SETTINGS, watch=True)
    def _settings_changed(self) -> None:
        self.open()

    def open(self) -> Job | None:
        """Show :attr:`model`: from the result store, else compute it in the background."""
        self.result, self._cell = None, None
        self.revision += 1
        if self._load_cached():
            self.status = "loaded from cache"
            return None
        return self.compute()

    def on_open(self) -> None:
        """Served page opened: take settings from the URL query, then compute what is not stored yet."""
        self.apply_query(QUERY)
        if self.running or self.message:
            return
        if self.result is None:
            self.compute()
        elif "truncation" not in self.result:
            self.compress()

    def compute(self) -> Job | None:
        """Spectra and rank metrics of every matrix, head and circuit; then :meth:`compress`."""
        name, key = self.model, self._key("spectra")

        def work(job: Job) -> xr.Dataset:
            job.report(None, f"loading {name}")
            model = _model(name)
            job.check()
            job.report(None, f"singular values of every matrix of {name}")
            ds = model_spectra(model)
            job.check()
            self.store.save(key, ds)
            return ds

        def done(ds: xr.Dataset) -> None:
            if key == self._key("spectra"):  # the user may have picked another model meanwhile
                self._show(ds)
                self.compress()

        return self.start(work, f"spectra of {name}", done, share=key)

    def compress(self) -> Job | None:
        """Truncation curves of every linear map and the compression frontier, added to the result."""
        if self.result is None:
            self.message = "model: compute the spectra first"
            return None
        name, key, spectra = self.model, self._key(), self.result
        spectra_key = self._key("spectra")
        n_seq, seq_len = self.n_seq, self.seq_len

        def work(job: Job) -> xr.Dataset:
            from workbench.models import corpus_tokens
            from workbench.spectra import compression_sweep
            from workbench.spectra.model_truncation import truncation_curves

            def step(fraction: float, message: str) -> None:
                job.check()
                job.report(0.4 * fraction, message)

            model = _model(name)
            with _MODEL_LOCK:
                calibration = corpus_tokens(model, n_seq, seq_len, split="train")
                held_out = corpus_tokens(model, n_seq, seq_len)
                curves = truncation_curves(model, calibration, curves=tuple(CURVES), progress=step)
                job.check()
                job.report(0.4, f"compressing {name} to {', '.join(f'{r:.0%}' for r in RATIOS)} of its parameters")
                sweep = compression_sweep(model, held_out, RATIOS, COMPRESSION, calibration_tokens=calibration,
                                          progress=False)
            job.check()
            frontier = xr.Dataset({"frontier_loss": sweep["loss"], "frontier_params_kept": sweep["params_kept"]})
            ds = xr.merge([spectra, curves, frontier], combine_attrs="override")
            ds = ds.assign_attrs(baseline_loss=sweep.attrs["baseline_loss"], n_tokens=sweep.attrs["n_tokens"])
            self.store.save(key, ds)
            self.store.discard(spectra_key)  # superseded: the full result holds the spectra too
            return ds

        def done(ds: xr.Dataset) -> None:
            if key == self._key():
                self._show(ds)

        return self.start(work, f"truncation and compression of {name}", done, share=key)

    def wait(self, timeout: float = 300.0) -> "SpectraPage":
        """:meth:`Page.wait`, allowing for the spectra and compression of a model (tests and scripts)."""
        return super().wait(timeout)

    # ----- selection ----------------------------------------------------------------------------
    def _show(self, ds: xr.Dataset) -> None:
        kinds = heatmap_kinds(ds)
        self.param.kind.objects = kinds
        self.forget_figures()
        with param.parameterized.discard_events(self):
            self.result = ds
            if self._cell is None or self._cell[0] not in kinds:
                self.kind, self.layer = kinds[0], 0
            self._cell = (self.kind, self.layer)
        self.status = f"{ds.sizes['matrix']} matrices, heads and circuits of {ds.attrs['model']}"
        self._prefetch_cells()
        self.revision += 1

    def select(self, kind: str, layer: int) -> bool:
        """Show the cell (``kind``, ``layer``); a cell the model lacks becomes the page message."""
        if kind not in self.param.kind.objects:
            self.message = f"kind: expected one of {self.param.kind.objects}, got {kind!r}"
            return False
        if (kind, layer) == (self.kind, self.layer):
            return self._cell_changed()
        self.param.update(kind=kind, layer=layer)  # one event: the cell changes once, the widgets follow
        return self._cell == (kind, layer)

    @param.depends("kind", "layer", watch=True)
    def _cell_changed(self) -> bool:
        if self.result is None:
            return False
        n_layers = int(self.result.attrs["n_layers"])
        if not 0 <= self.layer < n_layers:
            model = self.result.attrs["model"]
            self.message = f"layer: expected a layer in [0, {n_layers}) of {model}, got {self.layer}"
            return False
        if self.attempt(lambda: whole_matrix(self.result, self.kind, self.layer)) is None:
            return False
        self._cell = (self.kind, self.layer)
        self.revision += 1
        return True

    @param.depends("metric", "circuit", watch=True)
    def _view_changed(self) -> None:
        self.revision += 1

    def click(self, data: dict | None) -> None:
        """A click on the heatmap selects that cell."""
        point = clicked_point(data)
        if point is not None and point.get("z") is not None:
            self.select(str(point["y"]), int(round(float(point["x"]))))

    def eigenvalues(self) -> np.ndarray:
        """``lambda = sigma^2`` of the selected cell's matrix (what its ESD histograms)."""
        if self.result is None or self._cell is None:
            raise ValueError("model: nothing computed yet")
        return eigenvalues(self.result, *self._cell)

    # ----- figures ------------------------------------------------------------------------------
    def figures(self) -> dict[str, go.Figure]:
        """Metric heatmap, the selected cell's ESD and truncation curves, per-head circuits, frontier."""
        ds = self.result
        if ds is None or self._cell is None:
            return {}
        kind, layer = self._cell
        figures = {"heatmap": self.figure(("heatmap", self.metric), lambda: heatmap_for(ds, self.metric))}
        figures.update(self._cell_figures(ds, kind, layer, self.circuit))
        if "frontier_loss" in ds:
            figures["frontier"] = self.figure(("frontier",), lambda: frontier_figure(ds))
        return {name: fig for name, fig in figures.items() if fig is not None}

    def _cell_figures(self, ds: xr.Dataset, kind: str, layer: int, circuit: str) -> dict[str, go.Figure | None]:
        """The figures a click on a cell changes, memoised (and prefetched) under the cell."""
        return {"esd": self.figure(("esd", kind, layer), lambda: esd_for(ds, kind, layer)),
                "heads": self.figure(("heads", circuit, layer), lambda: heads_for(ds, circuit, layer)),
                "truncation": self.figure(("truncation", kind, layer), lambda: truncation_for(ds, kind, layer))}

    def _prefetch_cells(self) -> None:
        """Every cell's ESD, truncation curves and heads, built in the background after the result arrives."""
        ds = self.result
        whole = (ds["head"].values == -1) & (ds["layer"].values >= 0)
        cells = sorted(set(zip(ds["kind"].values[whole].tolist(), ds["layer"].values[whole].tolist())))
        builds = {}
        for kind, layer in cells:
            builds[("esd", kind, layer)] = functools.partial(esd_for, ds, kind, layer)
            builds[("truncation", kind, layer)] = functools.partial(truncation_for, ds, kind, layer)
        for layer in sorted({layer for _, layer in cells}):
            for circuit in ("ov", "qk"):
                builds[("heads", circuit, layer)] = functools.partial(heads_for, ds, circuit, layer)
        self.prefetch(builds)

    @classmethod
    def warm_up(cls, cache_dir) -> threading.Thread:
        """Before the first visitor: load the default model in a thread, so the first job starts at once."""
        return cls.warm_up_in_background(cache_dir, _model, cls.param.model.default)

    # ----- view ---------------------------------------------------------------------------------
    def controls(self) -> list:
        from workbench.models import list_models

        run = pn.widgets.Button(label="Recompute", color="primary", css_classes=["wb-run"],
                                disabled=self.param.running)
        run.on_click(lambda _: self.compute())
        widgets = settings(self, ["model", "metric", "kind", "layer", "circuit", *SETTINGS], widgets={
            "model": {"type": pn.widgets.AutocompleteInput, "options": list_models(), "restrict": False,
                      "min_characters": 0, "css_classes": ["wb-model"]},
            "metric": {"css_classes": ["wb-metric"]}, "kind": {"css_classes": ["wb-kind"]},
            "layer": {"css_classes": ["wb-layer"]}})
        return [widgets, run]

    def body(self) -> pn.viewable.Viewable:
        later = "Computed after the spectra: press Recompute if it does not appear."
        slots = FigureSlots(self, ["heatmap", "esd", "heads", "truncation", "frontier"],
                            on_click={"heatmap": self.click},
                            hints={"heatmap": "Press Recompute (sidebar) to compute the spectra.",
                                   "esd": "Click a cell of the heatmap to see its eigenvalue spectrum.",
                                   "heads": later, "truncation": later, "frontier": later})
        return pn.Column(
            pn.pane.Markdown("### Metric x layer"),
            figure_row(figure_block(slots["heatmap"]), figure_block(slots["esd"])),
            pn.pane.Markdown("### Per-head OV / QK circuits"), slots["heads"],
            pn.pane.Markdown("### Truncation and compression"),
            figure_row(figure_block(slots["truncation"]), figure_block(slots["frontier"])),
            sizing_mode="stretch_width")
