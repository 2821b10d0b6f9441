"""The pages and controls inline in JupyterLab itself, offline, in headless system Chromium; and exported HTML.

JupyterLab runs on loopback with a token in a temporary folder (its settings,
runtime and workspaces there too). A notebook showing one page of each kind
and one ipywidgets control is run through the UI ("Run All Cells"); every
output must draw a plotly figure, react to one interaction, and no request
may leave 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser
playwright = pytest.importorskip("playwright.sync_api")

from test_widgets_browser import ARTIFACTS, FIGURE, _free_port, browser, wait_until_up  # noqa: E402,F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "workbench-test-token"

SETUP = "import os\n\nimport widgets\n\nwidgets.notebook_setup()\nCACHE = os.environ['WORKBENCH_CACHE']"
# One page of each kind, small settings, each computed before it is shown; then one ipywidgets control.
PAGES = {
    "collapse": "from widgets.pages.collapse import CollapsePage\n\n"
                "collapse = CollapsePage(cache_dir=CACHE, n_classes=3, n_major=20, width=16, epochs=4, record_every=2)\n"
                "collapse.run()\ncollapse.wait(120)\ncollapse",
    "connectome": "from widgets.pages.connectome import ConnectomePage\n\n"
                  "connectome = ConnectomePage(cache_dir=CACHE, n_neurons=12, n_time=160, rank_min=1, rank_max=2,\n"
                  "                            n_restarts=2, max_iter=30)\nconnectome.run()\nconnectome.wait(120)\n"
                  "connectome",
    "spectra": "from widgets.pages.spectra import SpectraPage\n\n"
               "spectra = SpectraPage(cache_dir=CACHE, model='tiny-attn-2l', n_seq=2, seq_len=16)\n"
               "spectra.compute()\nspectra.wait(120)\nspectra",
    "overview": "from widgets.pages.overview import OverviewPage\n\n"
                "overview = OverviewPage(cache_dir=CACHE, n_seq=2, seq_len=8)\n"
                "overview.compute_induction()\noverview.wait(120)\noverview",
    "sae": "from widgets.pages.sae import SAEPage\n\n"
           "sae = SAEPage(cache_dir=CACHE, d_sae=32, k=4, n_seq=16, seq_len=32, n_tokens=2048, eval_seq=8)\n"
           "sae.train()\nsae.wait(120)\nsae",
}
CONTROL = "from widgets.notebook import epoch_slider\n\nepoch_slider(collapse.result)"
# A browser event's handler redraws a figure while the main thread pushes a counter every 20 ms. JupyterLab
# sends comm messages to a kernel subshell (another thread) by default: unless Panel's comms are pinned to
# the main shell (widgets.kernel_comms), the two threads' message pieces interleave and the browser fails.
STRESS = ("import threading\n\nimport numpy as np\nimport panel as pn\nimport plotly.graph_objects as go\n"
          "from panel.io.callbacks import PeriodicCallback\n\n"
          "handled_on, ticks = set(), pn.pane.Markdown('no event yet')\n"
          "choice = pn.widgets.Select(options=[str(i) for i in range(50)], css_classes=['wb-stress'])\n"
          "lines = pn.pane.Plotly(go.Figure(), height=200)\n\n\n"
          "def tick():\n"
          "    pusher.counter = getattr(pusher, 'counter', 0) + 1\n"
          "    ticks.object = f'tick {pusher.counter}: events handled on {sorted(handled_on)}'\n\n\n"
          "def redraw(event):\n"
          "    handled_on.add(threading.current_thread().name)\n"
          "    lines.object = go.Figure([go.Scatter(y=np.random.rand(50)) for _ in range(30)])\n"
          "    if not pusher.running:\n"
          "        pusher.start()\n\n\n"
          "pusher = PeriodicCallback(callback=tick, period=20, count=300)\n"
          "choice.param.watch(redraw, 'value')\npn.Column(choice, ticks, lines)")

TIMES: dict[str, float] = {}  # seconds from "Run All Cells" to each output's first figure, then to the end
LAB_SETTINGS = {  # no news or update checks, and every cell kept in the page (no windowing)
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                   "autoStartDefaultKernel": True},
}


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@contextlib.contextmanager
def jupyter_lab(folder: Path, app: str = "lab"):
    """``jupyter lab`` (or ``app="notebook"``: Notebook 7) on a free loopback port with a token, everything in
    ``folder``; yields its URL."""
    for name, values in LAB_SETTINGS.items():
        settings = folder / "lab-settings" / name
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps(values))
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), "WORKBENCH_CACHE": str(folder / "cache"), "JUPYTER_CONFIG_DIR": str(folder / "config"),
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(folder / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces"), "IPYTHONDIR": str(folder / "ipython")}
    log = open(folder / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", app, "--no-browser", "--ip=127.0.0.1",
                             f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={TOKEN}",
                             f"--ServerApp.root_dir={folder}", "--LabApp.news_url=None",
                             *(["--allow-root"] if os.geteuid() == 0 else [])],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/api/status?token={TOKEN}", proc, folder / "lab.log", 90)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def recording_tab(browser, local: tuple[str, ...]):
    """A tab that records console errors and every request not starting with one of ``local``."""
    tab = browser.new_page(viewport={"width": 1500, "height": 1100})
    tab.errors, tab.outside = [], []
    tab.on("console", lambda msg: tab.errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda err: tab.errors.append(str(err)))
    tab.on("request", lambda req: None if req.url.startswith(local) else tab.outside.append(req.url))
    return tab


def run_all_cells(tab, url: str, name: str, path: str = "lab/tree") -> None:
    """Open notebook ``name`` in JupyterLab at ``url`` (Notebook 7: ``path="notebooks"``) and run every cell
    from the Run menu."""
    tab.goto(f"{url}/{path}/{name}?token={TOKEN}")
    tab.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=60_000)
    indicator = tab.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    accept = tab.locator(".jp-Dialog .jp-mod-accept")  # "Select Kernel", when the kernel list came late
    deadline, quiet = time.time() + 60, 0
    while quiet < 4 and time.time() < deadline:  # idle and no dialog for 2 s
        if accept.count():
            accept.click()
        quiet = quiet + 1 if indicator.count() and not accept.count() else 0
        tab.wait_for_timeout(500)
    tab.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    tab.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()


def _cell(tab, index: int):
    return tab.locator(".jp-Notebook .jp-CodeCell").nth(index)


def _wait_text(cell, text: str, timeout: float = 60_000):
    cell.get_by_text(text).first.wait_for(timeout=timeout)


def test_pages_and_a_control_run_inline_in_jupyterlab_offline(browser, tmp_path):
    started = time.time()
    write_notebook(tmp_path / "inline.ipynb", [SETUP, *PAGES.values(), CONTROL, STRESS])
    with jupyter_lab(tmp_path) as url:
        port = url.rsplit(":", 1)[1]
        tab = recording_tab(browser, tuple(f"{scheme}://127.0.0.1:{port}" for scheme in ("http", "ws"))
                            + ("data:", "blob:"))
        try:
            _run_and_interact(tab, url)
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / "jupyterlab-failed.png"))
            shown = [tab.locator(".jp-Cell-outputArea").nth(i).inner_text()[:300]
                     for i in range(tab.locator(".jp-Cell-outputArea").count())]
            raise AssertionError(f"cell outputs: {shown}; console errors: {tab.errors}; times {TIMES}")

        tab.wait_for_timeout(1000)  # late stylesheet or script requests of the last redraws
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "jupyterlab-times.json").write_text(json.dumps(TIMES))
        tab.screenshot(path=str(ARTIFACTS / "jupyterlab-inline.png"), full_page=True)
        for index, name in enumerate([*PAGES, "control"], start=1):
            _cell(tab, index).screenshot(path=str(ARTIFACTS / f"jupyterlab-{name}.png"))
        assert tab.errors == [], f"JavaScript console errors: {tab.errors}"
        assert tab.outside == [], f"requests left 127.0.0.1: {tab.outside}"
        tab.close()
    assert time.time() - started < 300, f"the JupyterLab test took {time.time() - started:.0f} s"


def _run_and_interact(tab, url: str) -> None:
    started = time.time()
    run_all_cells(tab, url, "inline.ipynb")
    # a plotly figure renders inside every page output and inside the control
    for index, name in enumerate([*PAGES, "control"], start=1):
        _cell(tab, index).locator(".jp-OutputArea " + FIGURE).first.wait_for(timeout=150_000)
        TIMES[name] = round(time.time() - started, 1)
    collapse, connectome, spectra, overview, sae, control = (_cell(tab, i) for i in range(1, len(PAGES) + 2))

    # one interaction per output changes its figure
    layer = collapse.locator(".wb-layer select option").first.inner_text()
    collapse.locator(".wb-layer select").select_option(layer)
    _wait_text(collapse, f"NC metrics at {layer}")
    connectome.locator(".wb-component select").select_option("1")
    _wait_text(connectome, "component 1")
    spectra.locator(".wb-metric select").select_option("stable_rank")
    _wait_text(spectra, "stable_rank of tiny-attn-2l")
    sae.locator(".wb-feature input").fill("3")
    sae.locator(".wb-feature input").press("Enter")  # Enter commits, as in a served page
    _wait_text(sae, "feature 3:")
    control.locator(".widget-toggle-button", has_text="orthogonal frame").click()
    _wait_text(control, "Gram vs orthogonal frame")

    # inline jobs finish on screen, with no helper cell: a model switch computes its induction scores ...
    other = [o for o in overview.locator(".wb-model select option").all_inner_texts()
             if o != overview.locator(".wb-model select").input_value()][0]
    overview.locator(".wb-model select").select_option(other)
    _wait_text(overview, f"Induction score: {other}", 90_000)
    # ... and Run with new settings trains, reports and delivers the result
    collapse.locator(".bk-input-group", has_text="Loss").locator("select").select_option("ce")
    collapse.locator(".wb-run button").click()
    _wait_text(collapse, "neural-collapse run: done in", 90_000)
    TIMES["interactions"] = round(time.time() - started, 1)

    # events in quick succession while the main thread pushes: every piece of every message arrives in order
    stress = _cell(tab, len(PAGES) + 2)
    for value in range(1, 41):
        stress.locator(".wb-stress select").select_option(str(value))
    _wait_text(stress, "events handled on ['MainThread']")
    TIMES["stress"] = round(time.time() - started, 1)


NOTEBOOK7_OWN_ERROR = "Cannot read properties of undefined (reading 'schema')"


def test_a_page_runs_inline_in_notebook_7_offline(browser, tmp_path):
    """Notebook 7 (JupyterLab's components in the classic layout): the same setup shows a page offline."""
    pytest.importorskip("notebook", minversion="7")
    write_notebook(tmp_path / "nb7.ipynb", [SETUP, PAGES["collapse"]])
    with jupyter_lab(tmp_path, app="notebook") as url:
        port = url.rsplit(":", 1)[1]
        tab = recording_tab(browser, tuple(f"{scheme}://127.0.0.1:{port}" for scheme in ("http", "ws"))
                            + ("data:", "blob:"))
        run_all_cells(tab, url, "nb7.ipynb", path="notebooks")
        collapse = _cell(tab, 1)
        try:
            collapse.locator(".jp-OutputArea " + FIGURE).first.wait_for(timeout=150_000)
            layer = collapse.locator(".wb-layer select option").first.inner_text()
            collapse.locator(".wb-layer select").select_option(layer)
            _wait_text(collapse, f"NC metrics at {layer}")
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / "notebook7-collapse.png"), full_page=True)
        # Notebook 7.6's own start-up logs this with a notebook holding only "1 + 1" too: not from a page
        errors = [e for e in tab.errors if e != NOTEBOOK7_OWN_ERROR]
        assert errors == [], f"JavaScript console errors: {errors}"
        assert tab.outside == [], f"requests left 127.0.0.1: {tab.outside}"
        tab.close()


EXPORTED = [
    SETUP,
    "import plotly.graph_objects as go\n\ngo.Figure(go.Bar(y=[3, 1, 2]), layout_title_text='plain figure')",
    "from widgets.pages.connectome import ConnectomePage\n\n"
    "page = ConnectomePage(cache_dir=CACHE, n_neurons=12, n_animals=2, n_time=160)\npage.load()\npage",
    "import ipywidgets as ipw\nfrom widgets.notebook import FigureBrowser\n\n"
    "FigureBrowser({'n': ipw.IntSlider(value=2, min=1, max=4)},\n"
    "              lambda n: {'bars': go.Figure(go.Bar(y=list(range(n))), layout_title_text=f'{n} bars')})",
]
# nbconvert's own page template links require.js and MathJax from cdnjs; nothing else may be remote.
TEMPLATE_URLS = ("https://cdnjs.cloudflare.com/ajax/libs/require.js/", "https://cdnjs.cloudflare.com/ajax/libs/mathjax/")


def test_nbconvert_html_shows_figures_page_and_control_offline(browser, tmp_path):
    from bs4 import BeautifulSoup

    notebook = write_notebook(tmp_path / "export.ipynb", EXPORTED)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), "WORKBENCH_CACHE": str(tmp_path / "cache"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "IPYTHONDIR": str(tmp_path / "ipython")}
    # without widget state the control's HTML version is exported (the widget state would need a widget
    # loader from unpkg: no installed package ships one)
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute",
                           "--NotebookClient.store_widget_state=False", str(notebook)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # (Panel's empty display handle of each page, dict_keys([]), has nothing to represent)
    assert "mimetype(s) dict_keys(['" not in done.stderr, done.stderr[-3000:]
    page = (tmp_path / "export.html").read_text()
    outputs = BeautifulSoup(page, "html.parser").select(".jp-OutputArea-output")
    linked = [tag.get("src") or tag.get("href") for output in outputs for tag in output.select(
        "script[src], link[href], img[src], iframe[src]")]
    assert [url for url in linked if not url.startswith("data:")] == [], "outputs link scripts or styles"
    assert len(outputs) >= 4 and "jupyter-widgets/html-manager" not in page

    tab = recording_tab(browser, ("file://", "data:", "blob:"))
    tab.route(re.compile(r"^https?://"), lambda route: route.abort())  # no internet
    tab.goto((tmp_path / "export.html").as_uri())
    tab.get_by_text("plain figure").first.wait_for(timeout=30_000)
    tab.get_by_text("2 bars").first.wait_for(timeout=30_000)
    tab.locator(".jp-CodeCell").nth(2).locator(FIGURE).first.wait_for(timeout=30_000)  # the page: Bokeh, Panel
    tab.wait_for_timeout(1000)
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "nbconvert-export.png"), full_page=True)
    assert tab.locator(FIGURE).count() >= 3
    assert [url for url in tab.outside if not url.startswith(TEMPLATE_URLS)] == []
    template_failures = ("Failed to load resource", "net::ERR_FAILED")
    assert [e for e in tab.errors if not any(f in e for f in template_failures)] == [], tab.errors
    tab.close()
