"""HookCache.activations' progress callback: (done, total) chunks, monotone, ending at the stored chunks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import random_tokens

Z0 = "blocks.0.attn.hook_z"
RESID1 = "blocks.1.hook_resid_post"


class Stop(Exception):
    pass


def test_progress_counts_every_chunk_up_to_the_stored_ones(attn_model, hook_cache, tmp_path):
    from workbench.hooks import HookCache

    tokens = random_tokens(attn_model, 11, 8)
    calls = []
    ds = hook_cache.activations(attn_model, tokens, [Z0, RESID1], batch_size=3,
                                progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]  # ceil(11 / 3) chunks
    assert [len(ds[h].chunks[0]) for h in (Z0, RESID1)] == [4, 4]  # the final state is what was stored
    quiet = HookCache(tmp_path / "quiet").activations(attn_model, tokens, [Z0, RESID1], progress=False)
    np.testing.assert_array_equal(ds[Z0].values, quiet[Z0].values)
    again = []
    hook_cache.activations(attn_model, tokens, [Z0, RESID1], batch_size=3, progress=lambda *c: again.append(c))
    assert again == []  # all cached: nothing to report


def test_raising_in_progress_cancels_and_removes_the_unfinished_stores(attn_model, hook_cache):
    tokens = random_tokens(attn_model, 10, 8, seed=1)

    def stop_after_two(done, total):
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        hook_cache.activations(attn_model, tokens, [Z0], batch_size=2, progress=stop_after_two)
    assert hook_cache.list() == [] and not list(hook_cache.root.glob("*.zarr"))


def test_progress_on_a_cluster_counts_finished_chunks(attn_model, hook_cache):
    from distributed import Client, LocalCluster

    tokens = random_tokens(attn_model, 6, 8, seed=2)
    calls = []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        ds = hook_cache.activations(attn_model, tokens, [Z0], batch_size=2, client=client,
                                    progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert len(ds[Z0].chunks[0]) == 3
