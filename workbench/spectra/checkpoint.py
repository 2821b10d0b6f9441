"""Weight matrices straight from ``.safetensors`` checkpoints, one tensor at a time.

:func:`layer_spectra` given a path reads the checkpoint's tensor names and
shapes from the file headers, then loads one tensor (two for a per-head
circuit) at a time with ``safetensors.safe_open``: the model is never built
and memory stays within a small multiple of the largest single matrix.

Tensor names are mapped to the names the TransformerLens bridge path gives
(``blocks.<i>.attn.W_Q``, ``blocks.<i>.mlp.W_in``, ``W_E``, ...), with the
bridge's orientation (input dimension on the rows), so a checkpoint and the
same weights loaded with :func:`workbench.models.load_model` give the same
matrices:

=============================================  ===========================================
GPT-2 (``transformer.`` prefix optional)       bridge name
=============================================  ===========================================
``h.<i>.attn.c_attn.weight`` [d, 3 d] (Conv1D)  ``W_Q``, ``W_K``, ``W_V``: its column thirds
``h.<i>.attn.c_proj.weight``                   ``W_O``
``h.<i>.mlp.c_fc.weight``, ``mlp.c_proj``       ``W_in``, ``W_out``
``wte.weight``, ``wpe.weight``                 ``W_E``, ``W_pos``
=============================================  ===========================================

=====================================================  ======================================
Llama / Mistral / Gemma / Qwen2 (``model.`` optional)  bridge name
=====================================================  ======================================
``layers.<i>.self_attn.{q,k,v,o}_proj.weight``         ``W_Q``, ``W_K``, ``W_V``, ``W_O`` (transposed)
``layers.<i>.mlp.{up,gate,down}_proj.weight``          ``W_in``, ``W_gate``, ``W_out`` (transposed)
``embed_tokens.weight``, ``lm_head.weight``            ``W_E``, ``W_U`` (transposed)
=====================================================  ======================================

Grouped-query attention keeps its ``num_key_value_heads`` K and V heads
(as the bridge does). Tied embeddings (no ``lm_head.weight``, or
``tie_word_embeddings``) are one matrix, listed once as ``W_E``. Per-head
slices and OV/QK circuits need the head count from ``config.json`` beside the
weights. A 2-D tensor that fits no rule is an error that lists it: a result
that silently left matrices out would read as the whole model.

Examples
--------
>>> import tempfile, torch
>>> from pathlib import Path
>>> from safetensors.torch import save_file
>>> folder = Path(tempfile.mkdtemp())
>>> save_file({"wte.weight": torch.randn(50, 8), "h.0.attn.c_attn.weight": torch.randn(8, 24),
...            "h.0.ln_1.weight": torch.ones(8)}, folder / "model.safetensors")
>>> ckpt = open_checkpoint(folder)
>>> [spec.name for spec in ckpt.specs], ckpt.skipped[0][0]
(['blocks.0.attn.W_Q', 'blocks.0.attn.W_K', 'blocks.0.attn.W_V', 'W_E'], 'h.0.ln_1.weight')
>>> tuple(ckpt.matrix(ckpt.specs[1]).shape)
(8, 8)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workbench.spectra.circuits import CircuitGroup, _expand_kv
from workbench.spectra.weights import _VECTOR_REASON, BRIDGE_VIEWS, MatrixGroup, _whole_and_heads, view_name

INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"
_GPT2 = r"^(?:transformer\.)?h\.(\d+)\."
_LLAMA = r"^(?:model\.)?layers\.(\d+)\."
#: (pattern, kind or {group: kind}, layout). Layouts: "conv1d" is stored [in, out] (the bridge's
#: orientation), "linear" [out, in] (transposed here), "qkv" a Conv1D [d, 3 d] split in column thirds.
RULES = (
    (_GPT2 + r"attn\.c_attn\.weight$", "qkv", "qkv"),
    (_GPT2 + r"attn\.c_proj\.weight$", "o", "conv1d"),
    (_GPT2 + r"mlp\.c_fc\.weight$", "mlp_in", "conv1d"),
    (_GPT2 + r"mlp\.c_proj\.weight$", "mlp_out", "conv1d"),
    (r"^(?:transformer\.)?wte\.weight$", "embed", "conv1d"),
    (r"^(?:transformer\.)?wpe\.weight$", "pos_embed", "conv1d"),
    (_LLAMA + r"self_attn\.([qkvo])_proj\.weight$", {"q": "q", "k": "k", "v": "v", "o": "o"}, "linear"),
    (_LLAMA + r"mlp\.(up|gate|down)_proj\.weight$", {"up": "mlp_in", "gate": "mlp_gate", "down": "mlp_out"},
     "linear"),
    (r"^(?:model\.)?embed_tokens\.weight$", "embed", "conv1d"),
    (r"^lm_head\.weight$", "unembed", "linear"),
)
_VIEW_OF_KIND = {kind: (part, view) for part, view, kind, _ in BRIDGE_VIEWS}
_GLOBAL_NAMES = {"embed": "W_E", "pos_embed": "W_pos", "unembed": "W_U"}
_ORDER = [kind for _, _, kind, _ in BRIDGE_VIEWS] + ["embed", "pos_embed", "unembed"]


@dataclass
class MatrixSpec:
    """Where one bridge-named matrix lives: ``tensor`` read with ``layout`` (``part``: its third of a QKV)."""

    name: str
    kind: str
    layer: int
    tensor: str
    layout: str
    part: int = 0


@dataclass
class Checkpoint:
    """A safetensors checkpoint's tensors (names, shapes, files) and its mapping to bridge names."""

    files: list[Path]
    config: dict
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    specs: list[MatrixSpec] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    label: str = ""
    _file_of: dict[str, Path] = field(default_factory=dict, repr=False)

    def shape(self, spec: MatrixSpec) -> tuple[int, int]:
        """The shape of ``spec``'s matrix in the bridge's orientation, from the header alone."""
        rows, cols = self.shapes[spec.tensor]
        return {"linear": (cols, rows), "qkv": (rows, cols // 3)}.get(spec.layout, (rows, cols))

    def tensor(self, name: str) -> torch.Tensor:
        """One tensor as stored (dtype kept), read from its shard."""
        from safetensors import safe_open

        with safe_open(str(self._file_of[name]), framework="pt", device="cpu") as handle:
            return handle.get_tensor(name)

    def matrix(self, spec: MatrixSpec) -> torch.Tensor:
        """The matrix of ``spec`` in the bridge's orientation (a view where possible)."""
        W = self.tensor(spec.tensor)
        if spec.layout == "linear":
            return W.mT
        if spec.layout == "qkv":
            return W.chunk(3, dim=1)[spec.part]
        return W

    def heads(self) -> tuple[int, int] | None:
        """(query heads, key/value heads) from ``config.json``, or None without one."""
        n = next((self.config[k] for k in ("n_head", "num_attention_heads", "n_heads")
                  if isinstance(self.config.get(k), int)), None)
        if n is None:
            return None
        kv = self.config.get("num_key_value_heads")
        return n, kv if isinstance(kv, int) else n


def _safetensors_in(folder: Path, name: str) -> list[Path]:
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = sorted({folder / f for f in weight_map.values()})
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ValueError(f"{name}: {index} lists shards that are missing: {missing}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        listing = sorted(p.name for p in folder.iterdir())[:10]
        raise ValueError(f"{name}: expected a folder holding .safetensors weights (or {INDEX_FILE}), "
                         f"found none in {str(folder)!r} (it holds {listing}); a PyTorch .bin checkpoint can "
                         "be converted with transformers' save_pretrained(safe_serialization=True)")
    return files


def checkpoint_files(path, name: str = "path") -> list[Path]:
    """The ``.safetensors`` files of one checkpoint: a folder, a file, an index, or a list of shards.

    Examples
    --------
    >>> checkpoint_files("/nonexistent")
    Traceback (most recent call last):
    ...
    ValueError: path: expected a Hugging Face model folder, a .safetensors file or a list of them, got '/nonexistent' (no such file or folder; a model name is loaded with workbench.models.load_model first)
    """
    if isinstance(path, (list, tuple)):
        if not path:
            raise ValueError(f"{name}: expected at least one .safetensors file, got an empty list")
        return [f for p in path for f in checkpoint_files(p, name)]
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path (str or os.PathLike) to a checkpoint, got {type(path).__name__}")
    p = Path(path).expanduser()
    if p.is_dir():
        return _safetensors_in(p, name)
    if p.is_file() and p.name == INDEX_FILE:
        return _safetensors_in(p.parent, name)
    if p.is_file() and p.suffix == ".safetensors":
        return [p]
    why = ("no such file or folder; a model name is loaded with workbench.models.load_model first"
           if not p.exists() else "not a .safetensors file")
    raise ValueError(f"{name}: expected a Hugging Face model folder, a .safetensors file or a list of them, "
                     f"got {str(path)!r} ({why})")


def _read_config(files: list[Path]) -> dict:
    for folder in dict.fromkeys(f.parent for f in files):
        if (folder / CONFIG_FILE).is_file():
            return json.loads((folder / CONFIG_FILE).read_text())
    return {}


def _map(ckpt: Checkpoint, name: str) -> None:
    """Fill ``ckpt.specs`` (in the bridge path's order) and ``ckpt.skipped``; unmapped matrices raise."""
    found: dict[tuple[int, str], MatrixSpec] = {}
    unmapped = []
    for tensor, shape in ckpt.shapes.items():
        if len(shape) != 2:
            reason = _VECTOR_REASON if len(shape) == 1 else f"{len(shape)}-D tensor: not a matrix"
            ckpt.skipped.append((tensor, reason))
            continue
        for pattern, kind, layout in RULES:
            match = re.match(pattern, tensor)
            if match is None:
                continue
            layer = int(match.group(1)) if pattern.startswith((_GPT2, _LLAMA)) else -1
            if layout == "qkv" and shape[1] != 3 * shape[0]:
                raise ValueError(f"{name}: {tensor} should be a fused Q|K|V of shape [d, 3 d], got {shape}")
            kinds = ["q", "k", "v"] if kind == "qkv" else [kind if isinstance(kind, str) else kind[match.group(2)]]
            for part, k in enumerate(kinds):
                mat = view_name(layer, *_VIEW_OF_KIND[k]) if layer >= 0 else _GLOBAL_NAMES[k]
                found[(layer, k)] = MatrixSpec(mat, k, layer, tensor, layout, part)
            break
        else:
            unmapped.append(tensor)
    if unmapped:
        raise ValueError(f"{name}: {len(unmapped)} matrices have names of an unknown architecture (known: GPT-2, "
                         f"Llama/Mistral/Gemma/Qwen2): {sorted(unmapped)[:20]}"
                         + (" ..." if len(unmapped) > 20 else ""))
    if not found:
        raise ValueError(f"{name}: expected at least one weight matrix, found none among {len(ckpt.shapes)} tensors")
    unembed = found.get((-1, "unembed"))
    if (-1, "embed") in found and (unembed is None or ckpt.config.get("tie_word_embeddings") is True):
        if unembed is not None:
            del found[(-1, "unembed")]
        ckpt.skipped.append(("W_U", "tied to W_E (the same matrix): listed once, as W_E"))
    layers = sorted({layer for layer, _ in found if layer >= 0})
    ckpt.specs = [found[(layer, k)] for layer in layers + [-1] for k in _ORDER if (layer, k) in found]


def open_checkpoint(path, name: str = "path") -> Checkpoint:
    """Read a checkpoint's headers and ``config.json`` and map its tensors (nothing is loaded).

    Parameters
    ----------
    path : str, os.PathLike or list of them
        A Hugging Face model folder (``*.safetensors``, sharded with
        ``model.safetensors.index.json`` or not), one ``.safetensors`` file,
        the index file, or a list of shard files.
    name : str
        The argument name used in error messages.

    Returns
    -------
    Checkpoint

    Examples
    --------
    >>> open_checkpoint(123)
    Traceback (most recent call last):
    ...
    TypeError: path: expected a path (str or os.PathLike) to a checkpoint, got int
    """
    from safetensors import safe_open

    files = checkpoint_files(path, name)
    shapes, dtypes, file_of = {}, {}, {}
    for f in files:
        with safe_open(str(f), framework="pt", device="cpu") as handle:
            for key in handle.keys():
                if key in file_of:
                    raise ValueError(f"{name}: tensor {key!r} is in both {file_of[key]} and {f}: these are "
                                     "several checkpoints, not the shards of one; pass them as a list to "
                                     "layer_spectra for a checkpoint dimension")
                view = handle.get_slice(key)
                shapes[key], dtypes[key], file_of[key] = tuple(view.get_shape()), view.get_dtype(), f
    label = str(path) if isinstance(path, (str, os.PathLike)) else str(files[0].parent)
    ckpt = Checkpoint(files, _read_config(files), shapes, dtypes, label=label, _file_of=file_of)
    _map(ckpt, name)
    return ckpt


def _stack(whole: torch.Tensor, kind: str, n: int) -> torch.Tensor:
    """A bridge-oriented attention matrix as its [head, ...] stack (the bridge's W_Q/W_O layout)."""
    if kind == "o":  # [n d_head, d_model] -> [head, d_head, d_model]
        return whole.reshape(n, whole.shape[0] // n, whole.shape[1])
    return whole.reshape(whole.shape[0], n, whole.shape[1] // n).permute(1, 0, 2)


def _head_count(ckpt: Checkpoint, spec: MatrixSpec, name: str) -> int | None:
    heads = ckpt.heads()
    if heads is None or spec.kind not in ("q", "k", "v", "o"):
        return None
    n = heads[1] if spec.kind in ("k", "v") else heads[0]
    rows, cols = ckpt.shape(spec)
    width = rows if spec.kind == "o" else cols
    if width % n:
        raise ValueError(f"{name}: {spec.tensor} has {width} head dimensions, not a multiple of the {n} heads "
                         f"of {CONFIG_FILE}")
    return n


def weight_groups(ckpt: Checkpoint, spec: MatrixSpec, per_head: bool, name: str = "path") -> list[MatrixGroup]:
    """The whole matrix of ``spec`` and, with heads known, its per-head slices (loaded now)."""
    whole = ckpt.matrix(spec)
    n = _head_count(ckpt, spec, name)
    if n is None:
        return [MatrixGroup([spec.name], spec.kind, spec.layer, [-1], whole[None])]
    return _whole_and_heads(spec.name, spec.kind, spec.layer, _stack(whole, spec.kind, n), per_head,
                            head_axis_first_in=spec.kind == "o")


def circuit_group(ckpt: Checkpoint, kind: str, layer: int, name: str = "path") -> CircuitGroup:
    """The OV (``W_V W_O``) or QK (``W_Q W_K^T``) factors of ``layer``'s heads (loaded now)."""
    by_kind = {s.kind: s for s in ckpt.specs if s.layer == layer}
    stacks = {}
    for k in ("v", "o") if kind == "ov" else ("q", "k"):
        spec = by_kind[k]
        stacks[k] = _stack(ckpt.matrix(spec), k, _head_count(ckpt, spec, name))
    if kind == "ov":
        H = ckpt.heads()[0]
        return CircuitGroup("ov", layer, _expand_kv(stacks["v"], H), stacks["o"].mT)
    return CircuitGroup("qk", layer, stacks["q"], _expand_kv(stacks["k"], stacks["q"].shape[0]))


def circuit_layers(ckpt: Checkpoint) -> list[int]:
    """Layers whose Q, K, V and O are all present, when the head count is known."""
    if ckpt.heads() is None:
        return []
    kinds: dict[int, set[str]] = {}
    for s in ckpt.specs:
        kinds.setdefault(s.layer, set()).add(s.kind)
    return sorted(layer for layer, k in kinds.items() if layer >= 0 and {"q", "k", "v", "o"} <= k)
