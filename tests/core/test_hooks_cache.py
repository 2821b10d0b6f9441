"""HookCache: values equal a direct forward pass; stores are reused, extended, and described."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench.hooks.cache as cache_module
from workbench.hooks import HookCache
from workbench.hooks.store import StoreDamagedError
from tests.conftest import random_tokens

Z0 = "blocks.0.attn.hook_z"
Z1 = "blocks.1.attn.hook_z"
RESID1 = "blocks.1.hook_resid_post"
PATTERN1 = "blocks.1.attn.hook_pattern"


def reference(model, tokens, hooks):
    _, cache = model.run_with_cache(tokens, names_filter=list(hooks))
    return {h: cache[h].numpy() for h in hooks}


def test_values_dims_and_provenance_match_a_direct_forward_pass(attn_model, hook_cache, corpus_tokens):
    hooks = [Z0, RESID1, PATTERN1]
    ds = hook_cache.activations(attn_model, corpus_tokens, hooks, batch_size=5, progress=False)
    ref = reference(attn_model, corpus_tokens, hooks)
    for hook in hooks:
        np.testing.assert_allclose(ds[hook].values, ref[hook], rtol=1e-5, atol=1e-6)
    assert ds[Z0].dims == ("seq", "pos", "head", "d_head")
    assert ds[RESID1].dims == ("seq", "pos", "d_model")
    assert ds[PATTERN1].dims == ("seq", "head", "dest", "src")
    assert ds[Z0].chunks[0] == (5, 5, 5, 1)  # lazily backed by the zarr chunks
    np.testing.assert_array_equal(ds["tokens"].values, corpus_tokens.numpy())
    assert ds.attrs["model_id"] == "tiny-attn-2l" and len(ds.attrs["cache_keys"]) == 3


def test_second_call_reads_the_store_without_running_the_model(attn_model, hook_cache, monkeypatch):
    tokens = random_tokens(attn_model, 6, 32)
    first = hook_cache.activations(attn_model, tokens, [Z0, Z1], progress=False).load()

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran although everything was cached")

    monkeypatch.setattr(cache_module, "compute_hooks", must_not_run)
    second = hook_cache.activations(attn_model, tokens, [Z1, Z0], progress=False)
    np.testing.assert_array_equal(second[Z0].values, first[Z0].values)
    np.testing.assert_array_equal(second[Z1].values, first[Z1].values)


def test_extra_hooks_compute_only_the_missing_ones(attn_model, hook_cache, monkeypatch):
    tokens = random_tokens(attn_model, 4, 16)
    hook_cache.activations(attn_model, tokens, [Z0], progress=False)
    asked = []
    real = cache_module.compute_hooks

    def recording(model, toks, hooks, dtype):
        asked.append(tuple(hooks))
        return real(model, toks, hooks, dtype)

    monkeypatch.setattr(cache_module, "compute_hooks", recording)
    ds = hook_cache.activations(attn_model, tokens, [Z0, RESID1], progress=False)
    assert asked and all(hooks == (RESID1,) for hooks in asked)
    np.testing.assert_allclose(ds[RESID1].values, reference(attn_model, tokens, [RESID1])[RESID1], atol=1e-6)


def test_different_tokens_weights_or_dtype_get_different_stores(attn_model, hook_cache):
    a = random_tokens(attn_model, 2, 8, seed=1)
    b = random_tokens(attn_model, 2, 8, seed=2)
    ka = hook_cache.activations(attn_model, a, Z0, progress=False).attrs["cache_keys"]
    kb = hook_cache.activations(attn_model, b, Z0, progress=False).attrs["cache_keys"]
    k16 = hook_cache.activations(attn_model, a, Z0, dtype="float16", progress=False).attrs["cache_keys"]
    assert len({ka[0], kb[0], k16[0]}) == 3


def test_weight_change_invalidates_the_key(hook_cache):
    from workbench.models import load_model

    model = load_model("tiny-attn-2l", device="cpu")
    tokens = random_tokens(model, 2, 8)
    before = hook_cache.activations(model, tokens, Z0, progress=False)
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)
    after = hook_cache.activations(model, tokens, Z0, progress=False)
    assert before.attrs["cache_keys"] != after.attrs["cache_keys"]


def test_list_info_and_clear(attn_model, hook_cache):
    tokens = random_tokens(attn_model, 3, 8)
    ds = hook_cache.activations(attn_model, tokens, [Z0, RESID1], progress=False)
    entries = hook_cache.list()
    assert {e["hook"] for e in entries} == {Z0, RESID1}
    assert all(e["status"] == "ok" and e["nbytes"] > 0 and e["n_seq"] == 3 for e in entries)
    info = hook_cache.info(ds.attrs["cache_keys"][0])
    assert info["hook"] in (Z0, RESID1) and info["model_id"] == "tiny-attn-2l"
    assert hook_cache.clear(hook=Z0) == 1
    assert [e["hook"] for e in hook_cache.list()] == [RESID1]
    assert hook_cache.clear() == 1 and hook_cache.list() == []
    with pytest.raises(ValueError, match="key"):
        hook_cache.info("not-a-key")


def test_default_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "elsewhere"))
    # $WORKBENCH_CACHE names the workbench folder; the hook stores live in its "hooks" folder, where the
    # dashboard (page cache_dir = the same folder) and `workbench cache --cache` look too
    assert HookCache().root == tmp_path / "elsewhere" / "hooks"


def test_info_and_clear_take_the_unique_prefixes_the_cli_takes(tmp_path):
    cache = HookCache(tmp_path)
    first, second, other = "ab" + "0" * 62, "ac" + "0" * 62, "cd" + "1" * 62
    for key in (first, second, other):
        (cache.root / f"{key}.zarr").mkdir()
    with pytest.raises(ValueError, match=r"prefix 'a' matches 2 stores \(ab0000000000\.\.\., ac0000000000\.\.\.\)"):
        cache.info("a")
    with pytest.raises(ValueError, match="prefix 'a' matches 2 stores"):
        cache.clear("a")
    with pytest.raises(KeyError, match=r"no cached store 'ef'.*the stores are ab0000000000\.\.\., ac0000000000"):
        cache.clear("ef")
    assert len(cache.list()) == 3  # neither an ambiguous nor an unknown prefix removed anything
    with pytest.raises(StoreDamagedError, match=other):  # the prefix found the store (an empty folder: damaged)
        cache.info("cd1")
    assert cache.clear("cd") == 1 and cache.clear(second) == 1  # a prefix, then a full key
    assert [e["key"] for e in cache.list()] == [first]
