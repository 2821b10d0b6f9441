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

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from workbench.spectra._validate import check_choice, resolve_device
from workbench.spectra.truncation import METHODS, ActivationStats, loss_terms, low_rank_factors
from workbench.spectra.weights import _layer_of

ALLOCATIONS = ("uniform", "greedy")
_EMBEDDING_NAMES = ("embed", "unembed", "lm_head", "wte", "wpe", "head")


class LowRankLinear(torch.nn.Module):
    """``y = up(down(x)) + bias``: a rank-``k`` linear map stored as two factors.

    ``weight`` gives the product back so analysis views (``W_Q``...) still work.

    Examples
    --------
    >>> import torch
    >>> layer = LowRankLinear(torch.ones(3, 1), torch.ones(1, 2), torch.zeros(3))
    >>> layer(torch.ones(2)).tolist(), layer.rank
    ([2.0, 2.0, 2.0], 1)
    """

    def __init__(self, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.down = torch.nn.Linear(B.shape[1], B.shape[0], bias=False, dtype=A.dtype, device=A.device)
        self.up = torch.nn.Linear(A.shape[1], A.shape[0], bias=bias is not None, dtype=A.dtype, device=A.device)
        with torch.no_grad():
            self.down.weight.copy_(B)
            self.up.weight.copy_(A)
            if bias is not None:
                self.up.bias.copy_(bias)
        self.in_features, self.out_features, self.rank = B.shape[1], A.shape[0], A.shape[1]

    @property
    def weight(self) -> torch.Tensor:
        return self.up.weight @ self.down.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.up.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def _linear_weight(module: torch.nn.Module) -> torch.Tensor | None:
    """The ``[out, in]`` weight of an ``nn.Linear`` or Hugging Face ``Conv1D``, else None."""
    if isinstance(module, torch.nn.Linear):
        return module.weight
    if type(module).__name__ == "Conv1D":
        return module.weight.T
    return None


def target_linears(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The linear maps inside the transformer blocks (embeddings and unembedding excluded).

    Examples
    --------
    >>> from workbench.models import load_model
    >>> len(target_linears(load_model("tiny-gelu-2l", device="cpu")))
    12
    """
    found = {}
    for name, module in model.named_modules():
        if _linear_weight(module) is None or _layer_of(name) < 0:
            continue
        if any(part in _EMBEDDING_NAMES for part in name.split(".")):
            continue
        found[name] = module
    return found


@torch.no_grad()
def collect_stats(model: torch.nn.Module, tokens: torch.Tensor, *, batch_size: int = 16,
                  progress: bool = False) -> dict[str, ActivationStats]:
    """Input statistics (Gram, mean |x|) of every target linear map over ``tokens``."""
    targets = target_linears(model)
    stats = {name: ActivationStats(int(_linear_weight(m).shape[1])) for name, m in targets.items()}
    handles = [m.register_forward_pre_hook(lambda mod, args, name=name: stats[name].update(args[0]))
               for name, m in targets.items()]
    try:
        for start in tqdm(range(0, tokens.shape[0], batch_size), desc="calibration", disable=not progress):
            model(tokens[start:start + batch_size])
    finally:
        for h in handles:
            h.remove()
    return stats


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


def _replace(model: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    parent._modules[attr] = new  # GeneralizedComponent bridges read their wrapped module from _modules


def _apply(model, ranks, method, stats) -> dict:
    targets = target_linears(model)
    kept = total = 0
    for name, module in targets.items():
        W = _linear_weight(module)
        m, n = W.shape
        total += m * n
        k = ranks[name]
        if k * (m + n) >= m * n:
            kept += m * n
            continue
        A, B = low_rank_factors(W, k, method=method, stats=None if stats is None else stats[name])
        bias = getattr(module, "bias", None)
        _replace(model, name, LowRankLinear(A.to(W.dtype).to(W.device), B.to(W.dtype).to(W.device),
                                            None if bias is None else bias.detach()))
        kept += k * (m + n)
    return {"ranks": dict(ranks), "params_kept": kept / total, "params": kept, "params_total": total,
            "method": method}


def _check_ratio(ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio: expected a fraction of parameters kept in (0, 1], got {ratio!r}")
    return float(ratio)


def _plan(model, ratio, ranks, method, allocation, stats) -> dict[str, int]:
    shapes = {name: tuple(_linear_weight(m).shape) for name, m in target_linears(model).items()}
    if not shapes:
        raise ValueError(f"model: expected linear maps inside transformer blocks, found none in {type(model).__name__}")
    if ranks is not None:
        if isinstance(ranks, int):
            return {name: ranks for name in shapes}
        missing = set(shapes) - set(ranks)
        if not isinstance(ranks, dict) or missing:
            raise ValueError(f"ranks: expected an int or a dict over every target {sorted(shapes)}, "
                             f"missing {sorted(missing)}")
        return dict(ranks)
    ratio = _check_ratio(ratio)
    if allocation == "uniform":
        return _uniform_ranks(shapes, ratio)
    curves = {}
    for name, module in target_linears(model).items():
        terms = loss_terms(_linear_weight(module), None if stats is None else stats[name], method).cpu().numpy()
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
        Instead of ``ratio``: one rank for all, or ``{module name: rank}``.
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
        The compressed model, with ``workbench_compression`` (ranks,
        ``params_kept`` fraction, parameter counts, method).

    Examples
    --------
    >>> from workbench.models import load_model
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> compress(model, ranks=8, method="svd").workbench_compression["params"]
    16384
    """
    check_choice(method, "method", METHODS)
    check_choice(allocation, "allocation", ALLOCATIONS)
    if (ratio is None) == (ranks is None):
        raise ValueError(f"ratio, ranks: expected exactly one of them, got ratio={ratio!r}, ranks={ranks!r}")
    needs_stats = method != "svd" or (allocation == "greedy" and ranks is None)
    if needs_stats and calibration_tokens is None:
        raise ValueError(f"calibration_tokens: method={method!r} / allocation={allocation!r} needs "
                         "calibration tokens [seq, pos], got None")
    target = model if inplace else copy.deepcopy(model)
    if device is not None:
        target.to(resolve_device(device))
    stats = collect_stats(target, calibration_tokens) if needs_stats else None
    plan = _plan(target, ratio, ranks, method, allocation, stats)
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
    calibration = tokens if calibration_tokens is None else calibration_tokens
    stats = collect_stats(model, calibration) if (set(methods) - {"svd"} or allocation == "greedy") else None
    shape = (len(methods), len(ratios))
    out = {k: np.full(shape, np.nan) for k in ("loss", "params_kept", "params")}
    jobs = [(i, j) for i in range(len(methods)) for j in range(len(ratios))]
    for i, j in tqdm(jobs, desc="compression", disable=not progress):
        small = copy.deepcopy(model)
        plan = _plan(small, ratios[j], None, methods[i], allocation, stats)
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
