"""Released SAEs by name from a Hugging Face hub cache laid out in a temp folder (offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.sae import load_sae
from workbench.sae.releases import RELEASES

KK = RELEASES["gpt2-small-hook-z-kk"]


def _tensors(d_in=16, d_sae=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(d_in, d_sae, generator=gen), "W_dec": torch.randn(d_sae, d_in, generator=gen),
            "b_enc": torch.randn(d_sae, generator=gen), "b_dec": torch.randn(d_in, generator=gen)}


def _fake_kk_cache(hub, tensors, layer=5, rev="0123abcd"):
    repo = hub / "models--ckkissane--attn-saes-gpt2-small-all-layers"
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    file = KK.files[f"blocks.{layer}.hook_z"]
    torch.save(tensors, snap / file)
    (snap / file.replace(".pt", "_cfg.json")).write_text(json.dumps(
        {"act_size": 16, "dict_size": 32, "act_name": f"blocks.{layer}.attn.hook_z", "l1_coeff": 1.0}))
    return snap


def test_kissane_release_loads_from_the_cache_by_name(tmp_path, monkeypatch):
    t = _tensors()
    _fake_kk_cache(tmp_path / "hub", t)
    # an older snapshot that refs/main does not name is ignored
    (tmp_path / "hub" / "models--ckkissane--attn-saes-gpt2-small-all-layers" / "snapshots" / "old").mkdir()
    sae = load_sae("gpt2-small-hook-z-kk", sae_id="blocks.5.hook_z", cache_dir=tmp_path / "hub")
    assert (sae.cfg.architecture, sae.cfg.hook_name, sae.cfg.model_name) == ("standard", "blocks.5.attn.hook_z",
                                                                           "gpt2-small")
    x = torch.randn(6, 16)
    expected = torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]) @ t["W_dec"] + t["b_dec"]
    assert torch.allclose(sae(x), expected, atol=1e-4)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert torch.equal(load_sae("gpt2-small-hook-z-kk", sae_id="blocks.5.hook_z").W_enc, t["W_enc"])


def test_gemma_scope_attention_release_is_jumprelu_without_b_dec_on_input(tmp_path):
    t = _tensors(seed=1)
    threshold = np.abs(np.random.default_rng(0).normal(size=32)).astype(np.float32)
    sae_id = "layer_3/width_16k/average_l0_57"
    snap = tmp_path / "hub" / "models--google--gemma-scope-2b-pt-att" / "snapshots" / "r1" / sae_id
    snap.mkdir(parents=True)
    np.savez(snap / "params.npz", threshold=threshold, **{k: v.numpy() for k, v in t.items()})
    sae = load_sae("gemma-scope-2b-pt-att", sae_id=sae_id, cache_dir=tmp_path / "hub")
    assert (sae.cfg.architecture, sae.cfg.hook_name, sae.cfg.apply_b_dec_to_input) == (
        "jumprelu", "blocks.3.attn.hook_z", False)
    x = torch.randn(8, 16)
    pre = x @ t["W_enc"] + t["b_enc"]
    assert torch.allclose(sae.encode(x), pre.relu() * (pre > torch.from_numpy(threshold)), atol=1e-5)


def test_bad_release_arguments_name_the_argument(tmp_path):
    hub = tmp_path / "hub"
    _fake_kk_cache(hub, _tensors())
    with pytest.raises(ValueError, match="sae_id: expected one of the ids of release 'gpt2-small-hook-z-kk'"):
        load_sae("gpt2-small-hook-z-kk", sae_id="blocks.5.hook_resid_pre", cache_dir=hub)
    with pytest.raises(ValueError, match="sae_id: expected an id of release 'gemma-scope-2b-pt-att'"):
        load_sae("gemma-scope-2b-pt-att", sae_id="blocks.5.hook_z", cache_dir=hub)
    with pytest.raises(ValueError, match="release: expected one of"):
        load_sae("gpt2-small-res-jb", sae_id="blocks.5.hook_z", cache_dir=hub)
    (tmp_path / "not_a_cache").mkdir()
    (tmp_path / "not_a_cache" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="cache_dir: expected a Hugging Face hub cache.*not_a_cache"):
        load_sae("gpt2-small-hook-z-kk", sae_id="blocks.5.hook_z", cache_dir=tmp_path / "not_a_cache")
    with pytest.raises(ValueError, match="cache_dir: expected a Hugging Face hub cache"):
        load_sae("gpt2-small-hook-z-kk", sae_id="blocks.5.hook_z", cache_dir=tmp_path / "missing")


def test_absent_files_name_the_folder_looked_in(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    snap = _fake_kk_cache(hub, _tensors())
    with pytest.raises(FileNotFoundError, match=f"looked in {snap}.*huggingface-cli download"):
        load_sae("gpt2-small-hook-z-kk", sae_id="blocks.6.hook_z", cache_dir=hub)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    with pytest.raises(FileNotFoundError, match="google/gemma-scope-2b-pt-att is not in the Hugging Face cache: "
                                                f"looked in {hub / 'models--google--gemma-scope-2b-pt-att'}"):
        load_sae("gemma-scope-2b-pt-att", sae_id="layer_3/width_16k/average_l0_57")
