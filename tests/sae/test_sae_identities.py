"""Exact identities on a small random model: DFA, CE recovered, explained variance, head shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_helpers import constant_sae, identity_sae, z_cat
from workbench.sae import AttentionSAE, SAEConfig, dfa, evaluate, head_attribution


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 64, (6, 20), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("layer", [0, 1])
def test_dfa_sums_to_the_encoder_input(random_model, tokens, layer):
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=48, k=4), seed=1)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_()
    features = [0, 7, 47]
    out = dfa(sae, random_model, tokens, layer, features, batch_size=4)
    z = z_cat(random_model, tokens, layer).double()
    expected = torch.einsum("spd,df->fsp", z, sae.W_enc.detach().double()[:, features])
    assert np.allclose(out.sum("src").values, expected.numpy(), atol=1e-5)
    # with the bias offset it is the full pre-activation
    pre = sae.pre_activations(z.float()).detach()[..., features].permute(2, 0, 1)
    bias = torch.tensor(out.attrs["bias"])[:, None, None]
    assert np.allclose(out.sum("src").values + bias.numpy(), pre.numpy(), atol=1e-4)
    # causal: nothing is read from later positions
    dest, src = np.meshgrid(out.dest, out.src, indexing="ij")
    assert np.abs(out.values[..., src > dest]).max() == 0


def test_identity_sae_recovers_everything(random_model, tokens):
    ev = evaluate(identity_sae(32), random_model, tokens, layer=1, batch_size=4)
    assert float(ev["ce_loss_recovered"]) == pytest.approx(1.0, abs=1e-5)
    assert float(ev["explained_variance"]) == pytest.approx(1.0, abs=1e-6)
    assert float(ev["kl_sae"]) == pytest.approx(0.0, abs=1e-6)
    assert float(ev["ce_delta"]) == pytest.approx(0.0, abs=1e-5)


def test_zero_sae_recovers_nothing(random_model, tokens):
    ev = evaluate(constant_sae(32, 0.0), random_model, tokens, layer=0, batch_size=4)
    assert float(ev["ce_loss_recovered"]) == pytest.approx(0.0, abs=1e-6)
    assert float(ev["ce_sae"]) == pytest.approx(float(ev["ce_zero_ablation"]), abs=1e-6)
    assert float(ev["dead_fraction"]) == 1.0 or float(ev["l0"]) >= 0


def test_mean_predictor_explains_no_variance(random_model, tokens):
    mean = z_cat(random_model, tokens, 1).reshape(-1, 32).double().mean(0).float()
    ev = evaluate(constant_sae(32, mean), random_model, tokens, layer=1, batch_size=4)
    assert float(ev["explained_variance"]) == pytest.approx(0.0, abs=1e-5)
    assert float(ev["fvu"]) == pytest.approx(1.0, abs=1e-5)


def test_ce_values_match_a_hand_computation(random_model, tokens):
    ev = evaluate(identity_sae(32), random_model, tokens, layer=0, batch_size=4)
    with torch.no_grad():
        logits = random_model(tokens)
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 64), tokens[:, 1:].reshape(-1))
    assert float(ev["ce_clean"]) == pytest.approx(float(ce), abs=1e-5)


def test_head_attribution_by_hand():
    sae = AttentionSAE(SAEConfig(d_in=4, d_sae=2, k=1))
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[3.0, 4.0, 0.0, 5.0], [0.0, 0.0, 1.0, 0.0]]))
    share = head_attribution(sae, n_heads=2).values
    assert np.allclose(share, [[0.5, 0.5], [0.0, 1.0]])
    assert np.allclose(head_attribution(AttentionSAE(SAEConfig(d_in=8, d_sae=5, k=1)), 4).sum("head"), 1.0)
