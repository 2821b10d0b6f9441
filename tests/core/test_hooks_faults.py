"""HookCache under faults: killed writers, damaged stores, concurrent readers, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.hooks import HookCache, StoreDamagedError
from tests.conftest import random_tokens

Z0 = "blocks.0.attn.hook_z"
REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, **kwargs)


def test_killed_writer_leaves_no_complete_store_and_next_call_recomputes(attn_model, tmp_path):
    root = tmp_path / "cache"
    child = run_python(f"""
        import torch
        from workbench.models import load_model
        from workbench.hooks import HookCache
        import workbench.hooks.store as store
        real = store.StoreWriter.write
        def write(self, start, values):
            real(self, start, values)
            print("CHUNK", start, flush=True)
        store.StoreWriter.write = write
        model = load_model("tiny-attn-2l", device="cpu")
        tokens = torch.randint(1, model.cfg.d_vocab, (400, 32), generator=torch.Generator().manual_seed(0))
        HookCache({str(root)!r}).activations(model, tokens, "{Z0}", batch_size=1, progress=False)
        print("FINISHED", flush=True)
    """)
    seen = 0
    deadline = time.time() + 120
    while seen < 3 and time.time() < deadline:
        line = child.stdout.readline()
        assert "FINISHED" not in line, "the writer finished before it could be killed"
        seen += line.startswith("CHUNK")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert seen == 3

    cache = HookCache(root)
    assert cache.list() == []  # the half-written store is never listed as complete
    leftovers = list(root.glob("*.tmp-*"))
    assert len(leftovers) == 1

    tokens = torch.randint(1, attn_model.cfg.d_vocab, (400, 32), generator=torch.Generator().manual_seed(0))
    ds = cache.activations(attn_model, tokens, Z0, batch_size=64, progress=False)
    _, ref = attn_model.run_with_cache(tokens[:50], names_filter=[Z0])
    np.testing.assert_allclose(ds[Z0].values[:50], ref[Z0].numpy(), atol=1e-6)
    assert not any(p.exists() for p in leftovers)  # the dead writer's folder was swept
    assert [e["status"] for e in cache.list()] == ["ok"]


def _store_chunks(cache: HookCache, key: str) -> list[Path]:
    return sorted(p for p in (cache.path(key) / Z0 / "c").rglob("*") if p.is_file())


def test_flipped_bytes_in_a_chunk_fail_the_checksum(attn_model, hook_cache):
    tokens = random_tokens(attn_model, 8, 16)
    key = hook_cache.activations(attn_model, tokens, Z0, batch_size=4, progress=False).attrs["cache_keys"][0]
    chunk = _store_chunks(hook_cache, key)[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    ds = hook_cache.activations(attn_model, tokens, Z0, progress=False)
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        ds[Z0].values


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_missing_or_truncated_chunks_are_reported(attn_model, hook_cache, damage):
    tokens = random_tokens(attn_model, 8, 16)
    key = hook_cache.activations(attn_model, tokens, Z0, batch_size=4, progress=False).attrs["cache_keys"][0]
    chunk = _store_chunks(hook_cache, key)[1]
    if damage == "delete":
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[:10])
    with pytest.raises(StoreDamagedError, match=key):
        hook_cache.activations(attn_model, tokens, Z0, progress=False)
    assert hook_cache.list()[0]["status"].startswith("damaged")
    hook_cache.clear(key)  # the documented way out; the next call recomputes
    ds = hook_cache.activations(attn_model, tokens, Z0, progress=False)
    assert np.isfinite(ds[Z0].values).all()


def test_two_processes_reading_one_store_get_identical_data(attn_model, hook_cache):
    tokens = random_tokens(attn_model, 12, 32)
    ds = hook_cache.activations(attn_model, tokens, Z0, batch_size=3, progress=False)
    expected = ds[Z0].values
    code = f"""
        import hashlib, torch
        from workbench.models import load_model
        from workbench.hooks import HookCache
        model = load_model("tiny-attn-2l", device="cpu")
        tokens = torch.randint(1, model.cfg.d_vocab, (12, 32), generator=torch.Generator().manual_seed(0))
        import workbench.hooks.cache as c
        c.compute_hooks = None  # reading must not need the model to run
        ds = HookCache({str(hook_cache.root)!r}).activations(model, tokens, "{Z0}", progress=False)
        print(hashlib.sha256(ds["{Z0}"].values.tobytes()).hexdigest())
    """
    readers = [run_python(code) for _ in range(2)]
    outputs = [r.communicate(timeout=180) for r in readers]
    digests = [out.strip().splitlines()[-1] for out, _ in outputs]
    import hashlib

    assert all(r.returncode == 0 for r in readers), [err[-2000:] for _, err in outputs]
    assert digests[0] == digests[1] == hashlib.sha256(expected.tobytes()).hexdigest()


def test_bad_input_gets_clear_errors(attn_model, hook_cache):
    tokens = random_tokens(attn_model, 2, 8)
    with pytest.raises(ValueError, match=r"hooks: 'blocks.0.attn.hook_zz'.*blocks.0.attn.hook_z"):
        hook_cache.activations(attn_model, tokens, "blocks.0.attn.hook_zz")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 2048\)"):
        hook_cache.activations(attn_model, tokens + 5000, Z0)
    negative = tokens.clone()
    negative[1, 3] = -1
    with pytest.raises(ValueError, match=r"ids must lie"):
        hook_cache.activations(attn_model, negative, Z0)
    with pytest.raises(ValueError, match="non-empty 2-D"):
        hook_cache.activations(attn_model, torch.zeros((0, 8), dtype=torch.long), Z0)
    with pytest.raises(ValueError, match="non-empty 2-D"):
        hook_cache.activations(attn_model, tokens[0], Z0)
    with pytest.raises(ValueError, match="integer token ids"):
        hook_cache.activations(attn_model, tokens.float(), Z0)
    with pytest.raises(ValueError, match="model is on cpu"):
        hook_cache.activations(attn_model, tokens.to("meta"), Z0)
    with pytest.raises(ValueError, match="n_ctx"):
        hook_cache.activations(attn_model, random_tokens(attn_model, 1, attn_model.cfg.n_ctx + 1), Z0)
    with pytest.raises(ValueError, match="batch_size"):
        hook_cache.activations(attn_model, tokens, Z0, batch_size=0)
    with pytest.raises(ValueError, match="dtype"):
        hook_cache.activations(attn_model, tokens, Z0, dtype="bfloat16")
    assert hook_cache.list() == []  # nothing half-made was left behind


@pytest.mark.parametrize("writes", [False, True])
def test_a_writer_on_another_host_is_swept_only_after_an_hour_without_a_chunk(tmp_path, writes):
    """A pid from another host means nothing here, so only the heartbeat decides; chunks land in
    subfolders, so every write (local or a cluster worker's) must refresh the folder itself."""
    import json

    from workbench.hooks.store import WRITER, StoreWriter, sweep_stale, write_region

    writer = StoreWriter(tmp_path / "key.zarr", "x", ("seq", "d"), (4, 3), chunk=2)
    (writer.tmp / WRITER).write_text(json.dumps({"pid": os.getpid(), "host": "another-node"}))
    two_hours_ago = time.time() - 7200
    os.utime(writer.tmp, (two_hours_ago, two_hours_ago))
    if writes:
        writer.write(0, np.ones((2, 3), "float32"))
        os.utime(writer.tmp, (two_hours_ago, two_hours_ago))
        write_region(writer.array_path, 2, np.zeros((2, 3), "float32"))  # a cluster worker's chunk
    assert sweep_stale(tmp_path) == (0 if writes else 1)
    assert writer.tmp.exists() == writes


def test_a_live_writer_on_this_host_is_never_swept_however_idle(tmp_path):
    from workbench.hooks.store import StoreWriter, sweep_stale

    writer = StoreWriter(tmp_path / "key.zarr", "x", ("seq", "d"), (4, 3), chunk=2)
    os.utime(writer.tmp, (0, 0))
    assert sweep_stale(tmp_path) == 0 and writer.tmp.exists()
    with pytest.raises(ValueError, match="older_than"):
        sweep_stale(tmp_path, older_than=0)


def test_cache_clear_while_another_process_writes_lets_the_write_complete(attn_model, tmp_path):
    """`workbench cache clear` used to sweep every temporary store (age 0): the writer died."""
    root = tmp_path / "cache"
    child = run_python(f"""
        import sys, torch
        from workbench.models import load_model
        from workbench.hooks import HookCache
        import workbench.hooks.store as store
        real = store.StoreWriter.write
        def write(self, start, values):
            real(self, start, values)
            if start == 0:
                print("CHUNK", flush=True)
                sys.stdin.readline()  # hold here until the parent has cleared the cache
        store.StoreWriter.write = write
        model = load_model("tiny-attn-2l", device="cpu")
        tokens = torch.randint(1, model.cfg.d_vocab, (8, 16), generator=torch.Generator().manual_seed(0))
        ds = HookCache({str(root)!r}).activations(model, tokens, "{Z0}", batch_size=2, progress=False)
        print("FINISHED", float(abs(ds["{Z0}"]).sum()), flush=True)
    """, stdin=subprocess.PIPE)
    assert child.stdout.readline().startswith("CHUNK"), child.stderr.read()[-2000:]
    assert len(list(root.glob("*.tmp-*"))) == 1
    subprocess.run([sys.executable, "-m", "workbench.cli", "cache", "clear", "--yes", "--cache", str(root)], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True)
    assert len(list(root.glob("*.tmp-*"))) == 1  # the live writer's folder is still there
    out, err = child.communicate("go\n", timeout=120)
    assert child.returncode == 0, err[-2000:]
    assert "FINISHED" in out
    assert [e["status"] for e in HookCache(root).list()] == ["ok"]


def test_a_store_copied_under_another_key_is_refused(attn_model, hook_cache):
    import shutil

    first = hook_cache.activations(attn_model, random_tokens(attn_model, 4, 8, seed=1), Z0, progress=False)
    tokens = random_tokens(attn_model, 4, 8, seed=2)
    second = hook_cache.activations(attn_model, tokens, Z0, progress=False)
    source, target = (hook_cache.path(ds.attrs["cache_keys"][0]) for ds in (first, second))
    shutil.rmtree(target)
    shutil.copytree(source, target)
    with pytest.raises(StoreDamagedError, match="another key"):
        hook_cache.activations(attn_model, tokens, Z0, progress=False)


def test_a_chunk_deleted_with_its_manifest_entry_is_caught(attn_model, hook_cache):
    """Deleting a chunk and its line in the manifest used to read back as NaN (zarr's fill value)."""
    import json

    from workbench.hooks.store import MANIFEST

    tokens = random_tokens(attn_model, 8, 16)
    key = hook_cache.activations(attn_model, tokens, Z0, batch_size=4, progress=False).attrs["cache_keys"][0]
    chunk = _store_chunks(hook_cache, key)[1]
    manifest_path = hook_cache.path(key) / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["files"][chunk.relative_to(hook_cache.path(key)).as_posix()]
    manifest_path.write_text(json.dumps(manifest))
    chunk.unlink()
    with pytest.raises(StoreDamagedError, match="checksum"):
        hook_cache.activations(attn_model, tokens, Z0, progress=False)
