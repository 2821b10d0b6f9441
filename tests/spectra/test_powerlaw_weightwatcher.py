"""Power-law fits and norm metrics against WeightWatcher on the same matrices."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.spectra import power_law_fit, rank_metrics

from spectra_helpers import weightwatcher_details


def test_pareto_tail_alpha():
    rng = np.random.default_rng(0)
    lam = rng.pareto(2.0, 5000) + 1.0      # density ~ x^-3 above 1
    assert abs(power_law_fit(lam)["alpha"] - 3.0) < 0.2


@pytest.fixture(scope="module")
def matrices():
    rng = np.random.default_rng(7)
    return [rng.standard_normal((300, 120)),       # MP bulk
            rng.standard_t(3, (400, 200)),          # heavy tailed
            rng.standard_t(2.5, (256, 64)) * 0.01,  # heavy tailed, small scale
            rng.standard_normal((64, 16)),          # fewer than 20 eigenvalues: small-sample fit
            rng.standard_t(2.5, (50, 12))]


def test_matches_weightwatcher(matrices):
    details = weightwatcher_details(matrices)
    for W, (_, row) in zip(matrices, details.iterrows()):
        m = rank_metrics(W)
        for ours, theirs in [("stable_rank", "stable_rank"), ("log_norm", "log_norm"),
                             ("log_spectral_norm", "log_spectral_norm"), ("numerical_rank", "matrix_rank")]:
            np.testing.assert_allclose(float(m[ours]), float(row[theirs]), rtol=1e-4, err_msg=ours)
        np.testing.assert_allclose(float(m.alpha), float(row["alpha"]), rtol=1e-3)
        np.testing.assert_allclose(float(m.ks_distance), float(row["D"]), rtol=1e-3)
        np.testing.assert_allclose(float(m.xmin), float(row["xmin"]), rtol=1e-3)
        np.testing.assert_allclose(float(m.alpha_weighted), float(row["alpha_weighted"]), rtol=1e-3)


def test_alpha_on_identical_eigenvalues():
    """The fit alone, fed the eigenvalues WeightWatcher's own fit receives."""
    from weightwatcher.WW_powerlaw import WWFit

    rng = np.random.default_rng(3)
    for lam in (rng.pareto(1.5, 300) + 0.5, np.linalg.svd(rng.standard_t(3, (200, 80)), compute_uv=False) ** 2,
                rng.lognormal(0, 1, 15)):
        theirs = WWFit(lam)
        ours = power_law_fit(lam)
        assert abs(ours["alpha"] - theirs.alpha) < 1e-3 * theirs.alpha
        assert ours["xmin"] == theirs.xmin
