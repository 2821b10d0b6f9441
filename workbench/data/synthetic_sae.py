"""Activations with a planted sparse dictionary, to test that an SAE recovers it.

``G`` unit feature directions are drawn with pairwise ``|cos| <= max_cos``
(rejection sampling); a fraction of them lives inside one head's block of
``d_in = n_heads * d_head`` (a "head-localised" feature, as an attention-output
feature written by one head would be). Each token switches on each feature
independently with probability ``active_per_token / G``, with a non-negative
coefficient drawn from ``U(0.5, 2)``, and Gaussian noise is added.

Examples
--------
>>> ds = planted_dictionary(n_tokens=1000, d_in=32, n_features=16, n_heads=4, seed=0)
>>> ds["acts"].dims, ds["directions"].dims
(('sample', 'd_in'), ('feature', 'd_in'))
>>> bool(ds.attrs["max_abs_cos"] <= 0.3)
True
"""

from __future__ import annotations

import numpy as np
import xarray as xr

_MAX_TRIES = 10_000


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def _draw_directions(rng: np.random.Generator, n_features: int, d_in: int, blocks: list[slice | None],
                     max_cos: float) -> np.ndarray:
    directions = np.zeros((n_features, d_in))
    for i, block in enumerate(blocks):
        for _ in range(_MAX_TRIES):
            v = np.zeros(d_in)
            span = block if block is not None else slice(0, d_in)
            v[span] = rng.standard_normal(span.stop - span.start)
            v /= np.linalg.norm(v)
            if i == 0 or np.abs(directions[:i] @ v).max() <= max_cos:
                directions[i] = v
                break
        else:
            raise ValueError(f"max_cos: could not place feature {i} with |cos| <= {max_cos} after "
                             f"{_MAX_TRIES} draws; expected a larger max_cos or fewer features")
    return directions


def planted_dictionary(n_tokens: int = 20_000, d_in: int = 128, n_features: int = 64, *, n_heads: int = 4,
                       localised_fraction: float = 0.5, active_per_token: float = 4.0, max_cos: float = 0.3,
                       noise: float = 0.01, seed: int = 0) -> xr.Dataset:
    """Synthetic z_cat activations ``acts = coefficients @ directions + noise`` with planted truth.

    Parameters
    ----------
    n_tokens, d_in, n_features : int
        Samples, input width, planted features ``G``.
    n_heads : int
        Heads that ``d_in`` is split into (``d_in % n_heads == 0``).
    localised_fraction : float
        Fraction of features confined to one head's block (assigned round-robin).
    active_per_token : float
        Expected number of active features per token.
    max_cos : float
        Largest allowed ``|cos|`` between two planted directions.
    noise : float
        Standard deviation of the Gaussian noise per coordinate.
    seed : int

    Returns
    -------
    xr.Dataset
        ``acts`` (sample, d_in) float32, ``directions`` (feature, d_in),
        ``coefficients`` (sample, feature), ``head`` (feature): the head of a
        localised feature, -1 for one spread over all heads. attrs:
        ``max_abs_cos``, ``n_heads`` and the arguments.

    Examples
    --------
    >>> ds = planted_dictionary(n_tokens=500, d_in=16, n_features=8, n_heads=2, localised_fraction=1.0)
    >>> ds["head"].values.tolist()
    [0, 1, 0, 1, 0, 1, 0, 1]
    """
    n_tokens, d_in, n_features = (_check_int(n, v) for n, v in
                                  (("n_tokens", n_tokens), ("d_in", d_in), ("n_features", n_features)))
    n_heads = _check_int("n_heads", n_heads)
    if d_in % n_heads:
        raise ValueError(f"n_heads: expected a divisor of d_in={d_in}, got {n_heads}")
    if not 0 <= localised_fraction <= 1:
        raise ValueError(f"localised_fraction: expected a fraction in [0, 1], got {localised_fraction!r}")
    if not 0 < active_per_token <= n_features:
        raise ValueError(f"active_per_token: expected a number in (0, n_features={n_features}], "
                         f"got {active_per_token!r}")
    if not 0 < max_cos < 1 or noise < 0:
        raise ValueError(f"max_cos, noise: expected 0 < max_cos < 1 and noise >= 0, got {max_cos!r}, {noise!r}")
    rng = np.random.default_rng(seed)
    d_head = d_in // n_heads
    n_local = int(round(localised_fraction * n_features))
    heads = np.array([i % n_heads if i < n_local else -1 for i in range(n_features)])
    blocks = [slice(h * d_head, (h + 1) * d_head) if h >= 0 else None for h in heads]
    directions = _draw_directions(rng, n_features, d_in, blocks, max_cos)
    active = rng.random((n_tokens, n_features)) < active_per_token / n_features
    coefficients = np.where(active, rng.uniform(0.5, 2.0, (n_tokens, n_features)), 0.0)
    acts = coefficients @ directions + noise * rng.standard_normal((n_tokens, d_in))
    gram = np.abs(directions @ directions.T - np.eye(n_features))
    return xr.Dataset(
        {"acts": (("sample", "d_in"), acts.astype(np.float32)),
         "directions": (("feature", "d_in"), directions.astype(np.float32)),
         "coefficients": (("sample", "feature"), coefficients.astype(np.float32)),
         "head": ("feature", heads)},
        coords={"feature": np.arange(n_features)},
        attrs={"max_abs_cos": float(gram.max()), "n_heads": n_heads, "active_per_token": float(active_per_token),
               "noise": float(noise), "seed": int(seed), "localised_fraction": float(localised_fraction)},
    )


def planted_hierarchy(n_tokens: int = 20_000, d_in: int = 64, n_parents: int = 4, children_per_parent: int = 4, *,
                      n_independent: int = 8, parent_rate: float = 0.3, child_rate: float = 0.8,
                      independent_rate: float = 0.1, max_cos: float = 0.2, noise: float = 0.01,
                      seed: int = 0) -> xr.Dataset:
    """Planted features with a hierarchy: each child fires only with its parent (feature absorption's setting).

    Each parent fires on a token with probability ``parent_rate``; when it
    does, one of its children (uniformly) fires with it with probability
    ``child_rate``, so a child never fires without its parent and a parent
    often fires with a child. Independent features fire on their own with
    probability ``independent_rate``. Coefficients are ``U(0.5, 2)``. An SAE
    can then save latents by folding the parent into one latent per child
    (``parent + child``) and firing the parent's own latent only when no
    child is there: the parent is "absorbed" (Chanin et al. 2024).

    Parameters
    ----------
    n_tokens, d_in : int
    n_parents, children_per_parent, n_independent : int
    parent_rate, child_rate, independent_rate : float
        Probabilities as above, in [0, 1].
    max_cos, noise : float
        As in :func:`planted_dictionary`.
    seed : int

    Returns
    -------
    xr.Dataset
        ``acts`` (sample, d_in) float32, ``directions`` (feature, d_in),
        ``coefficients`` (sample, feature) and ``parent`` (feature): the
        parent's feature index for a child, -1 otherwise. Features are
        ordered parents, children (parent by parent), independents; ``role``
        (feature) says which.

    Examples
    --------
    >>> ds = planted_hierarchy(n_tokens=2000, d_in=32, n_parents=2, children_per_parent=2, n_independent=1)
    >>> ds["parent"].values.tolist(), ds["role"].values.tolist()
    ([-1, -1, 0, 0, 1, 1, -1], ['parent', 'parent', 'child', 'child', 'child', 'child', 'independent'])
    >>> coef = ds["coefficients"].values
    >>> bool(((coef[:, 2:4] > 0).any(1) <= (coef[:, 0] > 0)).all())   # a child fires only with its parent
    True
    """
    n_tokens, d_in, n_parents, children_per_parent = (
        _check_int(n, v) for n, v in (("n_tokens", n_tokens), ("d_in", d_in), ("n_parents", n_parents),
                                      ("children_per_parent", children_per_parent)))
    n_independent = _check_int("n_independent", n_independent, minimum=0)
    for name, value in (("parent_rate", parent_rate), ("child_rate", child_rate),
                        ("independent_rate", independent_rate)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    if not 0 < max_cos < 1 or noise < 0:
        raise ValueError(f"max_cos, noise: expected 0 < max_cos < 1 and noise >= 0, got {max_cos!r}, {noise!r}")
    rng = np.random.default_rng(seed)
    n_children = n_parents * children_per_parent
    n_features = n_parents + n_children + n_independent
    directions = _draw_directions(rng, n_features, d_in, [None] * n_features, max_cos)
    parent = np.array([-1] * n_parents + [p for p in range(n_parents) for _ in range(children_per_parent)]
                      + [-1] * n_independent)
    role = np.array(["parent"] * n_parents + ["child"] * n_children + ["independent"] * n_independent)
    active = np.zeros((n_tokens, n_features), dtype=bool)
    active[:, :n_parents] = rng.random((n_tokens, n_parents)) < parent_rate
    with_child = active[:, :n_parents] & (rng.random((n_tokens, n_parents)) < child_rate)
    which = rng.integers(0, children_per_parent, (n_tokens, n_parents))
    rows, parents = np.nonzero(with_child)
    active[rows, n_parents + parents * children_per_parent + which[rows, parents]] = True
    active[:, n_parents + n_children:] = rng.random((n_tokens, n_independent)) < independent_rate
    coefficients = np.where(active, rng.uniform(0.5, 2.0, (n_tokens, n_features)), 0.0)
    acts = coefficients @ directions + noise * rng.standard_normal((n_tokens, d_in))
    return xr.Dataset(
        {"acts": (("sample", "d_in"), acts.astype(np.float32)),
         "directions": (("feature", "d_in"), directions.astype(np.float32)),
         "coefficients": (("sample", "feature"), coefficients.astype(np.float32)),
         "parent": ("feature", parent), "role": ("feature", role)},
        coords={"feature": np.arange(n_features)},
        attrs={"n_parents": n_parents, "children_per_parent": children_per_parent, "parent_rate": float(parent_rate),
               "child_rate": float(child_rate), "noise": float(noise), "seed": int(seed)},
    )
