"""Save/load in the SAELens layout: round trips and folders written the way SAELens writes them."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from workbench.sae import AttentionSAE, SAEConfig, architectures


@pytest.mark.parametrize("architecture", architectures())
def test_round_trip(tmp_path, architecture):
    cfg = SAEConfig(d_in=12, d_sae=20, architecture=architecture, k=3 if "topk" in architecture else None,
                    n_heads=3, hook_name="blocks.1.attn.hook_z", model_name="tiny-attn-2l", l1_coefficient=0.2)
    sae = AttentionSAE(cfg, seed=4)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    sae.save(tmp_path)
    loaded = AttentionSAE.load(tmp_path)
    assert loaded.cfg == sae.cfg
    x = torch.randn(7, 12)
    assert torch.allclose(loaded(x), sae(x), atol=1e-6)
    doc = json.loads((tmp_path / "cfg.json").read_text())
    # the names SAELens' loader reads
    assert {"d_in", "d_sae", "architecture", "dtype", "apply_b_dec_to_input", "normalize_activations",
            "hook_name", "model_name", "reshape_activations"} <= set(doc)
    assert doc["reshape_activations"] == "hook_z"
    if cfg.k is not None:
        assert doc["k"] == doc["activation_fn_kwargs"]["k"] == 3


def _write(folder, cfg: dict, tensors: dict) -> None:
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, folder / "sae_weights.safetensors")


def test_loads_a_pre_6_saelens_hook_z_folder(tmp_path):
    """Flat config as in released GPT-2 small hook_z SAEs (hook_point, activation_fn_str, bool normalisation)."""
    gen = torch.Generator().manual_seed(0)
    tensors = {"W_enc": torch.randn(64, 256, generator=gen), "W_dec": torch.randn(256, 64, generator=gen),
               "b_enc": torch.randn(256, generator=gen), "b_dec": torch.randn(64, generator=gen),
               "scaling_factor": torch.ones(256)}
    cfg = {"model_name": "gpt2-small", "hook_point": "blocks.5.attn.hook_z", "hook_point_layer": 5,
           "hook_point_head_index": None, "d_in": 64, "d_sae": 256, "dtype": "torch.float32", "device": "cuda",
           "activation_fn_str": "relu", "normalize_activations": False, "context_size": 128,
           "sae_lens_training_version": None, "prepend_bos": True}
    _write(tmp_path / "sae", cfg, tensors)
    sae = AttentionSAE.load(tmp_path / "sae")
    assert (sae.cfg.architecture, sae.cfg.hook_name, sae.cfg.model_name) == ("standard", "blocks.5.attn.hook_z",
                                                                           "gpt2-small")
    x = torch.randn(5, 64, generator=gen)
    expected = torch.relu((x - tensors["b_dec"]) @ tensors["W_enc"] + tensors["b_enc"]) @ tensors["W_dec"] \
        + tensors["b_dec"]
    assert torch.allclose(sae(x), expected, atol=1e-4)


def test_loads_a_saelens_6_topk_and_jumprelu_folder(tmp_path):
    gen = torch.Generator().manual_seed(1)
    core = {"W_enc": torch.randn(8, 32, generator=gen), "W_dec": torch.randn(32, 8, generator=gen),
            "b_enc": torch.zeros(32), "b_dec": torch.zeros(8)}
    meta = {"metadata": {"hook_name": "blocks.0.attn.hook_z", "model_name": "m", "sae_lens_version": "6.5.0"}}
    _write(tmp_path / "topk", {"architecture": "topk", "d_in": 8, "d_sae": 32, "k": 5, "dtype": "float32",
                               "apply_b_dec_to_input": True, "normalize_activations": "none", **meta}, core)
    topk = AttentionSAE.load(tmp_path / "topk")
    assert (topk.cfg.k, topk.cfg.hook_name) == (5, "blocks.0.attn.hook_z")
    assert int((topk.encode(torch.randn(4, 8, generator=gen)) > 0).sum(-1).max()) <= 5
    threshold = torch.rand(32, generator=gen) + 0.5
    _write(tmp_path / "jump", {"architecture": "jumprelu", "d_in": 8, "d_sae": 32, "dtype": "float32",
                               "apply_b_dec_to_input": False, "normalize_activations": "none", **meta},
           {**core, "threshold": threshold})
    jump = AttentionSAE.load(tmp_path / "jump")
    x = torch.randn(6, 8, generator=gen)
    pre = x @ core["W_enc"]
    assert torch.allclose(jump.encode(x), pre * (pre > threshold), atol=1e-5)


def test_unsupported_normalisation_is_refused(tmp_path):
    core = {"W_enc": torch.zeros(4, 8), "W_dec": torch.zeros(8, 4), "b_enc": torch.zeros(8), "b_dec": torch.zeros(4)}
    _write(tmp_path / "s", {"d_in": 4, "d_sae": 8, "normalize_activations": "expected_average_only_in"}, core)
    with pytest.raises(ValueError, match="normalize_activations='expected_average_only_in'"):
        AttentionSAE.load(tmp_path / "s")
