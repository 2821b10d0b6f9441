"""Benchmark: dead latents and FVU of TopK, BatchTopK and Matryoshka SAEs at small k, default settings.

Layer 1 ``hook_z`` of the bundled ``tiny-attn-2l`` (the recipe of
``tests/sae/test_sae_bundled.py``: corpus windows plus repeated random
sequences, d_sae 1024, 400k tokens, batch 512, lr 2e-3, lr_decay 0.3). Each
architecture trains with its default settings (init, AuxK, dead_window: a
quarter of the run) at k = 4, 8 and 16; the dead fraction (latents that fire
on none of them) and the FVU are measured on 8k held-out natural-text tokens,
with the inference L0; the dead fraction and L0 on the training tokens too,
as a whole and per source (corpus text, repeated random sequences), with the
share of the active latents (slots) the repeated sequences take, and the
dead fraction that sampling 8k tokens alone predicts from the latents'
firing rates on the natural training text (``expected_dead_fraction_8k_natural``:
a latent firing on a fraction p of tokens misses 8k of them with probability
(1 - p)^8192). ``--cap C`` trains BatchTopK and Matryoshka with
``max_latents_per_token = C * k``. Rows are keyed by architecture, k, cap,
n_tokens and dead_window; the 400k rows with dead_window 20000 are the runs
before the window followed the run and before the cap.

Run it with the worktree first on the path (``PYTHONPATH=$PWD``): from
``benchmarks/`` Python would otherwise import an installed ``workbench``.
Writes benchmarks/results/dead_latents.json (rows of other settings already
there are kept), after every row.

    python benchmarks/bench_dead_latents.py [--ks 4 8 16] [--archs topk batchtopk matryoshka] [--tokens N] [--cap 2]
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
#: The training activations start with the corpus windows (1200 of 64 tokens); the repeated random sequences follow.
N_CORPUS_TOKENS = 1200 * 64


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
        natural, repeated = ft[:N_CORPUS_TOKENS], ft[N_CORPUS_TOKENS:]
        per_source = {"dead_fraction_natural_training_tokens": float((natural.sum(0) == 0).float().mean()),
                      "dead_fraction_repeated_tokens": float((repeated.sum(0) == 0).float().mean()),
                      "l0_natural_training_tokens": float(natural.sum(-1).float().mean()),
                      "l0_repeated_tokens": float(repeated.sum(-1).float().mean()),
                      "slot_share_repeated": float(repeated.sum() / ft.sum().clamp_min(1)),
                      # a latent firing on a fraction p of natural text misses all of 8k held-out tokens with
                      # probability (1 - p)^8192: the dead fraction sampling alone predicts for the held-out set
                      "expected_dead_fraction_8k_natural": float((1 - natural.float().mean(0)).pow(held.shape[0])
                                                                 .mean()),
                      "token_share_repeated": repeated.shape[0] / ft.shape[0]}
    history_dead = float(hist["dead_fraction"][-1])
    return {"architecture": arch, "k": k, "dead_fraction": dead, "fvu": fvu, "l0": l0,
            "dead_fraction_training_tokens": train_dead, "l0_training_tokens": train_l0,
            **per_source, "history_dead_fraction": None if history_dead != history_dead else history_dead,
            "seconds": seconds, "init": hist.attrs["init"], "dead_window": int(hist.attrs["dead_window"])}


def _key(row: dict, n_tokens: int) -> tuple:
    return (row["architecture"], row["k"], row.get("max_latents_per_token"), row.get("n_tokens", n_tokens),
            str(row.get("dead_window")))


def write(out: Path, rows: list[dict], held_tokens: int) -> None:
    """Merge ``rows`` into ``out``: rows of other settings already there are kept (older ones ran 400k tokens)."""
    old = json.loads(out.read_text()) if out.exists() else {"rows": []}
    done = {_key(r, 0) for r in rows}
    kept = [{**r, "n_tokens": r.get("n_tokens", old.get("n_tokens"))} for r in old["rows"]]
    rows = [r for r in kept if _key(r, 0) not in done] + rows
    rows.sort(key=lambda r: (r["k"], r["architecture"], r.get("max_latents_per_token") or 0, r["n_tokens"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"layer": LAYER, "d_sae": 1024, "batch_size": 512, "lr": 2e-3,
                               "held_out_tokens": held_tokens, "rows": rows,
                               "workbench_version": workbench.__version__, "python": platform.python_version(),
                               "torch": torch.__version__}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--archs", nargs="+", default=["topk", "batchtopk", "matryoshka"])
    parser.add_argument("--tokens", type=int, default=400_000)
    parser.add_argument("--cap", type=int, default=None,
                        help="batchtopk/matryoshka: max_latents_per_token = CAP * k (default: no cap)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, default=None, help="activations file to reuse between runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, held = activations(args.cache)
    rows = []
    for k in args.ks:
        for arch in args.archs:
            kw = {} if args.cap is None or arch == "topk" else {"max_latents_per_token": args.cap * k}
            row = {**measure(x, held, arch, k, args.tokens, **kw), "n_tokens": args.tokens,
                   "max_latents_per_token": kw.get("max_latents_per_token")}
            rows.append(row)
            print(f"{arch:>10} k={k:>2} cap {row['max_latents_per_token']}: dead {row['dead_fraction']:.3f}  "
                  f"FVU {row['fvu']:.3f}  L0 {row['l0']:.2f}  ({row['seconds']:.0f} s)", flush=True)
            write(args.out, rows, int(held.shape[0]))  # after every row: a long run keeps what it finished


if __name__ == "__main__":
    main()
