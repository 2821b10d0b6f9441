"""Power-law fits outside WeightWatcher's trustworthy range are flagged, in the tables and in the figures.

WeightWatcher's README throws away fits with alpha > 8 (the ESD is not heavy
tailed) and its ``MIN_NUM_EVALS`` is 10; the thresholds are pinned here.
"""

from __future__ import annotations

import numpy as np
import pytest

from workbench.figures.spectra import esd_figure, metric_heatmap
from workbench.spectra import layer_spectra, rank_metrics, spectrum
from workbench.spectra.powerlaw import MAX_RELIABLE_ALPHA, MIN_TAIL, fit_reliability, power_law_fit


def test_thresholds_are_weightwatchers():
    assert (MAX_RELIABLE_ALPHA, MIN_TAIL) == (8.0, 10)
    assert fit_reliability(8.0, 10) == (True, "")
    assert not fit_reliability(8.01, 10)[0] and "> 8" in fit_reliability(8.01, 10)[1]
    assert not fit_reliability(3.0, 9)[0] and "9 eigenvalues" in fit_reliability(3.0, 9)[1]
    assert fit_reliability(float("nan"), 0) == (False, "no power-law fit")


def test_a_planted_heavy_tail_is_reliable_and_a_steep_short_one_is_not():
    rng = np.random.default_rng(0)
    heavy = power_law_fit(rng.pareto(2.0, 4000) + 1.0)  # density exponent 3 over thousands of points
    assert heavy["reliable"] and abs(heavy["alpha"] - 3.0) < 0.2
    steep = power_law_fit(rng.pareto(11.0, 400) + 1.0)  # density exponent 12: not heavy tailed
    assert steep["alpha"] > MAX_RELIABLE_ALPHA and not steep["reliable"]


def test_tables_flag_the_tiny_models_W_V(attn_model):
    ds = layer_spectra(attn_model, kinds=("weights",), per_head=False, progress=False, device="cpu")
    row = ds.sel(matrix="blocks.0.attn.W_V")
    assert float(row.alpha) > MAX_RELIABLE_ALPHA  # the 19.5 notebook 00 printed without comment
    assert not bool(row.alpha_reliable) and "not heavy tailed" in str(row.alpha_reason.values)
    fit = power_law_fit(row.singular_value.values ** 2)
    assert int(row.n_tail) == fit["n_tail"]
    assert ds.alpha_reliable.dtype == bool
    expected = [fit_reliability(a, n)[0] for a, n in zip(ds.alpha.values, ds.n_tail.values)]
    assert ds.alpha_reliable.values.tolist() == expected


def test_rank_metrics_carry_the_flag():
    G = np.random.default_rng(0).standard_normal((400, 100))
    m = rank_metrics(G)
    assert {"n_tail", "alpha_reliable", "alpha_reason"} <= set(m.data_vars)
    assert bool(m.alpha_reliable) == fit_reliability(float(m.alpha), int(m.n_tail))[0]


def test_figures_grey_out_an_unreliable_fit(attn_model):
    ds = layer_spectra(attn_model, kinds=("weights",), per_head=False, progress=False, device="cpu")
    i = list(ds.matrix.values).index("blocks.0.attn.W_V")
    spec = ds.singular_value.isel(matrix=i).dropna("index")
    spec = spec.assign_attrs(rows=int(ds.rows[i]), cols=int(ds.cols[i]))
    fig = esd_figure(spec, rank_metrics(spec))
    fit = [t for t in fig.data if "power law" in t.name]
    assert fit and "unreliable" in fit[0].name and fit[0].line.color == "#999999"
    assert fig.layout.meta["alpha_reliable"] is False
    assert any("unreliable fit" in a.text for a in fig.layout.annotations)
    G = np.random.default_rng(0).standard_normal((400, 100))
    good = esd_figure(spectrum(G), rank_metrics(G))
    assert good.layout.meta["alpha_reliable"] is bool(rank_metrics(G).alpha_reliable)
    heat = metric_heatmap(ds, "alpha")
    z = np.asarray(heat.data[0].z, dtype=float)
    kinds, layers = list(heat.data[0].y), list(heat.data[0].x)
    assert np.isnan(z[kinds.index("v"), layers.index(0)])  # off the colour scale
    crossed = [t for t in heat.data if t.type == "scatter"]
    assert crossed and (0, "v") in list(zip(crossed[0].x, crossed[0].y))
    assert metric_heatmap(ds, "stable_rank").data[0].z is not None and len(metric_heatmap(ds, "stable_rank").data) == 1


@pytest.mark.parametrize("alpha, n_tail", [(2.5, 50), (9.0, 50), (3.0, 5)])
def test_reliability_matches_the_rules(alpha, n_tail):
    assert fit_reliability(alpha, n_tail)[0] == (alpha <= 8 and n_tail >= 10)
