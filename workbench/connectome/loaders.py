"""Load calcium recordings into ``xr.DataArray(animal, neuron, time)``.

Formats (picked from the path):

* NeuroPAL-style MATLAB ``.mat`` (fields ``neurons``, ``norm_traces``,
  ``fps``, optional ``stim_names``, ``stim_times`` (n_stim x 2, seconds)),
  read with :func:`scipy.io.loadmat`; a folder of ``.mat`` files is one
  animal per file;
* Suite2p ``plane`` folders (``F.npy``, ``Fneu.npy``, ``iscell.npy``):
  cells only, neuropil-corrected ``F - 0.7 Fneu``;
* WormWideWeb-style JSON: a dataset file with ``trace_array`` (neurons x
  time), ``timestamp_confocal`` and ``labeled``, or a folder holding the
  ``time_trace.json`` + ``neurons.json`` re-export;
* netCDF / zarr written by xarray (a ``traces`` variable, or the only one);
* ``.npz`` (``traces`` plus optional ``neurons``, ``time``, ``animals``,
  ``fps``, ``stim_names``, ``stim_times``), loaded without pickle.

Several paths (a list) are several animals, aligned by neuron identity: a
neuron not identified in an animal is NaN there, never zero. Stimulus windows
travel as ``attrs`` ``stim_names``, ``stim_start``, ``stim_end`` (seconds).

Covariates (behaviour, stimuli: anything sampled on the time axis) that a file
holds are kept as coords ``(animal, time)`` of the traces, named as in the file
(NaN where an animal lacks one): extra numeric ``.mat`` fields and ``.npz``
arrays with one value per frame, netCDF/zarr data variables on ``time`` (and
maybe ``animal``, with their ``attrs`` such as ``units``), and WormWideWeb's
behaviour keys (``velocity``, ``head_curvature``, ``pumping``,
``angular_velocity``, ``body_curvature``, and ``reversal``: 1 inside the
``reversal_events`` [start, stop] frames, read as 1-based and inclusive like
the file's other indices). Suite2p and the WormWideWeb re-export folder have
none. ``traces.reset_coords()`` gives them as data variables of a Dataset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

_NEUROPIL_COEFF = 0.7  # Suite2p's default neuropil subtraction factor
_MAT_FIELDS = ("neurons", "norm_traces", "fps", "stim_names", "stim_times")
_NPZ_FIELDS = ("traces", "neurons", "time", "animals", "fps", "stim_names", "stim_times")


#: WormWideWeb dataset keys holding one behaviour value per confocal frame.
_WORMWIDEWEB_BEHAVIOUR = ("velocity", "head_curvature", "pumping", "angular_velocity", "body_curvature")


def _covariates(candidates: dict, n_animals: int, n_time: int, reserved=()) -> dict[str, np.ndarray]:
    """The numeric entries of ``candidates`` with one value per frame, as (animal, time) arrays."""
    out = {}
    for name, value in candidates.items():
        if name in reserved or name.startswith("__") or name in ("animal", "neuron", "time"):
            continue
        value = np.asarray(value)
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool) or np.iscomplexobj(value):
            continue
        if np.isnan(value.astype(float)).all():  # nothing was recorded: nothing to keep
            continue
        if value.shape == (n_time,):
            out[name] = np.broadcast_to(value.astype(float), (n_animals, n_time))
        elif value.shape == (n_animals, n_time) and n_animals > 1:
            out[name] = value.astype(float)
    return out


def _make(traces: np.ndarray, neurons, time, *, animals=None, attrs: dict | None = None,
          covariates: dict | None = None) -> xr.DataArray:
    traces = np.asarray(traces, dtype=float)
    if traces.ndim == 2:
        traces = traces[None]
    if traces.ndim != 3:
        raise ValueError(f"traces: expected (neuron, time) or (animal, neuron, time) values, got shape {traces.shape}")
    neurons = np.asarray([str(n) for n in neurons])
    if len(neurons) != traces.shape[1]:
        raise ValueError(f"neurons: expected {traces.shape[1]} names for the traces, got {len(neurons)}")
    uniq, counts = np.unique(neurons, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"neurons: expected unique names, got duplicates {uniq[counts > 1].tolist()}")
    animals = animals if animals is not None else [f"animal{a}" for a in range(traces.shape[0])]
    extra = {name: (("animal", "time"), values) for name, values in (covariates or {}).items()}
    return xr.DataArray(traces, dims=("animal", "neuron", "time"),
                        coords={"animal": [str(a) for a in animals], "neuron": neurons, "time": np.asarray(time, float),
                                **extra},
                        name="traces", attrs=attrs or {})


def _check_fps(fps, where: str = "") -> float:
    fps = float(fps)
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps: expected a positive frame rate{where}, got {fps!r}")
    return fps


def _stim_attrs(names, times) -> dict:
    if names is None or times is None:
        return {}
    names = [str(n) for n in np.atleast_1d(names)]
    times = np.asarray(times, dtype=float).reshape(-1, 2)
    if len(names) != len(times):
        raise ValueError(f"stim_times: expected one (start, end) row per stimulus ({len(names)}), got {len(times)}")
    return {"stim_names": names, "stim_start": times[:, 0].tolist(), "stim_end": times[:, 1].tolist()}


def _load_mat(path: Path) -> xr.DataArray:
    from scipy.io import loadmat

    data = loadmat(path, simplify_cells=True)
    for key in ("neurons", "norm_traces", "fps"):
        if key not in data:
            raise ValueError(f"path: expected a NeuroPAL .mat with field {key!r}, got fields {sorted(k for k in data if not k.startswith('__'))}")
    neurons = list(np.atleast_1d(data["neurons"]))
    raw = data["norm_traces"]
    if isinstance(raw, np.ndarray) and raw.dtype != object:
        values = raw.astype(float)
    else:  # a cell array, one trace per neuron; an empty cell is a neuron not identified
        cells = [np.asarray(c, dtype=float).ravel() for c in raw]
        n_time = max(c.size for c in cells)
        values = np.full((len(cells), n_time), np.nan)
        for i, c in enumerate(cells):
            values[i, : c.size] = c
    fps = _check_fps(data["fps"], f" in {path}")
    n_time = values.shape[-1]
    attrs = {"fps": fps, "source": str(path), **_stim_attrs(data.get("stim_names"), data.get("stim_times"))}
    animals = [path.stem] if values.ndim == 2 else None
    n_animals = 1 if values.ndim == 2 else values.shape[0]
    covariates = _covariates(data, n_animals, n_time, reserved=_MAT_FIELDS)
    return _make(values, neurons, np.arange(n_time) / fps, animals=animals, attrs=attrs, covariates=covariates)


def _load_suite2p(path: Path, fps: float | None) -> xr.DataArray:
    F = np.load(path / "F.npy", allow_pickle=False)
    Fneu = np.load(path / "Fneu.npy", allow_pickle=False)
    iscell = np.load(path / "iscell.npy", allow_pickle=False)
    cells = np.flatnonzero(iscell[:, 0] > 0)
    values = F[cells] - _NEUROPIL_COEFF * Fneu[cells]
    rate = fps if fps is not None else 1.0
    attrs = {"fps": rate, "source": str(path), "neuropil_coefficient": _NEUROPIL_COEFF,
             "time_units": "seconds" if fps is not None else "frames (fps unknown)"}
    return _make(values, [f"roi{c}" for c in cells], np.arange(values.shape[1]) / rate, animals=[path.name], attrs=attrs)


def _load_wormwideweb(path: Path) -> xr.DataArray:
    if path.is_dir():
        rows = json.loads((path / "time_trace.json").read_text())
        names = json.loads((path / "neurons.json").read_text())
        time = np.array([r[0] for r in rows], dtype=float)
        values = np.array([r[1] for r in rows], dtype=float).T
        if len(names) < values.shape[0]:
            raise ValueError(f"path: neurons.json names {len(names)} neurons, the traces have {values.shape[0]}")
        return _make(values, names[: values.shape[0]], time, animals=[path.name], attrs={"source": str(path)})
    data = json.loads(path.read_text())
    if "trace_array" not in data:
        raise ValueError(f"path: expected a WormWideWeb JSON with 'trace_array', got keys {sorted(data)[:10]}")
    values = np.asarray(data["trace_array"], dtype=float)
    time = np.asarray(data.get("timestamp_confocal", np.arange(values.shape[1])), dtype=float)
    # Only identified neurons can be aligned across animals; `labeled` maps 1-based indices to labels.
    labeled = data.get("labeled", {})
    rows, names = [], []
    for key, info in labeled.items():
        label = info.get("label") if isinstance(info, dict) else info
        if label and "?" not in str(label):
            rows.append(int(key) - 1)
            names.append(str(label))
    if not rows:
        raise ValueError("path: the WormWideWeb JSON has no identified neuron in 'labeled'")
    uid = str(data.get("uid", path.stem))
    n_time = values.shape[1]
    behaviour = {k: np.asarray([np.nan if v is None else v for v in data[k]], dtype=float)
                 for k in _WORMWIDEWEB_BEHAVIOUR if isinstance(data.get(k), list)}
    if isinstance(data.get("reversal_events"), list):
        reversal = np.zeros(n_time)
        for start, stop in data["reversal_events"]:
            reversal[max(int(start) - 1, 0): int(stop)] = 1.0
        behaviour["reversal"] = reversal
    return _make(values[rows], names, time[:n_time], animals=[uid], attrs={"source": str(path)},
                 covariates=_covariates(behaviour, 1, n_time))


def _load_xarray(path: Path) -> xr.DataArray:
    ds = xr.open_zarr(path) if path.suffix == ".zarr" else xr.open_dataset(path)
    if "traces" in ds:
        da = ds["traces"]
    elif len(ds.data_vars) == 1:
        da = next(iter(ds.data_vars.values()))
    else:
        raise ValueError(f"path: expected a 'traces' variable or a single variable, got {list(ds.data_vars)}")
    da = da.load()
    if "animal" not in da.dims:
        da = da.expand_dims(animal=[path.stem])
    if not {"neuron", "time"} <= set(da.dims):
        raise ValueError(f"path: expected a variable with dims (animal, neuron, time), got {da.dims}")
    for name, var in ds.data_vars.items():
        if name != da.name and "time" in var.dims and set(var.dims) <= {"animal", "time"}:
            var = var.load().astype(float).broadcast_like(da.isel(neuron=0, drop=True))
            da = da.assign_coords({str(name): var.transpose("animal", "time")})
    return da.transpose("animal", "neuron", "time").astype(float)


def _load_npz(path: Path) -> xr.DataArray:
    with np.load(path, allow_pickle=False) as data:
        if "traces" not in data:
            raise ValueError(f"path: expected an .npz with a 'traces' array, got {sorted(data.files)}")
        values = data["traces"]
        n_time = values.shape[-1]
        fps = _check_fps(data["fps"], f" in {path}") if "fps" in data else 1.0
        neurons = data["neurons"] if "neurons" in data else np.arange(values.shape[-2])
        time = data["time"] if "time" in data else np.arange(n_time) / fps
        animals = data["animals"] if "animals" in data else ([path.stem] if values.ndim == 2 else None)
        attrs = {"fps": fps, "source": str(path),
                 **_stim_attrs(data["stim_names"] if "stim_names" in data else None,
                               data["stim_times"] if "stim_times" in data else None)}
        n_animals = 1 if values.ndim == 2 else values.shape[0]
        covariates = _covariates({k: data[k] for k in data.files}, n_animals, n_time, reserved=_NPZ_FIELDS)
    return _make(values, neurons, time, animals=animals, attrs=attrs, covariates=covariates)


def _load_one(path: Path, fps: float | None) -> xr.DataArray:
    if not path.exists():
        raise ValueError(f"path: expected an existing file or folder, got {str(path)!r}")
    if path.is_dir() and path.suffix != ".zarr":
        if (path / "F.npy").exists() and (path / "iscell.npy").exists():
            return _load_suite2p(path, fps)
        if (path / "time_trace.json").exists():
            return _load_wormwideweb(path)
        mats = sorted(path.glob("*.mat"))
        if mats:
            return align([_load_mat(m) for m in mats])
        raise ValueError(f"path: expected a Suite2p, WormWideWeb or .mat folder, got {str(path)!r} with none of their files")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return _load_mat(path)
    if suffix == ".json":
        return _load_wormwideweb(path)
    if suffix in (".nc", ".nc4", ".netcdf", ".h5", ".zarr"):
        return _load_xarray(path)
    if suffix == ".npz":
        return _load_npz(path)
    raise ValueError(f"path: expected .mat, .json, .nc, .zarr, .npz or a recording folder, got {str(path)!r}")


def align(recordings: list[xr.DataArray]) -> xr.DataArray:
    """Stack recordings along ``animal``, matching neurons by name (missing -> NaN).

    Recordings with different time stamps are aligned by frame index (shorter
    ones padded with NaN) and get frame-index times.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> a = xr.DataArray(np.ones((1, 2, 3)), dims=("animal", "neuron", "time"),
    ...                  coords={"animal": ["a"], "neuron": ["X", "Y"], "time": [0, 1, 2]})
    >>> b = a.assign_coords(animal=["b"], neuron=["Y", "Z"])
    >>> align([a, b]).sel(animal="b", neuron="X").isnull().all().item()
    True
    """
    if len(recordings) == 1:
        return recordings[0]
    covariates = {}
    for r in recordings:
        covariates.update({k: v.attrs for k, v in r.coords.items() if k not in r.dims})
    recordings = [r.assign_coords({k: xr.DataArray(np.full((r.sizes["animal"], r.sizes["time"]), np.nan),
                                                   dims=("animal", "time"), attrs=attrs)
                                   for k, attrs in covariates.items() if k not in r.coords}) for r in recordings]
    times = [r["time"].values for r in recordings]
    same_time = all(t.shape == times[0].shape and np.allclose(t, times[0]) for t in times)
    if not same_time:
        recordings = [r.assign_coords(time=np.arange(r.sizes["time"])) for r in recordings]
    animals = np.concatenate([r["animal"].values for r in recordings])
    if len(set(animals)) != len(animals):
        recordings = [r.assign_coords(animal=[f"{a}_{i}" for a in r["animal"].values]) for i, r in enumerate(recordings)]
    out = xr.concat(recordings, dim="animal", join="outer", fill_value=np.nan, combine_attrs="drop_conflicts")
    if not same_time:
        out.attrs["time_units"] = "frames (recordings had different time stamps)"
    return out.transpose("animal", "neuron", "time")


def load_traces(path: str | os.PathLike | list, *, fps: float | None = None) -> xr.DataArray:
    """Read recordings of one or several animals into ``xr.DataArray(animal, neuron, time)``.

    Parameters
    ----------
    path : path or list of paths
        A file (``.mat``, ``.json``, ``.nc``, ``.zarr``, ``.npz``) or folder
        (Suite2p plane, WormWideWeb re-export, folder of ``.mat``); a list is
        several animals, aligned by neuron name.
    fps : float, optional
        Frame rate for formats that do not store one (Suite2p).

    Returns
    -------
    xr.DataArray (animal, neuron, time)
        NaN where a neuron was not identified in an animal; stimulus windows
        in ``attrs`` (``stim_names``, ``stim_start``, ``stim_end``).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "rec.npz")
    >>> np.savez(f, traces=np.zeros((3, 5)), neurons=np.array(["A", "B", "C"]), fps=2.0)
    >>> load_traces(f).sizes == {"animal": 1, "neuron": 3, "time": 5}
    True
    """
    fps = None if fps is None else _check_fps(fps)
    if isinstance(path, (list, tuple)):
        if not path:
            raise ValueError("path: expected at least one path, got an empty list")
        return align([_load_one(Path(p), fps) for p in path])
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str, PathLike or list of them, got {type(path).__name__}")
    return _load_one(Path(path), fps)
