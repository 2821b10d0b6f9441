"""Loaders on the bundled real recordings and on files written here in each format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy.io import savemat

from workbench.connectome import affinity, dynamic_connectome, load_traces

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "connectome"
DAG = ROOT.parent / "shared" / "data" / "dag2023_worms" / "dag2023_worms.nc"


def test_wormwideweb_reexport_matches_json():
    traces = load_traces(DATA / "atanas2023_worm")
    rows = json.loads((DATA / "atanas2023_worm" / "time_trace.json").read_text())
    names = json.loads((DATA / "atanas2023_worm" / "neurons.json").read_text())
    assert traces.sizes == {"animal": 1, "neuron": 98, "time": 1600}
    assert traces["neuron"].values[0] == names[0] and traces["neuron"].values[-1] == names[97]
    assert traces.sel(neuron=names[5]).values[0, 10] == rows[10][1][5]
    assert traces["time"].values[-1] == pytest.approx(rows[-1][0])
    assert affinity(traces.isel(neuron=slice(0, 10), time=slice(0, 200))).sizes["pair"] == 45


def test_wormwideweb_dataset_json(tmp_path):
    payload = {"uid": "2022-01-01-01", "trace_array": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
               "timestamp_confocal": [0.0, 0.6, 1.2],
               "labeled": {"1": {"label": "AVAL"}, "3": {"label": "RIML"}, "2": {"label": "?"}}}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(payload))
    traces = load_traces(path)
    assert traces["neuron"].values.tolist() == ["AVAL", "RIML"]
    np.testing.assert_array_equal(traces.sel(neuron="RIML").values[0], [6.0, 7.0, 8.0])


def test_suite2p_folder():
    traces = load_traces(DATA / "suite2p_plane0", fps=30.0)
    F = np.load(DATA / "suite2p_plane0" / "F.npy")
    Fneu = np.load(DATA / "suite2p_plane0" / "Fneu.npy")
    cells = np.flatnonzero(np.load(DATA / "suite2p_plane0" / "iscell.npy")[:, 0] > 0)
    assert traces.sizes == {"animal": 1, "neuron": 20, "time": 2000}
    np.testing.assert_allclose(traces.values[0, 0], F[cells[0]] - 0.7 * Fneu[cells[0]], rtol=1e-6)
    assert traces["time"].values[30] == pytest.approx(1.0)


def test_neuropal_mat_cells_and_alignment(tmp_path):
    rng = np.random.default_rng(0)
    first = {"neurons": np.array(["AVAL", "AVAR", "RIML"], dtype=object), "norm_traces": rng.normal(size=(3, 40)),
             "fps": 4.0, "stim_names": np.array(["butanone"], dtype=object), "stim_times": np.array([[2.0, 5.0]])}
    cells = np.empty(3, dtype=object)
    cells[0], cells[1], cells[2] = rng.normal(size=40), np.zeros(0), rng.normal(size=40)
    second = {"neurons": np.array(["AVAL", "SMDDL", "RIML"], dtype=object), "norm_traces": cells, "fps": 4.0}
    savemat(tmp_path / "worm1.mat", first)
    savemat(tmp_path / "worm2.mat", second)
    one = load_traces(tmp_path / "worm1.mat")
    np.testing.assert_allclose(one.sel(neuron="AVAR").values[0], first["norm_traces"][1])
    assert one.attrs["stim_names"] == ["butanone"] and one.attrs["stim_start"] == [2.0]
    both = load_traces(tmp_path)  # a folder of .mat files: one animal each
    assert both.sizes == {"animal": 2, "neuron": 4, "time": 40}
    assert both.sel(animal="worm1", neuron="SMDDL").isnull().all()  # not in worm1: NaN, not 0
    assert both.sel(animal="worm2", neuron="AVAR").isnull().all()  # empty cell: NaN
    assert both.sel(animal="worm2", neuron="SMDDL").isnull().all()
    np.testing.assert_allclose(both.sel(animal="worm2", neuron="RIML").values, cells[2])


def test_netcdf_zarr_npz_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    da = xr.DataArray(rng.normal(size=(2, 4, 30)), dims=("animal", "neuron", "time"),
                      coords={"animal": ["a", "b"], "neuron": list("WXYZ"), "time": np.arange(30) / 4.0},
                      name="traces")
    da.to_netcdf(tmp_path / "t.nc")
    da.to_dataset().to_zarr(tmp_path / "t.zarr")
    np.savez(tmp_path / "t.npz", traces=da.values, neurons=np.array(list("WXYZ")), animals=np.array(["a", "b"]),
             fps=4.0, stim_names=np.array(["odor"]), stim_times=np.array([[1.0, 2.0]]))
    for name in ("t.nc", "t.zarr", "t.npz"):
        loaded = load_traces(tmp_path / name)
        xr.testing.assert_allclose(loaded.reset_coords(drop=True), da.reset_coords(drop=True))
    assert load_traces(tmp_path / "t.npz").attrs["stim_end"] == [2.0]


def test_animals_with_other_neurons_align_to_nan(tmp_path):
    a = xr.DataArray(np.ones((1, 2, 10)), dims=("animal", "neuron", "time"),
                     coords={"animal": ["a"], "neuron": ["X", "Y"], "time": np.arange(10.0)}, name="traces")
    b = a.assign_coords(animal=["b"], neuron=["Y", "Z"])
    a.to_netcdf(tmp_path / "a.nc")
    b.to_netcdf(tmp_path / "b.nc")
    both = load_traces([tmp_path / "a.nc", tmp_path / "b.nc"])
    assert both.sizes == {"animal": 2, "neuron": 3, "time": 10}
    assert both.sel(animal="a", neuron="Z").isnull().all() and both.sel(animal="b", neuron="Y").notnull().all()


@pytest.mark.skipif(not DAG.exists(), reason="dag2023_worms is not in ../shared/data (not redistributed)")
def test_dag_worms_netcdf_keeps_nan():
    traces = load_traces(DAG)
    assert traces.sizes == {"animal": 7, "neuron": 141, "time": 800}
    present_everywhere = traces.notnull().all(("animal", "time"))
    assert int(present_everywhere.sum()) == 40
    assert traces["reversal"].dims == ("animal", "time") and set(np.unique(traces["reversal"])) <= {0.0, 1.0}
    assert traces["velocity"].sizes == {"animal": 7, "time": 800}


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="existing"):
        load_traces(tmp_path / "nothing.mat")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="expected .mat"):
        load_traces(tmp_path / "x.txt")
    savemat(tmp_path / "bad.mat", {"traces": np.ones((2, 2))})
    with pytest.raises(ValueError, match="norm_traces|neurons"):
        load_traces(tmp_path / "bad.mat")
    with pytest.raises(TypeError, match="path"):
        load_traces(3)


def test_covariates_are_kept_as_time_coords(tmp_path):
    rng = np.random.default_rng(2)
    n_time = 40
    velocity = rng.normal(size=n_time)
    savemat(tmp_path / "worm1.mat", {"neurons": np.array(["AVAL", "RIML"], dtype=object),
                                     "norm_traces": rng.normal(size=(2, n_time)), "fps": 4.0,
                                     "velocity": velocity, "gains": np.ones(3)})
    mat = load_traces(tmp_path / "worm1.mat")
    assert [k for k in mat.coords if k not in mat.dims] == ["velocity"]  # `gains` is not one value per frame
    np.testing.assert_allclose(mat["velocity"].values, velocity[None])
    assert mat["velocity"].dims == ("animal", "time")

    np.savez(tmp_path / "t.npz", traces=rng.normal(size=(3, n_time)), neurons=np.array(list("ABC")),
             reversal=(velocity < 0).astype(float), short=np.ones(n_time - 1))
    npz = load_traces(tmp_path / "t.npz")
    assert [k for k in npz.coords if k not in npz.dims] == ["reversal"]

    da = xr.DataArray(rng.normal(size=(2, 3, n_time)), dims=("animal", "neuron", "time"),
                      coords={"animal": ["a", "b"], "neuron": list("XYZ"), "time": np.arange(n_time) * 0.6})
    speed = xr.DataArray(rng.normal(size=(2, n_time)), dims=("animal", "time"), attrs={"units": "mm/s"})
    xr.Dataset({"traces": da, "speed": speed, "odor": ("time", np.ones(n_time)),
                "gain": ("neuron", np.ones(3))}).to_netcdf(tmp_path / "w.nc")
    nc = load_traces(tmp_path / "w.nc")
    assert sorted(k for k in nc.coords if k not in nc.dims) == ["odor", "speed"]
    assert nc["speed"].attrs["units"] == "mm/s" and nc["odor"].dims == ("animal", "time")
    np.testing.assert_allclose(nc["speed"].values, speed.values)
    assert sorted(nc.reset_coords().data_vars) == ["odor", "speed", "traces"]  # the Dataset form

    both = load_traces([tmp_path / "worm1.mat", tmp_path / "t.npz"])  # velocity only in worm1, reversal only in t
    assert np.isnan(both["velocity"].sel(animal="t")).all() and np.isnan(both["reversal"].sel(animal="worm1")).all()
    np.testing.assert_allclose(both["velocity"].sel(animal="worm1"), velocity)
    out = dynamic_connectome(both, rank=1, n_restarts=1, max_iter=20, device="cpu")
    assert sorted(out["covariate"].values) == ["reversal", "velocity"]


def test_wormwideweb_behaviour_keys(tmp_path):
    payload = {"uid": "w", "trace_array": np.random.default_rng(0).normal(size=(2, 6)).tolist(),
               "timestamp_confocal": [0.0, 0.6, 1.2, 1.8, 2.4, 3.0], "labeled": {"1": {"label": "AVAL"},
                                                                                 "2": {"label": "AVAR"}},
               "velocity": [0.1, None, 0.3, -0.1, -0.2, 0.0], "head_curvature": [0.0] * 6, "pumping": [None] * 6,
               "reversal_events": [[2, 3]], "max_t": 6}
    (tmp_path / "w.json").write_text(json.dumps(payload))
    traces = load_traces(tmp_path / "w.json")
    np.testing.assert_array_equal(traces["reversal"].values[0], [0, 1, 1, 0, 0, 0])  # frames 2-3, 1-based inclusive
    np.testing.assert_array_equal(traces["velocity"].values[0], [0.1, np.nan, 0.3, -0.1, -0.2, 0.0])
    assert "head_curvature" in traces.coords and "max_t" not in traces.coords
    assert "pumping" not in traces.coords  # never recorded: not kept
    bundled = load_traces(DATA / "atanas2023_worm")  # the re-export holds no behaviour
    assert [k for k in bundled.coords if k not in bundled.dims] == []
