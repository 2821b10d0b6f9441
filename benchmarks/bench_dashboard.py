"""Dashboard latency in headless system Chromium: request -> first figure, interaction -> updated figure.

Starts ``workbench serve`` on a free port with a fresh cache, opens each page
twice (cold: results computed; warm: read from the result cache), then times
two interactions. Targets (issue 7): first figure < 3 s, interaction < 300 ms.
Writes ``benchmarks/results/dashboard.json``.

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


def _interaction(page, select: str, value: str, wait_text: str) -> float:
    start = time.perf_counter()
    page.locator(f"{select} select").select_option(value)
    _wait_figure(page, wait_text, 60_000)
    return time.perf_counter() - start


def _interactions(page, select: str, values: list[str], text: str) -> list[float]:
    """Alternate between ``values`` REPEATS times, starting with one not shown now; seconds of each switch."""
    while page.evaluate(FIGURE_SHOWS, text.format(values[0])):
        values = values[1:] + values[:1]
    time.sleep(SETTLE_S)
    times = []
    for i in range(REPEATS):
        value = values[i % len(values)]
        times.append(round(_interaction(page, select, value, text.format(value)), 3))
        time.sleep(0.3)  # let the page settle so each switch is timed alone
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
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            waits = {"overview": "Induction score:", "collapse": "Gram vs", "connectome": "traces of"}
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
            browser.close()
        finally:
            proc.terminate()
            proc.wait(20)
    results["interaction_s"] = {name: statistics.median(times) for name, times in samples.items()}
    results["method"] = (f"end detected in the page every animation frame; interaction_s is the median of "
                         f"{REPEATS} switches starting {SETTLE_S} s after the page showed its figures; cold "
                         f"overview is also the browser's first (uncached) load of the JS bundles")
    results["interaction_samples_s"] = samples
    results["server_start_s"] = round(startup, 3)
    results["machine"] = {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                          "cpus": os.cpu_count(),
                          "load_average_1min": {"before": round(load_before[0], 2),
                                                "after": round(os.getloadavg()[0], 2)}}
    warm = max(v["warm"] for v in results["first_figure_s"].values())
    worst = max(results["interaction_s"].values())
    print(f"first figure (warm, worst page) {warm:.2f} s = {warm / 3.0:.2f} x target; "
          f"interaction (worst median) {worst * 1000:.0f} ms = {worst / 0.3:.2f} x target")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
