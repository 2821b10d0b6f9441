"""Dashboard under load: 8 concurrent browser sessions for 60 s against one server.

One ``workbench serve`` on loopback (``--data-dir`` a temporary folder), one
headless system Chromium, and ``sessions`` independent browser contexts (own
cookies, own Panel sessions) driven concurrently:

* session 0 trains an SAE (the SAE page with a small SAE from the URL), then
  keeps switching features;
* session 1 loads files on the Connectome page: a FIFO (must be refused, not
  block), then a large ``.npz`` recording (must load), in turn;
* the others cycle over the overview, collapse, connectome and spectra pages:
  load a page, wait for its figure, do one interaction and wait for its answer.

Every page load and interaction has a deadline (``ANSWER_S``); one not
answered in time is a failure. Reported: per-kind and overall p50/p95
latency, the number of actions, failures, console errors, requests that left
127.0.0.1, and server errors (tracebacks in the server's log).

Run: ``python benchmarks/bench_dashboard_load.py [--sessions 8] [--seconds 60]``
(writes the ``load`` entry of ``benchmarks/results/dashboard.json``);
``tests/widgets/test_widgets_load.py`` runs the same load and asserts zero
errors and every action answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_dashboard import ARGS, FIGURE_SHOWS  # noqa: E402  (the same browser flags and figure probe)

CHROMIUM = "/usr/bin/chromium"
OUT = Path(__file__).parent / "results" / "dashboard.json"
# An action not answered within this is a failure. Generous: on the shared 2-core machine (load average 15-30
# from other work) eight sessions opening at once queue ~10 s of page building each on the one event loop.
# (Measured there: 230-250 s from request to first figure, so 240 s failed runs; hence 420.)
ANSWER_S = float(os.environ.get("WORKBENCH_LOAD_ANSWER_S", "420"))
LOCAL = ("http://127.0.0.1:", "ws://127.0.0.1:", "blob:http://127.0.0.1:", "data:")
SAE_URL = "sae?d_sae=32&k=4&n_seq=16&seq_len=32&n_tokens=2048&eval_seq=8"
BIG_FIGURE = "mean over 56-frame bins"  # the title of the large recording's traces, binned for display


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_data_dir(folder: Path, n_neurons: int = 200, n_time: int = 40_000) -> dict[str, Path]:
    """A data folder with a FIFO and a large ``.npz`` recording (1 x n_neurons x n_time float32)."""
    folder.mkdir(parents=True, exist_ok=True)
    fifo = folder / "slow.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    big = folder / "big_recording.npz"
    rng = np.random.default_rng(0)
    np.savez(big, traces=rng.random((1, n_neurons, n_time), dtype=np.float32), fps=np.float64(4.0))
    return {"fifo": fifo, "big": big}


@contextlib.contextmanager
def serve(cache: Path, data_dir: Path):
    """``workbench serve`` on a free loopback port with ``data_dir``; yields (url, process, log path)."""
    port = _free_port()
    log_path = cache / "serve.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--cache", str(cache),
                             "--data-dir", str(data_dir)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300  # a shared 2-core machine can take minutes to import and warm up
    while True:
        try:
            urllib.request.urlopen(url + "/overview", timeout=5)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"workbench serve did not come up: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
    try:
        yield url, proc, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class Session:
    """One browser context: records every action's latency, failures, console errors and outside requests."""

    def __init__(self, name: str, page, url: str, stop_at: float):
        self.name, self.page, self.url, self.stop_at = name, page, url, stop_at
        self.samples: list[tuple[str, float]] = []
        self.failures: list[str] = []
        self.errors: list[str] = []
        self.outside: list[str] = []
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda err: self.errors.append(str(err)))
        page.on("request", lambda req: None if req.url.startswith(LOCAL) else self.outside.append(req.url))

    def running(self) -> bool:
        return time.monotonic() < self.stop_at

    async def timed(self, kind: str, action, wait) -> None:
        """Run ``action`` then ``wait``; record the seconds, or a failure if not answered within ANSWER_S."""
        start = time.perf_counter()
        try:
            await action()
            await wait(ANSWER_S * 1000)
            self.samples.append((kind, time.perf_counter() - start))
        except Exception as err:  # noqa: BLE001 - every unanswered action is reported, with its reason
            self.failures.append(f"{self.name} {kind}: {type(err).__name__}: {str(err).splitlines()[0][:200]}")

    def figure(self, text: str):
        return lambda ms: self.page.wait_for_function(FIGURE_SHOWS, arg=text, timeout=ms)

    def message(self, text: str):
        return lambda ms: self.page.locator(".wb-message").get_by_text(text).first.wait_for(timeout=ms)

    def open(self, slug: str):
        """Request ``slug``; the answer awaited is its figure, not the browser's load event.

        (The load event also waits for every script and stylesheet, which the
        server sends from the same busy event loop: with eight sessions
        opening at once on a loaded machine it came after the figure's own deadline.)
        """
        return lambda: self.page.goto(f"{self.url}/{slug}", timeout=ANSWER_S * 1000, wait_until="commit")

    async def goto(self, slug: str, text: str) -> None:
        await self.timed(f"load {slug.split('?')[0]}", self.open(slug), self.figure(text))


async def _enter(page, widget: str, value: str) -> None:
    await page.locator(f"{widget} input").fill(value)
    await page.locator(f"{widget} input").press("Enter")


async def trainer(s: Session) -> None:
    """Train a small SAE (the SAE page's first visit), then switch features until time is up."""
    await s.timed("train sae", s.open(SAE_URL), s.figure("DFA by source position"))
    i = 0
    while s.running():
        i += 1
        feature = str(1 + i % 5)
        await s.timed("sae feature", lambda: _enter(s.page, ".wb-feature", feature), s.figure(f"feature {feature}:"))


async def file_loader(s: Session, files: dict[str, Path]) -> None:
    """Alternate a FIFO (refused without blocking) and a large recording (loaded) on the Connectome page.

    Each answer is one the previous round cannot have left: the FIFO's refusal
    clears the status line and the recording's load clears the message, so a
    FIFO round waits for the message, a recording round for the status that
    gives the recording's shape and the figure of the binned recording.
    """
    await s.goto("connectome", "traces of")
    await s.timed("connectome source", lambda: s.page.locator(".wb-source select").select_option("file"),
                  lambda ms: s.page.locator(".wb-path input").wait_for(timeout=ms))
    i = 0
    while s.running() or i < 2:  # one of each at least, however long the first page load took
        which = "fifo" if i % 2 == 0 else "big"
        i += 1

        async def load(path=files[which].name) -> None:
            await s.page.locator(".wb-path input").fill(path)
            await s.page.locator(".wb-path input").press("Enter")
            await s.page.locator(".wb-load button").click()

        async def loaded(ms: float) -> None:
            await s.page.locator(".wb-status").get_by_text("200 neurons x 40000 frames").first.wait_for(timeout=ms)
            await s.figure(BIG_FIGURE)(ms)

        wait = s.message("neither a regular file nor a folder") if which == "fifo" else loaded
        await s.timed(f"connectome file {which}", load, wait)


async def browser_user(s: Session, start: int = 0) -> None:
    """Cycle pages from the ``start``-th: load, wait for the figure, one interaction, wait for its answer."""
    i = start
    while s.running():
        page = ("overview", "collapse", "connectome", "spectra")[i % 4]
        i += 1
        if page == "overview":
            await s.goto("overview", "Induction score:")
        elif page == "collapse":
            await s.goto("collapse", "Gram vs")
            layers = await s.page.locator(".wb-layer select option").all_inner_texts()
            if layers:
                layer = layers[i % len(layers)]
                await s.timed("collapse layer", lambda: s.page.locator(".wb-layer select").select_option(layer),
                              s.figure(f"NC metrics at {layer}"))
        elif page == "connectome":
            await s.goto("connectome", "traces of")
        else:
            await s.goto("spectra?model=tiny-attn-2l&n_seq=2&seq_len=16", "alpha of tiny-attn-2l")
            await s.timed("spectra bad layer", lambda: _enter(s.page, ".wb-layer", "9"),
                          s.message("layer: expected a layer in [0, 2)"))


async def _run(url: str, files: dict[str, Path], sessions: int, seconds: float) -> list[Session]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        stop_at = time.monotonic() + seconds
        users = []
        for i in range(sessions):
            context = await browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(ANSWER_S * 1000)
            users.append(Session(f"session{i}", await context.new_page(), url, stop_at))
        roles = [trainer(users[0]), file_loader(users[1], files)] + [browser_user(u, i) for i, u in enumerate(users[2:])]
        await asyncio.gather(*roles[:sessions])
        await browser.close()
    return users


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_s": round(float(np.percentile(values, 50)), 3),
            "p95_s": round(float(np.percentile(values, 95)), 3), "max_s": round(max(values), 3)}


def server_errors(log_path: Path) -> list[str]:
    """Each ERROR line or traceback in the server's log, with the 25 lines that follow it."""
    lines = log_path.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if "Traceback" in line or " ERROR " in line or line.startswith("ERROR")]
    return ["\n".join(lines[i:i + 25]) for i in starts]


def run_load(sessions: int = 8, seconds: float = 60.0) -> dict:
    """Run the load; returns the report (see the module docstring)."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cache, data = Path(tmp) / "cache", Path(tmp) / "data"
        cache.mkdir()
        files = make_data_dir(data)
        with serve(cache, data) as (url, proc, log_path):
            start = time.perf_counter()
            users = asyncio.run(_run(url, files, sessions, seconds))
            wall = time.perf_counter() - start
            alive = proc.poll() is None
            errors = server_errors(log_path)
    samples = [item for u in users for item in u.samples]
    kinds = sorted({kind for kind, _ in samples})
    interactions = [t for kind, t in samples if not kind.startswith(("load", "train"))]
    return {
        "sessions": sessions, "seconds": seconds, "wall_s": round(wall, 1), "answer_deadline_s": ANSWER_S,
        "actions": len(samples), "interaction": _percentiles(interactions),
        "page_load": _percentiles([t for kind, t in samples if kind.startswith("load")]),
        "by_kind": {kind: _percentiles([t for k, t in samples if k == kind]) for kind in kinds},
        "failures": [f for u in users for f in u.failures],
        "console_errors": [f"{u.name}: {e}" for u in users for e in u.errors],
        "outside_requests": [r for u in users for r in u.outside],
        "server_errors": errors, "server_alive": alive,
        "machine": {"cpus": os.cpu_count(), "load_average_1min": {"before": round(load_before, 2),
                                                                  "after": round(os.getloadavg()[0], 2)}},
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    report = run_load(args.sessions, args.seconds)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["load"] = report
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(json.dumps(report, indent=1))
    bad = report["failures"] or report["console_errors"] or report["server_errors"] or report["outside_requests"]
    return 1 if bad or not report["server_alive"] else 0


if __name__ == "__main__":
    sys.exit(main())
