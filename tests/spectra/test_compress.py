"""Low-rank compression of the bundled models: held-out loss at half the parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.data.corpus import load_corpus
from workbench.models import mean_loss, tokenize
from workbench.spectra import compress, compression_sweep


def _windows(model, split: str, n: int, seq_len: int = 64, stride: int = 700):
    text = load_corpus(split)
    return tokenize(model, [text[i * stride:(i + 1) * stride] for i in range(n)], seq_len=seq_len)


@pytest.mark.parametrize("name", ["attn_model", "gelu_model"])
def test_whitened_beats_svd_at_half_the_parameters(name, request):
    model = request.getfixturevalue(name)
    calibration = _windows(model, "train", 24)
    held_out = _windows(model, "held_out", 24)
    ds = compression_sweep(model, held_out, [0.5], ["svd", "whitened"], calibration_tokens=calibration,
                           progress=False)
    kept = ds.params_kept.values
    assert np.all(np.abs(kept - 0.5) < 0.02)
    loss = ds.loss.sel(ratio=0.5)
    assert float(loss.sel({"method": "whitened"})) < float(loss.sel({"method": "svd"}))
    assert float(loss.sel({"method": "whitened"})) >= ds.attrs["baseline_loss"] - 1e-6


def _view(model, layer: int = 0) -> np.ndarray:
    """blocks.<layer>.attn.W_Q as one [d_model, n_heads d_head] matrix."""
    W = model.blocks[layer].attn.W_Q.detach()
    return W.permute(1, 0, 2).reshape(W.shape[1], -1).double().numpy()


def test_full_rank_factors_reproduce_the_model(attn_model, corpus_tokens):
    tokens = corpus_tokens[:4, :32]
    full = compress(attn_model, ranks=attn_model.cfg.d_model, method="svd")
    assert full.workbench_compression["params_kept"] == 1.0
    small = compress(attn_model, ranks=attn_model.cfg.d_model - 1, method="svd")
    with torch.no_grad():
        # Full rank keeps every map as it was: the same logits as the original model.
        reference = attn_model(tokens)
        torch.testing.assert_close(full(tokens), reference, rtol=0, atol=1e-6)
        # A rank-(d-1) factor pair of a square map holds more than d^2 parameters, so it stays dense...
        assert small.workbench_compression["params_kept"] == 1.0
        torch.testing.assert_close(small(tokens), reference, rtol=0, atol=1e-6)
        # ...while rank 32 is stored as factors and changes the output.
        low = compress(attn_model, ranks=32, method="svd")
        assert type(low.blocks[0].attn.q.original_component).__name__ == "LowRankLinear"
        assert mean_loss(low, tokens) != mean_loss(attn_model, tokens)
        assert torch.linalg.matrix_rank(low.blocks[0].attn.W_Q.permute(1, 0, 2).reshape(128, -1)) == 32
        # Its map is the best rank-32 approximation (Eckart-Young), from numpy's SVD of the original.
        U, s, Vt = np.linalg.svd(_view(attn_model), full_matrices=False)
        best = (U[:, :32] * s[:32]) @ Vt[:32]
        np.testing.assert_allclose(_view(low), best, rtol=0, atol=1e-5 * s[0])
    # The input model is left untouched.
    assert type(attn_model.blocks[0].attn.q.original_component).__name__ == "Linear"


def test_greedy_allocation_meets_budget(gelu_model, corpus_tokens):
    small = compress(gelu_model, ratio=0.4, method="whitened", allocation="greedy",
                     calibration_tokens=corpus_tokens[:4, :32])
    info = small.workbench_compression
    assert info["params_kept"] <= 0.4 + 1e-9
    assert len(set(info["ranks"].values())) > 1   # ranks differ across matrices
