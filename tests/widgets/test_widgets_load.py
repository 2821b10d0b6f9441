"""One server, 8 concurrent browser sessions for 60 s: nothing fails, nothing leaves 127.0.0.1 (issue 16).

The load is ``benchmarks/bench_dashboard_load.py`` (which also reports p50/p95
latency): one session trains an SAE, one loads a FIFO and a large recording
in turn, six cycle over the other pages with one interaction each. Latency is
reported there, never asserted here.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

# Opt-in: on the shared 2-core machine (load average 15-30) eight first visits at once take 230-250 s to their first
# figure, so one run takes 6-10 minutes, far over the ~2.5 minutes this test may add to the suite (issue 16).
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(os.environ.get("WORKBENCH_LOAD_TEST") != "1",
                                 reason="the 8-session load test runs with WORKBENCH_LOAD_TEST=1 (or bash scripts/run.sh "
                                        "bench dashboard_load): 6-10 min on a loaded 2-core machine, see issue 16")]
pytest.importorskip("playwright.async_api")

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = int(os.environ.get("WORKBENCH_LOAD_SESSIONS", "8"))
SECONDS = float(os.environ.get("WORKBENCH_LOAD_SECONDS", "60"))
# WORKBENCH_LOAD_ANSWER_S sets the per-answer wait (benchmarks/bench_dashboard_load.py, default 420 s).


def _load_module():
    spec = importlib.util.spec_from_file_location("bench_dashboard_load", ROOT / "benchmarks" / "bench_dashboard_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eight_sessions_for_a_minute_all_answered_no_errors():
    load = _load_module()
    if not Path(load.CHROMIUM).exists():
        pytest.skip(f"no system Chromium at {load.CHROMIUM}")
    report = load.run_load(SESSIONS, SECONDS)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "dashboard-load.json").write_text(json.dumps(report, indent=1))
    assert report["server_alive"]
    assert report["failures"] == [], report["failures"]
    assert report["server_errors"] == [], report["server_errors"]
    assert report["console_errors"] == [], report["console_errors"][:10]
    assert report["outside_requests"] == [], sorted(set(report["outside_requests"]))[:10]
    kinds = report["by_kind"]
    for kind in ("train sae", "load overview", "load collapse", "collapse layer", "load spectra",
                 "connectome file fifo", "connectome file big"):
        assert kinds.get(kind, {}).get("n", 0) >= 1, f"no answered {kind!r} in {SECONDS} s: {sorted(kinds)}"
