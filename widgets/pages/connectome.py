"""Dynamic connectome: traces in, rank sweep and NTF run, components browsed.

Examples
--------
>>> import tempfile
>>> page = ConnectomePage(cache_dir=tempfile.mkdtemp())
>>> page.traces.dims
('animal', 'neuron', 'time')
>>> page.path, page.source = "/no/such/file.nc", "file"
>>> page.load() is None, page.message.startswith("path:")
(True, True)
"""

from __future__ import annotations

import os
from typing import Any, Callable, Hashable

import numpy as np
import panel as pn
import param
import plotly.graph_objects as go
import xarray as xr

from widgets.jobs import Job
from widgets.pages.base import Page
from widgets.results import result_key

SYNTHETIC = ("n_neurons", "n_animals", "n_time", "n_motifs", "seed")
FIT = ("rank_min", "rank_max", "n_restarts", "max_iter")


def _figure_builders(ds: xr.Dataset, component: int) -> dict[str, tuple[Hashable, Callable[[], go.Figure]]]:
    """``{name: (key, build)}``: each key names exactly the view settings its figure depends on."""
    from workbench.figures.connectome import community_graph, component_panel, rank_sweep_plot

    def sweep() -> go.Figure:
        return rank_sweep_plot(ds)

    return {"rank_sweep": (("rank_sweep",), sweep),
            "component": (("component", component), lambda: component_panel(ds, component)),
            "communities": (("communities", component), lambda: community_graph(ds, component))}


def connectome_figures(ds: xr.Dataset, component: int = 0) -> dict[str, go.Figure]:
    """Rank sweep, component panel and community graph of a stored ``dynamic_connectome`` result.

    Examples
    --------
    >>> from workbench.connectome import synthetic, dynamic_connectome
    >>> ds = dynamic_connectome(synthetic(12, 2, 160, 2).traces, ranks=[1, 2], n_restarts=2, device="cpu")
    >>> list(connectome_figures(ds))
    ['rank_sweep', 'component', 'communities']
    """
    return {name: build() for name, (_, build) in _figure_builders(ds, component).items()}


class ConnectomePage(Page):
    """Traces (synthetic or from a file), the fitted dynamic connectome, and which component is shown."""

    title = "Connectome"
    slug = "connectome"

    source = param.Selector(default="synthetic", objects=["synthetic", "file"])
    path = param.String(default="", doc="Recording file or folder (see workbench.connectome.load_traces).")
    n_neurons = param.Integer(default=16, bounds=(4, 200))
    n_animals = param.Integer(default=3, bounds=(1, 20))
    n_time = param.Integer(default=240, bounds=(40, 5000))
    n_motifs = param.Integer(default=2, bounds=(1, 6))
    seed = param.Integer(default=0)
    rank_min = param.Integer(default=1, bounds=(1, 20))
    rank_max = param.Integer(default=3, bounds=(1, 20), doc="Largest rank tried; no mode size bounds it (one animal is fine).")
    n_restarts = param.Integer(default=3, bounds=(2, 20))
    max_iter = param.Integer(default=60, bounds=(5, 2000))
    animal = param.Integer(default=0, bounds=(0, None), doc="Animal whose traces are shown.")
    component = param.Selector(default=0, objects=[0], doc="Component shown in the browser.")
    traces = param.Parameter(default=None, doc="(animal, neuron, time) traces in use.")
    result = param.Parameter(default=None, doc="Dataset of dynamic_connectome for the traces and fit settings.")


    def __init__(self, cache_dir=None, **params: Any):
        super().__init__(cache_dir=cache_dir, **params)
        self.load()

    def _data_id(self) -> dict:
        if self.source == "synthetic":
            return {name: getattr(self, name) for name in SYNTHETIC}
        stamp = os.path.getmtime(self.path) if os.path.exists(self.path) else None
        return {"path": os.path.abspath(self.path), "mtime": stamp}

    def _key(self) -> str:
        return result_key(self.slug, {**self._data_id(), **{name: getattr(self, name) for name in FIT}})

    def load(self) -> xr.DataArray | None:
        """Read or generate the traces; bad input (a missing file...) becomes the page message."""
        from workbench.connectome import load_traces, synthetic

        def read() -> xr.DataArray:
            if self.source == "synthetic":
                return synthetic(self.n_neurons, self.n_animals, self.n_time, self.n_motifs, seed=self.seed).traces
            if not self.path.strip():
                raise ValueError("path: expected a recording file or folder, got an empty path")
            return load_traces(self.path.strip())

        traces = self.attempt(read)
        if traces is None:
            return None
        self.forget_figures()
        self.traces, self.result = traces, None
        self.param.animal.bounds = (0, traces.sizes["animal"] - 1)
        self.animal = min(self.animal, traces.sizes["animal"] - 1)
        cached = self.store.load(self._key())
        if cached is not None:
            self._show(cached)
        self.status = f"{traces.sizes['animal']} animals x {traces.sizes['neuron']} neurons x {traces.sizes['time']} frames"
        self.revision += 1
        return traces

    @param.depends("source", *SYNTHETIC, watch=True)
    def _data_changed(self) -> None:
        if self.source == "synthetic":
            self.load()

    @param.depends("animal", "component", watch=True)
    def _view_changed(self) -> None:
        if not self._choosing:  # the caller redraws once for the new result and component together
            self.revision += 1

    def _show(self, ds: xr.Dataset) -> None:
        self.forget_figures()
        components = [int(c) for c in range(ds.sizes["component"])]
        keep = self.component if self.component in components else 0
        self._choose("component", components, keep)
        self.result = ds
        self.revision += 1
        self.prefetch({key: build for component in components
                       for key, build in _figure_builders(ds, component).values()})

    def run(self) -> Job | None:
        """Rank sweep over ``rank_min..rank_max`` and NTF at the suggested rank, in the background.

        Progress counts NTF iterations over all fits; cancel stops the
        running fit at its next iteration.
        """
        if self.traces is None:
            self.message = "traces: load a recording or generate synthetic data first"
            return None
        if self.rank_min > self.rank_max:
            self.message = f"rank_min: expected at most rank_max={self.rank_max}, got {self.rank_min}"
            return None
        cached = self.store.load(self._key())
        if cached is not None:
            self._show(cached)
            self.status = "loaded from cache"
            return None
        traces, key = self.traces, self._key()
        ranks = list(range(self.rank_min, self.rank_max + 1))
        n_restarts, max_iter = self.n_restarts, self.max_iter

        def work(job: Job) -> xr.Dataset:
            from workbench.connectome import affinity, dynamic_connectome
            from workbench.connectome.ntf import max_cp_rank

            limit = max_cp_rank(affinity(traces).shape)
            if ranks[-1] > limit:
                raise ValueError(f"rank_max: expected at most {limit} (min(IJ, IK, JK) of the pair x time x animal "
                                 f"tensor), got {ranks[-1]}")
            n_fits, fit, last = 2 * len(ranks) + 1, -1, np.inf  # per rank a fit and a held-out fit, then the final

            def step(iteration: int, errors: np.ndarray) -> bool:
                nonlocal fit, last
                if iteration <= last:  # iterations restart at 1: the next rank's fit began
                    fit += 1
                last = iteration
                part = min(fit, n_fits - 1)
                stage = (f"rank {ranks[part // 2]} ({'all entries' if part % 2 == 0 else 'held-out fit'})"
                         if part < n_fits - 1 else "final fit")
                job.report(min(1.0, (part + iteration / max_iter) / n_fits),
                           f"{stage}: iteration {iteration}, error {float(errors.min()):.4f}")
                return job.cancelled

            ds = dynamic_connectome(traces, ranks=ranks, n_restarts=n_restarts, max_iter=max_iter, device="cpu",
                                    callback=step)
            job.check()
            self.store.save(key, ds)
            return ds

        return self.start(work, "rank sweep and NTF", self._show)

    def figures(self) -> dict[str, go.Figure]:
        """Traces heatmap; once fitted, the rank sweep, component panel and community graph."""
        from workbench.figures.connectome import traces_heatmap

        figures = {}
        if self.traces is not None:
            traces, animal = self.traces, self.animal
            figures["traces"] = self.figure(("traces", animal), lambda: traces_heatmap(traces, animal))
        if self.result is not None:
            figures.update({name: self.figure(key, build)
                            for name, (key, build) in _figure_builders(self.result, int(self.component)).items()})
        return figures

    def controls(self) -> list:
        load = pn.widgets.Button(label="Load", css_classes=["wb-load"])
        load.on_click(lambda _: self.load())
        run = pn.widgets.Button(label="Run rank sweep + NTF", color="primary", css_classes=["wb-run"],
                                disabled=self.param.running)
        run.on_click(lambda _: self.run())
        data = pn.Param(self.param, parameters=["source", "path", *SYNTHETIC], show_name=False,
                        widgets={"path": {"css_classes": ["wb-path"]}, "source": {"css_classes": ["wb-source"]}})
        fit = pn.Param(self.param, parameters=[*FIT, "animal", "component"], show_name=False,
                       widgets={"component": {"css_classes": ["wb-component"]}})
        return [data, load, fit, run]
