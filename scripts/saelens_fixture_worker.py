"""Runs inside the SAELens virtual environment (see scripts/make_saelens_fixtures.py); not imported by the tests.

argv[1]: the fixture folder. Writes ``saelens_*`` folders with SAELens itself, then
loads every ``*`` folder there with ``SAE.load_from_disk`` (SAELens' folders, the
pre-6.0 one and ours) and writes its ``encode``/``decode`` of the fixed inputs
into ``<folder>/saelens_outputs.safetensors``.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from sae_lens import SAE
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.sae import SAEMetadata
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from sae_lens.training.sae_trainer import SAETrainer

D_IN, D_SAE, K, N_HEADS = 64, 128, 8, 4
HOOK = "blocks.1.attn.hook_z"
root = Path(sys.argv[1])
x = load_file(root / "inputs.safetensors")["x"]
gen = torch.Generator().manual_seed(0)
torch.manual_seed(0)  # SAELens initialises from the global generator (the BatchTopK SAE keeps its init)


def meta():
    return SAEMetadata(hook_name=HOOK, model_name="tiny-attn-2l")


def randomise(sae, decoder_spread=True):
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=gen) / D_IN**0.5)
        norms = torch.linspace(0.3, 3.0, D_SAE)[torch.randperm(D_SAE, generator=gen)] if decoder_spread else 1.0
        W_dec = torch.randn(D_SAE, D_IN, generator=gen)
        sae.W_dec.copy_(W_dec / W_dec.norm(dim=1, keepdim=True) * (norms[:, None] if decoder_spread else 1.0))
        sae.b_enc.copy_(torch.randn(D_SAE, generator=gen) * 0.1)
        sae.b_dec.copy_(torch.randn(D_IN, generator=gen) * 0.1)
    return sae


def write(name, sae):
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    sae.save_model(folder)


common = dict(d_in=D_IN, d_sae=D_SAE, dtype="float32", device="cpu", reshape_activations="hook_z")
write("saelens_standard", randomise(StandardSAE(StandardSAEConfig(**common, metadata=meta()))))
for flag in (False, True):
    cfg = TopKSAEConfig(**common, k=K, rescale_acts_by_decoder_norm=flag, metadata=meta())
    write(f"saelens_topk_rescale_{str(flag).lower()}", randomise(TopKSAE(cfg)))
jump = randomise(JumpReLUSAE(JumpReLUSAEConfig(**common, metadata=meta())), decoder_spread=False)
with torch.no_grad():  # SAELens initialises thresholds at 0; keep half there, the rest at positive values
    jump.threshold.copy_(torch.where(torch.arange(D_SAE) % 2 == 0, 0.0, torch.rand(D_SAE, generator=gen) * 0.3))
write("saelens_jumprelu_zero_thresholds", jump)

# BatchTopK after a few training steps, saved as SAELens saves it for inference (as jumprelu)
btk_cfg = BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, dtype="float32", device="cpu",
                                     rescale_acts_by_decoder_norm=True, metadata=meta())
btk = BatchTopKTrainingSAE(btk_cfg)
train_x = torch.randn(4096, D_IN, generator=gen)


def batches():
    while True:
        for i in range(0, train_x.shape[0], 256):
            yield train_x[i:i + 256]


trainer_cfg = SAETrainerConfig(total_training_samples=256 * 300, train_batch_size_samples=256, lr=3e-3,
                               lr_end=3e-3, device="cpu")
btk = SAETrainer(cfg=trainer_cfg, sae=btk, data_provider=batches()).fit()
shutil.rmtree(root / "saelens_batchtopk_trained", ignore_errors=True)
btk.save_inference_model(root / "saelens_batchtopk_trained")

# a pre-6.0 TopK config: SAELens writes the weights, the config is rewritten in the old flat layout
write("saelens_pre6_topk", randomise(TopKSAE(TopKSAEConfig(**common, k=K, metadata=meta()))))
old_cfg = {"model_name": "tiny-attn-2l", "hook_point": HOOK, "hook_point_layer": 1, "hook_point_head_index": None,
           "d_in": D_IN, "d_sae": D_SAE, "dtype": "torch.float32", "device": "cpu", "activation_fn_str": "topk",
           "activation_fn_kwargs": {"k": K}, "normalize_activations": False, "context_size": 128,
           "sae_lens_training_version": "3.13.0", "prepend_bos": True, "apply_b_dec_to_input": True}
(root / "saelens_pre6_topk" / "cfg.json").write_text(json.dumps(old_cfg, indent=2))

def record(sae, out, name):
    sae.eval()
    with torch.no_grad():
        hook_z = sae.cfg.reshape_activations == "hook_z"
        inp = x.view(x.shape[0], N_HEADS, D_IN // N_HEADS) if hook_z else x
        feats = sae.encode(inp)
        recon = sae.decode(feats).reshape(x.shape[0], D_IN)
    save_file({"encode": feats.contiguous(), "decode": recon.contiguous()}, out,
              metadata={"class": type(sae).__name__, "architecture": sae.cfg.architecture()})
    print(name, type(sae).__name__, "L0", float((feats > 0).float().sum(-1).mean()))


# SAELens' outputs on every folder: its own and ours
for folder in sorted(p for p in root.iterdir() if (p / "cfg.json").is_file()):
    record(SAE.load_from_disk(folder, device="cpu"), folder / "saelens_outputs.safetensors", folder.name)
# a release by name, from the fake cache in HF_HUB_CACHE (offline)
record(SAE.from_pretrained("gpt2-small-hook-z-kk", "blocks.5.hook_z", device="cpu"),
       root / "hub_outputs.safetensors", "release gpt2-small-hook-z-kk")
