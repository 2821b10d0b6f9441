"""The model zoo: bundled tiny models, local Hugging Face folders, hub names.

Every model comes back as a TransformerLens ``TransformerBridge``, so hook
names (``blocks.0.attn.hook_z``, ``blocks.1.hook_resid_post``...) are the same
whatever the source.

- Bundled models live in ``data/models/<name>/`` as ``config.json`` (the
  TransformerLens-native architecture fields), ``model.safetensors`` and
  ``tokenizer.json``; they are booted with ``TransformerBridge.boot_native``.
- A local folder written by ``save_pretrained`` and hub names go through
  ``TransformerBridge.boot_transformers``. Without the network an uncached hub
  name fails within seconds with the bundled alternatives named.

Examples
--------
>>> "tiny-attn-2l" in list_models()
True
>>> model = load_model("tiny-attn-2l")
>>> model.cfg.n_layers, model.cfg.attn_only
(2, True)
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
from safetensors.torch import load_file

from workbench.device import resolve_device
from workbench.models.catalog import CONFIG_FILE, MODELS_DIR, WEIGHTS_FILE, is_bundled_dir, list_models
from workbench.models.tokenizer import load_tokenizer

_HUB_HOST = ("huggingface.co", 443)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return resolve_device(None)


def read_model_config(model_dir: str | Path) -> dict:
    """The ``config.json`` of a bundled-format model folder."""
    return json.loads((Path(model_dir) / CONFIG_FILE).read_text())


def bridge_config(fields: dict):
    """A ``TransformerBridgeConfig`` for the TransformerLens-native architecture."""
    from transformer_lens.config import TransformerBridgeConfig

    return TransformerBridgeConfig(
        architecture="TransformerLensNative", positional_embedding_type="standard", **fields
    )


def boot_native(fields: dict, *, tokenizer=None, device=None, name: str = "native", seed: int | None = 0):
    """A randomly initialised TransformerLens-native bridge with ``fields``."""
    import transformer_lens.model_bridge.sources.native  # noqa: F401  (registers boot_native)
    from transformer_lens.model_bridge import TransformerBridge

    cfg = bridge_config({**fields, "seed": seed})
    return TransformerBridge.boot_native(cfg, tokenizer=tokenizer, device=resolve_device(device), model_name=name)


def _load_bundled(model_dir: Path, device):
    meta = read_model_config(model_dir)
    bridge = boot_native(meta["architecture"], tokenizer=load_tokenizer(model_dir), device=device,
                         name=meta.get("name", model_dir.name))
    state = load_file(str(model_dir / WEIGHTS_FILE), device=str(resolve_device(device)))
    result = bridge.load_state_dict(state, strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict=True raises first; kept for clarity
        raise ValueError(f"{model_dir}: weights do not match the config: {result}")
    bridge.eval()
    bridge.workbench_id = meta.get("name", model_dir.name)
    bridge.workbench_source = str(model_dir)
    return bridge


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection(_HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _hub_cached(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, CONFIG_FILE)
    return isinstance(found, str)


def _boot_transformers(name_or_path: str, device, *, offline: bool):
    from transformer_lens.model_bridge import TransformerBridge

    previous = os.environ.get("HF_HUB_OFFLINE")
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        bridge = TransformerBridge.boot_transformers(name_or_path, device=str(resolve_device(device)))
    finally:
        if offline:
            if previous is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = previous
    bridge.eval()
    bridge.workbench_id = str(name_or_path)
    bridge.workbench_source = str(name_or_path)
    return bridge


def load_model(name_or_path: str | os.PathLike, device=None):
    """Load a model as a ``TransformerBridge``.

    Parameters
    ----------
    name_or_path : str or PathLike
        A bundled model name (see :func:`list_models`), a folder holding a
        bundled-format model or a Hugging Face ``save_pretrained`` folder, or
        a Hugging Face hub name (needs the network or a cached copy).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.

    Examples
    --------
    >>> model = load_model("tiny-gelu-2l", device="cpu")
    >>> model.cfg.d_model
    128
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
        raise ValueError(f"name_or_path: expected a model name or folder, got {name_or_path!r}")
    resolve_device(device)
    name = str(name_or_path)
    if name in list_models():
        return _load_bundled(MODELS_DIR / name, device)
    path = Path(name).expanduser()
    if path.is_dir():
        if is_bundled_dir(path):
            return _load_bundled(path, device)
        if (path / CONFIG_FILE).is_file():
            return _boot_transformers(str(path), device, offline=True)
        raise ValueError(f"name_or_path: folder {name!r} holds no {CONFIG_FILE}: not a model folder")
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ValueError(f"name_or_path: {name!r} is neither a bundled model {list_models()} nor an existing folder")
    if _hub_cached(name):
        return _boot_transformers(name, device, offline=True)
    if not _hub_reachable():
        raise ValueError(
            f"name_or_path: {name!r} is not cached locally and the model hub cannot be reached (offline). "
            f"Bundled models that need no network: {', '.join(list_models())}; "
            "or pass a local folder written by save_pretrained."
        )
    return _boot_transformers(name, device, offline=False)
