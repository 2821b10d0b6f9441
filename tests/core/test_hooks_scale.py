"""HookCache beyond one chunk: bounded memory while writing, and a dask.distributed cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import random_tokens

REPO = Path(__file__).resolve().parents[2]
HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]


def test_caching_20_chunks_keeps_peak_memory_near_one_chunk(tmp_path):
    # One chunk: 32 seqs x 128 pos x 4 hooks x 128 floats = 8 MiB. Two first runs over
    # 4 chunks set the streaming peak (forward temporaries, one chunk computed, one
    # written); caching 20 chunks must then raise the peak by a few chunks at most
    # (allocator noise: 0-3 chunks measured), where holding the activations in
    # memory would raise it by about 16-20.
    code = f"""
        import json, resource, torch
        from workbench.models import load_model
        from workbench.hooks import HookCache
        model = load_model("tiny-gelu-2l", device="cpu")
        gen = torch.Generator().manual_seed(0)
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        for warm in range(2):  # first calls also load code and fill allocator pools
            small = torch.randint(1, model.cfg.d_vocab, (4 * 32, 128), generator=gen)
            HookCache({str(tmp_path)!r} + f"/warm{{warm}}").activations(model, small, {HOOKS!r}, batch_size=32,
                                                                    progress=False)
        before = peak()
        tokens = torch.randint(1, model.cfg.d_vocab, (20 * 32, 128), generator=gen)
        ds = HookCache({str(tmp_path / 'big')!r}).activations(model, tokens, {HOOKS!r}, batch_size=32, progress=False)
        growth = peak() - before
        chunk = 32 * 128 * 128 * 4 * len({HOOKS!r})
        print(json.dumps({{"growth": growth, "chunk": chunk, "cached": sum(v.nbytes for v in ds.data_vars.values())}}))
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["cached"] == 20 * result["chunk"]
    assert result["growth"] < 5 * result["chunk"], result


def test_a_two_worker_local_cluster_writes_the_same_store(gelu_model, tmp_path):
    from distributed import Client, LocalCluster

    from workbench.hooks import HookCache

    tokens = random_tokens(gelu_model, 24, 32)
    local = HookCache(tmp_path / "local").activations(gelu_model, tokens, HOOKS[:3], batch_size=4, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        remote = HookCache(tmp_path / "cluster").activations(gelu_model, tokens, HOOKS[:3], batch_size=4,
                                                              client=client, progress=False)
        workers_used = len(client.scheduler_info()["workers"])
    assert workers_used == 2
    for hook in HOOKS[:3]:
        np.testing.assert_allclose(remote[hook].values, local[hook].values, atol=1e-6)


def test_a_cluster_needs_a_model_it_can_reload(hook_cache):
    from workbench.models import boot_native

    model = boot_native(dict(d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32, n_ctx=16, d_vocab=50,
                             act_fn="gelu", attn_only=True, normalization_type="LN"), device="cpu")
    tokens = random_tokens(model, 2, 8)
    with pytest.raises(ValueError, match="client: caching on a cluster needs a model loaded with"):
        hook_cache.activations(model, tokens, "blocks.0.attn.hook_z", client=object(), progress=False)
    assert hook_cache.list() == []
