"""``HookCache``: run a model once, keep its hook activations on disk as zarr.

Each hook's activations over a token set live in their own store
``<root>/<key>.zarr`` (see :mod:`workbench.hooks.keys`); :meth:`HookCache.activations`
opens the stores that exist, computes only the missing hooks in one pass, and
returns all of them as one lazily loaded ``xr.Dataset``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr

from workbench import __version__
from workbench.hooks.dims import hook_dims
from workbench.hooks.roots import default_root
from workbench.hooks.keys import cache_key, model_description, tokens_sha256, weights_sha256
from workbench.hooks.store import (
    StoreDamagedError,
    StoreWriter,
    is_complete,
    open_store,
    read_attrs,
    sweep_stale,
    verify_store,
    write_region,
)
from workbench.hooks.validate import check_batch_size, check_dtype, check_hooks, check_tokens

_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def default_hooks(model) -> list[str]:
    """The hooks the demo and the dashboard cache: every layer's ``attn.hook_z`` and the last ``hook_resid_post``.

    Examples
    --------
    >>> from workbench.models import load_model
    >>> default_hooks(load_model("tiny-attn-2l"))
    ['blocks.0.attn.hook_z', 'blocks.1.attn.hook_z', 'blocks.1.hook_resid_post']
    """
    n_layers = model.cfg.n_layers
    return [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]


class _StopForward(Exception):
    """Raised by a hook once every requested activation is captured."""


def _stop_hook_name(model, hooks: list[str]) -> str | None:
    """Hook point just past the last requested one, where the forward pass can stop.

    Stopping there skips the blocks, final norm and unembedding that no
    requested hook needs (for GPT-2 small the unembedding alone is ~30% of
    the forward FLOPs). ``None``: the pass must run to the end.
    """
    layers = []
    for hook in hooks:
        match = _BLOCK.match(hook)
        if match:
            layers.append(int(match.group(1)))
        elif hook.startswith(("hook_embed", "hook_pos_embed", "embed.", "pos_embed.")):
            layers.append(-1)
        else:
            return None
    stop = max(layers) + 1
    name = f"blocks.{stop}.hook_in" if stop < model.cfg.n_layers else "ln_final.hook_in"
    return name if name in model.hook_dict else None


@torch.no_grad()
def compute_hooks(model, tokens: torch.Tensor, hooks: list[str], dtype: str) -> dict[str, np.ndarray]:
    """One forward pass; the named hooks' activations as numpy arrays of ``dtype``.

    Examples
    --------
    >>> from workbench.models import load_model, tokenize
    >>> model = load_model("tiny-attn-2l")
    >>> acts = compute_hooks(model, tokenize(model, "x = 1", 6), ["blocks.0.hook_resid_post"], "float32")
    >>> acts["blocks.0.hook_resid_post"].shape
    (1, 6, 128)
    """
    out: dict[str, np.ndarray] = {}

    def capture(tensor, hook):
        array = tensor.detach().to(torch.float32).cpu().numpy().astype(dtype, copy=True)
        for name in names[id(hook)]:  # several requested aliases may share one hook point
            out[name] = array

    def stop(tensor, hook):
        raise _StopForward

    hook_points = model.hook_dict
    names: dict[int, list[str]] = {}
    for h in hooks:
        names.setdefault(id(hook_points[h]), []).append(h)
    fwd_hooks = [(names[key][0], capture) for key in names]
    stop_at = _stop_hook_name(model, hooks)
    if stop_at is not None:
        fwd_hooks.append((stop_at, stop))
    with model.hooks(fwd_hooks=fwd_hooks):
        try:
            model(tokens)
        except _StopForward:
            pass
    missing = set(hooks) - set(out)
    if missing:
        raise RuntimeError(f"hooks {sorted(missing)} did not fire during the forward pass")
    return out


@functools.lru_cache(maxsize=2)
def _worker_model(source: str, weights: str, device: str):
    """The model on a cluster worker, loaded once per worker from its source."""
    from workbench.models import load_model

    model = load_model(source, device=device)
    if weights_sha256(model) != weights:
        raise ValueError(f"model: the weights loaded from {source!r} on a worker differ from the caller's model "
                         "(changed after loading?); cache without a client, or save the model and load it again")
    return model


def _write_chunk(source: str, weights: str, device: str, tokens: torch.Tensor, hooks: list[str], dtype: str,
                 array_paths: dict[str, Path], start: int) -> None:
    values = compute_hooks(_worker_model(source, weights, device), tokens.to(device), hooks, dtype)
    for hook, array in values.items():
        write_region(array_paths[hook], start, array)


class HookCache:
    """Activations of model hooks, cached as zarr stores keyed by content.

    Parameters
    ----------
    root : str or PathLike, optional
        Folder of the stores. Default: :func:`default_root` (``<$WORKBENCH_CACHE or the user cache dir>/hooks``).

    Examples
    --------
    >>> import tempfile
    >>> from workbench.models import load_model, tokenize
    >>> model = load_model("tiny-attn-2l")
    >>> cache = HookCache(tempfile.mkdtemp())
    >>> tokens = tokenize(model, ["import os", "def f(x):"], seq_len=8)
    >>> ds = cache.activations(model, tokens, ["blocks.0.attn.hook_z"], progress=False)
    >>> ds["blocks.0.attn.hook_z"].dims
    ('seq', 'pos', 'head', 'd_head')
    >>> len(cache.list())
    1
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"HookCache(root={str(self.root)!r})"

    def path(self, key: str) -> Path:
        """Folder of the store with ``key``."""
        if not isinstance(key, str) or not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ValueError(f"key: expected a 64-character hex cache key, got {key!r}")
        return self.root / f"{key}.zarr"

    def resolve(self, key: str) -> str:
        """The full key of the one store whose key starts with ``key`` (a full key or any unique prefix).

        Raises ``KeyError`` when no store matches and ``ValueError`` naming
        the matches when the prefix is ambiguous.

        Examples
        --------
        >>> import tempfile
        >>> cache = HookCache(tempfile.mkdtemp())
        >>> for key in ("ab" + "0" * 62, "ac" + "0" * 62):
        ...     (cache.root / f"{key}.zarr").mkdir()
        >>> cache.resolve("ab")[:4]
        'ab00'
        >>> cache.resolve("a")
        Traceback (most recent call last):
        ...
        ValueError: key: prefix 'a' matches 2 stores (ab0000000000..., ac0000000000...); give more characters
        """
        if not isinstance(key, str) or not re.fullmatch(r"[0-9a-f]{1,64}", key):
            raise ValueError(f"key: expected a 64-character hex cache key or a prefix of one, got {key!r}")
        matches = sorted(name for name in (p.name[:-5] for p in self.root.glob(f"{key}*.zarr"))
                         if re.fullmatch(r"[0-9a-f]{64}", name))
        if not matches:
            stores = sorted(p.name[:-5] for p in self.root.glob("*.zarr") if re.fullmatch(r"[0-9a-f]{64}", p.name[:-5]))
            known = f"the stores are {_shortened(stores)}" if stores else "the cache holds no store"
            raise KeyError(f"key: no cached store {key!r} under {self.root} ({known})")
        if len(matches) > 1:
            raise ValueError(f"key: prefix {key!r} matches {len(matches)} stores ({_shortened(matches)}); "
                             "give more characters")
        return matches[0]

    def activations(self, model, tokens, hooks, *, batch_size: int = 32, client=None, dtype: str = "float32",
                    progress: bool | Callable[[int, int], Any] = True) -> xr.Dataset:
        """Activations of ``hooks`` over ``tokens``, from the cache or computed and cached.

        Parameters
        ----------
        model : TransformerBridge
        tokens : torch.LongTensor ``[seq, pos]``
            On the model's device.
        hooks : str or list of str
            Hook names, e.g. ``"blocks.0.attn.hook_z"``.
        batch_size : int
            Sequences per forward pass; also the zarr chunk along ``seq``.
        client : dask.distributed.Client, optional
            Run the chunked forward passes on this cluster (the workers must
            share the cache folder's file system).
        dtype : {"float32", "float16"}
            Stored dtype.
        progress : bool or callable
            True shows a progress bar while computing. A callable
            ``progress(done, total)`` is called instead with the number of
            ``batch_size`` chunks written so far and in all: once with
            ``done=0`` before the first forward pass, then after every chunk,
            ending at ``done == total``. It is not called when every hook is
            already cached. An exception it raises (e.g. to cancel) stops the
            computation and removes the unfinished stores.

        Returns
        -------
        xarray.Dataset
            One dask-backed variable per hook, dims named (``seq``, ``pos``,
            ``head``, ``d_head``, ``d_model``...), the token ids as coordinate
            ``tokens`` and provenance in the attrs.

        Examples
        --------
        A progress bar of one's own (a dashboard's, say) from the chunk counts:

        >>> import tempfile
        >>> from workbench.models import load_model, tokenize
        >>> model = load_model("tiny-attn-2l")
        >>> tokens = tokenize(model, ["a", "b", "c", "d", "e"], seq_len=4)
        >>> calls = []
        >>> ds = HookCache(tempfile.mkdtemp()).activations(model, tokens, "blocks.0.attn.hook_z", batch_size=2,
        ...                                               progress=lambda done, total: calls.append((done, total)))
        >>> calls
        [(0, 3), (1, 3), (2, 3), (3, 3)]
        """
        hooks = check_hooks(model, hooks)
        tokens = check_tokens(model, tokens)
        batch_size = check_batch_size(batch_size)
        dtype = check_dtype(dtype)
        description = model_description(model)
        tokens_hash = tokens_sha256(tokens)
        keys = {hook: cache_key(description, tokens_hash, hook, dtype) for hook in hooks}
        missing = [hook for hook in hooks if not is_complete(self.path(keys[hook]))]
        for hook in missing:
            if self.path(keys[hook]).exists():  # a store folder without its manifest is damaged, not missing
                verify_store(self.path(keys[hook]))
        if missing:
            sweep_stale(self.root)
            provenance = {"model_id": description["model_id"], "weights_sha256": description["weights_sha256"],
                          "tokens_sha256": tokens_hash, "dtype": dtype, "workbench_version": __version__}
            self._compute(model, tokens, missing, keys, provenance, batch_size=batch_size, client=client,
                          dtype=dtype, progress=progress)
        datasets = [open_store(self.path(keys[hook])) for hook in hooks]
        ds = xr.merge(datasets, compat="override", combine_attrs="drop")
        ds = ds.assign_coords(tokens=(("seq", "pos"), tokens.cpu().numpy().astype(np.int32)))
        ds.attrs.update({"model_id": description["model_id"], "weights_sha256": description["weights_sha256"],
                         "tokens_sha256": tokens_hash, "dtype": dtype, "hooks": hooks,
                         "cache_keys": [keys[h] for h in hooks], "cache_root": str(self.root),
                         "workbench_version": __version__})
        return ds

    def _compute(self, model, tokens, hooks, keys, provenance, *, batch_size, client, dtype, progress) -> None:
        n_seq = tokens.shape[0]
        starts = range(0, n_seq, batch_size)
        if callable(progress):
            report = progress
        else:  # the bar counts the same chunks a callback would see
            report = None if not progress else _ChunkBar(len(starts))
        writers = {}
        try:
            if report is not None:
                report(0, len(starts))
            probe = compute_hooks(model, tokens[:1], hooks, dtype)
            for hook in hooks:
                shape = (n_seq, *probe[hook].shape[1:])
                dims = hook_dims(hook, shape, model.cfg)
                coords = {d: np.arange(s) for d, s in zip(dims, shape)}
                writers[hook] = StoreWriter(self.path(keys[hook]), hook, dims, shape, chunk=batch_size,
                                            coords=coords, dtype=dtype)
            if client is not None:
                self._compute_distributed(client, model, tokens, hooks, dtype, writers, starts, batch_size, report)
            else:
                self._compute_local(model, tokens, hooks, dtype, writers, starts, batch_size, report)
            for hook, writer in writers.items():
                writer.finalize({**provenance, "hook": hook, "cache_key": keys[hook], "n_seq": n_seq,
                                 "seq_len": int(tokens.shape[1]), "batch_size": batch_size})
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        finally:
            if isinstance(report, _ChunkBar):
                report.close()

    @staticmethod
    def _compute_local(model, tokens, hooks, dtype, writers, starts, batch_size, report) -> None:
        # One background writer: chunk i is compressed and written while chunk
        # i + 1 is computed, so at most two chunks are held in memory.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending, done = None, 0
            for start in starts:
                values = compute_hooks(model, tokens[start:start + batch_size], hooks, dtype)
                if pending is not None:
                    pending.result()
                    done += 1
                    if report is not None:
                        report(done, len(starts))
                pending = pool.submit(lambda v=values, s=start: [writers[h].write(s, a) for h, a in v.items()])
                del values
            if pending is not None:
                pending.result()
                if report is not None:
                    report(done + 1, len(starts))

    @staticmethod
    def _compute_distributed(client, model, tokens, hooks, dtype, writers, starts, batch_size, report) -> None:
        # Workers reload the model from where it came from (a bundled name or a
        # folder) rather than receiving a pickled copy, and check its weights hash.
        source = getattr(model, "workbench_source", None)
        if source is None:
            raise ValueError("client: caching on a cluster needs a model loaded with workbench.models.load_model "
                             "(workers reload it from its source); this model has no recorded source")
        weights = weights_sha256(model)
        device = str(next(model.parameters()).device)
        paths = {hook: writer.array_path for hook, writer in writers.items()}
        tasks = [client.submit(_write_chunk, source, weights, device, tokens[s:s + batch_size].cpu(), hooks, dtype,
                               paths, s, pure=False) for s in starts]
        if report is None:
            client.gather(tasks)
            return
        from distributed import as_completed

        try:
            for done, task in enumerate(as_completed(tasks), start=1):
                task.result()  # raises the worker's error, as gather would
                report(done, len(starts))
        except BaseException:
            client.cancel(tasks)
            raise

    def list(self) -> list[dict]:
        """One entry per complete store: key, model, hook, shape, size on disk.

        Incomplete or damaged stores are listed with ``"status"`` saying so.
        """
        entries = []
        for path in sorted(self.root.glob("*.zarr")):  # final names only: temporary folders end otherwise
            entry = {"key": path.name[:-5], "path": str(path), "nbytes": _folder_size(path)}
            try:
                verify_store(path)
                attrs = read_attrs(path)
                entry.update({k: attrs.get(k) for k in ("model_id", "hook", "n_seq", "seq_len", "dtype")})
                entry["status"] = "ok"
            except (StoreDamagedError, OSError, ValueError) as err:
                entry["status"] = f"damaged: {err}"
            entries.append(entry)
        return entries

    def info(self, key: str) -> dict:
        """Provenance and size of the store with ``key`` (a full key or any unique prefix, see
        :meth:`resolve`); raises if it is damaged.

        Examples
        --------
        >>> import tempfile
        >>> cache = HookCache(tempfile.mkdtemp())
        >>> cache.info("ab")
        Traceback (most recent call last):
        ...
        KeyError: "key: no cached store 'ab' under ... (the cache holds no store)"
        """
        key = self.resolve(key)
        path = self.path(key)
        verify_store(path)
        ds = open_store(path)
        return {**read_attrs(path), "key": key, "path": str(path), "nbytes": _folder_size(path),
                "variables": {name: dict(zip(var.dims, var.shape)) for name, var in ds.data_vars.items()}}

    def clear(self, key: str | None = None, *, model_id: str | None = None, hook: str | None = None) -> int:
        """Remove stores: one ``key`` (a full key or any unique prefix, see :meth:`resolve`), or all
        matching ``model_id``/``hook``, or everything.

        Returns the number of stores removed. Clearing everything also sweeps
        the temporary folders of writers that are gone (never a live one).

        Examples
        --------
        >>> import tempfile
        >>> cache = HookCache(tempfile.mkdtemp())
        >>> (cache.root / f"{'cd' + '0' * 62}.zarr").mkdir()
        >>> cache.clear("cd"), cache.list()
        (1, [])
        """
        if key is not None:
            targets = [self.path(self.resolve(key))]
        else:
            targets = []
            for entry in self.list():
                if (model_id is None or entry.get("model_id") == model_id) and (hook is None or entry.get("hook") == hook):
                    targets.append(Path(entry["path"]))
        removed = 0
        for path in targets:
            if path.exists():
                # Rename first so a reader never sees a half-deleted store.
                doomed = path.with_name(f"{path.name}.deleting-{time.time_ns()}")
                os.rename(path, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
                removed += 1
        if key is None and model_id is None and hook is None:
            sweep_stale(self.root)
        return removed


class _ChunkBar:
    """tqdm bar driven by the ``(done, total)`` calls a progress callback gets."""

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="caching hooks", unit="chunk")

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _shortened(keys: list[str], shown: int = 8) -> str:
    """``ab0000000000..., ac0000000000...``: the first ``shown`` keys, each cut to 12 characters."""
    return ", ".join(f"{k[:12]}..." for k in keys[:shown]) + (", ..." if len(keys) > shown else "")


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
