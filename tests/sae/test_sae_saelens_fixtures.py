"""Our loader against SAELens itself, on folders written by SAELens and on ours read by SAELens.

The fixtures (tests/sae/fixtures/saelens/) and SAELens' encode/decode outputs on
fixed inputs were written by ``scripts/make_saelens_fixtures.py`` in a SAELens
6.54 environment; these tests need only the committed files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from workbench.sae import load_sae

FIXTURES = Path(__file__).parent / "fixtures" / "saelens"
FOLDERS = sorted(p.name for p in FIXTURES.iterdir() if (p / "saelens_outputs.safetensors").is_file())
ATOL = 1e-6


def _x() -> torch.Tensor:
    return load_file(FIXTURES / "inputs.safetensors")["x"]


def test_the_fixtures_cover_every_case():
    assert {"saelens_standard", "saelens_topk_rescale_false", "saelens_topk_rescale_true",
            "saelens_jumprelu_zero_thresholds", "saelens_batchtopk_trained", "saelens_pre6_topk",
            "ours_standard", "ours_topk_native", "ours_topk_rescale_true", "ours_topk_rescale_false",
            "ours_jumprelu_zero_thresholds", "ours_batchtopk"} <= set(FOLDERS)


@pytest.mark.parametrize("name", FOLDERS)
def test_we_match_saelens_on_every_folder(name):
    """encode and decode of the loaded folder equal SAELens' own outputs on the same folder to 1e-6."""
    ref = load_file(FIXTURES / name / "saelens_outputs.safetensors")
    sae = load_sae(FIXTURES / name)
    with torch.no_grad():
        f = sae.encode(_x())
        x_hat = sae.decode(f)
    assert torch.equal(f > 0, ref["encode"] > 0)  # the same active set
    assert torch.allclose(f, ref["encode"], rtol=0, atol=ATOL)
    assert torch.allclose(x_hat, ref["decode"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", [n for n in FOLDERS if n.startswith("ours_")])
def test_saelens_on_our_folders_matches_the_sae_we_saved(name):
    """SAELens reading our folder gives what the SAE gave in memory before the save: the same active set and
    reconstruction, and the same values except where our native ranking reports pre rather than pre * ||W_dec||."""
    ref = load_file(FIXTURES / name / "saelens_outputs.safetensors")
    ours = load_file(FIXTURES / name / "ours_outputs.safetensors")
    assert torch.equal(ours["encode"] > 0, ref["encode"] > 0)
    assert torch.allclose(ours["decode"], ref["decode"], rtol=0, atol=1e-5)  # folding norms moves the last bits
    if name not in ("ours_topk_native", "ours_batchtopk"):
        assert torch.allclose(ours["encode"], ref["encode"], rtol=0, atol=ATOL)


def test_saelens_reads_our_batchtopk_as_jumprelu_and_the_pre6_config_as_topk():
    with safe_open(str(FIXTURES / "ours_batchtopk" / "saelens_outputs.safetensors"), framework="pt") as f:
        assert f.metadata()["architecture"] == "jumprelu"
    assert load_sae(FIXTURES / "ours_batchtopk").cfg.architecture == "batchtopk"  # our key restores it
    pre6 = load_sae(FIXTURES / "saelens_pre6_topk")
    doc = json.loads((FIXTURES / "saelens_pre6_topk" / "cfg.json").read_text())
    assert "architecture" not in doc and doc["activation_fn_str"] == "topk"
    assert (pre6.cfg.architecture, pre6.cfg.k, pre6.cfg.hook_name) == ("topk", 8, "blocks.1.attn.hook_z")
    jump = load_sae(FIXTURES / "saelens_jumprelu_zero_thresholds")
    assert int((load_file(FIXTURES / "saelens_jumprelu_zero_thresholds" / "sae_weights.safetensors")["threshold"]
                == 0).sum()) == 64
    assert jump.cfg.architecture == "jumprelu"


def _fixture_script():
    import importlib.util

    path = Path(__file__).parents[2] / "scripts" / "make_saelens_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_saelens_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", [n for n in FOLDERS if n.startswith("ours_")])
def test_our_saver_still_writes_the_folders_saelens_read(tmp_path, name):
    """Rebuilt and saved today, our folder holds the same tensors and SAELens-read fields as the committed one."""
    _fixture_script().write_ours(name, _x(), tmp_path)
    for file in ("sae_weights.safetensors", "ours_outputs.safetensors"):
        new, old = load_file(tmp_path / name / file), load_file(FIXTURES / name / file)
        assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in new), file
    new, old = (json.loads((folder / name / "cfg.json").read_text()) for folder in (tmp_path, FIXTURES))
    for doc in (new, old):
        doc.pop("workbench")
    assert new == old


def test_a_release_by_name_matches_saelens_from_pretrained(tmp_path):
    """The stand-in for gpt2-small-hook-z-kk blocks.5.hook_z in a fake hub cache, read by name offline, gives
    what SAELens' SAE.from_pretrained gave on the same cache."""
    ref = load_file(FIXTURES / "hub_outputs.safetensors")
    sae = load_sae("gpt2-small-hook-z-kk", sae_id="blocks.5.hook_z", cache_dir=FIXTURES / "hub")
    with torch.no_grad():
        f = sae.encode(_x())
        x_hat = sae.decode(f)
    assert sae.cfg.hook_name == "blocks.5.attn.hook_z"
    assert torch.allclose(f, ref["encode"], rtol=0, atol=ATOL)
    assert torch.allclose(x_hat, ref["decode"], rtol=0, atol=ATOL)
