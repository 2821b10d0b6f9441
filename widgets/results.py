"""Results of long dashboard work, kept on disk so reopening a page is instant.

One zarr store per (page, parameters): the key is the sha256 of the canonical
JSON of the parameters and the workbench version, so a changed setting or a
new release never returns a stale result. Stores are written under a
temporary name of their own (pid and a random part) and renamed, so a
half-written result is never read back; a key's result never changes once
written, so when two sessions save the same key the first complete store
stays and the other is dropped: there is no moment without a result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import xarray as xr

import workbench

SUBDIR = "dashboard"


def result_key(kind: str, params: dict) -> str:
    """Content key of a result: ``kind`` plus a hash of ``params`` and the version.

    Examples
    --------
    >>> result_key("collapse", {"epochs": 10}) == result_key("collapse", {"epochs": 10})
    True
    >>> result_key("collapse", {"epochs": 10}).startswith("collapse-")
    True
    """
    canonical = json.dumps({"params": params, "version": workbench.__version__}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


class ResultStore:
    """Folder of cached dashboard results, ``<root>/dashboard/<key>.zarr``.

    Parameters
    ----------
    root : path
        The cache folder (``workbench serve --cache``).

    Examples
    --------
    >>> import tempfile, xarray as xr
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> key = result_key("demo", {"n": 1})
    >>> store.load(key) is None
    True
    >>> _ = store.save(key, xr.Dataset({"x": ("i", [1.0, 2.0])}))
    >>> store.load(key).x.values.tolist()
    [1.0, 2.0]
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root) / SUBDIR
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """Where the result with ``key`` lives (whether or not it exists)."""
        return self.root / f"{key}.zarr"

    def load(self, key: str) -> xr.Dataset | None:
        """The stored result, read into memory, or None when there is none."""
        path = self.path(key)
        if not path.is_dir():
            return None
        with xr.open_zarr(path, consolidated=False) as ds:
            return ds.load()

    def save(self, key: str, ds: xr.Dataset) -> Path:
        """Write ``ds`` atomically (temporary name, then rename) and return its path.

        Safe under concurrent saves of one key, from threads or processes: every
        save succeeds, and readers see either no result or a complete one.
        """
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex}")
        try:
            ds.to_zarr(tmp, mode="w-", consolidated=False, zarr_format=2)  # v3 warns on string coords
            try:
                os.rename(tmp, path)
            except OSError:
                if not path.is_dir():
                    raise
                # the same key was saved meanwhile: an equal result, complete, which readers may hold open
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    def discard(self, key: str) -> None:
        """Remove the result ``key`` if stored (renamed away first, so no reader sees half of it)."""
        path = self.path(key)
        doomed = path.with_name(f".{path.name}.discard-{os.getpid()}-{uuid.uuid4().hex}")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def keys(self, kind: str | None = None) -> list[str]:
        """Keys of the stored results, optionally only those of one page ``kind``."""
        return sorted(p.name[:-5] for p in self.root.glob("*.zarr")
                      if kind is None or p.name.startswith(f"{kind}-"))
