"""Save and load SAEs in the SAELens on-disk layout: ``cfg.json`` + ``sae_weights.safetensors``.

The config is written with the field names SAELens' loader reads (``d_in``,
``d_sae``, ``architecture``, ``k`` and ``activation_fn_kwargs.k``,
``apply_b_dec_to_input``, ``normalize_activations``, ``hook_name``,
``model_name``, ``reshape_activations``), so SAELens opens our folders; the
loader accepts both SAELens 6 configs (provenance under ``metadata``) and the
older flat ones (``hook_point``, ``activation_fn_str``) of released SAEs
such as the GPT-2 small hook_z set. Weights are read with safetensors only.

Examples
--------
>>> import tempfile
>>> from workbench.sae import AttentionSAE, SAEConfig
>>> folder = tempfile.mkdtemp()
>>> _ = save_sae(AttentionSAE(SAEConfig(d_in=4, d_sae=8, k=2, hook_name="blocks.0.attn.hook_z")), folder)
>>> load_sae(folder).cfg.hook_name
'blocks.0.attn.hook_z'
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from workbench import __version__
from workbench.sae._validate import check_folder
from workbench.sae.config import SAEConfig
from workbench.sae.registry import get_architecture

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
_CORE = ("W_enc", "W_dec", "b_enc", "b_dec")
#: Our fields SAELens has no name for; kept under this key and ignored by SAELens.
_OWN_KEY = "workbench"
_OWN_FIELDS = ("n_heads", "l1_coefficient", "aux_k", "aux_coefficient", "jumprelu_bandwidth",
               "jumprelu_init_threshold")
#: One id per save, in cfg.json (under ``workbench``) and in the weights' header: a folder whose two
#: files come from different saves (a save interrupted between its two renames) is refused on load.
_SAVE_ID = "save_id"


def save_sae(sae, path: str | os.PathLike) -> Path:
    """Write ``sae`` into folder ``path`` (created if needed); returns the folder.

    Examples
    --------
    >>> import tempfile
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> sorted(p.name for p in save_sae(AttentionSAE(SAEConfig(d_in=4, d_sae=8, k=2)), tempfile.mkdtemp()).iterdir())
    ['cfg.json', 'sae_weights.safetensors']
    """
    folder = check_folder("path", path)
    folder.mkdir(parents=True, exist_ok=True)
    save_id = uuid.uuid4().hex
    cfg = sae.cfg
    hook_name = cfg.hook_name or ""
    doc = {
        "architecture": cfg.architecture, "d_in": cfg.d_in, "d_sae": cfg.d_sae, "dtype": cfg.dtype,
        "device": str(sae.device), "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none", "hook_name": cfg.hook_name, "hook_head_index": None,
        "model_name": cfg.model_name, "prepend_bos": True, "finetuning_scaling_factor": False,
        "reshape_activations": "hook_z" if hook_name.endswith("hook_z") else "none",
        "activation_fn": "relu",
        _OWN_KEY: {"version": __version__, _SAVE_ID: save_id, **{f: getattr(cfg, f) for f in _OWN_FIELDS}},
        **cfg.metadata,
    }
    if cfg.k is not None:
        doc["k"] = cfg.k
        doc["activation_fn_kwargs"] = {"k": cfg.k}
    tensors = {name: getattr(sae, name).detach() for name in _CORE}
    tensors.update(sae.architecture.export_extra(sae))
    tensors = {name: t.to("cpu").contiguous() for name, t in tensors.items()}
    # Temporary names then rename: a crash leaves each file whole, and the save id tells a new one beside an old one.
    for name, write in ((WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={_SAVE_ID: save_id})),
                        (CFG_FILE, lambda p: p.write_text(json.dumps(doc, indent=2)))):
        tmp = folder / f".{name}.tmp"
        write(tmp)
        os.replace(tmp, folder / name)
    return folder


def _config_from_json(doc: dict, source: Path) -> SAEConfig:
    meta = doc.get("metadata") or {}
    own = doc.get(_OWN_KEY) or {}
    architecture = doc.get("architecture") or "standard"
    k = doc.get("k", (doc.get("activation_fn_kwargs") or {}).get("k"))
    normalize = doc.get("normalize_activations") or "none"
    if normalize not in ("none", False):
        raise ValueError(f"cfg.json: normalize_activations={normalize!r} in {source} is not supported "
                         "(expected 'none'; fold the scaling into the weights first)")
    if "d_in" not in doc or "d_sae" not in doc:
        raise ValueError(f"cfg.json: expected fields 'd_in' and 'd_sae' in {source}, got {sorted(doc)}")
    hook_name = doc.get("hook_name") or doc.get("hook_point") or meta.get("hook_name")
    model_name = doc.get("model_name") or meta.get("model_name")
    return SAEConfig(d_in=int(doc["d_in"]), d_sae=int(doc["d_sae"]), architecture=architecture,
                     k=None if k is None else int(k), hook_name=hook_name, model_name=model_name,
                     dtype=str(doc.get("dtype", "float32")).removeprefix("torch."),
                     apply_b_dec_to_input=bool(doc.get("apply_b_dec_to_input", True)),
                     **{f: own[f] for f in _OWN_FIELDS if own.get(f) is not None})


def load_sae(path: str | os.PathLike, *, device: str | torch.device | None = None):
    """The :class:`AttentionSAE` stored in SAELens-layout folder ``path``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an
    unreadable file, missing, unexpected or wrongly shaped tensors, each
    named, and for files from two different saves (an interrupted save).

    Examples
    --------
    >>> import tempfile
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> folder = tempfile.mkdtemp()
    >>> AttentionSAE(SAEConfig(d_in=4, d_sae=8, architecture="batchtopk", k=2)).save(folder)
    >>> load_sae(folder).cfg.k
    2
    """
    from workbench.sae.model import AttentionSAE

    folder = Path(path)
    for name in (CFG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"path: expected an SAELens folder with {CFG_FILE} and {WEIGHTS_FILE}, "
                                    f"{name} is missing in {folder}")
    try:
        doc = json.loads((folder / CFG_FILE).read_text())
        with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as weights:
            weights_id = (weights.metadata() or {}).get(_SAVE_ID)
            tensors = {name: weights.get_tensor(name) for name in weights.keys()}
    except (ValueError, SafetensorError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        name = WEIGHTS_FILE if isinstance(error, SafetensorError) else CFG_FILE
        raise ValueError(f"{name}: could not read {folder / name} ({error})") from error
    if weights_id is not None and weights_id != (doc.get(_OWN_KEY) or {}).get(_SAVE_ID):
        raise ValueError(f"path: {CFG_FILE} and {WEIGHTS_FILE} in {folder} come from different saves "
                         "(a save into this folder was interrupted); save the SAE again")
    cfg = _config_from_json(doc, folder)
    scaling = tensors.pop("scaling_factor", None)
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        raise ValueError(f"{WEIGHTS_FILE}: a non-trivial scaling_factor in {folder} is not supported")
    arch = get_architecture(cfg.architecture)
    expected = {"W_enc": (cfg.d_in, cfg.d_sae), "W_dec": (cfg.d_sae, cfg.d_in), "b_enc": (cfg.d_sae,),
                "b_dec": (cfg.d_in,), **{name: (cfg.d_sae,) for name in arch.extra_tensors}}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{WEIGHTS_FILE}: tensors do not match architecture {cfg.architecture!r} in {folder}: "
                         f"missing {missing}, unexpected {unexpected}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"{WEIGHTS_FILE}: {name} expected shape {shape} (d_in={cfg.d_in}, "
                             f"d_sae={cfg.d_sae}), got {tuple(tensors[name].shape)}")
    sae = AttentionSAE(cfg, device=device if device is not None else "cpu")
    with torch.no_grad():
        for name in _CORE:
            getattr(sae, name).copy_(tensors[name])
        arch.import_extra(sae, {name: tensors[name].to(getattr(torch, cfg.dtype)) for name in arch.extra_tensors})
    return sae
