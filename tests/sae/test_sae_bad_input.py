"""Bad input gives a clear error that names the argument, what was expected and what came."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from workbench.sae import AttentionSAE, SAEConfig, dfa, evaluate, train


def test_wrong_d_in():
    sae = AttentionSAE(SAEConfig(d_in=8, d_sae=16, k=2))
    with pytest.raises(ValueError, match=r"x: expected last dim d_in=8, got shape \(3, 7\)"):
        sae.encode(torch.zeros(3, 7))
    with pytest.raises(ValueError, match=r"f: expected a tensor \[..., d_sae=16\]"):
        sae.decode(torch.zeros(3, 8))


def test_sae_does_not_fit_the_model(random_model):
    sae = AttentionSAE(SAEConfig(d_in=24, d_sae=16, k=2))
    with pytest.raises(ValueError, match=r"sae: expected d_in = n_heads \* d_head = 32 .* got d_in=24"):
        evaluate(sae, random_model, torch.zeros(1, 4, dtype=torch.long), 0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_activations(bad):
    acts = torch.randn(512, 8)
    acts[100, 3] = bad
    with pytest.raises(ValueError, match="acts: expected finite activations, got NaN/inf in row 100"):
        train(acts, d_sae=16, k=2, batch_size=64, progress=False)
    with pytest.raises(ValueError, match="x: expected finite values, got 1 NaN/inf"):
        AttentionSAE(SAEConfig(d_in=8, d_sae=16, k=2)).encode(acts[100])


@pytest.mark.parametrize("layer", [2, -1, "1"])
def test_layer_the_model_lacks(random_model, layer):
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=16, k=2))
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"layer: expected an int in \[0, 2\) for this model, got"):
        evaluate(sae, random_model, tokens, layer)
    with pytest.raises(ValueError, match="layer: expected an int"):
        dfa(sae, random_model, tokens, layer, [0])


def test_bad_config_and_arguments():
    with pytest.raises(ValueError, match="architecture: expected one of .*got 'gated2'"):
        SAEConfig(d_in=8, d_sae=16, architecture="gated2")
    with pytest.raises(ValueError, match=r"k: architecture 'topk' needs an int in \[1, d_sae=16\], got None"):
        SAEConfig(d_in=8, d_sae=16)
    with pytest.raises(ValueError, match="d_sae: expected a positive int, got 0"):
        SAEConfig(d_in=8, d_sae=0, k=1)
    with pytest.raises(ValueError, match="n_heads: expected a positive int dividing d_in=8, got 3"):
        SAEConfig(d_in=8, d_sae=16, k=1, n_heads=3)
    with pytest.raises(TypeError, match="acts: expected a torch.Tensor .* got list"):
        train([[0.0] * 8], d_sae=16, k=2)
    with pytest.raises(ValueError, match="batch_size: expected at most the 10 tokens in acts, got 64"):
        train(torch.randn(10, 8), d_sae=16, k=2, batch_size=64)
    with pytest.raises(ValueError, match="lr: expected a positive number, got -1"):
        train(torch.randn(100, 8), d_sae=16, k=2, batch_size=10, lr=-1)
    with pytest.raises(ValueError, match="device: expected 'cpu'"):
        AttentionSAE(SAEConfig(d_in=8, d_sae=16, k=2), device="tpu:7x")


@pytest.fixture()
def saved(tmp_path):
    AttentionSAE(SAEConfig(d_in=8, d_sae=16, architecture="jumprelu")).save(tmp_path)
    return tmp_path


def test_folder_with_missing_file(saved):
    (saved / "sae_weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="sae_weights.safetensors is missing"):
        AttentionSAE.load(saved)


def test_folder_with_missing_tensor(saved):
    tensors = load_file(saved / "sae_weights.safetensors")
    del tensors["threshold"]
    save_file(tensors, saved / "sae_weights.safetensors")
    with pytest.raises(ValueError, match=r"missing \['threshold'\], unexpected \[\]"):
        AttentionSAE.load(saved)


def test_folder_with_mismatched_tensor(saved):
    tensors = load_file(saved / "sae_weights.safetensors")
    tensors["W_dec"] = torch.zeros(16, 9)
    save_file(tensors, saved / "sae_weights.safetensors")
    with pytest.raises(ValueError, match=r"W_dec expected shape \(16, 8\) .* got \(16, 9\)"):
        AttentionSAE.load(saved)


def test_folder_config_disagrees_with_weights(saved):
    cfg = json.loads((saved / "cfg.json").read_text())
    cfg["d_sae"] = 32
    (saved / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"W_enc expected shape \(8, 32\)"):
        AttentionSAE.load(saved)
