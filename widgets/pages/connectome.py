"""Dynamic connectome: traces in, rank sweep and NTF run, components browsed.

Examples
--------
>>> import tempfile
>>> page = ConnectomePage(cache_dir=tempfile.mkdtemp())
>>> page.traces.dims
('animal', 'neuron', 'time')
>>> page.path, page.source = "/no/such/file.nc", "file"
>>> page.load().wait(30) is not None, page.wait().message
(True, 'path: outside the data folders (...)')
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

import numpy as np
import panel as pn
import param
import plotly.graph_objects as go
import xarray as xr

from widgets.jobs import Job
from widgets.pages.base import Page
from widgets.results import result_key
from widgets.template import settings

SYNTHETIC = ("n_neurons", "n_animals", "n_time", "n_motifs", "seed")
RECORDING_SUFFIXES = (".mat", ".nc", ".nc4", ".netcdf", ".h5", ".zarr", ".npz")  # files and folders the picker lists
RECORDING_FOLDERS = ("F.npy", "time_trace.json")  # Suite2p and WormWideWeb folders hold one of these


def read_recording(folders, text: str) -> tuple[xr.DataArray, dict]:
    """The traces of the recording at ``text`` inside ``folders`` (a DataFolders), and what identifies them.

    Runs in a job, never on the server's event loop. Only regular files and
    folders are opened (a FIFO would block the reader for good), and a file
    that is not a recording gets a message that quotes none of its contents.
    """
    from workbench.connectome import load_traces

    path = folders.resolve(text)
    if not path.exists():
        raise ValueError(f"path: no file or folder {path.name!r} in the data folders")
    if not (path.is_file() or path.is_dir()):
        raise ValueError(f"path: {path.name!r} is neither a regular file nor a folder")
    try:
        traces = load_traces(path)
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise ValueError(f"path: {path.name!r} is not a recording the workbench reads (.mat, .json, .nc, .zarr, "
                         ".npz, a Suite2p or WormWideWeb folder; see workbench.connectome.load_traces)") from err
    return traces, {"path": str(path), "mtime_ns": path.stat().st_mtime_ns}
FIT = ("rank_min", "rank_max", "n_restarts", "max_iter", "n_surrogates")
CONSENSUS_SEEDS = (0, 1, 2)


def add_consensus(ds: xr.Dataset, seeds=CONSENSUS_SEEDS, job: Job | None = None) -> xr.Dataset:
    """``ds`` with each component's consensus communities over ``seeds``: co-assignment and confidence per neuron."""
    from workbench.connectome.consensus import consensus_communities

    parts = []
    for c in range(ds.sizes["component"]):
        if job is not None:
            job.check()
            job.report(c / ds.sizes["component"], f"consensus communities: component {c}")
        parts.append(consensus_communities(ds["pair_factor"][:, c], seeds=seeds))
    stacked = xr.concat(parts, dim="component")
    out = ds.assign(consensus_co_assignment=stacked["co_assignment"].drop_vars(["neuron", "neuron_"]),
                    consensus_community=stacked["community"].drop_vars("neuron"),
                    consensus_confidence=stacked["confidence"].drop_vars("neuron"))
    out["consensus_confidence"].attrs.update(method=parts[0].attrs["method"], n_graphs=1, n_seeds=len(list(seeds)))
    return out


def consensus_of(ds: xr.Dataset, component: int) -> xr.Dataset:
    """The consensus Dataset of one component (what :func:`~workbench.figures.communities.coassignment_plot` draws)."""
    one = ds.isel(component=component)
    neurons = ds["community"]["neuron"].values
    return xr.Dataset({"co_assignment": (("neuron", "neuron_"), one["consensus_co_assignment"].values),
                       "community": ("neuron", one["consensus_community"].values),
                       "confidence": ("neuron", one["consensus_confidence"].values)},
                      coords={"neuron": neurons, "neuron_": neurons}, attrs=dict(ds["consensus_confidence"].attrs))


def _figure_builders(ds: xr.Dataset, component: int,
                     covariate: str | None = None) -> dict[str, tuple[Hashable, Callable[[], go.Figure]]]:
    """``{name: (key, build)}``: each key names exactly the view settings its figure depends on."""
    from workbench.figures.communities import coassignment_plot
    from workbench.figures.connectome import community_graph, component_panel, rank_sweep_plot, top_pairs_plot

    def sweep() -> go.Figure:
        return rank_sweep_plot(ds)

    builders = {"rank_sweep": (("rank_sweep",), sweep),
                "component": (("component", component, covariate),
                              lambda: component_panel(ds, component, covariate=covariate)),
                "top_pairs": (("top_pairs", component), lambda: top_pairs_plot(ds, component)),
                "communities": (("communities", component), lambda: community_graph(ds, component))}
    if "consensus_confidence" in ds:
        builders["consensus"] = (("consensus", component), lambda: coassignment_plot(consensus_of(ds, component)))
    return builders


def connectome_figures(ds: xr.Dataset, component: int = 0) -> dict[str, go.Figure]:
    """Rank sweep, component panel and community graph of a stored ``dynamic_connectome`` result.

    Examples
    --------
    >>> from workbench.connectome import synthetic, dynamic_connectome
    >>> ds = dynamic_connectome(synthetic(12, 2, 160, 2).traces, ranks=[1, 2], n_restarts=2, device="cpu")
    >>> list(connectome_figures(ds))
    ['rank_sweep', 'component', 'top_pairs', 'communities']
    """
    return {name: build() for name, (_, build) in _figure_builders(ds, component).items()}


class ConnectomePage(Page):
    """Traces (synthetic or from a file), the fitted dynamic connectome, and which component is shown."""

    title = "Connectome"
    slug = "connectome"
    summary = "Dynamic functional connectomes of neural recordings, taken apart by non-negative tensor factorisation."
    intro = ("Sliding-window connectivity of a recording, factorised into components (pairs of neurons, a time "
             "course, a weight per animal). Try first: press **Run rank sweep + NTF** on the synthetic data and "
             "check that the components match the planted motifs.")
    terms = ("dfc", "ntf", "rank_sweep", "fms", "reconstruction_error")
    wide_figures = ("component",)  # three panels side by side: at half a row their titles would meet
    help = {"source": "source", "path": "path", "recording": "recording", "n_neurons": "n_neurons",
            "n_animals": "n_animals", "n_time": "n_time", "n_motifs": "n_motifs", "seed": "seed",
            "rank_min": "rank_min", "rank_max": "rank_max", "n_restarts": "n_restarts", "max_iter": "max_iter",
            "n_surrogates": "n_surrogates", "covariate": "covariate", "animal": "animal", "component": "component"}

    source = param.Selector(default="synthetic", objects=["synthetic", "file"])
    path = param.String(default="", doc="Recording file or folder inside the data folders "
                                        "(see workbench.connectome.load_traces).")
    recording = param.Selector(default="", objects=[""], doc="A recording found in the data folders; "
                                                             "choosing one loads it.")
    n_neurons = param.Integer(default=16, bounds=(4, 200))
    n_animals = param.Integer(default=3, bounds=(1, 20))
    n_time = param.Integer(default=240, bounds=(40, 5000))
    n_motifs = param.Integer(default=2, bounds=(1, 6))
    seed = param.Integer(default=0)
    rank_min = param.Integer(default=1, bounds=(1, 20))
    rank_max = param.Integer(default=3, bounds=(1, 20), doc="Largest rank tried; no mode size bounds it (one animal is fine).")
    n_restarts = param.Integer(default=3, bounds=(2, 20))
    max_iter = param.Integer(default=60, bounds=(5, 2000))
    n_surrogates = param.Integer(default=0, bounds=(0, 200), doc="Circular-shift surrogate recordings fitted the same "
                                 "way, to say which components are more than chance (0: no test).")
    covariate = param.Selector(default="", objects=[""], doc="Covariate of the recording drawn over the time factor.")
    animal = param.Integer(default=0, bounds=(0, None), doc="Animal whose traces are shown.")
    component = param.Selector(default=0, objects=[0], doc="Component shown in the browser.")
    caution = param.String(default="", doc="Why a result on this page must be read with care (e.g. too few "
                                           "surrogates for any component to be significant); empty when none.")
    traces = param.Parameter(default=None, doc="(animal, neuron, time) traces in use.")
    result = param.Parameter(default=None, doc="Dataset of dynamic_connectome for the traces and fit settings.")


    def __init__(self, cache_dir=None, **params: Any):
        super().__init__(cache_dir=cache_dir, **params)
        self._traces_id: dict = {}
        recordings = self.data_folders.files(RECORDING_SUFFIXES, folder_markers=RECORDING_FOLDERS)
        self._choose("recording", ["", *recordings], "")
        self.load()

    @param.depends("n_surrogates", watch=True, on_init=True)
    def _surrogates_changed(self) -> None:
        """Too few surrogates for any p-value to reach 0.05 (the level the page tests at): say so before a run."""
        from workbench.connectome.surrogates import too_few_surrogates

        reason = too_few_surrogates(self.n_surrogates) if self.n_surrogates else ""
        self.caution = f"{reason}. Until then no component can be called more than chance." if reason else ""

    def header(self) -> pn.viewable.Viewable:
        """The shared header, with the page's :attr:`caution` under the error message."""
        from widgets.template import caution_box

        header = super().header()
        header.insert(len(header.objects) - 1, caution_box(self))  # before the job bar
        return header

    def on_open(self) -> None:
        """Served page opened: take the generator and fit settings from the URL query (``/connectome?n_surrogates=9``)."""
        self.apply_query((*SYNTHETIC, *FIT))

    @param.depends("recording", watch=True)
    def _recording_chosen(self) -> None:
        if self.recording and not self._choosing:
            self.param.update(source="file", path=self.recording)
            self.load()

    def _key(self) -> str:
        return result_key(self.slug, {**self._traces_id, **{name: getattr(self, name) for name in FIT}})

    def load(self) -> xr.DataArray | Job | None:
        """Generate synthetic traces now, or read the recording at ``path`` in a background job.

        A file is read only inside the data folders, and never on the
        server's event loop: returns the job (``page.wait()`` delivers it in
        scripts). Bad input (a path outside, not a recording...) becomes the
        page message.
        """
        from workbench.connectome import synthetic

        if self.source == "file":
            folders, text = self.data_folders, self.path
            if not text.strip():
                self.message = "path: expected a recording file or folder, got an empty path"
                return None
            animal = self.animal

            def work(job: Job) -> tuple[xr.DataArray, dict, dict]:
                from workbench.figures.traces import traces_heatmap

                traces, traces_id = read_recording(folders, text)
                job.report(None, "load recording: drawing the traces")  # binned for display: see traces_heatmap
                shown = min(animal, traces.sizes["animal"] - 1)
                return traces, traces_id, {("traces", shown): traces_heatmap(traces, shown)}

            return self.start(work, "load recording", lambda loaded: self._use(*loaded))
        settings = {name: getattr(self, name) for name in SYNTHETIC}
        traces = self.attempt(lambda: synthetic(self.n_neurons, self.n_animals, self.n_time, self.n_motifs,
                                                seed=self.seed).traces)
        if traces is not None:
            self._use(traces, settings)
        return traces

    def _use(self, traces: xr.DataArray, traces_id: dict, figures: dict | None = None) -> None:
        """Show ``traces`` (identified by ``traces_id`` in result keys) and their stored result if any.

        ``figures`` (``{key: figure}``) were built off the event loop by the job that read the traces.
        """
        self._traces_id = traces_id
        self.forget_figures()
        self.traces, self.result = traces, None
        self.param.animal.bounds = (0, traces.sizes["animal"] - 1)
        self.animal = min(self.animal, traces.sizes["animal"] - 1)
        cached = self.store.load(self._key())
        if cached is not None:
            self._show(cached)
        for key, fig in (figures or {}).items():
            self.figure(key, lambda fig=fig: fig)
        self.status = f"{traces.sizes['animal']} animals x {traces.sizes['neuron']} neurons x {traces.sizes['time']} frames"
        self.revision += 1

    @param.depends("source", *SYNTHETIC, watch=True)
    def _data_changed(self) -> None:
        if self.source == "synthetic":
            self.load()

    @param.depends("animal", "component", "covariate", watch=True)
    def _view_changed(self) -> None:
        if not self._choosing:  # the caller redraws once for the new result and component together
            self.revision += 1

    def _show(self, ds: xr.Dataset) -> None:
        self.forget_figures()
        components = [int(c) for c in range(ds.sizes["component"])]
        keep = self.component if self.component in components else 0
        self._choose("component", components, keep)
        names = [str(n) for n in ds["covariate"].values] if "covariate_binned" in ds else []
        self._choose("covariate", ["", *names], self.covariate if self.covariate in names else "")
        self.result = ds
        self.revision += 1
        covariate = self.covariate or None
        self.prefetch({key: build for component in components
                       for key, build in _figure_builders(ds, component, covariate).values()})

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
        n_restarts, max_iter, n_surrogates = self.n_restarts, self.max_iter, self.n_surrogates or None

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
                                    n_surrogates=n_surrogates, callback=step)
            job.check()
            ds = add_consensus(ds, job=job)
            self.store.save(key, ds)
            return ds

        return self.start(work, "rank sweep and NTF", self._show, share=key)

    def figures(self) -> dict[str, go.Figure]:
        """Traces heatmap; once fitted, the rank sweep, component panel (significance and covariate
        overlays when the result has them), strongest pairs by name, community graph and consensus."""
        from workbench.figures.traces import traces_heatmap

        figures = {}
        if self.traces is not None:
            traces, animal = self.traces, self.animal
            figures["traces"] = self.figure(("traces", animal), lambda: traces_heatmap(traces, animal))
        if self.result is not None:
            builders = _figure_builders(self.result, int(self.component), self.covariate or None)
            figures.update({name: self.figure(key, build) for name, (key, build) in builders.items()})
        return figures

    def controls(self) -> list:
        load = pn.widgets.Button(label="Load", css_classes=["wb-load"])
        load.on_click(lambda _: self.load())
        run = pn.widgets.Button(label="Run rank sweep + NTF", color="primary", css_classes=["wb-run"],
                                disabled=self.param.running)
        run.on_click(lambda _: self.run())
        data = settings(self, ["source"], widgets={"source": {"css_classes": ["wb-source"]}})
        # Each source shows only its own settings: the recording picker and path mean nothing for synthetic
        # data, the generator's settings nothing for a recording.
        recording = settings(self, ["recording", "path"], css_classes=["wb-file"], visible=self.source == "file",
                             widgets={"path": {"css_classes": ["wb-path"]},
                                      "recording": {"css_classes": ["wb-recording"]}})
        synthetic = settings(self, list(SYNTHETIC), css_classes=["wb-synthetic"], visible=self.source == "synthetic")
        for group, source in ((recording, "file"), (synthetic, "synthetic")):
            self.param.watch(lambda event, group=group, source=source: setattr(group, "visible", event.new == source),
                             "source")
        fit = settings(self, [*FIT, "animal", "component", "covariate"],
                       widgets={"component": {"css_classes": ["wb-component"]},
                                "covariate": {"css_classes": ["wb-covariate"]}})
        return [data, recording, synthetic, load, fit, run]
