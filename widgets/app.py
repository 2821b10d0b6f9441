"""The served multi-page app and the regeneration of paper figures from saved results.

Examples
--------
>>> list(PAGES)
['overview', 'collapse', 'connectome', 'sae', 'spectra']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import panel as pn
import plotly.graph_objects as go
import xarray as xr

from widgets.pages.base import default_cache
from widgets.pages.collapse import CollapsePage, collapse_figures
from widgets.pages.connectome import ConnectomePage, connectome_figures
from widgets.pages.overview import OverviewPage, induction_figures
from widgets.pages.sae import SAEPage, sae_figures
from widgets.pages.spectra import SpectraPage, spectra_figures
from widgets.results import ResultStore
from widgets.template import site

PAGES = {page.slug: page for page in (OverviewPage, CollapsePage, ConnectomePage, SAEPage, SpectraPage)}
# Result kind (the prefix of a result key) -> the builder of that page's paper figures.
RESULT_FIGURES: dict[str, Callable[[xr.Dataset], dict[str, go.Figure]]] = {
    "induction": induction_figures, "collapse": collapse_figures, "connectome": connectome_figures,
    "sae": sae_figures, "spectra": spectra_figures}


def routes(cache_dir: str | os.PathLike | None = None) -> dict[str, Callable[[], pn.template.BaseTemplate]]:
    """``{slug: factory}`` for :func:`panel.serve`; each session gets fresh page state.

    Examples
    --------
    >>> sorted(routes("/tmp/wb-cache"))
    ['collapse', 'connectome', 'overview', 'sae', 'spectra']
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache()
    titles = {slug: page.title for slug, page in PAGES.items()}
    return {slug: (lambda page=page: site(page(cache_dir=root), titles)) for slug, page in PAGES.items()}


def serve(port: int = 5006, address: str = "127.0.0.1", cache_dir: str | os.PathLike | None = None,
          start: bool = True):
    """Serve the dashboard at ``http://address:port/overview`` (blocks while ``start``).

    Bokeh and Panel serve every JS/CSS resource (plotly.js included) from this
    server, never from a CDN, so the dashboard works without network access.
    No browser is opened.

    Parameters
    ----------
    port : int
    address : str
        Interface to bind; the default keeps the dashboard on this machine.
    cache_dir : path, optional
        Hook cache and dashboard results; default ``$WORKBENCH_CACHE`` or the user cache.
    start : bool
        Run the server loop (False returns the configured server, for tests).

    Returns
    -------
    bokeh.server.server.Server
    """
    import workbench.collapse  # noqa: F401  (imported now so that no visitor waits for torch to load)
    import workbench.connectome  # noqa: F401
    import workbench.sae  # noqa: F401
    import workbench.spectra  # noqa: F401

    root = Path(cache_dir) if cache_dir is not None else default_cache()
    for page in PAGES.values():
        page.warm_up(root)  # slow shared work (loading models...) starts now, not on a visitor's request
    os.environ["BOKEH_RESOURCES"] = "server"  # read by Bokeh when it builds each page's resource links
    pn.extension("plotly")
    origins = [f"{host}:{port}" for host in {address, "localhost", "127.0.0.1"}]
    print(f"Decomposition Workbench dashboard: http://{address}:{port}/overview", flush=True)
    return pn.serve(routes(cache_dir), port=port, address=address, websocket_origin=origins, show=False,
                    start=start, title={slug: page.title for slug, page in PAGES.items()}, verbose=False)


def export_results(results_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   formats: tuple[str, ...] = ("pdf",)) -> list[Path]:
    """Re-export the paper figures of every dashboard result saved under ``results_dir``.

    Parameters
    ----------
    results_dir : path
        A cache folder the dashboard wrote to (holds ``dashboard/``).
    out_dir : path
        Created if missing; files are ``<result key>-<figure>.<fmt>``.
    formats : tuple of str
        Any of pdf, svg, png.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Examples
    --------
    >>> import tempfile
    >>> export_results(tempfile.mkdtemp(), tempfile.mkdtemp())
    []
    """
    from workbench.figures import export

    if not Path(results_dir).is_dir():
        raise ValueError(f"results_dir: expected an existing cache folder, got {str(results_dir)!r}")
    store = ResultStore(results_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key in store.keys():
        kind = key.rsplit("-", 1)[0]
        if kind not in RESULT_FIGURES:
            raise ValueError(f"results_dir: result {key!r} is of unknown kind {kind!r}; known {sorted(RESULT_FIGURES)}")
        for name, fig in RESULT_FIGURES[kind](store.load(key)).items():
            written += [export(fig, out / f"{key}-{name}.{fmt}") for fmt in formats]
    return written
