"""Neural collapse: train a small MLP on digits and watch NC1-NC4 and the class-mean Gram.

Examples
--------
>>> import tempfile
>>> page = CollapsePage(cache_dir=tempfile.mkdtemp(), n_classes=4, n_major=40, ratio=4)
>>> page.counts()
[40, 40, 10, 10]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn
import param
import plotly.graph_objects as go
import xarray as xr

from widgets.jobs import Job
from widgets.pages.base import Page
from widgets.results import result_key

RUN_SETTINGS = ("n_classes", "n_major", "ratio", "depth", "width", "n_linear", "loss", "epochs", "record_every",
                "seed")


def _digits(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits restricted to classes 0..n_classes-1, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = digits.target < n_classes
    return digits.data[keep] / 16.0, digits.target[keep]


def collapse_figures(ds: xr.Dataset, layer: str | None = None, target: str = "etf") -> dict[str, go.Figure]:
    """The page's figures for a stored ``run_experiment`` result (``layer`` default: the last).

    Examples
    --------
    >>> from workbench.collapse import run_experiment
    >>> ds = run_experiment(hidden=(8,), n_linear=1, epochs=1, progress=False, device="cpu")
    >>> list(collapse_figures(ds))
    ['nc_curves', 'nc1_by_layer', 'gram']
    """
    from workbench.figures.collapse import gram_heatmap, nc_vs_epoch, nc_vs_layer

    layer = layer if layer is not None else str(ds.layer.values[-1])
    return {"nc_curves": nc_vs_epoch(ds, layer=layer).update_layout(title=f"NC metrics at {layer}"),
            "nc1_by_layer": nc_vs_layer(ds, "nc1"),
            "gram": gram_heatmap(ds.isel(epoch=-1).sel(layer=layer), target=target)}


class CollapsePage(Page):
    """Settings of a neural-collapse run, its result, and the figures drawn from it.

    The first half of the classes are majority classes with ``n_major``
    samples, the rest minority classes with ``n_major / ratio`` (ratio 1 is
    balanced), the step imbalance of Dang et al. (2023).
    """

    title = "Neural collapse"
    slug = "collapse"

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

    def _show(self, ds: xr.Dataset) -> None:
        layers = [str(v) for v in ds.layer.values]
        self.param.layer.objects = layers
        with param.parameterized.discard_events(self):  # one redraw for result and layer together
            self.layer = self.layer if self.layer in layers else layers[-1]
            self.result = ds
        self.revision += 1

    @param.depends("layer", "target", watch=True)
    def _view_changed(self) -> None:
        self.revision += 1

    def on_open(self) -> None:
        """Served page opened: run the (small, default) settings unless cached."""
        if self.result is None:
            self.run()

    def run(self) -> Job | None:
        """Train with the current settings in the background; the result is cached.

        ``run_experiment`` reports no progress and cannot be interrupted, so
        the bar is indeterminate and cancel discards the result when training ends.
        """
        if self._load_cached():
            self.status = "loaded from cache"
            return None
        settings, counts = self.settings(), self.counts()
        key = result_key(self.slug, settings)

        def work(job: Job) -> xr.Dataset:
            from workbench.collapse import run_experiment

            x, y = _digits(settings["n_classes"])
            job.report(None, f"training on {sum(counts)} digits in {len(counts)} classes for {settings['epochs']} "
                             f"epochs")
            ds = run_experiment((x, y), n_per_class=counts, hidden=(settings["width"],) * settings["depth"],
                                n_linear=settings["n_linear"], loss=settings["loss"], epochs=settings["epochs"],
                                record_every=settings["record_every"], seed=settings["seed"], device="cpu",
                                progress=False)
            job.check()
            self.store.save(key, ds)
            return ds

        return self.start(work, "neural-collapse run", self._show)

    def figures(self) -> dict[str, go.Figure]:
        """NC metrics over epochs, NC1 over layers and the Gram heatmap, once a run exists."""
        return {} if self.result is None else collapse_figures(self.result, self.layer, self.target)

    def controls(self) -> list:
        run = pn.widgets.Button(label="Run", button_type="primary", css_classes=["wb-run"],
                                disabled=self.param.running)
        run.on_click(lambda _: self.run())
        settings = pn.Param(self.param, parameters=[*RUN_SETTINGS[:-1], "target", "layer"], show_name=False,
                            widgets={"layer": {"css_classes": ["wb-layer"]},
                                     "n_major": {"css_classes": ["wb-n-major"]}})
        return [settings, run]
