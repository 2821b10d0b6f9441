"""Every docstring example in workbench.collapse and its figures runs and prints what it shows."""

from __future__ import annotations

import pytest
from docstring_harness import area_modules, run_examples

# Every module of the package (new ones join automatically) and its figures.
MODULES = area_modules("collapse")
NO_EXAMPLES = {
    "workbench.collapse._validate": "private input checks; their errors are pinned by test_collapse_edge_cases.py",
    "workbench.collapse.geometry": "private helpers behind nc_metrics and NCAccumulator, whose examples run them",
    "workbench.collapse._ufm_solver": "private optimiser behind train_ufm, whose examples run it",
    "workbench.collapse.tiled": "the tiled computation behind TiledNCAccumulator.result, whose examples run it",
}


def test_the_collapse_modules_are_collected():
    assert {"workbench.collapse", "workbench.collapse.theory", "workbench.figures.collapse"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    run_examples(name, NO_EXAMPLES)
