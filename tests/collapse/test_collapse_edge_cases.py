"""Edge cases of layerwise, track and run_experiment: clear errors instead of crashes or silent misreadings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.collapse import layerwise, run_experiment, track


def _net_and_data():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
    return net, torch.randn(30, 4), torch.arange(30) % 3


def test_layers_given_as_one_string_is_rejected_not_split_into_characters():
    net = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.ReLU(), torch.nn.Linear(12, 12), torch.nn.ReLU(),
                              torch.nn.Linear(12, 3))
    x, y = torch.randn(30, 4), torch.arange(30) % 3
    # "13" names no module; read as characters it would silently measure modules "1" and "3"
    with pytest.raises(TypeError, match="layers: expected a sequence of layer names"):
        layerwise(net, (x, y), "13", device="cpu")


def test_duplicate_layers_are_rejected():
    net, x, y = _net_and_data()
    with pytest.raises(ValueError, match=r"layers: expected distinct names, got \['1', '1'\]"):
        layerwise(net, (x, y), ["1", "1"], device="cpu")


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_layerwise_batch_size_must_be_a_positive_int(batch_size):
    net, x, y = _net_and_data()
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1"):
        layerwise(net, (x, y), batch_size=batch_size, device="cpu")


def test_layerwise_empty_arrays_get_a_clear_error():
    net, x, y = _net_and_data()
    with pytest.raises(ValueError, match="data: expected at least one sample"):
        layerwise(net, (x[:0], y[:0]), device="cpu")


@pytest.mark.parametrize("n_classes", [3.5, "3"])
def test_layerwise_n_classes_must_be_an_int(n_classes):
    net, x, y = _net_and_data()
    with pytest.raises(TypeError, match="n_classes: expected an int"):
        layerwise(net, (x, y), n_classes=n_classes, device="cpu")


def test_track_rejects_a_fractional_epoch_instead_of_truncating_it():
    net, x, y = _net_and_data()
    tracker = track(net, (x, y), device="cpu")
    tracker(0)
    with pytest.raises(TypeError, match="epoch: expected an int, got 1.5"):
        tracker(1.5)
    tracker(np.int64(1))
    assert tracker.result().epoch.values.tolist() == [0, 1]


def test_track_extra_values_must_be_numbers():
    net, x, y = _net_and_data()
    tracker = track(net, (x, y), device="cpu")
    with pytest.raises(TypeError, match="train_loss: expected a number, got str"):
        tracker(0, train_loss="low")
    assert tracker.epochs_ == []


KW = dict(hidden=(8,), n_linear=1, epochs=2, record_every=1, progress=False, device="cpu")


def _arrays():
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 5)).astype(np.float32), np.arange(40) % 2


@pytest.mark.parametrize("name, value", [("epochs", 2.5), ("record_every", 1.5), ("batch_size", 0),
                                         ("batch_size", 2.5)])
def test_run_experiment_counts_must_be_positive_ints(name, value):
    x, y = _arrays()
    with pytest.raises(ValueError, match=f"{name}: expected an int >= 1, got {value}"):
        run_experiment((x, y), **{**KW, name: value})


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan")])
def test_run_experiment_lr_must_be_positive(lr):
    x, y = _arrays()
    with pytest.raises(ValueError, match="lr: expected a positive finite number"):
        run_experiment((x, y), **{**KW, "lr": lr})


def test_run_experiment_negative_labels_name_the_data():
    x, y = _arrays()
    with pytest.raises(ValueError, match="data: expected class labels >= 0, got -1"):
        run_experiment((x, y - 1), **KW)


def test_run_experiment_empty_data_names_the_data():
    x, y = _arrays()
    with pytest.raises(ValueError, match="data: expected at least one sample"):
        run_experiment((x[:0], y[:0]), **KW)


def test_run_experiment_single_sample_per_class_has_no_within_class_spread():
    x, y = _arrays()
    ds = run_experiment((x[:4], np.arange(4)), **KW)
    assert ds.nc1.values.tolist() == [[0.0]] * 3  # Sigma_W of one sample per class is exactly 0


def test_run_experiment_labels_that_skip_classes_get_a_clear_error():
    x, y = _arrays()
    with pytest.raises(ValueError, match="expected every class 0..7 to have samples"):
        run_experiment((x, np.where(y == 1, 7, 3)), **KW)


def test_run_experiment_record_every_beyond_epochs_records_first_and_last():
    x, y = _arrays()
    assert run_experiment((x, y), **{**KW, "record_every": 10}).epoch.values.tolist() == [0, 2]
