"""Matryoshka BatchTopK SAEs: the nested-prefix loss, config checks, SAELens layout, and less absorption."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from workbench.data.synthetic_sae import planted_hierarchy
from workbench.sae import AttentionSAE, SAEConfig, load_sae, save_sae, train
from workbench.sae.absorption import absorption_rate
from workbench.sae.batchtopk import _batch_topk


def _sae(widths, d_sae=16, seed=0):
    sae = AttentionSAE(SAEConfig(d_in=8, d_sae=d_sae, architecture="matryoshka", k=3, matryoshka_widths=widths),
                       seed=seed)
    with torch.no_grad():
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(seed))
    return sae


def test_loss_sums_every_prefix_reconstruction():
    sae = _sae((2, 5, 11))
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    dead = torch.zeros(16, dtype=torch.bool)
    step = sae.architecture.training_loss(sae, x, dead)
    _, acts, _, idx = _batch_topk(sae, x)
    f = torch.zeros(acts.numel()).index_put_((idx,), acts.flatten()[idx]).view_as(acts)
    for width in (2, 5, 11):  # each prefix decodes alone: latents [0, width) and b_dec
        x_hat = f[:, :width] @ sae.W_dec[:width] + sae.b_dec
        assert torch.allclose(step.terms[f"mse_prefix_{width}"], (x_hat - x).pow(2).sum(-1).mean(), rtol=1e-5)
    assert torch.allclose(step.terms["mse"], (f @ sae.W_dec + sae.b_dec - x).pow(2).sum(-1).mean(), rtol=1e-5)
    total = step.terms["mse"] + sae.cfg.aux_coefficient * step.terms["aux"] + sum(
        step.terms[f"mse_prefix_{w}"] for w in (2, 5, 11))
    assert torch.allclose(step.loss, total)


def test_one_level_is_batchtopk():
    """SAELens: a single Matryoshka level (the whole dictionary) is plain BatchTopK."""
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(2))
    dead = torch.zeros(16, dtype=torch.bool)
    one = _sae((16,))
    plain = AttentionSAE(SAEConfig(d_in=8, d_sae=16, architecture="batchtopk", k=3), seed=0)
    plain.load_state_dict(one.state_dict())
    a, b = one.architecture.training_loss(one, x, dead), plain.architecture.training_loss(plain, x, dead)
    assert torch.equal(a.loss, b.loss) and sorted(a.terms) == ["aux", "mse"]


@pytest.mark.parametrize("widths, match", [
    ((4, 4, 16), "strictly increasing"), ((8, 4), "strictly increasing"), ((0, 8), "strictly increasing"),
    ((4, 32), r"in \[1, d_sae=16\]"), ((), "non-empty"), ((2.5, 8), "non-empty sequence of ints"),
    ("4,8", "sequence of ints"),
])
def test_bad_widths_name_the_argument(widths, match):
    with pytest.raises(ValueError, match=f"matryoshka_widths: .*{match}"):
        SAEConfig(d_in=8, d_sae=16, architecture="matryoshka", k=2, matryoshka_widths=widths)


def test_widths_default_and_end_at_d_sae():
    assert SAEConfig(d_in=8, d_sae=16, architecture="matryoshka", k=2).matryoshka_widths == (4, 8, 16)
    assert SAEConfig(d_in=8, d_sae=16, architecture="matryoshka", k=2, matryoshka_widths=[3]).matryoshka_widths \
        == (3, 16)
    with pytest.raises(ValueError, match="matryoshka_widths: only for architecture 'matryoshka'"):
        SAEConfig(d_in=8, d_sae=16, architecture="topk", k=2, matryoshka_widths=(4, 16))


def test_save_load_round_trip_in_saelens_layout(tmp_path):
    x = torch.randn(2048, 8, generator=torch.Generator().manual_seed(3))
    sae, history = train(x, d_sae=16, architecture="matryoshka", k=3, matryoshka_widths=(4, 8), batch_size=128,
                         progress=False, n_heads=2)
    assert {"mse_prefix_4", "mse_prefix_8"} <= set(history.data_vars)
    save_sae(sae, tmp_path / "ours")
    loaded = load_sae(tmp_path / "ours")
    assert loaded.cfg == sae.cfg and loaded.cfg.matryoshka_widths == (4, 8, 16)
    assert torch.equal(loaded.encode(x) > 0, sae.encode(x) > 0)
    assert torch.allclose(loaded(x), sae(x), atol=1e-6)
    # What SAELens reads: a JumpReLU SAE with a threshold per latent, our fields under our own key.
    doc = json.loads((tmp_path / "ours" / "cfg.json").read_text())
    assert doc["architecture"] == "jumprelu" and doc["workbench"]["architecture"] == "matryoshka"
    del doc["workbench"]
    (tmp_path / "saelens").mkdir()
    (tmp_path / "saelens" / "cfg.json").write_text(json.dumps(doc))
    save_file(load_file(tmp_path / "ours" / "sae_weights.safetensors"), tmp_path / "saelens" / "sae_weights.safetensors")
    as_saelens = load_sae(tmp_path / "saelens")
    assert as_saelens.cfg.architecture == "jumprelu"
    assert torch.equal(as_saelens.encode(x) > 0, sae.encode(x) > 0)
    assert torch.allclose(as_saelens(x), sae(x), atol=1e-6)


def _fixed_sae(ds, fires: torch.Tensor):
    """An SAE stand-in with the planted directions as decoder rows and a given firing pattern."""
    return SimpleNamespace(cfg=SimpleNamespace(d_in=ds.sizes["d_in"]), W_dec=torch.from_numpy(ds["directions"].values),
                           device="cpu", encode=lambda x: fires.float())


def test_absorption_rate_against_a_built_absorbing_sae():
    """Parent latent silent exactly where a child fires, child latents = (child + parent) / norm: the rate is
    the fraction of parent occurrences that have a child."""
    ds = planted_hierarchy(n_tokens=3000, d_in=64, n_parents=2, children_per_parent=3, n_independent=2, seed=4)
    coef = torch.from_numpy(ds["coefficients"].values) > 0
    directions = torch.from_numpy(ds["directions"].values).clone()
    child = torch.arange(2, 8)
    parent = (child - 2).div(3, rounding_mode="floor")
    directions[child] = directions[child] + directions[parent]
    directions[child] /= directions[child].norm(dim=1, keepdim=True)
    fires = coef.clone()
    for p in (0, 1):
        fires[:, p] &= ~coef[:, child[parent == p]].any(1)
    sae = _fixed_sae(ds.assign(directions=(("feature", "d_in"), directions.numpy())), fires)
    sae.W_dec = directions
    out = absorption_rate(sae, ds)
    with_child = torch.stack([coef[:, child[parent == p]].any(1) for p in (0, 1)], 1).sum(0)
    assert out["absorbed"].values.tolist() == with_child.tolist()
    assert out["occurrences"].values.tolist() == coef[:, :2].sum(0).tolist()
    assert 0.7 < out.attrs["absorption_rate"] < 0.9  # child_rate 0.8
    honest = absorption_rate(_fixed_sae(ds, coef), ds)
    assert honest.attrs["absorption_rate"] == 0.0 and (honest["parent_fires"] == honest["occurrences"]).all()


def test_matryoshka_absorbs_fewer_parents_than_topk_at_the_same_l0():
    ds = planted_hierarchy(n_tokens=8000, d_in=64, n_parents=4, children_per_parent=4, n_independent=4, seed=0)
    x = torch.from_numpy(ds["acts"].values)
    rates, l0 = {}, {}
    for arch, extra in (("topk", {}), ("matryoshka", {"matryoshka_widths": (4, 24)})):
        sae, _ = train(x, d_sae=24, architecture=arch, k=3, lr=1e-2, batch_size=256, n_tokens=50_000,
                       progress=False, **extra)
        rates[arch] = absorption_rate(sae, ds).attrs["absorption_rate"]
        l0[arch] = float((sae.encode(x) > 0).sum(-1).float().mean())
    assert abs(l0["matryoshka"] - l0["topk"]) < 0.3
    assert rates["topk"] > 0.3 and rates["matryoshka"] < rates["topk"] / 2, rates
