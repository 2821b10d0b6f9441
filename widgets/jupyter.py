"""The pages and figures inline in JupyterLab and Notebook 7, offline, and in exported HTML.

One call, :func:`notebook_setup` (the first page displayed makes it too),
sets a Jupyter kernel up so that nothing a notebook shows is fetched from
the internet:

- Panel runs in *inline* resource mode: Bokeh, Panel and plotly.js are
  published once into the setup cell's output. Inline holds in JupyterLab 4,
  Notebook 7 and in ``jupyter nbconvert --to html`` alike; resources served by
  Panel's Jupyter server extension (``/panel-preview/static``) do not reach an
  exported file and depend on the server's base URL.
- Panel's comms are handled on the kernel's main thread, not in the
  subshell JupyterLab 4.4+ sends comm messages to (see
  :mod:`widgets.kernel_comms`): otherwise the messages of two threads
  interleave and the browser drops or garbles updates.
- Enter commits a number or text field in a cell output, as in a served
  page (JupyterLab swallows the input's native ``change``).
- Stylesheets Panel creates after the first render (``theme/native.css``,
  ``css/loading.css`` ... of widgets added by a redraw) point at Panel's CDN;
  they are rewritten to ``data:`` URLs of the copies installed with Panel.
- Plotly figures render with the ``"workbench"`` renderer: plotly's MIME type
  (JupyterLab's plotly extension draws it), a static PNG (``image/png``, drawn
  by kaleido with the system Chromium and the plotly.js installed with plotly,
  nothing fetched) and an HTML version that shows that PNG and replaces it with
  the interactive figure where the plotly.js published by the setup is
  present. So a notebook executed and saved shows its figures on GitHub, in
  nbviewer and in ``jupyter nbconvert --to html``, with or without JavaScript.

Outside a Jupyter kernel (plain IPython, a script) a page shows its
figures as static PNG images instead, after one warning.

Examples
--------
>>> notebook_setup()   # no Jupyter kernel here: nothing to set up
'static'
"""

from __future__ import annotations

import atexit
import base64
import functools
import html
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io.base_renderers import MimetypeRenderer

from widgets.kernel_comms import pin_panel_comms_to_main_shell

if TYPE_CHECKING:
    from widgets.pages.base import Page

RENDERER = "workbench"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
INLINE_POLL_MS = 250  # how often an inline page copies job progress into its widgets

STATIC_SIZE_PX = (900, 450)  # width, height of a figure's static image when its layout sets none

_state = {"patched": False, "setup": False, "warned": False, "kaleido": None, "png_warned": False}
_kaleido_lock = threading.Lock()


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook 7, VS Code, nbconvert/nbclient).

    Examples
    --------
    >>> in_kernel()
    False
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def figure_html(fig: go.Figure | Mapping) -> str:
    """``fig`` as an HTML block drawn by the plotly.js the setup published (no script fetched).

    Examples
    --------
    >>> block = figure_html(go.Figure(go.Bar(y=[1, 2])))
    >>> "Plotly.newPlot" in block, "<script src" in block
    (True, False)
    """
    return pio.to_html(fig, include_plotlyjs=False, include_mathjax=False, full_html=False,
                       default_width="100%", validate=False, config={"displaylogo": False})


def _start_kaleido() -> None:
    """One kaleido server (one Chromium) for every static image this process draws; stopped at exit."""
    import kaleido

    from workbench.figures.export import _plotly_js_path, find_chromium

    os.environ.setdefault("BROWSER_PATH", find_chromium())
    kaleido.start_sync_server(mathjax=False, plotlyjs=str(_plotly_js_path()), silence_warnings=True)
    atexit.register(kaleido.stop_sync_server, silence_warnings=True)
    _state["kaleido"] = kaleido


def figure_png(fig: go.Figure | Mapping) -> bytes | None:
    """``fig`` as a PNG, as it looks on screen (not the paper template), or None after one warning.

    The size is the figure's own, else :data:`STATIC_SIZE_PX`. Drawn offline
    by kaleido with the system Chromium (see :func:`workbench.figures.export`);
    the first image starts one Chromium that later images reuse. Where no
    Chromium or kaleido is available it warns once and returns None: the
    interactive figure still shows, only its static copy is missing.

    Examples
    --------
    >>> png = figure_png(go.Figure(go.Bar(y=[1, 2]), layout={"width": 300, "height": 200}))
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n", int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    (True, 300, 200)
    """
    fig_dict = fig.to_dict() if isinstance(fig, go.Figure) else dict(fig)
    layout = fig_dict.get("layout") or {}
    width, height = layout.get("width") or STATIC_SIZE_PX[0], layout.get("height") or STATIC_SIZE_PX[1]
    try:
        with _kaleido_lock:
            if _state["kaleido"] is None:
                _start_kaleido()
            return _state["kaleido"].calc_fig_sync(
                fig_dict, opts={"format": "png", "width": int(width), "height": int(height)})
    except Exception as err:  # no Chromium, kaleido broken: the figure stays interactive-only
        if not _state["png_warned"]:
            _state["png_warned"] = True
            warnings.warn(f"figures carry no static image (GitHub, nbviewer and exported HTML will not show "
                          f"them): {type(err).__name__}: {err}", UserWarning, stacklevel=2)
        return None


def static_figure_html(png: bytes, interactive: str, title: str = "figure") -> str:
    """HTML showing ``png``, swapped for the ``interactive`` block where ``window.Plotly`` exists.

    Without JavaScript (GitHub, a sanitized viewer) the image stays; in an
    exported notebook whose setup cell published plotly.js the figure is live.

    Examples
    --------
    >>> block = static_figure_html(b"\\x89PNG", "<div>live</div>", "t")
    >>> block.count("<img"), "data:image/png;base64," in block, block.endswith("<div>live</div></div>")
    (1, True, True)
    """
    source = base64.b64encode(png).decode("ascii")
    swap = ("<script>(function () { var s = document.currentScript;"
            " if (window.Plotly && s) { s.previousElementSibling.remove(); } })();</script>")
    return (f'<div class="workbench-figure"><img alt="{html.escape(title)}" style="max-width: 100%" '
            f'src="data:image/png;base64,{source}"/>{swap}{interactive}</div>')


class OfflineRenderer(MimetypeRenderer):
    """Plotly renderer: the plotly MIME type for JupyterLab, a static PNG, and HTML for exported notebooks."""

    def to_mimebundle(self, fig_dict: dict) -> dict:
        bundle = {PLOTLY_MIME: pio.renderers["plotly_mimetype"].to_mimebundle(fig_dict)[PLOTLY_MIME]}
        png = figure_png(fig_dict)
        interactive = figure_html(fig_dict)
        if png is None:
            bundle["text/html"] = interactive
        else:
            title = (fig_dict.get("layout") or {}).get("title") or "figure"
            title = title.get("text") or "figure" if isinstance(title, Mapping) else title
            bundle["image/png"] = base64.b64encode(png).decode("ascii")
            bundle["text/html"] = static_figure_html(png, interactive, str(title))
        return bundle


def plotlyjs_html() -> str:
    """A script defining ``window.Plotly`` from the plotly.js shipped with plotly, even where require.js is loaded.

    Examples
    --------
    >>> script = plotlyjs_html()
    >>> script.startswith("<script>") and len(script) > 1_000_000
    True
    """
    from plotly.offline import get_plotlyjs

    # The bundle is UMD: with an AMD loader on the page (nbconvert's classic template) it would register
    # a module instead of window.Plotly, so define/module/exports are hidden from it.
    return ("<script>window.PlotlyConfig = {MathJaxConfig: 'local'};\n"
            "(function (define, module, exports, require) {\n" + get_plotlyjs() + "\n}).call(window);</script>")


# In a JupyterLab cell output, Enter in a Bokeh text or number input (inside its shadow root) does not
# fire the input's native ``change`` event, which is what commits a value in Bokeh; blur does. The setup
# cell makes Enter commit as in a served page: a ``change`` for the input Enter was pressed in (a second
# one where the browser fired its own is a no-op: the value is unchanged).
ENTER_COMMITS_JS = """<script>
if (!window.workbenchEnterCommits) {
  window.workbenchEnterCommits = true;
  window.addEventListener("keydown", (event) => {
    const inner = event.composedPath()[0];
    if (event.key === "Enter" && inner !== event.target && inner instanceof HTMLInputElement) {
      inner.dispatchEvent(new Event("change"));
    }
  }, true);
}
</script>"""


@functools.lru_cache(maxsize=None)
def _data_url(path: str) -> str:
    return "data:text/css;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def local_stylesheet(url: str) -> str:
    """The ``data:`` URL of Panel's installed copy of a stylesheet Panel links from its CDN, else ``url``.

    Examples
    --------
    >>> from panel.io.resources import CDN_DIST
    >>> local_stylesheet(CDN_DIST + "css/loading.css?v=1").startswith("data:text/css;base64,")
    True
    >>> local_stylesheet("https://example.org/x.css")
    'https://example.org/x.css'
    """
    from panel.io.resources import CDN_DIST, DIST_DIR, LOCAL_DIST

    for prefix in (CDN_DIST, LOCAL_DIST):
        if url.startswith(prefix):
            path = DIST_DIR / url[len(prefix):].split("?")[0]
            if path.is_file():
                return _data_url(str(path))
    return url


def _inline_late_stylesheets() -> None:
    """Make the stylesheets of widgets created after the first render local too (once per process).

    Panel inlines the stylesheets of an inline render, but widgets a redraw
    creates later link ``cdn.holoviz.org`` through ``patch_stylesheet``.
    """
    import panel.io.resources as resources
    import panel.reactive as reactive

    original = resources.patch_stylesheet

    def patch_stylesheet(stylesheet, dist_url):
        original(stylesheet, dist_url)
        try:
            url = stylesheet.url
        except Exception:  # Panel's own guard: some stylesheets have no url set
            return
        local = local_stylesheet(url)
        if local != url:
            stylesheet.url = local

    resources.patch_stylesheet = patch_stylesheet
    reactive.patch_stylesheet = patch_stylesheet


def notebook_setup() -> str:
    """Set this Jupyter kernel up to show pages and figures inline with no request leaving the machine.

    Publishes Bokeh, Panel and plotly.js into this cell's output (Panel's
    inline mode) and makes ``"workbench"`` plotly's default renderer. Run it
    in the first cell; calling it again is harmless (and republishes the
    scripts, for a browser that reloaded the notebook). The first page
    displayed calls it when no cell did.

    Returns
    -------
    str
        ``"inline"`` in a Jupyter kernel; ``"static"`` elsewhere, where pages
        show static images (see :func:`page_mimebundle`).

    Examples
    --------
    >>> notebook_setup(), notebook_setup()
    ('static', 'static')
    """
    if not in_kernel():
        return "static"
    import panel as pn
    from IPython.display import HTML, display

    if not _state["patched"]:
        _inline_late_stylesheets()
        pio.renderers[RENDERER] = OfflineRenderer()
        pin_panel_comms_to_main_shell()  # JupyterLab's comm subshells would interleave Panel's messages
        _state["patched"] = True
    pn.config.inline = True
    pn.extension("plotly", inline=True)
    display(HTML(plotlyjs_html() + ENTER_COMMITS_JS))
    pio.renderers.default = RENDERER
    _state["setup"] = True
    return "inline"


def prefer_inline() -> None:
    """In a Jupyter kernel, make a later plain ``pn.extension(...)`` inline (offline) too."""
    if in_kernel():
        import panel as pn

        pn.config.inline = True


def page_mimebundle(page: "Page", include=None, exclude=None) -> Any:
    """What a page as the last line of a cell shows: the live page in a kernel, static images elsewhere."""
    if in_kernel():
        if not _state["setup"]:
            notebook_setup()
        return page.view()._repr_mimebundle_(include, exclude)
    return static_page(page)


def static_page(page: "Page") -> dict:
    """The page's status and figures as PNG images (plotly titles only when kaleido cannot render), one warning.

    Examples
    --------
    >>> import tempfile, warnings
    >>> from widgets.pages.base import Page
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     bundle = static_page(Page(cache_dir=tempfile.mkdtemp()))
    >>> bundle["text/plain"]
    '<Page: no figures yet>'
    """
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn("no Jupyter kernel: dashboard pages show static images here; run them in JupyterLab "
                      "(after widgets.notebook_setup()) or serve them with 'workbench serve' to interact",
                      UserWarning, stacklevel=3)
    try:
        figures = page.figures()
    except (ValueError, TypeError, KeyError) as err:
        figures, page.message = {}, str(err)
    lines = [line for line in (page.status, page.message) if line]
    blocks = [f"<p>{html.escape(line)}</p>" for line in lines]
    for name, fig in figures.items():
        blocks.append(f"<figure><figcaption>{html.escape(name)}</figcaption>{_png_img(fig)}</figure>")
    names = ", ".join(figures) or "no figures yet"
    text = f"<{type(page).__name__}: {names}>" + "".join(f"\n{line}" for line in lines)
    return {"text/plain": text, "text/html": "\n".join(blocks) or f"<p>{html.escape(text)}</p>"}


def _png_img(fig: go.Figure) -> str:
    from workbench.figures import export

    try:
        with tempfile.TemporaryDirectory() as folder:
            data = export(fig, os.path.join(folder, "figure.png")).read_bytes()
    except Exception as err:  # no Chromium or kaleido: say so instead of showing nothing
        title = fig.layout.title.text or "figure"
        return f"<p>{html.escape(title)} (no static image: {html.escape(str(err))})</p>"
    return f'<img alt="{html.escape(fig.layout.title.text or "figure")}" ' \
           f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}"/>'


def poll_inline(page: "Page") -> bool:
    """Poll ``page``'s jobs from the kernel's event loop, as a served page does; True when started.

    A cell's output is a comm-backed Bokeh document: changes made on the
    kernel's loop reach the browser, so progress, live curves and results
    arrive without a helper cell. Without a running loop (scripts, tests)
    nothing starts and :meth:`Page.wait` delivers results instead.

    Examples
    --------
    >>> import tempfile
    >>> from widgets.pages.base import Page
    >>> poll_inline(Page(cache_dir=tempfile.mkdtemp()))
    False
    """
    import asyncio

    from panel.io.callbacks import PeriodicCallback

    if getattr(page, "_inline_poll", None) is not None:
        return True
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    callback = PeriodicCallback(callback=page.poll, period=INLINE_POLL_MS, background=True)
    callback.start()
    page._inline_poll = callback
    return True


__all__ = ["OfflineRenderer", "figure_html", "figure_png", "in_kernel", "local_stylesheet", "notebook_setup", "page_mimebundle",
           "plotlyjs_html", "poll_inline", "prefer_inline", "static_figure_html", "static_page"]
