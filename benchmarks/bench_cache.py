"""Benchmark: reading the zarr hook cache against recomputing the activations.

Caches ``hook_z`` and ``hook_resid_post`` of every layer of a randomly
initialised model with GPT-2-small shapes (12 layers, d_model 768, 12 heads,
vocab 50257) for a fixed token count, then times, interleaved, at least five
runs each of:

* the reference: the forward pass stopped at the last hooked block (what
  recomputing the cached activations needs; the unembedding is not run);
* a warm read: the whole cache read into memory right after it was read
  last (the OS page cache holds the store);
* a cold read: the same after ``os.sync()`` and ``posix_fadvise(DONTNEED)``
  on every file of the store, so its pages come from the disk again (the
  stores go under ``--store-dir``, default ``benchmarks/.envs/cache-stores``,
  on a disk: on tmpfs nothing can be dropped; the JSON records the file
  system);
* a write: the forward pass with caching into a fresh store.

Agreement: the cached activations of the first and last hooks equal a fresh
forward pass's to 1e-5 relative (float32 both).

    python benchmarks/bench_cache.py              # GPT-2-small shapes, 16,384 tokens, 1 thread
    python benchmarks/bench_cache.py --quick      # tiny-attn-2l, 1,024 tokens: agreement and the JSON only
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _harness import Report, arguments, interleave
from reference_envs import ENVS
from workbench.hooks import HookCache
from workbench.hooks.cache import _StopForward, _stop_hook_name
from workbench.models import boot_native, load_model

GPT2_SMALL = dict(d_model=768, n_layers=12, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, d_vocab=50257,
                  act_fn="gelu_new", attn_only=False, normalization_type="LN")
REFERENCE = "the model's forward pass stopped at the last hooked block (torch, float32, no caching)"


def hooks_for(model) -> list[str]:
    layers = range(model.cfg.n_layers)
    return [f"blocks.{i}.attn.hook_z" for i in layers] + [f"blocks.{i}.hook_resid_post" for i in layers]


@torch.no_grad()
def forward_to(model, tokens, batch_size: int, stop_at: str | None, keep: list[str] = ()) -> dict[str, np.ndarray]:
    """The forward pass over ``tokens`` in batches, stopped at ``stop_at``; the ``keep`` hooks' values."""
    kept: dict[str, list] = {name: [] for name in keep}

    def stop(tensor, hook):
        raise _StopForward

    def grab(name):
        return lambda tensor, hook: kept[name].append(tensor.detach().cpu().numpy().copy())

    fwd = [(name, grab(name)) for name in keep] + ([(stop_at, stop)] if stop_at else [])
    with model.hooks(fwd_hooks=fwd):
        for s in range(0, tokens.shape[0], batch_size):
            try:
                model(tokens[s:s + batch_size])
            except _StopForward:
                pass
    if tokens.device.type == "cuda":
        torch.cuda.synchronize()
    return {name: np.concatenate(v) for name, v in kept.items()}


def drop_page_cache(root: Path) -> None:
    """Ask the OS to drop the cached pages of every file under ``root`` (after writing them back)."""
    os.sync()
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def filesystem(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts; "?" where unknown)."""
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    except OSError:
        pass
    return kind


def bench_model(report: Report, name: str, model, n_tokens: int, seq_len: int, batch_size: int, repeats: int,
                store_dir: Path):
    hooks = hooks_for(model)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, model.cfg.d_vocab, (n_tokens // seq_len, seq_len), generator=gen).to(model.cfg.device)
    stop_at = _stop_hook_name(model, hooks)
    store_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-cache-", dir=store_dir))
    fs = filesystem(root)
    if fs in ("tmpfs", "ramfs"):
        print(f"warning: the store is on {fs}: a cold read cannot leave memory (use --store-dir on a disk)")
    store = root / "store"
    writes = iter(range(10**6))
    try:
        HookCache(store).activations(model, tokens, hooks, batch_size=batch_size, progress=False)

        def read():
            HookCache(store).activations(model, tokens, hooks, batch_size=batch_size, progress=False).load()

        def cold():
            drop_page_cache(store)
            start = time.perf_counter()
            read()
            return time.perf_counter() - start

        def write():
            target = root / f"write-{next(writes)}"
            start = time.perf_counter()
            HookCache(target).activations(model, tokens, hooks, batch_size=batch_size, progress=False)
            seconds = time.perf_counter() - start
            shutil.rmtree(target, ignore_errors=True)
            return seconds

        runs = interleave({"forward": lambda: forward_to(model, tokens, batch_size, stop_at),
                           "warm": read, "cold": cold, "write": write}, repeats=repeats)
        cached = HookCache(store).activations(model, tokens, hooks, batch_size=batch_size, progress=False)
        check = [hooks[0], hooks[-1]]
        fresh = forward_to(model, tokens, batch_size, stop_at, keep=check)
        report.check(f"cache {name}: cached = recomputed ({', '.join(check)})",
                     {h: cached[h].values.reshape(fresh[h].shape) for h in check}, fresh, rtol=1e-5, atol=1e-6,
                     dtype="float32")
        data_bytes = int(sum(v.nbytes for v in cached.data_vars.values()))
        disk = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    shape = dict(store_filesystem=fs, model=name, tokens=int(tokens.numel()), seq_len=seq_len, batch_size=batch_size, hooks=len(hooks),
                 data_mb=round(data_bytes / 2**20, 1), disk_mb=round(disk / 2**20, 1))
    checked = report.row(f"cache warm read, {name}, {tokens.numel()} tokens",
                         ours="HookCache warm read (OS page cache holds the store) into memory",
                         reference=REFERENCE, runs=runs, ours_key="warm", reference_key="forward", target=10.0,
                         **shape)
    report.row(f"cache cold read, {name}, {tokens.numel()} tokens", ours="HookCache cold read (sync + "
               "posix_fadvise DONTNEED on the store first) into memory", reference=REFERENCE, runs=runs,
               ours_key="cold", reference_key="forward", agreement=checked["agreement"], **shape)
    report.row(f"cache write, {name}, {tokens.numel()} tokens", ours="forward pass + writing the store (ratio < 1: "
               "1 / ratio - 1 is the write overhead; target <= 0.15)", reference=REFERENCE, runs=runs,
               ours_key="write", reference_key="forward", agreement=checked["agreement"], **shape)


def main(argv=None) -> None:
    parser = arguments(__doc__, "tiny-attn-2l, 1,024 tokens")
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--store-dir", type=Path, default=ENVS / "cache-stores",
                        help="where the stores are written (a disk, not tmpfs, for the cold read)")
    args = parser.parse_args(argv)
    report = Report("cache", args.threads, args.quick, argv)
    if args.quick:
        bench_model(report, "tiny-attn-2l", load_model("tiny-attn-2l", device=args.device), 1024, args.seq_len,
                    args.batch_size, args.repeats, args.store_dir)
    else:
        model = boot_native(GPT2_SMALL, device=args.device, name="gpt2-small-shapes-random")
        bench_model(report, "gpt2-small-shapes", model, args.tokens, args.seq_len, args.batch_size, args.repeats,
                    args.store_dir)
    report.write(args.out)


if __name__ == "__main__":
    main()
