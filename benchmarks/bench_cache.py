"""Benchmark: the zarr hook cache against running the model.

For the bundled models and a randomly initialised model with GPT-2-small
shapes (12 layers, d_model 768, 12 heads, vocab 50257), caches ``hook_z`` and
``hook_resid_post`` of every layer for a fixed token count and reports, in one
run, as ratios:

(a) forward pass with caching to zarr vs the forward pass alone (the full
    model call, and the same pass stopped after the last hooked block);
(b) warm read of the whole cache into memory vs recomputing it;
(c) peak memory growth while caching vs the data cached.

Targets (issue 2): write overhead <= 15% of the forward time; warm read >= 10x
faster than recomputing on the GPT-2-small shapes.

    python benchmarks/bench_cache.py [--tokens 16384] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

import workbench
from workbench.hooks import HookCache
from workbench.hooks.cache import _StopForward, _stop_hook_name
from workbench.models import boot_native, load_model

RESULTS = Path(__file__).resolve().parent / "results" / "cache.json"
GPT2_SMALL = dict(d_model=768, n_layers=12, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, d_vocab=50257,
                  act_fn="gelu_new", attn_only=False, normalization_type="LN")


def hooks_for(model) -> list[str]:
    layers = range(model.cfg.n_layers)
    return [f"blocks.{i}.attn.hook_z" for i in layers] + [f"blocks.{i}.hook_resid_post" for i in layers]


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def time_forward(model, tokens, batch_size, stop_at=None) -> float:
    def stop(tensor, hook):
        raise _StopForward

    fwd = [(stop_at, stop)] if stop_at else []
    sync(tokens.device)
    start = time.perf_counter()
    with model.hooks(fwd_hooks=fwd):
        for s in range(0, tokens.shape[0], batch_size):
            try:
                model(tokens[s:s + batch_size])
            except _StopForward:
                pass
    sync(tokens.device)
    return time.perf_counter() - start


def bench_model(name: str, model, n_tokens: int, seq_len: int, batch_size: int, device) -> dict:
    hooks = hooks_for(model)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, model.cfg.d_vocab, (n_tokens // seq_len, seq_len), generator=gen).to(device)
    root = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    try:
        # warm-up: kernels, allocator, imports
        HookCache(root / "warm").activations(model, tokens[:batch_size], hooks, batch_size=batch_size, progress=False)
        time_forward(model, tokens[:batch_size], batch_size)

        t_forward = min(time_forward(model, tokens, batch_size) for _ in range(2))
        stop_at = _stop_hook_name(model, hooks)
        t_forward_stopped = min(time_forward(model, tokens, batch_size, stop_at) for _ in range(2))

        rss_before = peak_rss()
        start = time.perf_counter()
        ds = HookCache(root / "cold").activations(model, tokens, hooks, batch_size=batch_size, progress=False)
        t_cache = time.perf_counter() - start
        rss_growth = peak_rss() - rss_before
        data_bytes = int(sum(v.nbytes for v in ds.data_vars.values()))

        start = time.perf_counter()
        warm = HookCache(root / "cold").activations(model, tokens, hooks, batch_size=batch_size, progress=False)
        warm.load()
        t_warm = time.perf_counter() - start
        disk = sum(p.stat().st_size for p in (root / "cold").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "model": name, "tokens": int(tokens.numel()), "seq_len": seq_len, "batch_size": batch_size,
        "hooks": len(hooks), "data_mb": round(data_bytes / 2**20, 1), "disk_mb": round(disk / 2**20, 1),
        "forward_s": round(t_forward, 3), "forward_to_last_hook_s": round(t_forward_stopped, 3),
        "cache_cold_s": round(t_cache, 3), "warm_read_s": round(t_warm, 3),
        "write_overhead_vs_forward": round(t_cache / t_forward - 1, 4),
        "write_overhead_vs_forward_to_last_hook": round(t_cache / t_forward_stopped - 1, 4),
        "warm_read_speedup_vs_recompute": round(t_forward / t_warm, 2),
        "peak_rss_growth_mb": round(rss_growth / 2**20, 1),
        "peak_rss_growth_vs_data": round(rss_growth / data_bytes, 4),
        "chunk_mb": round(data_bytes / (tokens.shape[0] / batch_size) / 2**20, 2),
    }
    print(json.dumps(result))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs = []
    for name in ("tiny-attn-2l", "tiny-gelu-2l"):
        runs.append(bench_model(name, load_model(name, device=args.device), args.tokens, args.seq_len,
                                args.batch_size, args.device))
    gpt2 = boot_native(GPT2_SMALL, device=args.device, name="gpt2-small-shapes-random")
    runs.append(bench_model("gpt2-small-shapes-random", gpt2, args.tokens, args.seq_len, args.batch_size,
                            args.device))
    report = {
        "benchmark": "hook cache (zarr) vs forward pass", "workbench": workbench.__version__,
        "torch": torch.__version__, "device": str(args.device), "threads": torch.get_num_threads(),
        "machine": platform.machine(), "processor": platform.processor(), "runs": runs,
        "targets": {"write_overhead_vs_forward": "<= 0.15", "warm_read_speedup_vs_recompute (gpt2 shapes)": ">= 10"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    key = "cuda" if str(args.device).startswith("cuda") else "cpu"
    previous[key] = report
    args.out.write_text(json.dumps(previous, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
