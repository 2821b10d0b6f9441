"""Shared fixtures: bundled models (loaded once) and a fresh hook cache per test."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def attn_model():
    from workbench.models import load_model

    return load_model("tiny-attn-2l", device="cpu")


@pytest.fixture(scope="session")
def gelu_model():
    from workbench.models import load_model

    return load_model("tiny-gelu-2l", device="cpu")


@pytest.fixture()
def hook_cache(tmp_path):
    from workbench.hooks import HookCache

    return HookCache(tmp_path / "cache")


@pytest.fixture(scope="session")
def corpus_tokens(attn_model):
    """Held-out corpus windows [16, 64] with BOS first."""
    from workbench.data.corpus import load_corpus
    from workbench.models import tokenize

    text = load_corpus("held_out")
    pieces = [text[i:i + 400] for i in range(0, 16 * 400, 400)]
    return tokenize(attn_model, pieces, seq_len=64)


def random_tokens(model, n_seq: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(1, model.cfg.d_vocab, (n_seq, seq_len), generator=gen)
