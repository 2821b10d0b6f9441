"""Exact identities on a small random model: DFA, CE recovered, explained variance, head shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_helpers import constant_sae, identity_sae, z_cat
from workbench.sae import AttentionSAE, CELossRecoveredWarning, SAEConfig, dfa, evaluate, head_attribution


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
    sae = constant_sae(32, 0.0)
    with torch.no_grad():
        sae.b_enc.fill_(-1e4)  # no latent can fire either
    ev = evaluate(sae, random_model, tokens, layer=0, batch_size=4)
    assert float(ev["ce_loss_recovered"]) == pytest.approx(0.0, abs=1e-6)
    assert float(ev["ce_sae"]) == pytest.approx(float(ev["ce_zero_ablation"]), abs=1e-6)
    assert float(ev["kl_sae"]) == pytest.approx(float(ev["kl_zero_ablation"]), abs=1e-6)
    assert float(ev["dead_fraction"]) == 1.0 and float(ev["l0"]) == 0.0
    assert int(ev["firing_histogram"].sum()) == 0


def test_dead_fraction_and_firing_frequency_by_hand(random_model, tokens):
    """Identity SAE: latent d fires where z_d > 0, latent 32 + d where z_d < 0; 12 latents are switched off."""
    sae = identity_sae(32)
    killed = torch.arange(0, 64, 5)[:12]
    with torch.no_grad():
        sae.b_enc[killed] = -1e4
    z = z_cat(random_model, tokens, 1).reshape(-1, 32)
    fires = torch.cat([z > 0, z < 0], dim=1)
    fires[:, killed] = False
    frequency = fires.double().mean(0).numpy()
    ev = evaluate(sae, random_model, tokens, layer=1, batch_size=4)
    np.testing.assert_allclose(ev["firing_frequency"].values, frequency)
    assert float(ev["dead_fraction"]) == pytest.approx(12 / 64) == float((frequency == 0).mean())
    assert float(ev["l0"]) == pytest.approx(float(fires.double().sum(1).mean()))
    assert int(ev["firing_histogram"].sum()) == 64 - 12


def test_kl_is_clean_to_sae_by_hand(random_model, tokens):
    """KL(p_clean || p_sae) per token, summed over the vocabulary (not the reverse direction)."""
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=48, architecture="standard"), seed=4)
    with torch.no_grad():
        sae.W_dec.mul_(20.0)  # a poor reconstruction, so the two directions of KL differ clearly
    ev = evaluate(sae, random_model, tokens, layer=1, batch_size=4)

    def splice(z, hook):
        return sae(z.reshape(*z.shape[:2], 32)).reshape(z.shape)

    with torch.no_grad():
        p = random_model(tokens).double().log_softmax(-1)
        q = random_model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", splice)]).double().log_softmax(-1)
        zeroed = random_model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: 0 * z)])
        r = zeroed.double().log_softmax(-1)
    forward = float((p.exp() * (p - q)).sum(-1).mean())
    reverse = float((q.exp() * (q - p)).sum(-1).mean())
    assert abs(forward - reverse) > 100 * 1e-4 * forward  # > 1%: 100x the tolerance below
    assert float(ev["kl_sae"]) == pytest.approx(forward, rel=1e-4)
    assert float(ev["kl_zero_ablation"]) == pytest.approx(float((p.exp() * (p - r)).sum(-1).mean()), rel=1e-4)


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


def _ce_with_hook(model, tokens, layer, replace):
    """Next-token CE per prediction with ``blocks.{layer}.attn.hook_z`` replaced, computed directly."""
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", replace)])
    return float(torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 64), tokens[:, 1:].reshape(-1)))


def test_mean_ablation_baseline_by_hand(random_model, tokens):
    """Mean ablation sets hook_z to its mean over every evaluation token; both baselines side by side."""
    z = z_cat(random_model, tokens, 1).double()
    mean = z.reshape(-1, 32).mean(0)
    by_hand = _ce_with_hook(random_model, tokens, 1, lambda h, hook: mean.float().reshape(2, 16).expand_as(h))
    zero = _ce_with_hook(random_model, tokens, 1, lambda h, hook: torch.zeros_like(h))
    ev = evaluate(identity_sae(32), random_model, tokens, layer=1, batch_size=4, baseline="mean")
    assert float(ev["ce_mean_ablation"]) == pytest.approx(by_hand, abs=1e-5)
    assert float(ev["ce_zero_ablation"]) == pytest.approx(zero, abs=1e-5)
    assert abs(by_hand - zero) > 0.02  # the two baselines differ here, so a swap is seen
    assert float(ev["ce_loss_recovered_mean"]) == pytest.approx(1.0, abs=1e-5)
    assert float(ev["ce_loss_recovered_zero"]) == pytest.approx(1.0, abs=1e-5)
    assert ev.attrs["baseline"] == "mean" and float(ev["kl_sae"]) == pytest.approx(0.0, abs=1e-6)
    # the mean predictor as an SAE recovers nothing against the mean baseline, and the ratio against zero
    ev = evaluate(constant_sae(32, mean.float()), random_model, tokens, layer=1, batch_size=4, baseline="mean")
    assert float(ev["ce_loss_recovered"]) == pytest.approx(0.0, abs=1e-5)
    assert float(ev["ce_loss_recovered"]) == float(ev["ce_loss_recovered_mean"])
    assert float(ev["kl_sae"]) == pytest.approx(float(ev["kl_mean_ablation"]), abs=1e-6)
    ce = {name: float(ev[f"ce_{name}"]) for name in ("clean", "sae", "zero_ablation")}
    expected = (ce["zero_ablation"] - ce["sae"]) / (ce["zero_ablation"] - ce["clean"])
    assert float(ev["ce_loss_recovered_zero"]) == pytest.approx(expected, abs=1e-9)


def test_ce_loss_recovered_is_nan_when_the_ablation_barely_matters(random_model, tokens):
    """Layer 0 of the random model: ablation moves the loss by ~0.02 nats; a ratio of such gaps is noise."""
    sae = identity_sae(32)
    ev = evaluate(sae, random_model, tokens, layer=0, batch_size=4, ce_tolerance=1e-3)
    gap = float(ev["ce_zero_ablation"] - ev["ce_clean"])
    assert 1e-3 < abs(gap) < 0.1 and float(ev["ce_loss_recovered"]) == pytest.approx(1.0, abs=1e-4)
    with pytest.warns(CELossRecoveredWarning) as caught:
        ev = evaluate(sae, random_model, tokens, layer=0, batch_size=4, ce_tolerance=0.1)
    assert sorted(str(w.message).split(" and clean")[0] for w in caught) == [
        "ce_loss_recovered: the mean-ablated", "ce_loss_recovered: the zero-ablated"]
    assert all("ce_tolerance=0.1," in str(w.message) and w.filename == __file__ for w in caught)
    assert np.isnan(float(ev["ce_loss_recovered"])) and np.isnan(float(ev["ce_loss_recovered_zero"]))
    assert np.isnan(float(ev["ce_loss_recovered_mean"]))
    assert float(ev["ce_delta"]) == pytest.approx(0.0, abs=1e-5)  # the other figures stay
    for bad in (-0.1, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ValueError, match="ce_tolerance: expected a finite number >= 0"):
            evaluate(sae, random_model, tokens, layer=0, ce_tolerance=bad)
    with pytest.raises(ValueError, match=r"baseline: expected one of \('zero', 'mean'\), got 'median'"):
        evaluate(sae, random_model, tokens, layer=0, baseline="median")


def test_head_attribution_by_hand():
    """Shares are block norms over their sum: 5, 1, 2 give 5/8, 1/8, 2/8 (squared norms would give 25/30...)."""
    sae = AttentionSAE(SAEConfig(d_in=6, d_sae=2, k=1))
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[3.0, 4.0, 0.0, -1.0, 2.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]))
    share = head_attribution(sae, n_heads=3).values
    assert np.allclose(share, [[5 / 8, 1 / 8, 2 / 8], [0.0, 1.0, 0.0]])
    assert np.allclose(head_attribution(AttentionSAE(SAEConfig(d_in=8, d_sae=5, k=1)), 4).sum("head"), 1.0)
