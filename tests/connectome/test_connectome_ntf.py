"""NTF against a planted non-negative CP model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from workbench.connectome import factor_match_score, ntf, rank_sweep


@pytest.fixture(scope="module")
def fit(planted):
    return ntf(planted[0], 4, n_restarts=10, seed=0, device="cpu")


def test_recovers_planted_factors(fit, planted):
    assert factor_match_score(fit, planted[1]) >= 0.95
    assert np.median(fit.similarity.values[np.triu_indices(10, k=1)]) >= 0.95
    assert fit.stability >= 0.95
    # noise of relative norm 0.1 bounds the achievable error from below (up to clipping)
    assert 0.07 < fit.error < 0.11


def test_factors_non_negative_and_normalised(fit):
    for f in fit.factors:
        assert (f.values >= 0).all()
        np.testing.assert_allclose(np.linalg.norm(f.values, axis=0), 1.0, rtol=1e-6)
    assert (np.diff(fit.weights.values) <= 0).all()


def test_same_seed_same_result(planted, fit):
    again = ntf(planted[0], 4, n_restarts=10, seed=0, device="cpu")
    for a, b in zip(fit.factors, again.factors):
        np.testing.assert_array_equal(a.values, b.values)


def test_error_matches_explicit_reconstruction(fit, planted):
    recon = fit.reconstruct().values
    explicit = np.linalg.norm(planted[0] - recon) / np.linalg.norm(planted[0])
    assert abs(explicit - fit.error) < 1e-4


def test_reported_error_never_increases_and_input_is_untouched(planted):
    """Extrapolated steps that end worse are discarded: the error per restart is monotone (up to rounding).

    A plain HALS step is accepted even when rounding makes its error look a
    little higher (refusing it froze restarts), so in float32 the history may
    rise at the level of the error's precision; in float64 it may not rise.
    """
    x = np.ascontiguousarray(planted[0], dtype=np.float32)  # shared with torch without a copy
    before = x.copy()
    for dtype, slack in ((torch.float32, 2e-5), (torch.float64, 1e-12)):
        history = []
        res = ntf(x, 4, n_restarts=6, seed=1, device="cpu", max_iter=60, tol=0, dtype=dtype,
                  callback=lambda it, err: history.append(err.copy()))
        history = np.array(history)
        assert history.shape == (60, 6)
        assert (np.diff(history, axis=0) <= slack * history[1:]).all()
        np.testing.assert_allclose(res.errors.values, history[-1], rtol=1e-5)
    np.testing.assert_array_equal(x, before)


def test_compressed_prefit_reaches_the_same_fit_in_fewer_full_iterations(make_planted):
    """The range-approximation pre-fit is a warm start: the final model is a fit of the tensor itself."""
    x, truth = make_planted(shape=(300, 60, 20), rank=4, noise=0.1, seed=5)
    plain = ntf(x, 4, n_restarts=4, seed=0, device="cpu", compress=None)
    fast = ntf(x, 4, n_restarts=4, seed=0, device="cpu", compress=12)
    assert factor_match_score(fast, truth) >= 0.95
    assert abs(fast.error - plain.error) <= 1e-3 * plain.error
    assert fast.n_iter < plain.n_iter
    recon = fast.reconstruct().values  # the reported error is the full tensor's, not the approximation's
    assert abs(np.linalg.norm(x - recon) / np.linalg.norm(x) - fast.error) < 1e-4
    with pytest.raises(ValueError, match="compress: expected"):
        ntf(x, 4, compress=2, device="cpu")


def test_masked_entries_are_left_out(planted):
    x, truth = planted
    mask = np.random.default_rng(3).random(x.shape) >= 0.2
    corrupted = np.where(mask, x, 50.0)  # masked values must not matter at all
    res = ntf(corrupted, 4, n_restarts=4, mask=mask, seed=0, device="cpu")
    assert factor_match_score(res, truth) >= 0.9
    with_nan = ntf(np.where(mask, x, np.nan), 4, n_restarts=4, seed=0, device="cpu")
    np.testing.assert_allclose(with_nan.factors[0].values, res.factors[0].values, atol=1e-5)
    recon = res.reconstruct().values
    observed_err = np.linalg.norm((x - recon)[mask]) / np.linalg.norm(x[mask])
    assert abs(observed_err - res.error) < 1e-4


def test_float64_and_dataarray_dims(planted):
    da = xr.DataArray(planted[0], dims=("pair", "time", "animal"), coords={"time": np.arange(40) * 0.25})
    res = ntf(da, 4, n_restarts=2, dtype=torch.float64, device="cpu", tol=1e-8)
    assert res.factor("time").dims == ("time", "component")
    np.testing.assert_array_equal(res.factor("time")["time"].values, da["time"].values)
    assert res.factors[0].dtype == np.float64


def test_rank_sweep_suggests_planted_rank(make_planted):
    x, _ = make_planted(shape=(30, 20, 8), rank=3, noise=0.05, seed=4)
    sweep = rank_sweep(x, [2, 3, 4, 5], n_restarts=6, progress=False, device="cpu")
    assert sweep.attrs["suggested_rank"] == 3
    assert (np.diff(sweep["error"].values) <= 1e-6).all()
    assert sweep["stability"].sel(rank=3) >= 0.95
    assert sweep.attrs["stable"] == 1 and sweep.attrs["rule"] == "heldout_plateau"


def test_rank_sweep_warns_when_no_rank_is_stable():
    """Pure noise has no reproducible structure above rank 1: the fallback is flagged, not silent."""
    x = np.random.default_rng(0).random((12, 10, 6))
    with pytest.warns(UserWarning, match="no rank reached stability"):
        sweep = rank_sweep(x, [3, 4], n_restarts=6, threshold=0.999, progress=False, device="cpu")
    assert sweep.attrs["stable"] == 0 and sweep.attrs["suggested_rank"] == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tensor=-np.ones((4, 4, 4)), rank=2), "non-negative"),
        (dict(tensor=np.ones((4, 1, 1)), rank=2), r"min\(IJ, IK, JK\) = 1"),
        (dict(tensor=np.full((4, 4, 4), np.nan), rank=2), "observed"),
        (dict(tensor=np.ones((4, 4)), rank=1), "3-way"),
        (dict(tensor=np.ones((4, 4, 4)), rank=2, mask=np.ones((4, 4, 3), bool)), "mask"),
        (dict(tensor=np.ones((4, 4, 4)), rank=0), "rank"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ntf(device="cpu", **kwargs)
    with pytest.raises(TypeError, match="tensor"):
        ntf([[1.0]], 1)


def test_the_best_restart_is_returned(planted):
    """error, factors and weights are those of the restart with the lowest error, not any other."""
    res = ntf(planted[0], 4, n_restarts=6, seed=2, device="cpu", max_iter=40)
    best = int(np.argmin(res.errors.values))
    assert res.error == res.errors.values.min()
    assert np.ptp(res.errors.values) > 0  # the restarts differ, so picking another one would show
    weights, factors = res.restarts[best]
    np.testing.assert_array_equal(res.weights.values, weights)
    for f, g in zip(res.factors, factors):
        np.testing.assert_array_equal(f.values, g)
    recon = res.reconstruct().values
    assert abs(np.linalg.norm(planted[0] - recon) / np.linalg.norm(planted[0]) - res.error) < 1e-4


def test_masked_em_equals_dense_hals_on_the_completed_tensor():
    """EM by definition: complete the missing entries with the current model (built here in numpy),
    take one plain dense HALS iteration, repeat. The masked fit must follow the same path."""
    from workbench.connectome import _hals

    rng = np.random.default_rng(0)
    shape, rank, iters = (12, 9, 4), 3, 6
    x = np.einsum("ir,jr,kr->ijk", *(rng.random((n, rank)) for n in shape)) + 0.05 * rng.random(shape)
    observed = rng.random(shape) >= 0.6
    observed[:, :, 0] &= rng.random(shape[0])[:, None] >= 0.5  # and whole missing fibres, as with absent neurons
    start = [torch.as_tensor(rng.random((2, n, rank))) for n in shape]  # two restarts

    masked = [f.clone() for f in start]
    X0 = torch.as_tensor(np.where(observed, x, 0.0).reshape(shape[0], -1))
    seen = torch.as_tensor(observed.reshape(shape[0], -1))
    error, _ = _hals.fit(X0.unsqueeze(0).repeat(2, 1, 1), shape, *masked, observed=seen, max_iter=iters, tol=0.0,
                         n_inner=2, eps=0.0)

    for b in range(2):
        ref = [f[b:b + 1].clone() for f in start]
        for _ in range(iters):
            model = np.einsum("ir,jr,kr->ijk", *(f[0].numpy() for f in ref))
            filled = torch.as_tensor(np.where(observed, x, model).reshape(shape[0], -1))
            _hals.fit(filled, shape, *ref, observed=None, max_iter=1, tol=0.0, n_inner=2, eps=0.0, extrapolate=False)
        for f_masked, f_ref in zip(masked, ref):
            np.testing.assert_allclose(f_masked[b].numpy(), f_ref[0].numpy(), rtol=1e-9, atol=1e-12)
        model = np.einsum("ir,jr,kr->ijk", *(f[0].numpy() for f in ref))
        explicit = np.linalg.norm((x - model)[observed]) / np.linalg.norm(x[observed])
        assert float(error[b]) == pytest.approx(explicit, rel=1e-9)


def test_missing_time_fibres_take_the_shared_tensor_path_with_the_same_iterates():
    """A time-independent mask (pairs absent in some animals) uses the correction path of _fibres;
    it must follow the general EM path (one completed copy per restart) to rounding."""
    from workbench.connectome import _fibres, _hals

    rng = np.random.default_rng(1)
    shape, rank, iters = (15, 8, 4), 3, 7
    x = np.einsum("ir,jr,kr->ijk", *(rng.random((n, rank)) for n in shape)) + 0.05 * rng.random(shape)
    observed = np.repeat(rng.random((shape[0], 1, shape[2])) >= 0.6, shape[1], axis=1)
    missing = _fibres.missing_fibres(observed)
    assert missing is not None and missing.mean() > 0.3
    start = [torch.as_tensor(rng.random((3, n, rank))) for n in shape]
    X0 = torch.as_tensor(np.where(observed, x, 0.0).reshape(shape[0], -1))
    observed_sq = (X0.double() ** 2).sum()
    general = [f.clone() for f in start]
    err_general, _ = _hals.fit(X0.unsqueeze(0).repeat(3, 1, 1), shape, *general,
                               observed=torch.as_tensor(observed.reshape(shape[0], -1)), max_iter=iters, tol=0.0,
                               n_inner=2, eps=0.0)
    fibres = [f.clone() for f in start]
    err_fibres, _ = _fibres.fit_fibres(X0, shape, *fibres, torch.as_tensor(missing), max_iter=iters, tol=0.0,
                                       n_inner=2, eps=0.0, observed_sq=observed_sq)
    for a, b in zip(general, fibres):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(err_fibres.numpy(), err_general.numpy(), rtol=1e-9)
