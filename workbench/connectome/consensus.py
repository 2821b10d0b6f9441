"""Consensus communities: how sure is each neuron's community?

One run of a community method on one pair factor gives one partition; a
different seed, or the same component from another NTF restart, may give
another. :func:`consensus_communities` runs the method over seeds and over
graphs (e.g. the pair factor of one component in every NTF restart, matched
to the best restart's component) and summarises the runs as

* ``co_assignment[i, j]``: the fraction of runs that put neurons ``i`` and
  ``j`` in the same community (1 on the diagonal);
* ``community``: the consensus partition, the groups of neurons that are
  together in more than half of the runs (average-linkage clustering of
  ``1 - co_assignment`` cut at 0.5: a group's mean pairwise co-assignment
  with any other group is at most one half);
* ``confidence``: for each neuron, its mean co-assignment with the other
  members of its consensus community (for a neuron alone in its community:
  one minus its largest co-assignment with any other neuron). 1 = every run
  agrees; a neuron that flips between two communities scores about one half.

Seeds alone rarely move a partition of a clear graph; the spread that matters
comes from the graphs: the same component in different NTF restarts, or
graphs from resampled data.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import squareform

from workbench.connectome.communities import communities
from workbench.connectome.fms import congruence
from workbench.connectome.wsbm import _relabel


def co_assignment(labelings: Sequence) -> np.ndarray:
    """Fraction of labelings that put each two items in the same group.

    Parameters
    ----------
    labelings : sequence of 1-D integer arrays of one length

    Returns
    -------
    ndarray (n, n)

    Examples
    --------
    >>> co_assignment([[0, 0, 1], [0, 1, 1]]).tolist()
    [[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]]
    """
    labels = [np.asarray(lab) for lab in labelings]
    if not labels or any(lab.ndim != 1 for lab in labels) or len({lab.size for lab in labels}) != 1:
        raise ValueError(f"labelings: expected one or more 1-D label arrays of one length, got shapes "
                         f"{[lab.shape for lab in labels]}")
    total = np.zeros((labels[0].size, labels[0].size))
    for lab in labels:
        total += lab[:, None] == lab[None, :]
    return total / len(labels)


def consensus_partition(co: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consensus labels and per-item confidence from a co-assignment matrix (see the module docstring).

    Examples
    --------
    >>> co = co_assignment([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
    >>> labels, confidence = consensus_partition(co)
    >>> labels.tolist(), confidence.round(2).tolist()
    ([0, 0, 1, 1], [1.0, 1.0, 0.67, 0.67])
    """
    co = np.asarray(co, dtype=float)
    n = co.shape[0]
    if co.ndim != 2 or co.shape != (n, n) or not np.allclose(co, co.T) or co.min() < 0 or co.max() > 1:
        raise ValueError(f"co: expected a symmetric (n, n) matrix of fractions, got shape {co.shape}")
    if n == 1:
        return np.zeros(1, dtype=int), np.ones(1)
    distance = 1.0 - co
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    labels = _relabel(fcluster(tree, t=0.5, criterion="distance"))
    confidence = np.empty(n)
    off = co - np.eye(n)
    for i in range(n):
        mates = (labels == labels[i]) & (np.arange(n) != i)
        confidence[i] = off[i, mates].mean() if mates.any() else 1.0 - off[i].max()
    return labels, confidence


def restart_pair_factors(result, component: int) -> list[xr.DataArray]:
    """The pair factor of ``component`` in every NTF restart, matched to the best restart's components.

    Components of two restarts are matched one-to-one by their congruence
    (Hungarian), so restart ``b``'s entry is the component that plays the
    role of the best fit's ``component`` there.

    Examples
    --------
    >>> from workbench.connectome import synthetic, affinity, ntf
    >>> res = ntf(affinity(synthetic(12, 2, 200, 2, seed=0).traces, window=4), 2, n_restarts=3, device="cpu")
    >>> len(restart_pair_factors(res, 0)), restart_pair_factors(res, 0)[0].dims
    (3, ('pair', 'component'))
    """
    if not (hasattr(result, "restarts") and hasattr(result, "factors")):
        raise TypeError(f"result: expected an NTFResult, got {type(result).__name__}")
    rank = result.factors[0].sizes["component"]
    if not isinstance(component, (int, np.integer)) or not 0 <= component < rank:
        raise ValueError(f"component: expected an index in [0, {rank}), got {component!r}")
    best = [f.values for f in result.factors]
    best[0] = best[0] * result.weights.values[None, :]
    template = result.factors[0][:, [component]]
    out = []
    for weights, unit in result.restarts:
        scaled = [unit[0] * weights[None, :], *unit[1:]]
        rows, cols = linear_sum_assignment(congruence(best, scaled), maximize=True)
        match = int(cols[list(rows).index(component)])
        out.append(template.copy(data=unit[0][:, [match]]))
    return out


def consensus_communities(graphs, *, component: int | None = None, method: str = "wsbm",
                          seeds: Sequence[int] = (0, 1, 2, 3, 4), **kwargs) -> xr.Dataset:
    """Communities over several seeds and graphs, with a co-assignment matrix and per-neuron confidence.

    Parameters
    ----------
    graphs : pair factor, neuron x neuron matrix, a list of them, or an NTFResult
        One weighted graph, several (e.g. bootstrap or restart graphs over the
        same neurons), or an :class:`~workbench.connectome.NTFResult` whose
        restarts' pair factors for ``component`` are used
        (:func:`restart_pair_factors`).
    component : int, optional
        Required with an NTFResult.
    method : {"wsbm", "leiden"}
        Passed to :func:`~workbench.connectome.communities` with each seed.
    seeds : sequence of int
        One run per seed and graph (for ``wsbm`` the seed moves the k-means
        starts and the order of the greedy moves).
    **kwargs
        Further arguments of :func:`~workbench.connectome.communities`.

    Returns
    -------
    xr.Dataset
        ``co_assignment`` (neuron, neuron_), ``community`` (neuron) and
        ``confidence`` (neuron); ``runs`` (run, neuron) holds every run's labels.
        ``attrs``: method, number of graphs and seeds, ``n_blocks`` of the consensus.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = np.repeat([0, 1], 8)
    >>> w = np.triu(rng.exponential(np.where(truth[:, None] == truth, 8.0, 1.0)), 1)
    >>> out = consensus_communities(w + w.T, seeds=[0, 1, 2])
    >>> out["community"].values.tolist()
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    >>> float(out["confidence"].min())
    1.0
    """
    if hasattr(graphs, "restarts") and hasattr(graphs, "factors"):
        if component is None:
            raise ValueError("component: expected the component whose pair factors to use with an NTFResult, got None")
        graphs = [g[:, 0] for g in restart_pair_factors(graphs, component)]
    elif component is not None:
        raise ValueError("component: only used with an NTFResult; pass the pair factor itself otherwise")
    if isinstance(graphs, np.ndarray) and graphs.ndim == 3:
        graphs = list(graphs)
    if not isinstance(graphs, (list, tuple)):
        graphs = [graphs]
    seeds = list(seeds)
    if not graphs or not seeds or not all(isinstance(s, (int, np.integer)) for s in seeds):
        raise ValueError(f"graphs, seeds: expected at least one graph and one integer seed, got {len(graphs)} "
                         f"graphs and seeds {seeds!r}")
    runs = [communities(g, method=method, seed=int(s), **kwargs) for g in graphs for s in seeds]
    neurons = runs[0]["neuron"].values
    if any(r.sizes["neuron"] != neurons.size for r in runs):
        raise ValueError(f"graphs: expected graphs over the same neurons, got sizes {sorted({r.size for r in runs})}")
    labels = np.stack([r.values for r in runs])
    co = co_assignment(labels)
    consensus, confidence = consensus_partition(co)
    return xr.Dataset(
        {
            "co_assignment": (("neuron", "neuron_"), co),
            "community": ("neuron", consensus),
            "confidence": ("neuron", confidence),
            "runs": (("run", "neuron"), labels),
        },
        coords={"neuron": neurons, "neuron_": neurons, "run": np.arange(len(runs))},
        attrs={"method": method, "n_graphs": len(graphs), "n_seeds": len(seeds),
               "n_blocks": int(consensus.max() + 1)},
    )
