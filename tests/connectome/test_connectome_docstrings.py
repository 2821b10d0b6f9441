"""Every docstring example in workbench.connectome, its generator and its figures runs and shows what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import workbench.connectome

# Every module of the package (new ones join automatically), its generator and its figures.
MODULES = ["workbench.connectome",
           *sorted(f"workbench.connectome.{m.name}" for m in pkgutil.iter_modules(workbench.connectome.__path__)),
           "workbench.data.synthetic_connectome", "workbench.figures.connectome", "workbench.figures.communities",
           "workbench.figures.traces"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
