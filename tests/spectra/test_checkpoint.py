"""layer_spectra on safetensors checkpoints: the same matrices as the bridge path, per head, per circuit.

Expected values come from two independent routes: the TransformerLens bridge
booted from the same folder (``load_model``), and numpy SVDs of the stored
tensors with the splits and transposes written out here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from workbench.spectra import layer_spectra

D, H, DH, VOCAB, CTX, MLP = 64, 4, 16, 101, 32, 96


def svd(W) -> np.ndarray:
    return np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False)


def values(ds, name: str) -> np.ndarray:
    sv = ds.singular_value.sel(matrix=name).values
    return sv[np.isfinite(sv)]


def write_tokenizer(folder):
    """A word-level tokenizer, so that the bridge boots offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", bos_token="t1", eos_token="t2").save_pretrained(folder)


def gpt2_state(seed: int, n_layers: int = 2, d: int = D) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {"transformer.wte.weight": torch.randn(VOCAB, d, generator=g),
             "transformer.wpe.weight": torch.randn(CTX, d, generator=g), "transformer.ln_f.weight": torch.ones(d)}
    for i in range(n_layers):
        p = f"transformer.h.{i}."
        state.update({p + "attn.c_attn.weight": torch.randn(d, 3 * d, generator=g),  # Conv1D: [in, out]
                      p + "attn.c_attn.bias": torch.zeros(3 * d),
                      p + "attn.c_proj.weight": torch.randn(d, d, generator=g),
                      p + "mlp.c_fc.weight": torch.randn(d, 4 * d, generator=g),
                      p + "mlp.c_proj.weight": torch.randn(4 * d, d, generator=g),
                      p + "ln_1.weight": torch.ones(d)})
    return state


def write_sharded(folder, state: dict, config: dict | None) -> None:
    """Two shards and the index that maps each tensor to its shard."""
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(state)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in halves.items():
        save_file({k: state[k].contiguous() for k in keys}, folder / file)
    weight_map = {k: file for file, keys in halves.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))


GPT2_CONFIG = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": D, "n_head": H, "n_layer": 2,
               "n_positions": CTX, "vocab_size": VOCAB, "n_inner": None, "tie_word_embeddings": True}


def llama_state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    kv = 2
    state = {"model.embed_tokens.weight": torch.randn(VOCAB, D, generator=g),
             "lm_head.weight": torch.randn(VOCAB, D, generator=g), "model.norm.weight": torch.ones(D)}
    for i in range(2):
        p = f"model.layers.{i}."
        state.update({p + "self_attn.q_proj.weight": torch.randn(H * DH, D, generator=g),  # Linear: [out, in]
                      p + "self_attn.k_proj.weight": torch.randn(kv * DH, D, generator=g),
                      p + "self_attn.v_proj.weight": torch.randn(kv * DH, D, generator=g),
                      p + "self_attn.o_proj.weight": torch.randn(D, H * DH, generator=g),
                      p + "mlp.gate_proj.weight": torch.randn(MLP, D, generator=g),
                      p + "mlp.up_proj.weight": torch.randn(MLP, D, generator=g),
                      p + "mlp.down_proj.weight": torch.randn(D, MLP, generator=g),
                      p + "input_layernorm.weight": torch.ones(D)})
    return state


LLAMA_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": D,
                "intermediate_size": MLP, "num_hidden_layers": 2, "num_attention_heads": H, "num_key_value_heads": 2,
                "head_dim": DH, "vocab_size": VOCAB, "max_position_embeddings": CTX, "tie_word_embeddings": False}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A sharded GPT-2-shaped and a sharded Llama-shaped (GQA, untied) checkpoint."""
    out = {}
    for name, state, config in (("gpt2", gpt2_state(0), GPT2_CONFIG), ("llama", llama_state(1), LLAMA_CONFIG)):
        out[name] = tmp_path_factory.mktemp(name)
        write_sharded(out[name], state, config)
    return out


@pytest.fixture(scope="module")
def gpt2_folder(folders):
    return folders["gpt2"]


@pytest.fixture(scope="module")
def llama_folder(folders):
    return folders["llama"]


def test_gpt2_checkpoint_matches_numpy_with_the_conv1d_split_written_out(gpt2_folder):
    state = {k: v.numpy() for k, v in gpt2_state(0).items()}
    ds = layer_spectra(gpt2_folder, progress=False, device="cpu", dtype="float64")
    for i in range(2):
        qkv = state[f"transformer.h.{i}.attn.c_attn.weight"]  # [d_model, 3 d_model]: Q | K | V columns
        q, k, v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]
        o = state[f"transformer.h.{i}.attn.c_proj.weight"]  # [heads d_head, d_model]
        expected = {"W_Q": q, "W_K": k, "W_V": v, "W_O": o}
        for view, W in expected.items():
            np.testing.assert_allclose(values(ds, f"blocks.{i}.attn.{view}"), svd(W), rtol=1e-5)
        for h in range(H):
            cols = slice(h * DH, (h + 1) * DH)
            np.testing.assert_allclose(values(ds, f"blocks.{i}.attn.W_Q[{h}]"), svd(q[:, cols]), rtol=1e-5)
            np.testing.assert_allclose(values(ds, f"blocks.{i}.attn.W_O[{h}]"), svd(o[cols, :]), rtol=1e-5)
            np.testing.assert_allclose(values(ds, f"blocks.{i}.attn.OV[{h}]"), svd(v[:, cols] @ o[cols, :])[:DH],
                                       rtol=1e-5)
            np.testing.assert_allclose(values(ds, f"blocks.{i}.attn.QK[{h}]"), svd(q[:, cols] @ k[:, cols].T)[:DH],
                                       rtol=1e-5)
        np.testing.assert_allclose(values(ds, f"blocks.{i}.mlp.W_in"), svd(state[f"transformer.h.{i}.mlp.c_fc.weight"]),
                                   rtol=1e-5)
        assert ds.rows.sel(matrix=f"blocks.{i}.attn.W_O[0]").item() == DH  # the bridge's orientation
    np.testing.assert_allclose(values(ds, "W_E"), svd(state["transformer.wte.weight"]), rtol=1e-5)
    assert "W_U" not in ds.matrix.values  # tied: the same matrix as W_E, listed once
    assert any(s.startswith("W_U: tied") for s in ds.attrs["skipped"])
    assert "transformer.h.0.attn.c_attn.bias: 1-D parameter (bias or normalisation scale): no singular values" \
        in ds.attrs["skipped"]


def test_llama_checkpoint_with_grouped_kv_heads_matches_numpy(llama_folder):
    state = {k: v.numpy() for k, v in llama_state(1).items()}
    ds = layer_spectra(llama_folder, progress=False, device="cpu", dtype="float64")
    p = "model.layers.1."
    q, k = state[p + "self_attn.q_proj.weight"].T, state[p + "self_attn.k_proj.weight"].T  # -> [d_model, out]
    v, o = state[p + "self_attn.v_proj.weight"].T, state[p + "self_attn.o_proj.weight"].T
    assert ds.cols.sel(matrix="blocks.1.attn.W_K").item() == 2 * DH
    assert [m for m in ds.matrix.values if m.startswith("blocks.1.attn.W_K[")] == ["blocks.1.attn.W_K[0]",
                                                                                   "blocks.1.attn.W_K[1]"]
    for h in range(H):
        cols, kv = slice(h * DH, (h + 1) * DH), slice((h // 2) * DH, (h // 2 + 1) * DH)  # 2 query heads per kv head
        np.testing.assert_allclose(values(ds, f"blocks.1.attn.QK[{h}]"), svd(q[:, cols] @ k[:, kv].T)[:DH], rtol=1e-5)
        np.testing.assert_allclose(values(ds, f"blocks.1.attn.OV[{h}]"), svd(v[:, kv] @ o[cols, :])[:DH], rtol=1e-5)
    for view, tensor in (("W_in", "up_proj"), ("W_gate", "gate_proj"), ("W_out", "down_proj")):
        np.testing.assert_allclose(values(ds, f"blocks.1.mlp.{view}"), svd(state[p + f"mlp.{tensor}.weight"]),
                                   rtol=1e-5)
    np.testing.assert_allclose(values(ds, "W_U"), svd(state["lm_head.weight"]), rtol=1e-5)
    assert ds.rows.sel(matrix="W_U").item() == D and ds.kind.sel(matrix="W_U").item() == "unembed"


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_checkpoint_equals_the_bridge_loaded_from_the_same_folder(which, gpt2_folder, llama_folder):
    from workbench.models import load_model

    folder = gpt2_folder if which == "gpt2" else llama_folder
    write_tokenizer(folder)
    reference = layer_spectra(load_model(folder, device="cpu"), progress=False, device="cpu")
    ds = layer_spectra(folder, progress=False, device="cpu")
    names = list(ds.matrix.values)
    expected = [m for m in reference.matrix.values if not (which == "gpt2" and m == "W_U")]  # tied: listed once
    assert names == expected
    ref = reference.sel(matrix=names)
    np.testing.assert_allclose(ds.singular_value.values, ref.singular_value.values, rtol=1e-5, atol=1e-7)
    for coord in ("kind", "layer", "head", "rows", "cols"):
        assert (ds[coord].values == ref[coord].values).all(), coord
    np.testing.assert_allclose(ds.stable_rank.values, ref.stable_rank.values, rtol=1e-5)
    assert set(ds.data_vars) == set(reference.data_vars)


def test_a_list_of_checkpoints_stacks_over_a_checkpoint_dim(tmp_path):
    folders = [tmp_path / f"step{s}" for s in (0, 1)]
    for seed, folder in enumerate(folders):
        write_sharded(folder, gpt2_state(seed), GPT2_CONFIG)
    ds = layer_spectra(folders, kinds=("weights",), per_head=False, progress=False, device="cpu")
    assert ds.singular_value.dims == ("checkpoint", "matrix", "index")
    assert ds.checkpoint.values.tolist() == [str(f) for f in folders]
    for folder, step in zip(folders, ds.checkpoint.values):
        alone = layer_spectra(folder, kinds=("weights",), per_head=False, progress=False, device="cpu")
        np.testing.assert_array_equal(ds.singular_value.sel(checkpoint=step).values, alone.singular_value.values)
    assert not np.allclose(ds.singular_value[0].values, ds.singular_value[1].values)


def test_single_file_without_config_gives_whole_matrices_and_says_why_no_heads(tmp_path):
    state = gpt2_state(0, n_layers=1, d=16)
    save_file(state, tmp_path / "model.safetensors")
    ds = layer_spectra(tmp_path / "model.safetensors", progress=False, device="cpu")
    assert "blocks.0.attn.W_Q[0]" not in ds.matrix.values and "blocks.0.attn.OV[0]" not in ds.matrix.values
    np.testing.assert_allclose(values(ds, "blocks.0.attn.W_V"), svd(state["transformer.h.0.attn.c_attn.weight"][:, 32:]),
                               rtol=1e-5)
    assert any(s.startswith("per-head slices: no head count") for s in ds.attrs["skipped"])


def test_float16_checkpoint_is_widened_and_matches_its_float64_spectrum(tmp_path):
    W = torch.randn(96, 64, generator=torch.Generator().manual_seed(3)).half()
    save_file({"model.layers.0.mlp.down_proj.weight": W}, tmp_path / "model.safetensors")
    ds = layer_spectra(tmp_path, progress=False, device="cpu", dtype="float64")
    np.testing.assert_allclose(values(ds, "blocks.0.mlp.W_out"), svd(W.double().numpy()), rtol=1e-10)
    assert ds.singular_value.dtype == np.float64 and ds.attrs["dtype"] == "float64"


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_header_shapes_equal_the_loaded_matrices(which, gpt2_folder, llama_folder):
    from workbench.spectra.checkpoint import open_checkpoint

    ckpt = open_checkpoint(gpt2_folder if which == "gpt2" else llama_folder)
    assert [ckpt.shape(s) for s in ckpt.specs] == [tuple(ckpt.matrix(s).shape) for s in ckpt.specs]


def test_a_head_count_that_does_not_divide_the_matrix(tmp_path):
    write_sharded(tmp_path, llama_state(1), {**LLAMA_CONFIG, "num_key_value_heads": 3})
    with pytest.raises(ValueError, match=r"model: model\.layers\.0\.self_attn\.k_proj\.weight has 32 head "
                                         r"dimensions, not a multiple of the 3 heads of config\.json"):
        layer_spectra(tmp_path, progress=False, device="cpu")
