"""Every docstring example in the UI package (pages, jobs, notebook controls) runs and prints what it shows."""

from __future__ import annotations

import pytest
from docstring_harness import package_modules, run_examples

MODULES = package_modules("widgets")
NO_EXAMPLES = {
    "widgets": "package docstring only; nothing to run",
    "widgets.pages": "package docstring only; nothing to run",
    "widgets.pages.sae_layout": "layout builders that need a live SAEPage; "
                                "test_widgets_sae_page.py drives them through the page",
}


def test_the_ui_modules_are_collected():
    assert {"widgets.pages.sae", "widgets.pages.sae_jobs", "widgets.pages.collapse", "widgets.notebook"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))  # examples never touch the user's cache
    monkeypatch.chdir(tmp_path)
    run_examples(name, NO_EXAMPLES)
