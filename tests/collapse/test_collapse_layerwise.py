"""layerwise / track / run_experiment: hooked features equal the directly computed ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from collapse_helpers import hooked_class_means, papyan_reference
from workbench.collapse import layerwise, run_experiment, track


def _net_and_data(seed=0, width=12):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.ReLU(), torch.nn.Linear(12, width, bias=False),
                              torch.nn.Linear(width, 3, bias=False)).double()
    y = torch.arange(150) % 3
    x = torch.randn(150, 5, dtype=torch.float64) + 2.0 * torch.randn(3, 5, dtype=torch.float64)[y]
    return net, x, y


def test_hooked_features_match_a_direct_forward_pass():
    net, x, y = _net_and_data()
    with torch.no_grad():
        hidden = torch.relu(net[0](x))
        deep = net[2](hidden)
    head = (net[3].weight @ net[2].weight).detach()
    ds = layerwise(net, (x, y), ["1", "2"], classifiers={"1": head, "2": (net[3].weight.detach(), torch.zeros(3))},
                   batch_size=32, device="cpu")
    for name, feats, W in [("1", hidden, head), ("2", deep, net[3].weight.detach())]:
        ref = papyan_reference(feats.numpy(), y.numpy(), W.numpy())
        for metric, value in ref.items():
            assert float(ds[metric].sel(layer=name)) == pytest.approx(value, rel=1e-9, abs=1e-12), (name, metric)
    assert ds.layer_dim.values.tolist() == [12, 12]


def _assert_padded(values, truth, width):
    """A (class, dim) slice holds ``truth`` in its first ``width`` columns and NaN exactly beyond."""
    np.testing.assert_allclose(values[:, :width], truth, rtol=1e-12, atol=1e-12)
    assert np.isfinite(values[:, :width]).all() and np.isnan(values[:, width:]).all()


def test_class_means_and_classifier_rows_are_kept_per_layer_and_padded():
    net, x, y = _net_and_data(4, width=7)  # layers 0 and 1 are 12 wide, layer 2 is 7 wide
    head = (net[3].weight @ net[2].weight).detach()
    ds = layerwise(net, (x, y), ["0", "1", "2"], classifiers={"1": head, "2": net[3].weight.detach()},
                   batch_size=32, device="cpu")
    truth = hooked_class_means(net, x, y, ["0", "1", "2"])
    assert ds.class_means.dims == ds.classifier.dims == ("layer", "class", "dim")
    assert ds.sizes["dim"] == 12 and ds.dim.values.tolist() == list(range(12))
    assert ds.layer_dim.values.tolist() == [12, 12, 7]
    for name, width in zip(["0", "1", "2"], [12, 12, 7]):
        _assert_padded(ds.class_means.sel(layer=name).values, truth[name], width)
    assert np.isnan(ds.classifier.sel(layer="0").values).all()
    _assert_padded(ds.classifier.sel(layer="1").values, head.numpy(), 12)
    _assert_padded(ds.classifier.sel(layer="2").values, net[3].weight.detach().numpy(), 7)


def test_track_keeps_class_means_per_epoch():
    net, x, y = _net_and_data(5, width=7)
    tracker = track(net, (x, y), ["1", "2"], device="cpu")
    truth = []
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for epoch in (0, 1):
        tracker(epoch)
        truth.append(hooked_class_means(net, x, y, ["1", "2"]))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()  # the next epoch's means differ
    ds = tracker.result()
    assert ds.class_means.dims == ("epoch", "layer", "class", "dim") and ds.class_means.shape == (2, 2, 3, 12)
    for epoch, means in zip((0, 1), truth):
        for name, width in (("1", 12), ("2", 7)):
            _assert_padded(ds.class_means.sel(epoch=epoch, layer=name).values, means[name], width)
    assert not np.allclose(truth[0]["2"], truth[1]["2"])
    assert np.isnan(ds.classifier.values).all()  # no classifiers given


def test_input_forms_and_batch_sizes_agree():
    net, x, y = _net_and_data(1)
    ref = layerwise(net, (x, y), device="cpu").nc1.values
    dataset = torch.utils.data.TensorDataset(x, y)
    batches = [(x[i:i + 40], y[i:i + 40]) for i in range(0, 150, 40)]
    for data, kwargs in [((x.numpy(), y.numpy()), dict(batch_size=7)), (dataset, dict(n_classes=3)),
                         (batches, dict(n_classes=3)), (iter(batches), dict(n_classes=3))]:
        np.testing.assert_allclose(layerwise(net, data, device="cpu", **kwargs).nc1.values, ref, rtol=1e-10)
    assert net.training  # the model's mode is restored


def test_numpy_inputs_take_the_model_dtype():
    net, x, y = _net_and_data(3)
    net = net.float()
    ref = layerwise(net, (x.float(), y), device="cpu").nc1.values
    np.testing.assert_allclose(layerwise(net, (x.numpy(), y.numpy()), device="cpu").nc1.values, ref, rtol=1e-12)


def test_transformer_hooks_read_the_last_position():
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(n_layers=1, d_model=16, d_head=4, n_heads=4, n_ctx=6, d_vocab=11, act_fn="relu",
                                  seed=0)
    model = TransformerBridge.boot_native(cfg, device="cpu")  # random weights, no network
    tokens = torch.randint(0, 11, (60, 6), generator=torch.Generator().manual_seed(0))
    y = tokens[:, -1] % 3
    hook = "blocks.0.hook_resid_post"
    ds = layerwise(model, (tokens, y), [hook], batch_size=25, device="cpu")
    _, cache = model.run_with_cache(tokens, names_filter=[hook])
    ref = papyan_reference(cache[hook][:, -1].double().numpy(), y.numpy())
    assert float(ds.nc1.sel(layer=hook)) == pytest.approx(ref["nc1"], rel=1e-5)


def test_track_stacks_epochs():
    net, x, y = _net_and_data(2)
    tracker = track(net, (x, y), ["1"], device="cpu")
    for epoch in (0, 5):
        tracker(epoch, train_loss=float(epoch))
    ds = tracker.result()
    assert ds.nc1.dims == ("epoch", "layer") and ds.epoch.values.tolist() == [0, 5]
    assert ds.train_loss.values.tolist() == [0.0, 5.0]
    with pytest.raises(ValueError, match="epoch: expected a number after the last recorded epoch 5"):
        tracker(3)


def test_bad_input():
    net, x, y = _net_and_data()
    with pytest.raises(ValueError, match=r"layers: expected module names of the model, got unknown \['fc9'\]"):
        layerwise(net, (x, y), ["fc9"], device="cpu")
    with pytest.raises(ValueError, match="n_classes: expected an int when data is a Dataset"):
        layerwise(net, torch.utils.data.TensorDataset(x, y), device="cpu")
    with pytest.raises(ValueError, match="classifiers: expected keys among the layers"):
        layerwise(net, (x, y), ["1"], classifiers={"2": torch.eye(3, 12)}, device="cpu")
    with pytest.raises(ValueError, match="data: expected as many labels as inputs"):
        layerwise(net, (x, y[:10]), device="cpu")
    with pytest.raises(TypeError, match="data: expected"):
        layerwise(net, 3.0, device="cpu")


def test_run_experiment_collapses_towards_the_classifier():
    ds = run_experiment(hidden=(48, 48), n_linear=2, epochs=40, record_every=20, progress=False, device="cpu")
    assert ds.nc1.dims == ("epoch", "layer") and ds.layer.values.tolist() == ["relu1", "relu2", "linear1"]
    assert float(ds.train_accuracy[-1]) > 0.97 and float(ds.train_loss[-1]) < float(ds.train_loss[0])
    last, first = ds.isel(epoch=-1), ds.isel(epoch=0)
    assert float(last.nc1.sel(layer="linear1")) < 0.5 * float(first.nc1.sel(layer="linear1"))
    # deeper layers are more collapsed (Dang et al., Fig. 4)
    assert float(last.nc1.sel(layer="linear1")) < float(last.nc1.sel(layer="relu1"))
    assert np.isnan(float(last.nc3.sel(layer="relu1"))) and np.isfinite(float(last.nc4.sel(layer="relu2")))


def test_run_experiment_keeps_padded_class_means_and_heads():
    ds = run_experiment(hidden=(16, 24), n_linear=2, epochs=2, record_every=1, progress=False, device="cpu")
    assert ds.class_means.dims == ds.classifier.dims == ("epoch", "layer", "class", "dim")
    assert ds.class_means.shape == (3, 3, 10, 24) and ds.layer_dim.isel(epoch=-1).values.tolist() == [16, 24, 24]
    for layer, width in zip(ds.layer.values, [16, 24, 24]):
        one = ds.sel(layer=layer)
        means = one.class_means.values
        assert np.isfinite(means[..., :width]).all() and np.isnan(means[..., width:]).all()
        # the per-class norms were computed from the unpadded means and classifier rows
        np.testing.assert_allclose(np.linalg.norm(means[..., :width], axis=-1), one.mean_norm, rtol=1e-12)
        rows = one.classifier.values[..., :width]
        if layer == "relu1":  # feeds relu2, not the linear head
            assert np.isnan(one.classifier.values).all()
        else:
            np.testing.assert_allclose(np.linalg.norm(rows, axis=-1), one.classifier_norm, rtol=1e-12)
            np.testing.assert_allclose(np.einsum("ekd,ekd->ek", rows, means[..., :width]), one.classifier_mean_dot,
                                       rtol=1e-10)
    # training moved the means between the recorded epochs
    assert not np.allclose(ds.class_means.isel(epoch=0, layer=-1), ds.class_means.isel(epoch=-1, layer=-1))


def test_run_experiment_imbalanced_counts_and_user_arrays():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = rng.normal(size=(120, 6)) + 3 * rng.normal(size=(3, 6))[y]
    ds = run_experiment((x, y), n_per_class=[40, 20, 5], hidden=(16,), n_linear=1, loss="ce", epochs=3,
                        record_every=3, progress=False, device="cpu")
    assert ds.attrs["n_per_class"] == [40, 20, 5] and ds.counts.isel(epoch=-1, layer=0).values.tolist() == [40, 20, 5]
    with pytest.raises(ValueError, match="n_per_class: class 2 has 40 samples, asked for 50"):
        run_experiment((x, y), n_per_class=[5, 5, 50], epochs=1, progress=False, device="cpu")
    with pytest.raises(ValueError, match="loss: expected one of"):
        run_experiment((x, y), loss="l1", progress=False, device="cpu")
