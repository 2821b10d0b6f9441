"""compress takes and reports the matrix names of layer_spectra, checked against the models' own weight views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.spectra import compress, layer_spectra
from workbench.spectra.model_truncation import truncation_curves

BLOCK_KINDS = ("q", "k", "v", "o", "mlp_in", "mlp_gate", "mlp_out")


def _whole_matrices(model):
    """layer_spectra's whole block matrices: name -> singular values (NaN padding dropped)."""
    ds = layer_spectra(model, kinds=("weights",), per_head=False, progress=False)
    ds = ds.isel(matrix=np.isin(ds["kind"].values, BLOCK_KINDS))
    return {str(name): sv[np.isfinite(sv)] for name, sv in zip(ds["matrix"].values, ds["singular_value"].values)}


def _view(model, name: str) -> torch.Tensor:
    """The TransformerLens view ``blocks.<i>.<part>.<W_*>`` as one 2-D matrix (heads side by side)."""
    _, layer, part, attr = name.split(".")
    W = getattr(getattr(model.blocks[int(layer)], part), attr).detach()
    if W.ndim == 3:  # W_O: [head, d_head, d_model]; W_Q/K/V: [head, d_model, d_head]
        W = W.reshape(-1, W.shape[-1]) if attr == "W_O" else W.permute(1, 0, 2).reshape(W.shape[1], -1)
    return W


@pytest.mark.parametrize("name, rank", [("blocks.0.attn.W_Q", 5), ("blocks.1.attn.W_O", 17),
                                        ("blocks.0.mlp.W_in", 9), ("blocks.1.mlp.W_out", 30)])
def test_a_layer_spectra_name_truncates_exactly_that_matrix(gelu_model, name, rank):
    before = _whole_matrices(gelu_model)
    assert name in before  # the name is read off the spectra table
    small = compress(gelu_model, ranks={name: rank}, method="svd")
    assert int(torch.linalg.matrix_rank(_view(small, name))) == rank
    after = _whole_matrices(small)
    assert set(after) == set(before)
    for other, sigma in before.items():
        if other == name:  # best rank-r approximation: the top singular values, the rest zero
            np.testing.assert_allclose(after[other][:rank], sigma[:rank], rtol=1e-5)
            assert after[other][rank:].max() < 1e-5 * sigma[0]
        else:
            np.testing.assert_array_equal(after[other], sigma)
    info = small.workbench_compression
    assert set(info["ranks"]) == set(before)  # reported under the same names
    assert info["ranks"][name] == rank
    assert all(k == min(_view(gelu_model, n).shape) for n, k in info["ranks"].items() if n != name)
    m, n = _view(gelu_model, name).shape
    assert info["params_total"] - info["params"] == m * n - rank * (m + n)
    assert int(torch.linalg.matrix_rank(_view(gelu_model, name))) == min(m, n)  # the input model is untouched


def test_every_reported_name_is_a_layer_spectra_matrix(attn_model, corpus_tokens):
    names = set(_whole_matrices(attn_model))
    assert set(compress(attn_model, ratio=0.5, method="svd").workbench_compression["ranks"]) == names
    curves = truncation_curves(attn_model, corpus_tokens[:2, :16], curves=("weights",))
    assert set(curves["target_matrix"].values.tolist()) == names
    assert curves["target_matrix"].sel(target="blocks.1.attn.o").item() == "blocks.1.attn.W_O"


@pytest.mark.parametrize("key, words", [
    ("blocks.0.attn.W_Q[1]", r"ranks: 'blocks\.0\.attn\.W_Q\[1\]' is a slice .* of 'blocks\.0\.attn\.W_Q' "
                             r"with no linear map of its own; truncate 'blocks\.0\.attn\.W_Q' as a whole"),
    ("blocks.1.attn.OV[2]", r"ranks: 'blocks\.1\.attn\.OV\[2\]' is a per-head view .* no linear map of its own"),
    ("W_E", r"ranks: 'W_E' is a layer_spectra matrix with no truncatable linear map"),
    ("blocks.0.attn.q", r"ranks: 'blocks\.0\.attn\.q' is the module behind 'blocks\.0\.attn\.W_Q'"),
    ("blocks.1._original_component.attn._original_component.o._original_component",
     r"is the module behind 'blocks\.1\.attn\.W_O'"),
    ("blocks.7.attn.W_Q", r"ranks: 'blocks\.7\.attn\.W_Q' is not a matrix name of layer_spectra; expected a whole "
                          r"matrix of layer_spectra, one of 'blocks\.0\.attn\.W_Q', 'blocks\.0\.attn\.W_K', .* "
                          r"\(8 in all\)"),
])
def test_unknown_names_are_refused_with_the_valid_ones(attn_model, key, words):
    with pytest.raises(ValueError, match=words):
        compress(attn_model, ranks={key: 4}, method="svd")


@pytest.mark.parametrize("ranks, words", [
    ({"blocks.0.attn.W_Q": 0}, r"ranks\['blocks\.0\.attn\.W_Q'\]: expected a positive int rank, got 0"),
    ({"blocks.0.attn.W_Q": 2.5}, r"ranks\['blocks\.0\.attn\.W_Q'\]: expected a positive int rank, got 2\.5"),
    ([4, 4], r"ranks: expected a positive int rank or a dict"),
])
def test_bad_rank_values(attn_model, ranks, words):
    with pytest.raises(ValueError, match=words):
        compress(attn_model, ranks=ranks, method="svd")


def test_plain_module_names_and_a_fused_qkv(gpt2_module):
    """A Hugging Face GPT-2 (no bridge): layer_spectra names weight parameters and splits the fused c_attn."""
    names = set(layer_spectra(gpt2_module, kinds=("weights",), progress=False)["matrix"].values.tolist())
    assert {"transformer.h.0.mlp.c_fc.weight", "transformer.h.0.attn.c_attn.weight[q]"} <= names
    original = gpt2_module.transformer.h[0].mlp.c_fc.weight.detach().T  # Conv1D stores [in, out]
    small = compress(gpt2_module, ranks={"transformer.h.0.mlp.c_fc.weight": 3}, method="svd")
    truncated = small.transformer.h[0].mlp.c_fc.weight.detach()
    assert int(torch.linalg.matrix_rank(truncated)) == 3
    np.testing.assert_allclose(torch.linalg.svdvals(truncated)[:3], torch.linalg.svdvals(original)[:3], rtol=1e-5)
    assert small.workbench_compression["ranks"]["transformer.h.0.mlp.c_fc.weight"] == 3
    with pytest.raises(ValueError, match=r"'transformer\.h\.0\.attn\.c_attn\.weight\[q\]' is a slice .* "
                                         r"truncate 'transformer\.h\.0\.attn\.c_attn\.weight' as a whole"):
        compress(gpt2_module, ranks={"transformer.h.0.attn.c_attn.weight[q]": 3}, method="svd")
    with pytest.raises(ValueError, match=r"'transformer\.wte\.weight' is a layer_spectra matrix with no truncatable"):
        compress(gpt2_module, ranks={"transformer.wte.weight": 3}, method="svd")


def test_gpt2_bridge_targets_its_views_not_the_unused_fused_qkv(gpt2_module, tmp_path):
    """GPT-2 through a bridge: Q, K, V run as slices of c_attn, which itself is never run and is not a target."""
    from workbench.models import load_model

    gpt2_module.save_pretrained(tmp_path)
    bridge = load_model(str(tmp_path), device="cpu")
    spectra = _whole_matrices(bridge)
    small = compress(bridge, ranks={"blocks.0.attn.W_Q": 3}, method="svd")
    info = small.workbench_compression
    assert set(info["ranks"]) == set(spectra)
    total = sum(_view(bridge, name).numel() for name in spectra)
    assert info["params_total"] == total  # c_attn's parameters are not counted a second time
    assert int(torch.linalg.matrix_rank(_view(small, "blocks.0.attn.W_Q"))) == 3
    tokens = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(small(tokens), bridge(tokens))  # the truncated map is the one that runs


@pytest.fixture(scope="module")
def gpt2_module():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=64, n_positions=16,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()
