"""Huge requests are refused before allocating, naming the argument and the size (issue 16, item 7)."""

from __future__ import annotations

import pytest
import torch

from workbench.memory import TooLargeError, available_bytes, check_fits


def test_check_fits_passes_what_fits_and_refuses_what_does_not():
    assert check_fits(n_elements=10, itemsize=8, argument="x", what="ten doubles") == 80
    too_many = int(available_bytes()) // 4 + 1
    with pytest.raises(TooLargeError, match=r"x: a demo would need [\d.]+ [KMGT]?B, more than the"):
        check_fits(n_elements=too_many, itemsize=4, argument="x", what="a demo")
    assert issubclass(TooLargeError, ValueError) and issubclass(TooLargeError, MemoryError)


def test_an_sae_of_a_million_by_a_million_is_refused_before_allocating():
    from workbench.sae import AttentionSAE, SAEConfig

    with pytest.raises(TooLargeError, match="d_sae: a 1000000 x 1000000 encoder and decoder"):
        AttentionSAE(SAEConfig(d_in=10**6, d_sae=10**6, architecture="standard"))


def test_training_history_for_ten_trillion_tokens_is_refused():
    from workbench.sae import train

    with pytest.raises(TooLargeError, match=r"n_tokens: the training history of \d+ steps"):
        train(torch.randn(512, 8), d_sae=16, k=2, batch_size=256, n_tokens=10**13, progress=False)


def test_dense_gram_targets_and_synthetic_recordings_are_refused():
    from workbench.collapse.theory import etf_gram, of_gram
    from workbench.data.synthetic_connectome import synthetic_connectome

    for gram in (etf_gram, of_gram):
        with pytest.raises(TooLargeError, match="n_classes: a dense 1000000 x 1000000 Gram target"):
            gram(10**6)
    with pytest.raises(TooLargeError, match="n_neurons, n_animals, n_time: 4 x 1000000 x 600 traces"):
        synthetic_connectome(10**6)
