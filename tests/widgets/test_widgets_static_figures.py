"""Figures of an executed notebook carry a static PNG beside the interactive figure, so GitHub,
nbviewer and ``jupyter nbconvert --to html`` show them without JavaScript."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[2]
PLOTLY_MIME = "application/vnd.plotly.v1+json"
RED = (255, 0, 0)
# a red bar on white: the static image must show it (a blank or failed render would not)
CELLS = ["import widgets\n\nwidgets.notebook_setup()",
         "import plotly.graph_objects as go\n\n"
         "go.Figure(go.Bar(y=[3, 1, 2], marker_color='rgb(255, 0, 0)'),\n"
         "          layout={'width': 420, 'height': 260, 'title': {'text': 'red bars'}})"]


def _red_pixels(png: bytes) -> tuple[tuple[int, int], int]:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return image.size, sum(1 for pixel in image.getdata() if pixel == RED)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The two-cell notebook executed in a real kernel by nbclient."""
    from nbclient import NotebookClient

    folder = tmp_path_factory.mktemp("static")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env_before) if p)
    try:
        NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        if env_before is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = env_before
    return nb


def test_an_executed_figure_carries_the_interactive_figure_and_a_png(executed):
    (output,) = [o for o in executed.cells[1].outputs if o.output_type in ("execute_result", "display_data")]
    data = output["data"]
    assert PLOTLY_MIME in data and "image/png" in data and "text/html" in data, sorted(data)
    assert [trace["type"] for trace in data[PLOTLY_MIME]["data"]] == ["bar"]
    size, red = _red_pixels(base64.b64decode(data["image/png"]))
    assert size == (420, 260)  # the figure's own size
    assert red > 2000, f"the PNG shows no red bars ({red} red pixels)"


def test_nbconvert_html_shows_the_figure_as_an_image(executed):
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter().from_notebook_node(executed)
    outputs = BeautifulSoup(page, "html.parser").select(".jp-OutputArea-output")
    images = [img for output in outputs for img in output.select("img[src^='data:image/png;base64,']")]
    assert len(images) == 1 and images[0]["alt"] == "red bars"
    size, red = _red_pixels(base64.b64decode(images[0]["src"].split(",", 1)[1]))
    assert size == (420, 260) and red > 2000
    assert "Plotly.newPlot" in page  # the interactive figure is there too, for a browser with JavaScript


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs_and_set_up_static_figures(path):
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [i for i, cell in enumerate(code) if cell.outputs or cell.execution_count is not None] == [], \
        f"{path.name}: clear the outputs before committing (jupyter nbconvert --clear-output --inplace)"
    assert "widgets.notebook_setup()" in code[0].source, f"{path.name}: the first code cell must set figures up"
