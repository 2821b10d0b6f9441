"""Enumerate the weight matrices of a model, listing every parameter left out and why.

Two sources:

* a TransformerLens ``TransformerBridge`` (what :func:`workbench.models.load_model`
  returns): attention through the bridge's ``W_Q``/``W_K``/``W_V``/``W_O`` views
  ([head, d_model, d_head]), so a fused QKV projection (GPT-2's ``c_attn``) is
  already split into Q, K and V and every head is seen on its own as well as
  the whole ``d_model x (heads d_head)`` matrix; the MLP's ``W_in``/``W_out``
  (and ``W_gate``); ``W_E``, ``W_pos``, ``W_U``;
* any other ``torch.nn.Module``: every 2-D parameter, with a fused QKV weight
  (Hugging Face ``c_attn``, ``qkv_proj``, ``query_key_value``: output three
  times the input) split into thirds.

Tied embeddings (``W_U = W_E^T``, GPT-2's ``lm_head`` sharing ``wte``) are one
matrix and are listed once, as ``W_E``, so that nothing summed over the
matrices counts them twice (``named_parameters`` already lists a shared
parameter once). A map compressed into a
:class:`~workbench.spectra.lowrank.LowRankLinear` is listed as the product of
its factors, under the name the dense map had (``<module>.weight``).

Nothing is dropped silently: parameters that are not matrices (biases, norm
scales, convolution kernels) come back in ``skipped`` with the reason, and a
2-D parameter that fits no known role is analysed as kind ``"other"``.

Examples
--------
>>> from workbench.models import load_model
>>> groups, skipped = model_matrices(load_model("tiny-attn-2l", device="cpu"))
>>> sorted({g.kind for g in groups})
['embed', 'k', 'o', 'pos_embed', 'q', 'unembed', 'v']
>>> skipped[0]
('blocks.0.ln1.weight', '1-D parameter (bias or normalisation scale): no singular values')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from workbench.spectra.lowrank import LowRankLinear

_FUSED_QKV = re.compile(r"(c_attn|qkv_proj|query_key_value|qkv)\.weight$")
_LAYER = re.compile(r"(?:^|\.)(\d+)\.")
_VECTOR_REASON = "1-D parameter (bias or normalisation scale): no singular values"
TIED_REASON = "tied to W_E (W_U = W_E^T): the same matrix, listed once as W_E"
#: A bridge block's matrix views, as ``(block part, view, matrix kind, submodule)``: the view
#: ``blocks.<i>.<part>.<view>`` is the weight of the linear map ``blocks[i].<part>.<submodule>``.
BRIDGE_VIEWS = (("attn", "W_Q", "q", "q"), ("attn", "W_K", "k", "k"), ("attn", "W_V", "v", "v"),
                ("attn", "W_O", "o", "o"), ("mlp", "W_in", "mlp_in", "in"), ("mlp", "W_gate", "mlp_gate", "gate"),
                ("mlp", "W_out", "mlp_out", "out"))


@dataclass
class MatrixGroup:
    """Matrices of one kind in one layer, stacked for a batched decomposition.

    ``matrices`` is [count, rows, cols]; ``heads[i]`` is the head of
    ``matrices[i]`` (-1 for a whole matrix); ``layer`` is -1 outside the blocks.
    """

    names: list[str]
    kind: str
    layer: int
    heads: list[int]
    matrices: torch.Tensor


def is_bridge(model) -> bool:
    """True for a TransformerLens bridge (or HookedTransformer) with per-head attention views."""
    blocks = getattr(model, "blocks", None)
    return getattr(model, "cfg", None) is not None and blocks is not None and len(blocks) > 0 \
        and hasattr(blocks[0], "attn") and hasattr(blocks[0].attn, "W_Q")


def _whole_and_heads(prefix: str, kind: str, layer: int, stack: torch.Tensor, per_head: bool,
                     head_axis_first_in: bool) -> list[MatrixGroup]:
    """Whole attention matrix plus (optionally) one matrix per head from a [head, a, b] stack."""
    H, a, b = stack.shape
    # W_Q/W_K/W_V are [head, d_model, d_head]: heads side by side in the columns;
    # W_O is [head, d_head, d_model]: heads stacked in the rows.
    whole = stack.reshape(H * a, b) if head_axis_first_in else stack.permute(1, 0, 2).reshape(a, H * b)
    groups = [MatrixGroup([prefix], kind, layer, [-1], whole[None])]
    if per_head:
        groups.append(MatrixGroup([f"{prefix}[{h}]" for h in range(H)], kind, layer, list(range(H)), stack))
    return groups


def view_name(layer: int, part: str, view: str) -> str:
    """The name :func:`model_matrices` gives a bridge block's matrix view.

    Examples
    --------
    >>> view_name(0, "attn", "W_Q")
    'blocks.0.attn.W_Q'
    """
    return f"blocks.{layer}.{part}.{view}"


def bridge_parts(model, block) -> tuple[str, ...]:
    """The parts of a bridge block whose views are analysed: ``attn``, and ``mlp`` unless attention-only."""
    has_mlp = getattr(block, "mlp", None) is not None and not getattr(model.cfg, "attn_only", False)
    return ("attn", "mlp") if has_mlp else ("attn",)


def _bridge_matrices(model, per_head: bool) -> tuple[list[MatrixGroup], set[str], list[tuple[str, str]]]:
    groups: list[MatrixGroup] = []
    covered_prefixes: set[str] = set()
    tied: list[tuple[str, str]] = []
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            parts = bridge_parts(model, block)
            for part, view, kind, _ in BRIDGE_VIEWS:
                if part == "attn":  # always present; [head, a, b] stacks
                    groups += _whole_and_heads(view_name(layer, part, view), kind, layer,
                                               getattr(block.attn, view).detach(), per_head,
                                               head_axis_first_in=(kind == "o"))
                elif part in parts:
                    W = getattr(block.mlp, view, None)
                    if isinstance(W, torch.Tensor) and W.ndim == 2:
                        groups.append(MatrixGroup([view_name(layer, part, view)], kind, layer, [-1], W.detach()[None]))
            covered_prefixes.update(f"blocks.{layer}.{part}." for part in parts)
        for kind, attr, prefix in (("embed", "W_E", "embed."), ("pos_embed", "W_pos", "pos_embed."),
                                   ("unembed", "W_U", "unembed.")):
            try:
                W = getattr(model, attr)
            except (AttributeError, RuntimeError):
                continue
            if isinstance(W, torch.Tensor) and W.ndim == 2:
                covered_prefixes.add(prefix)
                W_E = next((g.matrices[0] for g in groups if g.names == ["W_E"]), None) if attr == "W_U" else None
                if W_E is not None and W_E.shape == W.T.shape and torch.equal(W_E, W.detach().T):
                    tied.append((attr, TIED_REASON))
                    continue
                groups.append(MatrixGroup([attr], kind, -1, [-1], W.detach()[None]))
    return groups, covered_prefixes, tied


def _generic_kind(module: torch.nn.Module | None) -> str:
    if isinstance(module, torch.nn.Embedding):
        return "embed"
    name = type(module).__name__ if module is not None else ""
    return "linear" if isinstance(module, torch.nn.Linear) or name == "Conv1D" else "other"


def _n_heads(model) -> int | None:
    config = getattr(model, "config", None)
    for attr in ("n_head", "num_attention_heads", "n_heads"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    return None


def _layer_of(name: str) -> int:
    """The first ``.<int>.`` in a parameter name (``transformer.h.3.attn...`` -> 3), else -1."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else -1


def _fused_qkv(name: str, W: torch.Tensor, module, per_head: bool, n_heads: int | None) -> list[MatrixGroup]:
    # Conv1D stores [in, out]; nn.Linear [out, in]. Put the fused output axis first.
    out_first = W.T if type(module).__name__ == "Conv1D" else W
    d_in = out_first.shape[1]
    groups, layer = [], _layer_of(name)
    for kind, part in zip("qkv", out_first.split(d_in, dim=0)):
        base = f"{name}[{kind}]"
        groups.append(MatrixGroup([base], kind, layer, [-1], part[None]))
        if per_head and n_heads and part.shape[0] % n_heads == 0:
            heads = part.reshape(n_heads, part.shape[0] // n_heads, d_in)
            groups.append(MatrixGroup([f"{base}[{h}]" for h in range(n_heads)], kind, layer,
                                      list(range(n_heads)), heads))
    return groups


def model_matrices(model: torch.nn.Module, *, per_head: bool = True) -> tuple[list[MatrixGroup], list[tuple[str, str]]]:
    """Every weight matrix of ``model`` as :class:`MatrixGroup` s, and the parameters left out.

    Parameters
    ----------
    model : TransformerBridge or torch.nn.Module
    per_head : bool
        Also list each attention head's slice of Q, K, V and O.

    Returns
    -------
    groups : list of MatrixGroup
    skipped : list of (parameter name, reason)

    Examples
    --------
    >>> import torch
    >>> groups, skipped = model_matrices(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3)))
    >>> [(g.names, tuple(g.matrices.shape)) for g in groups], [name for name, _ in skipped]
    ([(['0.weight'], (1, 3, 4))], ['0.bias', '1.weight', '1.bias'])
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a TransformerBridge or torch.nn.Module, got {type(model).__name__}")
    bridge = is_bridge(model)
    groups, covered, skipped = _bridge_matrices(model, per_head) if bridge else ([], set(), [])
    modules = dict(model.named_modules())
    n_heads = None if bridge else _n_heads(model)
    factored = tuple(f"{path}." for path, module in modules.items() if isinstance(module, LowRankLinear))
    params = model.state_dict() if bridge else dict(model.named_parameters())
    for name, p in params.items():
        if p.ndim < 2:
            skipped.append((name, _VECTOR_REASON if p.ndim == 1 else "scalar parameter: no singular values"))
        elif p.ndim > 2:
            skipped.append((name, f"{p.ndim}-D parameter (e.g. a convolution kernel): not a matrix; "
                                  "reshape it to [out, in * kernel] and call spectrum()"))
        elif any(name.startswith(prefix) for prefix in covered):
            continue
        elif not bridge and name.startswith(factored):
            path = name.rsplit(".", 2)[0]
            skipped.append((name, f"factor of the low-rank map {path}.weight: analysed as their product"))
            if name.endswith(".down.weight"):
                with torch.no_grad():
                    groups.append(MatrixGroup([f"{path}.weight"], "linear", _layer_of(name), [-1],
                                              modules[path].weight.detach()[None]))
        else:
            module = modules.get(name.rsplit(".", 1)[0]) if "." in name else None
            W = p.detach()
            if not bridge and _FUSED_QKV.search(name) and 3 * min(W.shape) == max(W.shape):
                groups += _fused_qkv(name, W, module, per_head, n_heads)
            else:
                groups.append(MatrixGroup([name], _generic_kind(module), _layer_of(name), [-1], W[None]))
    if not groups:
        raise ValueError(f"model: expected at least one weight matrix (2-D parameter), found none in "
                         f"{type(model).__name__} with {len(params)} parameters")
    return groups, skipped
