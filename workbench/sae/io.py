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

import contextlib
import json
import os
import re
import uuid
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from workbench import __version__
from workbench.sae._validate import check_folder
from workbench.sae.config import SAEConfig
from workbench.sae.registry import architectures, get_architecture

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
#: Written by SAELens' trainer beside a checkpoint: ``{"scaling_factor": s}`` of ``expected_average_only_in``.
SCALER_FILE = "activation_scaler.json"
_CORE = ("W_enc", "W_dec", "b_enc", "b_dec")
#: Our fields SAELens has no name for; kept under this key and ignored by SAELens.
_OWN_KEY = "workbench"
_OWN_FIELDS = ("n_heads", "l1_coefficient", "aux_k", "aux_coefficient", "jumprelu_bandwidth",
               "jumprelu_init_threshold", "matryoshka_widths", "max_latents_per_token")
#: One id per save, in cfg.json (under ``workbench``) and in the weights' header: a folder whose two
#: files come from different saves (a save interrupted between its two renames) is refused on load.
_SAVE_ID = "save_id"


def _fold_for_saelens(sae, tensors: dict[str, torch.Tensor]) -> bool:
    """Fold the decoder norms into the exported encoder where SAELens would read them otherwise; returns the flag.

    ``None`` (our training layout) and BatchTopK saved as JumpReLU leave with unit
    decoder rows, ranking by ``pre`` (SAELens' ``fold_W_dec_norm``, which is
    what it does to a BatchTopK SAE on save); a ``True`` TopK folder keeps its norms and the flag.
    """
    cfg = sae.cfg
    rescale = cfg.rescale_acts_by_decoder_norm
    if rescale is False or (rescale and cfg.architecture == "topk"):
        return bool(rescale)
    n = tensors["W_dec"].norm(dim=1).clamp_min(1e-8)
    tensors["W_dec"] = tensors["W_dec"] / n[:, None]
    tensors["W_enc"] = tensors["W_enc"] * n
    tensors["b_enc"] = tensors["b_enc"] * n
    return False


def save_sae(sae, path: str | os.PathLike) -> Path:
    """Write ``sae`` into folder ``path`` (created if needed); returns the folder.

    The folder opens in SAELens with the same latents: a ``batchtopk`` or
    ``matryoshka`` SAE is written as SAELens writes a trained one, ``"architecture": "jumprelu"``
    with its threshold for every latent (our architecture, ``k`` and training
    fields are kept under the ``workbench`` key, which SAELens ignores), and
    the TopK family's ``rescale_acts_by_decoder_norm`` is written (decoder
    norms folded into the encoder first where the flag is ``None``).
    A ``max_latents_per_token`` cap has no place in that layout: it is kept
    for :func:`load_sae`, SAELens loads the SAE without it, and a warning
    says so.

    Saves from several threads or processes into one folder all succeed: each
    writes its own temporary files, and the two renames happen under the
    folder's ``.save.lock`` (which :func:`load_sae` also takes), so the folder
    always holds one whole save.

    Examples
    --------
    >>> import tempfile
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> sorted(p.name for p in save_sae(AttentionSAE(SAEConfig(d_in=4, d_sae=8, k=2)), tempfile.mkdtemp()).iterdir())
    ['.save.lock', 'cfg.json', 'sae_weights.safetensors']
    """
    folder = check_folder("path", path)
    folder.mkdir(parents=True, exist_ok=True)
    save_id = uuid.uuid4().hex
    cfg = sae.cfg
    if cfg.max_latents_per_token is not None:
        warnings.warn(f"save_sae: max_latents_per_token={cfg.max_latents_per_token} is kept for load_sae, but "
                      "SAELens loads this folder as a jumprelu SAE without the cap: tokens where the cap bound "
                      "get more latents there", UserWarning, stacklevel=2)
    hook_name = cfg.hook_name or ""
    tensors = {name: getattr(sae, name).detach() for name in _CORE}
    tensors.update(sae.architecture.export_extra(sae))
    rescale = _fold_for_saelens(sae, tensors)
    own = {"version": __version__, _SAVE_ID: save_id, "architecture": cfg.architecture, "k": cfg.k,
           "rescale_acts_by_decoder_norm": cfg.rescale_acts_by_decoder_norm,
           **{f: getattr(cfg, f) for f in _OWN_FIELDS}}
    doc = {
        "architecture": getattr(sae.architecture, "saelens_architecture", cfg.architecture),
        "d_in": cfg.d_in, "d_sae": cfg.d_sae, "dtype": cfg.dtype,
        "device": str(sae.device), "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none", "hook_name": hook_name, "hook_head_index": None,
        "model_name": cfg.model_name, "prepend_bos": True, "finetuning_scaling_factor": False,
        "reshape_activations": "hook_z" if hook_name.endswith("hook_z") else "none",
        "activation_fn": "relu",
        _OWN_KEY: own,
        **cfg.metadata,
    }
    if cfg.architecture == "topk":
        doc.update(k=cfg.k, activation_fn_kwargs={"k": cfg.k}, rescale_acts_by_decoder_norm=rescale)
    tensors = {name: t.to("cpu").contiguous() for name, t in tensors.items()}
    # Temporary names unique to this save, then both renames under the folder's lock: a crash leaves each
    # file whole (the save id tells a new one beside an old one), and concurrent saves never interleave.
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staged = []
    try:
        for name, write in ((WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={_SAVE_ID: save_id})),
                            (CFG_FILE, lambda p: p.write_text(json.dumps(doc, indent=2)))):
            tmp = folder / f".{name}.{tag}.tmp"
            staged.append((tmp, folder / name))
            write(tmp)
        with _folder_lock(folder):
            for tmp, final in staged:
                os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return folder


@contextlib.contextmanager
def _folder_lock(folder: Path, create: bool = True):
    """An exclusive lock on ``folder/.save.lock`` (POSIX ``flock``); readers pass ``create=False``.

    No lock where ``fcntl`` is missing (Windows) or the folder is read-only (a
    shared release cache nobody saves into): unique temporary names still keep
    each file whole, and a mixed pair is refused on load by its save id. A
    folder no save of ours wrote has no lock file, and loading it makes none.
    """
    try:
        import fcntl

        handle = open(folder / ".save.lock", "a" if create else "r")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _saelens_version_major(doc: dict) -> int | None:
    version = doc.get("sae_lens_version") or (doc.get("metadata") or {}).get("sae_lens_version")
    match = re.match(r"\s*(\d+)", str(version)) if version else None
    return int(match.group(1)) if match else None


def _pre_6_fields(doc: dict) -> dict:
    """A pre-6.0 SAELens config in 6.0 names and values, mapped as SAELens maps it on load."""
    new = {_PRE_6_RENAMES.get(key, key): value for key, value in doc.items()}
    new.setdefault("apply_b_dec_to_input", True)
    new.setdefault("finetuning_scaling_factor", False)
    new.setdefault("architecture", "standard")
    k = (new.get("activation_fn_kwargs") or {}).get("k")
    if new.get("activation_fn") == "topk" and k is not None:
        new["architecture"], new["k"] = "topk", k
    normalize = new.get("normalize_activations")
    if isinstance(normalize, bool):
        new["normalize_activations"] = "expected_average_only_in" if normalize else "none"
    elif normalize is None:
        new["normalize_activations"] = "none"
    return new


#: Pre-6.0 field names and their 6.0 names (SAELens' ``handle_pre_6_0_config``).
_PRE_6_RENAMES = {"hook_point": "hook_name", "hook_point_head_index": "hook_head_index",
                  "activation_fn_str": "activation_fn"}


def _norm_scaling_factor(doc: dict, folder: Path, given: float | None) -> float:
    """The factor of ``expected_average_only_in``: the argument, ``norm_scaling_factor`` in cfg.json, or the
    ``activation_scaler.json`` SAELens' trainer writes, in that order."""
    if given is not None:
        value, where = given, "norm_scaling_factor"
    elif doc.get("norm_scaling_factor") is not None:
        value, where = doc["norm_scaling_factor"], f"{CFG_FILE} field norm_scaling_factor in {folder}"
    elif (folder / SCALER_FILE).is_file():
        value, where = json.loads((folder / SCALER_FILE).read_text()).get("scaling_factor"), str(folder / SCALER_FILE)
    else:
        raise ValueError(f"normalize_activations: 'expected_average_only_in' in {folder} needs its scaling factor; "
                         f"none found (looked for the norm_scaling_factor argument, a norm_scaling_factor field in "
                         f"{CFG_FILE} and {SCALER_FILE}); pass norm_scaling_factor=")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"norm_scaling_factor: expected a finite number > 0 from {where}, got {value!r}")
    return float(value)


def _config_from_json(doc: dict, source: Path, *, norm_scaling_factor: float | None = None
                      ) -> tuple[SAEConfig, dict]:
    """The config of a SAELens ``cfg.json`` and what to fold into the weights (``scale_input``, ``finetuning``)."""
    major = _saelens_version_major(doc)
    if major is None or major < 6:
        doc = _pre_6_fields(doc)
    meta = doc.get("metadata") or {}
    own = doc.get(_OWN_KEY) or {}
    if "d_in" not in doc or "d_sae" not in doc:
        raise ValueError(f"cfg.json: expected fields 'd_in' and 'd_sae' in {source}, got {sorted(doc)}")
    architecture = own.get("architecture") or doc.get("architecture") or "standard"
    if architecture not in architectures():
        raise ValueError(f"cfg.json: architecture {architecture!r} in {source} is not supported "
                         f"(expected one of {architectures()})")
    k = own.get("k", doc.get("k", (doc.get("activation_fn_kwargs") or {}).get("k")))
    extra = {}
    if getattr(get_architecture(architecture), "ranks_by_decoder_norm", False):
        if "rescale_acts_by_decoder_norm" in own:
            extra["rescale_acts_by_decoder_norm"] = own["rescale_acts_by_decoder_norm"]
        elif own and "rescale_acts_by_decoder_norm" not in doc:  # saved by us before the flag: native ranking
            extra["rescale_acts_by_decoder_norm"] = None
        else:
            extra["rescale_acts_by_decoder_norm"] = bool(doc.get("rescale_acts_by_decoder_norm", False))
    normalize = doc.get("normalize_activations") or "none"
    folds = {"finetuning": bool(doc.get("finetuning_scaling_factor", False))}
    if normalize == "expected_average_only_in":
        folds["scale_input"] = _norm_scaling_factor(doc, source, norm_scaling_factor)
    elif normalize != "none":
        raise ValueError(f"cfg.json: normalize_activations={normalize!r} in {source} is not supported "
                         "(expected 'none' or 'expected_average_only_in')")
    hook_name = doc.get("hook_name") or meta.get("hook_name")
    model_name = doc.get("model_name") or meta.get("model_name")
    cfg = SAEConfig(d_in=int(doc["d_in"]), d_sae=int(doc["d_sae"]), architecture=architecture,
                    k=None if k is None else int(k), hook_name=hook_name, model_name=model_name,
                    dtype=str(doc.get("dtype", "float32")).removeprefix("torch."),
                    apply_b_dec_to_input=bool(doc.get("apply_b_dec_to_input", True)), **extra,
                    **{f: own[f] for f in _OWN_FIELDS if own.get(f) is not None})
    return cfg, folds


def _apply_folds(tensors: dict[str, torch.Tensor], folds: dict, source: Path) -> None:
    """Fold SAELens' input scaling and pre-6.0 finetuning scaling factor into the weights, as SAELens does."""
    scaling = tensors.pop("scaling_factor", None)
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        if not folds["finetuning"]:
            raise ValueError(f"{WEIGHTS_FILE}: a scaling_factor other than ones in {source}, but "
                             "finetuning_scaling_factor is false in cfg.json (SAELens refuses this folder too)")
        # pre-6.0 decode: (f * scaling_factor) W_dec + b_dec
        tensors["W_dec"] = tensors["W_dec"] * scaling[:, None]
    s = folds.get("scale_input")
    if s is not None:  # the SAE saw s * x: SAELens' fold_activation_norm_scaling_factor
        tensors["W_enc"] = tensors["W_enc"] * s
        tensors["W_dec"] = tensors["W_dec"] / s
        tensors["b_dec"] = tensors["b_dec"] / s


def sae_from_config_and_tensors(doc: dict, tensors: dict[str, torch.Tensor], source: Path, *,
                                device=None, norm_scaling_factor: float | None = None):
    """An :class:`AttentionSAE` from a SAELens config dict and its tensors (``source`` names them in errors)."""
    from workbench.sae.model import AttentionSAE

    cfg, folds = _config_from_json(doc, source, norm_scaling_factor=norm_scaling_factor)
    tensors = dict(tensors)
    _apply_folds(tensors, folds, source)
    arch = get_architecture(cfg.architecture)
    expected = {"W_enc": (cfg.d_in, cfg.d_sae), "W_dec": (cfg.d_sae, cfg.d_in), "b_enc": (cfg.d_sae,),
                "b_dec": (cfg.d_in,), **{name: (cfg.d_sae,) for name in arch.extra_tensors}}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{WEIGHTS_FILE}: tensors do not match architecture {cfg.architecture!r} in {source}: "
                         f"missing {missing}, unexpected {unexpected}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"{WEIGHTS_FILE}: {name} expected shape {shape} (d_in={cfg.d_in}, "
                             f"d_sae={cfg.d_sae}), got {tuple(tensors[name].shape)}")
    sae = AttentionSAE(cfg, device=device if device is not None else "cpu")
    dtype = getattr(torch, cfg.dtype)
    with torch.no_grad():
        for name in _CORE:
            getattr(sae, name).copy_(tensors[name])
        arch.import_extra(sae, {name: tensors[name].to(dtype).to(sae.device) for name in arch.extra_tensors})
    return sae


def load_sae(path: str | os.PathLike, *, sae_id: str | None = None, device: str | torch.device | None = None,
             norm_scaling_factor: float | None = None, cache_dir: str | os.PathLike | None = None):
    """The :class:`AttentionSAE` stored in SAELens-layout folder ``path``, or in release ``path``'s ``sae_id``.

    Loads with SAELens' semantics: pre-6.0 configs are mapped as SAELens maps
    them (``hook_point``, ``activation_fn_str: "topk"`` with
    ``activation_fn_kwargs.k``, boolean ``normalize_activations``, the
    ``scaling_factor`` of ``finetuning_scaling_factor``), the TopK family's
    ``rescale_acts_by_decoder_norm`` is honoured, and
    ``normalize_activations="expected_average_only_in"`` folds its factor into
    the weights (from ``norm_scaling_factor``, cfg.json's
    ``norm_scaling_factor`` or ``activation_scaler.json``). With ``sae_id``,
    ``path`` names a released set (see :func:`workbench.sae.releases.release_names`),
    read offline from the Hugging Face cache ``cache_dir`` (default ``HF_HUB_CACHE``).

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
    if sae_id is not None:
        from workbench.sae.releases import load_release

        return load_release(path, sae_id, cache_dir=cache_dir, device=device, norm_scaling_factor=norm_scaling_factor)
    folder = Path(path)
    for name in (CFG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"path: expected an SAELens folder with {CFG_FILE} and {WEIGHTS_FILE}, "
                                    f"{name} is missing in {folder}")
    try:
        with _folder_lock(folder, create=False):  # a save's two renames never land between these two reads
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
    return sae_from_config_and_tensors(doc, tensors, folder, device=device, norm_scaling_factor=norm_scaling_factor)
