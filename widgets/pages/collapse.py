"""Neural collapse: train a small MLP on digits and watch NC1-NC4 and the class-mean Gram.

Examples
--------
>>> import tempfile
>>> page = CollapsePage(cache_dir=tempfile.mkdtemp(), n_classes=4, n_major=40, ratio=4)
>>> page.counts()
[40, 40, 10, 10]
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

RUN_SETTINGS = ("n_classes", "n_major", "ratio", "depth", "width", "n_linear", "loss", "epochs", "record_every",
                "seed")


def _digits(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits restricted to classes 0..n_classes-1, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = digits.target < n_classes
    return digits.data[keep] / 16.0, digits.target[keep]


def _figure_builders(ds: xr.Dataset, layer: str,
                     target: str) -> dict[str, tuple[Hashable, Callable[[], go.Figure]]]:
    """``{name: (key, build)}``: each key names exactly the view settings its figure depends on.

    ``means_3d`` needs the class means that results stored by older versions lack.
    """
    from workbench.figures.collapse import class_means_3d, gram_heatmap, nc_vs_epoch, nc_vs_layer

    last = ds.isel(epoch=-1).sel(layer=layer)
    builders = {"nc_curves": (("nc_curves", layer),
                              lambda: nc_vs_epoch(ds, layer=layer).update_layout(title=f"NC metrics at {layer}")),
                "nc1_by_layer": (("nc1_by_layer",), lambda: nc_vs_layer(ds, "nc1")),
                "gram": (("gram", layer, target), lambda: gram_heatmap(last, target=target))}
    if "class_means" in ds:
        epoch = int(ds.epoch.values[-1])
        builders["means_3d"] = (("means_3d", layer, target, epoch), lambda: class_means_3d(last, target=target)
                                .update_layout(title=f"Class means and classifier rows at {layer}, epoch {epoch}"))
    return builders


def collapse_figures(ds: xr.Dataset, layer: str | None = None, target: str = "etf") -> dict[str, go.Figure]:
    """The page's figures for a stored ``run_experiment`` result (``layer`` default: the last).

    Examples
    --------
    >>> from workbench.collapse import run_experiment
    >>> ds = run_experiment(hidden=(16,), n_linear=1, epochs=1, progress=False, device="cpu")
    >>> list(collapse_figures(ds))
    ['nc_curves', 'nc1_by_layer', 'gram', 'means_3d']
    """
    layer = layer if layer is not None else str(ds.layer.values[-1])
    return {name: build() for name, (_, build) in _figure_builders(ds, layer, target).items()}


class CollapsePage(Page):
    """Settings of a neural-collapse run, its result, and the figures drawn from it.

    The first half of the classes are majority classes with ``n_major``
    samples, the rest minority classes with ``n_major / ratio`` (ratio 1 is
    balanced), the step imbalance of Dang et al. (2023).

    While a run trains, :attr:`live` holds the metrics recorded so far and
    the figures are drawn from it, so the NC curves grow epoch by epoch.
    """

    title = "Neural collapse"
    slug = "collapse"
    summary = "Neural collapse of a small classifier on digits: NC1-NC4 while it trains, balanced or not."
    intro = ("Trains a small network on digits and measures how its last-layer features collapse onto their class "
             "means (NC1-NC4) and which geometry the means take. Try first: press **Run**, then raise the "
             "**imbalance ratio** and compare the Gram matrix with the target geometry.")
    terms = ("nc1", "nc2", "nc3", "nc4", "gram", "imbalance")
    help = {"n_classes": "n_classes", "n_major": "n_major", "ratio": "imbalance", "depth": "depth",
            "width": "width", "n_linear": "n_linear", "loss": "loss", "target": "target", "epochs": "epochs",
            "record_every": "record_every", "seed": "seed", "layer": "collapse_layer"}

    n_classes = param.Integer(default=4, bounds=(2, 10), doc="Digit classes 0..K-1.")
    n_major = param.Integer(default=60, bounds=(2, 170), doc="Training samples per majority class.")
    ratio = param.Number(default=1.0, bounds=(1.0, 50.0), doc="Imbalance n_major / n_minor (1 = balanced).")
    depth = param.Integer(default=1, bounds=(1, 4), doc="ReLU layers before the linear head.")
    width = param.Integer(default=64, bounds=(4, 512), doc="Width of every layer.")
    n_linear = param.Integer(default=2, bounds=(1, 4), doc="Bias-free linear layers (the last is the classifier).")
    loss = param.Selector(default="mse", objects=["mse", "ce"])
    target = param.Selector(default="etf", objects=["etf", "of"],
                            doc="Gram target: simplex ETF (centred means, as with a bias) or orthogonal frame "
                                "(uncentred, the bias-free MSE optimum).")
    epochs = param.Integer(default=20, bounds=(1, 500))
    record_every = param.Integer(default=5, bounds=(1, 100))
    seed = param.Integer(default=0)
    layer = param.Selector(default=None, objects=[], doc="Layer whose NC curves and Gram are shown.")
    result = param.Parameter(default=None, doc="Dataset of run_experiment for the current settings.")
    live = param.Parameter(default=None, doc="Metrics recorded so far by the running run (growing over epoch), "
                                             "then its result; None before a run and after a cancelled one.")


    def __init__(self, cache_dir=None, **params: Any):
        super().__init__(cache_dir=cache_dir, **params)
        self._load_cached()

    def counts(self) -> list[int]:
        """Samples per class for the current settings."""
        minor = max(1, int(round(self.n_major / self.ratio)))
        half = (self.n_classes + 1) // 2
        return [self.n_major] * half + [minor] * (self.n_classes - half)

    def settings(self) -> dict:
        """The settings that define a run (and its cache key)."""
        return {name: getattr(self, name) for name in RUN_SETTINGS}

    def _load_cached(self) -> bool:
        ds = self.store.load(result_key(self.slug, self.settings()))
        if ds is not None:
            self._show(ds)
        return ds is not None

    @param.depends(*RUN_SETTINGS, watch=True)
    def _settings_changed(self) -> None:
        if not self._load_cached() and self.result is not None:
            self.status = "settings changed: press Run"

    def _use_layers(self, ds: xr.Dataset) -> None:
        """Offer the layers of ``ds``, keeping the chosen one when it is among them (else the last)."""
        layers = [str(v) for v in ds.layer.values]
        keep = self.layer if self.layer in layers else layers[-1]
        self._choose("layer", layers, keep)

    def _show(self, ds: xr.Dataset) -> None:
        self.forget_figures()
        self._use_layers(ds)
        self.result = ds
        self.revision += 1
        layers, targets = list(self.param.layer.objects), list(self.param.target.objects)
        self.prefetch({key: build for layer in layers for target in targets
                       for key, build in _figure_builders(ds, layer, target).values()})

    def on_partial(self, metrics: xr.Dataset) -> None:
        """A run recorded more epochs: draw the curves so far."""
        self._use_layers(metrics)
        self.live = metrics
        self.revision += 1

    @param.depends("layer", "target", watch=True)
    def _view_changed(self) -> None:
        if not self._choosing:  # the caller redraws once for the new result and layer together
            self.revision += 1

    @param.depends("running", watch=True)
    def _run_ended(self) -> None:
        if not self.running and self._job is not None and self._job.error is not None and self.live is not None:
            self.live = None  # a cancelled or failed run leaves no curves behind
            self.revision += 1

    def on_open(self) -> None:
        """Served page opened: run the (small, default) settings unless cached."""
        if self.result is None:
            self.run()

    def run(self) -> Job | None:
        """Train with the current settings in the background; the result is cached.

        Every epoch moves the bar and every recorded epoch extends the live
        curves (:attr:`live`); cancel stops training after the running epoch
        and discards the run.
        """
        if self._load_cached():
            self.status = "loaded from cache"
            return None
        settings, counts = self.settings(), self.counts()
        key = result_key(self.slug, settings)
        epochs = settings["epochs"]

        def work(job: Job) -> xr.Dataset:
            from workbench.collapse import run_experiment

            x, y = _digits(settings["n_classes"])
            job.report(0.0, f"training on {sum(counts)} digits in {len(counts)} classes for {epochs} epochs")

            def epoch_done(epoch: int, metrics: xr.Dataset) -> bool:
                job.report(epoch / epochs, f"epoch {epoch}/{epochs}: NC1 at {metrics.layer.values[-1]} "
                                           f"{float(metrics.nc1[-1, -1]):.3g}")
                job.publish(metrics)
                return job.cancelled

            ds = run_experiment((x, y), n_per_class=counts, hidden=(settings["width"],) * settings["depth"],
                                n_linear=settings["n_linear"], loss=settings["loss"], epochs=epochs,
                                record_every=settings["record_every"], seed=settings["seed"], device="cpu",
                                progress=epoch_done)
            job.check()
            self.store.save(key, ds)
            return ds

        def done(ds: xr.Dataset) -> None:
            self.live = ds
            self._show(ds)

        job = self.start(work, "neural-collapse run", done, share=key)
        if job is not None:
            self.live = None  # the last run's curves are not this one's
        return job

    def figures(self) -> dict[str, go.Figure]:
        """NC metrics over epochs, NC1 over layers, the Gram heatmap and the 3-D class means.

        Live while a run trains, else of the result.
        """
        if self.running and self.live is not None:  # grows every record: drawn afresh, not memoised
            return collapse_figures(self.live, self.layer, self.target)
        if self.result is None:
            return {}
        return {name: self.figure(key, build)
                for name, (key, build) in _figure_builders(self.result, self.layer, self.target).items()}

    def controls(self) -> list:
        run = pn.widgets.Button(label="Run", color="primary", css_classes=["wb-run"],
                                disabled=self.param.running)
        run.on_click(lambda _: self.run())
        fields = settings(self, [*RUN_SETTINGS[:-1], "target", "layer"],
                          widgets={"layer": {"css_classes": ["wb-layer"]}, "n_major": {"css_classes": ["wb-n-major"]}})
        return [fields, run]
