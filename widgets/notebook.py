"""Light ipywidgets controls over the workbench's figures, for notebooks without Panel.

Each function here takes the result of an analysis and returns a
:class:`FigureBrowser`: an ``ipywidgets.VBox`` with controls on top and the
figures below. The figures come from the same builders in
:mod:`workbench.figures` that the dashboard and the paper exports use, so
what a control shows is exactly what ``export`` would write. Moving a control
redraws; the figures on screen are always in ``browser.figures``, and code
can drive a browser as a user would::

    browser = component_browser(result)       # last line of a cell: shown in Jupyter
    browser.controls["component"].value = 2   # the same as moving the slider
    browser.figures["component"]              # the go.Figure now on screen

Only ipywidgets and plotly are needed (no Panel, no extra front-end
extension beyond the plotly renderer that ships with plotly). Bad input
raises when a browser is built; a control set to a value the result cannot
show leaves the figures as they were and says why above them.

Examples
--------
>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset({"singular_value": (("matrix", "index"), [[3.0, 1.0], [2.0, 2.0]]),
...                  "stable_rank": ("matrix", [1.1, 2.0])},
...                 coords={"matrix": ["L0H0 ov", "L1H0 ov"], "kind": ("matrix", ["ov", "ov"]),
...                         "layer": ("matrix", [0, 1]), "head": ("matrix", [0, 0])})
>>> browser = layer_picker(ds)
>>> browser.controls["layer"].value = 1
>>> [trace.name for trace in browser.figures["heads"].data]
['L1H0']
"""

from __future__ import annotations

import functools
import html
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as ipw
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import xarray as xr

#: Errors a control value can cause that are shown as a message instead of raised.
_SHOWN_ERRORS = (ValueError, TypeError, KeyError)
#: The value of :func:`layer_picker`'s "all layers" choice.
ALL = "all"


def display_data(item: go.Figure | str) -> dict:
    """The Jupyter ``display_data`` output of a figure (plotly MIME) or an HTML string.

    Set as an ``Output`` widget's ``outputs`` it renders in JupyterLab,
    Notebook 7 and VS Code without a running display hook, so a browser
    redraws the same way in a kernel and in a test.

    Examples
    --------
    >>> out = display_data(go.Figure(go.Bar(y=[1, 2])))
    >>> out["output_type"], sorted(out["data"])
    ('display_data', ['application/vnd.plotly.v1+json', 'text/plain'])
    >>> display_data("<b>hi</b>")["data"]["text/html"]
    '<b>hi</b>'
    """
    if isinstance(item, go.Figure):
        bundle = pio.renderers["plotly_mimetype"].to_mimebundle(item.to_dict())
        title = item.layout.title.text or "figure"
        data = {**bundle, "text/plain": f"<plotly figure: {title}>"}
    elif isinstance(item, str):
        data = {"text/html": item, "text/plain": html.unescape(item)}
    else:
        raise TypeError(f"item: expected a plotly go.Figure or an HTML string, got {type(item).__name__}")
    return {"output_type": "display_data", "data": data, "metadata": {}}


class FigureBrowser(ipw.VBox):
    """Controls above figures; changing any control redraws every figure.

    Parameters
    ----------
    controls : mapping of str to ipywidgets value widget
        Named controls; their current values are passed to ``draw`` as keywords.
    draw : callable
        ``draw(**values) -> {name: go.Figure or HTML str}``, the figures to show.

    Attributes
    ----------
    controls : dict
        The controls by name; set ``controls[name].value`` to drive the browser.
    figures : dict
        The figures (and HTML blocks) now shown, by name.
    message : ipywidgets.HTML
        Empty, or why the last control value could not be shown.

    Examples
    --------
    >>> slider = ipw.IntSlider(value=1, min=1, max=3, description="n")
    >>> browser = FigureBrowser({"n": slider}, lambda n: {"bars": go.Figure(go.Bar(y=list(range(n))))})
    >>> slider.value = 3
    >>> list(browser.figures["bars"].data[0].y)
    [0, 1, 2]
    """

    def __init__(self, controls: Mapping[str, ipw.ValueWidget],
                 draw: Callable[..., dict[str, go.Figure | str]]):
        if not controls or not all(isinstance(c, ipw.ValueWidget) for c in controls.values()):
            raise TypeError(f"controls: expected a non-empty mapping of name to ipywidgets value widgets, "
                            f"got {controls!r}")
        message = ipw.HTML(value="")
        area = ipw.VBox()
        super().__init__([ipw.HBox(list(controls.values())), message, area])
        self.controls = dict(controls)
        self.message = message
        self.figures: dict[str, go.Figure | str] = {}
        self._draw = draw
        self._area = area
        self._outputs: dict[str, ipw.Output] = {}
        for control in self.controls.values():
            control.observe(self._redraw, names="value")
        self._redraw(first=True)

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The live widget, plus the figures now shown as static HTML for a notebook exported without its
        widget state (drawn by the plotly.js :func:`widgets.notebook_setup` publishes)."""
        from widgets.jupyter import figure_html

        bundle = super()._repr_mimebundle_(**kwargs) or {}
        values = ", ".join(f"{name} = {value!r}" for name, value in self.values.items())
        blocks = [f"<p>{html.escape(values)}</p>"]
        blocks += [figure_html(item) if isinstance(item, go.Figure) else item for item in self.figures.values()]
        return {**bundle, "text/html": "\n".join(blocks)}

    @property
    def values(self) -> dict[str, Any]:
        """The current value of every control, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def _redraw(self, change: Any = None, *, first: bool = False) -> None:
        try:
            figures = self._draw(**self.values)
        except _SHOWN_ERRORS as err:
            if first:  # a result the browser cannot show at all is the caller's bad input
                raise
            self.message.value = f'<span style="color:#b00020">{html.escape(str(err))}</span>'
            return
        self.message.value = ""
        self.figures = dict(figures)
        if list(self.figures) != list(self._outputs):
            self._outputs = {name: ipw.Output() for name in self.figures}
            self._area.children = tuple(self._outputs.values())
        for name, item in self.figures.items():
            self._outputs[name].outputs = (display_data(item),)


def _feature_control(d_sae: int, features: Sequence[int] | None) -> ipw.ValueWidget:
    if features is None:
        return ipw.IntSlider(value=0, min=0, max=d_sae - 1, description="feature", continuous_update=False)
    given = np.asarray(features).reshape(-1)
    if not np.issubdtype(given.dtype, np.integer):
        raise TypeError(f"features: expected integer latent indices, got {features!r}")
    chosen = [int(f) for f in given]
    bad = [f for f in chosen if not 0 <= f < d_sae]
    if not chosen or bad:
        raise ValueError(f"features: expected latent indices in [0, {d_sae}), got {bad or chosen!r}")
    return ipw.SelectionSlider(options=chosen, value=chosen[0], description="feature", continuous_update=False)


def feature_explorer(sae, model, tokens, layer: int, *, features: Sequence[int] | None = None, k: int = 10,
                     batch_size: int = 16) -> FigureBrowser:
    """A feature slider over the SAE feature dashboard and its token-highlighted examples.

    For the feature picked, :func:`workbench.sae.top_activations` finds its top
    and quantile examples in ``tokens``, :func:`workbench.sae.dfa` attributes it
    to source positions in the sequence of its top example, and
    :func:`workbench.figures.sae.feature_dashboard` draws both with the
    per-head decoder share (:func:`workbench.sae.head_attribution`). Each
    feature is computed once, when first shown.

    Parameters
    ----------
    sae : AttentionSAE
        Trained on ``blocks.{layer}.attn.hook_z`` of ``model``.
    model : TransformerBridge
    tokens : torch.LongTensor [seq, pos]
        Where examples are searched.
    layer : int
    features : sequence of int, optional
        Latents offered by the slider; default all of them.
    k : int
        Top examples per feature (and as many quantile examples).
    batch_size : int
        Sequences per forward pass.

    Returns
    -------
    FigureBrowser
        Control ``"feature"``; figures ``"dashboard"`` (go.Figure) and
        ``"examples"`` (HTML).

    Examples
    --------
    >>> from workbench.models import load_model, tokenize
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> sae = AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=2))
    >>> browser = feature_explorer(sae, model, tokenize(model, ["import os, sys"] * 2, seq_len=8), 1, k=2)
    >>> browser.controls["feature"].value = 5
    >>> browser.figures["dashboard"].layout.title.text
    'feature 5'
    """
    from workbench.figures.sae import feature_dashboard, feature_examples_html
    from workbench.sae import dfa, head_attribution, top_activations

    head_share = head_attribution(sae, model.cfg.n_heads)
    control = _feature_control(sae.cfg.d_sae, features)

    @functools.lru_cache(maxsize=128)
    def computed(feature: int) -> tuple[xr.Dataset, xr.DataArray]:
        top = top_activations(sae, model, tokens, layer, [feature], k=k, batch_size=batch_size)
        seq = int(top["seq"].values[0, 0])  # the sequence of the top example
        return top, dfa(sae, model, tokens[seq:seq + 1], layer, [feature], batch_size=batch_size)

    def draw(feature: int) -> dict[str, go.Figure | str]:
        top, attribution = computed(int(feature))
        return {"dashboard": feature_dashboard(top, int(feature), head_share=head_share, dfa=attribution),
                "examples": feature_examples_html(top, int(feature), max_examples=2 * k)}

    computed(int(control.value))  # bad sae/model/tokens/layer raise here, with the analysis' own message
    return FigureBrowser({"feature": control}, draw)


def layer_picker(spectra: xr.Dataset, *, kind: str = "ov", metric: str = "stable_rank") -> FigureBrowser:
    """Per-head circuit spectra by layer, beside a rank metric of every weight matrix.

    Parameters
    ----------
    spectra : xr.Dataset
        From :func:`workbench.spectra.layer_spectra` of a TransformerBridge with
        ``"ov"`` and/or ``"qk"`` among its kinds.
    kind : {"ov", "qk"}
        Circuit shown first.
    metric : str
        Rank metric shown first (any ``matrix`` variable, e.g. ``alpha``).

    Returns
    -------
    FigureBrowser
        Controls ``"layer"`` (a layer, or ``"all"``), ``"kind"`` and ``"metric"``;
        figures ``"heads"`` (:func:`~workbench.figures.spectra.head_spectra_figure`)
        and ``"metric"`` (:func:`~workbench.figures.spectra.metric_heatmap`).

    Examples
    --------
    >>> from workbench.models import load_model
    >>> from workbench.spectra import layer_spectra
    >>> browser = layer_picker(layer_spectra(load_model("tiny-attn-2l", device="cpu"), progress=False))
    >>> browser.controls["kind"].value = "qk"
    >>> browser.controls["layer"].value = 1
    >>> len(browser.figures["heads"].data)        # one line per head
    4
    """
    from workbench.figures.spectra import head_spectra_figure, metric_heatmap

    if not isinstance(spectra, xr.Dataset) or not {"singular_value", "kind", "layer", "head"} <= set(spectra.variables):
        raise TypeError(f"spectra: expected the xr.Dataset of layer_spectra, got {type(spectra).__name__}")
    kinds = [k for k in ("ov", "qk") if k in set(spectra["kind"].values.tolist())]
    if not kinds:
        raise ValueError("spectra: expected per-head 'ov' or 'qk' circuits (layer_spectra of a TransformerBridge "
                         f"with kinds including them), got kinds {sorted(set(spectra['kind'].values.tolist()))}")
    if kind not in kinds:
        raise ValueError(f"kind: expected one of {kinds}, got {kind!r}")
    metrics = [name for name, var in spectra.data_vars.items() if var.dims == ("matrix",)]
    if metric not in metrics:
        raise ValueError(f"metric: expected one of {metrics}, got {metric!r}")
    layers = sorted({int(v) for v in spectra["layer"].values if v >= 0})
    # "all", not None: ipywidgets takes a None value for "nothing chosen" and shows an empty box
    layer = ipw.Dropdown(options=[("all layers", ALL)] + [(f"layer {v}", v) for v in layers], value=ALL,
                         description="layer")
    kind_control = ipw.ToggleButtons(options=kinds, value=kind, description="circuit")
    metric_control = ipw.Dropdown(options=metrics, value=metric, description="metric")

    def draw(layer: int | str, kind: str, metric: str) -> dict[str, go.Figure]:
        shown = None if layer == ALL else layer
        return {"heads": head_spectra_figure(spectra, kind, layer=shown), "metric": metric_heatmap(spectra, metric)}

    return FigureBrowser({"layer": layer, "kind": kind_control, "metric": metric_control}, draw)


def component_browser(result: xr.Dataset, *, top_fraction: float = 0.1) -> FigureBrowser:
    """A component slider over a dynamic connectome: its pair, time and animal factors and communities.

    Parameters
    ----------
    result : xr.Dataset
        From :func:`workbench.connectome.dynamic_connectome`.
    top_fraction : float
        Share of the strongest pairs drawn as edges in the community graph.

    Returns
    -------
    FigureBrowser
        Control ``"component"``; figures ``"component"``
        (:func:`~workbench.figures.connectome.component_panel`) and
        ``"communities"`` (:func:`~workbench.figures.connectome.community_graph`).

    Examples
    --------
    >>> from workbench.connectome import synthetic, dynamic_connectome
    >>> result = dynamic_connectome(synthetic(12, 2, 160, 2).traces, rank=2, n_restarts=2, device="cpu")
    >>> browser = component_browser(result)
    >>> browser.controls["component"].value = 1
    >>> browser.figures["component"].layout.title.text
    'component 1'
    """
    from workbench.figures.connectome import community_graph, component_panel

    if not isinstance(result, xr.Dataset) or "component" not in result.dims:
        raise TypeError(f"result: expected the xr.Dataset of dynamic_connectome, got {type(result).__name__}")
    n = result.sizes["component"]
    control = ipw.IntSlider(value=0, min=0, max=n - 1, description="component", continuous_update=False)

    def draw(component: int) -> dict[str, go.Figure]:
        return {"component": component_panel(result, component),
                "communities": community_graph(result, component, top_fraction=top_fraction)}

    return FigureBrowser({"component": control}, draw)


def epoch_slider(result: xr.Dataset, *, theory: xr.Dataset | None = None,
                 metrics: Sequence[str] = ("nc1", "nc2_etf", "nc3", "nc4")) -> FigureBrowser:
    """An epoch slider and layer picker over a neural-collapse run: the class-mean Gram beside its target.

    Parameters
    ----------
    result : xr.Dataset
        From :func:`workbench.collapse.run_experiment` (or ``track(...).result()``),
        over ``epoch`` and ``layer`` with ``gram`` and ``gram_uncentred``.
    theory : xr.Dataset, optional
        From :func:`workbench.collapse.imbalanced_geometry`; adds the
        imbalanced optimum as a Gram target.
    metrics : sequence of str
        NC metrics drawn against epoch.

    Returns
    -------
    FigureBrowser
        Controls ``"epoch"`` (default the last), ``"layer"`` (default the last)
        and ``"target"`` (``"etf"``, ``"of"``, and ``"theory"`` when given);
        figures ``"gram"`` (:func:`~workbench.figures.collapse.gram_heatmap` at
        that epoch and layer) and ``"nc_curves"``
        (:func:`~workbench.figures.collapse.nc_vs_epoch` at that layer).

    Examples
    --------
    >>> from workbench.collapse import run_experiment
    >>> run = run_experiment(hidden=(16,), n_linear=2, epochs=4, record_every=2, progress=False, device="cpu")
    >>> browser = epoch_slider(run)
    >>> browser.controls["epoch"].options
    (0, 2, 4)
    >>> browser.controls["epoch"].value = 0
    >>> browser.figures["gram"].layout.title.text.startswith("Gram vs simplex ETF")
    True
    """
    from workbench.figures.collapse import gram_heatmap, nc_vs_epoch

    if not isinstance(result, xr.Dataset) or not {"epoch", "layer"} <= set(result.dims) or "gram" not in result:
        raise TypeError("result: expected the xr.Dataset of run_experiment (dims epoch and layer, with 'gram'), "
                        f"got {type(result).__name__}")
    targets = [("simplex ETF", "etf"), ("orthogonal frame", "of")]
    if theory is not None:
        if not isinstance(theory, xr.Dataset) or "mean_norm" not in theory:
            raise TypeError(f"theory: expected the xr.Dataset of imbalanced_geometry, got {type(theory).__name__}")
        if theory.sizes["class"] != result.sizes["class"]:
            raise ValueError(f"theory: expected {result.sizes['class']} classes as in result, "
                             f"got {theory.sizes['class']}")
        targets.append(("imbalanced theory", "theory"))
    epochs = [int(e) for e in result["epoch"].values]
    layers = [str(v) for v in result["layer"].values]
    epoch = ipw.SelectionSlider(options=epochs, value=epochs[-1], description="epoch", continuous_update=False)
    layer = ipw.Dropdown(options=layers, value=layers[-1], description="layer")
    target = ipw.ToggleButtons(options=targets, value="etf", description="target")

    def draw(epoch: int, layer: str, target: str) -> dict[str, go.Figure]:
        goal = theory if target == "theory" else target
        return {"gram": gram_heatmap(result.sel(epoch=epoch, layer=layer), target=goal),
                "nc_curves": nc_vs_epoch(result, metrics=metrics, layer=layer)}

    return FigureBrowser({"epoch": epoch, "layer": layer, "target": target}, draw)


__all__ = ["FigureBrowser", "component_browser", "display_data", "epoch_slider", "feature_explorer", "layer_picker"]
