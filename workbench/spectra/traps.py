"""Correlation traps: spikes that survive shuffling a matrix's entries (WeightWatcher's randomised ESD).

Shuffling the entries of ``W`` destroys every correlation between them and
keeps their distribution. A well-behaved matrix then has a pure
Marchenko-Pastur spectrum; a few very large entries, however, still form
spikes above the bulk edge after the shuffle: *correlation traps*
(Martin & Mahoney), a sign of entries that training pushed far out.
:func:`correlation_traps` follows WeightWatcher's ``analyze(randomize=True)``
(0.7.x) definitions:

* the randomised eigenvalues pool ``replicas`` shuffles (5 when the matrix
  has fewer than 100 eigenvalues, else 1), each ``W.flatten()`` permuted by
  NumPy's legacy Mersenne-Twister ``shuffle`` and reshaped;
* ``rand_distance``: the Jensen-Shannon distance (natural log) between the
  ascending eigenvalues of ``W`` and of one further shuffle, each vector
  normalised to sum 1 and compared entry by entry;
* ``num_rand_spikes`` (WeightWatcher's ``rand_num_spikes`` / ``num_traps``),
  ``rand_bulk_max``, ``rand_mp_softrank``, ``rand_sigma_mp``: the
  Marchenko-Pastur fit (:func:`~workbench.spectra.mp.mp_fit`) of the pooled
  randomised eigenvalues with the matrix's own shape;
* ``max_rand_eval`` (largest pooled randomised eigenvalue) and
  ``ww_softrank`` (largest eigenvalue of the further shuffle over ``W``'s).

``has_traps`` is ``num_rand_spikes > 0``. With the same ``seed`` given to
``np.random.seed`` before WeightWatcher analyses a one-layer model, the
shuffles, and so every number, are WeightWatcher's.

Examples
--------
>>> import numpy as np
>>> W = np.random.default_rng(0).standard_normal((300, 100))
>>> clean = correlation_traps(W, seed=0)
>>> clean["has_traps"], clean["num_rand_spikes"]
(False, 0.0)
>>> W[3, 7] = 200.0                                   # one huge entry: a trap wherever it lands
>>> trapped = correlation_traps(W, seed=0)
>>> trapped["has_traps"], trapped["num_rand_spikes"]
(True, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.special import rel_entr

from workbench.spectra._validate import as_matrices, check_choice, check_int, resolve_device
from workbench.spectra.mp import MP_METHODS, mp_fit as fit_bulk
from workbench.spectra.svd import singular_values

#: Below this many eigenvalues WeightWatcher pools five shuffles instead of one.
_FEW_EIGENVALUES = 100


def jensen_shannon_distance(p: np.ndarray, q: np.ndarray) -> float:
    """``sqrt((KL(p || m) + KL(q || m)) / 2)``, ``m = (p + q) / 2``, of two vectors normalised to sum 1.

    Examples
    --------
    >>> d = jensen_shannon_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0]))   # disjoint: the maximum
    >>> bool(abs(d ** 2 - np.log(2)) < 1e-15)
    True
    """
    p = np.asarray(p, dtype=np.float64) / np.sum(p)
    q = np.asarray(q, dtype=np.float64) / np.sum(q)
    m = (p + q) / 2
    return float(np.sqrt((rel_entr(p, m).sum() + rel_entr(q, m).sum()) / 2))


def _shuffled_eigenvalues(W: np.ndarray, rng: np.random.RandomState, device) -> np.ndarray:
    flat = W.flatten()
    rng.shuffle(flat)
    sigma = singular_values(torch.from_numpy(flat.reshape(W.shape)), device=device, dtype=torch.float64)
    return np.sort(sigma.cpu().numpy() ** 2)


def correlation_traps(W: Any, *, seed: int | None = None, replicas: int | None = None, mp_fit: str = "weightwatcher",
                      device: str | torch.device | None = None) -> dict:
    """Randomise ``W`` by shuffling its entries and compare its spectrum with the original's.

    Parameters
    ----------
    W : array_like
        A real matrix ``[m, n]``, shuffled in its own layout and precision
        (WeightWatcher reads torch weights as float32 ``[out, in]``).
    seed : int, optional
        Seed of the shuffles (``np.random.RandomState``); None draws one.
    replicas : int, optional
        Shuffles pooled for the Marchenko-Pastur fit; default WeightWatcher's
        (5 below 100 eigenvalues, else 1).
    mp_fit : {"weightwatcher", "median"}
        Estimator of the randomised bulk (:func:`~workbench.spectra.mp.mp_fit`).
    device : str or torch.device, optional
        Where the decompositions run (default CUDA when available).

    Returns
    -------
    dict
        ``rand_distance``, ``num_rand_spikes``, ``has_traps``,
        ``rand_bulk_max``, ``rand_mp_softrank``, ``rand_sigma_mp``,
        ``max_rand_eval``, ``ww_softrank`` (see the module docstring) and
        ``mp_reason`` of the randomised fit.

    Examples
    --------
    >>> import numpy as np
    >>> out = correlation_traps(np.random.default_rng(1).standard_normal((200, 50)), seed=1)
    >>> bool(out["rand_distance"] < 0.05), out["has_traps"]
    (True, False)
    """
    check_choice(mp_fit, "mp_fit", MP_METHODS)
    t = as_matrices(W, "W")
    if t.ndim != 2:
        raise ValueError(f"W: expected one matrix [m, n], got shape {tuple(t.shape)}")
    M = min(t.shape)
    replicas = (5 if M < _FEW_EIGENVALUES else 1) if replicas is None else check_int(replicas, "replicas")
    dev = resolve_device(device)
    matrix = t.cpu().numpy()
    rng = np.random.RandomState(seed)
    lam = np.sort(singular_values(t, device=dev, dtype=torch.float64).cpu().numpy() ** 2)
    pooled = np.sort(np.concatenate([_shuffled_eigenvalues(matrix, rng, dev) for _ in range(replicas)]))
    one = _shuffled_eigenvalues(matrix, rng, dev)
    fit = fit_bulk(pooled, shape=tuple(t.shape), method=mp_fit)
    return {"rand_distance": jensen_shannon_distance(lam, one), "num_rand_spikes": fit["num_spikes"],
            "has_traps": bool(fit["num_spikes"] > 0), "rand_bulk_max": fit["bulk_max"],
            "rand_mp_softrank": fit["mp_softrank"], "rand_sigma_mp": fit["sigma_mp"],
            "max_rand_eval": float(pooled.max()), "ww_softrank": float(one.max() / lam.max()),
            "mp_reason": fit["mp_reason"]}
