"""Every docstring example in the core (models, hooks, data, figures, device, CLI) runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["workbench", "workbench.device", "workbench.cli", "workbench.data", "workbench.data.corpus",
           "workbench.models", "workbench.models.zoo", "workbench.models.tokenizer", "workbench.models.diagnostics",
           "workbench.models.train_tiny", "workbench.models.model_card", "workbench.hooks", "workbench.hooks.cache",
           "workbench.hooks.keys", "workbench.hooks.dims", "workbench.hooks.store", "workbench.hooks.validate",
           "workbench.figures", "workbench.figures.template", "workbench.figures.export", "workbench.figures.models"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))  # examples never touch the user's cache
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
