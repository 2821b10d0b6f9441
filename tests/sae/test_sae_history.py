"""Training with a held-out curve (workbench.sae.history) against exact reconstructions and plain training."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import xarray as xr

from sae_helpers import constant_sae, identity_sae
from workbench.sae import (
    held_out_curve,
    held_out_fvu_l0,
    load_training_record,
    save_training_record,
    train,
    train_with_held_out,
    training_history,
    training_record,
)

SETTINGS = dict(d_sae=16, k=3, lr=3e-3, seed=1, progress=False, device="cpu")


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(3000, 8, generator=gen), torch.randn(200, 8, generator=gen)


def test_fvu_is_zero_for_an_exact_sae_and_one_for_the_mean():
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(1))
    fvu, l0 = held_out_fvu_l0(identity_sae(6), x)
    assert fvu == pytest.approx(0.0, abs=1e-10) and l0 == pytest.approx(6.0)  # one of relu(x), relu(-x) per entry
    fvu, l0 = held_out_fvu_l0(constant_sae(6, x.mean(0)), x)
    assert fvu == pytest.approx(1.0, rel=1e-5)


def test_held_out_points_leave_training_unchanged(data):
    acts, held_out = data
    steps, published = [], []
    sae, record = train_with_held_out(acts, held_out, n_tokens=2560, batch_size=256, n_points=3,
                                      callback=lambda step, _: steps.append(step), on_point=published.append,
                                      **SETTINGS)
    plain, history = train(acts, n_tokens=2560, batch_size=256, **SETTINGS)
    torch.testing.assert_close(sae.W_dec, plain.W_dec, rtol=0, atol=0)
    assert steps == list(range(1, 11))
    assert record["probe_step"].values.tolist() == [3, 6, 9, 10]  # every 10 // 3 steps, and the last
    assert record["probe_tokens"].values.tolist() == [768, 1536, 2304, 2560]
    assert [len(points) for points in published] == [1, 2, 3, 4] and published[-1] == tuple(
        zip(*(record[f"probe_{name}"].values.tolist() for name in ("step", "tokens", "fvu", "l0"))))
    fvu, l0 = held_out_fvu_l0(sae, held_out)
    assert (record["probe_fvu"].values[-1], record["probe_l0"].values[-1]) == (fvu, l0)
    back, held = training_history(record)
    xr.testing.assert_equal(back[["fvu", "l0"]].reset_coords(drop=True),
                            history[["fvu", "l0"]].reset_coords(drop=True))
    np.testing.assert_array_equal(back["tokens"].values, history["tokens"].values)
    xr.testing.assert_equal(held, held_out_curve(published[-1]))


def test_a_stopping_callback_stops_training(data):
    acts, held_out = data

    def stop(step, _):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_with_held_out(acts, held_out, n_tokens=2560, batch_size=256, callback=stop, **SETTINGS)


def test_record_round_trips_through_the_sae_folder(tmp_path):
    history = xr.Dataset({"fvu": ("step", [0.9, 0.5]), "l0": ("step", [4.0, 3.0])},
                         coords={"step": [1, 2], "tokens": ("step", [256, 512])})
    record = training_record(history, [(2, 512, 0.6, 3.5)])
    assert load_training_record(tmp_path) is None
    assert save_training_record(tmp_path, record) == tmp_path / "history.json"
    xr.testing.assert_identical(load_training_record(tmp_path), record)
    assert training_history(xr.Dataset()) is None
    alone = training_history(record.drop_vars(["probe_fvu", "probe_l0"]))
    assert alone[1] is None and alone[0]["fvu"].values.tolist() == [0.9, 0.5]
    assert held_out_curve([]).sizes == {"step": 0}
