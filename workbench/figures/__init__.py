"""Plotly figure builders and paper export.

Every builder takes an xarray result and returns a ``plotly.graph_objects.Figure``
in the paper template; :func:`export` writes it to PDF, SVG or PNG.

The figure standard
-------------------
Every public builder (a public function of a module here, annotated as
returning ``go.Figure``) meets these rules. ``tests/core/test_figure_standard.py``
discovers the builders (:func:`workbench.figures.gallery.builders`), builds
each on a small real input (:data:`workbench.figures.gallery.INPUTS`; a
builder without one fails) and checks the rules marked (t);
``scripts/contact_sheet.py`` exports them all to PNG for the rest.

1. Every visible axis has a title, with its units where there are units
   ("time (s)", "held-out loss (nats/token)"). (t)
2. Every colour scale has a colorbar with a title that says what the colour
   is; panels sharing one scale (same colours, fixed ``zmin``/``zmax``) may
   share one colorbar. (t)
3. Discrete axes (layer, head, rank, class, component, k, restart, epoch,
   index, neuron, feature) have integer ticks (``dtick`` >= 1 from an integer
   ``tick0``, or integer ``tickvals``) or category labels: never a tick at
   layer 1.5. (t)
4. Token axes (titles starting "token", "source", "destination") show the
   tokens' text, not their positions. (t)
5. Log axes label decades only (``dtick=1``, as powers of ten) or, over less
   than a few decades, values 1, 2 and 5 times a power of ten
   (:func:`~workbench.figures.template.log_ticks`); never plotly's bare
   minor-tick digits ("2, 5, 2, 0.1"). (t)
6. Text is at least 8 pt when the figure is printed at the paper template's
   column width (:func:`~workbench.figures.template.paper_points`): the
   template's 11 px prints at 8.25 pt. (t)
7. A fitted curve is drawn only over at least 3 points, and says how many in
   its trace's ``meta["fit_points"]`` (traces named "fit..." or "power law"). (t)
8. Subplot titles are the titles: a figure title above them gets a top
   margin that holds both (no collision). (t) No annotation overlaps
   another or the data it labels.
9. Legends stay inside the figure and do not cover data; nothing is
   clipped at the figure's edges.
10. A result the analysis marks as unreliable (e.g. a power-law fit outside
    WeightWatcher's trustworthy range) is drawn so it reads as such: greyed,
    hatched or labelled, never like a trustworthy one.

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
