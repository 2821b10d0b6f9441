"""On the bundled tiny-attn-2l: CE loss recovered at small L0 per layer, and induction features in layer 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_helpers import z_cat
from workbench.data.corpus import load_corpus
from workbench.models import induction_scores, repeated_random_tokens, tokenize
from workbench.sae import dfa, evaluate, feature_families, train_layers

PERIOD = 20


@pytest.fixture(scope="module")
def layer_saes(attn_model, tmp_path_factory):
    """k = 16 TopK SAEs on both layers, trained on corpus windows plus repeated random sequences."""
    text = load_corpus("train")
    corpus = tokenize(attn_model, [text[i * 300:(i + 1) * 300] for i in range(160)], seq_len=64)
    repeated = repeated_random_tokens(attn_model.cfg.d_vocab, n_seqs=64, period=32, seed=1)[:, :64]
    tokens = torch.cat([corpus, repeated])
    return train_layers(attn_model, tokens, cache=tmp_path_factory.mktemp("cache"), d_sae=512, k=16,
                        batch_size=512, n_tokens=200_000, lr=2e-3, seed=0, progress=False)


LAYER1_OPEN = pytest.mark.skip(
    reason="layer 1 of tiny-attn-2l (retrained with an induction head, score 0.90) reaches CE loss recovered "
           "0.81-0.87 at L0 16 with d_sae 512-1024 and 0.2-1M tokens; the 0.9 target is open in issue 3")


@pytest.mark.parametrize("layer", [0, pytest.param(1, marks=LAYER1_OPEN)])
def test_ce_loss_recovered_at_l0_16(attn_model, layer_saes, corpus_tokens, layer):
    sae, history = layer_saes[layer]
    assert sae.cfg.hook_name == f"blocks.{layer}.attn.hook_z" and sae.cfg.n_heads == 4
    ev = evaluate(sae, attn_model, corpus_tokens, layer)
    assert float(ev["l0"]) <= 16
    assert float(ev["ce_loss_recovered"]) >= 0.9
    assert float(ev["ce_clean"]) <= float(ev["ce_sae"]) <= float(ev["ce_zero_ablation"])
    assert float(history["fvu"][-10:].mean()) < float(history["fvu"][:10].mean())


def test_induction_features_in_layer_1(attn_model, layer_saes):
    score = float(induction_scores(attn_model, n_seqs=8, period=PERIOD).sel(layer=1).max())
    assert score >= 0.3, f"precondition: tiny-attn-2l has no layer-1 induction head (max score {score:.3f})"
    tokens = repeated_random_tokens(attn_model.cfg.d_vocab, n_seqs=8, period=PERIOD, seed=7)
    families = feature_families({layer: sae for layer, (sae, _) in layer_saes.items()}, attn_model, tokens)
    assert int(families["counts"].sel(layer=1, family="induction")) >= 1
    # The most induction-like feature's DFA peaks on the token after the earlier occurrence.
    sae = layer_saes[1][0]
    feature = int(families["induction_fraction"].sel(layer=1).argmax())
    attribution = dfa(sae, attn_model, tokens, 1, [feature]).isel(feature=0)
    second = np.arange(PERIOD + 2, 2 * PERIOD + 1)  # second repeat; dest - PERIOD + 1 is the induction source
    peak = attribution.values[:, second, :].argmax(-1)
    fired = (sae.encode(z_cat(attn_model, tokens, 1)).detach()[:, second, feature] > 0).numpy()
    hits = (peak == second - PERIOD + 1)[fired]
    assert hits.size > 0 and hits.mean() >= 0.5
