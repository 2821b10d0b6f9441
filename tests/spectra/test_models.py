"""Weights, circuits and activation spectra of the bundled models and a Hugging Face GPT-2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.spectra import layer_spectra, participation_ratio
from workbench.spectra.weights import model_matrices


def test_layer_spectra_covers_every_matrix(gelu_model):
    ds = layer_spectra(gelu_model, progress=False)
    cfg = gelu_model.cfg
    whole = ds.where(ds["head"] == -1, drop=True)
    kinds = whole["kind"].values.tolist()
    for kind in ("q", "k", "v", "o", "mlp_in", "mlp_out"):
        assert kinds.count(kind) == cfg.n_layers
    assert {"embed", "pos_embed", "unembed"} <= set(kinds)
    assert int((ds["kind"] == "ov").sum()) == int((ds["kind"] == "qk").sum()) == cfg.n_layers * cfg.n_heads
    assert int(((ds["kind"] == "q") & (ds["head"] >= 0)).sum()) == cfg.n_layers * cfg.n_heads
    # Every state-dict entry is either analysed or listed with a reason.
    skipped = {s.split(":")[0] for s in ds.attrs["skipped"]}
    for name, p in gelu_model.state_dict().items():
        assert (p.ndim == 2) != (name in skipped), name
    # Singular values of the whole W_V agree with a direct SVD of the stored weight.
    direct = np.linalg.svd(gelu_model.state_dict()["blocks.1.attn.v.weight"].double().numpy(), compute_uv=False)
    np.testing.assert_allclose(ds.singular_value.sel(matrix="blocks.1.attn.W_V").values, direct, rtol=1e-5)


def test_circuits_through_factors_match_formed_products(attn_model):
    ds = layer_spectra(attn_model, kinds=("ov", "qk"), progress=False)
    attn = attn_model.blocks[1].attn
    with torch.no_grad():
        ov = (attn.W_V[2] @ attn.W_O[2]).double()
        qk = (attn.W_Q[0] @ attn.W_K[0].T).double()
    d_head = attn_model.cfg.d_head
    np.testing.assert_allclose(ds.singular_value.sel(matrix="blocks.1.attn.OV[2]").values[:d_head],
                               np.linalg.svd(ov.numpy(), compute_uv=False)[:d_head], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds.singular_value.sel(matrix="blocks.1.attn.QK[0]").values[:d_head],
                               np.linalg.svd(qk.numpy(), compute_uv=False)[:d_head], rtol=1e-5, atol=1e-6)
    assert int(ds.numerical_rank.max()) <= d_head


def test_hugging_face_fused_qkv_is_split():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=64, n_positions=16)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    groups, skipped = model_matrices(model)
    names = [n for g in groups for n in g.names]
    assert "transformer.h.0.attn.c_attn.weight[q]" in names
    assert "transformer.h.1.attn.c_attn.weight[v][3]" in names
    q = next(g for g in groups if g.names == ["transformer.h.0.attn.c_attn.weight[q]"])
    fused = model.transformer.h[0].attn.c_attn.weight.detach()  # Conv1D: [in, 3 out]
    torch.testing.assert_close(q.matrices[0], fused[:, :32].T)
    assert q.layer == 0
    assert any(name.endswith("c_attn.bias") for name, _ in skipped)


def test_activation_spectra_against_numpy(attn_model, corpus_tokens, hook_cache):
    tokens = corpus_tokens[:8, :32]
    ds = layer_spectra(attn_model, kinds=("ov",), tokens=tokens, cache=hook_cache, progress=False)
    acts = hook_cache.activations(attn_model, tokens, "blocks.1.hook_resid_post", progress=False)
    x = acts["blocks.1.hook_resid_post"].values.reshape(-1, attn_model.cfg.d_model).astype(np.float64)
    mu = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    got = ds.activation_eigenvalue.sel(hook="blocks.1.hook_resid_post").values
    np.testing.assert_allclose(got, mu, rtol=1e-6, atol=1e-9 * mu[0])
    expected_pr = mu.sum() ** 2 / (mu ** 2).sum()
    assert np.isclose(float(ds.participation_ratio.sel(hook="blocks.1.hook_resid_post")), expected_pr)
    assert participation_ratio(np.ones(7)) == 7.0
