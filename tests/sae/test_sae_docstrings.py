"""Every docstring example in workbench.sae, its generator and its figures runs and shows what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import workbench.sae

# Every module of the package (new ones join automatically), its generator and its figures.
MODULES = ["workbench.sae", *sorted(f"workbench.sae.{m.name}" for m in pkgutil.iter_modules(workbench.sae.__path__)),
           "workbench.data.synthetic_sae", "workbench.figures.sae", "workbench.figures.sae_steering"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
