"""The whole dynamic-connectome pipeline: traces -> affinities -> NTF -> communities."""

from __future__ import annotations

import numpy as np
import xarray as xr

from workbench.connectome.affinity import affinity
from workbench.connectome.communities import communities
from workbench.connectome.ntf import ntf
from workbench.connectome.rank import rank_sweep


#: Per-rank results of :func:`rank_sweep` kept (as ``sweep_<name>``) in the output of :func:`dynamic_connectome`.
SWEEP_VARIABLES = ("error", "stability", "stability_low", "stability_high", "heldout_error", "heldout_spread")


def _stimulus_response(time_factor: xr.DataArray, attrs: dict) -> xr.DataArray | None:
    """Mean time loading inside each stimulus window, per component."""
    names = attrs.get("stim_names")
    if names is None or len(names) == 0:
        return None
    names = [names] if isinstance(names, str) else list(names)
    starts, ends = np.atleast_1d(attrs["stim_start"]), np.atleast_1d(attrs["stim_end"])
    t = time_factor["time"].values
    rows = []
    for start, end in zip(starts, ends):
        inside = (t >= start) & (t < end)
        rows.append(time_factor.values[inside].mean(0) if inside.any() else np.full(time_factor.shape[1], np.nan))
    return xr.DataArray(np.asarray(rows), dims=("stimulus", "component"),
                        coords={"stimulus": names, "stim_start": ("stimulus", starts), "stim_end": ("stimulus", ends)})


def dynamic_connectome(traces, rank: int | None = None, *, ranks=range(2, 9), n_restarts: int = 10,
                       method: str = "differential", window: int = 4, smooth: float = 1.0,
                       community_method: str = "wsbm", seed: int = 0, device=None, progress: bool = False,
                       **ntf_kwargs) -> xr.Dataset:
    """Dynamic functional connectome of recordings, end to end.

    Steps: :func:`affinity` (pair x time x animal) -> :func:`rank_sweep` when
    ``rank`` is None -> :func:`ntf` -> :func:`communities` on each
    component's pair factor.

    Parameters
    ----------
    traces : xr.DataArray (animal, neuron, time) or xr.Dataset with ``traces``
        NaN marks neurons or samples not recorded; they are left out of the fit.
    rank : int, optional
        Number of components; default: the suggested rank of a sweep over ``ranks``.
    ranks : iterable of int
        Ranks tried when ``rank`` is None. No mode size caps them: one
        recording (an animal mode of size 1) can take any rank up to
        ``min(pair, time)``, and its components are then only as unique as
        the restarts' agreement says (``sweep_stability``).
    n_restarts : int
    method, window, smooth : see :func:`affinity`
    community_method : {"wsbm", "leiden"}
    seed : int
    device : str or torch.device, optional
    progress : bool
    **ntf_kwargs : passed to :func:`ntf`

    Returns
    -------
    xr.Dataset
        ``pair_factor`` (pair, component), ``time_factor`` (time, component),
        ``animal_factor`` (animal, component), ``weights`` (component),
        ``community`` (component, neuron), ``restart_similarity``, the rank
        sweep when one was run (``sweep_error``, ``sweep_heldout_error``,
        ``sweep_stability``... over ``rank``; its ``attrs`` as
        ``sweep_suggested_rank``, ``sweep_rule``, ``sweep_reason``...), and
        ``stimulus_response`` (stimulus, component: mean time
        loading inside each stimulus window) when the traces carry windows.

    Examples
    --------
    >>> from workbench.connectome import synthetic
    >>> ds = synthetic(16, 3, 240, 2, seed=0)
    >>> out = dynamic_connectome(ds.traces, rank=2, n_restarts=3, device="cpu")
    >>> out.community.dims
    ('component', 'neuron')
    """
    if isinstance(traces, xr.Dataset):
        if "traces" not in traces:
            raise ValueError(f"traces: expected a Dataset with a 'traces' variable, got {list(traces.data_vars)}")
        traces = traces["traces"]
    tensor = affinity(traces, method=method, window=window, smooth=smooth)
    sweep = None
    if rank is None:
        sweep = rank_sweep(tensor, ranks, n_restarts=n_restarts, seed=seed, device=device, progress=progress,
                           **ntf_kwargs)
        rank = int(sweep.attrs["suggested_rank"])
    result = ntf(tensor, rank, n_restarts=n_restarts, seed=seed, device=device, progress=progress, **ntf_kwargs)
    pair, time, animal = result.factor("pair"), result.factor("time"), result.factor("animal")
    labels = [communities(pair[:, c], method=community_method, seed=seed) for c in range(rank)]
    community = xr.concat(labels, dim="component").assign_coords(component=pair["component"].values)
    community.attrs = {"method": community_method}
    data = {
        "pair_factor": pair,
        "time_factor": time,
        "animal_factor": animal,
        "weights": result.weights,
        "community": community,
        "n_communities": ("component", np.array([lab.attrs["n_blocks"] for lab in labels])),
        "restart_similarity": result.similarity,
    }
    response = _stimulus_response(time, traces.attrs)
    if response is not None:
        data["stimulus_response"] = response
    if sweep is not None:
        data.update({f"sweep_{name}": sweep[name] for name in SWEEP_VARIABLES})
    attrs = {k: v for k, v in traces.attrs.items() if isinstance(v, (str, int, float, list))}
    if sweep is not None:
        attrs.update({f"sweep_{k}": v for k, v in sweep.attrs.items()})
    attrs.update(rank=int(rank), error=result.error, stability=result.stability, affinity_method=method,
                 window=int(window), smooth=float(smooth), seed=int(seed))
    return xr.Dataset(data, attrs=attrs)
