"""Dashboard latency in headless system Chromium: request -> first figure, interaction -> updated figure.

Starts ``workbench serve`` on a free port with a fresh cache, opens each page
twice (cold: results computed; warm: read from the result cache), then times
two interactions. Targets (issue 7): first figure < 3 s, interaction < 300 ms.
Writes ``benchmarks/results/dashboard.json``.

Run: ``python benchmarks/bench_dashboard.py``
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

FIGURE = ".js-plotly-plot .main-svg"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
OUT = Path(__file__).parent / "results" / "dashboard.json"


def _serve(cache: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--cache", cache],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try:
            urllib.request.urlopen(f"{url}/overview", timeout=5)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("workbench serve did not start")


def _first_figure(page, url: str, wait_text: str) -> float:
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(FIGURE, timeout=120_000)
    page.get_by_text(wait_text).first.wait_for(timeout=120_000)
    return time.perf_counter() - start


def _interaction(page, select: str, value: str, wait_text: str) -> float:
    start = time.perf_counter()
    page.locator(f"{select} select").select_option(value)
    page.get_by_text(wait_text).first.wait_for(timeout=60_000)
    return time.perf_counter() - start


def main() -> dict:
    results: dict = {"first_figure_s": {}, "interaction_s": {}, "targets": {"first_figure_s": 3.0,
                                                                             "interaction_s": 0.3}}
    with tempfile.TemporaryDirectory() as cache, sync_playwright() as p:
        proc, url = _serve(cache)
        try:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            waits = {"overview": "Induction score:", "collapse": "Gram vs", "connectome": "traces of"}
            for slug, text in waits.items():
                cold = _first_figure(page, f"{url}/{slug}", text)
                warm = _first_figure(page, f"{url}/{slug}", text)
                results["first_figure_s"][slug] = {"cold": round(cold, 3), "warm": round(warm, 3)}
            page.goto(f"{url}/collapse")
            page.get_by_text("Gram vs").first.wait_for(timeout=120_000)
            layer = page.locator(".wb-layer select option").first.inner_text()
            results["interaction_s"]["collapse_layer"] = round(
                _interaction(page, ".wb-layer", layer, f"NC metrics at {layer}"), 3)
            page.goto(f"{url}/connectome")
            page.wait_for_selector(FIGURE, timeout=60_000)
            page.locator(".wb-run button").click()
            page.get_by_text("relative error").first.wait_for(timeout=120_000)
            results["interaction_s"]["connectome_component"] = round(
                _interaction(page, ".wb-component", "1", "component 1"), 3)
            browser.close()
        finally:
            proc.terminate()
            proc.wait(20)
    results["machine"] = {"python": platform.python_version(), "processor": platform.processor() or platform.machine()}
    warm = max(v["warm"] for v in results["first_figure_s"].values())
    worst = max(results["interaction_s"].values())
    print(f"first figure (warm, worst page) {warm:.2f} s = {warm / 3.0:.2f} x target; "
          f"interaction (worst) {worst * 1000:.0f} ms = {worst / 0.3:.2f} x target")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
