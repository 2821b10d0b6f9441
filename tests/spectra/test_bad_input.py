"""Bad input: clear errors naming the argument, or documented handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.spectra import compress, layer_spectra, rank_metrics, spectrum, truncation_curve


@pytest.mark.parametrize("bad, exc, words", [
    (np.ones(5), ValueError, "W: expected a matrix"),
    (np.ones((0, 3)), ValueError, "non-empty"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), ValueError, "finite"),
    (np.array([[1.0, np.inf], [0.0, 1.0]]), ValueError, "finite"),
    (np.ones((2, 2), dtype=complex), TypeError, "real"),
    (torch.ones(2, 2, dtype=torch.complex64), TypeError, "real"),
    ("matrix", TypeError, "numpy array"),
])
def test_spectrum_rejects(bad, exc, words):
    with pytest.raises(exc, match=words):
        spectrum(bad)


def test_half_precision_is_upcast():
    W = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    bf = spectrum(W.to(torch.bfloat16))
    assert bf.dtype == np.float32 and bf.attrs["precision"] == "float32"
    np.testing.assert_allclose(bf.values, spectrum(W.to(torch.bfloat16).float()).values)


def test_rank_metrics_needs_shape_for_bare_spectra():
    with pytest.raises(ValueError, match="shape"):
        rank_metrics(np.array([3.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        rank_metrics(np.array([3.0, 1.0, 1.0]), shape=(2, 5))
    with pytest.raises(ValueError, match="non-negative"):
        rank_metrics(np.array([3.0, -1.0]), shape=(2, 5))


def test_truncation_and_compression_arguments():
    W = np.eye(3)
    with pytest.raises(ValueError, match="method"):
        truncation_curve(W, method="qr")
    with pytest.raises(ValueError, match="X: method='whitened' needs"):
        truncation_curve(W, method="whitened")
    with pytest.raises(ValueError, match="d_in=3"):
        truncation_curve(W, np.ones((10, 4)), method="svd")
    model = torch.nn.Sequential(torch.nn.ReLU())
    with pytest.raises(ValueError, match="model: expected at least one weight matrix"):
        layer_spectra(model, progress=False)
    with pytest.raises(ValueError, match="kinds"):
        layer_spectra(torch.nn.Linear(2, 2), kinds=("mlp",), progress=False)
    with pytest.raises(TypeError, match="model"):
        layer_spectra(b"gpt2", progress=False)
    with pytest.raises(ValueError, match=r"model: .*got 'gpt2' \(no such file or folder; a model name is loaded with "
                                         "workbench.models.load_model first"):
        layer_spectra("gpt2", progress=False)  # a string is a checkpoint path now


def test_compress_arguments(attn_model):
    with pytest.raises(ValueError, match="exactly one"):
        compress(attn_model, method="svd")
    with pytest.raises(ValueError, match="ratio"):
        compress(attn_model, ratio=1.5, method="svd")
    with pytest.raises(ValueError, match="calibration_tokens"):
        compress(attn_model, ratio=0.5, method="whitened")
    with pytest.raises(ValueError, match="model: expected linear maps"):
        compress(torch.nn.Sequential(torch.nn.Linear(3, 3)), ratio=0.5, method="svd")
