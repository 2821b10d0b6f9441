"""On the bundled tiny-attn-2l: CE loss recovered at small L0 per layer, and induction features in layer 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_helpers import z_cat
from workbench.data.corpus import load_corpus
from workbench.models import induction_scores, repeated_random_tokens, tokenize
from workbench.sae import dfa, evaluate, feature_families, finetune_downstream, train_layers

PERIOD = 20


@pytest.fixture(scope="module")
def layer_saes(attn_model, tmp_path_factory):
    """k = 16 TopK SAEs on both layers: MSE training on ~100k corpus tokens plus repeated random
    sequences, then end-to-end fine-tuning (KL to the clean model) on the same training text."""
    text = load_corpus("train")
    corpus = tokenize(attn_model, [text[i * 300:(i + 1) * 300] for i in range(1200)], seq_len=64)
    repeated = repeated_random_tokens(attn_model.cfg.d_vocab, n_seqs=256, period=32, seed=1)[:, :64]
    tokens = torch.cat([corpus, repeated])
    saes = train_layers(attn_model, tokens, cache=tmp_path_factory.mktemp("cache"), d_sae=1024, k=16,
                        batch_size=512, n_tokens=400_000, lr=2e-3, lr_decay=0.3, seed=0, progress=False)
    for layer, (sae, _) in saes.items():
        finetune_downstream(sae, attn_model, corpus, layer, n_steps=200, seed=layer, progress=False)
    return saes


@pytest.fixture(scope="module")
def held_out_tokens(attn_model):
    """128 windows (8k tokens) of the held-out split: the first 16 alone are one file's text and
    read ~0.02 lower or higher than the split as a whole."""
    text = load_corpus("held_out")
    return tokenize(attn_model, [text[i:i + 400] for i in range(0, 128 * 400, 400)], seq_len=64)


@pytest.mark.parametrize("layer", [0, 1])
def test_ce_loss_recovered_at_l0_16(attn_model, layer_saes, held_out_tokens, layer):
    """Evaluated on held-out text the SAEs never saw."""
    sae, history = layer_saes[layer]
    assert sae.cfg.hook_name == f"blocks.{layer}.attn.hook_z" and sae.cfg.n_heads == 4
    ev = evaluate(sae, attn_model, held_out_tokens, layer)
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
