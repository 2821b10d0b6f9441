"""``layer_spectra``: every weight matrix, head and circuit of a model, with rank metrics.

Examples
--------
>>> from workbench.models import load_model
>>> ds = layer_spectra(load_model("tiny-attn-2l", device="cpu"), progress=False)
>>> ds.singular_value.dims, sorted(set(ds.kind.values.tolist()))[:3]
(('matrix', 'index'), ['embed', 'k', 'o'])
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from workbench import __version__
from workbench.spectra._validate import check_choice, check_finite, resolve_device, source_precision
from workbench.spectra.activations import activation_spectra
from workbench.spectra.circuits import circuit_matrices, circuit_singular_values
from workbench.spectra.metrics import FIT_QUALITY_NAMES, METRIC_NAMES, metrics_from_singular_values
from workbench.spectra.mp import MP_METHODS
from workbench.spectra.svd import singular_values
from workbench.spectra.weights import is_bridge, model_matrices

KINDS = ("weights", "ov", "qk")


def _check_kinds(kinds) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds: expected a non-empty subset of {KINDS}, got {kinds!r}")
    return tuple(kinds)


def _check_finite(names: list[str], *stacks: torch.Tensor) -> None:
    """Name the first matrix of a group whose stack [count, ...] holds NaN or inf."""
    for stack in stacks:
        if not bool(torch.isfinite(stack).all()):
            for name, matrix in zip(names, stack):
                check_finite(matrix, f"model: matrix {name!r}")


def layer_spectra(model: torch.nn.Module, *, kinds: tuple[str, ...] = KINDS, tokens: torch.Tensor | None = None,
                  per_head: bool = True, hooks: list[str] | None = None, cache=None,
                  device: str | torch.device | None = None, progress: bool = True,
                  mp_fit: str = "median") -> xr.Dataset:
    """Singular values and :func:`rank_metrics` of every matrix of ``model``.

    Parameters
    ----------
    model : TransformerBridge or torch.nn.Module
        A bridge gives per-head Q/K/V/O slices and OV/QK circuits; any other
        module gives every 2-D parameter (see :mod:`workbench.spectra.weights`).
    kinds : tuple of {"weights", "ov", "qk"}
        Weight matrices, per-head OV circuits, per-head QK circuits.
    tokens : torch.LongTensor [seq, pos], optional
        Also compute activation spectra per hook (:func:`activation_spectra`).
    per_head : bool
        Include each head's slice of Q, K, V and O besides the whole matrices.
    hooks, cache
        Passed to :func:`activation_spectra` when ``tokens`` is given.
    device : str or torch.device, optional
        Where the decompositions run (default CUDA when available).
    progress : bool
        Progress bar over the matrix groups.
    mp_fit : {"median", "weightwatcher"}
        Marchenko-Pastur estimator (see :func:`rank_metrics`). OV/QK circuits
        get NaN ``mp_softrank``, ``num_spikes``, ``bulk_max`` with the reason
        in ``mp_reason``, as does every rank-deficient matrix.

    Returns
    -------
    xarray.Dataset
        ``singular_value`` (matrix, index; NaN-padded to the longest spectrum)
        and one variable per rank metric over ``matrix`` (with ``alpha_reliable``
        and ``alpha_reason``: read ``alpha`` only where the fit is reliable), with coords ``kind``
        (q, k, v, o, mlp_in, mlp_out, embed, pos_embed, unembed, ov, qk,
        linear, other), ``layer`` and ``head`` (-1 where not applicable),
        ``rows`` and ``cols``. ``attrs["skipped"]`` lists every parameter left
        out as ``"name: reason"``. With ``tokens``, the variables of
        :func:`activation_spectra` over ``hook`` are added.

    Examples
    --------
    >>> from workbench.models import load_model
    >>> ds = layer_spectra(load_model("tiny-gelu-2l", device="cpu"), kinds=("ov",), progress=False)
    >>> ds.sizes["matrix"], int(ds.numerical_rank.max())
    (8, 32)
    """
    kinds = _check_kinds(kinds)
    check_choice(mp_fit, "mp_fit", MP_METHODS)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a TransformerBridge or torch.nn.Module, got {type(model).__name__}")
    dev = resolve_device(device)
    jobs, skipped = [], []
    if "weights" in kinds:
        groups, skipped = model_matrices(model, per_head=per_head)
        jobs += [("weights", g) for g in groups]
    circuit_kinds = tuple(k for k in kinds if k != "weights")
    if circuit_kinds:
        if is_bridge(model):
            jobs += [("circuit", g) for g in circuit_matrices(model, circuit_kinds)]
        else:
            skipped.append(("OV/QK circuits", f"{type(model).__name__} has no per-head W_Q/W_K/W_V/W_O views"))
    records = []
    for source, group in tqdm(jobs, desc="spectra", unit="group", disable=not progress):
        if source == "weights":
            _check_finite(group.names, group.matrices)
            sigma = singular_values(group.matrices, device=dev, dtype=torch.float64).cpu().numpy()
            shape = tuple(group.matrices.shape[-2:])
            precision = source_precision(group.matrices)
            heads = group.heads
        else:
            _check_finite(group.names, group.left, group.right)
            sigma = circuit_singular_values(group, device=dev, dtype=torch.float64).cpu().numpy()
            shape = (group.left.shape[-2], group.right.shape[-2])
            precision = source_precision(group.left)
            heads = list(range(group.left.shape[0]))
        for name, head, s in zip(group.names, heads, sigma):
            metrics = metrics_from_singular_values(s, shape, precision, mp_fit=mp_fit, product=source == "circuit")
            records.append((name, group.kind, group.layer, head, shape, s, metrics))
    width = max(r[5].size for r in records)
    sv = np.full((len(records), width), np.nan)
    for i, r in enumerate(records):
        sv[i, : r[5].size] = r[5]
    coords = {
        "matrix": [r[0] for r in records], "index": np.arange(width),
        "kind": ("matrix", [r[1] for r in records]), "layer": ("matrix", [r[2] for r in records]),
        "head": ("matrix", [r[3] for r in records]),
        "rows": ("matrix", [r[4][0] for r in records]), "cols": ("matrix", [r[4][1] for r in records]),
    }
    data = {"singular_value": (("matrix", "index"), sv)}
    data.update({m: ("matrix", np.array([r[6][m] for r in records])) for m in METRIC_NAMES + FIT_QUALITY_NAMES})
    attrs = {"model": str(getattr(model, "workbench_id", type(model).__name__)), "kinds": list(kinds),
             "skipped": [f"{name}: {reason}" for name, reason in skipped], "workbench_version": __version__}
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    if tokens is not None:
        if not is_bridge(model):
            raise ValueError(f"tokens: activation spectra need a TransformerBridge, got {type(model).__name__}")
        ds = ds.merge(activation_spectra(model, tokens, hooks=hooks, cache=cache, device=dev, progress=progress),
                      combine_attrs="override")
    return ds
