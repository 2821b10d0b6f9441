"""Every figure builder of ``workbench.figures`` meets the figure standard (its package docstring).

Builders are discovered (:func:`workbench.figures.gallery.builders`), not
listed: a new builder without an input in :data:`~workbench.figures.gallery.INPUTS`
fails here, and so does one that breaks a rule checkable on the figure
object. What only the eye can judge (overlaps, clipped legends) is for
``scripts/contact_sheet.py``.
"""

from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go
import pytest
import xarray as xr

from workbench.figures import gallery
from workbench.figures.template import FULL_WIDTH_PX, MIN_FONT_PT, paper_points

BUILDERS = gallery.builders()
NAMES = [name for name, _ in BUILDERS]

#: Axis titles that name a discrete dimension (their ticks must be integers or labels).
DISCRETE = re.compile(r"^(layer|head|rank|class|component|k|restart|epoch|index|neuron|feature)\b")
#: Axis titles that name tokens (their ticks must be the tokens' text).
TOKENS = re.compile(r"^(token|source|destination)\b")
COLOUR_TRACES = ("heatmap", "contour", "histogram2d", "histogram2dcontour", "surface")




# ------------------------------------------------------------------------------------------ the checks


def _get(obj, path: str):
    """``obj.a.b.c`` for ``path="a.b.c"``, or None where any part is unset."""
    for part in path.split("."):
        if obj is None:
            return None
        try:
            obj = obj[part]
        except (KeyError, TypeError, ValueError):
            return None
    return obj


def _axis_default(fig: go.Figure, axis_name: str, path: str):
    value = _get(fig.layout[axis_name], path)
    if value is None:
        value = _get(fig.layout.template.layout, f"{axis_name[:5]}.{path}")
    return value


def _used_axes(fig: go.Figure) -> dict[str, list]:
    """Axis layout name (``xaxis2``) -> the traces drawn on it, for visible 2-D axes."""
    used: dict[str, list] = {}
    for trace in fig.data:
        if trace.type in ("scatter3d", "surface", "mesh3d", "pie", "sunburst", "treemap", "table"):
            continue
        for letter in ("x", "y"):
            ref = getattr(trace, f"{letter}axis", None) or letter
            name = f"{letter}axis{ref[1:]}"
            used.setdefault(name, []).append(trace)
    # An axis shared with another (make_subplots(shared_yaxes=True)) and without tick labels is that axis.
    return {name: traces for name, traces in used.items() if fig.layout[name].visible is not False
            and not (fig.layout[name].matches and fig.layout[name].showticklabels is False)}


def _axis_values(traces: list, letter: str) -> list:
    values = []
    for trace in traces:
        data = getattr(trace, letter, None)
        if data is None and trace.type in COLOUR_TRACES and getattr(trace, "z", None) is not None:
            z = np.asarray(trace.z)
            data = np.arange(z.shape[1] if letter == "x" else z.shape[0]) if z.ndim == 2 else None
        if data is None and trace.type in ("scatter", "bar") and getattr(trace, "y" if letter == "x" else "x", None) is not None:
            other = getattr(trace, "y" if letter == "x" else "x")
            data = np.arange(len(other))
        if data is not None:
            values.extend(np.asarray(data, dtype=object).ravel().tolist())
    return [v for v in values if v is not None]


def _is_integer(value) -> bool:
    try:
        return float(value) == int(float(value))
    except (TypeError, ValueError):
        return False


def axis_problems(fig: go.Figure) -> list[str]:
    problems = []
    for name, traces in _used_axes(fig).items():
        axis = fig.layout[name]
        title = (_get(axis, "title.text") or "").strip()
        if not title:
            problems.append(f"{name} has no title")
            continue
        lower = title.lower()
        values = _axis_values(traces, name[0])
        categorical = axis.type == "category" or any(isinstance(v, str) for v in values)
        tickvals = axis.tickvals
        if DISCRETE.match(lower) and axis.type != "log" and not categorical:
            integer_ticks = (tickvals is not None and all(_is_integer(v) for v in tickvals)) or (
                axis.dtick is not None and _is_integer(axis.dtick) and float(axis.dtick) >= 1
                and (axis.tick0 is None or _is_integer(axis.tick0)))
            if not integer_ticks:
                problems.append(f"{name} ({title!r}) is discrete but its ticks may fall between integers "
                                f"(dtick {axis.dtick}, tickvals {tickvals})")
        if TOKENS.match(lower):
            text = [str(t) for t in (axis.ticktext or [])] if axis.ticktext is not None else \
                [str(v) for v in values if isinstance(v, str)]
            if not text or all(re.fullmatch(r"-?\d+", t) for t in text):
                problems.append(f"{name} ({title!r}) is a token axis without the tokens' text")
        if axis.type == "log":
            decades = axis.dtick is not None and float(axis.dtick) == 1 if not isinstance(axis.dtick, str) else False
            listed = tickvals is not None and len(tickvals) > 0 and all(  # round values: 1 to 2 significant digits
                float(f"{float(v):.2g}") == pytest.approx(float(v), rel=1e-9) for v in tickvals)
            if not (decades or listed):
                problems.append(f"{name} ({title!r}) is a log axis labelled by plotly's defaults "
                                f"(dtick {axis.dtick!r}): label decades (dtick=1) or round values")
    for scene_name in [k for k in fig.layout if k.startswith("scene")]:
        scene = fig.layout[scene_name]
        if not any(getattr(t, "scene", "scene") == scene_name for t in fig.data if t.type.endswith("3d")):
            continue
        for letter in "xyz":
            if not (_get(scene, f"{letter}axis.title.text") or "").strip():
                problems.append(f"{scene_name}.{letter}axis has no title")
    return problems


def _scale_key(trace) -> tuple:
    return (str(trace.colorscale), trace.zmin, trace.zmax, trace.zmid)


def colour_problems(fig: go.Figure) -> list[str]:
    problems = []
    shown = []
    for trace in fig.data:
        if trace.type in COLOUR_TRACES and trace.showscale is not False and not trace.coloraxis:
            shown.append(_scale_key(trace))
    for i, trace in enumerate(fig.data):
        label = f"trace {i} ({trace.type} {trace.name!r})"
        if trace.type in COLOUR_TRACES:
            if trace.coloraxis:
                bar = fig.layout[trace.coloraxis].colorbar
                if fig.layout[trace.coloraxis].showscale is False or not (_get(bar, "title.text") or "").strip():
                    problems.append(f"{label}: its colour axis has no titled colorbar")
            elif trace.showscale is False:
                if _scale_key(trace) not in shown or trace.zmin is None:
                    problems.append(f"{label}: a colour scale without a colorbar (nor a shared one with fixed limits)")
            elif not (_get(trace, "colorbar.title.text") or "").strip():
                problems.append(f"{label}: its colorbar has no title")
        marker = getattr(trace, "marker", None)
        colors = _get(marker, "color") if marker is not None else None
        if colors is not None and not isinstance(colors, str) and len(colors) and all(
                isinstance(c, (int, float, np.number)) for c in colors):
            if not _get(marker, "showscale") or not (_get(marker, "colorbar.title.text") or "").strip():
                problems.append(f"{label}: numeric marker colours without a titled colorbar")
    return problems


def _font_sizes(fig: go.Figure) -> list[tuple[str, float]]:
    base = fig.layout.font.size or fig.layout.template.layout.font.size or 12
    sizes = [("layout.font", base)]

    def add(where: str, size) -> None:
        sizes.append((where, size if size is not None else base))

    if (_get(fig.layout, "title.text") or ""):
        add("title", _get(fig.layout, "title.font.size") or _get(fig.layout.template.layout, "title.font.size"))
    for name in _used_axes(fig):
        axis = fig.layout[name]
        if axis.showticklabels is not False:
            add(f"{name}.tickfont", _axis_default(fig, name, "tickfont.size"))
        if (_get(axis, "title.text") or ""):
            add(f"{name}.title", _axis_default(fig, name, "title.font.size"))
    if fig.layout.showlegend is not False and sum(t.showlegend is not False for t in fig.data) > 1:
        add("legend", _get(fig.layout, "legend.font.size") or _get(fig.layout.template.layout, "legend.font.size"))
    for i, note in enumerate(fig.layout.annotations):
        add(f"annotation {i} ({note.text!r})", note.font.size)
    for i, trace in enumerate(fig.data):
        has_text = (getattr(trace, "texttemplate", None) or (getattr(trace, "text", None) is not None
                    and "text" in (getattr(trace, "mode", None) or "text")))
        if has_text and hasattr(trace, "textfont"):
            add(f"trace {i} text", trace.textfont.size)
        if trace.type in COLOUR_TRACES and trace.showscale is not False and hasattr(trace, "colorbar"):
            add(f"trace {i} colorbar ticks", trace.colorbar.tickfont.size
                or _get(fig.layout.template.layout, "coloraxis.colorbar.tickfont.size"))
            if (_get(trace, "colorbar.title.text") or ""):
                add(f"trace {i} colorbar title", _get(trace, "colorbar.title.font.size"))
    return sizes


def font_problems(fig: go.Figure) -> list[str]:
    width = fig.layout.width or FULL_WIDTH_PX
    return [f"{where}: {size} px is {paper_points(size, width):.1f} pt in print, under {MIN_FONT_PT} pt"
            for where, size in _font_sizes(fig) if paper_points(size, width) < MIN_FONT_PT - 1e-9]


def fit_problems(fig: go.Figure) -> list[str]:
    problems = []
    for i, trace in enumerate(fig.data):
        if re.search(r"\bfit\b|power law", str(trace.name or ""), re.IGNORECASE):
            meta = trace.meta if isinstance(trace.meta, dict) else {}
            n = meta.get("fit_points")
            if n is None or n < 3:
                problems.append(f"trace {i} ({trace.name!r}) is a fit over {n} points (meta['fit_points']); "
                                f"draw fits only over at least 3")
    return problems


def title_problems(fig: go.Figure) -> list[str]:
    """A figure title above subplot titles needs a top margin that holds both."""
    title = (_get(fig.layout, "title.text") or "").strip()
    subplot_titles = [a for a in fig.layout.annotations
                      if a.yref == "paper" and a.yanchor == "bottom" and a.y is not None and a.y >= 0.99]
    if not title or not subplot_titles:
        return []
    base = fig.layout.font.size or fig.layout.template.layout.font.size
    title_px = _get(fig.layout, "title.font.size") or _get(fig.layout.template.layout, "title.font.size") or base
    sub_px = max(a.font.size or base for a in subplot_titles)
    top = _get(fig.layout, "margin.t") or fig.layout.template.layout.margin.t
    need = title_px + 2.4 * sub_px + 8  # the title is centred in the top margin; subplot titles sit on the plot
    return [] if top >= need else [f"figure title {title!r} collides with the subplot titles: top margin {top} px, "
                                   f"needs {need:.0f}"]


#: Average glyph width of the template's sans-serif font, in font sizes; a line of text is 1.3 font sizes high.
GLYPH, LINE = 0.6, 1.3


def _number_chars(value: float) -> int:
    """Characters of a tick label for ``value`` as plotly writes it (``1200``, ``0.25``, ``−3``)."""
    text = str(int(round(value))) if abs(value) >= 1 else f"{value:.2g}"
    return len(text)


def _tick_chars(axis, values: list) -> int:
    if axis.showticklabels is False:
        return 0
    if axis.ticktext is not None:
        return max((len(str(t)) for t in axis.ticktext), default=0)
    if axis.type == "category" or any(isinstance(v, str) for v in values):
        return max((len(str(v)) for v in values), default=0)
    numbers = [float(v) for v in values if _is_number(v)]
    return max(_number_chars(min(numbers)), _number_chars(max(numbers))) if numbers else 3


def _is_number(value) -> bool:
    try:
        return np.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _font(fig: go.Figure, obj, path: str) -> float:
    return (_get(obj, path) or fig.layout.font.size or fig.layout.template.layout.font.size or 12)


def _yaxis_px(fig: go.Figure, name: str, traces: list) -> float:
    """Horizontal room a y-axis takes beside its plot: ticks, tick labels, title (rotated: one line high)."""
    axis = fig.layout[name]
    if axis.visible is False:
        return 0.0
    tick_font = _axis_default(fig, name, "tickfont.size") or _font(fig, None, "")
    room = (axis.ticklen if axis.ticklen is not None else 3) + GLYPH * tick_font * _tick_chars(axis, _axis_values(traces, "y"))
    if (_get(axis, "title.text") or "").strip():
        room += LINE * (_axis_default(fig, name, "title.font.size") or tick_font) + (axis.title.standoff or 0)
    return room


def _colorbar_px(fig: go.Figure, trace) -> float:
    """Horizontal room a vertical colorbar takes from its x: pad, bar, tick labels, title."""
    bar = trace.colorbar
    font = _get(bar, "tickfont.size") or _get(fig.layout.template.layout, "coloraxis.colorbar.tickfont.size") or 11
    z = np.asarray(trace.z, dtype=float) if trace.z is not None else np.array([0.0])
    z = z[np.isfinite(z)] if z.size else np.array([0.0])
    lows = [trace.zmin if trace.zmin is not None else (z.min() if z.size else 0.0),
            trace.zmax if trace.zmax is not None else (z.max() if z.size else 1.0)]
    room = (bar.xpad if bar.xpad is not None else 10) + (bar.thickness or 30) + 3 + GLYPH * font * max(
        _number_chars(float(v)) for v in lows)
    title = (_get(bar, "title.text") or "").strip()
    if title:
        title_font = _get(bar, "title.font.size") or 1.2 * font  # plotly's colorbar titles are a size up
        if (_get(bar, "title.side") or "top") == "top":  # horizontal, above the bar
            room = max(room, (bar.xpad if bar.xpad is not None else 10) + GLYPH * title_font * len(title))
        else:
            room += LINE * title_font
    return room


def gap_problems(fig: go.Figure) -> list[str]:
    """Subplots side by side leave room for what sits between them: a colorbar placed there, the left
    plot's right-side y-axis (a secondary axis), the right plot's y-axis ticks and title.

    Measured on the figure object at its own width, with text widths estimated from the font size.
    """
    width = fig.layout.width or FULL_WIDTH_PX
    margin = fig.layout.margin
    template_margin = fig.layout.template.layout.margin
    left = margin.l if margin.l is not None else (template_margin.l if template_margin.l is not None else 80)
    right = margin.r if margin.r is not None else (template_margin.r if template_margin.r is not None else 80)
    plot = width - left - right
    used = _used_axes(fig)
    panels = {}  # x-axis name -> (x0, x1, y0, y1, y-axis names drawn on it)
    for name, traces in used.items():
        if not name.startswith("x"):
            continue
        axis = fig.layout[name]
        ys = sorted({t.yaxis or "y" for t in traces})
        y_names = [f"yaxis{y[1:]}" for y in ys]
        y0, y1 = fig.layout[y_names[0]].domain or (0, 1)
        x0, x1 = axis.domain or (0, 1)
        panels[name] = (x0, x1, y0, y1, y_names)
    problems = []
    for a_name, (ax0, ax1, ay0, ay1, a_ys) in panels.items():
        right_of = [(bx0, b) for b, (bx0, _, by0, by1, _) in panels.items()
                    if b != a_name and bx0 >= ax1 - 1e-9 and by0 < ay1 and ay0 < by1]
        if not right_of:
            continue
        bx0, b_name = min(right_of)
        need, parts = 0.0, []
        for y in a_ys:  # the left plot's axes drawn on its right side
            if fig.layout[y].side == "right":
                room = _yaxis_px(fig, y, used.get(y, []))
                need, parts = need + room, parts + [f"{y} on the right {room:.0f}"]
        for trace in fig.data:
            if trace.type not in COLOUR_TRACES or trace.showscale is False or trace.coloraxis:
                continue
            x = trace.colorbar.x
            if x is None or not ax1 - 1e-9 <= x < bx0:
                continue
            room = (x - ax1) * plot + _colorbar_px(fig, trace)
            need, parts = need + room, parts + [f"colorbar of {trace.name!r} {room:.0f}"]
        for y in panels[b_name][4]:
            if fig.layout[y].side != "right":
                room = _yaxis_px(fig, y, used.get(y, []))
                need, parts = need + room, parts + [f"{y} {room:.0f}"]
                break
        have = (bx0 - ax1) * plot
        if have < need:
            problems.append(f"{a_name} and {b_name} are {have:.0f} px apart at width {width}, their titles and "
                            f"ticks need {need:.0f} ({', '.join(parts)}): they overlap")
    return problems


CHECKS = (axis_problems, colour_problems, font_problems, fit_problems, title_problems, gap_problems)


# ------------------------------------------------------------------------------------------ the tests


def test_builders_are_discovered():
    assert len(NAMES) >= 20
    assert {"spectra.esd_figure", "sae.feature_dashboard", "collapse.nc_vs_layer",
            "connectome.component_panel", "communities.coassignment_plot"} <= set(NAMES)


def test_every_builder_has_an_input():
    missing = sorted(set(NAMES) - set(gallery.INPUTS))
    assert not missing, f"new figure builders need a small real input in workbench.figures.gallery.INPUTS: {missing}"
    stale = sorted(set(gallery.INPUTS) - set(NAMES))
    assert not stale, f"INPUTS names builders that no longer exist: {stale}"


def test_every_public_figure_function_declares_what_it_returns():
    """Discovery reads return annotations: a builder without one would escape the standard."""
    import importlib
    import inspect
    import pkgutil

    import workbench.figures as package

    unannotated = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"workbench.figures.{info.name}")
        for name, obj in vars(module).items():
            if (not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__
                    and inspect.signature(obj).return_annotation is inspect.Signature.empty):
                unannotated.append(f"{info.name}.{name}")
    assert not unannotated, f"annotate the return type of {unannotated}"


@pytest.mark.parametrize("name", NAMES)
def test_builder_meets_the_standard(name):
    fig = gallery.build(name)  # the inputs are computed once per process and shared
    assert isinstance(fig, go.Figure)
    problems = [p for check in CHECKS for p in check(fig)]
    assert not problems, f"{name} breaks the figure standard:\n  " + "\n  ".join(problems)


# ---------------------------------------------------- the checks themselves catch what they are meant to


def test_checks_catch_known_violations():
    bad = go.Figure(go.Heatmap(z=[[0, 1], [1, 0]], showscale=False), layout=dict(width=336, font=dict(size=6)))
    bad.add_trace(go.Scatter(x=[1, 2], y=[1, 2], name="fit: 2 points"))
    bad.update_layout(yaxis_type="log", xaxis_title="layer")
    assert any("no title" in p for p in axis_problems(bad))
    assert any("between integers" in p for p in axis_problems(bad))
    assert any("log axis" in p for p in axis_problems(go.Figure(bad).update_layout(yaxis_title="loss")))
    assert any("without a colorbar" in p for p in colour_problems(bad))
    assert font_problems(bad) and fit_problems(bad)
    sub = go.Figure(bad).set_subplots(1, 2, subplot_titles=("a", "b")).update_layout(title="t", margin_t=30)
    assert title_problems(sub)
    side = go.Figure().set_subplots(1, 2, horizontal_spacing=0.05).update_layout(width=336, xaxis2_title="t",
                                                                                yaxis2_title="loading")
    side.add_trace(go.Heatmap(z=[[0, 1]], colorbar=dict(x=0.475, title=dict(text="pair loading", side="right"))), 1, 1)
    side.add_trace(go.Scatter(y=[0.1, 0.25]), 1, 2)
    assert any("colorbar of" in p and "overlap" in p for p in gap_problems(side))
    assert not gap_problems(side.update_layout(width=3000))  # the same figure with room to spare


def test_nc_by_layer_draws_no_fit_through_two_layers():
    from workbench.figures.collapse import nc_vs_layer

    two = xr.Dataset({"nc1": ("layer", [1.0, 0.1])}, coords={"layer": ["a", "b"]})
    assert [t.name for t in nc_vs_layer(two).data if "fit" in str(t.name)] == []
    three = xr.Dataset({"nc1": ("layer", [1.0, 0.1, 0.01])}, coords={"layer": ["a", "b", "c"]})
    assert not fit_problems(nc_vs_layer(three)) and len(nc_vs_layer(three).data) == 2


def test_dfa_axes_show_the_tokens_given():
    from workbench.figures.sae import feature_dashboard

    top = xr.Dataset({"activation": (("feature", "example"), np.array([[2.0, 1.0]])),
                      "top_logit_token": (("feature", "rank"), np.array([["a"]], dtype=object)),
                      "top_logit": (("feature", "rank"), np.array([[0.5]])),
                      "bottom_logit_token": (("feature", "rank"), np.array([["b"]], dtype=object)),
                      "bottom_logit": (("feature", "rank"), np.array([[-0.5]]))}, coords={"feature": [3]})
    share = xr.DataArray(np.array([[0.25, 0.75]]), dims=("feature", "head"), coords={"feature": [3]})
    dfa = xr.DataArray(np.ones((1, 1, 2, 2)), dims=("feature", "seq", "dest", "src"), coords={"feature": [3]})
    fig = feature_dashboard(top, 3, head_share=share, dfa=dfa, tokens=["<bos>", " def"])
    assert list(fig.layout.xaxis2.ticktext) == ["<bos>", " def"] == list(fig.layout.yaxis2.ticktext)
    assert not axis_problems(fig) and not colour_problems(fig)
    with pytest.raises(ValueError, match="tokens: expected one token per position"):
        feature_dashboard(top, 3, head_share=share, dfa=dfa, tokens=["<bos>"])
    with pytest.raises(ValueError, match="tokens: expected None"):
        feature_dashboard(top, 3, head_share=share, tokens=["<bos>", " def"])


def test_component_panel_keeps_its_titles_apart_at_paper_and_column_width():
    """Side by side at 691 px, stacked at 336 px: every check passes at both, covariate axis included.

    The same side-by-side layout squeezed to 336 px is what the gap check exists for: it must object.
    """
    import warnings

    from workbench.connectome import dynamic_connectome, synthetic
    from workbench.figures.connectome import component_panel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 2 surrogates are too few to test: the longest title
        result = dynamic_connectome(synthetic(16, 3, 240, 2).traces, rank=2, n_restarts=1, max_iter=30, n_surrogates=2,
                                    covariates={"speed": np.sin(np.arange(240.0) / 9)}, device="cpu")
    for width in (FULL_WIDTH_PX, 336):
        for extra in ({}, {"covariate": "speed"}):
            fig = component_panel(result, 0, width=width, **extra)
            assert fig.layout.width == width
            problems = [p for check in CHECKS for p in check(fig)]
            assert not problems, f"width {width} {extra}: " + "; ".join(problems)
    squeezed = go.Figure(component_panel(result, 0)).update_layout(width=336)
    assert any("colorbar of 'pairs'" in p for p in gap_problems(squeezed))
