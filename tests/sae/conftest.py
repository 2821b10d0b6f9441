"""Fixtures for the SAE tests: one torch thread, small builders, a tiny random model."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # The test machine's cores are shared; with several threads each small matmul
    # waits on OpenMP barriers (measured: 512x32x64 takes 24 ms on 2 threads, 80 us on 1).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def random_model():
    """A randomly initialised 2-layer attention-only model: d_model 32, 2 heads, vocab 64."""
    from workbench.models import boot_native

    arch = dict(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, n_ctx=32, d_vocab=64, act_fn="gelu",
                attn_only=True, normalization_type="LN")
    model = boot_native(arch, device="cpu", name="random-2l", seed=3)
    model.eval()
    return model
