"""Truncation curves of every linear map of a model (workbench.spectra.model_truncation) against direct SVDs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.spectra import layer_spectra
from workbench.spectra.model_truncation import target_kind, target_label, truncation_curves


class _Block(torch.nn.Module):
    def __init__(self, d: int, gen: torch.Generator):
        from transformers.pytorch_utils import Conv1D

        super().__init__()
        self.q = torch.nn.Linear(d, 3)  # rank 3: the curve stops early
        self.fc_in = torch.nn.Linear(d, 2 * d)
        self.c_proj = Conv1D(d, 2 * d)  # Hugging Face stores [in, out]
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=gen)

    def forward(self, x):
        return x + self.c_proj(torch.relu(self.fc_in(x))) + self.q(x).sum(-1, keepdim=True)


class _Toy(torch.nn.Module):
    """Embedding, then blocks: the linear maps sit at ``blocks.<i>.*`` like a transformer's."""

    def __init__(self, d: int = 6, n_layers: int = 2):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.embed = torch.nn.Embedding(20, d)
        self.blocks = torch.nn.ModuleList([_Block(d, gen) for _ in range(n_layers)])

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return x


@pytest.fixture(scope="module")
def toy():
    model = _Toy()
    tokens = torch.randint(0, 20, (4, 10), generator=torch.Generator().manual_seed(1))
    return model, tokens, truncation_curves(model, tokens)


def test_maps_are_tagged_with_their_matrix_kind_and_layer(toy):
    model, _, ds = toy
    assert ds["target"].values.tolist() == [f"blocks.{i}.{m}" for i in (0, 1) for m in ("q", "fc_in", "c_proj")]
    assert ds["target_kind"].values.tolist() == ["q", "mlp_in", "mlp_out"] * 2
    assert ds["target_layer"].values.tolist() == [0, 0, 0, 1, 1, 1]
    # ...and named as layer_spectra names the same weights, the names compress takes.
    spectra = layer_spectra(model, kinds=("weights",), progress=False)["matrix"].values.tolist()
    assert ds["target_matrix"].values.tolist() == [f"{t}.weight" for t in ds["target"].values] and \
        set(ds["target_matrix"].values) <= set(spectra)
    assert ds["curve"].values.tolist() == ["weights", "svd", "whitened"] and ds.sizes["rank"] == 7


def test_weight_curve_is_the_tail_energy_nan_past_full_rank(toy):
    model, _, ds = toy
    for name, W in (("blocks.1.q", model.blocks[1].q.weight), ("blocks.0.c_proj", model.blocks[0].c_proj.weight.T)):
        lam = torch.linalg.svdvals(W.detach().double()).numpy() ** 2
        tail = np.concatenate([np.cumsum(lam[::-1])[::-1], [0.0]])
        curve = ds["truncation"].sel(target=name, curve="weights").values
        np.testing.assert_allclose(curve[: tail.size], tail, rtol=1e-9, atol=1e-9)
        assert np.isnan(curve[tail.size:]).all() and curve[tail.size:].size == 7 - tail.size


def test_activation_curves_start_at_the_output_energy_and_whitening_is_never_worse(toy):
    model, tokens, ds = toy
    energy = {}

    def record(module, args, out, name):  # ||W x||^2 summed over every token this map sees, without the bias
        energy[name] = float((out - module.bias).double().pow(2).sum())

    maps = {"blocks.0.fc_in": model.blocks[0].fc_in, "blocks.1.c_proj": model.blocks[1].c_proj}
    hooks = [module.register_forward_hook(lambda m, a, o, n=name: record(m, a, o, n)) for name, module in maps.items()]
    with torch.no_grad():
        model(tokens)
    for h in hooks:
        h.remove()
    for name, total in energy.items():
        row = ds["truncation"].sel(target=name)
        assert float(row.sel(curve="svd", rank=0)) == pytest.approx(total, rel=1e-5)
        assert float(row.sel(curve="whitened", rank=0)) == pytest.approx(total, rel=1e-5)
        full = row.sel(curve="whitened").dropna("rank")
        assert float(full[-1]) == pytest.approx(0.0, abs=1e-6 * total)
        assert bool((row.sel(curve="whitened") <= row.sel(curve="svd") * (1 + 1e-9)).dropna("rank").all())


def test_names_kinds_and_bad_input():
    assert target_label("blocks.3._original_component.mlp._original_component.out") == "blocks.3.mlp.out"
    assert [target_kind(n) for n in ("b.0.attn.o", "b.0.mlp.gate", "b.0.mlp.in", "b.0.mix")] == \
        ["o", "mlp_gate", "mlp_in", "other"]
    with pytest.raises(ValueError, match=r"curves: expected one of \('weights', 'svd'"):
        truncation_curves(_Toy(), torch.zeros(1, 2, dtype=torch.long), curves=("weights", "pca"))
    with pytest.raises(ValueError, match="model: expected linear maps inside transformer blocks, found none"):
        truncation_curves(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long))
