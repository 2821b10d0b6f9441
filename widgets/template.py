"""The one place that decides how every page looks: site template, job bar, figure grid.

Change the look of the whole dashboard here; pages only supply state,
controls and figures.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

import panel as pn
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


def message_box(page: "Page") -> pn.pane.Alert:
    """A red box that shows ``page.message`` and hides when it is empty."""
    return pn.pane.Alert(page.param.message, alert_type="danger", visible=page.param.message.rx.pipe(bool),
                         sizing_mode="stretch_width", css_classes=["wb-message"])


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
    """A plotly pane the size of ``fig`` (its paper size), unlinked from ``fig``.

    Sized like the figure, the browser never has to resize it: with a
    stretched pane, each figure update drew at the figure's width and then
    again at the pane's. ``link_figure=False``: otherwise each resize in the
    browser is written back into the (shared, memoised) figure and echoed to
    the browser again, a round trip per pane that delays the next interaction.
    """
    return pn.pane.Plotly(fig, config=PLOTLY_CONFIG, link_figure=False, css_classes=["wb-figure"], name=name,
                          **_size(fig))


def _size(fig) -> dict:
    """Pane size of ``fig``: its own, or the page's width when it sets none."""
    height = int(fig.layout.height or DEFAULT_FIGURE_HEIGHT)
    if fig.layout.width:
        return {"sizing_mode": "fixed", "width": int(fig.layout.width), "height": height}
    return {"sizing_mode": "stretch_width", "height": height}


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
                    if pane.object is not fig:
                        pane.param.update(object=fig, **_size(fig))
            return
        panes.clear()
        blocks = []
        for name, fig in figures.items():
            panes[name] = plotly_pane(fig, name)
            blocks.append(pn.Column(panes[name], export_control(page, name),
                                    sizing_mode="stretch_width" if fig.layout.width is None else None))
        grid.objects = blocks or [pn.pane.Markdown("*Nothing to show yet: choose settings and run.*")]

    page.param.watch(redraw, "revision")
    redraw()
    return grid


def start_polling(page: "Page") -> None:
    """Once the session is served: poll the page's jobs from its event loop, then ``page.on_open()``.

    Outside a server (scripts, tests) there is no loop: callers use
    :meth:`Page.wait` instead.
    """
    if pn.state.curdoc is None:
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
    import plotly.graph_objects as go
    from bokeh.document import Document

    from widgets.pages.base import Page

    class Blank(Page):
        slug = "warm-up"

        def figures(self) -> dict[str, go.Figure]:
            return {"heatmap": go.Figure(go.Heatmap(z=[[0.0, 1.0]])),
                    "lines": go.Figure(go.Scatter(x=[0, 1], y=[1, 0], mode="lines+markers"))}

    site(Blank(cache_dir=cache_dir), {"warm-up": "Warm-up"}).server_doc(Document())
