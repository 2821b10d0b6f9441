"""Dashboard latency in headless system Chromium: request -> first figure, interaction -> updated figure.

Starts ``workbench serve`` on a free port with a fresh cache, opens each page
twice (cold: results computed; warm: read from the result cache), then times
four interactions. Targets (issue 7): first figure < 3 s, interaction < 300 ms,
on the bundled defaults. Writes ``benchmarks/results/dashboard.json``.

The SAE and spectra pages compute their results in a background job on the
first visit (training an SAE; spectra, then truncation and compression), so
their cold numbers are mostly that job: ``first_figure_s[page]["cold"]`` is
request -> the finished result's first figure, ``cold_first_any_figure`` is
request -> any figure (the live training curve; the heatmap before
compression), ``cold_job_done`` is request -> the last figure of the job.
``warm`` is a second visit after the job finished, as for the other pages.
``browser_cold`` is request -> first figure in a fresh browser context (an
empty HTTP cache: every script, stylesheet and font is fetched again) once
the server holds every result: what a first-time visitor waits for.

The end of each timing is detected in the page on every animation frame
(``wait_for_function(..., polling="raf")``), not with Playwright's locator
waits: those poll at 0, 20, 70, 170, 270, 770, 1270 ... ms, so any latency
above 270 ms used to read as about 0.77 s or 1.27 s. Each interaction is
timed REPEATS times, alternating between two values, starting SETTLE_S after
the page showed its figures; the median is reported, all samples are kept.

Run: ``python benchmarks/bench_dashboard.py``
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
OUT = Path(__file__).parent / "results" / "dashboard.json"
REPEATS = 5  # interactions per kind; the median is reported
SETTLE_S = 1.0  # a person takes longer than this to reach a control after a page (or a result) appears
# True once a rendered plotly figure (in any shadow root: Panel renders each pane in one) shows `text`.
FIGURE_SHOWS = """(text) => {
  const roots = [document];
  for (let i = 0; i < roots.length; i++) {
    for (const el of roots[i].querySelectorAll('*')) { if (el.shadowRoot) roots.push(el.shadowRoot); }
  }
  return roots.some(r => [...r.querySelectorAll('.js-plotly-plot .main-svg')].some(s => s.textContent.includes(text)));
}"""


# The (x, y) viewport point of cell (column, row) of the heatmap whose title contains `title`, and the cell.
HEATMAP_CELL = """([title, col, row]) => {
  const roots = [document];
  for (let i = 0; i < roots.length; i++) {
    for (const el of roots[i].querySelectorAll('*')) { if (el.shadowRoot) roots.push(el.shadowRoot); }
  }
  for (const r of roots) {
    for (const gd of r.querySelectorAll('.js-plotly-plot')) {
      const t = gd.querySelector('.gtitle');
      if (!t || !t.textContent.includes(title) || !gd._fullData) continue;
      const trace = gd._fullData.find(d => d.type === 'heatmap');
      const xa = gd._fullLayout[trace.xaxis.replace('x', 'xaxis')];
      const ya = gd._fullLayout[trace.yaxis.replace('y', 'yaxis')];
      const nx = trace.z[0].length, ny = trace.z.length;
      const i = (col + nx) % nx, j = (row + ny) % ny;
      const x = trace.x ? trace.x[i] : i, y = trace.y ? trace.y[j] : j;
      gd.scrollIntoView({block: 'center'});
      const box = gd.getBoundingClientRect();
      return {x: box.left + xa._offset + xa.d2p(x), y: box.top + ya._offset + ya.d2p(y), cell: [String(x), String(y)]};
    }
  }
  return null;
}"""
# The titles of the rendered plotly figures.
FIGURE_TITLES = """() => {
  const roots = [document];
  for (let i = 0; i < roots.length; i++) {
    for (const el of roots[i].querySelectorAll('*')) { if (el.shadowRoot) roots.push(el.shadowRoot); }
  }
  return roots.flatMap(r => [...r.querySelectorAll('.js-plotly-plot .main-svg .gtitle')].map(t => t.textContent));
}"""
# True once a figure title starts with `prefix` and differs from `previous`.
TITLE_CHANGED = """([prefix, previous]) => {
  const roots = [document];
  for (let i = 0; i < roots.length; i++) {
    for (const el of roots[i].querySelectorAll('*')) { if (el.shadowRoot) roots.push(el.shadowRoot); }
  }
  return roots.some(r => [...r.querySelectorAll('.js-plotly-plot .main-svg .gtitle')].some(
    t => t.textContent.startsWith(prefix) && t.textContent !== previous));
}"""


def _serve(cache: str) -> tuple[subprocess.Popen, str, float]:
    """Start the server; returns it, its URL and the seconds until it answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--cache", cache],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(360):
        try:
            urllib.request.urlopen(f"{url}/overview", timeout=5)
            return proc, url, time.perf_counter() - start
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise RuntimeError("workbench serve did not start")


def _wait_figure(page, text: str, timeout_ms: float) -> None:
    page.wait_for_function(FIGURE_SHOWS, arg=text, polling="raf", timeout=timeout_ms)


def _first_figure(page, url: str, wait_text: str) -> float:
    start = time.perf_counter()
    page.goto(url)
    _wait_figure(page, wait_text, 120_000)
    return time.perf_counter() - start


def _select(page, select: str, value: str) -> None:
    page.locator(f"{select} select").select_option(value)


def _enter(page, widget: str, value: str) -> None:
    """Type ``value`` into an (Int)Input and press Enter (it sends its value on Enter)."""
    page.locator(f"{widget} input").fill(value)
    page.locator(f"{widget} input").press("Enter")


def _interaction(page, act, widget: str, value: str, wait_text: str) -> float:
    start = time.perf_counter()
    act(page, widget, value)
    _wait_figure(page, wait_text, 60_000)
    return time.perf_counter() - start


def _interactions(page, widget: str, values: list[str], text: str, act=_select) -> list[float]:
    """Alternate between ``values`` REPEATS times, starting with one not shown now; seconds of each switch."""
    while page.evaluate(FIGURE_SHOWS, text.format(values[0])):
        values = values[1:] + values[:1]
    time.sleep(SETTLE_S)
    times = []
    for i in range(REPEATS):
        value = values[i % len(values)]
        times.append(round(_interaction(page, act, widget, value, text.format(value)), 3))
        time.sleep(0.3)  # let the page settle so each switch is timed alone
    return times


def _cell_clicks(page, heatmap: str, cells: list[tuple[int, int]], prefix: str) -> tuple[list[float], list]:
    """Click heatmap ``cells`` ((column, row), negative from the end) in turn REPEATS times; seconds from each
    click to a figure titled ``prefix...`` other than the one shown before. The mouse first moves onto the
    cell: Plotly clicks the point it hovers (else it re-sends the previous one); the move is not timed."""
    time.sleep(SETTLE_S)
    times, clicked = [], []
    for i in range(REPEATS):
        col, row = cells[i % len(cells)]
        point = page.evaluate(HEATMAP_CELL, [heatmap, col, row])
        previous = [t for t in page.evaluate(FIGURE_TITLES) if t.startswith(prefix)][0]
        page.mouse.move(point["x"], point["y"], steps=5)
        time.sleep(0.2)
        start = time.perf_counter()
        page.mouse.click(point["x"], point["y"])
        page.wait_for_function(TITLE_CHANGED, arg=[prefix, previous], polling="raf", timeout=60_000)
        times.append(round(time.perf_counter() - start, 3))
        clicked.append(point["cell"])
        time.sleep(0.3)
    return times, clicked


def _job_page(page, url: str, any_text: str, result_text: str, done_text: str) -> dict:
    """First figure of a page whose first visit runs a background job: cold (any figure, the result's first
    figure, the job's last figure), then warm (a second visit, after the job finished)."""
    start = time.perf_counter()
    page.goto(url)
    _wait_figure(page, any_text, 60_000)
    first_any = time.perf_counter() - start
    _wait_figure(page, result_text, 600_000)
    cold = time.perf_counter() - start
    _wait_figure(page, done_text, 600_000)
    done = time.perf_counter() - start
    start = time.perf_counter()
    page.goto(url)
    _wait_figure(page, result_text, 120_000)
    warm = time.perf_counter() - start
    _wait_figure(page, done_text, 120_000)
    warm_done = time.perf_counter() - start
    return {"cold": round(cold, 3), "warm": round(warm, 3), "cold_first_any_figure": round(first_any, 3),
            "cold_job_done": round(done, 3), "warm_all_figures": round(warm_done, 3)}


VIEWPORT = {"width": 1440, "height": 900}
# The text of each page's first figure once its result exists.
FIRST_FIGURE = {"overview": "Induction score:", "collapse": "Gram vs", "connectome": "traces of",
                "sae": "top activation", "spectra": "alpha of tiny-gelu-2l"}


def _browser_cold(browser, url: str) -> dict[str, float]:
    """Request -> first figure per page, each in a new browser context: its HTTP cache starts empty."""
    times = {}
    for slug, text in FIRST_FIGURE.items():
        context = browser.new_context(viewport=VIEWPORT)
        times[slug] = round(_first_figure(context.new_page(), f"{url}/{slug}", text), 3)
        context.close()
    return times


def main() -> dict:
    results: dict = {"first_figure_s": {}, "interaction_s": {}, "targets": {"first_figure_s": 3.0,
                                                                             "interaction_s": 0.3}}
    samples: dict = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as cache, sync_playwright() as p:
        proc, url, startup = _serve(cache)
        try:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            waits = {slug: FIRST_FIGURE[slug] for slug in ("overview", "collapse", "connectome")}
            for slug, text in waits.items():
                cold = _first_figure(page, f"{url}/{slug}", text)
                warm = _first_figure(page, f"{url}/{slug}", text)
                results["first_figure_s"][slug] = {"cold": round(cold, 3), "warm": round(warm, 3)}
            page.goto(f"{url}/collapse")
            _wait_figure(page, "Gram vs", 120_000)
            layers = page.locator(".wb-layer select option").all_inner_texts()
            samples["collapse_layer"] = _interactions(page, ".wb-layer", [layers[0], layers[-1]],
                                                      "NC metrics at {}")
            page.goto(f"{url}/connectome")
            _wait_figure(page, "traces of", 60_000)
            page.locator(".wb-run button").click()
            _wait_figure(page, "relative error", 120_000)
            samples["connectome_component"] = _interactions(page, ".wb-component", ["1", "0"], "component {}")
            # SAE (tiny-attn-2l layer 1, the default 256-latent top-k SAE): the first visit trains it.
            results["first_figure_s"]["sae"] = _job_page(page, f"{url}/sae", "", "top activation",
                                                         "dead: ")
            samples["sae_feature"] = _interactions(page, ".wb-feature", ["1", "2"], "feature {}:", act=_enter)
            # Spectra (tiny-gelu-2l): the first visit computes spectra (heatmap), then truncation/compression.
            results["first_figure_s"]["spectra"] = _job_page(page, f"{url}/spectra", "", "alpha of tiny-gelu-2l",
                                                             "compressing every block")
            samples["spectra_cell"], cells = _cell_clicks(page, "(click a cell)", [(-1, -1), (0, -1)], "ESD of")
            results["spectra_cells_clicked"] = cells
            for slug, seconds in _browser_cold(browser, url).items():
                results["first_figure_s"][slug]["browser_cold"] = seconds
            browser.close()
        finally:
            proc.terminate()
            proc.wait(20)
    results["interaction_s"] = {name: statistics.median(times) for name, times in samples.items()}
    results["method"] = (f"end detected in the page every animation frame; interaction_s is the median of "
                         f"{REPEATS} switches starting {SETTLE_S} s after the page showed its figures; cold "
                         f"overview is also the browser's first (uncached) load of the JS bundles; sae and spectra "
                         f"run a background job on the first visit: their cold is request -> the result's first "
                         f"figure (feature dashboard; metric heatmap), cold_first_any_figure request -> any figure, "
                         f"cold_job_done request -> the job's last figure (sae: firing histogram; spectra: "
                         f"compression frontier), warm a second visit after the job; sae_feature: type a feature "
                         f"index and press Enter -> its feature dashboard; spectra_cell: click a heatmap cell (the "
                         f"mouse moved onto it 0.2 s before, untimed) -> its ESD figure, alternating between the two "
                         f"cells in spectra_cells_clicked")
    results["interaction_samples_s"] = samples
    results["server_start_s"] = round(startup, 3)
    results["machine"] = {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                          "cpus": os.cpu_count(),
                          "load_average_1min": {"before": round(load_before[0], 2),
                                                "after": round(os.getloadavg()[0], 2)}}
    warm = max(v["warm"] for v in results["first_figure_s"].values())
    worst = max(results["interaction_s"].values())
    cold = max(v["browser_cold"] for v in results["first_figure_s"].values())
    print(f"first figure (warm, worst page) {warm:.2f} s = {warm / 3.0:.2f} x target; empty browser cache "
          f"(worst page) {cold:.2f} s; "
          f"interaction (worst median) {worst * 1000:.0f} ms = {worst / 0.3:.2f} x target")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
