"""What a feature browser shows (workbench.sae.browse) against direct forward passes and hand-built truths."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import xarray as xr

from sae_helpers import z_cat
from workbench.sae import (
    AttentionSAE,
    SAEConfig,
    analysis_tokens,
    family_features,
    hook_z_cat,
    most_active_feature,
    most_active_token,
    prompt_features,
    sae_dashboard,
    save_sae,
    saved_saes,
    unpack_prompt,
)
from workbench.sae.browse import DEFAULT_PROMPT

PROMPT = "for i in range(3):\n    print(i)\nfor i in range(3):\n    print(i)\n"


@pytest.fixture(scope="module")
def sae():
    return AttentionSAE(SAEConfig(d_in=128, d_sae=24, k=4), seed=5)


@pytest.fixture(scope="module")
def dashboard(sae, attn_model):
    tokens = analysis_tokens(attn_model, 4, 24)
    seen = []
    ds = sae_dashboard(sae, attn_model, 1, tokens, prompt=PROMPT, progress=lambda f, m: seen.append(f))
    return ds, tokens, seen


def _pre_activation_bias(sae, feature: int) -> float:
    """What DFA leaves out: the encoder bias seen through the decoder bias."""
    return float(sae.b_enc[feature] - sae.b_dec @ sae.W_enc[:, feature])


def test_analysis_tokens_are_corpus_windows_then_repeated_random_sequences(attn_model):
    from workbench.models import corpus_tokens

    tokens = analysis_tokens(attn_model, 8, 16)
    assert torch.equal(tokens[:8], corpus_tokens(attn_model, 8, 16))
    repeated = tokens[8:]
    assert repeated.shape == (2, 16) and bool((repeated[:, 0] == 0).all())  # BOS, then period 8 twice
    assert torch.equal(repeated[:, 9:16], repeated[:, 1:8])


def test_hook_z_cat_is_the_concatenated_heads(attn_model):
    tokens = analysis_tokens(attn_model, 2, 12)
    direct = z_cat(attn_model, tokens, 0).reshape(-1, 128)
    torch.testing.assert_close(hook_z_cat(attn_model, tokens, 0), direct, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_prompt_features_are_the_sae_latents_and_their_dfa_sums_to_the_pre_activation(sae, attn_model):
    prompt = prompt_features(sae, attn_model, 1, PROMPT, max_features=6)
    ids = attn_model.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    tokens = torch.tensor([[0, *ids]])
    x = z_cat(attn_model, tokens, 1)[0]
    latents = sae.encode(x)
    features = prompt["feature"].values.tolist()
    peak = latents.max(0).values
    assert features == peak.argsort(descending=True)[:6].tolist() and bool((peak[features] > 0).all())
    np.testing.assert_allclose(prompt["activation"].values, latents[:, features].T.numpy(), rtol=1e-4, atol=1e-5)
    # each token as its decoding, whitespace made visible (the prompt is ASCII: no byte escapes)
    assert prompt["token"].values.tolist()[1:] == [attn_model.tokenizer.decode([i]).replace(" ", "·").replace(
        "\n", "⏎") for i in ids]
    pre = sae.pre_activations(x)
    for j, f in enumerate(features):
        summed = prompt["dfa"].values[j].sum(-1) + _pre_activation_bias(sae, f)
        np.testing.assert_allclose(summed, pre[:, f].numpy(), rtol=1e-4, atol=1e-4)
    assert prompt.attrs == {"prompt": PROMPT, "layer": 1, "truncated": 0}


def test_long_prompts_are_cut_and_empty_ones_refused(sae, attn_model):
    prompt = prompt_features(sae, attn_model, 1, PROMPT * 20, max_tokens=16)
    assert prompt.sizes["pos"] == 16 and prompt.attrs["truncated"] == 1
    with pytest.raises(ValueError, match="prompt: expected some text to analyse, got an empty prompt"):
        prompt_features(sae, attn_model, 1, " \n ")


@torch.no_grad()
def test_dashboard_holds_every_features_activation_and_top_example_dfa(sae, attn_model, dashboard):
    ds, tokens, seen = dashboard
    x = z_cat(attn_model, tokens, 1)
    latents = sae.encode(x.reshape(-1, 128))
    np.testing.assert_allclose(ds["feature_activation"].values, latents.T.numpy(), rtol=1e-4, atol=1e-5)
    pre = sae.pre_activations(x)
    for f in range(sae.cfg.d_sae):
        if not np.isfinite(float(ds["activation"].sel(feature=f, example=0))):
            continue
        seq, pos = (int(ds[v].sel(feature=f, example=0)) for v in ("seq", "pos"))
        total = float(ds["dfa_top"].sel(feature=f).isel(dest=pos).sum()) + _pre_activation_bias(sae, f)
        assert total == pytest.approx(float(pre[seq, pos, f]), rel=1e-4, abs=1e-4)
    np.testing.assert_allclose(ds["head_share"].sum("head").values, 1.0, rtol=1e-6)
    assert ds.attrs["n_tokens"] == tokens.numel() and ds.attrs["prompt"] == PROMPT and ds.attrs["layer"] == 1
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[-1] < 1.0


def test_stored_prompt_is_what_prompt_features_gives(sae, attn_model, dashboard):
    stored, direct = unpack_prompt(dashboard[0]), prompt_features(sae, attn_model, 1, PROMPT)
    xr.testing.assert_allclose(stored.drop_attrs(), direct.drop_attrs())
    assert stored.attrs["prompt"] == PROMPT and DEFAULT_PROMPT != PROMPT


def test_most_active_feature_token_and_family_order():
    ds = xr.Dataset({"activation": (("feature", "example"), [[2.0, 1.0], [np.nan, np.nan], [5.0, 0.1], [2.0, 2.0]]),
                     "family_label": ("feature", ["induction", "other", "other", "induction"])})
    assert most_active_feature(ds) == 2
    assert family_features(ds) == [2, 0, 3, 1]  # ties keep feature order; never-firing (NaN) last
    assert family_features(ds, "induction") == [0, 3] and family_features(ds, "local_context") == []
    prompt = xr.Dataset({"activation": (("feature", "pos"), [[9.0, 1.0, 0.0], [9.0, 0.0, 0.5]])})
    assert most_active_token(prompt) == 1  # BOS (position 0) is never chosen
    assert most_active_token(prompt.isel(feature=[])) == 2


def test_saved_saes_lists_only_complete_saelens_folders(tmp_path):
    sae = AttentionSAE(SAEConfig(d_in=4, d_sae=8, k=2))
    save_sae(sae, tmp_path / "b")
    save_sae(sae, tmp_path / "a")
    save_sae(sae, tmp_path / "no-weights")
    (tmp_path / "no-weights" / "sae_weights.safetensors").unlink()
    (tmp_path / "file.txt").write_text("not an SAE")
    assert saved_saes(tmp_path) == ["a", "b"] and saved_saes(tmp_path / "missing") == []
