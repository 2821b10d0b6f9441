"""Crash-safe zarr stores: written under a temporary name, renamed when complete.

A store is complete only when its manifest (every file with its size) has
been written and the folder renamed to its final name; a killed writer
leaves only a ``*.tmp-*`` folder that is never read and is swept once its
writer is gone. Chunks carry a CRC32C checksum (a zarr v3 codec), so a
damaged chunk fails on read; the manifest names its store and carries a
checksum of itself, so :func:`verify_store` catches missing, truncated or
extra files, an edited manifest, and a store copied under another key,
before a store is used.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> final = pathlib.Path(tempfile.mkdtemp()) / "x.zarr"
>>> w = StoreWriter(final, "act", ("seq", "d"), (4, 3), chunk=2, coords={"seq": np.arange(4)})
>>> w.write(0, np.ones((2, 3), "float32")); w.write(2, np.zeros((2, 3), "float32"))
>>> w.finalize(attrs={"note": "demo"}).name
'x.zarr'
>>> float(open_store(final)["act"].sum())
6.0
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec

MANIFEST = "workbench-manifest.json"
WRITER = "workbench-writer.json"  # in a temporary store only: who writes it (pid, host)
TMP_MARK = ".tmp-"
STALE_AFTER = 3600.0  # seconds without a chunk after which a writer on another host counts as gone


class StoreDamagedError(RuntimeError):
    """A cached store's files do not match its manifest (or a chunk fails its checksum)."""


def _compressors():
    # No compression: float32 activations barely compress (zstd level 1 saved
    # 7% on GPT-2-shaped activations) and it cost most of the write and read
    # time. The CRC32C checksum stays, so damage is still caught on read.
    return [Crc32cCodec()]


def _file_sizes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in sorted(root.rglob("*")) if p.is_file() and p.name not in (MANIFEST, WRITER)
    }


def _manifest_checksum(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class StoreWriter:
    """Write one variable ``[seq, ...]`` chunk by chunk into a temporary zarr store.

    Parameters
    ----------
    final : Path
        Where the complete store will live (``<key>.zarr``).
    name, dims, shape : str, tuple, tuple
        The variable; the first dim is chunked by ``chunk``.
    coords : dict
        Index coordinates (numpy), written with the metadata.
    """

    def __init__(self, final: Path, name: str, dims: tuple[str, ...], shape: tuple[int, ...], *, chunk: int,
                 coords: dict | None = None, dtype: str = "float32"):
        self.final = Path(final)
        self.tmp = self.final.with_name(f"{self.final.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.name = name
        chunks = (min(chunk, shape[0]), *shape[1:])
        template = xr.Dataset(
            {name: (dims, da.zeros(shape, chunks=chunks, dtype=dtype))},
            coords={k: v for k, v in (coords or {}).items() if k in dims},
        )
        template.to_zarr(self.tmp, mode="w-", compute=False, consolidated=False, zarr_format=3,
                         encoding={name: {"chunks": chunks, "compressors": _compressors()}})
        (self.tmp / WRITER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        self._array = zarr.open_array(self.tmp / name, mode="r+")

    def write(self, start: int, values: np.ndarray) -> None:
        """Write ``values`` at ``[start:start + len(values)]`` along the first dim."""
        self._array[start:start + values.shape[0]] = values
        _heartbeat(self.tmp)

    @property
    def array_path(self) -> Path:
        """The variable's zarr array, for writers in other processes (:func:`write_region`)."""
        return self.tmp / self.name

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finalize(self, attrs: dict | None = None) -> Path:
        """Record attrs and the manifest, then rename into place (atomic)."""
        group = zarr.open_group(self.tmp, mode="r+")
        group.attrs.update(attrs or {})
        (self.tmp / WRITER).unlink(missing_ok=True)
        manifest = {"files": _file_sizes(self.tmp), "created": time.time(), "name": self.final.name}
        manifest["checksum"] = _manifest_checksum(manifest)
        (self.tmp / MANIFEST).write_text(json.dumps(manifest))
        try:
            os.rename(self.tmp, self.final)
        except OSError:
            # Another writer finished the same key first; its store is equivalent.
            if not (self.final / MANIFEST).is_file():
                raise
            self.abort()
        return self.final


def is_complete(path: Path) -> bool:
    return TMP_MARK not in path.name and (path / MANIFEST).is_file()


def verify_store(path: Path) -> None:
    """Raise :class:`StoreDamagedError` if ``path`` differs from its manifest."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise StoreDamagedError(f"cached store {path} has no manifest: it is incomplete or damaged")
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise StoreDamagedError(f"cached store {path}: manifest is unreadable ({err})") from err
    if manifest.get("checksum") != _manifest_checksum(manifest):
        raise StoreDamagedError(f"cached store {path}: its manifest fails its checksum (edited, or "
                                "written by an earlier workbench that kept none); clear it to recompute")
    if manifest.get("name") != path.name:
        raise StoreDamagedError(f"cached store {path} was written as {manifest.get('name')!r}: "
                                "a store copied or renamed under another key is never served")
    actual = _file_sizes(path)
    missing = sorted(set(expected) - set(actual))
    resized = sorted(f for f in expected if f in actual and actual[f] != expected[f])
    extra = sorted(set(actual) - set(expected))
    if missing or resized or extra:
        detail = "; ".join(f"{label}: {files[:5]}" for label, files in
                           (("missing", missing), ("size changed", resized), ("unexpected", extra)) if files)
        raise StoreDamagedError(f"cached store {path} is damaged ({detail})")


def open_store(path: Path) -> xr.Dataset:
    """Verify and open a complete store lazily (dask arrays chunked as stored)."""
    verify_store(path)
    with _quiet_about_manifest():
        return xr.open_zarr(path, consolidated=False, chunks={}, zarr_format=3)


def read_attrs(path: Path) -> dict:
    with _quiet_about_manifest():
        return dict(zarr.open_group(path, mode="r").attrs)


@contextlib.contextmanager
def _quiet_about_manifest():
    # zarr lists every entry of a group folder and warns about our manifest file.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{MANIFEST}.*")
        yield


def _heartbeat(tmp: Path) -> None:
    """Mark a temporary store as written to now: chunks land in subfolders, which leave its own mtime alone."""
    os.utime(tmp)


def sweep_stale(root: Path, *, older_than: float = STALE_AFTER) -> int:
    """Remove temporary folders of writers that are gone; returns how many.

    A writer on this host is gone when its process is (its pid and host are
    recorded in the folder). A writer on another host, whose pid means
    nothing here, is gone when no chunk was written for ``older_than``
    seconds: every chunk refreshes the folder's mtime, its heartbeat. A
    live writer, however long its run, is never swept, so ``cache clear``
    cannot kill a job running in another process.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> w = StoreWriter(root / "x.zarr", "act", ("seq",), (4,), chunk=2)
    >>> sweep_stale(root), w.tmp.exists()   # its writer (this process) is alive
    (0, True)
    """
    if not older_than > 0:
        raise ValueError(f"older_than: expected a positive number of seconds, got {older_than!r}")
    removed = 0
    for tmp in root.glob(f"*{TMP_MARK}*"):
        if _writer_gone(tmp, older_than):
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
    return removed


def _writer_gone(tmp: Path, older_than: float) -> bool:
    try:
        writer = json.loads((tmp / WRITER).read_text())
        pid, host = int(writer["pid"]), str(writer["host"])
    except (OSError, ValueError, KeyError, TypeError):  # killed before it wrote its record, or a foreign folder
        pid_text = tmp.name.split(TMP_MARK, 1)[1].split("-", 1)[0]
        pid, host = (int(pid_text) if pid_text.isdigit() else -1), socket.gethostname()
    try:
        idle = time.time() - tmp.stat().st_mtime
    except FileNotFoundError:  # finished (renamed) or removed meanwhile
        return False
    if host == socket.gethostname():
        return pid <= 0 or not _pid_alive(pid)
    return idle > older_than


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_region(array_path: Path, start: int, values: np.ndarray) -> None:
    """Write ``values`` into the zarr array at ``array_path`` from ``start`` along the first dim.

    Used by cluster workers; chunks are aligned with the writes, so workers
    never touch the same chunk.
    """
    zarr.open_array(array_path, mode="r+")[start:start + values.shape[0]] = values
    _heartbeat(array_path.parent)
