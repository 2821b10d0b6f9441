"""End to end on planted synthetic recordings, with a circular-shift control."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from workbench.connectome import dynamic_connectome, synthetic

N_MOTIFS = 3


@pytest.fixture(scope="module")
def data():
    return synthetic(30, 4, 600, N_MOTIFS, seed=0)


@pytest.fixture(scope="module")
def result(data):
    return dynamic_connectome(data.traces, rank=N_MOTIFS, n_restarts=6, seed=0, device="cpu")


def _best_component(result, data, motif):
    truth = data["community"].values[motif]
    scores = [adjusted_rand_score(truth, result["community"][c].values) for c in range(result.sizes["component"])]
    return int(np.argmax(scores)), max(scores)


def test_every_motif_is_found(result, data):
    time = result["time_factor"]
    animal = result["animal_factor"]
    for m in range(N_MOTIFS):
        c, ari = _best_component(result, data, m)
        assert ari >= 0.6, f"motif {m}: best ARI {ari:.2f}"
        peak = float(time["time"][int(time[:, c].argmax("time"))])
        assert data["epoch_start"][m] <= peak < data["epoch_end"][m]
        part = data["participates"].values[m]
        assert animal[:, c].values[part].min() > animal[:, c].values[~part].max()
    assert result["stimulus_response"].dims == ("stimulus", "component")


def test_circular_shift_control_destroys_communities(data):
    rng = np.random.default_rng(7)
    values = data.traces.values.copy()
    for a in range(values.shape[0]):
        for n in range(values.shape[1]):
            values[a, n] = np.roll(values[a, n], rng.integers(values.shape[2]))
    control = dynamic_connectome(data.traces.copy(data=values), rank=N_MOTIFS, n_restarts=4, device="cpu")
    for m in range(N_MOTIFS):
        assert _best_component(control, data, m)[1] < 0.3


def test_missing_neurons_and_rank_sweep():
    data = synthetic(20, 3, 320, 2, seed=2, missing_fraction=0.1)
    assert data.traces.isnull().all("time").any()
    out = dynamic_connectome(data, rank=None, ranks=[1, 2, 3], n_restarts=4, device="cpu")
    assert out.attrs["rank"] == out.sizes["component"]
    assert "sweep_stability" in out and (out["pair_factor"] >= 0).all()
    assert not out["pair_factor"].isnull().any()


def test_rank_sweep_picks_the_planted_number_of_motifs(data):
    out = dynamic_connectome(data.traces, rank=None, ranks=[2, 3, 4], n_restarts=4, device="cpu")
    assert out.attrs["rank"] == N_MOTIFS == out.sizes["component"], out.attrs["sweep_reason"]
    assert out.attrs["sweep_suggested_rank"] == N_MOTIFS
    assert out["sweep_stability"].sel(rank=N_MOTIFS) >= 0.9 > out["sweep_stability"].sel(rank=N_MOTIFS + 1)
    assert out["sweep_heldout_error"].dims == ("rank",)


def test_shared_events_lock_a_community_across_animals():
    """With ``shared_events`` the participating animals' community activity coincides; by default it does not."""
    def community_events(ds, motif):
        members = ds["community"].values[motif] == 1
        start, end = (np.searchsorted(ds["time"].values, ds[k].values[motif]) for k in ("epoch_start", "epoch_end"))
        animals = np.flatnonzero(ds["participates"].values[motif])
        mean = ds.traces.values[animals][:, members, start:end].mean(1)
        return np.diff(mean, axis=-1)  # derivatives: the events, without the slow calcium tail

    for shared, low, high in ((True, 0.9, 1.0), (False, -0.3, 0.3)):
        ds = synthetic(30, 3, 360, 2, seed=0, communities_per_motif=1, shared_events=shared)
        for motif in range(2):
            a, b = community_events(ds, motif)
            assert low <= np.corrcoef(a, b)[0, 1] <= high, (shared, motif)
    default = synthetic(16, 3, 240, 2, seed=0)
    assert np.array_equal(default.traces.values, synthetic(16, 3, 240, 2, seed=0, shared_events=False).traces.values)


def test_sweep_warns_when_its_suggestion_is_only_the_largest_stable_rank():
    data = synthetic(24, 3, 240, 2, seed=0)  # 2 communities x 2 animals per motif: more terms than ranks tried
    with pytest.warns(UserWarning, match="bounded by the ranks tried"):
        out = dynamic_connectome(data.traces, rank=None, ranks=[1, 2, 3], n_restarts=3, device="cpu")
    assert out.attrs["sweep_rule"] == "largest_stable"
