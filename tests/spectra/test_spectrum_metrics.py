"""Singular values and rank metrics against random-matrix theory and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from workbench.spectra import rank_metrics, spectrum
from workbench.spectra.mp import mp_fit
from workbench.spectra.powerlaw import power_law_fit


def test_planted_spikes_match_random_matrix_prediction(spiked):
    W, _, theta = spiked
    N, M = W.shape
    s = spectrum(W).values
    assert int((s > 1.02 * (np.sqrt(N) + np.sqrt(M))).sum()) == 16
    predicted = np.sqrt((theta ** 2 + N) * (theta ** 2 + M)) / theta
    # The strongest spikes sit within 0.5% of the prediction; weaker ones
    # fluctuate more (O(1) in sigma around a smaller value).
    assert np.all(np.abs(s[:4] / predicted[:4] - 1) < 0.005)
    assert np.all(np.abs(s[:16] / predicted - 1) < 0.02)
    assert int(rank_metrics(spectrum(W)).num_spikes) == 16


def test_gaussian_stable_rank_and_bulk_edge(spiked):
    _, G, _ = spiked
    N, M = G.shape
    m = rank_metrics(G)
    theory = N * M / (np.sqrt(N) + np.sqrt(M)) ** 2  # E sum sigma^2 / sigma_max^2
    assert abs(float(m.stable_rank) / theory - 1) < 0.03
    assert abs(float(m.mp_softrank) - 1) < 0.03
    assert int(m.num_spikes) == 0
    assert int(m.numerical_rank) == N


def test_exact_rank16_float32_has_numerical_rank_16():
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(768, 16, generator=gen) @ torch.randn(16, 3072, generator=gen)
    assert W.dtype == torch.float32
    m = rank_metrics(W)
    assert int(m.numerical_rank) == 16
    assert m.attrs["precision"] == "float32"


def test_hand_computed_metrics():
    s = np.array([4.0, 2.0, 1.0, 1.0])           # lambda = 16, 4, 1, 1 (sum 22)
    m = rank_metrics(s, shape=(4, 10))
    assert float(m.stable_rank) == 22 / 16
    assert float(m.log_norm) == np.log10(22) and float(m.log_spectral_norm) == np.log10(16)
    p = s / s.sum()
    assert np.isclose(float(m.effective_rank), np.exp(-(p * np.log(p)).sum()))
    assert (int(m.energy_rank_50), int(m.energy_rank_90), int(m.energy_rank_99)) == (1, 2, 4)
    assert int(rank_metrics(np.eye(10)).energy_rank_90) == 9   # exactly 90%: reached, not missed by rounding


def test_stacks_and_dtypes():
    rng = np.random.default_rng(1)
    stack = rng.standard_normal((3, 20, 7))
    s = spectrum(stack)
    assert s.dims == ("matrix", "index") and s.shape == (3, 7)
    np.testing.assert_allclose(s.values, np.linalg.svd(stack, compute_uv=False), rtol=1e-10)
    assert rank_metrics(s).stable_rank.dims == ("matrix",)
    assert spectrum(stack[0].astype(np.float32)).dtype == np.float32
    assert spectrum(stack[0].astype(np.float32), dtype="float64").dtype == np.float64
    # A rank-deficient float64 matrix takes the direct-SVD fallback and keeps its exact zeros out.
    low = rng.standard_normal((30, 3)) @ rng.standard_normal((3, 20))
    assert int(rank_metrics(low).numerical_rank) == 3


def _with_singular_values(sigma: np.ndarray, m: int, n: int, seed: int = 0) -> np.ndarray:
    """A random ``m x n`` matrix with exactly the singular values ``sigma`` (orthonormal U, V from QR)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, sigma.size)))
    V, _ = np.linalg.qr(rng.standard_normal((n, sigma.size)))
    return (U * sigma) @ V.T


@pytest.mark.parametrize("m, n", [(60, 12), (12, 60)])
def test_numerical_rank_tolerance_uses_the_larger_side(m, n):
    # The last singular value sits between the tolerances sigma_1 * min(m, n) * eps and
    # sigma_1 * max(m, n) * eps: numpy.linalg.matrix_rank's documented default (S.max() * max(M, N) * eps)
    # drops it, a rule with min(m, n) would keep it.
    eps = np.finfo(np.float64).eps
    small = np.sqrt(m * n) * eps                      # 26.8 eps, halfway (geometrically) between 12 and 60 eps
    sigma = np.r_[np.ones(11), small]
    W = _with_singular_values(sigma, m, n)
    assert np.linalg.matrix_rank(W) == 11             # the independent truth
    assert int(rank_metrics(W).numerical_rank) == 11
    assert int(rank_metrics(sigma, shape=(m, n)).numerical_rank) == 11
    # Above the larger tolerance it counts.
    assert int(rank_metrics(np.r_[np.ones(11), 2 * max(m, n) * eps], shape=(m, n)).numerical_rank) == 12


def test_numerical_rank_tolerance_follows_float32_precision():
    eps32 = float(np.finfo(np.float32).eps)
    sigma = np.r_[np.ones(5), 3 * eps32 * 20].astype(np.float32)   # 60 eps32: above 5 * eps32, below 200 * eps32
    m = rank_metrics(sigma, shape=(200, 6))
    assert m.attrs["precision"] == "float32"
    assert np.linalg.matrix_rank(np.diag(sigma), tol=float(sigma.max()) * 200 * eps32) == 5
    assert int(m.numerical_rank) == 5


def test_every_metric_against_its_formula():
    # A heavy-tailed spectrum of a 300 x 80 matrix, each metric recomputed here from its definition.
    rng = np.random.default_rng(3)
    s = np.sort(rng.pareto(2.0, 80) + 0.5)[::-1]
    m = rank_metrics(s[::-1].copy(), shape=(300, 80))           # any order in
    lam = s ** 2
    p = s / s.sum()
    expected = {"stable_rank": lam.sum() / lam[0], "effective_rank": np.exp(-(p * np.log(p)).sum()),
                "log_norm": np.log10(lam.sum()), "log_spectral_norm": np.log10(lam[0])}
    for name, value in expected.items():
        assert float(m[name]) == pytest.approx(value, rel=1e-12), name
    for level in (50, 90, 99):
        k = next(i + 1 for i in range(80) if lam[: i + 1].sum() >= level / 100 * lam.sum())
        assert int(m[f"energy_rank_{level}"]) == k
    assert int(m.numerical_rank) == np.linalg.matrix_rank(np.diag(s), tol=s[0] * 300 * np.finfo(float).eps)
    fit = power_law_fit(lam)
    assert float(m.alpha) == fit["alpha"] and float(m.xmin) == fit["xmin"]
    assert float(m.ks_distance) == fit["ks_distance"]
    assert float(m.alpha_weighted) == pytest.approx(fit["alpha"] * np.log10(lam[0]), rel=1e-12)
    mp = mp_fit(lam, shape=(300, 80))
    assert float(m.bulk_max) == mp["bulk_max"] and float(m.mp_softrank) == mp["mp_softrank"]
    assert int(m.num_spikes) == mp["num_spikes"]
    assert m.attrs == {"rows": 300, "cols": 80, "precision": "float64"}


def test_zero_singular_values_are_left_out_of_the_entropy():
    m = rank_metrics(np.array([2.0, 2.0, 0.0, 0.0]), shape=(4, 4))
    assert float(m.effective_rank) == pytest.approx(2.0, rel=1e-12)   # two equal directions
    assert int(m.numerical_rank) == 2 and float(m.stable_rank) == 2.0


def test_a_zero_spectrum_has_rank_zero_and_nan_metrics():
    for values in (np.zeros(3), np.array([0.0])):
        m = rank_metrics(values, shape=(3, 5))
        assert int(m.numerical_rank) == 0 and str(m.mp_reason.values).startswith("no nonzero eigenvalue")
        assert all(np.isnan(float(m[name])) for name in ("stable_rank", "effective_rank", "alpha", "log_norm",
                                                         "energy_rank_50", "bulk_max", "num_spikes"))


def test_a_tail_too_short_to_fit_has_nan_alpha_and_alpha_weighted():
    m = rank_metrics(np.array([2.0, 2.0, 2.0]), shape=(3, 3))
    assert np.isnan(float(m.alpha)) and np.isnan(float(m.alpha_weighted))
    assert float(m.log_spectral_norm) == pytest.approx(np.log10(4.0))


def test_stacks_keep_their_coordinates_and_match_single_matrices():
    rng = np.random.default_rng(5)
    stack = rng.standard_normal((2, 3, 12, 7))
    m = rank_metrics(stack)
    assert m.stable_rank.dims[-1] != "index" and m.stable_rank.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            one = rank_metrics(stack[i, j])
            for name in ("stable_rank", "effective_rank", "numerical_rank", "energy_rank_90", "log_norm"):
                assert float(m[name][i, j]) == pytest.approx(float(one[name]), rel=1e-9), name
    spec = spectrum(stack[0]).assign_coords(matrix=["a", "b", "c"])
    assert list(rank_metrics(spec).stable_rank.coords["matrix"].values) == ["a", "b", "c"]


@pytest.mark.parametrize("shape, words", [((3,), "two positive ints"), ((3, 0), "two positive ints"),
                                          ((3.0, 4), "two positive ints"), ("3x4", "two positive ints"),
                                          ((1, 4), "at most 1 singular values, got 2")])
def test_rank_metrics_checks_the_shape(shape, words):
    with pytest.raises(ValueError, match=f"shape: .*{words}"):
        rank_metrics(np.array([2.0, 1.0]), shape=shape)


def test_rank_metrics_refuses_bad_bare_spectra():
    with pytest.raises(ValueError, match="W_or_spectrum: expected a non-empty"):
        rank_metrics(np.array([]), shape=(2, 2))
    with pytest.raises(ValueError, match="W_or_spectrum"):
        rank_metrics(np.array([2.0, np.inf]), shape=(2, 2))
    spec = xr.DataArray([2.0, 1.0], dims=("index",))
    with pytest.raises(ValueError, match="shape: expected \\(rows, cols\\) for a spectrum without"):
        rank_metrics(spec)
    m = rank_metrics(spec, shape=(2, 6))
    assert m.attrs["rows"] == 2 and m.attrs["cols"] == 6


@pytest.mark.parametrize("args, kwargs, exc, message", [
    ((np.array([3.0, -1.0]),), {"shape": (2, 5)}, ValueError,
     "W_or_spectrum: expected non-negative singular values, got negative entries"),
    ((xr.DataArray([3.0, 1.0], dims=("index",)),), {}, ValueError,
     "shape: expected (rows, cols) for a spectrum without 'rows'/'cols' attrs, got None"),
    ((xr.DataArray([3.0, np.inf], dims=("index",), attrs={"rows": 2, "cols": 2}),), {}, ValueError,
     "W_or_spectrum: expected finite singular values (NaN only as padding), got inf"),
    ((np.array([]),), {"shape": (2, 2)}, ValueError,
     "W_or_spectrum: expected a non-empty matrix or spectrum, got shape (0,)"),
    ((np.array([3.0, 1.0]),), {}, ValueError,
     "shape: expected (rows, cols) of the matrix when W_or_spectrum is a 1-D array of singular values, got None"),
    ((np.array([3.0, np.inf]),), {"shape": (2, 2)}, ValueError,
     "W_or_spectrum: expected finite values, got 1 NaN or inf entries in shape (2,)"),
    (("3, 1",), {}, TypeError,
     "W_or_spectrum: expected a numpy array, torch tensor or xarray.DataArray, got str"),
    ((np.array([3.0, 1.0]),), {"shape": (2, -1)}, ValueError,
     "shape: expected the matrix shape (rows, cols) as two positive ints, got (2, -1)"),
    ((np.array([3.0, 1.0]),), {"shape": (1, 4)}, ValueError,
     "shape: a (1, 4) matrix has at most 1 singular values, got 2"),
])
def test_rank_metrics_error_messages_in_full(args, kwargs, exc, message):
    # What a user reads: the argument, what was expected, what came in.
    with pytest.raises(exc) as info:
        rank_metrics(*args, **kwargs)
    assert str(info.value) == message


def test_float32_spectrum_dataarrays_and_integer_spectra():
    spec32 = xr.DataArray(np.array([4.0, 2.0], dtype=np.float32), dims=("index",), attrs={"rows": 2, "cols": 3})
    assert float(rank_metrics(spec32).stable_rank) == 1.25
    m = rank_metrics(np.array([1, 2]), shape=(2, 3))            # integer singular values, any order
    assert float(m.stable_rank) == 1.25 and float(m.log_spectral_norm) == pytest.approx(np.log10(4.0))


def test_a_dataarray_stack_keeps_its_named_dims_and_coords():
    rng = np.random.default_rng(6)
    W = xr.DataArray(rng.standard_normal((3, 10, 4)), dims=("layer", "out", "in"), coords={"layer": [5, 6, 7]})
    m = rank_metrics(W)
    assert m.stable_rank.dims == ("layer",) and m["layer"].values.tolist() == [5, 6, 7]
    np.testing.assert_allclose(m.stable_rank.values, [float(rank_metrics(W.values[i]).stable_rank) for i in range(3)])


def test_a_spectrum_without_a_precision_attr_counts_rank_in_float64():
    eps = np.finfo(np.float64).eps
    spec = xr.DataArray([1.0, 20 * eps], dims=("index",), attrs={"rows": 10, "cols": 2})   # above 10 eps
    m = rank_metrics(spec)
    assert int(m.numerical_rank) == 2 and m.attrs["precision"] == "float64"


def test_numerical_rank_excludes_a_value_exactly_at_the_tolerance():
    eps = np.finfo(np.float64).eps
    sigma = np.array([1.0, 8 * eps])                  # exactly sigma_1 * max(8, 2) * eps (powers of two: exact)
    W = np.zeros((8, 2))
    W[0, 0], W[1, 1] = sigma
    assert np.linalg.matrix_rank(W) == 1              # numpy's rule is strict: S > tol
    assert int(rank_metrics(sigma, shape=(8, 2)).numerical_rank) == 1
    assert int(rank_metrics(np.array([1.0, 9 * eps]), shape=(8, 2)).numerical_rank) == 2


def test_metrics_from_singular_values_defaults_to_float64_and_computes_in_float64():
    from workbench.spectra.metrics import metrics_from_singular_values

    eps = np.finfo(np.float64).eps
    assert metrics_from_singular_values(np.array([1.0, 20 * eps]), (10, 2))["numerical_rank"] == 2
    s32 = np.array([1.0, 0.1, 0.1, 0.3], dtype=np.float32)
    s64 = s32.astype(np.float64)                      # the same values, squared and summed in float64
    out = metrics_from_singular_values(s32, (4, 4))
    assert out["stable_rank"] == pytest.approx((s64 ** 2).sum(), rel=1e-15)
    assert out["log_norm"] == pytest.approx(np.log10((s64 ** 2).sum()), rel=1e-15)
