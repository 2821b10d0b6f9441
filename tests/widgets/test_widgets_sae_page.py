"""The Attention SAEs page without a browser: training, stored analysis, lookups, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

SMALL = dict(d_sae=32, k=4, n_seq=16, seq_len=32, n_tokens=2048, eval_seq=8)


@pytest.fixture(scope="module")
def sae_page(tmp_path_factory):
    from widgets.pages.sae import SAEPage

    page = SAEPage(cache_dir=tmp_path_factory.mktemp("sae"), **SMALL)
    assert page.sae is None and page.figures() == {}
    page.train()
    page.wait(300)
    return page


@pytest.fixture(scope="module")
def trained(sae_page, attn_model):
    from workbench.sae import load_sae

    return load_sae(sae_page.folder / sae_page.sae), attn_model


def test_training_saves_an_saelens_folder_and_reopens_from_the_store(sae_page):
    from widgets.pages.sae import SAEPage
    from workbench.sae import load_sae

    assert sae_page.message == "" and not sae_page.running
    sae = load_sae(sae_page.folder / sae_page.sae)
    assert (sae.cfg.d_sae, sae.cfg.k, sae.cfg.hook_name) == (32, 4, "blocks.1.attn.hook_z")
    assert list(sae_page.figures()) == ["training", "feature", "prompt", "token_dfa", "families", "firing"]
    again = SAEPage(cache_dir=sae_page.cache_dir, **SMALL)
    assert again.sae == sae_page.sae and again.result is not None and again._job is None
    assert again.result.attrs["ce_loss_recovered"] == sae_page.result.attrs["ce_loss_recovered"]


def test_live_curve_is_what_the_result_keeps(sae_page, tmp_path):
    from widgets.pages.sae import SAEPage

    probes = np.array(sae_page._job.partial)  # the held-out points the training job published last
    ds = sae_page.result
    assert probes.shape[0] == ds.sizes["probe_step"] == ds.sizes["train_step"] == SMALL["n_tokens"] // 256
    np.testing.assert_allclose(ds["probe_fvu"].values, probes[:, 2])
    assert [t.name for t in sae_page.figures()["training"].data] == ["training batch"] * 2 + ["held out"] * 2
    fresh = SAEPage(cache_dir=tmp_path)
    fresh.on_partial(tuple(map(tuple, probes[:3])))  # what poll hands over while an SAE trains
    held_out = fresh.figures()["training"].data
    assert [t.name for t in held_out] == ["held out"] * 2 and list(held_out[0].x) == probes[:3, 1].tolist()


def test_head_shares_are_the_decoder_norm_split_over_heads(sae_page, trained):
    sae, model = trained
    feature = sae_page.matches[3]
    sae_page.feature = feature
    bars = [t for t in sae_page.figures()["feature"].data if t.name == "head share"][0]
    blocks = sae.W_dec.detach().double().reshape(sae.cfg.d_sae, model.cfg.n_heads, -1).norm(dim=-1)[feature]
    np.testing.assert_allclose(bars.y, (blocks / blocks.sum()).numpy(), rtol=1e-6)


@torch.no_grad()
def test_top_example_dfa_sums_to_the_pre_activation(sae_page, trained):
    from workbench.sae import analysis_tokens

    sae, model = trained
    ds, feature = sae_page.result, sae_page.matches[0]
    seq, pos = (int(ds[v].sel(feature=feature, example=0)) for v in ("seq", "pos"))
    tokens = analysis_tokens(model, SMALL["eval_seq"], SMALL["seq_len"])
    _, cache = model.run_with_cache(tokens[seq:seq + 1], names_filter="blocks.1.attn.hook_z")
    z = cache["blocks.1.attn.hook_z"][0, pos].reshape(-1)
    bias = sae.b_enc[feature] - sae.b_dec @ sae.W_enc[:, feature]
    total = float(ds["dfa_top"].sel(feature=feature).isel(dest=pos).sum()) + float(bias)
    assert total == pytest.approx(float(sae.pre_activations(z)[feature]), rel=1e-4, abs=1e-4)
    assert float(ds["activation"].sel(feature=feature, example=0)) == pytest.approx(
        float(sae.encode(z)[feature]), rel=1e-4)


@torch.no_grad()
def test_prompt_features_and_a_token_click_are_lookups(sae_page, trained):
    sae, model = trained
    sae_page.prompt = "for i in range(3):\n    print(i)\nfor i in range(3):\n    print(i)\n"
    sae_page.wait(60)
    prompt = sae_page.prompt_result
    assert sae_page.message == "" and prompt.attrs["prompt"] == sae_page.prompt
    ids = model.tokenizer(sae_page.prompt, add_special_tokens=False)["input_ids"]
    _, cache = model.run_with_cache(torch.tensor([[0, *ids]]), names_filter="blocks.1.attn.hook_z")
    direct = sae.encode(cache["blocks.1.attn.hook_z"][0].reshape(len(ids) + 1, -1))
    np.testing.assert_allclose(prompt["activation"].values, direct[:, prompt["feature"].values.tolist()].T.numpy(),
                               rtol=1e-4, atol=1e-5)
    job, pos = sae_page._job, 5
    sae_page.click("prompt", {"points": [{"x": pos, "y": "f0", "z": 1.0}]})
    fig = sae_page.figures()["token_dfa"]
    assert sae_page.token == pos and sae_page._job is job  # no new job: the click only looked up
    assert f"(position {pos})" in fig.layout.title.text
    active = prompt["activation"].isel(pos=pos).values > 0
    if active.any():
        np.testing.assert_allclose(fig.data[0].z, prompt["dfa"].isel(dest=pos).values[active][:, :pos + 1])


def test_steering_runs_in_a_job_and_shows_the_moved_tokens_and_continuations(sae_page, trained):
    from workbench.sae import steer

    sae, model = trained
    feature = sae_page._shown
    sae_page.steer_scale, sae_page.steer_prompt = 25.0, "import os\nimport"
    job = sae_page.steer()
    assert job is not None and job.name == f"steering feature {feature}"
    sae_page.wait(120)
    result = sae_page.steering
    assert sae_page.message == "" and (result.feature, result.scale) == (feature, 25.0)
    direct = steer(model, sae, 1, feature, 25.0, text="import os\nimport", n_new=16)
    assert (result.continuation_clean, result.continuation_steered) == (direct.continuation_clean,
                                                                       direct.continuation_steered)
    bars = sae_page.figures()["steering"]
    assert [t.name for t in bars.data] == ["down", "up"]
    np.testing.assert_allclose(sorted(bars.data[1].x), sorted(direct.top_up["delta"].values), rtol=1e-5)
    assert bars.layout.xaxis.title.text and bars.layout.yaxis.title.text
    html = sae_page.steering_html()
    assert "without steering" in html and f"with feature {feature} x 25" in html
    sae_page.steer_scale = float("inf")
    assert sae_page.steer() is None and sae_page.message == "steer_scale: expected a finite number, got inf"
    sae_page.steer_scale, sae_page.steer_prompt = 25.0, "  "
    assert sae_page.steer() is None and sae_page.message.startswith("steer_prompt: expected some text")
    sae_page.steer_prompt = "import"


def test_family_search_lists_only_that_family(sae_page):
    labels = sae_page.result["family_label"].values
    family = [str(f) for f in labels if f != labels[sae_page.feature]][0]  # one the shown feature is not in
    sae_page.family = family
    assert sae_page.matches and all(labels[f] == family for f in sae_page.matches)
    assert sae_page.feature == sae_page.matches[0]  # the most active of the family is shown
    sae_page.click("families", {"points": [{"x": "any-not-a-family", "y": "head 0"}]})
    assert sae_page.family == family
    sae_page.family = "any"
    assert len(sae_page.matches) == SMALL["d_sae"]


def test_bad_input_becomes_a_message(sae_page):
    from widgets.pages.sae import SAEPage

    sae_page.feature = 999
    assert sae_page.message == f"feature: expected an index in [0, 32) of {sae_page.sae}, got 999"
    assert sae_page.figures()["feature"].layout.title.text.startswith(f"feature {sae_page._shown}:")
    sae_page.prompt = "  \n "
    assert sae_page.message == "prompt: expected some text to analyse, got an empty prompt"
    sae_page.token = 10_000
    assert sae_page.message.startswith("token: expected a position in [0, ")
    page = SAEPage(cache_dir=sae_page.cache_dir, **{**SMALL, "n_seq": 4})
    assert page.train() is None and page.message == ("n_seq: expected n_seq x seq_len >= 256 training tokens "
                                                     "(one batch), got 4 x 32 = 128")
    page.layer = 5
    page.wait(60)
    assert page.message == "layer: expected a layer in [0, 2) of tiny-attn-2l, got 5" and page.result is None
    page.model = "no-such-model"
    page.wait(60)
    assert page.message.startswith("name_or_path: 'no-such-model'") and not page.running


def test_cancel_keeps_no_sae(tmp_path):
    from widgets.pages.sae import SAEPage

    page = SAEPage(cache_dir=tmp_path, **{**SMALL, "n_tokens": 10_000_000})
    page.train()
    page.cancel()
    page.wait(120)
    assert page.status.endswith("cancelled") and page.sae is None and page.refresh() == []


def test_stored_result_regenerates_the_figures(sae_page):
    from widgets.app import PAGES, RESULT_FIGURES
    from widgets.pages.base import query_settings

    assert PAGES["sae"] is type(sae_page)
    key = sae_page.store.keys("sae")[0]
    figures = RESULT_FIGURES["sae"](sae_page.store.load(key))
    assert list(figures) == ["training", "feature", "prompt", "token_dfa", "families", "firing"]
    assert query_settings(sae_page, {"d_sae": [b"64"], "lr": [b"0.01"]}, ("d_sae", "lr")) == {"d_sae": 64, "lr": 0.01}
    with pytest.raises(ValueError, match="d_sae: expected a number in the URL query, got 'x'"):
        query_settings(sae_page, {"d_sae": [b"x"]}, ("d_sae",))


def test_warm_up_loads_the_default_model(tmp_path):
    from widgets.pages.sae import SAEPage
    from widgets.pages.sae_jobs import shared_model

    SAEPage.warm_up(tmp_path).join(120)
    assert shared_model.cache_info().currsize >= 1 and shared_model("tiny-attn-2l").cfg.n_layers == 2



def _record_panes(page) -> list[dict]:
    """Render ``page`` as a served session does (its widgets then follow their Bokeh models); returns the list
    that gets, after every redraw, the figure each plotly pane shows, by name."""
    import panel as pn
    from bokeh.document import Document

    view = page.view()
    view.get_root(Document())
    shown = []
    page.param.watch(lambda _: shown.append({pane.name: getattr(pane, "_wb_source", pane.object)  # the page's figure
                                             for pane in view.select(pn.pane.Plotly)}),
                     "revision")
    return shown


def _assert_drawn_once(page, shown: list[dict]) -> None:
    """Each pane showed one figure: the page's final one (no blank, no redraw of the same view)."""
    assert shown and page.figures()
    for name, fig in page.figures().items():
        drawn = [panes[name] for panes in shown if name in panes]
        drawn = [f for i, f in enumerate(drawn) if i == 0 or f is not drawn[i - 1]]
        assert len(drawn) == 1 and drawn[0] is fig, f"{name}: drawn {len(drawn)} times"


def test_a_finished_training_draws_each_figure_once(tmp_path):
    """Served, the SAE select chose the new SAE itself when its options changed, which reopened it: every
    figure was cleared, then drawn twice once training had finished."""
    from widgets.pages.sae import SAEPage

    page = SAEPage(cache_dir=tmp_path, **{**SMALL, "n_tokens": 256})
    shown = _record_panes(page)
    page.train()
    page.wait(300)
    assert page.message == "" and page.sae is not None
    _assert_drawn_once(page, shown)


def test_choosing_a_layer_with_a_saved_sae_opens_it_once(sae_page):
    from widgets.pages.sae import SAEPage

    page = SAEPage(cache_dir=sae_page.cache_dir, **{**SMALL, "layer": 0})
    shown = _record_panes(page)
    page.layer = 1
    assert page.sae == sae_page.sae and page.status == "loaded from cache" and not page.running
    _assert_drawn_once(page, shown)
