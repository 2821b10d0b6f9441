"""Edge cases of the public SAE API: no silent wrong answer, no saved data lost, a clear error otherwise."""

from __future__ import annotations

import json
import os

import pytest
import torch
import xarray as xr

import workbench.sae.io as sae_io
from workbench.sae import (
    ActivationSource,
    AttentionSAE,
    SAEConfig,
    dfa,
    evaluate,
    family_features,
    feature_families,
    head_attribution,
    hook_z_cat,
    load_sae,
    prompt_features,
    save_sae,
    top_activations,
    train,
)

TOKENS = torch.randint(0, 64, (3, 8), generator=torch.Generator().manual_seed(0))


def _random_sae(seed: int, **cfg) -> AttentionSAE:
    sae = AttentionSAE(SAEConfig(**{"d_in": 8, "d_sae": 16, "k": 2, **cfg}), seed=seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    return sae


def test_a_save_interrupted_between_its_two_files_never_loads_as_another_sae(tmp_path, monkeypatch):
    old = _random_sae(0, k=2)
    save_sae(old, tmp_path)
    new = _random_sae(1, k=3)  # same shapes, another SAE
    real_replace = os.replace

    def crash_on_cfg(src, dst):
        if str(dst).endswith(sae_io.CFG_FILE):
            raise KeyboardInterrupt  # the process dies after the weights were renamed
        real_replace(src, dst)

    monkeypatch.setattr(sae_io.os, "replace", crash_on_cfg)
    with pytest.raises(KeyboardInterrupt):
        save_sae(new, tmp_path)
    monkeypatch.setattr(sae_io.os, "replace", real_replace)
    try:
        loaded = load_sae(tmp_path)
    except ValueError as error:
        assert "different saves" in str(error)
    else:  # if it loads, it must be the old SAE, whole
        assert loaded.cfg == old.cfg
        for name, value in old.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], value), name


def test_hand_edited_cfg_still_loads(tmp_path):
    sae = _random_sae(0)
    save_sae(sae, tmp_path)
    doc = json.loads((tmp_path / "cfg.json").read_text())
    doc["hook_name"] = "blocks.1.attn.hook_z"
    (tmp_path / "cfg.json").write_text(json.dumps(doc))
    assert load_sae(tmp_path).cfg.hook_name == "blocks.1.attn.hook_z"


def test_saving_onto_a_file_is_refused_and_keeps_it(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="path: expected a folder"):
        save_sae(_random_sae(0), path)
    assert path.read_text() == "keep me"


@pytest.mark.parametrize("name", ["cfg.json", "sae_weights.safetensors"])
def test_corrupted_file_is_named(tmp_path, name):
    save_sae(_random_sae(0), tmp_path)
    (tmp_path / name).write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match=f"{name}: could not read"):
        load_sae(tmp_path)


def test_empty_or_out_of_vocabulary_tokens_are_refused(random_model):
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=16, k=2))
    with pytest.raises(ValueError, match=r"tokens: expected at least one sequence, got shape \(0, 8\)"):
        evaluate(sae, random_model, torch.zeros(0, 8, dtype=torch.long), 0)
    for bad in (64, -1):
        with pytest.raises(ValueError, match=r"tokens: expected token ids in \[0, 64\)"):
            dfa(sae, random_model, torch.full((1, 8), bad), 0, [0])


def test_sae_for_another_layer_or_head_split_is_refused(random_model):
    other_layer = AttentionSAE(SAEConfig(d_in=32, d_sae=16, k=2, hook_name="blocks.0.attn.hook_z"))
    with pytest.raises(ValueError, match=r"sae: .*'blocks.0.attn.hook_z'.* layer 1"):
        evaluate(other_layer, random_model, TOKENS, 1)
    assert float(evaluate(other_layer, random_model, TOKENS, 0)["l0"]) <= 2
    four_heads = AttentionSAE(SAEConfig(d_in=32, d_sae=16, k=2, n_heads=4))  # the model has 2 heads of 16
    with pytest.raises(ValueError, match=r"sae: expected n_heads=2 .* got n_heads=4"):
        dfa(four_heads, random_model, TOKENS, 0, [0])
    with pytest.raises(ValueError, match=r"n_heads: .*4 heads.* got 2"):
        head_attribution(four_heads, 2)


def test_batch_sizes_are_checked(random_model):
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=16, k=2))
    for call in (lambda: dfa(sae, random_model, TOKENS, 0, [0], batch_size=0),
                 lambda: top_activations(sae, random_model, TOKENS, 0, [0], batch_size=0),
                 lambda: feature_families({0: sae}, random_model, TOKENS, batch_size=0)):
        with pytest.raises(ValueError, match="batch_size: expected an int >= 1, got 0"):
            call()


def test_boolean_feature_index_is_refused(random_model):
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=16, k=2))
    with pytest.raises(ValueError, match=r"features: expected latent indices"):
        dfa(sae, random_model, TOKENS, 0, [True])


def test_browse_helpers_check_their_arguments(attn_model):
    sae = AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=4))
    with pytest.raises(ValueError, match=r"layer: expected an int in \[0, 2\)"):
        hook_z_cat(attn_model, TOKENS, 5)
    with pytest.raises(ValueError, match="max_features: expected an int >= 0, got -1"):
        prompt_features(sae, attn_model, 0, "import os, sys", max_features=-1)
    ds = xr.Dataset({"activation": (("feature", "example"), [[1.0], [2.0]]),
                     "family_label": ("feature", ["induction", "other"])})
    with pytest.raises(ValueError, match="family: expected one of .*got 'inducton'"):
        family_features(ds, "inducton")


@pytest.mark.parametrize("changes, message", [
    (dict(architecture="jumprelu", l1_coefficient=-1.0), "l1_coefficient: expected a number >= 0"),
    (dict(k=2, l1_coefficient=float("nan")), "l1_coefficient: expected a number >= 0"),
    (dict(k=2, aux_k=0), "aux_k: expected an int >= 1, got 0"),
    (dict(k=2, aux_coefficient=-1.0), "aux_coefficient: expected a number >= 0"),
])
def test_config_refuses_bad_penalties(changes, message):
    with pytest.raises(ValueError, match=message):
        SAEConfig(d_in=8, d_sae=16, **changes)


def test_token_budget_below_one_batch_is_refused():
    with pytest.raises(ValueError, match="n_tokens: expected at least batch_size=64 tokens, got 10"):
        train(torch.randn(512, 8), d_sae=16, k=2, batch_size=64, n_tokens=10, progress=False)


def test_resume_refuses_a_checkpoint_trained_on_other_activations(tmp_path):
    kw = dict(d_sae=16, k=2, batch_size=64, progress=False, checkpoint_dir=tmp_path)
    gen = torch.Generator().manual_seed(0)
    train(torch.randn(512, 8, generator=gen), **kw)
    with pytest.raises(ValueError, match=r"checkpoint_dir: .* different arguments \['acts_mean'\]"):
        train(torch.randn(512, 8, generator=gen), **kw)


def test_buffer_smaller_than_a_batch_is_refused():
    """A buffer that holds less than a batch yields no batch: the stream would spin forever."""
    z = xr.DataArray(torch.randn(40, 4, 2, 4).numpy(), dims=("seq", "pos", "head", "d_head")).chunk({"seq": 1})
    with pytest.raises(ValueError, match="buffer_tokens: expected at least batch_size=16, got 8"):
        ActivationSource(z, batch_size=16, buffer_tokens=8)


def test_checkpoint_dir_that_is_a_file_is_refused_before_training(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    steps = []
    with pytest.raises(FileExistsError, match="checkpoint_dir: expected a folder"):
        train(torch.randn(512, 8), d_sae=16, k=2, batch_size=64, progress=False, checkpoint_dir=path,
              callback=lambda step, sae: steps.append(step))
    assert steps == [] and path.read_text() == "keep me"


def test_unreadable_checkpoint_is_named(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="checkpoint_dir: could not read .*checkpoint.pt"):
        train(torch.randn(512, 8), d_sae=16, k=2, batch_size=64, progress=False, checkpoint_dir=tmp_path)
