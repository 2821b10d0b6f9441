"""Plotly figure builders and paper export.

Every builder takes an xarray result and returns a ``plotly.graph_objects.Figure``
in the paper template; :func:`export` writes it to PDF, SVG or PNG.

Examples
--------
>>> from workbench.figures import new_figure, PALETTE
>>> fig = new_figure(title="demo")
>>> len(PALETTE)
8
"""

from workbench.figures.export import FORMATS, export, find_chromium
from workbench.figures.template import (
    DIVERGING,
    FULL_WIDTH_PX,
    PALETTE,
    SEQUENTIAL,
    SINGLE_COLUMN_PX,
    TEMPLATE_NAME,
    apply_paper_style,
    new_figure,
)

__all__ = [
    "DIVERGING",
    "FORMATS",
    "FULL_WIDTH_PX",
    "PALETTE",
    "SEQUENTIAL",
    "SINGLE_COLUMN_PX",
    "TEMPLATE_NAME",
    "apply_paper_style",
    "export",
    "find_chromium",
    "new_figure",
]
