"""Compressed models analysed and compressed again; tied embeddings listed (and so counted) once.

Independent truths: the SVD truncations of a matrix are nested (Eckart-Young:
the top-4 truncation of the top-8 truncation is the top-4 truncation), and a
model's distinct weight tensors, as ``named_parameters`` lists them once each.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.models import load_model
from workbench.spectra import compress, layer_spectra
from workbench.spectra.targets import linear_targets, linear_weight
from workbench.spectra.weights import TIED_REASON


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-gelu-2l", device="cpu")


def _whole_matrix_entries(ds) -> int:
    whole = (ds["head"].values == -1) & ~np.isin(ds.kind.values, ["ov", "qk"])
    return int((ds.rows.values[whole].astype(np.int64) * ds.cols.values[whole]).sum())


def _distinct_matrix_entries(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.ndim == 2)   # a shared parameter is yielded once


def test_tied_embeddings_are_listed_once_and_counted_once(model):
    untied = layer_spectra(model, kinds=("weights",), per_head=False, progress=False, device="cpu")
    assert "W_U" in untied.matrix.values
    assert _whole_matrix_entries(untied) == _distinct_matrix_entries(model)
    tied_model = load_model("tiny-gelu-2l", device="cpu")
    tied_model.unembed._original_component.weight = tied_model.embed._original_component.weight
    assert torch.equal(tied_model.W_U, tied_model.W_E.T)
    tied = layer_spectra(tied_model, kinds=("weights",), per_head=False, progress=False, device="cpu")
    assert "W_U" not in tied.matrix.values and "W_E" in tied.matrix.values
    assert f"W_U: {TIED_REASON}" in tied.attrs["skipped"]
    assert _whole_matrix_entries(tied) == _distinct_matrix_entries(tied_model)
    assert _whole_matrix_entries(untied) - _whole_matrix_entries(tied) == model.W_U.numel()


def test_a_compressed_bridge_has_the_same_targets_and_compresses_again(model):
    once = compress(model, ranks=8, method="svd")
    assert list(linear_targets(once)) == list(linear_targets(model))
    twice = compress(once, ranks=4, method="svd")
    direct = compress(model, ranks=4, method="svd")
    for name, target in linear_targets(twice).items():
        W2, W1 = linear_weight(target.module), linear_weight(linear_targets(direct)[name].module)
        torch.testing.assert_close(W2, W1, rtol=0, atol=1e-4 * float(W1.abs().max()))
    info = twice.workbench_compression
    assert set(info["ranks"].values()) == {4} and info["params"] == direct.workbench_compression["params"]
    # Asking for more rank than a compressed map holds keeps it as it is, counted at its stored size.
    again = compress(once, ranks=16, method="svd").workbench_compression
    assert set(again["ranks"].values()) == {8} and again["params"] == once.workbench_compression["params"]
    ds = layer_spectra(twice, kinds=("weights",), per_head=False, progress=False, device="cpu")
    assert set(ds.numerical_rank.values[ds.layer.values >= 0].tolist()) == {4}


def test_a_compressed_plain_module_keeps_its_names():
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(24, 48), torch.nn.ReLU(),
                                                      torch.nn.Linear(48, 24)) for _ in range(2)])
    plain = torch.nn.ModuleDict({"blocks": blocks})
    names = list(linear_targets(plain))
    small = compress(plain, ranks=3, method="svd")
    assert list(linear_targets(small)) == names
    ds = layer_spectra(small, progress=False, device="cpu")
    assert list(ds.matrix.values) == names and set(ds.numerical_rank.values.tolist()) == {3}
    assert any(s.startswith("blocks.0.0.down.weight: factor of the low-rank map") for s in ds.attrs["skipped"])
    assert compress(small, ranks=2, method="svd").workbench_compression["ranks"] == dict.fromkeys(names, 2)
