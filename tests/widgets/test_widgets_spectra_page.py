"""The Spectra page without a browser: a clicked cell's ESD, heads and truncation against direct SVDs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

SMALL = dict(model="tiny-attn-2l", n_seq=2, seq_len=16)


@pytest.fixture(scope="module")
def spectra_page(tmp_path_factory):
    from widgets.pages.spectra import SpectraPage

    page = SpectraPage(cache_dir=tmp_path_factory.mktemp("spectra"), **SMALL)
    assert page.figures() == {}
    page.compute()
    page.wait(300)
    return page


def _whole(stack: torch.Tensor) -> torch.Tensor:
    """[head, d_model, d_head] -> d_model x (heads d_head), the heads side by side."""
    return stack.detach().double().permute(1, 0, 2).reshape(stack.shape[1], -1)


def test_clicked_cell_shows_the_esd_of_that_matrix(spectra_page, attn_model):
    page = spectra_page
    assert page.message == "" and list(page.figures()) == ["heatmap", "esd", "heads", "truncation", "frontier"]
    assert page.param.kind.objects == ["q", "k", "v", "o"]
    page.click({"points": [{"x": 1, "y": "v", "z": 2.5}]})
    assert (page.kind, page.layer) == ("v", 1)
    direct = torch.linalg.svdvals(_whole(attn_model.blocks[1].attn.W_V)) ** 2
    np.testing.assert_allclose(page.eigenvalues(), direct.numpy(), rtol=1e-8)
    assert page.figures()["esd"].layout.title.text == "ESD of blocks.1.attn.W_V"


def test_heads_are_the_ov_circuits_of_the_selected_layer(spectra_page, attn_model):
    page = spectra_page
    page.select("q", 0)
    page.circuit = "ov"
    attn = attn_model.blocks[0].attn
    lines = page.figures()["heads"].data
    assert [t.name for t in lines] == [f"L0H{h}" for h in range(attn_model.cfg.n_heads)]
    for h, line in enumerate(lines):
        ov = attn.W_V[h].detach().double() @ attn.W_O[h].detach().double()
        np.testing.assert_allclose(line.y, torch.linalg.svdvals(ov)[: attn_model.cfg.d_head].numpy(), rtol=1e-6)


def test_weight_truncation_curve_is_the_tail_energy(spectra_page, attn_model):
    page = spectra_page
    page.select("o", 1)
    fig = page.figures()["truncation"]
    assert fig.layout.title.text == "truncating blocks.1.attn.o"
    weights = [t for t in fig.data if t.name == "weights (SVD)"][0]
    lam = torch.linalg.svdvals(attn_model.blocks[1].attn.W_O.detach().double().reshape(-1, 128)).numpy() ** 2
    tail = np.concatenate([np.cumsum(lam[::-1])[::-1], [0.0]])
    np.testing.assert_allclose(weights.y, tail / tail[0], atol=1e-9)
    activation = {t.name: np.asarray(t.y) for t in fig.data}
    assert np.all(activation["activations: whitened (SVD-LLM)"] <= activation["activations: SVD"] + 1e-9)


def test_frontier_has_one_line_per_method(spectra_page):
    lines = spectra_page.figures()["frontier"].data
    assert [t.name for t in lines] == ["svd", "whitened"] and all(len(t.x) == 3 for t in lines)


def test_bad_input_becomes_a_message(spectra_page):
    from widgets.pages.spectra import SpectraPage

    page = spectra_page
    page.layer = 7
    assert page.message == "layer: expected a layer in [0, 2) of tiny-attn-2l, got 7"
    assert page.figures()["esd"].layout.title.text == "ESD of blocks.1.attn.W_O"  # the last good cell stays
    assert page.select("mlp_in", 0) is False and page.message.startswith("kind: expected one of ['q', 'k'")
    again = SpectraPage(cache_dir=page.cache_dir, **SMALL)
    assert again.result is not None and again._job is None and "truncation" in again.result
    again.model = "no-such-model"
    again.wait(60)
    assert again.message.startswith("name_or_path: 'no-such-model'") and again.figures() == {}


def test_stored_result_regenerates_the_figures(spectra_page):
    from widgets.app import PAGES, RESULT_FIGURES

    assert PAGES["spectra"] is type(spectra_page)
    ds = spectra_page.store.load(spectra_page.store.keys("spectra")[0])
    assert list(RESULT_FIGURES["spectra"](ds)) == ["heatmap", "esd", "heads", "truncation", "frontier"]


def test_cells_are_prefetched_and_warm_up_loads_the_default_model(spectra_page, tmp_path):
    from widgets.pages import spectra

    assert spectra_page.wait_for_figures(120)  # the cell figures queued when the result arrived
    esd = spectra_page.built_figure(("esd", "k", 1))
    assert esd is not None and spectra_page.select("k", 1) and spectra_page.figures()["esd"] is esd  # a lookup
    spectra.SpectraPage.warm_up(tmp_path).join(120)
    assert spectra._model("tiny-gelu-2l").cfg.n_layers == 2
