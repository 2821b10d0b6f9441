"""Communities of neurons in one component's pair factor (a weighted graph).

``wsbm`` fits the weighted SBM of :mod:`workbench.connectome.wsbm`
(the number of communities is chosen by description length); ``leiden`` is the
usual baseline, modularity-style (RB configuration) Leiden from leidenalg on
an igraph graph.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from workbench.connectome.pairs import pairs_to_matrix
from workbench.connectome.wsbm import _relabel, fit_wsbm

METHODS = ("wsbm", "leiden")


def _as_matrix(weights) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(weights, xr.DataArray) and weights.dims == ("pair",):
        matrix = pairs_to_matrix(weights)
        return matrix.values, matrix["neuron"].values
    if isinstance(weights, xr.DataArray) and weights.ndim == 2:
        values = weights.values
        dim = weights.dims[0]
        neurons = weights[dim].values if dim in weights.coords else np.arange(values.shape[0])
    elif isinstance(weights, (np.ndarray, list)):
        values = np.asarray(weights, dtype=float)
        if values.ndim == 1:
            return pairs_to_matrix(values).values, np.arange(pairs_to_matrix(values).shape[0])
        neurons = np.arange(values.shape[0]) if values.ndim == 2 else None
    else:
        raise TypeError(f"weights: expected a pair vector or a neuron x neuron matrix, got {type(weights).__name__}")
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"weights: expected a square matrix or a pair vector, got shape {values.shape}")
    if not np.allclose(values, values.T, equal_nan=True):  # NaN is reported as such by the caller
        raise ValueError("weights: expected a symmetric matrix, got an asymmetric one")
    return values.astype(float), neurons


def _leiden(W: np.ndarray, seed: int, resolution: float) -> np.ndarray:
    import igraph as ig
    import leidenalg

    W = W / W.max() if W.max() > 0 else W  # modularity is scale-free, leidenalg's tolerances are not
    iu, ju = np.triu_indices(W.shape[0], k=1)
    keep = W[iu, ju] > 0
    graph = ig.Graph(n=W.shape[0], edges=list(zip(iu[keep].tolist(), ju[keep].tolist())))
    graph.es["weight"] = W[iu, ju][keep].tolist()
    part = leidenalg.find_partition(graph, leidenalg.RBConfigurationVertexPartition, weights="weight",
                                    resolution_parameter=resolution, seed=int(seed))
    return _relabel(np.asarray(part.membership))


def communities(weights, *, method: str = "wsbm", seed: int = 0, max_blocks: int | None = None,
                threshold: float = 1e-3, resolution: float = 1.0) -> xr.DataArray:
    """Community label of every neuron in a weighted neuron graph.

    Parameters
    ----------
    weights : DataArray (pair) | DataArray (neuron, neuron_) | ndarray
        A pair factor (e.g. ``result.factor("pair")[:, c]``) or a symmetric
        non-negative matrix.
    method : {"wsbm", "leiden"}
        Weighted SBM with exponential weights and the number
        of blocks by description length, or the Leiden baseline.
    seed : int
    max_blocks : int, optional
        ``wsbm``: largest number of blocks tried (default ``min(10, n // 2)``).
    threshold : float in [0, 1)
        ``wsbm``: weights above ``threshold * max`` are edges; a neuron
        without edges is a community of its own (as in ``leiden``).
    resolution : float
        ``leiden``: resolution of the RB configuration model.

    Returns
    -------
    xr.DataArray (neuron)
        Integer labels 0.. numbered by decreasing community size; ``attrs`` hold
        the method, ``n_blocks`` and (``wsbm``) the description lengths.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.kron(np.eye(2), np.ones((5, 5))) + 0.05
    >>> communities(W).values.tolist()
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    W, neurons = _as_matrix(weights)
    if not np.isfinite(W).all():
        raise ValueError("weights: expected finite values, got NaN or inf")
    if (W < 0).any():
        raise ValueError(f"weights: expected non-negative values, got minimum {W.min():.4g}")
    if W.shape[0] < 2:
        raise ValueError(f"weights: expected at least 2 neurons, got {W.shape[0]}")
    attrs: dict = {"method": method, "seed": int(seed)}
    if method == "wsbm":
        labels, info = fit_wsbm(W, max_blocks=max_blocks, threshold=threshold, seed=seed)
        attrs["description_length"] = info["best_description_length"]
        attrs["description_length_per_blocks"] = [info["description_length"][b] for b in sorted(info["description_length"])]
    else:
        labels = _leiden(W, seed, resolution)
        attrs["resolution"] = float(resolution)
    attrs["n_blocks"] = int(labels.max() + 1)
    return xr.DataArray(labels, dims=("neuron",), coords={"neuron": neurons}, name="community", attrs=attrs)
