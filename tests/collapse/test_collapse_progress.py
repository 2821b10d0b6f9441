"""run_experiment's progress callback: once per epoch, growing metrics, the last equal to the result."""

from __future__ import annotations

import numpy as np
import xarray as xr

from workbench.collapse import run_experiment

SMALL = dict(hidden=(16,), n_linear=2, device="cpu", seed=3)


def test_progress_is_called_every_epoch_with_the_metrics_so_far():
    calls = []
    ds = run_experiment(epochs=5, record_every=2, progress=lambda e, m: calls.append((e, m)), **SMALL)
    assert [epoch for epoch, _ in calls] == [0, 1, 2, 3, 4, 5]
    # measured at 0, every record_every epochs and at the last: what each call has seen so far
    assert [m.epoch.values.tolist() for _, m in calls] == [[0], [0], [0, 2], [0, 2], [0, 2, 4], [0, 2, 4, 5]]
    assert calls[-1][1] is ds
    # a new object only after a new measurement, so a live plot redraws only then
    assert calls[0][1] is calls[1][1] and calls[1][1] is not calls[2][1]
    for _, metrics in calls:  # every partial state is the result cut at its last epoch
        xr.testing.assert_identical(metrics, ds.sel(epoch=metrics.epoch.values))


def test_progress_callback_leaves_the_result_unchanged():
    quiet = run_experiment(epochs=4, record_every=2, progress=False, **SMALL)
    watched = run_experiment(epochs=4, record_every=2, progress=lambda e, m: None, **SMALL)
    xr.testing.assert_identical(quiet, watched)


def test_returning_true_stops_training_with_the_epochs_recorded_so_far():
    calls = []

    def stop_at_three(epoch, metrics):
        calls.append(epoch)
        return epoch == 3

    ds = run_experiment(epochs=10, record_every=1, progress=stop_at_three, **SMALL)
    assert calls == [0, 1, 2, 3] and ds.epoch.values.tolist() == [0, 1, 2, 3]
    assert ds.attrs["epochs"] == 10 and np.all(np.isfinite(ds.nc1.values))
