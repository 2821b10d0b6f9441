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

from widgets.access import (PASSWORD_VARIABLE, DataFolders, allowed_hosts, is_loopback, login_options,
                            refuse_other_hosts)
from widgets.landing import write_landing
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


def routes(cache_dir: str | os.PathLike | None = None,
           data_dirs: list[str | os.PathLike] | None = None) -> dict[str, Callable[[], pn.template.BaseTemplate]]:
    """``{slug: factory}`` for :func:`panel.serve`; each session gets fresh page state.

    Examples
    --------
    >>> sorted(routes("/tmp/wb-cache"))
    ['collapse', 'connectome', 'overview', 'sae', 'spectra']
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache()
    folders = DataFolders(data_dirs)
    titles = {slug: page.title for slug, page in PAGES.items()}

    def build(page):
        _serve_stylesheets_locally()
        return site(page(cache_dir=root, data_folders=folders), titles)

    return {slug: (lambda page=page: build(page)) for slug, page in PAGES.items()}


def _serve_stylesheets_locally() -> None:
    """Point this session's component stylesheets at this server before any component is built.

    Panel gives a component's stylesheets CDN addresses and rewrites them to
    the server's ``static/`` only once the session's page is rendered; under
    concurrent first visits some escaped the rewrite, and the browser asked
    cdn.holoviz.org for them (seen with 3 sessions opening at once). Setting
    the document's ``dist_url`` first makes every component start local.
    """
    from panel.io.resources import LOCAL_DIST

    doc = pn.state.curdoc
    if doc is not None:
        doc._template_variables["dist_url"] = f"{pn.state.rel_path}/{LOCAL_DIST}" if pn.state.rel_path else LOCAL_DIST


def serve(port: int = 5006, address: str = "127.0.0.1", cache_dir: str | os.PathLike | None = None,
          start: bool = True, *, data_dirs: list[str | os.PathLike] | None = None, allow_remote: bool = False,
          hosts: tuple[str, ...] = (), login: bool | None = None):
    """Serve the dashboard at ``http://address:port/overview`` (blocks while ``start``).

    Bokeh and Panel serve every JS/CSS resource (plotly.js included) from this
    server, never from a CDN, so the dashboard works without network access.
    No browser is opened. On loopback no login is asked; any other address
    needs ``allow_remote`` and then every page is behind a login whose
    password is ``$WORKBENCH_PASSWORD`` or a token printed once. Requests
    naming another host (DNS rebinding) get 403 either way.

    Parameters
    ----------
    port : int
    address : str
        Interface to bind; the default keeps the dashboard on this machine.
    cache_dir : path, optional
        Hook cache and dashboard results; default ``$WORKBENCH_CACHE`` or the user cache.
    start : bool
        Run the server loop (False returns the configured server, for tests).
    data_dirs : list of paths, optional
        The only folders whose files the pages read (see :class:`widgets.access.DataFolders`).
    allow_remote : bool
        Required for an address other machines can reach.
    hosts : tuple of str
        Host names visitors use besides the address and loopback names (e.g. the machine's DNS name).
    login : bool, optional
        Ask for a login; default: only off loopback. Turn it on for loopback
        too on a machine other people log in to (a cluster's login node).

    Returns
    -------
    bokeh.server.server.Server
    """
    remote = not is_loopback(address)
    if remote and not allow_remote:
        raise ValueError(f"address: {address!r} is reachable from other machines, which would expose every page, "
                         "your files' folders and training jobs to them; pass --allow-remote to serve it there "
                         "behind a login")
    if remote and login is False:
        raise ValueError("login: a server other machines can reach always asks for a login")
    login = remote if login is None else login
    folders = DataFolders(data_dirs)
    import workbench.collapse  # noqa: F401  (imported now so that no visitor waits for torch to load)
    import workbench.connectome  # noqa: F401
    import workbench.sae  # noqa: F401
    import workbench.spectra  # noqa: F401

    root = Path(cache_dir) if cache_dir is not None else default_cache()
    for page in PAGES.values():
        page.warm_up(root)  # slow shared work (loading models...) starts now, not on a visitor's request
    os.environ["BOKEH_RESOURCES"] = "server"  # read by Bokeh when it builds each page's resource links
    pn.extension("plotly")
    allowed = allowed_hosts(address, hosts)
    origins = [f"{host}:{port}" for host in sorted(allowed) if ":" not in host]  # Bokeh takes no IPv6 literal
    auth, generated = login_options() if login else ({}, None)
    if remote:
        print(f"WARNING: serving on {address}, reachable from other machines; every page asks for a login. "
              f"Pages read files only in: {', '.join(str(r) for r in folders.roots)}", flush=True)
    if generated:
        print(f"Password (shown once; set ${PASSWORD_VARIABLE} to choose one): {generated}", flush=True)
    print(f"Decomposition Workbench dashboard: http://{address}:{port}/", flush=True)
    server = pn.serve(routes(cache_dir, folders.roots), port=port, address=address, websocket_origin=origins,
                      show=False, start=False, title={slug: page.title for slug, page in PAGES.items()},
                      verbose=False, index=str(write_landing(PAGES)), **auth)
    refuse_other_hosts(server, allowed)
    if start:
        server.start()
        try:
            server.io_loop.start()
        except RuntimeError:  # a loop already running (Panel's own serve tolerates this the same way)
            pass
    return server


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
