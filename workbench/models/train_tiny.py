"""Train the bundled tiny models (seeded, CPU-sized) and write them to ``data/models``.

Recipe: a byte-level BPE tokenizer (2,048 tokens) is trained on the train
split of the bundled CPython-stdlib corpus. Each batch is half corpus windows
and half *repeated random sequences*: tokens drawn at random from the corpus
stream (``--repeat-tokens corpus``) or uniform ids (``uniform``), repeated
with a random period. Code text alone does not give a 2-layer, 128-wide model
an induction head within a CPU budget; the repeated half is meant to make
in-context copying pay off early while the corpus half keeps it a language
model. The layer-1 induction score is logged every 250 steps.

What works (measured on the device machine's GPU, 3,000 steps, ~40 s each,
tiny-attn-2l): uniform repeated ids, periods 4-60, lr 3e-3, no weight decay
(the defaults) reach a layer-1 induction score of 0.90 (phase change between
steps 1,500 and 2,250) at held-out loss 3.96; corpus-drawn ids 0.53; lr 5e-3
0.54; lr 1e-3 0.03; 75% repeated batches 0.01; lr 2e-3 with corpus ids,
periods 5-64 and weight decay 0.01 0.08. 2,000 steps are not enough.

Usage::

    python -m workbench.models.train_tiny --name tiny-attn-2l --attn-only [--device cuda]
    python -m workbench.models.train_tiny --name tiny-gelu-2l [--device cuda]

Examples
--------
>>> parse_args(["--name", "m", "--steps", "10"]).steps
10
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from workbench import __version__
from workbench.data.corpus import corpus_sha256, load_corpus, token_batches
from workbench.models.diagnostics import induction_scores, mean_loss, unigram_entropy
from workbench.models.tokenizer import TOKENIZER_FILE, load_tokenizer, train_bpe
from workbench.models.catalog import CONFIG_FILE, FORMAT_KEY, MODELS_DIR, WEIGHTS_FILE
from workbench.models.zoo import boot_native

SHARED_TOKENIZER = MODELS_DIR / TOKENIZER_FILE


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--attn-only", action="store_true")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--d-mlp", type=int, default=512)
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--repeat-fraction", type=float, default=0.5)
    p.add_argument("--min-period", type=int, default=4)
    p.add_argument("--max-period", type=int, default=60)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--repeat-tokens", choices=("corpus", "uniform"), default="uniform")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
    return p.parse_args(argv)


def shared_tokenizer(vocab_size: int):
    """The tokenizer both bundled models share; trained once and reused."""
    if not SHARED_TOKENIZER.is_file():
        tok = train_bpe(load_corpus("train"), vocab_size=vocab_size)
        SHARED_TOKENIZER.parent.mkdir(parents=True, exist_ok=True)
        tok.backend_tokenizer.save(str(SHARED_TOKENIZER))
    return load_tokenizer(SHARED_TOKENIZER.parent)


def encode_stream(tokenizer, text: str) -> np.ndarray:
    return np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)


def repeated_batch(source: np.ndarray | int, rng: np.random.Generator, n: int, seq_len: int, bos: int,
                   periods: tuple[int, int] = (5, 64)) -> np.ndarray:
    """Rows of BOS + random tokens repeated with a random period.

    ``source`` is the corpus token stream (tokens drawn from it at random, the
    shipped recipe) or the vocabulary size (uniform ids: each token's earlier
    occurrence is unambiguous and every embedding gets trained).
    """
    rows = np.empty((n, seq_len), dtype=np.int64)
    rows[:, 0] = bos
    for r in range(n):
        period = int(rng.integers(periods[0], periods[1] + 1))
        if isinstance(source, int):
            block = rng.integers(1, source, size=period)
        else:
            block = source[rng.integers(0, source.size, size=period)]
        rows[r, 1:] = np.resize(block, seq_len - 1)
    return rows


def corpus_batch(stream: np.ndarray, rng: np.random.Generator, n: int, seq_len: int, bos: int) -> np.ndarray:
    if n == 0:
        return np.empty((0, seq_len), dtype=np.int64)
    starts = rng.integers(0, stream.size - seq_len, size=n)
    rows = np.stack([stream[s:s + seq_len - 1] for s in starts])
    return np.concatenate([np.full((n, 1), bos, dtype=np.int64), rows], axis=1)


def held_out_tokens(tokenizer, seq_len: int, bos: int) -> torch.Tensor:
    stream = encode_stream(tokenizer, load_corpus("held_out"))
    windows = np.concatenate(list(token_batches(stream, batch_size=1, seq_len=seq_len - 1)))
    return torch.from_numpy(np.concatenate([np.full((len(windows), 1), bos), windows], axis=1))


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    tokenizer = shared_tokenizer(args.vocab_size)
    bos = tokenizer.bos_token_id
    train_stream = encode_stream(tokenizer, load_corpus("train"))
    arch = dict(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                d_head=args.d_model // args.n_heads, d_mlp=args.d_mlp, n_ctx=256,
                d_vocab=len(tokenizer), act_fn="gelu", attn_only=args.attn_only, normalization_type="LN")
    bridge = boot_native(arch, tokenizer=tokenizer, device=args.device, name=args.name, seed=args.seed)
    model = bridge.original_model  # train the plain module; the bridge shares its parameters
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=args.weight_decay)
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    n_rep = int(round(args.batch_size * args.repeat_fraction))
    repeat_source = train_stream if args.repeat_tokens == "corpus" else len(tokenizer)
    curve, start = [], time.time()
    for step in range(args.steps):
        batch = np.concatenate([corpus_batch(train_stream, rng, args.batch_size - n_rep, args.seq_len, bos),
                                repeated_batch(repeat_source, rng, n_rep, args.seq_len, bos,
                                               (args.min_period, args.max_period))])
        tokens = torch.from_numpy(batch).to(args.device)
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == args.steps - 1:
            curve.append({"step": step, "loss": round(loss.item(), 4), "seconds": round(time.time() - start, 1)})
            print(f"step {step:5d} loss {loss.item():.3f} ({time.time() - start:.0f}s)", flush=True)
        if step % 250 == 0 and args.n_layers > 1:
            model.eval()
            score = float(induction_scores(bridge, n_seqs=8, period=50).sel(layer=1).max())
            model.train()
            curve[-1]["induction_score_layer1"] = round(score, 4)
            print(f"step {step:5d} layer-1 induction score {score:.3f}", flush=True)
    model.eval()
    held = held_out_tokens(tokenizer, args.seq_len, bos)
    held_stream = held[:, 1:].reshape(-1).numpy()
    scores = induction_scores(bridge, n_seqs=32, period=50)
    return {
        "bridge": bridge, "arch": arch, "curve": curve,
        "held_out_loss": mean_loss(bridge, held.to(args.device)),
        "unigram_entropy": unigram_entropy(train_stream, held_stream, len(tokenizer)),
        "held_out_tokens": int(held[:, 1:].numel()),
        "induction_scores": scores.values.round(4).tolist(),
        "max_induction_score_layer1": float(scores.sel(layer=1).max()) if args.n_layers > 1 else None,
        "train_seconds": round(time.time() - start, 1),
    }


def save(args: argparse.Namespace, result: dict) -> Path:
    out = args.out or MODELS_DIR / args.name
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in result["bridge"].state_dict().items()}
    save_file(state, str(tmp / WEIGHTS_FILE))
    shutil.copy(SHARED_TOKENIZER, tmp / TOKENIZER_FILE)
    meta = {
        FORMAT_KEY: 1, "name": args.name, "architecture": result["arch"],
        "training": {
            "recipe": "python -m workbench.models.train_tiny " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "attn_only", "threads", "device")
            ) + (" --attn-only" if args.attn_only else ""),
            "corpus": "data/corpus/python_stdlib.txt.gz (CPython standard library, PSF licence)",
            "corpus_sha256": corpus_sha256(),
            "steps": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len, "seed": args.seed,
            "tokens_seen": args.steps * args.batch_size * args.seq_len,
            "held_out_loss_nats": round(result["held_out_loss"], 4),
            "unigram_entropy_nats": round(result["unigram_entropy"], 4),
            "held_out_tokens": result["held_out_tokens"],
            "induction_scores_layer_head": result["induction_scores"],
            "max_induction_score_layer1": result["max_induction_score_layer1"],
            "train_seconds": result["train_seconds"],
            "loss_curve": result["curve"],
            "torch": torch.__version__, "workbench": __version__, "machine": platform.machine(),
            "device": str(args.device),
        },
    }
    (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    result = train(args)
    out = save(args, result)
    print(json.dumps({k: result[k] for k in ("held_out_loss", "unigram_entropy", "induction_scores",
                                             "train_seconds")}, indent=1))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
