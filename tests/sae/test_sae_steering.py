"""Steering along a feature and ablating features in the spliced forward (workbench.sae.steering)."""

from __future__ import annotations

import pytest
import torch
from sae_helpers import identity_sae, logit_writer_sae

from workbench.sae import AttentionSAE, SAEConfig, ablate, hook_z_name, steer
from workbench.sae.evaluation import sae_hook

TOKENS = torch.tensor([[0, 5, 9, 13, 2, 7, 31, 8]])


def test_scale_zero_equals_the_spliced_forward(random_model):
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=16, k=4), seed=1)
    out = steer(random_model, sae, 0, feature=3, scale=0.0, tokens=TOKENS, n_new=4)
    spliced = random_model.run_with_hooks(TOKENS, fwd_hooks=[(hook_z_name(0), sae_hook(sae, error_term=True))])
    spliced = spliced[0, -1].double().log_softmax(-1)
    assert torch.equal(random_model(TOKENS), random_model.run_with_hooks(
        TOKENS, fwd_hooks=[(hook_z_name(0), sae_hook(sae, error_term=True))]))  # the splice keeps the error term
    assert torch.allclose(torch.from_numpy(out.next_token["logprob_steered"].values).double(), spliced, atol=1e-6)
    assert out.kl == 0.0 and float(abs(out.next_token["delta"]).max()) < 1e-6
    assert out.continuation_clean == out.continuation_steered


@pytest.mark.parametrize("token", [11, 40])
def test_steering_along_a_planted_logit_direction_raises_that_token(random_model, token):
    sae = logit_writer_sae(random_model, layer=1, feature=2, token=token)
    up = steer(random_model, sae, 1, feature=2, scale=30.0, tokens=TOKENS, n_new=0)
    assert int(up.top_up["token_id"][0]) == token
    assert float(up.next_token["logprob_steered"][token]) > float(up.next_token["logprob_clean"][token]) + 1
    assert up.kl > 0
    down = steer(random_model, sae, 1, feature=2, scale=-30.0, tokens=TOKENS, n_new=0)
    assert int(down.top_down["token_id"][0]) == token


def test_positions_steer_only_there(random_model):
    sae = logit_writer_sae(random_model, layer=1, feature=0, token=11)
    # In the last layer, position 0's attention output reaches no later position: the next token is untouched.
    first = steer(random_model, sae, 1, feature=0, scale=30.0, tokens=TOKENS, positions=[0], n_new=0)
    assert first.kl == 0.0 and first.positions == [0]
    last = steer(random_model, sae, 1, feature=0, scale=30.0, tokens=TOKENS, positions=-1, n_new=0)
    everywhere = steer(random_model, sae, 1, feature=0, scale=30.0, tokens=TOKENS, n_new=0)
    assert last.positions == [TOKENS.shape[1] - 1]
    assert torch.allclose(torch.from_numpy(last.next_token["logprob_steered"].values),
                          torch.from_numpy(everywhere.next_token["logprob_steered"].values), atol=1e-5)
    # In layer 0, position 0 is read by layer 1's attention at the last position.
    assert steer(random_model, AttentionSAE(SAEConfig(d_in=32, d_sae=4, architecture="standard"), seed=2), 0, feature=0, scale=30.0, tokens=TOKENS,
                 positions=[0], n_new=0).kl > 0


def test_ablating_a_feature_that_never_fires_changes_nothing(random_model):
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=16, architecture="standard"), seed=1)
    with torch.no_grad():
        sae.b_enc[5] = -1e4  # never active
        sae.b_enc[6] = 1e2  # always active
    tokens = torch.randint(0, 64, (3, 10), generator=torch.Generator().manual_seed(0))
    for how in ("zero", "mean"):
        out = ablate(random_model, sae, 0, 5, tokens=tokens, how=how)
        assert float(abs(out.loss["delta"]).max()) == 0.0 and not bool(out.loss["active"].any())
        assert float(out.values[0]) == 0.0
    fired = ablate(random_model, sae, 0, [6], tokens=tokens)
    assert bool(fired.loss["active"].all()) and float(abs(fired.loss["delta"]).max()) > 1e-3


@torch.no_grad()
def _losses_with(model, tokens, layer, hook_fn):
    logits = model.run_with_hooks(tokens, fwd_hooks=[(hook_z_name(layer), hook_fn)])
    return torch.nn.functional.cross_entropy(logits[:, :-1].double().transpose(1, 2), tokens[:, 1:],
                                             reduction="none")


def test_ablating_every_latent_of_an_exact_sae_ablates_the_hook(random_model):
    """With an exact SAE (x_hat = x, b_dec = 0), zeroing every latent zeroes hook_z and replacing each by its
    mean replaces hook_z by its mean over the tokens: the ablations evaluate() measures against."""
    sae = identity_sae(32)
    tokens = torch.randint(0, 64, (4, 10), generator=torch.Generator().manual_seed(1))
    everything = list(range(64))
    zero = ablate(random_model, sae, 1, everything, tokens=tokens, how="zero")
    expected = _losses_with(random_model, tokens, 1, lambda z, hook: torch.zeros_like(z))
    assert torch.allclose(torch.from_numpy(zero.loss["loss_ablated"].values), expected, atol=1e-5)
    _, cache = random_model.run_with_cache(tokens, names_filter=hook_z_name(1))
    mean_z = cache[hook_z_name(1)].mean((0, 1))
    mean = ablate(random_model, sae, 1, everything, tokens=tokens, how="mean")
    expected = _losses_with(random_model, tokens, 1, lambda z, hook: mean_z.expand_as(z).clone())
    assert torch.allclose(torch.from_numpy(mean.loss["loss_ablated"].values), expected, atol=1e-5)
    assert abs(mean.mean_delta - float((expected - torch.from_numpy(mean.loss["loss_clean"].values)).mean())) < 1e-5


def test_results_read_in_a_notebook(random_model):
    sae = logit_writer_sae(random_model, layer=1, feature=2, token=11)
    text = repr(steer(random_model, sae, 1, feature=2, scale=5.0, tokens=TOKENS, n_new=2))
    assert "feature 2 x 5" in text and "KL(clean || steered)" in text and "continuation, steered" in text
    text = repr(ablate(random_model, sae, 1, [2, 3], tokens=TOKENS, how="mean"))
    assert "mean-ablated features [2, 3]" in text and "nats per token" in text


@pytest.mark.parametrize("call, match", [
    (lambda m, s: steer(m, s, 1, 0, float("nan"), tokens=TOKENS), "scale: expected a finite number"),
    (lambda m, s: steer(m, s, 1, 0, float("inf"), tokens=TOKENS), "scale: expected a finite number"),
    (lambda m, s: steer(m, s, 1, 8, 1.0, tokens=TOKENS), r"feature: expected ints in \[0, 8\)"),
    (lambda m, s: steer(m, s, 1, [0, 1], 1.0, tokens=TOKENS), "feature: expected one feature"),
    (lambda m, s: steer(m, s, 1, 0, 1.0, tokens=TOKENS, positions=[8]), r"positions: expected ints in \[-8, 8\)"),
    (lambda m, s: steer(m, s, 1, 0, 1.0, tokens=TOKENS, positions=[]), "positions: expected at least one"),
    (lambda m, s: steer(m, s, 1, 0, 1.0), "tokens, text: expected exactly one of them .* got neither"),
    (lambda m, s: steer(m, s, 1, 0, 1.0, tokens=TOKENS, text="x"), "tokens, text: .* got both"),
    (lambda m, s: steer(m, s, 1, 0, 1.0, tokens=TOKENS.repeat(2, 1)), "tokens: expected one prompt"),
    (lambda m, s: steer(m, s, 1, 0, 1.0, tokens=TOKENS, n_new=30), "n_new: expected at most 24"),
    (lambda m, s: steer(m, s, 1, 0, 1.0, tokens=TOKENS + 100), r"tokens: expected token ids in \[0, 64\)"),
    (lambda m, s: ablate(m, s, 1, [0, 99], tokens=TOKENS), r"features: expected ints in \[0, 8\)"),
    (lambda m, s: ablate(m, s, 1, [-1], tokens=TOKENS), r"features: expected ints in \[0, 8\)"),
    (lambda m, s: ablate(m, s, 1, [1, 1], tokens=TOKENS), "features: expected distinct"),
    (lambda m, s: ablate(m, s, 1, 0, tokens=TOKENS, how="median"), "how: expected one of"),
    (lambda m, s: ablate(m, s, 1, 0, tokens=TOKENS[:, :1]), "tokens: expected at least 2 positions"),
    (lambda m, s: ablate(m, s, 3, 0, tokens=TOKENS), r"layer: expected an int in \[0, 2\)"),
])
def test_bad_input_names_the_argument(random_model, call, match):
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=8, architecture="standard"))
    with pytest.raises(ValueError, match=match):
        call(random_model, sae)


def test_text_prompts_steer_and_ablate_on_the_bundled_model():
    from workbench.models import load_model

    model = load_model("tiny-attn-2l", device="cpu")
    sae = AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=4))
    out = steer(model, sae, 1, feature=1, scale=50.0, text="import os\nimport", n_new=5)
    assert out.prompt[1:] == ["import", "·os", "⏎", "import"] and out.text == "import os\nimport"
    assert out.continuation_clean != out.continuation_steered
    assert ablate(model, sae, 1, [1], text="import os\nimport sys").loss.sizes == {"seq": 1, "pos": 5}
