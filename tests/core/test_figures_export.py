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


@pytest.mark.parametrize("kwargs", [dict(scale=float("nan")), dict(scale=float("inf")), dict(width=0),
                                    dict(width=-5), dict(height=float("nan")), dict(width=2.5)])
def test_bad_sizes_are_rejected_before_writing(figure, tmp_path, kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"{name}: expected a positive"):
        export(figure, tmp_path / "fig.png", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_keeps_the_old_figure(figure, tmp_path, monkeypatch):
    import kaleido

    old = export(figure, tmp_path / "fig.svg")
    before = old.read_bytes()

    def crash_half_way(fig, path, **_):
        with open(path, "wb") as f:
            f.write(b"<svg trunc")
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(kaleido, "write_fig_sync", crash_half_way)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        export(figure, old)
    assert old.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["fig.svg"]


def test_a_folder_in_the_way_is_named_before_rendering(figure, tmp_path, monkeypatch):
    import kaleido

    (tmp_path / "fig.svg").mkdir()
    monkeypatch.setattr(kaleido, "write_fig_sync", lambda *a, **k: pytest.fail("rendered for nothing"))
    with pytest.raises(ValueError, match="path: expected a file, got the folder"):
        export(figure, tmp_path / "fig.svg")
    assert [p.name for p in tmp_path.iterdir()] == ["fig.svg"]
