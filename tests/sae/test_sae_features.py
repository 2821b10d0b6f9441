"""top_activations and feature_families against hand-built truths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_helpers import z_cat
from workbench.sae import AttentionSAE, SAEConfig, dfa, feature_families, top_activations


@pytest.fixture(scope="module")
def setup(random_model):
    tokens = torch.randint(1, 64, (5, 24), generator=torch.Generator().manual_seed(2))
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=40, architecture="standard"), seed=3)
    with torch.no_grad():
        sae.b_enc.fill_(-0.05)
    return sae, tokens


def test_top_examples_are_the_largest_activations(random_model, setup):
    sae, tokens = setup
    ds = top_activations(sae, random_model, tokens, 1, features=[3, 11], k=6, window=(2, 1), n_quantiles=3)
    acts = sae.encode(z_cat(random_model, tokens, 1)).detach()
    for j, f in enumerate([3, 11]):
        top = ds.isel(feature=j).where(ds["kind"].isel(feature=j) == "top", drop=True)
        expected = acts[..., f].flatten().sort(descending=True).values[:6].numpy()
        assert np.allclose(top["activation"].values, expected, atol=1e-6)
        for e in range(top.sizes["example"]):
            s, p = int(top["seq"][e]), int(top["pos"][e])
            assert float(acts[s, p, f]) == pytest.approx(float(top["activation"][e]), abs=1e-6)
            assert top["context_activation"][e].sel(offset=0) == pytest.approx(float(top["activation"][e]), abs=1e-6)
            assert top["context_token"][e].sel(offset=0) == f"[{int(tokens[s, p])}]"
            full = dfa(sae, random_model, tokens[s:s + 1], 1, [f]).values[0, 0, p]
            assert int(top["dfa_src"][e]) == int(full.argmax())
    quant = ds["quantile"].values
    assert set(quant[quant >= 0].tolist()) <= {0, 1, 2}


def test_logit_effects_match_the_weights(random_model, setup):
    sae, tokens = setup
    ds = top_activations(sae, random_model, tokens, 0, features=[5], k=2, n_logits=3)
    W_dec = sae.W_dec.detach()[5].reshape(2, 16)
    effect = torch.einsum("hd,hdm->m", W_dec, random_model.W_O[0].detach()) @ random_model.W_U.detach()
    assert np.allclose(ds["top_logit"].values[0], effect.sort(descending=True).values[:3].numpy(), atol=1e-5)
    assert np.allclose(ds["bottom_logit"].values[0], effect.sort().values[:3].numpy(), atol=1e-5)


def test_families_count_every_feature_and_head(random_model, setup):
    sae, tokens = setup
    out = feature_families({0: sae, 1: sae}, random_model, tokens, n_examples=5)
    assert out["counts"].sum("family").values.tolist() == [40, 40]
    assert (out["head_counts"].sum(("head", "family")) == 40).all()
    assert set(np.unique(out["label"].values)) <= {"induction", "local_context", "long_range_context", "other"}
    assert (out["families_per_head"] <= 3).all()


def test_dead_features_are_other(random_model, setup):
    sae, tokens = setup
    dead = AttentionSAE(SAEConfig(d_in=32, d_sae=8, architecture="standard"))
    with torch.no_grad():
        dead.b_enc.fill_(-1e6)
    out = feature_families({1: dead}, random_model, tokens)
    assert out["counts"].sel(family="other").item() == 8
