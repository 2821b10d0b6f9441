"""Marchenko-Pastur quantities: NaN with a reason where the law cannot apply, right where it does.

Independent truth: a planted rank-r product (its rank is known by construction),
the closed-form bulk edge ``sigma^2 (sqrt N + sqrt M)^2`` of a Gaussian matrix's
squared singular values, and spikes planted well above the BBP detection
threshold ``theta > (N M)^(1/4)`` (Benaych-Georges & Nadakuditi 2012).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.models import load_model
from workbench.spectra import layer_spectra, rank_metrics, spectrum
from workbench.spectra.mp import PRODUCT_REASON, mp_fit

MP_NAMES = ("mp_softrank", "num_spikes", "bulk_max")


def _assert_nan_with_reason(m, start: str) -> None:
    for name in MP_NAMES:
        assert np.all(np.isnan(np.asarray(m[name], dtype=float))), name
    reasons = np.atleast_1d(np.asarray(m["mp_reason"]))
    assert all(str(r).startswith(start) for r in reasons), reasons


@pytest.fixture(scope="module")
def rank32():
    """A 128 x 128 product of 128 x 32 factors: exactly rank 32, like an OV circuit with d_head 32."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((128, 32)), rng.standard_normal((128, 32))
    return A, B, A @ B.T


def test_a_planted_low_rank_product_is_nan_with_its_reason_through_every_path(rank32):
    A, B, W = rank32
    sigma = np.linalg.svd(W, compute_uv=False)
    thin = sigma[:32]                                     # what the circuit path decomposes: d_head values
    why = "rank-deficient: numerical rank 32 < min(128, 128) = 128"
    for method in ("median", "weightwatcher"):
        _assert_nan_with_reason(rank_metrics(W, mp_fit=method), why)                      # the formed matrix
        _assert_nan_with_reason(rank_metrics(spectrum(W), mp_fit=method), why)            # its spectrum
        _assert_nan_with_reason(rank_metrics(thin, shape=(128, 128), mp_fit=method), why)  # the thin spectrum
        _assert_nan_with_reason(mp_fit(thin ** 2, shape=(128, 128), method=method), why)
        _assert_nan_with_reason(mp_fit(sigma ** 2, shape=(128, 128), method=method), why)
        assert int(rank_metrics(W, mp_fit=method).numerical_rank) == 32   # the other metrics are still there
    # Rectangular and float32: the rank rule uses the stored precision's epsilon.
    W32 = torch.as_tensor(A[:, :20] @ B[:100, :20].T, dtype=torch.float32)
    _assert_nan_with_reason(rank_metrics(W32), "rank-deficient: numerical rank 20 < min(128, 100) = 100")


def test_a_low_rank_weight_in_a_plain_module_is_nan_with_its_reason(rank32):
    _, _, W = rank32
    lin = torch.nn.Linear(128, 128, bias=False, dtype=torch.float64)
    lin.weight.data = torch.as_tensor(W)
    full = torch.nn.Linear(128, 64, bias=False, dtype=torch.float64)
    torch.nn.init.normal_(full.weight, generator=torch.Generator().manual_seed(1))
    ds = layer_spectra(torch.nn.Sequential(lin, full), progress=False, device="cpu")
    _assert_nan_with_reason(ds.sel(matrix="0.weight"), "rank-deficient: numerical rank 32")
    ok = ds.sel(matrix="1.weight")
    assert str(ok.mp_reason.values) == "" and float(ok.num_spikes) == 0 and np.isfinite(float(ok.bulk_max))


@pytest.mark.parametrize("method", ["median", "weightwatcher"])
def test_per_head_circuits_are_nan_with_the_circuit_reason(method):
    model = load_model("tiny-attn-2l", device="cpu")
    ds = layer_spectra(model, kinds=("weights", "ov", "qk"), progress=False, device="cpu", mp_fit=method)
    circuits = ds.where(ds.kind.isin(["ov", "qk"]), drop=True)
    assert circuits.sizes["matrix"] == 2 * 2 * model.cfg.n_heads
    _assert_nan_with_reason(circuits, PRODUCT_REASON)
    # A full-rank whole matrix gets numbers (per-head slices are d_model x d_head, full rank d_head).
    whole = ds.sel(matrix="blocks.0.attn.W_Q")
    assert str(whole.mp_reason.values) == "" and np.isfinite(float(whole.mp_softrank))
    assert ds.mp_reason.dtype.kind in "UO"


@pytest.mark.parametrize("shape, var", [((1000, 250), 1.0), ((300, 900), 0.01), ((400, 400), 4.0)])
@pytest.mark.parametrize("method, rtol", [("median", 0.02), ("weightwatcher", 0.05)])
def test_a_gaussian_bulk_has_the_closed_form_edge_and_no_spike(shape, var, method, rtol):
    N, M = max(shape), min(shape)
    G = np.sqrt(var) * np.random.default_rng(N + M).standard_normal(shape)
    m = rank_metrics(G, mp_fit=method)
    edge = var * (np.sqrt(N) + np.sqrt(M)) ** 2          # N var (1 + sqrt(q))^2, q = M / N, in sigma^2 units
    assert float(m.bulk_max) == pytest.approx(edge, rel=rtol)
    assert float(m.num_spikes) == 0 and str(m.mp_reason.values) == ""


@pytest.mark.parametrize("shape, k", [((1200, 300), 4), ((250, 750), 6)])
@pytest.mark.parametrize("method", ["median", "weightwatcher"])
def test_spikes_planted_above_the_bbp_threshold_are_counted_exactly(shape, k, method):
    N, M = max(shape), min(shape)
    rng = np.random.default_rng(k)
    U, _ = np.linalg.qr(rng.standard_normal((shape[0], k)))
    V, _ = np.linalg.qr(rng.standard_normal((shape[1], k)))
    theta = (N * M) ** 0.25 * np.linspace(2.0, 4.0, k)     # 2 to 4 times the detection threshold
    W = rng.standard_normal(shape) + U @ np.diag(theta) @ V.T
    m = rank_metrics(W, mp_fit=method)
    assert float(m.num_spikes) == k
    assert str(m.mp_reason.values) == ""


def test_the_hard_edge_of_a_square_matrix_is_not_a_rank_deficit():
    """A square law reaches 0: one numerically zero value is its edge; more than max(1, M // 100) is a deficit."""
    rng = np.random.default_rng(5)
    U, s, Vt = np.linalg.svd(rng.standard_normal((128, 128)))
    edge = (2 * np.sqrt(128)) ** 2                                    # var (sqrt N + sqrt M)^2
    for zeros, applies in ((1, True), (2, False)):
        t = s.copy()
        t[-zeros:] = 1e-9 * t[0]                                        # below sigma_1 N eps of float32
        W = torch.as_tensor((U * t) @ Vt, dtype=torch.float32)
        m = rank_metrics(W)
        assert int(m.numerical_rank) == 128 - zeros
        if applies:
            assert str(m.mp_reason.values) == "" and float(m.num_spikes) == 0
            assert float(m.bulk_max) == pytest.approx(edge, rel=0.05)
        else:
            _assert_nan_with_reason(m, f"rank-deficient: numerical rank {128 - zeros}")
