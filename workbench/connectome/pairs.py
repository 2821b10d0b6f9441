"""The ``pair`` dim: the upper triangle ``i < j`` of a neuron x neuron matrix.

A dynamic connectome stores one value per unordered neuron pair. Pairs are
ordered row by row over the upper triangle (``numpy.triu_indices(n, k=1)``),
and every pair-indexed result carries the coords ``neuron_a`` and ``neuron_b``
naming both neurons, so a factor can be turned back into a matrix without
knowing how it was made.
"""

from __future__ import annotations

import numpy as np
import xarray as xr


def n_neurons_from_pairs(n_pairs: int) -> int:
    """Number of neurons ``n`` with ``n * (n - 1) / 2 == n_pairs``.

    Examples
    --------
    >>> n_neurons_from_pairs(10)
    5
    """
    n = int(round((1 + np.sqrt(1 + 8 * n_pairs)) / 2))
    if n * (n - 1) // 2 != n_pairs:
        raise ValueError(f"n_pairs: expected a triangular number n*(n-1)/2, got {n_pairs}")
    return n


def pair_coords(neurons) -> dict[str, tuple[str, np.ndarray]]:
    """Coords ``neuron_a``/``neuron_b`` for the pairs of ``neurons``.

    Examples
    --------
    >>> pair_coords(["A", "B", "C"])["neuron_b"][1].tolist()
    ['B', 'C', 'C']
    """
    names = np.asarray(neurons)
    ia, ib = np.triu_indices(len(names), k=1)
    return {"neuron_a": ("pair", names[ia]), "neuron_b": ("pair", names[ib])}


def matrix_to_pairs(matrix: xr.DataArray | np.ndarray) -> xr.DataArray:
    """Upper triangle (``i < j``) of a square neuron x neuron matrix as a ``pair`` vector.

    Parameters
    ----------
    matrix : DataArray (neuron, neuron_) or ndarray (n, n)

    Returns
    -------
    xr.DataArray (pair)
        With coords ``neuron_a`` and ``neuron_b``.

    Examples
    --------
    >>> import numpy as np
    >>> matrix_to_pairs(np.arange(9.0).reshape(3, 3)).values.tolist()
    [1.0, 2.0, 5.0]
    """
    values = np.asarray(matrix)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"matrix: expected a square 2-D array, got shape {values.shape}")
    if isinstance(matrix, xr.DataArray) and matrix.dims[0] in matrix.coords:
        neurons = matrix[matrix.dims[0]].values
    else:
        neurons = np.arange(values.shape[0])
    ia, ib = np.triu_indices(values.shape[0], k=1)
    return xr.DataArray(values[ia, ib], dims=("pair",), coords=pair_coords(neurons))


def pairs_to_matrix(pairs: xr.DataArray | np.ndarray, *, diagonal: float = 0.0) -> xr.DataArray:
    """Symmetric neuron x neuron matrix from a ``pair`` vector.

    Parameters
    ----------
    pairs : DataArray (pair) or 1-D ndarray
        Values over the upper triangle, in ``numpy.triu_indices`` order.
    diagonal : float
        Value put on the diagonal (a neuron with itself is not a pair).

    Returns
    -------
    xr.DataArray (neuron, neuron_)

    Examples
    --------
    >>> pairs_to_matrix([1.0, 2.0, 5.0]).values.tolist()
    [[0.0, 1.0, 2.0], [1.0, 0.0, 5.0], [2.0, 5.0, 0.0]]
    """
    values = np.asarray(pairs, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"pairs: expected a 1-D pair vector, got shape {values.shape}")
    n = n_neurons_from_pairs(values.size)
    if isinstance(pairs, xr.DataArray) and "neuron_a" in pairs.coords:
        first = pairs["neuron_a"].values
        neurons = np.concatenate([first[np.r_[0, np.cumsum(np.arange(n - 1, 1, -1))]], pairs["neuron_b"].values[-1:]])
    else:
        neurons = np.arange(n)
    out = np.full((n, n), float(diagonal))
    ia, ib = np.triu_indices(n, k=1)
    out[ia, ib] = values
    out[ib, ia] = values
    return xr.DataArray(out, dims=("neuron", "neuron_"), coords={"neuron": neurons, "neuron_": neurons})
