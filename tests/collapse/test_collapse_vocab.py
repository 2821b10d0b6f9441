"""Vocabulary-scale NC: the tiled path equals the dense one, handles d < K - 1 and empty classes, refuses huge K."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.collapse import TiledNCAccumulator, cdnv, nc_metrics, next_token_collapse
from workbench.collapse.theory import etf_gram, of_gram
from workbench.memory import TooLargeError

SCALARS = ["nc1", "nc2_equinorm_h", "nc2_equinorm_w", "nc2_equiangle", "nc2_max_angle", "nc2_etf", "nc2_of", "nc3",
           "gnc2_log", "unc3", "sigma_w_trace", "sigma_b_trace"]
PER_CLASS = ["mean_norm", "centred_mean_norm", "classifier_norm", "classifier_mean_dot"]


def _planted(rng, k, d, n, spread=0.7):
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])  # every class present
    mu = rng.normal(size=(k, d))
    return mu[y] + spread * rng.normal(size=(n, d)), y, mu


def _streamed(x, y, k, tile, splits=5, **result_kwargs):
    acc = TiledNCAccumulator(k, x.shape[1], tile=tile, device="cpu")
    for rows in np.array_split(np.arange(len(y)), splits):
        acc.update(x[rows], y[rows])
    return acc.result(**result_kwargs)


@pytest.mark.parametrize("global_mean, nc3", [("class_means", "papyan"), ("samples", "zhu_etf"),
                                              ("class_means", "dang_of")])
def test_tiled_equals_dense_at_k300(rng, global_mean, nc3):
    k, d = 300, 310
    x, y, mu = _planted(rng, k, d, 3000)
    W, b = mu + 0.3 * rng.normal(size=(k, d)), rng.normal(size=k)
    dense = nc_metrics(x, y, W, b, global_mean=global_mean, nc3=nc3, device="cpu")
    tiled = _streamed(x, y, k, tile=64, W=W, b=b, global_mean=global_mean, nc3=nc3)  # 5 tiles, the last short
    for name in SCALARS:
        assert float(tiled[name]) == pytest.approx(float(dense[name]), rel=1e-10, abs=1e-12), name
    for name in PER_CLASS:
        np.testing.assert_allclose(tiled[name], dense[name], rtol=1e-10, err_msg=name)
    reference = cdnv(x, y, device="cpu")
    assert float(tiled.cdnv) == pytest.approx(float(reference.cdnv), rel=1e-10)
    np.testing.assert_allclose(tiled.class_variance, reference.class_variance, rtol=1e-10)


def test_d_below_k_minus_one_against_numpy_definitions(rng):
    k, d = 40, 6
    x, y, mu = _planted(rng, k, d, 1200, spread=0.3)
    W = mu + 0.1 * rng.normal(size=(k, d))
    ds = _streamed(x, y, k, tile=7, W=W, nc3="zhu_etf")
    means = np.stack([x[y == c].mean(0) for c in range(k)])
    centred = means - means.mean(0)
    sigma_w = sum((x[y == c] - means[c]).T @ (x[y == c] - means[c]) for c in range(k)) / len(y)
    sigma_b = centred.T @ centred / k  # full rank d < K - 1
    assert float(ds.nc1) == pytest.approx(np.trace(sigma_w @ np.linalg.inv(sigma_b)) / k, rel=1e-10)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    cos = (unit @ unit.T)[~np.eye(k, dtype=bool)]
    assert float(ds.nc2_equiangle) == pytest.approx(cos.std(), rel=1e-10)
    assert float(ds.nc2_max_angle) == pytest.approx(np.abs(cos + 1 / (k - 1)).mean(), rel=1e-10)
    assert float(ds.gnc2_log) == pytest.approx(np.mean(-0.5 * np.log(2 - 2 * cos)), rel=1e-10)
    gram = centred @ centred.T
    assert float(ds.nc2_etf) == pytest.approx(np.linalg.norm(gram / np.linalg.norm(gram) - etf_gram(k)), rel=1e-10)
    gram_u = means @ means.T
    assert float(ds.nc2_of) == pytest.approx(np.linalg.norm(gram_u / np.linalg.norm(gram_u) - of_gram(k)), rel=1e-10)
    wm = W @ centred.T
    assert float(ds.nc3) == pytest.approx(np.linalg.norm(wm / np.linalg.norm(wm) - etf_gram(k)), rel=1e-10)


def test_empty_classes_are_left_out_and_reported(rng):
    k, d = 50, 60
    x, y, mu = _planted(rng, 20, d, 800)
    present = np.sort(rng.choice(k, size=20, replace=False))  # 20 of 50 classes have samples
    W = rng.normal(size=(k, d))
    ds = _streamed(x, present[y], k, tile=8, W=W)
    compact = nc_metrics(x, y, W[present], device="cpu")  # the same data with only the present classes
    for name in SCALARS:
        assert float(ds[name]) == pytest.approx(float(compact[name]), rel=1e-10, abs=1e-12), name
    empty = np.setdiff1d(np.arange(k), present)
    assert ds.attrs["n_classes_present"] == 20 and ds.attrs["n_classes_empty"] == 30
    assert ds.attrs["empty_classes_first"] == empty[:20].tolist()
    assert ds.present.values.tolist() == np.isin(np.arange(k), present).tolist()
    assert np.isnan(ds.mean_norm.values[empty]).all()
    np.testing.assert_allclose(ds.mean_norm.values[present], compact.mean_norm.values, rtol=1e-12)


def test_min_count_leaves_out_rare_classes(rng):
    x, y, _ = _planted(rng, 30, 40, 600)
    y = np.concatenate([y, [30, 31]])  # two classes seen once each
    x = np.vstack([x, rng.normal(size=(2, 40))])
    ds = _streamed(x, y, 32, tile=8, min_count=2)
    dense = nc_metrics(x[:600], y[:600], device="cpu")
    assert float(ds.nc1) == pytest.approx(float(dense.nc1), rel=1e-10)
    assert ds.attrs["n_classes_present"] == 30 and ds.attrs["n_classes_too_few"] == 2
    assert ds.attrs["n_classes_empty"] == 0 and not ds.present.values[30:].any()


def test_huge_vocabulary_is_refused_with_its_size():
    with pytest.raises(TooLargeError, match=r"n_classes: .*class means 1000000000 x 768.* would need [0-9.]+ [TPG]B"):
        TiledNCAccumulator(10**9, 768, device="cpu")


def test_bad_input_gets_clear_errors(rng):
    with pytest.raises(ValueError, match="n_classes: expected an int >= 2"):
        TiledNCAccumulator(1, 4, device="cpu")
    with pytest.raises(ValueError, match="dim: expected an int >= 1"):
        TiledNCAccumulator(3, 0, device="cpu")
    with pytest.raises(ValueError, match="tile: expected an int >= 1"):
        TiledNCAccumulator(3, 2, tile=0, device="cpu")
    acc = TiledNCAccumulator(5, 2, device="cpu").update(rng.normal(size=(4, 2)), [3, 3, 3, 3])
    with pytest.raises(ValueError, match=r"labels: expected samples of at least 2 classes, got 1 class\(es\)"):
        acc.result()
    with pytest.raises(ValueError, match="labels: expected class indices < n_classes=5"):
        acc.update(rng.normal(size=(1, 2)), [5])
    with pytest.raises(NotImplementedError, match="second_pass"):
        acc.second_pass(rng.normal(size=(1, 2)), [0])


def test_next_token_collapse_reads_the_model_s_stream(tmp_path):
    import torch

    from workbench.models import corpus_tokens, load_model

    model = load_model("tiny-gelu-2l")
    tokens = corpus_tokens(model, 6, 24)
    ds = next_token_collapse(model, tokens, ["blocks.1.hook_resid_post", "ln_final.hook_out"], cache=tmp_path,
                             batch_size=4, device="cpu")
    labels = tokens[:, 1:].reshape(-1).numpy()
    np.testing.assert_array_equal(ds.counts.sel(hook="ln_final.hook_out"), np.bincount(labels, minlength=2048))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    feats = cache["ln_final.hook_out"][:, :-1].reshape(-1, model.cfg.d_model).double().numpy()
    top = np.bincount(labels).argmax()
    direct = np.linalg.norm(feats[labels == top].mean(0))
    assert float(ds.mean_norm.sel(hook="ln_final.hook_out", **{"class": top})) == pytest.approx(direct, rel=1e-6)
    w_norm = model.W_U.detach().double().norm(dim=0).numpy()
    np.testing.assert_allclose(ds.classifier_norm.sel(hook="ln_final.hook_out"), w_norm, rtol=1e-12)
    assert np.isnan(ds.nc3.sel(hook="blocks.1.hook_resid_post")) and np.isfinite(ds.nc3.sel(hook="ln_final.hook_out"))
