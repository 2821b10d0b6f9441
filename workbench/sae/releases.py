"""Released attention SAEs by name, read offline from a local Hugging Face hub cache.

``load_sae("gpt2-small-hook-z-kk", sae_id="blocks.5.hook_z")`` finds the files
of that release in the cache (``models--org--name/snapshots/<rev>/...``; the
folder ``HF_HUB_CACHE`` names, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``) and converts them as SAELens does. Nothing is
downloaded: fetch the files first (``huggingface-cli download REPO FILE``).

The table below is ours and covers the ``hook_z`` releases this package
works on; the release names, repositories and file names are those SAELens'
``pretrained_saes.yaml`` uses.

Examples
--------
>>> sorted(release_names())
['gemma-scope-2b-pt-att', 'gpt2-small-hook-z-kk']
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

_KK = "gpt2-small_L{}_Hcat_z_lr1.20e-03_l1{}_ds{}_bs4096_dc{}_rsanthropic_rie25000_nr4_v{}.pt"


@dataclass(frozen=True)
class Release:
    """Where a released set lives and how its files read."""

    repo_id: str
    model_name: str
    format: str  # "kissane_pt": <name>.pt + <name>_cfg.json; "gemma_scope_npz": <sae_id>/params.npz
    files: dict = field(default_factory=dict)  # sae_id -> file, where ids are listed
    id_pattern: str = ""  # where ids are the folder names themselves


RELEASES = {
    "gpt2-small-hook-z-kk": Release(
        repo_id="ckkissane/attn-saes-gpt2-small-all-layers", model_name="gpt2-small", format="kissane_pt",
        files={f"blocks.{layer}.hook_z": _KK.format(layer, l1, ds, dc, v) for layer, l1, ds, dc, v in (
            (0, "1.80e+00", 24576, "1.00e-06", 9), (1, "8.00e-01", 24576, "1.00e-06", 5),
            (2, "1.00e+00", 24576, "1.00e-06", 4), (3, "9.00e-01", 24576, "1.00e-06", 9),
            (4, "1.10e+00", 24576, "1.00e-06", 7), (5, "1.00e+00", 49152, "1.00e-06", 9),
            (6, "1.10e+00", 24576, "1.00e-06", 9), (7, "1.10e+00", 49152, "1.00e-06", 9),
            (8, "1.30e+00", 24576, "1.00e-05", 6), (9, "1.20e+00", 24576, "1.00e-06", 9),
            (10, "1.30e+00", 24576, "1.00e-05", 9), (11, "3.00e+00", 24576, "3.16e-06", 9))}),
    "gemma-scope-2b-pt-att": Release(
        repo_id="google/gemma-scope-2b-pt-att", model_name="gemma-2-2b", format="gemma_scope_npz",
        id_pattern=r"layer_(\d+)/width_(16k|65k)/average_l0_(\d+)"),
}


def release_names() -> list[str]:
    """Names of the released sets :func:`load_release` knows.

    Examples
    --------
    >>> "gpt2-small-hook-z-kk" in release_names()
    True
    """
    return sorted(RELEASES)


def hub_cache(cache_dir: str | os.PathLike | None = None) -> Path:
    """The hub cache folder: ``cache_dir``, else ``HF_HUB_CACHE``, ``$HF_HOME/hub``, ``~/.cache/huggingface/hub``.

    Examples
    --------
    >>> str(hub_cache("/tmp/hf"))
    '/tmp/hf'
    """
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home) / "hub"


def _snapshot(cache: Path, repo_id: str, argument: str) -> Path:
    """The snapshot folder of ``repo_id`` in ``cache``: the one ``refs/main`` names, else the newest."""
    if not cache.is_dir() or not any(p.name.startswith(("models--", "datasets--")) or p.name == "version.txt"
                                     for p in cache.iterdir()):
        raise ValueError(f"{argument}: expected a Hugging Face hub cache (folders models--org--name/snapshots/<rev>), "
                         f"got {cache}")
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return snapshots / ref.read_text().strip()
    found = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    if not found:
        raise FileNotFoundError(f"{argument}: {repo_id} is not in the Hugging Face cache: looked in {repo} "
                                f"(download it first, e.g. huggingface-cli download {repo_id})")
    return found[-1]


def _need(snapshot: Path, relative: str, repo_id: str) -> Path:
    path = snapshot / relative
    if not path.is_file():
        raise FileNotFoundError(f"sae_id: {relative} of {repo_id} is not in the cache: looked in {snapshot} "
                                f"(download it first: huggingface-cli download {repo_id} {relative})")
    return path


def _kissane(snapshot: Path, release: Release, file: str) -> tuple[dict, dict]:
    weights = _need(snapshot, file, release.repo_id)
    old = json.loads(_need(snapshot, file.split(".pt")[0] + "_cfg.json", release.repo_id).read_text())
    doc = {"architecture": "standard", "d_in": old["act_size"], "d_sae": old["dict_size"], "dtype": "float32",
           "model_name": release.model_name, "hook_name": old["act_name"], "apply_b_dec_to_input": True,
           "normalize_activations": "none", "metadata": {"sae_lens_version": "6"}}
    state = torch.load(weights, map_location="cpu", weights_only=True)  # tensors only: no code runs
    return doc, {name: state[name] for name in ("W_enc", "W_dec", "b_enc", "b_dec") if name in state}


def _gemma_scope(snapshot: Path, release: Release, sae_id: str) -> tuple[dict, dict]:
    layer = re.fullmatch(release.id_pattern, sae_id).group(1)
    with np.load(_need(snapshot, f"{sae_id}/params.npz", release.repo_id), allow_pickle=False) as data:
        tensors = {("W_" + k[2:] if k.startswith("w_") else k): torch.from_numpy(data[k]).float() for k in data}
    if "W_enc" not in tensors or tensors["W_enc"].ndim != 2:
        raise ValueError(f"params.npz: expected a 2-D W_enc in {snapshot / sae_id}, got keys {sorted(tensors)}")
    d_in, d_sae = tensors["W_enc"].shape  # 2048 and 16384 / 65536 in the release
    doc = {"architecture": "jumprelu", "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
           "model_name": release.model_name, "hook_name": f"blocks.{layer}.attn.hook_z",
           "apply_b_dec_to_input": False, "normalize_activations": "none", "metadata": {"sae_lens_version": "6"}}
    return doc, tensors


def load_release(release: str, sae_id: str, *, cache_dir: str | os.PathLike | None = None, device=None,
                 norm_scaling_factor: float | None = None):
    """The SAE ``sae_id`` of released set ``release``, read from the Hugging Face cache without a download.

    Raises ``ValueError`` naming ``release`` or ``sae_id`` when either is
    unknown, or ``cache_dir`` when that folder is not a hub cache, and
    ``FileNotFoundError`` naming the folder it looked in when files are absent.

    Examples
    --------
    >>> load_release("gpt2-small-hook-z-kk", "blocks.99.hook_z")
    Traceback (most recent call last):
    ...
    ValueError: sae_id: expected one of the ids of release 'gpt2-small-hook-z-kk' (...), got 'blocks.99.hook_z'
    """
    from workbench.sae.io import sae_from_config_and_tensors

    if release not in RELEASES:
        raise ValueError(f"release: expected one of {release_names()} (or a folder path without sae_id), "
                         f"got {release!r}")
    spec = RELEASES[release]
    if spec.files and sae_id not in spec.files:
        raise ValueError(f"sae_id: expected one of the ids of release {release!r} ({', '.join(spec.files)}), "
                         f"got {sae_id!r}")
    if spec.id_pattern and not (isinstance(sae_id, str) and re.fullmatch(spec.id_pattern, sae_id)):
        raise ValueError(f"sae_id: expected an id of release {release!r} like 'layer_5/width_16k/average_l0_57' "
                         f"(pattern {spec.id_pattern}), got {sae_id!r}")
    snapshot = _snapshot(hub_cache(cache_dir), spec.repo_id, "cache_dir" if cache_dir is not None else "HF_HUB_CACHE")
    if spec.format == "kissane_pt":
        doc, tensors = _kissane(snapshot, spec, spec.files[sae_id])
    else:
        doc, tensors = _gemma_scope(snapshot, spec, sae_id)
    return sae_from_config_and_tensors(doc, tensors, snapshot, device=device, norm_scaling_factor=norm_scaling_factor)
