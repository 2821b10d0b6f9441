"""Activations for SAE training, read lazily in shuffled chunks, in a resumable order.

A source is a list of *chunks* along the token axis: the dask chunks along
``seq`` of a cached ``hook_z`` (so a cache larger than memory streams from
zarr), or slices of an in-memory tensor. Each epoch visits the chunks in a
seeded random order, loads ``buffer_tokens`` worth at a time, shuffles the
tokens inside the buffer and cuts batches. The whole order is a function of
``seed``, so a resumed run sees exactly the batches it would have seen.

Examples
--------
>>> import torch
>>> src = ActivationSource(torch.randn(100, 8), batch_size=10, seed=0)
>>> src.d_in, src.n_tokens, next(src.batches(0)).shape
(8, 100, torch.Size([10, 8]))
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import xarray as xr

from workbench.sae._validate import check_positive_int

#: Chunk size used to slice in-memory tensors and unchunked arrays.
DEFAULT_CHUNK_TOKENS = 65_536


def _as_token_major(acts) -> xr.DataArray | torch.Tensor:
    """``acts`` as a tensor [n, d_in] or a DataArray whose last dims flatten to d_in."""
    if isinstance(acts, torch.Tensor):
        if acts.ndim != 2 or acts.shape[0] == 0:
            raise ValueError(f"acts: expected a tensor [n_tokens, d_in], got shape {tuple(acts.shape)}")
        if not acts.dtype.is_floating_point:
            raise TypeError(f"acts: expected a floating-point tensor, got dtype {acts.dtype}")
        return acts
    if isinstance(acts, xr.DataArray):
        if acts.dims[-2:] == ("head", "d_head"):
            return acts
        if acts.ndim == 2:
            return acts
        raise ValueError(f"acts: expected a hook_z DataArray (..., head, d_head) or 2-D (token, d_in), "
                         f"got dims {acts.dims}")
    raise TypeError(f"acts: expected a torch.Tensor [n, d_in] or an xr.DataArray from HookCache, "
                    f"got {type(acts).__name__}")


class ActivationSource:
    """Shuffled, resumable batches ``[batch_size, d_in]`` from a tensor or a (lazy) DataArray.

    Parameters
    ----------
    acts : torch.Tensor [n, d_in] or xr.DataArray
        A ``hook_z`` DataArray ``(seq, pos, head, d_head)`` is flattened to
        ``(seq * pos, head * d_head)``; a 2-D DataArray is used as it is.
    batch_size : int
    seed : int
    buffer_tokens : int
        Tokens loaded and shuffled together; bounds the memory in use.
    device : str or torch.device
        Where batches are placed.
    """

    def __init__(self, acts, *, batch_size: int, seed: int = 0, buffer_tokens: int = 262_144,
                 device: str | torch.device = "cpu"):
        self.acts = _as_token_major(acts)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.buffer_tokens = check_positive_int("buffer_tokens", buffer_tokens)
        if self.buffer_tokens < self.batch_size:  # a buffer must hold a batch, else no batch ever comes
            raise ValueError(f"buffer_tokens: expected at least batch_size={self.batch_size}, got {buffer_tokens}")
        self.seed = int(seed)
        self.device = torch.device(device)
        shape = self.acts.shape
        self._per_row = int(np.prod(shape[1:-2])) if self._is_hook_z else 1
        self.d_in = int(shape[-1] * shape[-2]) if self._is_hook_z else int(shape[-1])
        self.n_tokens = int(shape[0]) * self._per_row
        if self.n_tokens < self.batch_size:
            raise ValueError(f"batch_size: expected at most the {self.n_tokens} tokens in acts, got {batch_size}")
        self._chunks = self._chunk_bounds()

    @property
    def _is_hook_z(self) -> bool:
        return isinstance(self.acts, xr.DataArray) and self.acts.dims[-2:] == ("head", "d_head")

    def _chunk_bounds(self) -> list[tuple[int, int]]:
        n_rows = int(self.acts.shape[0])
        chunks = getattr(self.acts, "chunks", None) if isinstance(self.acts, xr.DataArray) else None
        if chunks:
            sizes = chunks[0]
        else:
            step = max(1, DEFAULT_CHUNK_TOKENS // self._per_row)
            sizes = [min(step, n_rows - s) for s in range(0, n_rows, step)]
        bounds, start = [], 0
        for size in sizes:
            bounds.append((start, start + int(size)))
            start += int(size)
        return bounds

    def _load(self, start: int, stop: int) -> torch.Tensor:
        if isinstance(self.acts, torch.Tensor):
            block = self.acts[start:stop]
        else:
            block = torch.from_numpy(np.asarray(self.acts[start:stop].values, dtype=np.float32))
        block = block.reshape(-1, self.d_in).to(self.device, torch.float32)
        finite = torch.isfinite(block)
        if not bool(finite.all()):
            row = int((~finite).any(1).nonzero()[0, 0]) // self._per_row + start
            raise ValueError(f"acts: expected finite activations, got NaN/inf in row {row} "
                             f"(first axis) of chunk [{start}, {stop})")
        return block

    def _epoch_buffers(self, epoch: int) -> list[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self._chunks))
        buffers, current, tokens = [], [], 0
        for i in order:
            current.append(self._chunks[i])
            tokens += (self._chunks[i][1] - self._chunks[i][0]) * self._per_row
            if tokens >= self.buffer_tokens:
                buffers.append(current)
                current, tokens = [], 0
        if current:
            buffers.append(current)
        return buffers

    def _buffer_tokens(self, chunks: list[tuple[int, int]]) -> int:
        return sum(stop - start for start, stop in chunks) * self._per_row

    def batches(self, start_step: int = 0) -> Iterator[torch.Tensor]:
        """Endless batches from batch number ``start_step`` on (leftovers < batch_size per buffer are skipped).

        Examples
        --------
        >>> import torch
        >>> src = ActivationSource(torch.arange(40.).reshape(20, 2), batch_size=5, seed=1)
        >>> torch.equal(list(zip(range(6), src.batches()))[5][1], next(src.batches(5)))
        True
        """
        step, epoch = 0, 0
        while True:
            for b, chunks in enumerate(self._epoch_buffers(epoch)):
                n_batches = self._buffer_tokens(chunks) // self.batch_size
                if step + n_batches <= start_step:  # skip whole buffers without reading them
                    step += n_batches
                    continue
                block = torch.cat([self._load(s, e) for s, e in chunks])
                gen = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, epoch, b]).integers(2**62)))
                perm = torch.randperm(block.shape[0], generator=gen).to(self.device)
                for i in range(n_batches):
                    if step >= start_step:
                        yield block[perm[i * self.batch_size:(i + 1) * self.batch_size]]
                    step += 1
            epoch += 1

    def mean(self, max_tokens: int = 65_536) -> torch.Tensor:
        """Mean activation over the first buffer of epoch 0 (to start ``b_dec`` at the data mean)."""
        chunks = self._epoch_buffers(0)[0]
        block = torch.cat([self._load(s, e) for s, e in chunks])
        return block[:max_tokens].mean(0)
