"""Static export of plotly figures to PDF, SVG and PNG for papers.

Rendering goes through kaleido driving the *system* Chromium (never a browser
that kaleido would download), with the plotly.js bundled in the plotly package
and MathJax off, so export works on air-gapped machines.
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
import tempfile
from pathlib import Path

import plotly.graph_objects as go

from workbench.figures.template import DEFAULT_HEIGHT_PX, FULL_WIDTH_PX, apply_paper_style

FORMATS = ("pdf", "svg", "png")
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str:
    """Path of the system Chromium used for static export.

    ``BROWSER_PATH`` overrides the search of ``PATH``.

    Raises
    ------
    RuntimeError
        When no Chromium is installed; the message says how to install one.

    Examples
    --------
    >>> find_chromium().endswith(("chromium", "chrome", "chromium-browser", "google-chrome", "google-chrome-stable"))
    True
    """
    override = os.environ.get("BROWSER_PATH")
    if override:
        if not Path(override).is_file():
            raise RuntimeError(f"BROWSER_PATH={override!r} is not a file")
        return override
    for name in _CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(
        "static figure export needs a system Chromium and none is on PATH: install it with "
        "'apt-get install chromium' (scripts/run.sh setup does this) or set BROWSER_PATH"
    )


def _plotly_js_path() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise RuntimeError(f"the plotly package ships no plotly.min.js at {path}")
    return path


def export(fig: go.Figure, path: str | os.PathLike, *, width: int | None = None, height: int | None = None,
           scale: float = 1.0) -> Path:
    """Write ``fig`` to ``path`` as PDF, SVG or PNG, chosen by the suffix.

    The paper template is applied to a copy; ``fig`` is not changed. The file
    is written to a temporary name beside ``path`` and renamed, so a failed
    export never leaves a truncated figure behind.

    Parameters
    ----------
    fig : plotly.graph_objects.Figure
    path : str or PathLike
        Output file; its suffix (``.pdf``, ``.svg``, ``.png``) picks the format.
    width, height : int, optional
        Size in CSS pixels (1 px = 0.75 pt in PDF); default: the figure's own
        size, else full width x 260 px.
    scale : float
        Pixel scale for PNG (2 gives a 2x raster).

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> import plotly.graph_objects as go, tempfile, os
    >>> out = export(go.Figure(go.Scatter(y=[1, 3, 2])), os.path.join(tempfile.mkdtemp(), "f.svg"))
    >>> out.read_text()[:4]
    '<svg'
    """
    if not isinstance(fig, go.Figure):
        raise TypeError(f"fig: expected a plotly.graph_objects.Figure, got {type(fig).__name__}")
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"path: expected a file ending in one of {['.' + f for f in FORMATS]}, got {str(path)!r}")
    if not path.parent.exists():
        raise ValueError(f"path: the folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"path: expected a file, got the folder {str(path)!r}")
    if not (isinstance(scale, numbers.Real) and 0 < scale < math.inf):
        raise ValueError(f"scale: expected a positive finite number, got {scale!r}")
    for name, size in (("width", width), ("height", height)):
        if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1):
            raise ValueError(f"{name}: expected a positive int (CSS pixels), got {size!r}")

    styled = apply_paper_style(go.Figure(fig))
    width = width or styled.layout.width or FULL_WIDTH_PX
    height = height or styled.layout.height or DEFAULT_HEIGHT_PX
    os.environ.setdefault("BROWSER_PATH", find_chromium())

    import kaleido

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=f".{fmt}", dir=path.parent)
    os.close(fd)
    try:
        kaleido.write_fig_sync(
            styled,
            path=tmp_name,
            opts={"format": fmt, "width": int(width), "height": int(height), "scale": float(scale)},
            kopts={"mathjax": False, "plotlyjs": str(_plotly_js_path())},
        )
        if os.path.getsize(tmp_name) == 0:
            raise RuntimeError(f"kaleido wrote an empty {fmt} file for {path}")
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; a figure is meant to be shared
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path
