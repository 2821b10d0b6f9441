"""Every docstring example in workbench.sae, its generator and its figures runs and shows what it says."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["workbench.sae", "workbench.sae.attribution", "workbench.sae.batchtopk", "workbench.sae.config",
           "workbench.sae.evaluation", "workbench.sae.features", "workbench.sae.io", "workbench.sae.jumprelu",
           "workbench.sae.model", "workbench.sae.registry", "workbench.sae.source", "workbench.sae.standard",
           "workbench.sae.topk", "workbench.sae.training", "workbench.sae._sparse_topk", "workbench.sae._validate",
           "workbench.data.synthetic_sae", "workbench.figures.sae"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
