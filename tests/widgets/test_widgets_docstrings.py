"""Every docstring example in the UI package (pages, jobs, notebook controls) runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import widgets

MODULES = sorted(info.name for info in pkgutil.walk_packages(widgets.__path__, "widgets."))


def test_the_ui_modules_are_collected():
    assert {"widgets.pages.sae", "widgets.pages.sae_jobs", "widgets.pages.collapse"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))  # examples never touch the user's cache
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
