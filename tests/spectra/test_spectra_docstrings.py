"""Every docstring example in workbench.spectra and its figures runs and prints what it shows."""

from __future__ import annotations

import doctest

import pytest
from docstring_harness import area_modules, run_examples

# Every module of the package (new ones join automatically) and its figures.
MODULES = area_modules("spectra")
NO_EXAMPLES = {
    "workbench.spectra._validate": "private input checks; their errors are pinned by test_bad_input.py",
}


def test_the_spectra_modules_are_collected():
    assert {"workbench.spectra", "workbench.spectra.metrics", "workbench.spectra.model_truncation",
            "workbench.figures.spectra"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    run_examples(name, NO_EXAMPLES, doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
