"""SAELens side of bench_sae.py, run by the SAELens venv's python (see reference_envs.py).

Each message is one training: architecture ("topk" or "standard"), k or
l1_coefficient, width, optimiser settings, token budget and the .npy files of
training and held-out activations. The worker trains with SAELens' own
``SAETrainer`` and replies with its own wall time of the training and the
held-out FVU and L0.
"""

import time

import numpy as np
import torch
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer

from _harness import serve
from _sae_eval import held_out_result

_arrays = {}


def _load(path):
    if path not in _arrays:
        _arrays[path] = torch.from_numpy(np.load(path))
    return _arrays[path]


def train(args):
    torch.set_num_threads(args["threads"])
    torch.manual_seed(args["seed"])
    acts, held = _load(args["train"]), _load(args["held_out"])
    if args["architecture"] == "topk":
        cfg = TopKTrainingSAEConfig(d_in=acts.shape[1], d_sae=args["d_sae"], k=args["k"],
                                    aux_loss_coefficient=args["aux_coefficient"], device="cpu", dtype="float32")
        sae = TopKTrainingSAE(cfg)
    else:
        cfg = StandardTrainingSAEConfig(d_in=acts.shape[1], d_sae=args["d_sae"],
                                        l1_coefficient=args["l1_coefficient"], device="cpu", dtype="float32")
        sae = StandardTrainingSAE(cfg)

    def batches():
        gen = torch.Generator().manual_seed(args["seed"])
        while True:
            perm = torch.randperm(acts.shape[0], generator=gen)
            for i in range(0, acts.shape[0] - args["batch_size"] + 1, args["batch_size"]):
                yield acts[perm[i:i + args["batch_size"]]]

    trainer_cfg = SAETrainerConfig(total_training_samples=args["n_tokens"], train_batch_size_samples=args["batch_size"],
                                   lr=args["lr"], lr_end=args["lr"], adam_beta1=args["betas"][0],
                                   adam_beta2=args["betas"][1], device="cpu",
                                   dead_feature_window=args["dead_window_steps"])
    start = time.perf_counter()
    sae = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=batches()).fit()
    return held_out_result(sae, held, time.perf_counter() - start, args["n_tokens"])


if __name__ == "__main__":
    serve(train)
