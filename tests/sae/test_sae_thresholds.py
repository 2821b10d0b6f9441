"""Learned thresholds: JumpReLU's straight-through gradient, BatchTopK's inference threshold."""

from __future__ import annotations

import pytest
import torch

from workbench.data.synthetic_sae import planted_dictionary
from workbench.sae import AttentionSAE, SAEConfig, train


def _jumprelu_sae(seed: int = 0) -> AttentionSAE:
    """A float64 JumpReLU SAE at the default bandwidth, thresholds spread on both sides of bandwidth / 2."""
    sae = AttentionSAE(SAEConfig(d_in=8, d_sae=12, architecture="jumprelu", l1_coefficient=0.3), seed=seed).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.02, generator=gen)
        sae.b_dec.normal_(0.0, 0.1, generator=gen)
        sae.log_threshold.copy_(torch.linspace(0.005, 0.08, 12, dtype=torch.float64).log())
    return sae


def _smoothed_loss(sae, x: torch.Tensor, log_threshold: torch.Tensor, theta_bar: torch.Tensor) -> torch.Tensor:
    """The JumpReLU paper's kernel-smoothed objective near ``theta_bar``, as a function of the thresholds.

    A latent's value ``pre * H(pre - theta)`` depends on ``theta`` only
    through its jump of height ``theta`` at ``pre = theta``. Smoothing the
    step by the rectangle kernel of width ``eps`` (``H`` becomes
    ``S(u) = clip(u / eps + 1/2, 0, 1)``, whose derivative is
    ``rect(u / eps) / eps``), moving the thresholds from ``theta_bar`` to
    ``theta`` changes each value by ``theta_bar (S(pre - theta) - S(pre - theta_bar))``
    and the L0 penalty by the same change of ``S``. The objective equals the
    JumpReLU loss at ``theta = theta_bar`` and its derivative there is the
    paper's pseudo-derivative: ``-(theta / eps) rect((pre - theta) / eps)`` for
    the values, ``-(1 / eps) rect(...)`` for L0, both on the pre-activation.
    """
    eps = sae.cfg.jumprelu_bandwidth
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc

    def smooth(theta):
        return ((pre - theta) / eps + 0.5).clamp(0.0, 1.0)

    moved = smooth(log_threshold.exp()) - smooth(theta_bar)
    f = pre * (pre > theta_bar) + theta_bar * moved
    l0 = (pre > theta_bar).double() + moved
    mse = (f @ sae.W_dec + sae.b_dec - x).pow(2).sum(-1).mean()
    return mse + sae.cfg.l1_coefficient * l0.sum(-1).mean()


def test_jumprelu_threshold_gradient_is_the_smoothed_objectives_derivative():
    """Straight-through on the pre-activation (paper, SAELens), not on ReLU(pre).

    On ReLU(pre) every negative pre sits at 0, inside the kernel window when
    theta < bandwidth / 2 (the defaults), and adds a spurious gradient.
    """
    sae = _jumprelu_sae()
    x = torch.randn(512, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    step = sae.architecture.training_loss(sae, x, torch.zeros(12, dtype=torch.bool))
    step.loss.backward()
    got = sae.log_threshold.grad.clone()

    base = sae.log_threshold.detach().clone()
    theta_bar = base.exp()
    h = 1e-7
    expected = torch.zeros(12, dtype=torch.float64)
    with torch.no_grad():
        for i in range(12):
            up, down = base.clone(), base.clone()
            up[i] += h
            down[i] -= h
            expected[i] = (_smoothed_loss(sae, x, up, theta_bar) - _smoothed_loss(sae, x, down, theta_bar)) / (2 * h)
    assert expected.abs().min() > 1e-4  # every threshold has pre-activations inside its window
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7), (got, expected)
    # and the loss itself is the unsmoothed one: MSE of the JumpReLU reconstruction + coefficient * L0
    with torch.no_grad():
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        f = pre * (pre > theta_bar)
        loss = (f @ sae.W_dec + sae.b_dec - x).pow(2).sum(-1).mean() + 0.3 * (f > 0).double().sum(-1).mean()
    assert float(step.loss.detach()) == pytest.approx(float(loss), rel=1e-12)


@pytest.fixture(scope="module")
def planted_acts():
    ds = planted_dictionary(n_tokens=12_000, d_in=32, n_features=48, n_heads=2, active_per_token=6, seed=0)
    acts = torch.tensor(ds["acts"].values)
    return acts[:10_000], acts[10_000:]


@pytest.mark.parametrize("n_steps", [50, 100, 1000])
def test_batchtopk_inference_l0_is_k_after_any_training_length(planted_acts, n_steps):
    """The inference threshold must give L0 ~ k on held-out tokens, early in training as late.

    A running average of the batches' smallest kept value, started at 0, gave
    L0 3-7x k after 50-100 steps (it lags the weights, and the start pulls it down).
    """
    train_acts, held_out = planted_acts
    sae, history = train(train_acts, d_sae=64, architecture="batchtopk", k=8, batch_size=128,
                         n_tokens=128 * n_steps, lr=3e-3, progress=False)
    assert float(history["l0"][-1]) == 8.0  # in training, exactly k per token on average
    l0 = float((sae.encode(held_out) > 0).float().sum(-1).mean())
    assert l0 == pytest.approx(8.0, rel=0.1)
