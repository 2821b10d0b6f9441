"""ipywidgets browsers: moving a control shows the right data, checked against values computed here."""

from __future__ import annotations

import base64
import json

import ipywidgets as ipw
import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import xarray as xr

import widgets.notebook as nb
from widgets.notebook import FigureBrowser, component_browser, display_data, epoch_slider, feature_explorer, \
    layer_picker

MIME = "application/vnd.plotly.v1+json"


def _shown(browser: FigureBrowser, name: str) -> dict:
    """The data of the output widget that shows figure ``name``."""
    (output,) = browser._outputs[name].outputs
    return output["data"]


def _decoded(trace_value) -> np.ndarray:
    """A trace array as plotly's JSON writes it (plain list or base64 typed array), as numpy."""
    if isinstance(trace_value, dict) and "bdata" in trace_value:
        flat = np.frombuffer(base64.b64decode(trace_value["bdata"]), dtype=np.dtype(trace_value["dtype"]))
        return flat.reshape(trace_value["shape"]) if "shape" in trace_value else flat
    return np.asarray(trace_value)


def test_display_data_carries_the_figure_and_html():
    fig = go.Figure(go.Bar(y=np.array([3.0, 1.0, 2.0])))
    bundle = display_data(fig)["data"]
    assert _decoded(bundle[MIME]["data"][0]["y"]).tolist() == [3.0, 1.0, 2.0]
    assert json.dumps(bundle)  # what the Output widget sends to the front end must be JSON
    html_bundle = display_data("<i>a &amp; b</i>")["data"]
    assert html_bundle["text/html"] == "<i>a &amp; b</i>" and html_bundle["text/plain"] == "<i>a & b</i>"
    with pytest.raises(TypeError, match="item: expected"):
        display_data(42)


def test_browser_redraws_on_change_and_shows_bad_values_as_a_message():
    def draw(n: int) -> dict:
        if n == 2:
            raise ValueError("n: two is not allowed")
        return {"bars": go.Figure(go.Bar(y=np.arange(n, dtype=float)))}

    slider = ipw.IntSlider(value=1, min=1, max=4)
    browser = FigureBrowser({"n": slider}, draw)
    slider.value = 3
    assert _decoded(_shown(browser, "bars")[MIME]["data"][0]["y"]).tolist() == [0.0, 1.0, 2.0]
    slider.value = 2  # refused: the figure stays, the reason is shown
    assert "two is not allowed" in browser.message.value
    assert list(browser.figures["bars"].data[0].y) == [0.0, 1.0, 2.0]
    slider.value = 4
    assert browser.message.value == "" and len(browser.figures["bars"].data[0].y) == 4
    with pytest.raises(TypeError, match="controls:"):
        FigureBrowser({}, draw)
    with pytest.raises(ValueError, match="two"):  # a first draw that fails is the caller's bad input
        FigureBrowser({"n": ipw.IntSlider(value=2)}, draw)


@pytest.fixture(scope="module")
def sae_setup(attn_model):
    from workbench.models import corpus_tokens
    from workbench.sae import AttentionSAE, SAEConfig

    torch.manual_seed(0)
    sae = AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=3, hook_name="blocks.1.attn.hook_z"))
    return sae, attn_model, corpus_tokens(attn_model, 4, 24)


def test_feature_explorer_shows_the_picked_feature(sae_setup):
    sae, model, tokens = sae_setup
    browser = feature_explorer(sae, model, tokens, 1, k=3)
    browser.controls["feature"].value = 7
    fig = browser.figures["dashboard"]
    hist, heat, share, logits = fig.data
    # Head shares: norms of the feature's decoder row split into 4 heads of 32, normalised by hand.
    blocks = sae.W_dec.detach().double()[7].reshape(4, 32).norm(dim=1)
    np.testing.assert_allclose(share.y, (blocks / blocks.sum()).numpy(), rtol=1e-12)
    # Activations: feature 7 on every token, from the model's own hook_z, top 3 (the histogram's examples).
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == "blocks.1.attn.hook_z")
    z = cache["blocks.1.attn.hook_z"].reshape(-1, 128)
    acts = sae.encode(z).detach()[:, 7].numpy()
    shown = np.sort(np.asarray(hist.x))[::-1]  # top examples, then quantile examples
    top3 = np.sort(acts)[::-1][:3]
    np.testing.assert_allclose(shown[:3], top3, rtol=1e-5)
    assert all(np.isclose(acts, value, rtol=1e-5).any() for value in shown)
    # DFA of the top example's sequence: summed over sources it is z_cat . W_enc[:, 7] (no biases), exactly.
    seq = int(np.argmax(acts)) // tokens.shape[1]
    pre = (cache["blocks.1.attn.hook_z"][seq].reshape(-1, 128) @ sae.W_enc.detach()[:, 7]).numpy()
    np.testing.assert_allclose(np.asarray(heat.z).sum(axis=1), pre, rtol=1e-4, atol=1e-5)
    # Shown in the output widget as the same figure, with the feature's examples beside it.
    assert _shown(browser, "dashboard")[MIME]["layout"]["title"]["text"] == "feature 7"
    assert 'data-feature="7"' in _shown(browser, "examples")["text/html"]
    browser.controls["feature"].value = 2
    assert browser.figures["dashboard"].layout.title.text == "feature 2"
    blocks = sae.W_dec.detach().double()[2].reshape(4, 32).norm(dim=1)
    np.testing.assert_allclose(browser.figures["dashboard"].data[2].y, (blocks / blocks.sum()).numpy(), rtol=1e-12)


def test_feature_explorer_offers_only_the_features_asked_for(sae_setup):
    sae, model, tokens = sae_setup
    browser = feature_explorer(sae, model, tokens, 1, features=[3, 11], k=2)
    assert browser.controls["feature"].options == (3, 11)
    assert browser.figures["dashboard"].layout.title.text == "feature 3"
    browser.controls["feature"].value = 11
    assert browser.figures["dashboard"].layout.title.text == "feature 11"
    with pytest.raises(ValueError, match=r"features: expected latent indices in \[0, 16\)"):
        feature_explorer(sae, model, tokens, 1, features=[3, 99])
    with pytest.raises(TypeError, match="features: expected integer"):
        feature_explorer(sae, model, tokens, 1, features=[3.5])
    with pytest.raises(ValueError, match="layer"):
        feature_explorer(sae, model, tokens, 5)


def _planted_spectra() -> xr.Dataset:
    """Whole q matrices and per-head ov/qk circuits of 2 layers x 2 heads with known singular values."""
    rows, names, kinds, layers, heads = [], [], [], [], []
    for layer in (0, 1):
        names.append(f"blocks.{layer}.attn.W_Q")
        kinds.append("q"), layers.append(layer), heads.append(-1), rows.append([9.0 + layer, 1.0, 0.5])
        for kind in ("ov", "qk"):
            for head in (0, 1):
                names.append(f"{kind} L{layer}H{head}")
                kinds.append(kind), layers.append(layer), heads.append(head)
                base = 10.0 * layer + head + (100.0 if kind == "qk" else 0.0)
                rows.append([base + 3, base + 2, base + 1])
    n = len(names)
    return xr.Dataset({"singular_value": (("matrix", "index"), np.array(rows)),
                       "stable_rank": ("matrix", np.arange(n, dtype=float)),
                       "alpha": ("matrix", 2.0 + np.arange(n, dtype=float))},
                      coords={"matrix": names, "kind": ("matrix", kinds), "layer": ("matrix", layers),
                              "head": ("matrix", heads)})


def test_layer_picker_shows_the_chosen_layer_and_circuit():
    ds = _planted_spectra()
    browser = layer_picker(ds)
    assert browser.controls["layer"].value == "all" and len(browser.figures["heads"].data) == 4  # all layers
    # the "all layers" choice is a value ipywidgets shows (None would be an empty box)
    assert browser.controls["layer"].label == "all layers"
    browser.controls["kind"].value = "qk"
    browser.controls["layer"].value = 1
    traces = browser.figures["heads"].data
    assert [t.name for t in traces] == ["L1H0", "L1H1"]
    assert [list(t.y) for t in traces] == [[113.0, 112.0, 111.0], [114.0, 113.0, 112.0]]
    shown = _shown(browser, "heads")[MIME]["data"]
    assert _decoded(shown[1]["y"]).tolist() == [114.0, 113.0, 112.0]
    browser.controls["metric"].value = "alpha"
    q_rows = np.flatnonzero(ds["kind"].values == "q")  # the whole matrices: q of layer 0 and 1
    assert np.asarray(browser.figures["metric"].data[0].z).tolist() == [(2.0 + q_rows).tolist()]


def test_layer_picker_refuses_what_it_cannot_show():
    ds = _planted_spectra()
    with pytest.raises(ValueError, match="kind: expected one of"):
        layer_picker(ds, kind="vo")
    with pytest.raises(ValueError, match="metric: expected one of"):
        layer_picker(ds, metric="nope")
    with pytest.raises(ValueError, match="per-head 'ov' or 'qk'"):
        layer_picker(ds.where(ds["kind"] == "q", drop=True))
    with pytest.raises(TypeError, match="spectra:"):
        layer_picker(ds["singular_value"])


@pytest.fixture(scope="module")
def connectome_result():
    from workbench.connectome import dynamic_connectome, synthetic

    planted = synthetic(n_neurons=16, n_animals=3, n_time=240, n_motifs=2, seed=0)
    return dynamic_connectome(planted.traces, rank=2, n_restarts=2, device="cpu")


def test_component_browser_shows_the_chosen_component(connectome_result):
    result = connectome_result
    browser = component_browser(result)
    browser.controls["component"].value = 1
    matrix_trace, time_trace, animal_trace = browser.figures["component"].data
    # The pair factor filled into a symmetric matrix by hand from the pair coordinates, ordered by community.
    names = list(result["community"]["neuron"].values)
    want = np.zeros((len(names), len(names)))
    for a, b, w in zip(result["neuron_a"].values, result["neuron_b"].values, result["pair_factor"][:, 1].values):
        want[names.index(a), names.index(b)] = want[names.index(b), names.index(a)] = w
    labels = result["community"][1].values
    order = sorted(range(len(names)), key=lambda i: (labels[i], i))
    np.testing.assert_allclose(np.asarray(matrix_trace.z), want[np.ix_(order, order)])
    np.testing.assert_allclose(time_trace.y, result["time_factor"][:, 1].values)
    np.testing.assert_allclose(animal_trace.y, result["animal_factor"][:, 1].values)
    assert browser.figures["communities"].layout.title.text.startswith("component 1:")
    assert _shown(browser, "component")[MIME]["layout"]["title"]["text"] == "component 1"
    assert browser.controls["component"].max == 1
    with pytest.raises(TypeError, match="result:"):
        component_browser(result["pair_factor"])


def _planted_run() -> xr.Dataset:
    """A run_experiment-shaped result: 3 epochs x 2 layers x 3 classes with known Gram matrices and metrics."""
    rng = np.random.default_rng(0)
    m = rng.standard_normal((3, 2, 3, 4))
    gram = np.einsum("elkd,elcd->elkc", m, m)
    nc = np.array([[1.0, 2.0], [0.1, 0.2], [0.01, 0.02]])
    dims = ("epoch", "layer")
    return xr.Dataset({"nc1": (dims, nc), "nc2_etf": (dims, nc * 3), "nc3": (dims, nc * 5), "nc4": (dims, nc * 0),
                       "gram": ((*dims, "class", "other_class"), gram),
                       "gram_uncentred": ((*dims, "class", "other_class"), gram + 1.0)},
                      coords={"epoch": [0, 5, 10], "layer": ["relu1", "linear1"], "class": [0, 1, 2],
                              "other_class": [0, 1, 2]})


def test_epoch_slider_shows_the_gram_of_the_chosen_epoch_and_layer():
    from workbench.collapse import imbalanced_geometry

    ds = _planted_run()
    theory = imbalanced_geometry([40, 20, 10], 5e-3, 5e-3, depth=1)
    browser = epoch_slider(ds, theory=theory)
    assert (browser.controls["epoch"].value, browser.controls["layer"].value) == (10, "linear1")
    browser.controls["epoch"].value = 5
    browser.controls["layer"].value = "relu1"
    observed, target = browser.figures["gram"].data
    g = ds["gram"].values[1, 0]
    np.testing.assert_allclose(np.asarray(observed.z), g / np.linalg.norm(g))
    etf = np.eye(3) - 1 / 3  # the simplex ETF Gram, unit Frobenius norm
    np.testing.assert_allclose(np.asarray(target.z), etf / np.linalg.norm(etf), atol=1e-12)
    nc1 = browser.figures["nc_curves"].data[0]
    assert list(nc1.x) == [0, 5, 10] and list(nc1.y) == [1.0, 0.1, 0.01]  # relu1's column
    browser.controls["target"].value = "of"
    g = ds["gram_uncentred"].values[1, 0]
    np.testing.assert_allclose(np.asarray(browser.figures["gram"].data[0].z), g / np.linalg.norm(g))
    np.testing.assert_allclose(np.asarray(browser.figures["gram"].data[1].z), np.eye(3) / np.sqrt(3), atol=1e-12)
    browser.controls["target"].value = "theory"
    want = np.diag(theory["mean_norm"].values ** 2)
    np.testing.assert_allclose(np.asarray(browser.figures["gram"].data[1].z), want / np.linalg.norm(want))
    assert _shown(browser, "gram")[MIME]["layout"]["title"]["text"].startswith("Gram vs imbalanced theory")


def test_epoch_slider_refuses_mismatched_input():
    from workbench.collapse import imbalanced_geometry

    ds = _planted_run()
    with pytest.raises(ValueError, match="theory: expected 3 classes"):
        epoch_slider(ds, theory=imbalanced_geometry([40, 20], 5e-3, 5e-3, depth=1))
    with pytest.raises(TypeError, match="result:"):
        epoch_slider(ds.isel(epoch=0))

