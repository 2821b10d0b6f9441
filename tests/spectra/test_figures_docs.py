"""Figure builders return paper-styled figures (their docstring examples run in test_spectra_docstrings.py)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.figures import spectra as figs
from workbench.figures.template import FONT_PX
from workbench.spectra import layer_spectra, rank_metrics, spectrum, truncation_curve


def test_builders(attn_model):
    ds = layer_spectra(attn_model, progress=False)
    G = np.random.default_rng(0).standard_normal((200, 80))
    built = [figs.esd_figure(spectrum(G), rank_metrics(G)), figs.metric_heatmap(ds, "stable_rank"),
             figs.head_spectra_figure(ds, "qk", layer=1),
             figs.truncation_figure({"svd": truncation_curve(G)})]
    for fig in built:
        assert fig.layout.template.layout.font.size == FONT_PX  # 8.25 pt printed at column width
    assert len(built[2].data) == attn_model.cfg.n_heads
    with pytest.raises(ValueError, match="metric|missing"):
        figs.metric_heatmap(ds, "no_such_metric")
