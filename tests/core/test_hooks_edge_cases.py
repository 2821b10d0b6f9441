"""HookCache edge cases from an adversarial sweep, checked against a direct forward pass or intact stores."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.hooks import HookCache, StoreDamagedError
from workbench.hooks.store import MANIFEST
from tests.conftest import random_tokens

Z0 = "blocks.0.attn.hook_z"
Z1 = "blocks.1.attn.hook_z"


def reference(model, tokens, hook):  # one batch: compare with rtol=atol=1e-5 (float32 batching)
    _, cache = model.run_with_cache(tokens, names_filter=[hook])
    return cache[hook].numpy()


def test_store_without_manifest_is_listed_reported_and_clearable(attn_model, hook_cache):
    tokens = random_tokens(attn_model, 4, 8)
    key = hook_cache.activations(attn_model, tokens, Z0, progress=False).attrs["cache_keys"][0]
    (hook_cache.path(key) / MANIFEST).unlink()  # e.g. a partial copy of the cache folder

    [entry] = hook_cache.list()  # documented: incomplete or damaged stores are listed, with a status
    assert entry["key"] == key and entry["status"].startswith("damaged")
    with pytest.raises(StoreDamagedError, match=key):
        hook_cache.info(key)
    with pytest.raises(StoreDamagedError, match=key):  # not an OSError from renaming over it
        hook_cache.activations(attn_model, tokens, Z0, progress=False)

    assert hook_cache.clear() == 1  # "everything" includes it
    ds = hook_cache.activations(attn_model, tokens, Z0, progress=False)
    np.testing.assert_allclose(ds[Z0].values, reference(attn_model, tokens, Z0), rtol=1e-5, atol=1e-5)


def test_interrupted_call_keeps_complete_hooks_and_the_next_call_finishes(attn_model, hook_cache):
    tokens = random_tokens(attn_model, 10, 8, seed=2)
    before = hook_cache.activations(attn_model, tokens, Z0, progress=False)[Z0].values

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hook_cache.activations(attn_model, tokens, [Z0, Z1], batch_size=3, progress=stop)
    assert [e["hook"] for e in hook_cache.list()] == [Z0]
    ds = HookCache(hook_cache.root).activations(attn_model, tokens, [Z0, Z1], batch_size=3, progress=False)
    np.testing.assert_array_equal(ds[Z0].values, before)
    np.testing.assert_allclose(ds[Z1].values, reference(attn_model, tokens, Z1), rtol=1e-5, atol=1e-5)
    assert sorted(e["status"] for e in hook_cache.list()) == ["ok", "ok"]


def test_numpy_int_batch_size_is_accepted(attn_model, hook_cache):
    tokens = random_tokens(attn_model, 5, 8)
    ds = hook_cache.activations(attn_model, tokens, Z0, batch_size=np.int64(2), progress=False)
    assert ds[Z0].chunks[0] == (2, 2, 1)
    np.testing.assert_allclose(ds[Z0].values, reference(attn_model, tokens, Z0), rtol=1e-5, atol=1e-5)


def test_hook_dims_without_a_config_names_the_argument():
    from workbench.hooks.dims import hook_dims

    with pytest.raises(TypeError, match=r"cfg: expected a model config with n_heads, d_head, d_model, d_vocab"):
        hook_dims("blocks.0.attn.hook_z", (2, 3, 4, 5), None)


def test_a_lone_surrogate_in_a_prompt_is_named_not_a_tokenizer_type_error(attn_model):
    from workbench.models import tokenize

    with pytest.raises(ValueError, match=r"texts: text 1 is not valid Unicode: '\\ud83d' at character 3"):
        tokenize(attn_model, ["ok", "abc\ud83d"], seq_len=8)
