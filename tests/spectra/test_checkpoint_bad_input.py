"""Bad checkpoints and bad options of layer_spectra: clear errors naming the argument."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from workbench.spectra import layer_spectra


def small(path, **extra) -> None:
    state = {"model.layers.0.mlp.up_proj.weight": torch.randn(12, 8), **extra}
    save_file(state, path)


def test_a_folder_without_safetensors(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"model: expected a folder holding \.safetensors weights.*found none.*"
                                         r"pytorch_model\.bin"):
        layer_spectra(tmp_path, progress=False)


def test_unknown_architecture_lists_the_names_not_mapped(tmp_path):
    small(tmp_path / "model.safetensors", **{"bert.encoder.layer.0.attention.self.query.weight": torch.randn(8, 8),
                                              "bert.pooler.dense.weight": torch.randn(8, 8),
                                              "bert.pooler.dense.bias": torch.randn(8)})
    with pytest.raises(ValueError, match=r"model: 2 matrices have names of an unknown architecture.*"
                                         r"\['bert\.encoder\.layer\.0\.attention\.self\.query\.weight', "
                                         r"'bert\.pooler\.dense\.weight'\]"):
        layer_spectra(tmp_path, progress=False)


def test_a_path_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="model: expected a Hugging Face model folder.*no such file or folder"):
        layer_spectra(tmp_path / "missing", progress=False)
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"not a \.safetensors file"):
        layer_spectra(tmp_path / "weights.pt", progress=False)
    with pytest.raises(TypeError, match="model: expected a TransformerBridge, torch.nn.Module or a checkpoint path"):
        layer_spectra(3, progress=False)
    with pytest.raises(ValueError, match="model: expected at least one checkpoint, got an empty list"):
        layer_spectra([], progress=False)


def test_an_index_naming_a_missing_shard(tmp_path):
    small(tmp_path / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="lists shards that are missing.*model-00002-of-00002"):
        layer_spectra(tmp_path, progress=False)


def test_two_checkpoints_given_as_shards_of_one(tmp_path):
    small(tmp_path / "a.safetensors")
    small(tmp_path / "b.safetensors")
    with pytest.raises(ValueError, match=r"model: tensor 'model\.layers\.0\.mlp\.up_proj\.weight' is in both.*"
                                         "pass them as a list"):
        layer_spectra((tmp_path / "a.safetensors", tmp_path / "b.safetensors"), progress=False)


def test_checkpoints_with_mismatched_shapes(tmp_path):
    small(tmp_path / "a.safetensors")
    save_file({"model.layers.0.mlp.up_proj.weight": torch.randn(16, 8)}, tmp_path / "b.safetensors")
    with pytest.raises(ValueError, match=r"model: checkpoints must hold the same matrices with the same shapes.*"
                                         r"\('blocks\.0\.mlp\.W_in', \(8, 12\)\), \('blocks\.0\.mlp\.W_in', \(8, 16\)\)"):
        layer_spectra([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], progress=False)


def test_non_finite_matrix_in_a_checkpoint_is_named(tmp_path):
    W = torch.randn(12, 8)
    W[3, 2] = float("nan")
    save_file({"model.layers.0.mlp.up_proj.weight": W}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model: matrix 'blocks\.0\.mlp\.W_in': expected finite values"):
        layer_spectra(tmp_path, progress=False, device="cpu")


def test_options(tmp_path):
    small(tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="tokens: activation spectra need a TransformerBridge"):
        layer_spectra(tmp_path, tokens=torch.zeros(1, 4, dtype=torch.long), progress=False)
    with pytest.raises(ValueError, match="method: expected one of"):
        layer_spectra(tmp_path, method="lanczos", progress=False)
    with pytest.raises(ValueError, match="top_k: expected an int >= 1, got None"):
        layer_spectra(tmp_path, method="randomized", progress=False)
    with pytest.raises(ValueError, match="top_k: only used with method='randomized'"):
        layer_spectra(tmp_path, top_k=3, progress=False)
    with pytest.raises(ValueError, match=r"metrics: \['alpha', 'num_spikes'\] need the whole spectrum"):
        layer_spectra(tmp_path, method="randomized", top_k=3, metrics=("alpha", "stable_rank", "num_spikes"),
                      progress=False)
    with pytest.raises(ValueError, match="metrics: expected a non-empty subset"):
        layer_spectra(tmp_path, metrics=("rank",), progress=False)
    with pytest.raises(ValueError, match="dtype: expected None, 'float32' or 'float64'"):
        layer_spectra(tmp_path, dtype="float16", progress=False)


def test_a_fused_qkv_that_is_not_three_square_blocks(tmp_path):
    save_file({"h.0.attn.c_attn.weight": torch.randn(8, 20)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model: h\.0\.attn\.c_attn\.weight should be a fused Q\|K\|V of shape "
                                         r"\[d, 3 d\], got \(8, 20\)"):
        layer_spectra(tmp_path, progress=False)
