"""TopK encode + decode with sparse backward passes.

A TopK SAE keeps ``k`` of ``d_sae`` latents per token, so only the forward
encoder matmul needs to be dense. Here the decoder gathers the ``k`` active
rows of ``W_dec`` (``embedding_bag``) instead of multiplying a mostly-zero
``[batch, d_sae]`` matrix, and the backward pass multiplies the ``k``
latent gradients per token as a sparse (CSR) matrix into ``W_enc`` and
``W_dec`` instead of three more dense matmuls. At k/d_sae = 1/64 that is the difference
between one dense matmul per step and four.

Examples
--------
>>> import torch
>>> x, W_enc, W_dec = torch.randn(5, 8), torch.randn(8, 32), torch.randn(32, 8)
>>> out, vals, idx = topk_autoencode(x, W_enc, torch.zeros(32), W_dec, 3)
>>> f = torch.zeros(5, 32).scatter(1, idx, vals)
>>> torch.allclose(out, f @ W_dec, atol=1e-5)
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.sae._sparse import latent_major, sampled_product


class _TopKAutoencode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_in, W_enc, b_enc, W_dec, k, scale):
        if scale is None:
            pre = torch.addmm(b_enc, x_in, W_enc)
            vals, idx = pre.topk(k, dim=1, sorted=False)
        else:  # rank by scale * pre: scaling the weights costs d_in x d_sae, scaling pre batch x d_sae
            pre = torch.addmm(b_enc * scale, x_in, W_enc * scale)
            vals, idx = pre.topk(k, dim=1, sorted=False)
            vals = vals / scale[idx]
        vals = vals.clamp_min_(0.0)
        out = F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum")
        ctx.save_for_backward(x_in, W_enc, W_dec, vals, idx)
        ctx.mark_non_differentiable(vals, idx)
        return out, vals, idx

    @staticmethod
    def backward(ctx, grad_out, _grad_vals, _grad_idx):
        x_in, W_enc, W_dec, vals, idx = ctx.saved_tensors
        # dL/d(latent) only for the k kept latents (a sampled dense-dense product: ~20x
        # faster than gathering the k decoder rows); ReLU zeroes the negative ones.
        batch, k = idx.shape
        crow = torch.arange(0, batch * k + 1, k, device=idx.device)
        grad_latent = sampled_product(crow, idx.reshape(-1), grad_out, W_dec.t()).view(batch, k)
        grad_latent = grad_latent * (vals > 0)
        grad_x = grad_W_enc = grad_b_enc = grad_W_dec = None
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(idx, W_enc.t().contiguous(), per_sample_weights=grad_latent, mode="sum")
        # Weight gradients are (latent x token) sparse matrices times dense [batch, d_in]; one
        # CSR layout (rows = latents) serves both, which beats index_add_ and COO on CPU.
        latents_by_token = latent_major(idx.reshape(-1), torch.arange(batch, device=idx.device).repeat_interleave(k),
                                        W_dec.shape[0], batch)
        if ctx.needs_input_grad[1]:
            grad_W_enc = latents_by_token(grad_latent, x_in).t()
        if ctx.needs_input_grad[2]:
            grad_b_enc = torch.zeros(W_dec.shape[0], dtype=grad_latent.dtype, device=grad_latent.device)
            grad_b_enc.index_add_(0, idx.reshape(-1), grad_latent.reshape(-1))
        if ctx.needs_input_grad[3]:
            grad_W_dec = latents_by_token(vals, grad_out)
        return grad_x, grad_W_enc, grad_b_enc, grad_W_dec, None, None


def topk_autoencode(x_in: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor,
                    k: int, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(f W_dec, values, indices)`` with ``f = TopK(ReLU)(x_in W_enc + b_enc)``, sparse in both passes.

    Parameters
    ----------
    x_in : torch.Tensor [batch, d_in]
        Input, already centred by ``b_dec`` when the SAE does that.
    W_enc : torch.Tensor [d_in, d_sae]
    b_enc : torch.Tensor [d_sae]
    W_dec : torch.Tensor [d_sae, d_in]
    k : int
    scale : torch.Tensor [d_sae], optional
        Positive per-latent weights the ``k`` latents are *chosen* by
        (``scale * pre``; e.g. the decoder row norms, so a latent is ranked
        by the size of what it adds to ``x_hat``). The kept values are still
        ``ReLU(pre)`` and ``scale`` gets no gradient.

    Returns
    -------
    out : torch.Tensor [batch, d_in]
        Decoded ``f W_dec`` (without ``b_dec``); differentiable in all inputs.
    values, indices : torch.Tensor [batch, k]
        The kept latents (not differentiable).

    Examples
    --------
    >>> import torch
    >>> out, vals, idx = topk_autoencode(torch.eye(4), torch.eye(4), torch.zeros(4), torch.eye(4), 1)
    >>> torch.equal(out, torch.eye(4))
    True
    >>> _, vals, idx = topk_autoencode(torch.ones(1, 2), torch.eye(2), torch.tensor([0.0, 1.0]), torch.eye(2), 1,
    ...                                scale=torch.tensor([3.0, 1.0]))
    >>> idx.tolist(), vals.tolist()  # 3 * 1 beats 1 * 2, and the value kept is pre = 1, not 3
    ([[0]], [[1.0]])
    """
    return _TopKAutoencode.apply(x_in, W_enc, b_enc, W_dec, k, scale)
