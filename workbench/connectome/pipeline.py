"""The whole dynamic-connectome pipeline: traces -> affinities -> NTF -> communities."""

from __future__ import annotations

import numpy as np
import xarray as xr

from workbench.connectome._validate import check_choice, check_count, check_fraction
from workbench.connectome.affinity import _as_traces, affinity
from workbench.connectome.communities import communities
from workbench.connectome.covariates import as_covariates, covariate_correlation, find_covariates
from workbench.connectome.ntf import ntf
from workbench.connectome.rank import rank_sweep
from workbench.connectome.surrogates import METHODS as SURROGATE_METHODS
from workbench.connectome.surrogates import concentration, explained_variance, fit_surrogates, significance

#: Which pairs form each component's community graph: every pair, or those above the surrogate threshold.
COMMUNITY_EDGES = ("all", "above_chance")


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
                       community_method: str = "wsbm", covariates=None, n_surrogates: int | None = None,
                       surrogate_method: str = "shift", alpha: float = 0.05, community_edges: str = "all",
                       seed: int = 0, device=None, progress: bool = False, **ntf_kwargs) -> xr.Dataset:
    """Dynamic functional connectome of recordings, end to end.

    Steps: :func:`affinity` (pair x time x animal) -> :func:`rank_sweep` when
    ``rank`` is None -> :func:`ntf` -> :func:`communities` on each
    component's pair factor; then, when asked, the same affinity + NTF on
    ``n_surrogates`` surrogate recordings (:mod:`workbench.connectome.surrogates`)
    to say which components and pairs are more than chance, and the
    correlation of each time factor with each covariate
    (:mod:`workbench.connectome.covariates`).

    Parameters
    ----------
    traces : xr.DataArray (animal, neuron, time) or xr.Dataset with ``traces``
        NaN marks neurons or samples not recorded; they are left out of the fit.
        Covariates travel as the Dataset's other variables on ``time`` (and
        maybe ``animal``) or as the DataArray's coords on ``time``, as
        :func:`load_traces` keeps them.
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
    covariates : dict of name -> array (time,) or (animal, time), or xr.Dataset, optional
        Replaces the covariates found in ``traces``; ``{}`` for none.
    n_surrogates : int >= 1, optional
        Surrogate recordings fitted with the same rank, restarts and settings
        (each costs one fit; 19 is the fewest that can give ``p <= 0.05``: with fewer, a
        UserWarning says so, see :func:`~workbench.connectome.surrogates.min_surrogates`).
    surrogate_method : {"shift", "phase"}
        See :func:`~workbench.connectome.surrogates.surrogate_traces`.
    alpha : float in (0, 1)
        Level for ``significant``, ``pair_threshold`` and ``pair_above_chance``.
    community_edges : {"all", "above_chance"}
        ``above_chance`` builds each component's community graph only from
        the pairs whose loading beats ``pair_threshold`` (needs ``n_surrogates``);
        a neuron with no such pair is then a community of its own.
    seed : int
    device : str or torch.device, optional
    progress : bool
    **ntf_kwargs : passed to :func:`ntf`

    Returns
    -------
    xr.Dataset
        ``pair_factor`` (pair, component), ``time_factor`` (time, component),
        ``animal_factor`` (animal, component), ``weights`` (component),
        ``community`` (component, neuron), ``restart_similarity``,
        ``explained_variance`` and ``concentration`` (component; defined in
        :mod:`workbench.connectome.surrogates`), the rank
        sweep when one was run (``sweep_error``, ``sweep_heldout_error``,
        ``sweep_stability``... over ``rank``; its ``attrs`` as
        ``sweep_suggested_rank``, ``sweep_rule``, ``sweep_reason``...), and
        ``stimulus_response`` (stimulus, component: mean time
        loading inside each stimulus window) when the traces carry windows.
        With ``n_surrogates``: ``explained_variance_p``, ``concentration_p``,
        ``significant`` (component), ``pair_threshold`` (pair),
        ``pair_above_chance`` (pair, component) and the null itself
        (``surrogate_explained_variance``, ``surrogate_concentration``); see
        :func:`~workbench.connectome.surrogates.significance`. With
        covariates: ``covariate_correlation``, ``covariate_p`` (covariate,
        component) and ``covariate_binned`` (covariate, component, time); see
        :func:`~workbench.connectome.covariates.covariate_correlation`.

    Examples
    --------
    >>> import numpy as np
    >>> from workbench.connectome import synthetic
    >>> ds = synthetic(16, 3, 240, 2, seed=0)
    >>> out = dynamic_connectome(ds.traces, rank=2, n_restarts=3, device="cpu")
    >>> out.community.dims
    ('component', 'neuron')
    >>> speed = np.random.default_rng(0).normal(size=240)
    >>> out = dynamic_connectome(ds.traces, rank=1, n_restarts=1, max_iter=50, covariates={"speed": speed},
    ...                          n_surrogates=2, device="cpu")
    >>> out.covariate_p.dims, out.explained_variance_p.dims
    (('covariate', 'component'), ('component',))
    """
    source = traces
    if isinstance(traces, xr.Dataset):
        if "traces" not in traces:
            raise ValueError(f"traces: expected a Dataset with a 'traces' variable, got {list(traces.data_vars)}")
        traces = traces["traces"]
    traces = _as_traces(traces)
    if n_surrogates is not None:
        n_surrogates = check_count("n_surrogates", n_surrogates)
    check_choice("surrogate_method", surrogate_method, SURROGATE_METHODS)
    alpha = check_fraction("alpha", alpha)
    check_choice("community_edges", community_edges, COMMUNITY_EDGES)
    if community_edges == "above_chance" and n_surrogates is None:
        raise ValueError("community_edges: 'above_chance' needs the surrogate thresholds; pass n_surrogates >= 1")
    covariates = as_covariates(find_covariates(source) if covariates is None else covariates, traces)

    tensor = affinity(traces, method=method, window=window, smooth=smooth)
    sweep = None
    if rank is None:
        sweep = rank_sweep(tensor, ranks, n_restarts=n_restarts, seed=seed, device=device, progress=progress,
                           **ntf_kwargs)
        rank = int(sweep.attrs["suggested_rank"])
    result = ntf(tensor, rank, n_restarts=n_restarts, seed=seed, device=device, progress=progress, **ntf_kwargs)
    pair, time, animal = result.factor("pair"), result.factor("time"), result.factor("animal")
    explained = explained_variance(tensor.values, result.weights.values, [pair.values, time.values, animal.values])
    concentrated = concentration(pair.values)
    stats = {}
    if n_surrogates is not None:
        def fit(surrogate, fit_seed):
            t = affinity(surrogate, method=method, window=window, smooth=smooth)
            return t.values, ntf(t, rank, n_restarts=n_restarts, seed=fit_seed, device=device, **ntf_kwargs)

        null = fit_surrogates(traces, fit, n_surrogates, method=surrogate_method, seed=seed)
        stats = significance(explained, concentrated, pair, null, alpha)
    graph = pair.where(stats["pair_above_chance"], 0.0) if community_edges == "above_chance" else pair
    labels = [communities(graph[:, c], method=community_method, seed=seed) for c in range(rank)]
    community = xr.concat(labels, dim="component").assign_coords(component=pair["component"].values)
    community.attrs = {"method": community_method, "edges": community_edges}
    data = {
        "pair_factor": pair,
        "time_factor": time,
        "animal_factor": animal,
        "weights": result.weights,
        "community": community,
        "n_communities": ("component", np.array([lab.attrs["n_blocks"] for lab in labels])),
        "restart_similarity": result.similarity,
        "explained_variance": ("component", explained),
        "concentration": ("component", concentrated),
        **stats,
    }
    if covariates:
        data.update(covariate_correlation(time, animal, covariates, window, seed=seed))
    response = _stimulus_response(time, traces.attrs)
    if response is not None:
        data["stimulus_response"] = response
    if sweep is not None:
        data.update({f"sweep_{name}": sweep[name] for name in SWEEP_VARIABLES})
    attrs = {k: v for k, v in traces.attrs.items() if isinstance(v, (str, int, float, list))}
    if sweep is not None:
        attrs.update({f"sweep_{k}": v for k, v in sweep.attrs.items()})
    attrs.update(rank=int(rank), error=result.error, stability=result.stability, affinity_method=method,
                 window=int(window), smooth=float(smooth), seed=int(seed), community_edges=community_edges)
    if n_surrogates is not None:
        attrs.update(n_surrogates=n_surrogates, surrogate_method=surrogate_method, alpha=alpha)
    return xr.Dataset(data, attrs=attrs)
