"""Paper export writes valid PDF, SVG and PNG files through the system Chromium."""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET

import plotly.graph_objects as go
import pytest

from workbench.figures import PALETTE, export, new_figure


@pytest.fixture(scope="module")
def figure():
    fig = new_figure(title="loss vs step")
    fig.add_scatter(y=[3.0, 2.0, 1.5, 1.2], name="train")
    fig.add_scatter(y=[3.1, 2.2, 1.8, 1.7], name="held-out")
    return fig


def test_pdf_has_a_header_and_a_page_box_of_the_requested_size(figure, tmp_path):
    out = export(figure, tmp_path / "fig.pdf", width=400, height=300)
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]
    box = re.search(rb"/MediaBox\s*\[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    assert box, "no page box"
    x0, y0, x1, y1 = map(float, box.groups())
    # CSS px -> pt is 0.75; allow for rounding by the PDF writer
    assert abs((x1 - x0) - 400 * 0.75) < 2 and abs((y1 - y0) - 300 * 0.75) < 2


def test_svg_parses_and_uses_the_palette(figure, tmp_path):
    out = export(figure, tmp_path / "fig.svg", width=350, height=250)
    root = ET.fromstring(out.read_text())
    assert root.tag.endswith("svg")
    assert float(root.attrib["width"]) == 350 and float(root.attrib["height"]) == 250
    text = out.read_text().lower()
    assert PALETTE[0].lower() in text or "rgb(0, 114, 178)" in text


def test_png_has_the_requested_pixel_size(figure, tmp_path):
    out = export(figure, tmp_path / "fig.png", width=320, height=200, scale=2)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (640, 400)


def test_export_leaves_the_figure_unchanged(figure, tmp_path):
    before = figure.to_json()
    export(figure, tmp_path / "same.svg")
    assert figure.to_json() == before


def test_bad_export_calls_get_clear_errors(figure, tmp_path):
    with pytest.raises(ValueError, match="path: expected a file ending in one of"):
        export(figure, tmp_path / "fig.jpg")
    with pytest.raises(ValueError, match="does not exist"):
        export(figure, tmp_path / "missing" / "fig.pdf")
    with pytest.raises(TypeError, match="plotly.graph_objects.Figure"):
        export({"data": []}, tmp_path / "fig.pdf")
    with pytest.raises(ValueError, match="scale"):
        export(figure, tmp_path / "fig.png", scale=0)
    assert list(tmp_path.iterdir()) == []  # no partial files left behind
