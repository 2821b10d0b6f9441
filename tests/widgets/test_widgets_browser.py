"""The served dashboard in headless system Chromium: every page renders, reacts, and stays on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FIGURE = ".js-plotly-plot .main-svg"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, seconds: float) -> None:
    """Wait until ``url`` answers; fail with the end of ``log`` when ``proc`` exits or ``seconds`` pass."""
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"{proc.args[:4]} did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.5)


@contextlib.contextmanager
def served(cache: Path, *args: str, env: dict | None = None, ready: str = "/overview"):
    """Run ``workbench serve`` with ``args`` on a free loopback port until the block ends; yields (url, process)."""
    port = _free_port()
    log = open(cache / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--cache", str(cache),
                             *args], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + ready, proc, cache / "serve.log", 300)  # 95-105 s seen at load 16-20 on 2 cores
    try:
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served(tmp_path_factory.mktemp("served")) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no system Chromium at {CHROMIUM}")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture()
def tab(browser, server):
    """A page that records console errors and every request that is not to the local server."""
    url, _ = server
    page = browser.new_page(viewport={"width": 1440, "height": 900})  # the screenshots are read at this size
    page.errors, page.outside = [], []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: page.errors.append(str(err)))
    local = ("http://127.0.0.1:", "ws://127.0.0.1:", "blob:http://127.0.0.1:", "data:")
    page.on("request", lambda req: None if req.url.startswith(local) else page.outside.append(req.url))
    yield page
    page.close()


def _open(tab, server, slug: str):
    tab.goto(f"{server[0]}/{slug}", timeout=90_000)  # a first render took 36 s at load 18-20 on 2 cores
    tab.wait_for_selector(FIGURE, timeout=90_000)


def _finish(tab, server, name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
    assert tab.errors == [], f"JavaScript console errors: {tab.errors}"
    assert tab.outside == [], f"requests left 127.0.0.1: {tab.outside}"
    assert server[1].poll() is None, "the server stopped"
    assert urllib.request.urlopen(f"{server[0]}/overview", timeout=30).status == 200


def test_the_root_url_is_our_landing_page_with_the_five_pages(tab, server):
    from widgets.app import PAGES

    tab.goto(server[0] + "/")
    links = tab.locator("main li a")
    links.first.wait_for(timeout=30_000)
    assert [links.nth(i).get_attribute("href") for i in range(links.count())] == [f"./{s}" for s in PAGES]
    assert all(page.summary in tab.inner_text("main") for page in PAGES.values())
    assert "Panel" not in tab.title()
    _finish(tab, server, "landing")


def test_overview_renders_and_switches_model(tab, server):
    _open(tab, server, "overview")
    first = tab.locator(".wb-model select").input_value()
    other = [o for o in tab.locator(".wb-model select option").all_inner_texts() if o != first][0]
    tab.locator(".wb-model select").select_option(other)
    tab.get_by_text(f"Induction score: {other}").wait_for(timeout=90_000)
    _finish(tab, server, "overview")


def test_collapse_runs_on_open_and_switches_layer(tab, server):
    _open(tab, server, "collapse")
    tab.get_by_text("Gram vs simplex ETF").first.wait_for(timeout=90_000)
    layer = tab.locator(".wb-layer select").locator("option").first.inner_text()
    tab.locator(".wb-layer select").select_option(layer)
    tab.get_by_text(f"NC metrics at {layer}").wait_for(timeout=30_000)
    # the builders' integer ticks reach the browser (NumPy tick arrays in a layout were dropped there)
    epochs = tab.locator(".wb-figure-nc_curves .xtick text").all_text_contents()
    assert epochs and all(t.isdigit() for t in epochs), f"epoch ticks: {epochs}"
    layers = tab.locator(".wb-figure-nc1_by_layer .xtick text").all_text_contents()
    assert layers == tab.locator(".wb-layer select option").all_inner_texts(), f"layer ticks: {layers}"
    _finish(tab, server, "collapse")


def test_connectome_sweep_then_bad_path_shows_a_message(tab, server):
    _open(tab, server, "connectome?n_surrogates=2")
    tab.locator(".wb-caution").get_by_text("use at least 19").wait_for(timeout=30_000)  # 2 cannot reach p <= 0.05
    tab.locator(".wb-run button").click()
    tab.get_by_text("relative error").first.wait_for(timeout=240_000)  # the rank-sweep figure arrived
    assert tab.locator(FIGURE).count() >= 6
    tab.get_by_text("vs 2 surrogates").first.wait_for(timeout=30_000)  # significance in the component title
    tab.get_by_text("consensus of 3 runs").first.wait_for(timeout=30_000)  # consensus from the page job
    tab.get_by_text("strongest 15 pairs").first.wait_for(timeout=30_000)
    tab.screenshot(path=str(ARTIFACTS / "dashboard-connectome-fit.png"), full_page=True)
    panel = tab.locator(".js-plotly-plot", has_text="pairs (by community)").first
    panel.scroll_into_view_if_needed()  # the component panel a whole row wide: read its titles in this picture
    panel.screenshot(path=str(ARTIFACTS / "dashboard-connectome-component.png"))
    tab.locator(".wb-source select").select_option("file")
    tab.locator(".wb-path input").fill("/no/such/recording.nc")
    tab.locator(".wb-path input").press("Enter")
    tab.locator(".wb-load button").click()
    tab.locator(".wb-message").get_by_text("path: outside the data folders").wait_for(timeout=30_000)
    _finish(tab, server, "connectome")


def test_connectome_bundled_worm_shows_named_traces_and_hides_synthetic_controls(tab, server):
    _open(tab, server, "connectome")
    assert tab.locator(".wb-synthetic").is_visible()
    assert not tab.locator(".wb-recording").is_visible() and not tab.locator(".wb-path").is_visible()
    tab.locator(".wb-source select").select_option("file")  # the recording picker shows for a file source only
    tab.locator(".wb-recording select").wait_for(timeout=30_000)
    worm = [o for o in tab.locator(".wb-recording select option").all_inner_texts() if o.endswith("atanas2023_worm")]
    tab.locator(".wb-recording select").select_option(worm[0])
    tab.get_by_text("traces of atanas2023_worm").wait_for(timeout=90_000)
    tab.locator("g.ytick text", has_text="AVAL").first.wait_for(timeout=30_000)
    assert "AVAL" in tab.locator("g.ytick text").all_text_contents()  # NeuroPAL names label the rows
    assert tab.get_by_text("neuron (NeuroPAL label)").count() >= 1 and tab.get_by_text("time (s)").count() >= 1
    assert not tab.locator(".wb-synthetic").is_visible()
    _finish(tab, server, "connectome-worm")


# Records the title of every figure plotly.js draws (newPlot or react) in window.drawn.
COUNT_DRAWS = """
window.drawn = [];
let plotly;
Object.defineProperty(window, "Plotly", {configurable: true, get: () => plotly, set(value) {
  plotly = value;
  for (const name of ["newPlot", "react"]) {
    const draw = value[name];
    value[name] = function (gd, data, layout) {
      const title = ((data && data.layout) || layout || {}).title;
      window.drawn.push(String((title && title.text) || title || ""));
      return draw.apply(this, arguments);
    };
  }
}});
"""


def test_sae_page_trains_then_browses_a_feature(tab, server):
    tab.add_init_script(COUNT_DRAWS)
    _open(tab, server, "sae?d_sae=32&k=4&n_seq=16&seq_len=32&n_tokens=2048&eval_seq=8")  # small SAE from the URL
    tab.get_by_text("DFA by source position").first.wait_for(timeout=120_000)  # the feature dashboard arrived
    assert tab.locator(FIGURE).count() >= 6
    tab.wait_for_timeout(2000)  # the dashboard was once drawn a second time, about 1.7 s after the first
    drawn = [title for title in tab.evaluate("window.drawn") if title.startswith("feature ")]
    assert len(drawn) == 1, f"the feature dashboard was drawn {len(drawn)} times: {drawn}"
    tab.locator(".wb-feature input").fill("3")
    tab.locator(".wb-feature input").press("Enter")
    tab.get_by_text("feature 3:").first.wait_for(timeout=30_000)
    tab.locator(".wb-feature input").fill("999")
    tab.locator(".wb-feature input").press("Enter")
    tab.locator(".wb-message").get_by_text("feature: expected an index in [0, 32)").wait_for(timeout=30_000)
    # Steer along the shown feature (3): the moved tokens and the two continuations arrive from a job.
    tab.locator(".wb-steer-scale input").fill("40")
    tab.locator(".wb-steer-scale input").press("Enter")
    tab.locator(".wb-steer-prompt textarea").fill("import os\nimport")
    tab.locator(".wb-steer-prompt textarea").press("Tab")
    tab.locator(".wb-steer button").click()
    tab.get_by_text("feature 3 x 40: next token").first.wait_for(timeout=60_000)
    tab.get_by_text("with feature 3 x 40").first.wait_for(timeout=30_000)
    assert tab.get_by_text("without steering").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    tab.locator(".wb-continuations").last.scroll_into_view_if_needed()  # bars above, continuations below
    tab.screenshot(path=str(ARTIFACTS / "dashboard-sae-steering.png"))
    _finish(tab, server, "sae")


def test_spectra_click_on_a_cell_shows_its_esd(tab, server):
    _open(tab, server, "spectra?model=tiny-attn-2l&n_seq=2&seq_len=16")
    tab.get_by_text("alpha of tiny-attn-2l").first.wait_for(timeout=120_000)
    cells = tab.locator(".wb-figure-heatmap .nsewdrag").first.bounding_box()
    x, y = cells["x"] + 0.75 * cells["width"], cells["y"] + 0.125 * cells["height"]  # top row: o, layer 1
    tab.mouse.move(x, y, steps=5)  # Plotly clicks the point it hovers, as with a real mouse
    tab.wait_for_timeout(200)
    tab.mouse.click(x, y)
    tab.get_by_text("ESD of blocks.1.attn.W_O").first.wait_for(timeout=30_000)
    tab.locator(".wb-layer input").fill("9")
    tab.locator(".wb-layer input").press("Enter")
    tab.locator(".wb-message").get_by_text("layer: expected a layer in [0, 2) of tiny-attn-2l, got 9").wait_for(
        timeout=30_000)
    _finish(tab, server, "spectra")
