"""The one place that decides how every page looks: site template, job bar, figure grid.

Change the look of the whole dashboard here; pages only supply state,
controls and figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import panel as pn

from workbench.figures import FORMATS

if TYPE_CHECKING:
    from widgets.pages.base import Page

SITE_TITLE = "Decomposition Workbench"
ACCENT = "#1f4e79"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
POLL_MS = 200  # how often a served page copies job progress into its widgets


def message_box(page: "Page") -> pn.pane.Alert:
    """A red box that shows ``page.message`` and hides when it is empty."""
    return pn.pane.Alert(page.param.message, alert_type="danger", visible=page.param.message.rx.pipe(bool),
                         sizing_mode="stretch_width", css_classes=["wb-message"])


def job_bar(page: "Page") -> pn.Row:
    """Status line, progress bar (indeterminate at -1) and a cancel button shown while a job runs."""
    cancel = pn.widgets.Button(label="Cancel", button_type="warning", visible=page.param.running, width=90)
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


def figure_grid(page: "Page") -> pn.Column:
    """One plotly pane plus export control per figure of ``page``.

    Panes are kept and their ``object`` replaced when ``revision`` changes,
    so the browser runs ``Plotly.react`` instead of rebuilding the page.
    """
    column = pn.Column(sizing_mode="stretch_width")
    panes: dict[str, pn.pane.Plotly] = {}

    def redraw(*_):
        try:
            figures = page.figures()
        except (ValueError, TypeError, KeyError) as err:
            page.fail(err)
            return
        if list(figures) == list(panes):
            for name, fig in figures.items():
                panes[name].object = fig
            return
        panes.clear()
        blocks = []
        for name, fig in figures.items():
            panes[name] = pn.pane.Plotly(fig, config=PLOTLY_CONFIG, sizing_mode="stretch_width",
                                         css_classes=["wb-figure"], name=name)
            blocks.append(pn.Column(panes[name], export_control(page, name), sizing_mode="stretch_width"))
        column.objects = blocks or [pn.pane.Markdown("*Nothing to show yet: choose settings and run.*")]

    page.param.watch(redraw, "revision")
    redraw()
    return column


def start_polling(page: "Page") -> None:
    """Once the session is served: poll the page's jobs from its event loop, then ``page.on_open()``.

    Outside a server (scripts, tests) there is no loop: callers use
    :meth:`Page.wait` instead.
    """
    if pn.state.curdoc is None:
        return

    def opened() -> None:
        pn.state.add_periodic_callback(page.poll, period=POLL_MS)
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
    template = pn.template.BootstrapTemplate(title=f"{SITE_TITLE}: {page.title}", header_background=ACCENT,
                                             sidebar_width=320)
    template.sidebar.extend([pn.pane.Markdown(links, css_classes=["wb-nav"]), *page.controls()])
    template.main.append(pn.Column(page.header(), page.body(), sizing_mode="stretch_width"))
    return template
