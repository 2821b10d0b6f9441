"""The benchmark harness's statistics, interleaving and agreement logic, and the README table generator."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _load("bench_harness", ROOT / "benchmarks" / "_harness.py")
bench_table = _load("bench_table", ROOT / "scripts" / "bench_table.py")


def test_stats_and_paired_ratio():
    assert harness.stats([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0, "n": 4}
    runs = {"ours": [{"seconds": s} for s in (1.0, 2.0, 4.0, 1.0, 1.0)],
            "reference": [{"seconds": s} for s in (3.0, 2.0, 2.0, 5.0, 1.0)]}
    out = harness.summary(runs, "ours", "reference")
    # ratios are paired by round (reference / ours): 3, 1, 0.5, 5, 1
    assert out["ratio"] == {"min": 0.5, "median": 1.0, "max": 5.0, "n": 5}
    assert out["ours_seconds"]["median"] == 1.0 and out["reference_seconds"]["median"] == 2.0
    with pytest.raises(ValueError, match="values"):
        harness.stats([])


def test_interleave_alternates_sides_after_untimed_warmup():
    calls = []
    sides = {"a": lambda: calls.append("a") or 0.5, "b": lambda: calls.append("b") or {"seconds": 2.0, "x": 1}}
    runs = harness.interleave(sides, repeats=5, warmup=1)
    assert calls == ["a", "b"] * 6  # one warm-up round, then five alternating rounds
    assert [r["seconds"] for r in runs["a"]] == [0.5] * 5
    assert runs["b"][0] == {"seconds": 2.0, "x": 1}
    timed = harness.interleave({"c": lambda: None, "d": lambda: {}}, repeats=5, warmup=0)
    assert all(r["seconds"] >= 0 for r in timed["c"] + timed["d"])
    with pytest.raises(ValueError, match="at least 5"):
        harness.interleave(sides, repeats=4)


def test_assert_agreement_passes_within_and_fails_beyond_tolerance():
    ours = {"nc1": 2.0 * (1 + 5e-11), "m": np.array([1.0, -3.0])}
    ref = {"nc1": 2.0, "m": np.array([1.0, -3.0 * (1 + 2e-11)])}
    record = harness.assert_agreement("x", ours, ref, rtol=1e-10)
    assert record["passed"] and record["worst"] == "nc1"
    assert math.isclose(record["max_relative_disagreement"], 5e-11, rel_tol=1e-4)
    with pytest.raises(harness.Disagreement, match="nc1"):
        harness.assert_agreement("x", ours, ref, rtol=1e-11)
    with pytest.raises(harness.Disagreement):  # NaN never agrees
        harness.assert_agreement("x", [1.0, np.nan], [1.0, np.nan], rtol=1.0)
    with pytest.raises(harness.Disagreement, match="different quantities"):
        harness.assert_agreement("x", {"a": 1.0}, {"b": 1.0}, rtol=1.0)
    with pytest.raises(harness.Disagreement, match="shape"):
        harness.assert_agreement("x", np.ones(2), np.ones(3), rtol=1.0)
    assert harness.assert_agreement("x", 0.0, 1e-7, rtol=0.0, atol=1e-6)["passed"]
    with pytest.raises(ValueError, match="rtol"):
        harness.assert_agreement("x", 1.0, 1.0, rtol=-1.0)


def _report(monkeypatch, quick=True):
    monkeypatch.setattr(harness, "hardware", lambda: {"cpu_model": "test", "cpu_count": 1})
    # the real one limits this process's thread pools for good: not in the test suite's process
    monkeypatch.setattr(harness, "configure_threads", lambda threads: {"requested": threads})
    return harness.Report("demo", threads=1, quick=quick, argv=["--quick"])


def test_report_writes_json_then_exits_nonzero_on_disagreement(tmp_path, monkeypatch):
    report = _report(monkeypatch)
    assert report.data["threads"]["requested"] == 1
    assert report.check("close", 1.0, 1.0 + 1e-12, rtol=1e-10)
    runs = {"ours": [{"seconds": 1.0}] * 5, "reference": [{"seconds": 3.0}] * 5}
    row = report.row("demo row", ours="ours", reference="ref config", runs=runs, target=2.0)
    assert row["ratio"]["median"] == 3.0 and row["agreement"][0]["name"] == "close"
    path = report.write(tmp_path / "ok.json")
    data = json.loads(path.read_text())
    assert data["agreement_passed"] and len(data["load_average"]["after"]) == 3
    assert data["rows"][0]["reference"] == "ref config"

    report = _report(monkeypatch)
    assert not report.check("far", 1.0, 2.0, rtol=1e-10)
    with pytest.raises(SystemExit, match="far"):
        report.write(tmp_path / "bad.json")
    assert json.loads((tmp_path / "bad.json").read_text())["agreement_passed"] is False


def test_bench_table_from_results_and_readme_markers(tmp_path, monkeypatch):
    report = _report(monkeypatch, quick=False)
    report.check("close", 1.0, 1.0, rtol=1e-10)
    runs = {"ours": [{"seconds": 1.0}] * 5, "reference": [{"seconds": 2.5}] * 5}
    report.row("demo row", ours="ours", reference="NumPy | float32", runs=runs, target=2.0)
    report.write(tmp_path / "demo.json")
    (tmp_path / "old.json").write_text(json.dumps({"speedup": 60}))
    (tmp_path / "mutants.json").write_text("{}")
    text = bench_table.table(tmp_path)
    lines = text.splitlines()
    assert len(lines) == 4  # header, rule, the demo row, the old file
    assert "2.50x (2.50-2.50), 5" in lines[2] and "NumPy \\| float32" in lines[2] and ">= 2x" in lines[2]
    assert "ok: worst 0.0e+00" in lines[2] and "test x1" in lines[2]
    assert "not yet re-measured" in lines[3] and "60" not in lines[3]
    readme = f"intro\n{bench_table.START}\nhand-typed\n{bench_table.END}\nafter\n"
    assert bench_table.rewrite(readme, text) == f"intro\n{bench_table.START}\n{text}\n{bench_table.END}\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        bench_table.rewrite("no markers", text)
