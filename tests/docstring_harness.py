"""Shared by the docstring harnesses (tests/*/test_*_docstrings.py): collect modules, run their examples.

Each harness owns a set of modules and runs every docstring example in them.
Modules are collected by walking packages (a new module joins its harness
automatically), and each run must attempt at least one example: a module
without examples is listed by its harness with the reason, so a new module
that has none fails until someone decides.

Ownership (checked by tests/core/test_core_docstrings.py: every module of
``workbench`` and ``widgets`` is run by exactly one harness):

* area ``X`` in :data:`AREAS`: ``workbench.X`` and its submodules,
  ``workbench.figures.X`` and ``workbench.data.synthetic_X``, in
  ``tests/X/test_X_docstrings.py``;
* core: every other ``workbench`` module, in ``tests/core/test_core_docstrings.py``;
* widgets: every ``widgets`` module, in ``tests/widgets/test_widgets_docstrings.py``.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

AREAS = ("sae", "connectome", "collapse", "spectra")
#: Figure modules an area's harness runs besides ``workbench.figures.<area>``.
AREA_FIGURES = {"connectome": ("workbench.figures.communities", "workbench.figures.traces"), "sae": ("workbench.figures.sae_steering",)}


def package_modules(package: str) -> list[str]:
    """``package`` and every module below it, sorted."""
    pkg = importlib.import_module(package)
    return sorted([package, *(info.name for info in pkgutil.walk_packages(pkg.__path__, f"{package}."))])


def area_modules(area: str) -> list[str]:
    """The modules the harness of ``area`` owns (its package, its figures, its synthetic data)."""
    extra = [f"workbench.figures.{area}", *AREA_FIGURES.get(area, ()), f"workbench.data.synthetic_{area}"]
    return package_modules(f"workbench.{area}") + [m for m in extra if importlib.util.find_spec(m) is not None]


def core_modules() -> list[str]:
    """Every ``workbench`` module no area harness owns."""
    owned = {m for area in AREAS for m in area_modules(area)}
    return [m for m in package_modules("workbench") if m not in owned]


def run_examples(name: str, no_examples: dict[str, str], flags: int = doctest.ELLIPSIS) -> None:
    """Run the docstring examples of module ``name``; all must pass and at least one must run.

    ``no_examples`` maps the modules known to have no examples to the reason;
    those must indeed have none (an example added later takes them off the list).
    """
    result = doctest.testmod(importlib.import_module(name), optionflags=flags)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed"
    if name in no_examples:
        assert result.attempted == 0, f"{name} now has examples: drop it from the no-examples list"
    else:
        assert result.attempted > 0, f"{name} has no docstring examples: add some, or list it with a reason"
