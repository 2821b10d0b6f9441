"""Write the SAELens interop fixtures in tests/sae/fixtures/saelens/ (run once; the results are committed).

Our side writes ``ours_*`` folders with :func:`workbench.sae.save_sae` and the
fixed inputs; then, in the SAELens virtual environment
(``benchmarks/saelens_env.py``), ``scripts/saelens_fixture_worker.py`` writes
``saelens_*`` folders with SAELens itself (standard, TopK with
``rescale_acts_by_decoder_norm`` both ways, JumpReLU with zero thresholds,
BatchTopK after 300 training steps saved for inference, a pre-6.0 TopK config)
and records SAELens' ``encode``/``decode`` of the inputs on every folder,
ours included, in ``saelens_outputs.safetensors``; it also loads a stand-in
for release ``gpt2-small-hook-z-kk`` from a fake Hugging Face cache (``hub/``)
with ``SAE.from_pretrained``, offline, into ``hub_outputs.safetensors``. ``tests/sae/test_sae_saelens_fixtures.py``
checks our loader against those outputs without SAELens.

Usage::

    python scripts/make_saelens_fixtures.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from saelens_env import ensure_saelens_env  # noqa: E402

from workbench.sae import AttentionSAE, SAEConfig  # noqa: E402
from workbench.sae.jumprelu import set_thresholds  # noqa: E402

FIXTURES = ROOT / "tests" / "sae" / "fixtures" / "saelens"
D_IN, D_SAE, K, N_TOKENS = 64, 128, 8, 32
HOOK = "blocks.1.attn.hook_z"


#: Our folders: name -> (seed, config fields). The tests rebuild them to check the saver still writes these files.
OURS = {"ours_standard": (1, {"architecture": "standard"}),
        "ours_topk_native": (2, {"architecture": "topk", "k": K}),
        "ours_topk_rescale_true": (3, {"architecture": "topk", "k": K, "rescale_acts_by_decoder_norm": True}),
        "ours_topk_rescale_false": (4, {"architecture": "topk", "k": K, "rescale_acts_by_decoder_norm": False}),
        "ours_jumprelu_zero_thresholds": (5, {"architecture": "jumprelu"}),
        "ours_batchtopk": (6, {"architecture": "batchtopk", "k": K})}
#: Initial decoder row norms the committed folders were built with (BatchTopK's training init has since moved
#: to unit rows); the folders' weights must not follow the architectures' training init.
FIXTURE_DECODER_NORMS = {"standard": 1.0, "topk": 0.5, "jumprelu": 1.0, "batchtopk": 0.1}


def write_ours(name: str, x: torch.Tensor, folder: Path = FIXTURES) -> None:
    """Build our SAE ``name`` of :data:`OURS` with fixed random weights; save it and its outputs on ``x``."""
    seed, cfg = OURS[name]
    gen = torch.Generator().manual_seed(seed)
    sae = AttentionSAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, n_heads=4, hook_name=HOOK, model_name="tiny-attn-2l",
                                 **cfg), seed=seed)
    with torch.no_grad():
        directions = torch.randn(D_SAE, D_IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        directions = directions / directions.norm(dim=1, keepdim=True)  # as AttentionSAE draws them
        sae.W_dec.copy_((FIXTURE_DECODER_NORMS[sae.cfg.architecture] * directions).float())
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=gen) / D_IN**0.5)
        sae.W_dec.mul_(torch.rand(D_SAE, 1, generator=gen) * 2.5 + 0.3)  # decoder norms far apart
        sae.b_enc.copy_(torch.randn(D_SAE, generator=gen) * 0.1)
        sae.b_dec.copy_(torch.randn(D_IN, generator=gen) * 0.1)
        if sae.cfg.architecture == "jumprelu":
            set_thresholds(sae, torch.where(torch.arange(D_SAE) % 3 == 0, 0.0, torch.rand(D_SAE, generator=gen) * 0.3))
        if sae.cfg.architecture == "batchtopk":
            sae.threshold.fill_(0.4)
    shutil.rmtree(folder / name, ignore_errors=True)
    sae.save(folder / name)
    with torch.no_grad():  # what the SAE in memory gives, before the save
        f = sae.encode(x)
        save_file({"encode": f.contiguous(), "decode": sae.decode(f).contiguous()},
                  folder / name / "ours_outputs.safetensors")


def write_fake_hub(x: torch.Tensor) -> None:
    """A Hugging Face cache holding a small stand-in for release gpt2-small-hook-z-kk, blocks.5.hook_z."""
    from workbench.sae.releases import RELEASES

    hub = FIXTURES / "hub"
    shutil.rmtree(hub, ignore_errors=True)
    repo = hub / "models--ckkissane--attn-saes-gpt2-small-all-layers"
    snap = repo / "snapshots" / "0000000000000000000000000000000000000000"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snap.name)
    gen = torch.Generator().manual_seed(7)
    file = RELEASES["gpt2-small-hook-z-kk"].files["blocks.5.hook_z"]
    torch.save({"W_enc": torch.randn(D_IN, D_SAE, generator=gen) / D_IN**0.5,
                "W_dec": torch.randn(D_SAE, D_IN, generator=gen) / D_IN**0.5,
                "b_enc": torch.randn(D_SAE, generator=gen) * 0.1, "b_dec": torch.randn(D_IN, generator=gen) * 0.1},
               snap / file)
    (snap / file.replace(".pt", "_cfg.json")).write_text(json.dumps(
        {"act_size": D_IN, "dict_size": D_SAE, "act_name": "blocks.5.attn.hook_z"}))


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    x = torch.randn(N_TOKENS, D_IN, generator=torch.Generator().manual_seed(123))
    save_file({"x": x}, FIXTURES / "inputs.safetensors")
    for name in OURS:
        write_ours(name, x)
    write_fake_hub(x)
    python = ensure_saelens_env()
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "HF_HUB_CACHE": str(FIXTURES / "hub"),
           "HF_HUB_OFFLINE": "1"}
    subprocess.run([str(python), str(ROOT / "scripts" / "saelens_fixture_worker.py"), str(FIXTURES)], check=True,
                   env=env)


if __name__ == "__main__":
    main()
