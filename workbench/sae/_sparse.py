"""Sparse-matrix helpers shared by the sparse SAE kernels (TopK and ReLU).

Both kernels keep, per token, a variable or fixed set of active latents as
flat ``(token, latent, value)`` triples; the weight gradients are then
``[d_sae, batch]`` CSR matrices (rows = latents) times a dense ``[batch, d]``
matrix, which on CPU beats ``index_add_`` and COO products.

torch's CPU sparse kernels have no float16 / bfloat16: for those dtypes the
sparse products run in float32 and their results are cast back.

Examples
--------
>>> import torch
>>> times = latent_major(torch.tensor([2, 0, 2]), torch.tensor([0, 0, 1]), d_sae=3, batch=2)
>>> times(torch.tensor([1.0, 2.0, 3.0]), torch.eye(2)).tolist()
[[2.0, 0.0], [0.0, 0.0], [1.0, 3.0]]
"""

from __future__ import annotations

import warnings

import torch


def csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A CSR tensor from trusted indices (no invariant checks, no beta warning)."""
    with warnings.catch_warnings():  # torch flags CSR as beta on every construction
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def sampled_product(crow: torch.Tensor, col: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a @ b)`` at the positions of a CSR pattern ``(crow, col)``, as a flat vector in pattern order.

    Only those entries are computed (``torch.sparse.sampled_addmm``); the
    result has ``a``'s dtype.
    """
    dtype = _compute_dtype(a.dtype)
    pattern = csr(crow, col, a.new_zeros(col.numel(), dtype=dtype), (a.shape[0], b.shape[1]))
    return torch.sparse.sampled_addmm(pattern, a.to(dtype), b.to(dtype), beta=0.0).values().to(a.dtype)


def latent_major(latents: torch.Tensor, tokens: torch.Tensor, d_sae: int, batch: int):
    """``times(values, dense)``: the ``[d_sae, batch]`` sparse matrix with ``values`` at
    ``(latents[i], tokens[i])``, times ``dense [batch, d]``, in ``dense``'s dtype.

    The values come in the order of ``latents``; the sort into latent-major
    (CSR) order is done once and shared by every product with this pattern.
    """
    # narrow keys sort 2-3x faster (radix passes) and give the same stable order
    keys = latents.to(torch.int16 if d_sae <= torch.iinfo(torch.int16).max else torch.int32)
    order = keys.argsort(stable=True)
    cols = tokens[order]
    crow = torch.zeros(d_sae + 1, dtype=torch.long, device=latents.device)
    crow[1:] = torch.bincount(latents, minlength=d_sae).cumsum(0)

    def times(values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        dtype = _compute_dtype(dense.dtype)
        matrix = csr(crow, cols, values.reshape(-1)[order].to(dtype), (d_sae, batch))
        return matrix.matmul(dense.to(dtype)).to(dense.dtype)

    return times
