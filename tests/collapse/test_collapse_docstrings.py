"""Every docstring example in workbench.collapse and its figures runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["workbench.collapse", "workbench.collapse.accumulator", "workbench.collapse.experiment", "workbench.collapse.extended",
           "workbench.collapse.layerwise", "workbench.collapse.metrics", "workbench.collapse.theory",
           "workbench.collapse.ufm", "workbench.figures.collapse"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
