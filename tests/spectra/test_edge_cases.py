"""Edge cases found by an adversarial sweep: each checked against an independent truth."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import xarray as xr

from workbench.models import tokenize
from workbench.spectra import compress, compression_sweep, layer_spectra, low_rank_factors, rank_metrics, spectrum
from workbench.spectra.model_truncation import truncation_curves


@pytest.mark.parametrize("magnitude", [1e200, 1e-200])
def test_spectrum_of_extreme_but_finite_float64_matrices(magnitude):
    # The float64 Gram of these matrices over- or underflows; the singular
    # values themselves are representable and known exactly.
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 4))
    stack = np.stack([A * magnitude, A])
    expected = np.linalg.svd(A, compute_uv=False)
    s = spectrum(stack).values
    np.testing.assert_allclose(s[0] / magnitude, expected, rtol=1e-10)
    np.testing.assert_allclose(s[1], expected, rtol=1e-10)
    np.testing.assert_array_equal(spectrum(np.diag([3.0, 2.0, 1.0]) * 2.0 ** -700).values,
                                  np.array([3.0, 2.0, 1.0]) * 2.0 ** -700)


@pytest.mark.parametrize("values, words", [
    ([3.0, np.inf], "finite"),
    ([3.0, -1.0], "non-negative"),
])
def test_rank_metrics_checks_spectrum_dataarrays(values, words):
    # A bare array with the same values is rejected; a DataArray must be too,
    # not have inf dropped as if it were NaN padding.
    spec = xr.DataArray(values, dims=("index",), attrs={"rows": 2, "cols": 2})
    with pytest.raises(ValueError, match=f"W_or_spectrum: .*{words}"):
        rank_metrics(spec)


def test_rank_metrics_checks_spectrum_length_against_attrs():
    spec = xr.DataArray([3.0, 2.0, 1.0], dims=("index",), attrs={"rows": 2, "cols": 5})
    with pytest.raises(ValueError, match="at most 2 singular values, got 3"):
        rank_metrics(spec)


def test_rank_metrics_keeps_nan_padding_of_spectrum_dataarrays():
    spec = xr.DataArray([[2.0, 1.0], [3.0, np.nan]], dims=("matrix", "index"), attrs={"rows": 2, "cols": 4})
    m = rank_metrics(spec)
    np.testing.assert_allclose(m.stable_rank.values, [5 / 4, 1.0])


def test_layer_spectra_names_the_matrix_with_nan_weights(attn_model):
    model = copy.deepcopy(attn_model)
    with torch.no_grad():
        model.blocks[1].attn.k.weight[0, 0] = float("nan")
    for kinds in (("weights",), ("qk",)):
        with pytest.raises(ValueError, match=r"model: .*blocks\.1\.attn\..*finite"):
            layer_spectra(model, kinds=kinds, progress=False)


@pytest.mark.parametrize("call", ["compress", "truncation_curves", "compression_sweep"])
@pytest.mark.parametrize("bad, words", [("out_of_vocab", r"ids must lie"), ("empty", "non-empty"),
                                        ("float", "integer token ids")])
def test_calibration_tokens_are_checked(attn_model, call, bad, words):
    tokens = tokenize(attn_model, ["def f(x):\n    return x"] * 2, seq_len=8)
    tokens = {"out_of_vocab": tokens + attn_model.cfg.d_vocab, "empty": tokens[:0], "float": tokens.float()}[bad]
    argument = {"compress": "calibration_tokens", "truncation_curves": "calibration", "compression_sweep": "tokens"}
    with pytest.raises(ValueError, match=f"{argument[call]}: .*{words}"):
        if call == "compress":
            compress(attn_model, ratio=0.5, method="whitened", calibration_tokens=tokens)
        elif call == "truncation_curves":
            truncation_curves(attn_model, tokens)
        else:  # the held-out tokens, also when only "svd" needs no calibration pass
            compression_sweep(attn_model, tokens, [0.5], ["svd"], progress=False)


def test_low_rank_factors_rejects_ranks_beyond_the_matrix():
    W = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"k: expected .*<= 3"):
        low_rank_factors(W, 4)
    with pytest.raises(ValueError, match="W: expected finite"):
        low_rank_factors(torch.full((3, 3), float("nan")), 1)
    A, B = low_rank_factors(np.diag([3.0, 2.0, 1.0]), 2)  # numpy, as every other entry point takes
    np.testing.assert_allclose((A @ B).numpy(), np.diag([3.0, 2.0, 0.0]), atol=1e-12)


def test_numpy_scalars_are_accepted(attn_model):
    kept = compress(attn_model, ratio=np.float32(0.5), method="svd").workbench_compression["params_kept"]
    assert kept == compress(attn_model, ratio=0.5, method="svd").workbench_compression["params_kept"]


@pytest.mark.parametrize("values", [np.zeros(4), np.full(4, np.nan), np.zeros(0)])
def test_esd_figure_of_a_spectrum_with_nothing_to_draw_says_so(values):
    from workbench.figures.spectra import esd_figure

    with pytest.raises(ValueError, match="spectrum: expected some finite positive singular values"):
        esd_figure(xr.DataArray(values, dims="index"))
    with pytest.raises(ValueError, match="bins: expected an int >= 1, got 0"):
        esd_figure(xr.DataArray(np.arange(1.0, 5.0), dims="index"), bins=0)


def test_power_law_fit_and_participation_ratio_say_when_there_is_nothing_to_measure():
    """Issue 16: both used to return NaN silently."""
    from workbench.spectra import participation_ratio, power_law_fit

    for values in (np.full(5, np.nan), np.zeros(5), [4.0]):
        with pytest.warns(RuntimeWarning, match="too few to fit a tail"):
            assert np.isnan(power_law_fit(values)["alpha"])
    with pytest.raises(ValueError, match="eigenvalues: expected finite values"):
        power_law_fit([1.0, np.inf, 2.0])
    with pytest.warns(RuntimeWarning, match="every eigenvalue is 0"):
        assert np.isnan(participation_ratio(np.zeros(4)))
    with pytest.raises(ValueError, match="eigenvalues: expected finite values, got 1 NaN or inf of 3"):
        participation_ratio(np.array([1.0, np.nan, 2.0]))
