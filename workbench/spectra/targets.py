"""The linear maps that compression can truncate, named as :func:`layer_spectra` names their matrices.

The one place that ties the two namings together. :func:`layer_spectra`
reports a bridge's matrices through its views (``blocks.0.attn.W_Q``,
``blocks.0.mlp.W_in``), while the ``torch.nn.Linear`` holding each lives deep
inside the TransformerLens wrappers
(``blocks.0._original_component.attn._original_component.q._original_component``).
:func:`linear_targets` lists every truncatable map under its layer_spectra
name, with the module path that compression replaces:

* a ``TransformerBridge``: the views of :data:`~workbench.spectra.weights.BRIDGE_VIEWS`
  (``W_Q``, ``W_K``, ``W_V``, ``W_O``, ``W_in``, ``W_gate``, ``W_out`` of
  every block) backed by an ``nn.Linear`` or Hugging Face ``Conv1D``. Other
  linear modules inside a bridge have no layer_spectra name and are not
  targets (GPT-2's fused ``c_attn``, for one, is never run: the bridge runs
  its Q, K and V slices);
* any other ``torch.nn.Module``: every ``nn.Linear``/``Conv1D`` inside the
  blocks (a module path with a layer number, embeddings and heads excluded),
  named by its weight parameter (``blocks.0.fc_in.weight``). A fused QKV
  map, which layer_spectra splits into ``...c_attn.weight[q]``, ``[k]``,
  ``[v]``, is one target, ``...c_attn.weight``.

A map that :func:`~workbench.spectra.compress.compress` already replaced by a
:class:`~workbench.spectra.lowrank.LowRankLinear` stays a target under the
same name (its weight is the factors' product), so a compressed model can be
compressed again; its two factor ``nn.Linear`` are not targets of their own.

Per-head slices (``W_Q[3]``), OV/QK circuits, embeddings and the unembedding
have no linear map of their own to truncate; :func:`resolve_target` says so.

Examples
--------
>>> from workbench.models import load_model
>>> targets = linear_targets(load_model("tiny-gelu-2l", device="cpu"))
>>> list(targets)[:5]
['blocks.0.attn.W_Q', 'blocks.0.attn.W_K', 'blocks.0.attn.W_V', 'blocks.0.attn.W_O', 'blocks.0.mlp.W_in']
>>> targets["blocks.0.mlp.W_in"].path
'blocks.0._original_component.mlp._original_component.fc_in._original_component'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from workbench.spectra.lowrank import LowRankLinear
from workbench.spectra.weights import BRIDGE_VIEWS, _layer_of, bridge_parts, is_bridge, model_matrices, view_name

_EMBEDDING_NAMES = ("embed", "unembed", "lm_head", "wte", "wpe", "head")
_SLICE = re.compile(r"(\[[^\]]*\])+$")  # trailing [q], [3]: a fused part or a head


@dataclass(frozen=True)
class LinearTarget:
    """A truncatable linear map: its :func:`layer_spectra` ``name``, module ``path`` and ``module``."""

    name: str
    path: str
    module: torch.nn.Module


def linear_weight(module: torch.nn.Module) -> torch.Tensor | None:
    """The ``[out, in]`` weight of an ``nn.Linear``, Hugging Face ``Conv1D`` or ``LowRankLinear``, else None."""
    if isinstance(module, LowRankLinear):
        with torch.no_grad():
            return module.weight
    if isinstance(module, torch.nn.Linear):
        return module.weight
    if type(module).__name__ == "Conv1D":
        return module.weight.T
    return None


def target_label(path: str) -> str:
    """A module path without the bridge's wrapper parts.

    Examples
    --------
    >>> target_label("blocks.0._original_component.attn._original_component.q._original_component")
    'blocks.0.attn.q'
    """
    return ".".join(part for part in path.split(".") if part != "_original_component")


def _bridge_targets(model) -> list[tuple[str, str]]:
    found = []
    for layer, block in enumerate(model.blocks):
        parts = bridge_parts(model, block)
        for part, view, _, submodule in BRIDGE_VIEWS:
            component = getattr(getattr(block, part, None), submodule, None) if part in parts else None
            linear = getattr(component, "original_component", component)
            if isinstance(linear, torch.nn.Module) and linear_weight(linear) is not None:
                found.append((view_name(layer, part, view), linear))
    paths = {id(module): path for path, module in model.named_modules()}
    return [(name, paths[id(linear)]) for name, linear in found if id(linear) in paths]


def _module_targets(model: torch.nn.Module) -> list[tuple[str, str]]:
    factors = tuple(f"{path}." for path, module in model.named_modules() if isinstance(module, LowRankLinear))
    return [(f"{path}.weight", path) for path, module in model.named_modules()
            if linear_weight(module) is not None and _layer_of(path) >= 0 and not path.startswith(factors)
            and not any(part in _EMBEDDING_NAMES for part in path.split("."))]


def linear_targets(model: torch.nn.Module) -> dict[str, LinearTarget]:
    """Every truncatable linear map of ``model``, keyed by its :func:`layer_spectra` matrix name.

    Raises ``ValueError`` (naming ``model``) when there is none.

    Examples
    --------
    >>> import torch
    >>> blocks = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())])
    >>> linear_targets(torch.nn.ModuleDict({"blocks": blocks}))
    {'blocks.0.0.weight': LinearTarget(name='blocks.0.0.weight', path='blocks.0.0', module=Linear(...))}
    """
    pairs = _bridge_targets(model) if is_bridge(model) else _module_targets(model)
    if not pairs:
        raise ValueError(f"model: expected linear maps inside transformer blocks, found none in {type(model).__name__}")
    return {name: LinearTarget(name, path, model.get_submodule(path)) for name, path in pairs}


def _few(names: list[str], n: int = 4) -> str:
    shown = ", ".join(repr(name) for name in names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")


def resolve_target(key, targets: dict[str, LinearTarget], model: torch.nn.Module, argument: str) -> str:
    """``key`` if it names a target, else a ``ValueError`` naming ``argument``, ``key`` and valid names.

    Examples
    --------
    >>> from workbench.models import load_model
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> resolve_target("blocks.0.attn.W_Q", linear_targets(model), model, "ranks")
    'blocks.0.attn.W_Q'
    >>> resolve_target("blocks.0.attn.W_Q[1]", linear_targets(model), model, "ranks")
    Traceback (most recent call last):
    ValueError: ranks: 'blocks.0.attn.W_Q[1]' is a slice ... of 'blocks.0.attn.W_Q' with no linear map of its own; ...
    """
    if key in targets:
        return key
    names = list(targets)
    if not isinstance(key, str):
        why = f"({type(key).__name__}) is not a str matrix name"
    else:
        base = _SLICE.sub("", key)
        aliases = {alias: t.name for t in targets.values() for alias in (t.path, target_label(t.path))}
        if key in aliases:
            why = f"is the module behind {aliases[key]!r}: name it as layer_spectra does, {aliases[key]!r}"
        elif base != key and base in targets:
            why = (f"is a slice (one head, or Q/K/V of a fused map) of {base!r} with no linear map of its own; "
                   f"truncate {base!r} as a whole")
        elif base != key:
            why = "is a per-head view (a head's slice or an OV/QK circuit): it has no linear map of its own to truncate"
        elif key in {n for g in model_matrices(model, per_head=False)[0] for n in g.names}:
            why = ("is a layer_spectra matrix with no truncatable linear map inside the transformer blocks "
                   "(embeddings, unembedding and other weights stay dense)")
        else:
            why = "is not a matrix name of layer_spectra"
    raise ValueError(f"{argument}: {key!r} {why}; expected a whole matrix of layer_spectra, one of {_few(names)}")
