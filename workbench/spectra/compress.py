"""Low-rank compression of a model's linear maps, and the loss-vs-parameters frontier.

``compress`` replaces each linear map inside the transformer blocks by a
factor pair ``x -> A (B x) + b`` of rank ``k`` chosen by a truncation method
(:mod:`workbench.spectra.truncation`): plain SVD of the weights, or, from the
inputs each map sees on calibration tokens, ASVD, whitened SVD (SVD-LLM) or
output PCA (AFM). Ranks are allocated

* ``"uniform"``: every matrix keeps the same fraction ``ratio`` of its
  parameters, ``k = floor(ratio m n / (m + n))``;
* ``"greedy"``: one budget ``ratio sum m n`` shared by all matrices; starting
  from full rank, the rank unit whose removal costs the least *relative*
  activation loss (loss over the matrix's total output energy) per parameter
  saved (``m + n``) goes first, until the budget is met.

A matrix whose factor pair would hold at least ``m n`` parameters stays dense.

Matrices are named as :func:`~workbench.spectra.layer_spectra` names them
(``blocks.0.attn.W_Q``, ``blocks.0.mlp.W_in``; ``<module>.weight`` on a
plain ``torch.nn.Module``), in arguments and results alike: a rank read off
the spectra table goes straight into ``compress(ranks={name: k})``.
:mod:`workbench.spectra.targets` maps the names to the modules replaced.

Examples
--------
>>> from workbench.models import load_model
>>> model = load_model("tiny-gelu-2l", device="cpu")
>>> small = compress(model, ratio=0.5, method="svd")
>>> round(small.workbench_compression["params_kept"], 2)
0.5
"""

from __future__ import annotations

import copy
import heapq
import math
import numbers

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from workbench.spectra._validate import check_choice, resolve_device
from workbench.spectra.lowrank import LowRankLinear
from workbench.spectra.targets import linear_targets, linear_weight, resolve_target
from workbench.spectra.truncation import METHODS, ActivationStats, loss_terms, low_rank_factors
from workbench.spectra.weights import is_bridge

ALLOCATIONS = ("uniform", "greedy")


def target_linears(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The linear maps inside the transformer blocks, keyed by their :func:`layer_spectra` matrix names.

    Embeddings and the unembedding are not targets; see :func:`~workbench.spectra.targets.linear_targets`.

    Examples
    --------
    >>> from workbench.models import load_model
    >>> names = list(target_linears(load_model("tiny-gelu-2l", device="cpu")))
    >>> len(names), names[4:6]
    (12, ['blocks.0.mlp.W_in', 'blocks.0.mlp.W_out'])
    """
    return {name: target.module for name, target in linear_targets(model).items()}


@torch.no_grad()
def collect_stats(model: torch.nn.Module, tokens: torch.Tensor, *, batch_size: int = 16,
                  progress: bool = False) -> dict[str, ActivationStats]:
    """Input statistics (Gram, mean |x|) of every target linear map over ``tokens``, by matrix name."""
    targets = target_linears(model)
    stats = {name: ActivationStats(int(linear_weight(m).shape[1])) for name, m in targets.items()}
    handles = [m.register_forward_pre_hook(lambda mod, args, name=name: stats[name].update(args[0]))
               for name, m in targets.items()]
    try:
        for start in tqdm(range(0, tokens.shape[0], batch_size), desc="calibration", disable=not progress):
            model(tokens[start:start + batch_size])
    finally:
        for h in handles:
            h.remove()
    return stats


def check_calibration(model: torch.nn.Module, tokens, name: str):
    """Token ids checked against a bridge's vocabulary and context; a plain module's input is passed as is."""
    from workbench.hooks.validate import check_tokens

    return check_tokens(model, tokens, name) if is_bridge(model) else tokens


def _uniform_ranks(shapes: dict[str, tuple[int, int]], ratio: float) -> dict[str, int]:
    return {name: max(1, int(math.floor(ratio * m * n / (m + n)))) for name, (m, n) in shapes.items()}


def _greedy_ranks(curves: dict[str, np.ndarray], shapes: dict[str, tuple[int, int]], ratio: float) -> dict[str, int]:
    """Remove rank units by the smallest relative loss per parameter until the budget holds."""
    budget = ratio * sum(m * n for m, n in shapes.values())
    ranks = {name: min(shape) for name, shape in shapes.items()}

    def stored(name: str) -> int:  # parameters held: factor pair or dense, whichever is smaller
        m, n = shapes[name]
        return min(ranks[name] * (m + n), m * n)

    def cost(name: str) -> float:
        k, curve = ranks[name], curves[name]
        return (curve[k - 1] - curve[k]) / max(curve[0], 1e-300) / sum(shapes[name])

    held = sum(stored(name) for name in ranks)
    heap = [(cost(name), name) for name in ranks if ranks[name] > 1]
    heapq.heapify(heap)
    while heap and held > budget:
        _, name = heapq.heappop(heap)
        before = stored(name)
        ranks[name] -= 1
        held += stored(name) - before
        if ranks[name] > 1:
            heapq.heappush(heap, (cost(name), name))
    return ranks


def _replace(model: torch.nn.Module, path: str, new: torch.nn.Module) -> None:
    parent_name, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    parent._modules[attr] = new  # GeneralizedComponent bridges read their wrapped module from _modules


def _apply(model, ranks, method, stats) -> dict:
    """Replace every target whose factor pair is smaller than its dense weight; ranks as kept."""
    kept = total = 0
    kept_ranks = {}
    for name, target in linear_targets(model).items():
        W = linear_weight(target.module)
        m, n = W.shape
        total += m * n
        k = ranks[name]
        # An already compressed map (compressing twice) holds rank(m + n); it is refactored only to a lower rank.
        current = target.module.rank if isinstance(target.module, LowRankLinear) else min(m, n)
        if k >= current or k * (m + n) >= m * n:
            held = current * (m + n) if isinstance(target.module, LowRankLinear) else m * n
            kept, kept_ranks[name] = kept + held, current
            continue
        A, B = low_rank_factors(W, k, method=method, stats=None if stats is None else stats[name])
        bias = getattr(target.module, "bias", None)
        _replace(model, target.path, LowRankLinear(A.to(W.dtype).to(W.device), B.to(W.dtype).to(W.device),
                                                   None if bias is None else bias.detach()))
        kept, kept_ranks[name] = kept + k * (m + n), k
    return {"ranks": kept_ranks, "params_kept": kept / total, "params": kept, "params_total": total,
            "method": method}


def _check_ratio(ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio: expected a fraction of parameters kept in (0, 1], got {ratio!r}")
    return float(ratio)


def _check_rank(k, argument: str, expected: str = "a positive int rank") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{argument}: expected {expected}, got {k!r}")
    return int(k)


def _given_ranks(model, ranks) -> dict[str, int]:
    """``ranks`` (one int, or ``{layer_spectra name: rank}``) over every target; unnamed targets keep full rank."""
    targets = linear_targets(model)
    if not isinstance(ranks, dict):
        k = _check_rank(ranks, "ranks", "a positive int rank or a dict {layer_spectra matrix name: rank}")
        return dict.fromkeys(targets, k)
    plan = {name: min(linear_weight(t.module).shape) for name, t in targets.items()}
    for key, k in ranks.items():
        plan[resolve_target(key, targets, model, "ranks")] = _check_rank(k, f"ranks[{key!r}]")
    return plan


def _allocate(model, ratio, method, allocation, stats) -> dict[str, int]:
    """Ranks keeping the fraction ``ratio`` of the targets' parameters."""
    weights = {name: linear_weight(m) for name, m in target_linears(model).items()}
    shapes = {name: tuple(W.shape) for name, W in weights.items()}
    ratio = _check_ratio(ratio)
    if allocation == "uniform":
        return _uniform_ranks(shapes, ratio)
    curves = {}
    for name, W in weights.items():
        terms = loss_terms(W, None if stats is None else stats[name], method).cpu().numpy()
        curves[name] = np.concatenate([np.cumsum(terms[::-1])[::-1], [0.0]])
    return _greedy_ranks(curves, shapes, ratio)


def compress(model: torch.nn.Module, *, ratio: float | None = None, ranks: int | dict | None = None,
             method: str = "whitened", calibration_tokens: torch.Tensor | None = None,
             allocation: str = "uniform", inplace: bool = False,
             device: str | torch.device | None = None) -> torch.nn.Module:
    """Replace the linear maps in the blocks of ``model`` by low-rank factor pairs.

    Parameters
    ----------
    model : TransformerBridge or torch.nn.Module
    ratio : float, optional
        Fraction of the target matrices' parameters to keep, in (0, 1].
    ranks : int or dict, optional
        Instead of ``ratio``: one rank for all, or ``{matrix name: rank}``
        with the names :func:`layer_spectra` gives whole matrices
        (``"blocks.0.attn.W_Q"``, ``"blocks.1.mlp.W_in"``; the weight
        parameter's name on a plain ``torch.nn.Module``); matrices left out
        stay dense. A name with no linear map of its own (a head's slice
        ``W_Q[3]``, an OV/QK circuit, ``W_E``) raises ``ValueError``.
    method : {"whitened", "svd", "asvd", "afm"}
    calibration_tokens : torch.LongTensor [seq, pos], optional
        Required by every method but ``"svd"`` (and by greedy allocation).
    allocation : {"uniform", "greedy"}
    inplace : bool
        Modify ``model`` itself instead of a deep copy.
    device : str or torch.device, optional
        Where the calibration pass runs (default: the model's device).

    Returns
    -------
    torch.nn.Module
        The compressed model, with ``workbench_compression``: ``ranks``
        (the rank each matrix keeps, by layer_spectra name: its full
        ``min(m, n)`` where a factor pair would not be smaller than the dense
        weight, which then stays as it is), ``params_kept`` fraction,
        parameter counts, method.

    Examples
    --------
    >>> from workbench.models import load_model
    >>> from workbench.spectra import layer_spectra
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> compress(model, ranks=8, method="svd").workbench_compression["params"]
    16384

    Truncate one matrix picked from the spectra table, by the name it has there:

    >>> ds = layer_spectra(model, kinds=("weights",), per_head=False, progress=False)
    >>> name = str(ds["matrix"].values[ds["layer"].values == 1][0])
    >>> name, int(ds["numerical_rank"].sel(matrix=name))
    ('blocks.1.attn.W_Q', 128)
    >>> small = compress(model, ranks={name: 16}, method="svd")
    >>> small.workbench_compression["ranks"][name], small.workbench_compression["ranks"]["blocks.1.attn.W_K"]
    (16, 128)
    >>> after = layer_spectra(small, kinds=("weights",), per_head=False, progress=False)
    >>> int(after["numerical_rank"].sel(matrix=name))
    16
    >>> compress(model, ranks={"blocks.1.attn.W_Q[0]": 4}, method="svd")
    Traceback (most recent call last):
    ValueError: ranks: 'blocks.1.attn.W_Q[0]' is a slice ... of 'blocks.1.attn.W_Q' with no linear map of its own; ...
    """
    check_choice(method, "method", METHODS)
    check_choice(allocation, "allocation", ALLOCATIONS)
    if (ratio is None) == (ranks is None):
        raise ValueError(f"ratio, ranks: expected exactly one of them, got ratio={ratio!r}, ranks={ranks!r}")
    needs_stats = method != "svd" or (allocation == "greedy" and ranks is None)
    if needs_stats and calibration_tokens is None:
        raise ValueError(f"calibration_tokens: method={method!r} / allocation={allocation!r} needs "
                         "calibration tokens [seq, pos], got None")
    if needs_stats:
        calibration_tokens = check_calibration(model, calibration_tokens, "calibration_tokens")
    ratio = None if ratio is None else _check_ratio(ratio)
    plan = None if ranks is None else _given_ranks(model, ranks)  # bad names fail before any copy
    target = model if inplace else copy.deepcopy(model)
    if device is not None:
        target.to(resolve_device(device))
    stats = collect_stats(target, calibration_tokens) if needs_stats else None
    if plan is None:
        plan = _allocate(target, ratio, method, allocation, stats)
    target.workbench_compression = {**_apply(target, plan, method, stats), "allocation": allocation}
    return target


def compression_sweep(model: torch.nn.Module, tokens: torch.Tensor, ratios, methods=("svd", "whitened"), *,
                      allocation: str = "uniform", calibration_tokens: torch.Tensor | None = None,
                      progress: bool = True) -> xr.Dataset:
    """Held-out loss and perplexity of ``model`` compressed at each ratio by each method.

    Parameters
    ----------
    model : TransformerBridge
    tokens : torch.LongTensor [seq, pos]
        Held-out evaluation tokens.
    ratios : sequence of float
        Fractions of parameters kept.
    methods : sequence of {"svd", "whitened", "asvd", "afm"}
    allocation : {"uniform", "greedy"}
    calibration_tokens : torch.LongTensor, optional
        Default ``tokens`` (then the loss is not held out: pass separate tokens).
    progress : bool

    Returns
    -------
    xarray.Dataset
        ``loss`` (nats/token), ``perplexity``, ``params_kept`` (fraction) and
        ``params`` over (``method``, ``ratio``); the uncompressed loss in
        ``attrs["baseline_loss"]``. Select a method with ``ds.sel({"method": "svd"})``:
        the keyword form ``sel(method=...)`` is xarray's own lookup option.

    Examples
    --------
    >>> from workbench.models import load_model, tokenize
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> tokens = tokenize(model, ["def f(x):\\n    return x + 1\\n"] * 2, seq_len=16)
    >>> ds = compression_sweep(model, tokens, [0.5], ["svd"], progress=False)
    >>> ds.loss.dims
    ('method', 'ratio')
    """
    from workbench.models import mean_loss

    methods = [check_choice(m, "methods", METHODS) for m in methods]
    ratios = [_check_ratio(r) for r in ratios]
    tokens = check_calibration(model, tokens, "tokens")
    calibration = tokens if calibration_tokens is None else check_calibration(model, calibration_tokens,
                                                                              "calibration_tokens")
    stats = collect_stats(model, calibration) if (set(methods) - {"svd"} or allocation == "greedy") else None
    shape = (len(methods), len(ratios))
    out = {k: np.full(shape, np.nan) for k in ("loss", "params_kept", "params")}
    jobs = [(i, j) for i in range(len(methods)) for j in range(len(ratios))]
    for i, j in tqdm(jobs, desc="compression", disable=not progress):
        small = copy.deepcopy(model)
        plan = _allocate(small, ratios[j], methods[i], allocation, stats)
        info = _apply(small, plan, methods[i], stats)
        out["loss"][i, j] = mean_loss(small, tokens)
        out["params_kept"][i, j], out["params"][i, j] = info["params_kept"], info["params"]
        del small
    dims = ("method", "ratio")
    return xr.Dataset({"loss": (dims, out["loss"]), "perplexity": (dims, np.exp(out["loss"])),
                       "params_kept": (dims, out["params_kept"]), "params": (dims, out["params"])},
                      coords={"method": methods, "ratio": ratios},
                      attrs={"baseline_loss": mean_loss(model, tokens), "allocation": allocation,
                             "n_tokens": int(tokens.numel())})
