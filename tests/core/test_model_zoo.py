"""Model zoo: bundled models carry real structure; every loading path stays real and offline-safe."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from workbench.data.corpus import load_corpus
from workbench.models import induction_scores, list_models, load_model, mean_loss, tokenize
from workbench.models.diagnostics import unigram_entropy
from workbench.models.zoo import MODELS_DIR


def test_bundled_models_are_listed_small_and_pickle_free():
    assert list_models() == ["tiny-attn-2l", "tiny-gelu-2l"]
    for name in list_models():
        folder = MODELS_DIR / name
        files = {p.name for p in folder.iterdir()}
        assert files == {"config.json", "model.safetensors", "tokenizer.json"}
        assert sum(p.stat().st_size for p in folder.iterdir()) < 20 * 2**20


def test_attention_only_model_has_no_mlp_and_exposes_hook_z(attn_model, gelu_model):
    assert attn_model.cfg.attn_only and not gelu_model.cfg.attn_only
    assert "blocks.1.attn.hook_z" in attn_model.hook_dict
    assert not any(".mlp." in k for k in attn_model.state_dict())
    assert any(".mlp." in k for k in gelu_model.state_dict())


def test_tiny_attn_has_a_layer1_induction_head(attn_model):
    scores = induction_scores(attn_model, n_seqs=16, period=50, seed=123)
    assert float(scores.sel(layer=1).max()) >= 0.4, scores.values
    # A previous-token-free layer 0 cannot do induction on its own
    assert float(scores.sel(layer=0).max()) < float(scores.sel(layer=1).max())


@pytest.mark.parametrize("name", ["tiny-attn-2l", "tiny-gelu-2l"])
def test_held_out_loss_is_clearly_below_the_unigram_entropy(name):
    model = load_model(name, device="cpu")
    tokenizer = model.tokenizer
    held = np.asarray(tokenizer(load_corpus("held_out")[:60_000], add_special_tokens=False)["input_ids"])
    train = np.asarray(tokenizer(load_corpus("train")[:2_000_000], add_special_tokens=False)["input_ids"])
    windows = torch.from_numpy(held[: (held.size // 127) * 127].reshape(-1, 127))
    tokens = torch.cat([torch.zeros((len(windows), 1), dtype=torch.long), windows], dim=1)
    loss = mean_loss(model, tokens)
    baseline = unigram_entropy(train, held, model.cfg.d_vocab)
    assert loss < baseline - 1.0, (loss, baseline)
    recorded = json.loads((MODELS_DIR / name / "config.json").read_text())["training"]
    assert recorded["held_out_loss_nats"] < recorded["unigram_entropy_nats"] - 1.0


def test_tokenize_prepends_bos_pads_and_truncates(attn_model):
    tokens = tokenize(attn_model, ["import os", "x" * 500], seq_len=12)
    assert tokens.shape == (2, 12) and tokens.dtype == torch.long
    assert (tokens[:, 0] == attn_model.tokenizer.bos_token_id).all()
    assert attn_model.tokenizer.decode(tokens[0, 1:3]) == "import os"
    assert (tokens[0, 3:] == attn_model.tokenizer.pad_token_id).all()
    with pytest.raises(ValueError, match="texts"):
        tokenize(attn_model, [], seq_len=4)
    with pytest.raises(ValueError, match="seq_len"):
        tokenize(attn_model, "x", seq_len=0)


def test_a_local_hugging_face_folder_loads_through_the_bridge(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=300, n_positions=64,
                        bos_token_id=0, eos_token_id=0)
    reference = GPT2LMHeadModel(config).eval()
    reference.save_pretrained(tmp_path)
    model = load_model(tmp_path, device="cpu")
    tokens = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        np.testing.assert_allclose(model(tokens).numpy(), reference(tokens).logits.numpy(), atol=1e-4)
    _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_z"])
    assert cache["blocks.0.attn.hook_z"].shape == (2, 10, 4, 16)


def test_an_uncached_hub_name_offline_fails_fast_naming_the_bundled_models(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(ValueError, match="tiny-attn-2l, tiny-gelu-2l"):
        load_model("someone/some-model-that-is-not-cached")
    assert time.time() - start < 10


def test_bad_model_arguments_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="name_or_path"):
        load_model("")
    with pytest.raises(ValueError, match="holds no config.json"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="neither a bundled model"):
        load_model("./no/such/folder")
    with pytest.raises(ValueError, match="device"):
        load_model("tiny-attn-2l", device="tpu:7")
