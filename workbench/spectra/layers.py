"""``layer_spectra``: every weight matrix, head and circuit of a model, with rank metrics.

Examples
--------
>>> from workbench.models import load_model
>>> ds = layer_spectra(load_model("tiny-attn-2l", device="cpu"), progress=False)
>>> ds.singular_value.dims, sorted(set(ds.kind.values.tolist()))[:3]
(('matrix', 'index'), ['embed', 'k', 'o'])
"""

from __future__ import annotations

import os

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from workbench import __version__
from workbench.spectra import checkpoint as ck
from workbench.spectra._validate import (check_choice, check_finite, check_int, resolve_device, resolve_dtype,
                                         source_precision)
from workbench.spectra.activations import activation_spectra
from workbench.spectra.circuits import circuit_matrices, circuit_singular_values
from workbench.spectra.metrics import metrics_from_singular_values
from workbench.spectra.mp import MP_METHODS
from workbench.spectra.randomized import check_metrics, top_metrics
from workbench.spectra.svd import frobenius_sq, singular_values, top_singular_values
from workbench.spectra.weights import is_bridge, model_matrices

KINDS = ("weights", "ov", "qk")


def _check_kinds(kinds) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds: expected a non-empty subset of {KINDS}, got {kinds!r}")
    return tuple(kinds)


def _check_finite(names: list[str], arg: str, *stacks: torch.Tensor) -> None:
    """Name the first matrix of a group whose stack [count, ...] holds NaN or inf."""
    for stack in stacks:
        if not bool(torch.isfinite(stack).all()):
            for name, matrix in zip(names, stack):
                check_finite(matrix, f"{arg}: matrix {name!r}")


class _Options:
    """How the spectra are computed (validated once)."""

    def __init__(self, device, dtype, method, top_k, oversample, n_iter, metrics, default_dtype, mp_fit):
        self.metrics = check_metrics(metrics, method)
        self.mp_fit = check_choice(mp_fit, "mp_fit", MP_METHODS)
        self.method = method
        if method == "randomized":
            self.top_k = check_int(top_k, "top_k")
            self.oversample = check_int(oversample, "oversample", low=0)
            self.n_iter = check_int(n_iter, "n_iter", low=0)
        elif top_k is not None:
            raise ValueError(f"top_k: only used with method='randomized' (exact gives every singular value), "
                             f"got {top_k!r}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype) or default_dtype

    def sigma(self, W: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Singular values of a stack [count, m, n] (top_k of them when randomized), and ||W||_F^2 when randomized."""
        if self.method == "exact":
            return singular_values(W, device=self.device, dtype=self.dtype).cpu().numpy(), None
        top = top_singular_values(W, self.top_k, oversample=self.oversample, n_iter=self.n_iter,
                                  device=self.device, dtype=self.dtype)
        return top.cpu().numpy(), frobenius_sq(W.to(self.device)).reshape(-1).cpu().numpy()

    def metrics_of(self, s: np.ndarray, frob: float | None, shape: tuple[int, int], precision: str,
                   product: bool) -> dict:
        if self.method == "randomized":
            return top_metrics(s, frob)
        every = metrics_from_singular_values(s, shape, precision, mp_fit=self.mp_fit, product=product)
        return {m: every[m] for m in self.metrics}


def _records(source: str, group, opts: _Options, arg: str) -> list[tuple]:
    """One record per matrix of a weight or circuit group: (name, kind, layer, head, shape, sigma, metrics)."""
    if source == "weights":
        _check_finite(group.names, arg, group.matrices)
        sigma, frob = opts.sigma(group.matrices)
        shape = tuple(group.matrices.shape[-2:])
        precision = source_precision(group.matrices)
        heads = group.heads
    else:
        _check_finite(group.names, arg, group.left, group.right)
        # Exact always: a circuit's spectrum is a d_head-sized core, cheap whatever the method.
        sigma = circuit_singular_values(group, device=opts.device, dtype=opts.dtype).cpu().numpy()
        frob = (sigma.astype(np.float64) ** 2).sum(axis=-1)
        if opts.method == "randomized":
            sigma = sigma[..., : opts.top_k]
        shape = (group.left.shape[-2], group.right.shape[-2])
        precision = source_precision(group.left)
        heads = list(range(group.left.shape[0]))
    frobs = frob if frob is not None else [None] * len(heads)
    return [(name, group.kind, group.layer, head, shape, s, opts.metrics_of(s, f, shape, precision, source != "weights"))
            for name, head, s, f in zip(group.names, heads, sigma, frobs)]


def _dataset(records: list[tuple], opts: _Options, attrs: dict) -> xr.Dataset:
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
    data.update({m: ("matrix", np.array([r[6][m] for r in records])) for m in opts.metrics})
    attrs = {**attrs, "method": opts.method, "dtype": str(opts.dtype).replace("torch.", ""),
             "workbench_version": __version__}
    if opts.method == "randomized":
        attrs.update(top_k=opts.top_k, oversample=opts.oversample, n_iter=opts.n_iter)
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _model_spectra(model, kinds, per_head, opts: _Options, progress: bool) -> xr.Dataset:
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
        records += _records(source, group, opts, "model")
    attrs = {"model": str(getattr(model, "workbench_id", type(model).__name__)), "kinds": list(kinds),
             "skipped": [f"{name}: {reason}" for name, reason in skipped]}
    return _dataset(records, opts, attrs)


def _checkpoint_spectra(ckpt: ck.Checkpoint, kinds, per_head, opts: _Options, progress: bool,
                        arg: str) -> xr.Dataset:
    """One checkpoint, streamed: each job loads its tensor(s) when it runs and drops them after."""
    jobs = []
    if "weights" in kinds:
        jobs += [("weights", lambda spec=spec: ck.weight_groups(ckpt, spec, per_head, arg)) for spec in ckpt.specs]
    skipped = list(ckpt.skipped)
    circuit_kinds = tuple(k for k in kinds if k != "weights")
    layers = ck.circuit_layers(ckpt)
    if circuit_kinds and not layers:
        skipped.append(("OV/QK circuits", f"need the head count ({ck.CONFIG_FILE} beside the weights) and each "
                                          "layer's Q, K, V and O"))
    jobs += [("circuit", lambda kind=kind, layer=layer: [ck.circuit_group(ckpt, kind, layer, arg)])
             for layer in layers for kind in circuit_kinds]
    if ckpt.heads() is None:
        skipped.append(("per-head slices", f"no head count: no {ck.CONFIG_FILE} beside the weights"))
    records = []
    for source, load in tqdm(jobs, desc="spectra", unit="matrix", disable=not progress):
        for group in load():
            records += _records(source, group, opts, arg)
    attrs = {"model": ckpt.label, "kinds": list(kinds), "skipped": [f"{n}: {reason}" for n, reason in skipped],
             "files": [str(f) for f in ckpt.files]}
    return _dataset(records, opts, attrs)


def _checkpoint_list(paths, kinds, per_head, opts: _Options, progress: bool) -> xr.Dataset:
    """Several checkpoints of one model (a training run): the spectra stacked over ``checkpoint``."""
    ckpts = [ck.open_checkpoint(p, f"model[{i}]") for i, p in enumerate(paths)]
    first = [(s.name, ckpts[0].shape(s)) for s in ckpts[0].specs]
    for i, c in enumerate(ckpts[1:], 1):
        other = [(s.name, c.shape(s)) for s in c.specs]
        if other != first:
            diff = sorted(set(first) ^ set(other))[:6]
            raise ValueError(f"model: checkpoints must hold the same matrices with the same shapes, but "
                             f"{ckpts[0].label!r} and {c.label!r} differ in {diff} (name, shape); the shards "
                             "of one checkpoint go in its folder or a tuple of files, not a list")
    sets = [_checkpoint_spectra(c, kinds, per_head, opts, progress, f"model[{i}]") for i, c in enumerate(ckpts)]
    ds = xr.concat(sets, dim="checkpoint", combine_attrs="drop_conflicts")
    return ds.assign_coords(checkpoint=[c.label for c in ckpts]).assign_attrs(
        model=[c.label for c in ckpts], files=[[str(f) for f in c.files] for c in ckpts])


def layer_spectra(model, *, kinds: tuple[str, ...] = KINDS, tokens: torch.Tensor | None = None,
                  per_head: bool = True, hooks: list[str] | None = None, cache=None,
                  device: str | torch.device | None = None, progress: bool = True, method: str = "exact",
                  top_k: int | None = None, metrics: tuple[str, ...] | None = None, dtype: str | None = None,
                  oversample: int = 10, n_iter: int = 4, mp_fit: str = "median") -> xr.Dataset:
    """Singular values and :func:`rank_metrics` of every matrix of a model or checkpoint(s).

    Parameters
    ----------
    model : TransformerBridge, torch.nn.Module, path, or list of paths
        A bridge gives per-head Q/K/V/O slices and OV/QK circuits; any other
        module gives every 2-D parameter (see :mod:`workbench.spectra.weights`).
        A path (a Hugging Face model folder, a ``.safetensors`` file, its
        ``model.safetensors.index.json``, or a tuple of shard files) is read
        one tensor at a time without building the model, under the bridge's
        matrix names (see :mod:`workbench.spectra.checkpoint`). A list of
        such paths (checkpoints of one training run) adds a ``checkpoint``
        dimension.
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
    method : {"exact", "randomized"}
        ``"exact"``: every singular value (a float64 Gram route, see
        :mod:`workbench.spectra.svd`). ``"randomized"``: the ``top_k`` largest
        by randomized SVD (:func:`~workbench.spectra.svd.top_singular_values`),
        with only the metrics they determine (:mod:`workbench.spectra.randomized`).
    top_k : int, optional
        How many singular values ``"randomized"`` computes (required there).
    metrics : tuple of str, optional
        Metric variables to return; default every one (exact) or
        ``("stable_rank", "log_norm", "log_spectral_norm")`` (randomized,
        which refuses the others).
    dtype : {None, "float32", "float64"}
        Output precision of the singular values (and of the direct and
        randomized SVDs; the Gram route accumulates in float64 either way).
        Default float64 for a model, float32 for checkpoints.
    oversample, n_iter : int
        Randomized SVD's extra directions and power iterations.
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
        (q, k, v, o, mlp_in, mlp_gate, mlp_out, embed, pos_embed, unembed, ov, qk,
        linear, other), ``layer`` and ``head`` (-1 where not applicable),
        ``rows`` and ``cols``. ``attrs["skipped"]`` lists every parameter left
        out as ``"name: reason"``. With ``tokens``, the variables of
        :func:`activation_spectra` over ``hook`` are added. A list of
        checkpoints adds a leading ``checkpoint`` dim (coords: the paths).

    Examples
    --------
    >>> from workbench.models import load_model
    >>> ds = layer_spectra(load_model("tiny-gelu-2l", device="cpu"), kinds=("ov",), progress=False)
    >>> ds.sizes["matrix"], int(ds.numerical_rank.max())
    (8, 32)

    From a checkpoint on disk (one tensor in memory at a time):

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from safetensors.torch import save_file
    >>> path = Path(tempfile.mkdtemp()) / "model.safetensors"
    >>> save_file({"layers.0.mlp.up_proj.weight": torch.diag(torch.tensor([3.0, 2.0, 1.0]))}, path)
    >>> ds = layer_spectra(path, progress=False, device="cpu")
    >>> ds.matrix.values.tolist(), ds.singular_value.values[0].tolist()
    (['blocks.0.mlp.W_in'], [3.0, 2.0, 1.0])
    """
    kinds = _check_kinds(kinds)
    if isinstance(model, (str, os.PathLike, list, tuple)):
        if tokens is not None:
            raise ValueError("tokens: activation spectra need a TransformerBridge, got a checkpoint path")
        opts = _Options(device, dtype, method, top_k, oversample, n_iter, metrics, torch.float32, mp_fit)
        if isinstance(model, list):
            if not model:
                raise ValueError("model: expected at least one checkpoint, got an empty list")
            return _checkpoint_list(model, kinds, per_head, opts, progress)
        return _checkpoint_spectra(ck.open_checkpoint(model, "model"), kinds, per_head, opts, progress, "model")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a TransformerBridge, torch.nn.Module or a checkpoint path, "
                        f"got {type(model).__name__}")
    opts = _Options(device, dtype, method, top_k, oversample, n_iter, metrics, torch.float64, mp_fit)
    ds = _model_spectra(model, kinds, per_head, opts, progress)
    if tokens is not None:
        if not is_bridge(model):
            raise ValueError(f"tokens: activation spectra need a TransformerBridge, got {type(model).__name__}")
        ds = ds.merge(activation_spectra(model, tokens, hooks=hooks, cache=cache, device=opts.device,
                                         progress=progress), combine_attrs="override")
    return ds
