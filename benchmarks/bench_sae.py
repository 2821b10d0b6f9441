"""Benchmark: our attention-output SAE training against SAELens on identical activations.

Both train TopK and standard (ReLU + L1) SAEs on the same ``hook_z``
activations of the bundled ``tiny-attn-2l`` (layer 1, d_in 128), with the
same width, k / L1 coefficient, learning rate, Adam betas, batch size and
token budget, on this CPU with the same torch thread count. SAELens pins
transformer-lens < 4, so it runs in its own virtual environment,
``benchmarks/.envs/saelens`` (made on first use; torch is linked from this
environment rather than downloaded again), in a subprocess that reads the
same ``.npy`` file. Reported: tokens/s of both and their ratio, final FVU and
L0 of both on held-out activations, our achieved FLOP/s as a fraction of the
measured float32 matmul throughput, and CE loss recovered / explained
variance / L0 / dead fraction per layer and k of our TopK SAEs on both bundled
models, trained as tests/sae/test_sae_bundled.py trains them, before and after
end-to-end fine-tuning (``finetune_downstream``).

Usage::

    python benchmarks/bench_sae.py            # writes benchmarks/results/sae.json
    python benchmarks/bench_sae.py --quick    # a smoke run with a small budget
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sae.json"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from saelens_env import ENVS, SAELENS_VERSION, ensure_saelens_env  # noqa: E402

WORKER = r'''
import json, sys, time
import numpy as np, torch
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(args["seed"])
train = torch.from_numpy(np.load(args["train"]))
held = torch.from_numpy(np.load(args["held_out"]))
if args["architecture"] == "topk":
    cfg = TopKTrainingSAEConfig(d_in=train.shape[1], d_sae=args["d_sae"], k=args["k"],
                                aux_loss_coefficient=args["aux_coefficient"], device="cpu", dtype="float32")
    sae = TopKTrainingSAE(cfg)
else:
    cfg = StandardTrainingSAEConfig(d_in=train.shape[1], d_sae=args["d_sae"], l1_coefficient=args["l1_coefficient"],
                                    device="cpu", dtype="float32")
    sae = StandardTrainingSAE(cfg)

def batches():
    gen = torch.Generator().manual_seed(args["seed"])
    while True:
        perm = torch.randperm(train.shape[0], generator=gen)
        for i in range(0, train.shape[0] - args["batch_size"] + 1, args["batch_size"]):
            yield train[perm[i:i + args["batch_size"]]]

def trainer_config(n_tokens):
    return SAETrainerConfig(total_training_samples=n_tokens, train_batch_size_samples=args["batch_size"],
                            lr=args["lr"], lr_end=args["lr"], adam_beta1=args["betas"][0],
                            adam_beta2=args["betas"][1], device="cpu", dead_feature_window=args["dead_window_steps"])

SAETrainer(cfg=trainer_config(4 * args["batch_size"]), sae=type(sae)(cfg), data_provider=batches()).fit()  # warm-up
start = time.perf_counter()
sae = SAETrainer(cfg=trainer_config(args["n_tokens"]), sae=sae, data_provider=batches()).fit()
seconds = time.perf_counter() - start
with torch.no_grad():
    feats = sae.encode(held)
    recon = sae.decode(feats)
    fvu = float((recon - held).pow(2).sum() / (held - held.mean(0)).pow(2).sum())
    l0 = float((feats > 0).float().sum(-1).mean())
print(json.dumps({"seconds": seconds, "tokens_per_s": args["n_tokens"] / seconds, "fvu": fvu, "l0": l0}))
'''


def make_activations(n_train_seqs: int, n_held_seqs: int) -> tuple[Path, Path]:
    """Layer-1 hook_z of tiny-attn-2l over corpus windows, saved as .npy (train, held-out)."""
    from workbench.data.corpus import load_corpus
    from workbench.hooks import HookCache
    from workbench.models import load_model, tokenize

    model = load_model("tiny-attn-2l", device="cpu")
    paths = []
    for split, n in (("train", n_train_seqs), ("held_out", n_held_seqs)):
        text = load_corpus(split)
        tokens = tokenize(model, [text[i * 500:(i + 1) * 500] for i in range(n)], seq_len=128)
        ds = HookCache(ENVS / "hook-cache").activations(model, tokens, ["blocks.1.attn.hook_z"], progress=False)
        acts = ds["blocks.1.attn.hook_z"].values.reshape(-1, 128).astype(np.float32)
        path = ENVS / f"acts_{split}.npy"
        np.save(path, acts)
        paths.append(path)
    return paths[0], paths[1]


def matmul_flops(batch: int, d_in: int, d_sae: int) -> float:
    """Measured float32 matmul FLOP/s at the SAE's encoder shape."""
    a, b = torch.randn(batch, d_in), torch.randn(d_in, d_sae)
    for _ in range(3):
        a @ b
    n, start = 20, time.perf_counter()
    for _ in range(n):
        a @ b
    return 2 * batch * d_in * d_sae * n / (time.perf_counter() - start)


def run_ours(args: dict, train_path: Path, held_path: Path) -> dict:
    from workbench.sae import train

    acts = torch.from_numpy(np.load(train_path))
    held = torch.from_numpy(np.load(held_path))
    kw = dict(d_sae=args["d_sae"], architecture=args["architecture"], lr=args["lr"], betas=tuple(args["betas"]),
              batch_size=args["batch_size"], n_tokens=args["n_tokens"], seed=args["seed"], progress=False,
              dead_window=args["dead_window_steps"] * args["batch_size"])
    if args["architecture"] == "topk":
        kw.update(k=args["k"], aux_coefficient=args["aux_coefficient"])
    else:
        kw.update(l1_coefficient=args["l1_coefficient"])
    train(acts, **{**kw, "n_tokens": 4 * args["batch_size"]})  # warm-up
    start = time.perf_counter()
    sae, _ = train(acts, **kw)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        feats = sae.encode(held)
        fvu = float((sae.decode(feats) - held).pow(2).sum() / (held - held.mean(0)).pow(2).sum())
        l0 = float((feats > 0).float().sum(-1).mean())
    return {"seconds": seconds, "tokens_per_s": args["n_tokens"] / seconds, "fvu": fvu, "l0": l0}


def run_saelens(python: Path, args: dict) -> dict:
    worker = ENVS / "saelens_worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": str(args["threads"]), "WANDB_MODE": "disabled"}
    out = subprocess.run([str(python), str(worker), json.dumps(args)], check=True, capture_output=True, text=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def step_flops(args: dict) -> float:
    """FLOPs of one of our TopK steps: the dense encoder matmul plus the k-sparse products."""
    b, d, f, k = args["batch_size"], 128, args["d_sae"], args["k"]
    return 2 * b * d * f + 5 * 2 * b * k * d  # encoder; decode, dL/df, dW_enc, dW_dec, dx


#: k values of the bundled sweep.
SWEEP_K = [4, 8, 16, 32]
#: The recipe of tests/sae/test_sae_bundled.py: training text, SAE and optimiser, held-out text.
SWEEP_RECIPE = {"train_windows": 1200, "window_chars": 300, "seq_len": 64, "repeated_seqs": 256, "repeat_period": 32,
                "d_sae": 1024, "batch_size": 512, "lr": 2e-3, "lr_decay": 0.3, "seed": 0,
                "eval_windows": 128, "eval_window_chars": 400, "finetune_mse_coefficient": 0.2}


def sweep_bundled(k_values: list[int], n_tokens: int, n_finetune_steps: int = 200) -> list[dict]:
    """Per model, layer and k, our TopK SAEs trained by the recipe of tests/sae/test_sae_bundled.py.

    Training (:data:`SWEEP_RECIPE`): 1200 corpus windows of 300 characters (seq_len 64) plus 256
    repeated random sequences (period 32, the test's induction data), d_sae 1024, batch 512,
    ``n_tokens``, lr 2e-3 decayed over the last 30% of the steps; then ``finetune_downstream``
    (KL + 0.2 FVU, ``n_finetune_steps`` steps on the corpus windows). Evaluated on 128 held-out
    windows of 400 characters (seq_len 64) after MSE training and again after fine-tuning.
    """
    from workbench.data.corpus import load_corpus
    from workbench.models import load_model, repeated_random_tokens, tokenize
    from workbench.sae import evaluate, finetune_downstream, train_layers

    r = SWEEP_RECIPE

    def metrics(ev, suffix=""):
        return {f"explained_variance{suffix}": round(float(ev["explained_variance"]), 4),
                f"ce_loss_recovered{suffix}": round(float(ev["ce_loss_recovered"]), 4)}

    rows = []
    text, held = load_corpus("train"), load_corpus("held_out")
    width, eval_width = r["window_chars"], r["eval_window_chars"]
    for name in ("tiny-attn-2l", "tiny-gelu-2l"):
        model = load_model(name, device="cpu")
        corpus = tokenize(model, [text[i * width:(i + 1) * width] for i in range(r["train_windows"])],
                          seq_len=r["seq_len"])
        repeated = repeated_random_tokens(model.cfg.d_vocab, n_seqs=r["repeated_seqs"], period=r["repeat_period"],
                                          seed=1)[:, :r["seq_len"]]
        tokens = torch.cat([corpus, repeated])
        eval_tokens = tokenize(model, [held[i:i + eval_width] for i in range(0, r["eval_windows"] * eval_width,
                                                                             eval_width)], seq_len=r["seq_len"])
        for k in k_values:
            start = time.perf_counter()
            saes = train_layers(model, tokens, cache=ENVS / "hook-cache", d_sae=r["d_sae"], k=k,
                                batch_size=r["batch_size"], n_tokens=n_tokens, lr=r["lr"], lr_decay=r["lr_decay"],
                                seed=r["seed"], progress=False)
            for layer, (sae, _) in saes.items():
                ev = evaluate(sae, model, eval_tokens, layer)
                row = {"model": name, "layer": layer, "k": k, "l0": round(float(ev["l0"]), 3), **metrics(ev),
                       "dead_fraction": round(float(ev["dead_fraction"]), 4)}
                finetune_downstream(sae, model, corpus, layer, n_steps=n_finetune_steps,
                                    mse_coefficient=r["finetune_mse_coefficient"], seed=layer, progress=False)
                ev = evaluate(sae, model, eval_tokens, layer)
                row.update(metrics(ev, "_finetuned"))
                rows.append(row)
                print(rows[-1], flush=True)
            print(f"{name} k={k}: {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small budget smoke run")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for both (default 1: on shared cores OpenMP barriers dominate)")
    p.add_argument("--skip-sweep", action="store_true")
    opts = p.parse_args(argv)
    torch.set_num_threads(opts.threads)
    ENVS.mkdir(parents=True, exist_ok=True)
    train_path, held_path = make_activations(64 if opts.quick else 512, 32)
    python = ensure_saelens_env()
    base = {"d_sae": 1024, "k": 16, "batch_size": 4096, "lr": 1e-3, "betas": [0.9, 0.999], "seed": 0,
            "aux_coefficient": 1.0, "l1_coefficient": 1.0, "dead_window_steps": 1000, "threads": opts.threads,
            "n_tokens": 4096 * (8 if opts.quick else 128), "train": str(train_path), "held_out": str(held_path)}
    peak = matmul_flops(base["batch_size"], 128, base["d_sae"])
    comparisons = {}
    for architecture in ("topk", "standard"):
        args = {**base, "architecture": architecture}
        ours, theirs = run_ours(args, train_path, held_path), run_saelens(python, args)
        comparisons[architecture] = {"ours": ours, "saelens": theirs,
                                     "speedup": ours["tokens_per_s"] / theirs["tokens_per_s"]}
        print(architecture, json.dumps(comparisons[architecture]), flush=True)
    sweep_tokens, sweep_finetune_steps = (100_000, 20) if opts.quick else (400_000, 200)
    achieved = step_flops(base) * base["n_tokens"] / base["batch_size"] / comparisons["topk"]["ours"]["seconds"]
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": opts.threads,
                    "cpu_count": os.cpu_count(), "torch": torch.__version__, "sae_lens": SAELENS_VERSION},
        "hyperparameters": {k: v for k, v in base.items() if k not in ("train", "held_out")},
        "n_train_tokens": int(np.load(train_path, mmap_mode="r").shape[0]),
        "n_held_out_tokens": int(np.load(held_path, mmap_mode="r").shape[0]),
        "comparisons": comparisons,
        "matmul_flops_per_s": peak,
        "ours_topk_flops_per_s": achieved,
        "ours_topk_fraction_of_matmul": achieved / peak,
        "bundled_sweep_recipe": {**SWEEP_RECIPE, "k": SWEEP_K, "n_tokens": sweep_tokens,
                                 "finetune_steps": sweep_finetune_steps},
        "bundled_sweep": [] if opts.skip_sweep else sweep_bundled(SWEEP_K, sweep_tokens, sweep_finetune_steps),
    }
    if opts.skip_sweep and RESULTS.exists():  # keep the last full run's sweep rather than erase it
        previous = json.loads(RESULTS.read_text())
        result.update(bundled_sweep=previous.get("bundled_sweep", []),
                      bundled_sweep_recipe=previous.get("bundled_sweep_recipe", result["bundled_sweep_recipe"]),
                      bundled_sweep_from_previous_run=True)
    if not opts.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps({a: round(c["speedup"], 2) for a, c in comparisons.items()}), flush=True)
    return result


if __name__ == "__main__":
    main()
