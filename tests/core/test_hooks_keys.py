"""Cache keys (workbench.hooks.keys) against their documented recipe, computed here with hashlib and json."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from workbench import __version__
from workbench.hooks.keys import (ARCHITECTURE_FIELDS, PROCESSING_FLAGS, cache_key, model_description, model_id,
                                  tokenizer_id, tokens_sha256, weights_sha256)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Toy(torch.nn.Module):
    def __init__(self, dtype=torch.float32, **cfg):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2, dtype=dtype)
        self.register_buffer("scale", torch.arange(4, dtype=dtype))
        self.cfg = SimpleNamespace(**cfg)


def _weights_recipe(model: torch.nn.Module) -> str:
    """sha256 over the sorted state dict: 'name|dtype|shape|' then the raw bytes (bfloat16 as int16)."""
    digest = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        t = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
        digest.update(t.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_cache_key_is_the_sha256_of_canonical_json():
    description = {"model_id": "m", "architecture": {"n_layers": 2, "act_fn": None}}
    key = cache_key(description, "abc", "blocks.0.attn.hook_z", "float16")
    payload = {"model": description, "tokens_sha256": "abc", "hooks": ["blocks.0.attn.hook_z"],
               "dtype": "float16", "workbench": __version__}
    assert key == _sha(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    # every input matters
    others = [cache_key({"model_id": "n"}, "abc", "h", "float16"), cache_key(description, "abd", "h", "float16"),
              cache_key(description, "abc", "h2", "float16"), cache_key(description, "abc", "h", "float32")]
    assert len({key, cache_key(description, "abc", "h", "float16"), *others}) == 6


def test_tokens_sha256_hashes_shape_and_int64_ids():
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    expected = _sha(b"(2, 3)|" + ids.astype(np.int64).tobytes())
    assert tokens_sha256(torch.tensor(ids)) == expected
    assert tokens_sha256(torch.tensor(ids, dtype=torch.int32)) == expected        # widened, same ids, same key
    assert tokens_sha256(torch.tensor(ids).T.contiguous().T) == expected           # memory layout does not matter
    assert tokens_sha256(torch.tensor(ids.reshape(3, 2))) != expected              # same bytes, other shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weights_sha256_follows_the_recipe_and_every_change(dtype):
    model = _Toy(dtype)
    first = weights_sha256(model)
    assert first == _weights_recipe(model)
    assert weights_sha256(model) == first                                           # memoised, same value
    with torch.no_grad():
        model.lin.weight[0, 0] += 1                                                 # in place
    assert weights_sha256(model) == _weights_recipe(model) != first
    second = weights_sha256(model)
    model.lin.bias = torch.nn.Parameter(model.lin.bias.detach().clone() + 1)        # replaced
    assert weights_sha256(model) == _weights_recipe(model) != second


def test_weights_sha256_includes_names_dtypes_and_shapes():
    a, b = _Toy(), _Toy()
    b.load_state_dict(a.state_dict())
    assert weights_sha256(a) == weights_sha256(b)
    b.scale = b.scale.reshape(2, 2)                                                  # same bytes, other shape
    assert weights_sha256(b) != weights_sha256(a)
    c = _Toy()
    c.load_state_dict(a.state_dict())
    c.register_buffer("scale", a.scale.clone().view(torch.int32))                   # same bytes, other dtype
    assert weights_sha256(c) != weights_sha256(a)


class _Backend:
    def to_str(self) -> str:
        return '{"model": "bpe"}'


def test_tokenizer_id():
    assert tokenizer_id(SimpleNamespace()) == "none"
    assert tokenizer_id(SimpleNamespace(tokenizer=None)) == "none"
    fast = SimpleNamespace(tokenizer=SimpleNamespace(backend_tokenizer=_Backend()))
    assert tokenizer_id(fast) == _sha(b'{"model": "bpe"}')[:16]
    vocab = {"b": 1, "a": 0}
    slow = SimpleNamespace(tokenizer=SimpleNamespace(get_vocab=lambda: vocab))
    assert tokenizer_id(slow) == _sha(json.dumps([["a", 0], ["b", 1]]).encode())[:16]


def test_model_id_prefers_the_workbench_id_then_the_config_name():
    model = _Toy(model_name="gpt-x")
    assert model_id(model) == "gpt-x"
    model.workbench_id = "tiny-attn-2l"
    assert model_id(model) == "tiny-attn-2l"
    assert model_id(_Toy()) == "_Toy"
    assert model_id(_Toy(model_name="")) == "_Toy"


def test_model_description_lists_every_field_as_json_values():
    cfg = {"n_layers": 2, "d_model": 8, "act_fn": None, "attn_only": True, "n_ctx": 16.5,
           "normalization_type": "LN", "positional_embedding_type": torch.float32, "fold_ln": False}
    model = _Toy(model_name="toy", **cfg)
    d = model_description(model)
    assert d["model_id"] == "toy" and d["tokenizer"] == "none" and d["weights_sha256"] == _weights_recipe(model)
    # plain JSON values stay as they are (bool stays bool, None stays None); anything else becomes its str
    expected_arch = {f: cfg.get(f) for f in ARCHITECTURE_FIELDS}
    expected_arch["positional_embedding_type"] = "torch.float32"
    assert d["architecture"] == expected_arch
    assert json.dumps(d["architecture"]) == json.dumps(expected_arch)
    assert d["processing"] == {f: cfg.get(f) for f in PROCESSING_FLAGS}
    assert d["processing"]["fold_ln"] is False and d["architecture"]["act_fn"] is None


def test_a_view_of_the_same_memory_is_not_served_from_the_memo():
    model = _Toy()
    model.register_buffer("square", torch.arange(4.0).reshape(2, 2))
    first = weights_sha256(model)
    model.square = model.square.T                     # same memory and version counter, other layout
    assert weights_sha256(model) == _weights_recipe(model) != first


def test_weights_sha256_hashes_once_until_something_changes(monkeypatch):
    import workbench.hooks.keys as keys

    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(keys.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    model = _Toy()
    first = weights_sha256(model)
    assert weights_sha256(model) == weights_sha256(model) == first and len(calls) == 1   # served from the memo
    with torch.no_grad():
        model.lin.bias.mul_(2)
    assert weights_sha256(model) != first and len(calls) == 2
