"""Messy real-world input: extreme magnitudes, misaligned masks, isolated neurons, invalid arguments.

Each test checks against independent truth (planted structure, exact scale
identities, the unchanged input) or that bad input is refused naming the argument.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from workbench.connectome import (affinity, communities, factor_match_score, load_traces, ntf, rank_sweep,
                                  synthetic)


@pytest.fixture(scope="module")
def exact(make_planted):
    """An exactly rank-2 non-negative tensor and its factors."""
    return make_planted(shape=(12, 10, 6), rank=2, noise=0.0, seed=7)


def two_cliques(n_isolated=0):
    W = np.kron(np.eye(2), np.ones((5, 5))) + 0.05
    return np.pad(W, (0, n_isolated))


# --- ntf ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_ntf_fits_extreme_magnitudes(exact, scale, dtype):
    """CP is scale-equivariant: ``c X`` has the factors of ``X`` and ``c`` times its weights."""
    x, truth = exact
    res = ntf(x * scale, 2, n_restarts=3, seed=0, device="cpu", dtype=dtype)
    assert res.error < 1e-3
    assert factor_match_score(res, truth, consider_weights=False) > 0.99
    np.testing.assert_allclose(res.reconstruct().values / scale, x, atol=1e-3 * x.max())


def test_ntf_rejects_all_zero_tensor():
    with pytest.raises(ValueError, match="tensor: expected some non-zero"):
        ntf(np.zeros((4, 4, 4)), 1, device="cpu")


@pytest.mark.parametrize("kwargs, match", [(dict(n_inner=0), "n_inner"), (dict(n_inner=2.5), "n_inner"),
                                           (dict(tol=float("nan")), "tol")])
def test_ntf_rejects_bad_iteration_settings(exact, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ntf(exact[0], 2, device="cpu", **kwargs)


def test_ntf_rejects_complex_tensor(exact):
    with pytest.raises(TypeError, match="tensor: expected real"):
        ntf(exact[0] + 1j, 2, device="cpu")


def test_ntf_aligns_a_dataarray_mask_by_dim_name(make_planted):
    """A mask whose dims are in another order masks the same entries (cube: shapes cannot tell)."""
    x, _ = make_planted(shape=(6, 6, 6), rank=2, noise=0.0, seed=2)
    dims = ("pair", "time", "animal")
    observed = np.random.default_rng(0).random(x.shape) >= 0.2
    tensor = xr.DataArray(np.where(observed, x, 1e3), dims=dims)  # masked values must not matter
    mask = xr.DataArray(observed, dims=dims)
    direct = ntf(tensor, 2, n_restarts=2, mask=mask, device="cpu")
    turned = ntf(tensor, 2, n_restarts=2, mask=mask.transpose("animal", "time", "pair"), device="cpu")
    for a, b in zip(direct.factors, turned.factors):
        np.testing.assert_array_equal(a.values, b.values)
    with pytest.raises(ValueError, match="mask: expected dims"):
        ntf(tensor, 2, mask=mask.rename(pair="neuron"), device="cpu")


def test_ntf_missing_entries_never_write_to_a_shared_float32_input(exact):
    """C-ordered float32 input is shared with torch; the EM path must still leave it untouched."""
    x = np.ascontiguousarray(exact[0], dtype=np.float32)
    x[0, 0, 0] = np.nan
    before = x.copy()
    mask = np.ones(x.shape, bool)
    mask[1, 1, 1] = False
    ntf(x, 2, n_restarts=2, mask=mask, device="cpu")
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("compress", [None, 5])
def test_ntf_same_seed_same_factors_with_and_without_compression(exact, compress):
    runs = [ntf(exact[0], 2, n_restarts=3, seed=3, compress=compress, device="cpu") for _ in range(2)]
    for a, b in zip(runs[0].factors, runs[1].factors):
        np.testing.assert_array_equal(a.values, b.values)


def test_rank_sweep_rejects_non_integer_ranks(exact):
    with pytest.raises(ValueError, match="ranks: expected integers"):
        rank_sweep(exact[0], [2.5], n_restarts=2, progress=False, device="cpu")


def test_factor_match_score_rejects_nan_factors():
    f = [np.ones((3, 2)), np.ones((4, 2))]
    with pytest.raises(ValueError, match="b: expected finite"):
        factor_match_score(f, [np.full((3, 2), np.nan), np.ones((4, 2))])


# --- affinity ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def traces():
    return synthetic(10, 2, 120, 2, seed=0).traces


def test_affinity_rejects_infinite_samples(traces):
    values = traces.values.copy()
    values[1, 3, 7] = np.inf
    with pytest.raises(ValueError, match="traces: expected finite values"):
        affinity(traces.copy(data=values))


@pytest.mark.parametrize("kwargs", [dict(kernel_width=np.nan), dict(smooth=np.nan)])
def test_affinity_rejects_nan_widths(traces, kwargs):
    with pytest.raises(ValueError, match="smooth/kernel_width"):
        affinity(traces, **kwargs)


# --- communities -------------------------------------------------------------------------------

def test_communities_nan_weights_are_called_nan_not_asymmetric():
    W = two_cliques()
    W[0, 1] = W[1, 0] = np.nan
    with pytest.raises(ValueError, match="weights: expected finite"):
        communities(W)


@pytest.mark.parametrize("method", ["wsbm", "leiden"])
def test_isolated_neurons_are_their_own_communities(method):
    """A neuron without edges has no evidence of belonging anywhere: it is never put in a community."""
    labels = communities(two_cliques(n_isolated=2), method=method).values
    assert len(set(labels[:5])) == 1 and len(set(labels[5:10])) == 1 and labels[0] != labels[5]
    assert len(set(labels)) == 4


@pytest.mark.parametrize("method", ["wsbm", "leiden"])
def test_communities_do_not_depend_on_the_weight_scale(method):
    planted = [0] * 5 + [1] * 5
    for scale in (1e-30, 1.0, 1e30):
        assert communities(two_cliques() * scale, method=method).values.tolist() == planted


@pytest.mark.parametrize("kwargs, match", [(dict(max_blocks=0), "max_blocks"), (dict(max_blocks=-1), "max_blocks"),
                                           (dict(max_blocks=2.5), "max_blocks"), (dict(max_blocks=11), "max_blocks"),
                                           (dict(threshold=-1.0), "threshold"), (dict(threshold=np.nan), "threshold"),
                                           (dict(threshold=1.0), "threshold")])
def test_communities_rejects_bad_wsbm_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        communities(two_cliques(), **kwargs)


# --- loaders -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [0.0, -2.0, np.nan])
def test_load_traces_rejects_non_positive_frame_rate(tmp_path, fps):
    plane = tmp_path / "plane0"
    plane.mkdir()
    for name, value in (("F", np.ones((2, 6))), ("Fneu", np.ones((2, 6))), ("iscell", np.ones((2, 2)))):
        np.save(plane / f"{name}.npy", value)
    with pytest.raises(ValueError, match="fps: expected a positive"):
        load_traces(plane, fps=fps)
    np.savez(tmp_path / "rec.npz", traces=np.ones((2, 6)), fps=fps)
    with pytest.raises(ValueError, match="fps: expected a positive"):
        load_traces(tmp_path / "rec.npz")
