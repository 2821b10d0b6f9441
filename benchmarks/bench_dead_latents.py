"""Benchmark: dead latents and FVU of TopK, BatchTopK and Matryoshka SAEs at small k, default settings.

Layer 1 ``hook_z`` of the bundled ``tiny-attn-2l`` (the recipe of
``tests/sae/test_sae_bundled.py``: corpus windows plus repeated random
sequences, d_sae 1024, 400k tokens, batch 512, lr 2e-3, lr_decay 0.3). Each
architecture trains with its default settings (init, AuxK) and a dead_window of a twentieth of the run at
k = 4, 8 and 16; the dead fraction (latents that fire on none of them) and
the FVU are measured on 8k held-out natural-text tokens, with the inference
L0; the dead fraction and L0 on the training tokens too (BatchTopK spends
its slots on the high-norm repeated sequences, so its L0 on natural text is
below k). Writes benchmarks/results/dead_latents.json (rows of other k or
architectures already there are kept).

    python benchmarks/bench_dead_latents.py [--ks 4 8 16] [--archs topk batchtopk matryoshka] [--tokens 400000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import workbench
from workbench.data.corpus import load_corpus
from workbench.models import load_model, repeated_random_tokens, tokenize
from workbench.sae import train

RESULTS = Path(__file__).resolve().parent / "results" / "dead_latents.json"
LAYER = 1


def z_cat(model, tokens: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Layer-``LAYER`` hook_z, flattened to [tokens, n_heads * d_head]."""
    name = f"blocks.{LAYER}.attn.hook_z"
    out = []
    with torch.no_grad():
        for i in range(0, tokens.shape[0], batch):
            _, cache = model.run_with_cache(tokens[i:i + batch], names_filter=lambda n: n == name)
            out.append(cache[name].reshape(-1, cache[name].shape[-2] * cache[name].shape[-1]))
    return torch.cat(out)


def activations(cache: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, held_out)`` activations of layer 1, as the bundled test builds its tokens (read from ``cache``
    when it exists, written there otherwise)."""
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=True)
        return saved["x"], saved["held"]
    model = load_model("tiny-attn-2l", device="cpu")
    text = load_corpus("train")
    corpus = tokenize(model, [text[i * 300:(i + 1) * 300] for i in range(1200)], seq_len=64)
    repeated = repeated_random_tokens(model.cfg.d_vocab, n_seqs=256, period=32, seed=1)[:, :64]
    held_text = load_corpus("held_out")
    held = tokenize(model, [held_text[i:i + 400] for i in range(0, 128 * 400, 400)], seq_len=64)
    x, held = z_cat(model, torch.cat([corpus, repeated])), z_cat(model, held)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"x": x, "held": held}, cache)
    return x, held


def measure(x: torch.Tensor, held: torch.Tensor, arch: str, k: int, n_tokens: int, seed: int = 0, **kw) -> dict:
    start = time.perf_counter()
    kw = {"dead_window": n_tokens // 20, **kw}  # a window the run fills (the default 1M tokens never is)
    sae, hist = train(x, d_sae=1024, architecture=arch, k=k, batch_size=512, n_tokens=n_tokens, lr=2e-3,
                      lr_decay=0.3, seed=seed, progress=False, **kw)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        f = sae.encode(held)
        fvu = float((sae.decode(f) - held).pow(2).sum() / (held - held.mean(0)).pow(2).sum())
        dead = float(((f > 0).sum(0) == 0).float().mean())
        l0 = float((f > 0).sum(-1).float().mean())
        ft = sae.encode(x) > 0  # the training mix: natural text and, at the end, the repeated random sequences
        train_dead = float((ft.sum(0) == 0).float().mean())
        train_l0 = float(ft.sum(-1).float().mean())
    history_dead = float(hist["dead_fraction"][-1])
    return {"architecture": arch, "k": k, "dead_fraction": dead, "fvu": fvu, "l0": l0,
            "dead_fraction_training_tokens": train_dead, "l0_training_tokens": train_l0,
            "history_dead_fraction": None if history_dead != history_dead else history_dead, "seconds": seconds,
            "init": hist.attrs["init"], **{key: str(value) for key, value in kw.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--archs", nargs="+", default=["topk", "batchtopk", "matryoshka"])
    parser.add_argument("--tokens", type=int, default=400_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, default=None, help="activations file to reuse between runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, held = activations(args.cache)
    rows = []
    for k in args.ks:
        for arch in args.archs:
            row = measure(x, held, arch, k, args.tokens)
            rows.append(row)
            print(f"{arch:>10} k={k:>2}: dead {row['dead_fraction']:.3f}  FVU {row['fvu']:.3f}  L0 {row['l0']:.2f}  "
                  f"({row['seconds']:.0f} s)", flush=True)
    if args.out.exists():  # keep the rows this run did not redo
        done = {(r["architecture"], r["k"]) for r in rows}
        rows = [r for r in json.loads(args.out.read_text())["rows"] if (r["architecture"], r["k"]) not in done] + rows
    rows.sort(key=lambda r: (r["k"], r["architecture"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"layer": LAYER, "d_sae": 1024, "n_tokens": args.tokens, "batch_size": 512,
                                    "lr": 2e-3, "held_out_tokens": int(held.shape[0]), "rows": rows,
                                    "workbench_version": workbench.__version__, "python": platform.python_version(),
                                    "torch": torch.__version__}, indent=1) + "\n")


if __name__ == "__main__":
    main()
