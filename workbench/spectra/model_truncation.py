"""Truncation curves of every linear map in a model's blocks, tied to the matrices of :func:`layer_spectra`.

:func:`~workbench.spectra.truncation_curve` says what one map loses when
cut to rank ``k``; :func:`truncation_curves` asks it of every linear map
inside the transformer blocks at once, in three readings: the weights alone
(``||W - W_k||_F^2``), and the loss on the activations each map sees on
calibration tokens when the weights are truncated (``"svd"``) or when the
inputs are whitened first (``"whitened"``, SVD-LLM, the optimum). The
activation statistics come from one calibration pass for all maps
(:func:`~workbench.spectra.compress.collect_stats`).

Every map is tagged with the matrix kind and layer that :func:`layer_spectra`
gives the same weights (``target_kind``, ``target_layer``), so a cell of a
metric heatmap (kind x layer) finds its curves, and with that matrix's name
(``target_matrix``), the name :func:`~workbench.spectra.compress` takes.

Examples
--------
>>> from workbench.models import load_model, tokenize
>>> model = load_model("tiny-attn-2l", device="cpu")
>>> ds = truncation_curves(model, tokenize(model, ["def f(x):\\n    return x\\n"] * 2, seq_len=16))
>>> ds["truncation"].dims, ds["target"].values[:2].tolist(), ds["target_matrix"].values[:2].tolist()
(('target', 'curve', 'rank'), ['blocks.0.attn.q', 'blocks.0.attn.k'], ['blocks.0.attn.W_Q', 'blocks.0.attn.W_K'])
>>> sel = ds["truncation"].sel(target="blocks.1.attn.o")
>>> bool((sel.sel(curve="whitened") <= sel.sel(curve="svd") * (1 + 1e-9)).all())
True
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import xarray as xr

from workbench.spectra._validate import check_choice
from workbench.spectra.compress import check_calibration, collect_stats
from workbench.spectra.targets import linear_targets, linear_weight, target_label
from workbench.spectra.truncation import METHODS, truncation_curve
from workbench.spectra.weights import _layer_of

#: The default curves: the weights alone, then two methods measured on the activations each map sees.
CURVES = ("weights", "svd", "whitened")
#: Last part of a block's linear-map name -> the matrix kind of layer_spectra.
TARGET_KINDS = {"q": "q", "k": "k", "v": "v", "o": "o", "fc_in": "mlp_in", "fc_out": "mlp_out", "in": "mlp_in",
                "out": "mlp_out", "gate": "mlp_gate", "c_fc": "mlp_in", "c_proj": "mlp_out"}


def target_kind(label: str) -> str:
    """The :func:`layer_spectra` matrix kind of a linear map (``"other"`` when its name says none).

    Examples
    --------
    >>> target_kind("blocks.0.attn.q"), target_kind("transformer.h.3.mlp.c_fc"), target_kind("blocks.1.mix")
    ('q', 'mlp_in', 'other')
    """
    return TARGET_KINDS.get(label.rsplit(".", 1)[-1], "other")


def truncation_curves(model: torch.nn.Module, calibration: torch.Tensor, *, curves: tuple[str, ...] = CURVES,
                      progress: Callable[[float, str], None] | None = None) -> xr.Dataset:
    """Loss-vs-rank curves of every linear map in the blocks of ``model``.

    Parameters
    ----------
    model : TransformerBridge or torch.nn.Module
        Its linear maps inside the blocks (:func:`~workbench.spectra.targets.linear_targets`) are measured.
    calibration : torch.LongTensor [seq, pos]
        Tokens whose activations the ``"svd"``, ``"whitened"`` (...) curves are measured on.
    curves : sequence of str
        ``"weights"`` (the weight loss, no activations) or a method of
        :func:`~workbench.spectra.truncation_curve`, one curve each.
    progress : callable, optional
        ``progress(fraction, message)`` before each map (it may raise to stop).

    Returns
    -------
    xarray.Dataset
        ``truncation`` (target, curve, rank): the loss of keeping ``rank``
        directions, NaN past a map's full rank; ``target`` is the map's name
        without wrapper parts (:func:`target_label`), with the coords
        ``target_matrix`` (the name of its :func:`layer_spectra` matrix, which
        :func:`~workbench.spectra.compress` takes), ``target_kind`` and ``target_layer``.

    Examples
    --------
    >>> from workbench.models import load_model, tokenize
    >>> model = load_model("tiny-gelu-2l", device="cpu")
    >>> ds = truncation_curves(model, tokenize(model, ["import os"] * 2, seq_len=8), curves=("weights",))
    >>> sorted(set(ds["target_kind"].values.tolist())), ds.sizes["target"]
    (['k', 'mlp_in', 'mlp_out', 'o', 'q', 'v'], 12)
    >>> float(ds["truncation"].sel(target="blocks.0.attn.q", curve="weights", rank=128))
    0.0
    """
    curves = tuple(check_choice(c, "curves", ("weights", *METHODS)) for c in curves)
    targets = linear_targets(model)
    stats = {}
    if set(curves) - {"weights"}:
        stats = collect_stats(model, check_calibration(model, calibration, "calibration"))
    rows, labels = [], []
    for i, (name, target) in enumerate(targets.items()):
        labels.append(target_label(target.path))
        if progress is not None:
            progress(i / len(targets), f"truncation curves of {labels[-1]}")
        W = linear_weight(target.module)
        rows.append(np.stack([(truncation_curve(W) if c == "weights" else
                               truncation_curve(W, stats[name], method=c)).values for c in curves]))
    width = max(r.shape[1] for r in rows)
    values = np.full((len(rows), len(curves), width), np.nan)
    for i, r in enumerate(rows):
        values[i, :, : r.shape[1]] = r
    return xr.Dataset({"truncation": (("target", "curve", "rank"), values)},
                      coords={"target": labels, "curve": list(curves), "rank": np.arange(width),
                              "target_matrix": ("target", list(targets)),
                              "target_kind": ("target", [target_kind(label) for label in labels]),
                              "target_layer": ("target", [_layer_of(t.path) for t in targets.values()])})
