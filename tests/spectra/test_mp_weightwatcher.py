"""``mp_fit="weightwatcher"`` against WeightWatcher's own ``analyze(mp_fit=True)`` on the same matrices.

WeightWatcher reads a layer's weights in float32, so the matrices are drawn
float32-exact: both sides then decompose the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from workbench.spectra import rank_metrics
from workbench.spectra.mp import mp_fit
from workbench.spectra.mp_weightwatcher import linear_kde

from spectra_helpers import weightwatcher_details


@pytest.fixture(scope="module")
def matrices():
    rng = np.random.default_rng(11)
    drawn = [rng.standard_normal((300, 120)),              # tall, pure bulk
             rng.standard_t(3, (80, 240)) * 0.02,          # wide, heavy tailed, small scale
             rng.standard_normal((150, 150)),              # square: WeightWatcher's quarter-circle branch
             rng.standard_t(3, (256, 64))]                 # tall, heavy tailed: spikes
    return [W.astype(np.float32).astype(np.float64) for W in drawn]


def test_matches_weightwatcher_mp_fit(matrices):
    details = weightwatcher_details(matrices, mp_fit=True)
    spikes = []
    for W, (_, row) in zip(matrices, details.iterrows()):
        m = rank_metrics(W, mp_fit="weightwatcher")
        for name in ("bulk_max", "mp_softrank", "num_spikes"):
            np.testing.assert_allclose(float(m[name]), float(row[name]), rtol=1e-6, atol=0, err_msg=name)
        lam = np.linalg.svd(W, compute_uv=False) ** 2
        fit = mp_fit(lam, shape=W.shape, method="weightwatcher")
        np.testing.assert_allclose(fit["sigma_mp"], float(row["sigma_mp"]), rtol=1e-6, atol=0)
        spikes.append(float(m.num_spikes))
    assert max(spikes) > 0                                  # the spike count is compared where it is not 0


def test_the_kde_is_scikit_learns_linear_kernel():
    from sklearn.neighbors import KernelDensity

    values = np.random.default_rng(2).gamma(2.0, 1.0, 200)
    points = np.linspace(0, values.max() + 0.5, 1000)
    kde = KernelDensity(kernel="linear", bandwidth=0.1).fit(values[:, None])
    np.testing.assert_allclose(linear_kde(values, points), np.exp(kde.score_samples(points[:, None])),
                               rtol=1e-12, atol=1e-14)
