"""The one place that decides how every page looks: site template, job bar, figure grid.

Change the look of the whole dashboard here; pages only supply state,
controls and figures.
"""

from __future__ import annotations

import functools
import html
import math
import os
from typing import TYPE_CHECKING, Callable

import numpy as np
import panel as pn
import plotly.graph_objects as go
import plotly.graph_objs
from panel.io.callbacks import PeriodicCallback

from workbench.figures import FORMATS

if TYPE_CHECKING:
    from widgets.pages.base import Page

# Without anywidget, plotly resolves ``graph_objs.FigureWidget`` on every access by re-running a failing
# import, and Panel's plotly pane looks it up on every figure update (milliseconds each): resolve it once.
plotly.graph_objs.FigureWidget = plotly.graph_objs.FigureWidget

SITE_TITLE = "Decomposition Workbench"
ACCENT = "#1f4e79"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
POLL_MS = 200  # how often a served page copies job progress into its widgets
DEFAULT_FIGURE_HEIGHT = 450  # plotly's own default, for figures that set no height
MIN_FIGURE_HEIGHT = 320  # a paper figure a column wide is shorter; on screen it gets at least this


def message_box(page: "Page") -> pn.pane.Alert:
    """A red box that shows ``page.message`` and hides when it is empty."""
    return pn.pane.Alert(page.param.message, alert_type="danger", visible=page.param.message.rx.pipe(bool),
                         sizing_mode="stretch_width", css_classes=["wb-message"])


def caution_box(page: "Page") -> pn.pane.Alert:
    """A yellow box that shows ``page.caution`` (a result to read with care, not an error); hidden when empty."""
    return pn.pane.Alert(page.param.caution, alert_type="warning", visible=page.param.caution.rx.pipe(bool),
                         sizing_mode="stretch_width", css_classes=["wb-caution"])


def terms_html(keys: tuple[str, ...]) -> str:
    """The glossary ``keys`` as one line of names, each explained on hover (a native tooltip, offline).

    Examples
    --------
    >>> terms_html(("l0",))
    '<span class="wb-terms">Terms (hover): <abbr class="wb-term" title="Average number of SAE features active on a token: lower is sparser.">L0</abbr></span>'
    """
    from workbench.glossary import explain, term

    spans = " · ".join(f'<abbr class="wb-term" title="{html.escape(explain(k))}">{html.escape(term(k))}</abbr>'
                       for k in keys)
    return f'<span class="wb-terms">Terms (hover): {spans}</span>' if keys else ""


def intro_pane(page: "Page") -> list:
    """The page's opening sentences and its terms line; nothing for a page that has neither."""
    panes = []
    if page.intro:
        panes.append(pn.pane.Markdown(page.intro, css_classes=["wb-intro"], sizing_mode="stretch_width",
                                      margin=(0, 10)))
    if page.terms:
        panes.append(pn.pane.HTML(terms_html(page.terms), sizing_mode="stretch_width", margin=(0, 10)))
    return panes


def _step(value: float) -> float:
    """A sensible step for a numeric field holding ``value``: its leading decimal place below 1
    (a learning rate 0.003 moves by 0.001), a tenth of it from 1 on (10 moves by 1).

    Examples
    --------
    >>> _step(3e-3), _step(10.0), _step(1.0), _step(0.0)
    (0.001, 1.0, 0.1, 0.1)
    """
    if not value:
        return 0.1
    place = math.floor(math.log10(abs(value)))
    return 10.0 ** (place - 1 if place >= 0 else place)


def settings(page, names, widgets: dict | None = None, **params) -> pn.Param:
    """The parameters ``names`` of ``page`` as sidebar controls: numbers in numeric fields (a step of their
    leading digit), every control as wide as the sidebar, each with its glossary tooltip (the parameter's doc).

    ``widgets`` overrides a parameter's widget as :class:`panel.Param` takes it.

    Examples
    --------
    >>> import param
    >>> class Demo(param.Parameterized):
    ...     lr = param.Number(default=3e-3, bounds=(1e-6, 1.0), doc="Adam step size.")
    >>> field = settings(Demo(), ["lr"]).layout.objects[0]
    >>> type(field).__name__, field.step, field.description
    ('FloatInput', 0.001, 'Adam step size.')
    """
    import param as param_lib

    chosen = {}
    for name in names:
        p = page.param[name]
        spec: dict = {"sizing_mode": "stretch_width"}
        if isinstance(p, param_lib.Integer) and not isinstance(p, param_lib.Boolean):
            spec["type"] = pn.widgets.IntInput
        elif isinstance(p, param_lib.Number):
            spec.update(type=pn.widgets.FloatInput, step=_step(p.default or 0.0))
        override = (widgets or {}).get(name, {})
        spec.update(override if isinstance(override, dict) else {"type": override})
        chosen[name] = spec
    return pn.Param(page.param, parameters=list(names), show_name=False, widgets=chosen,
                    sizing_mode="stretch_width", **params)


def job_bar(page: "Page") -> pn.Row:
    """Status line, progress bar (indeterminate at -1) and a cancel button shown while a job runs."""
    cancel = pn.widgets.Button(label="Cancel", color="warning", visible=page.param.running, width=90)
    cancel.on_click(lambda _: page.cancel())
    bar = pn.indicators.Progress(value=page.param.progress, active=page.param.running, visible=page.param.running,
                                 width=240, bar_color="info")
    status = pn.pane.Str(page.param.status, css_classes=["wb-status"], sizing_mode="stretch_width")
    return pn.Row(status, bar, cancel, sizing_mode="stretch_width")


def export_control(page: "Page", name: str) -> pn.Row:
    """Format picker and button writing figure ``name`` with :func:`workbench.figures.export`."""
    fmt = pn.widgets.Select(options=list(FORMATS), value="pdf", width=80, margin=(5, 5))
    button = pn.widgets.Button(label=f"Export {name}", width=160, margin=(5, 5), css_classes=["wb-export"])
    button.on_click(lambda _: page.export_in_background(name, fmt.value))
    return pn.Row(fmt, button)


def plotly_pane(fig, name: str) -> pn.pane.Plotly:
    """A plotly pane as wide as its place in the page and as high as ``fig``, unlinked from ``fig``.

    The figure's own width is its paper size; on screen it follows the page
    (two figures per row on a wide screen, see :func:`figure_block`).
    ``link_figure=False``: otherwise each resize in the browser is written
    back into the (shared, memoised) figure and echoed to the browser again,
    a round trip per pane that delays the next interaction.
    """
    pane = pn.pane.Plotly(browser_ready(fig), config=PLOTLY_CONFIG, link_figure=False,
                          css_classes=["wb-figure", f"wb-figure-{name}"], name=name, **_size(fig))
    pane._wb_source = fig
    return pane


def _shows(pane: pn.pane.Plotly, fig) -> bool:
    """True when ``pane`` shows ``fig`` (itself, or its :func:`browser_ready` copy)."""
    return getattr(pane, "_wb_source", pane.object) is fig


def _show(pane: pn.pane.Plotly, fig, **params) -> None:
    """Show ``fig`` in ``pane`` (as its :func:`browser_ready` copy), with pane ``params``."""
    pane.param.update(object=browser_ready(fig), **params)
    pane._wb_source = fig


def browser_ready(fig):
    """``fig``, or a copy of it with every NumPy array in its layout (tick values, say) made a list.

    A Plotly pane sends layout arrays as Bokeh typed arrays, which plotly.js
    ignores there: integer tick values set by a builder (epochs 0, 2, 4; layers
    1, 2) were dropped and the browser drew its own ticks at 0.5 and 1.2.
    Trace data is unaffected (Panel sends it through data sources). A copy,
    so that a memoised figure (shared by sessions and exports) is never changed.

    Examples
    --------
    >>> fig = go.Figure(layout=dict(xaxis=dict(tickvals=np.array([0, 2, 4]))))
    >>> browser_ready(fig).layout.xaxis.tickvals, type(fig.layout.xaxis.tickvals).__name__
    ((0, 2, 4), 'ndarray')
    """
    arrays = list(_layout_arrays(fig.layout.to_plotly_json()))
    if not arrays:
        return fig
    fig = go.Figure(fig)
    for path, value in arrays:
        fig.layout[path] = None  # plotly skips an assignment equal to the value held
        fig.layout[path] = value.tolist()
    return fig


def _layout_arrays(node, path: str = ""):
    """``(path, array)`` of every NumPy array below ``node``, paths as plotly spells them (``xaxis.tickvals``)."""
    if isinstance(node, np.ndarray):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _layout_arrays(value, f"{path}.{key}" if path else key)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _layout_arrays(value, f"{path}[{index}]")


def _size(fig) -> dict:
    """Pane size of ``fig``: the width of its place, its own height (at least :data:`MIN_FIGURE_HEIGHT`)."""
    height = max(int(fig.layout.height or DEFAULT_FIGURE_HEIGHT), MIN_FIGURE_HEIGHT)
    return {"sizing_mode": "stretch_width", "height": height}


def figure_block(*objects, wide: bool = False, **params) -> pn.Column:
    """A figure's place in a row of figures: half the row on a wide screen (a whole one when ``wide``),
    the whole row below about 900 px."""
    basis = "100%" if wide else "calc(50% - 12px)"
    return pn.Column(*objects, sizing_mode="stretch_width", styles={"flex": f"1 1 {basis}", "min-width": "420px"},
                     **params)


def figure_row(*blocks) -> pn.FlexBox:
    """Figure blocks side by side, wrapping onto the next row when the page is narrow."""
    return pn.FlexBox(*blocks, flex_wrap="wrap", gap="12px", sizing_mode="stretch_width")


def figure_grid(page: "Page") -> pn.FlexBox:
    """One plotly pane plus export control per figure of ``page``, wrapped in rows as wide as the page.

    Panes are kept and their ``object`` replaced when ``revision`` changes,
    so the browser runs ``Plotly.react`` instead of rebuilding the page; a
    pane whose figure is the same object as before (a memoised figure, see
    :meth:`Page.figure`) is not touched, so a view change sends only the
    figures it changes, all in one message.
    """
    grid = pn.FlexBox(flex_wrap="wrap", gap="12px", sizing_mode="stretch_width")
    panes: dict[str, pn.pane.Plotly] = {}

    def redraw(*_):
        try:
            figures = page.figures()
        except (ValueError, TypeError, KeyError) as err:
            page.fail(err)
            return
        if list(figures) == list(panes):
            with pn.io.hold():
                for name, fig in figures.items():
                    pane = panes[name]
                    if not _shows(pane, fig):
                        _show(pane, fig, **_size(fig))
            return
        panes.clear()
        blocks = []
        for name, fig in figures.items():
            panes[name] = plotly_pane(fig, name)
            blocks.append(figure_block(panes[name], export_control(page, name), wide=name in page.wide_figures))
        grid.objects = blocks or [pn.pane.Markdown(f"*{page.empty_hint}*", css_classes=["wb-hint"])]

    page.param.watch(redraw, "revision")
    redraw()
    return grid


def clicked_point(data: dict | None) -> dict | None:
    """The first point of a Plotly click event (a pane's ``click_data``), or None.

    Examples
    --------
    >>> clicked_point({"points": [{"x": 3, "y": "f2"}]})
    {'x': 3, 'y': 'f2'}
    >>> clicked_point(None)
    """
    points = (data or {}).get("points") or []
    return points[0] if points else None


class FigureSlots:
    """Plotly panes in fixed places (unlike :func:`figure_grid`), each with its export control and an
    optional click handler, updated only when its figure changes.

    A pane (:func:`plotly_pane`) is created the first time its figure
    exists; afterwards a new figure object replaces the pane's, and an
    unchanged one (the same memoised object, see :meth:`Page.figure`) sends
    nothing to the browser; the changes of one redraw go out in one message.
    Until its first figure a slot says what to press (``hints``, default the
    page's :attr:`~Page.empty_hint`); a figure that goes away leaves a short
    blank figure saying it, without an export control: hiding or removing a
    Plotly pane makes its pending resize fail in the browser.

    Parameters
    ----------
    page : Page
        Its :meth:`~Page.figures` are shown, again whenever its ``revision`` changes.
    names : list of str
        The figures, each in its holder ``slots[name]`` to be placed in the page's layout.
    on_click : dict, optional
        ``{name: handler}``: ``handler(click_data)`` on a click in that figure
        (read it with :func:`clicked_point`).
    hints : dict, optional
        ``{name: text}``: what a slot without a figure says (what to press to fill it).

    Examples
    --------
    >>> import tempfile
    >>> from widgets.pages.base import Page
    >>> class Lines(Page):
    ...     def figures(self):
    ...         return {"lines": go.Figure(go.Scatter(y=[1, 2]))}
    >>> slots = FigureSlots(Lines(cache_dir=tempfile.mkdtemp()), ["lines", "bars"])
    >>> [type(o).__name__ for o in slots["lines"]], [o.object for o in slots["bars"]]
    (['Plotly', 'Row'], ["*Nothing to show yet: choose settings and press the page's run button.*"])
    """

    def __init__(self, page: "Page", names: list[str], on_click: dict[str, Callable[[dict], None]] | None = None,
                 hints: dict[str, str] | None = None):
        self.page = page
        self.hints = {name: (hints or {}).get(name, page.empty_hint) for name in names}
        self.holders = {name: pn.Column(pn.pane.Markdown(f"*{self.hints[name]}*", css_classes=["wb-hint"]),
                                        sizing_mode="stretch_width") for name in names}
        self.panes: dict[str, pn.pane.Plotly] = {}
        self.exports: dict[str, pn.Row] = {}
        self.on_click = on_click or {}
        page.param.watch(self._page_changed, "revision")
        self._page_changed()

    def __getitem__(self, name: str) -> pn.Column:
        return self.holders[name]

    def _page_changed(self, *_) -> None:
        from widgets.pages.base import USER_ERRORS

        try:
            figures = self.page.figures()
        except USER_ERRORS as err:
            self.page.fail(err)
            return
        self.redraw(figures)

    def redraw(self, figures: dict[str, go.Figure]) -> None:
        """Show ``figures`` (by name); a slot whose figure is the object it shows already is left alone.

        Called with the page's :meth:`~Page.figures` whenever its ``revision`` changes.
        """
        with pn.io.hold():
            for name, holder in self.holders.items():
                fig, pane = figures.get(name), self.panes.get(name)
                if fig is None and pane is not None and not _is_blank(pane.object):
                    fig = _blank(self.hints[name])  # the pane stays (see above), its export goes
                if fig is None or (pane is not None and _shows(pane, fig)):
                    continue
                if pane is None:
                    pane = self.panes[name] = plotly_pane(fig, name)
                    if name in self.on_click:
                        pane.param.watch(lambda event, n=name: self.on_click[n](event.new), "click_data")
                    self.exports[name] = export_control(self.page, name)
                    holder.objects = [pane, self.exports[name]]
                else:
                    _show(pane, fig, **(_size(fig) if not _is_blank(fig) else {"height": 80}))
                self.exports[name].visible = not _is_blank(fig)


def linked_select(page: "Page", value: str, options: str, *, limit: int = 500, **params) -> pn.widgets.Select:
    """A select offering the list parameter ``options`` of ``page`` (its first ``limit`` items) and
    choosing its parameter ``value``, which it shows when that is among them.

    New options choose nothing: the select then shows ``value`` or their first item.

    Examples
    --------
    >>> import param
    >>> class Browser(param.Parameterized):
    ...     feature, matches = param.Integer(default=2), param.List(default=[5, 2, 7])
    >>> browser = Browser()
    >>> pick = linked_select(browser, "feature", "matches")
    >>> pick.value, pick.options
    (5, [5, 2, 7])
    >>> pick.value = 7
    >>> browser.feature
    7
    >>> browser.feature = 2
    >>> pick.value
    2
    """
    pick = pn.widgets.Select(options=getattr(page, options)[:limit], **params)
    syncing = []  # set while the page's parameters move the select, which must not choose anything

    def follow(event) -> None:
        syncing.append(True)
        try:
            pick.options = event.new[:limit]
            chosen = getattr(page, value)
            pick.value = chosen if chosen in pick.options else (pick.options or [None])[0]
        finally:
            syncing.clear()

    def show(event) -> None:
        if event.new in pick.options and pick.value != event.new:
            syncing.append(True)
            try:
                pick.value = event.new
            finally:
                syncing.clear()

    page.param.watch(follow, options)
    page.param.watch(show, value)
    pick.param.watch(lambda e: None if syncing or e.new is None else setattr(page, value, e.new), "value")
    return pick


@functools.lru_cache(maxsize=64)
def _blank(hint: str) -> go.Figure:
    """An empty figure that says ``hint`` (what to press to fill it)."""
    return go.Figure(layout=dict(height=80, xaxis=dict(visible=False), yaxis=dict(visible=False), meta="wb-blank",
                                 template="simple_white", margin=dict(l=10, r=10, t=10, b=10),
                                 annotations=[dict(text=hint, showarrow=False, font=dict(size=13))]))


def _is_blank(fig) -> bool:
    return isinstance(fig, go.Figure) and fig.layout.meta == "wb-blank"


def start_polling(page: "Page") -> None:
    """Once the session is served: poll the page's jobs from its event loop, then ``page.on_open()``.

    Inline in a notebook the kernel's loop polls instead (:func:`widgets.jupyter.poll_inline`; pages start
    no work on display there). Outside both (scripts, tests) there is no loop: callers use
    :meth:`Page.wait` instead.
    """
    if pn.state.curdoc is None:
        from widgets.jupyter import poll_inline

        poll_inline(page)
        return

    def opened() -> None:
        # background: a poll is no user request, so it must not toggle Panel's busy state five times a second
        PeriodicCallback(callback=page.poll, period=POLL_MS, background=True).start()
        page.on_open()

    pn.state.onload(opened)


def site(page: "Page", slugs: dict[str, str]) -> pn.template.BaseTemplate:
    """Wrap ``page`` in the site template with navigation to every page.

    Parameters
    ----------
    page : Page
    slugs : dict
        ``{slug: title}`` of all pages, in menu order.
    """
    start_polling(page)
    links = "\n".join(f"- [{title}](./{slug})" if slug != page.slug else f"- **{title}**"
                      for slug, title in slugs.items())
    # Bootstrap, not Fast: the Fast design links Google Fonts, which an air-gapped machine cannot fetch.
    # No busy spinner: Panel sets every open session's spinner on every event of any session (work that grows
    # with the number of sessions and delays each interaction); the job bar already says what runs.
    template = pn.template.BootstrapTemplate(title=f"{SITE_TITLE}: {page.title}", header_background=ACCENT,
                                             sidebar_width=320, busy_indicator=None)
    template.sidebar.extend([pn.pane.Markdown(links, css_classes=["wb-nav"]), *page.controls()])
    template.main.append(pn.Column(page.header(), page.body(), sizing_mode="stretch_width"))
    return template


@functools.cache
def warm_up_rendering(cache_dir: str | os.PathLike) -> None:
    """Render a throwaway page with a heatmap and a line plot into a document nobody sees, once per process.

    The first page a server renders costs seconds more than the next (Panel's
    template, Bokeh's model classes, plotly's validators load lazily); the
    server pays that here, at start, instead of its first visitor.
    """
    from bokeh.document import Document

    from widgets.pages.base import Page

    class Blank(Page):
        slug = "warm-up"

        def figures(self) -> dict[str, go.Figure]:
            return {"heatmap": go.Figure(go.Heatmap(z=[[0.0, 1.0]])),
                    "lines": go.Figure(go.Scatter(x=[0, 1], y=[1, 0], mode="lines+markers"))}

    site(Blank(cache_dir=cache_dir), {"warm-up": "Warm-up"}).server_doc(Document())
