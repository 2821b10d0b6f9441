"""ReLU encode + decode with sparse passes, for the standard (ReLU + L1) SAE.

Once an L1-trained SAE is sparse, only the encoder's forward matmul has to be
dense: the decoder sums the active rows of ``W_dec`` (``embedding_bag`` with
per-token offsets, since the number of active latents varies by token), the
latent gradient is only needed where a latent fired (a sampled product), and
the weight gradients are sparse (CSR) matrices times dense ones. That replaces
four of the five dense matmuls of a training step. While more than
:data:`DENSE_ABOVE` of the latents fire (early in training), the dense
products are cheaper and are used instead; both give the same gradients.

The L1 term comes out of the same call: ``sum(f)`` over the batch, whose
gradient is 1 on every active latent.

Examples
--------
>>> import torch
>>> x, W_enc, b_enc, W_dec = torch.randn(5, 8), torch.randn(8, 32), torch.zeros(32), torch.randn(32, 8)
>>> out, l1, fired, l0 = relu_autoencode(x, W_enc, b_enc, W_dec)
>>> f = (x @ W_enc + b_enc).relu()
>>> torch.allclose(out, f @ W_dec, atol=1e-4), torch.allclose(l1, f.sum())
(True, True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.sae._sparse import latent_major, sampled_product

#: Above this fraction of active latents the dense products are used (measured break-even on CPU).
DENSE_ABOVE = 0.2


class _ReLUAutoencode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_in, W_enc, b_enc, W_dec, dense_above):
        pre = torch.addmm(b_enc, x_in, W_enc)
        batch, d_sae = pre.shape
        # flat positions of the active latents, row-major: tokens in order, latents ascending within a token
        # (bincounts over them are ~100x faster than reductions over the [batch, d_sae] mask)
        flat = (pre > 0).view(-1).nonzero().squeeze(1)
        tokens, latents = flat.div(d_sae, rounding_mode="floor"), flat.remainder(d_sae)
        fired = torch.bincount(latents, minlength=d_sae) > 0
        l0 = torch.tensor(flat.numel() / batch, dtype=pre.dtype, device=pre.device)
        ctx.dense = flat.numel() > dense_above * batch * d_sae
        if ctx.dense:
            f = pre.relu_()
            out, l1 = f @ W_dec, f.sum()
            ctx.save_for_backward(x_in, W_enc, W_dec, f)
        else:
            vals = pre.view(-1)[flat]
            per_token = torch.bincount(tokens, minlength=batch)
            offsets = per_token.cumsum(0) - per_token
            out, l1 = F.embedding_bag(latents, W_dec, offsets, per_sample_weights=vals, mode="sum"), vals.sum()
            ctx.save_for_backward(x_in, W_enc, W_dec, vals, tokens, latents, offsets)
        ctx.mark_non_differentiable(fired, l0)
        return out, l1, fired, l0

    @staticmethod
    def backward(ctx, grad_out, grad_l1, _grad_fired, _grad_l0):
        if ctx.dense:
            return _dense_backward(ctx, grad_out, grad_l1)
        x_in, W_enc, W_dec, vals, tokens, latents, offsets = ctx.saved_tensors
        batch, d_sae = x_in.shape[0], W_dec.shape[0]
        crow = torch.cat([offsets, offsets.new_tensor([vals.numel()])])
        grad_latent = sampled_product(crow, latents, grad_out, W_dec.t()) + grad_l1
        grad_x = grad_W_enc = grad_b_enc = grad_W_dec = None
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(latents, W_enc.t().contiguous(), offsets, per_sample_weights=grad_latent,
                                     mode="sum")
        by_latent = latent_major(latents, tokens, d_sae, batch)
        if ctx.needs_input_grad[1]:
            grad_W_enc = by_latent(grad_latent, x_in).t()
        if ctx.needs_input_grad[2]:
            grad_b_enc = torch.zeros(d_sae, dtype=grad_latent.dtype, device=grad_latent.device)
            grad_b_enc.index_add_(0, latents, grad_latent)
        if ctx.needs_input_grad[3]:
            grad_W_dec = by_latent(vals, grad_out)
        return grad_x, grad_W_enc, grad_b_enc, grad_W_dec, None


def _dense_backward(ctx, grad_out, grad_l1):
    x_in, W_enc, W_dec, f = ctx.saved_tensors
    grad_pre = (grad_out @ W_dec.t()).add_(grad_l1).masked_fill_(f <= 0, 0.0)
    grad_x = grad_pre @ W_enc.t() if ctx.needs_input_grad[0] else None
    grad_W_enc = x_in.t() @ grad_pre if ctx.needs_input_grad[1] else None
    grad_b_enc = grad_pre.sum(0) if ctx.needs_input_grad[2] else None
    grad_W_dec = f.t() @ grad_out if ctx.needs_input_grad[3] else None
    return grad_x, grad_W_enc, grad_b_enc, grad_W_dec, None


def relu_autoencode(x_in: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor,
                    dense_above: float = DENSE_ABOVE):
    """``(f W_dec, sum(f), fired, L0)`` with ``f = ReLU(x_in W_enc + b_enc)``, sparse once ``f`` is.

    Parameters
    ----------
    x_in : torch.Tensor [batch, d_in]
        Input, already centred by ``b_dec`` when the SAE does that.
    W_enc : torch.Tensor [d_in, d_sae]
    b_enc : torch.Tensor [d_sae]
    W_dec : torch.Tensor [d_sae, d_in]
    dense_above : float
        Fraction of active latents above which the dense products are used.

    Returns
    -------
    out : torch.Tensor [batch, d_in]
        Decoded ``f W_dec`` (without ``b_dec``); differentiable in all inputs.
    l1 : torch.Tensor []
        ``f.sum()`` over the batch (f >= 0, so its L1 norm); differentiable.
    fired : torch.Tensor [d_sae] of bool
        Latents active on at least one token.
    l0 : torch.Tensor []
        Mean number of active latents per token.

    Examples
    --------
    >>> import torch
    >>> out, l1, fired, l0 = relu_autoencode(torch.eye(2), torch.eye(2), torch.tensor([0.0, -2.0]), torch.eye(2))
    >>> out.tolist(), float(l1), fired.tolist(), float(l0)
    ([[1.0, 0.0], [0.0, 0.0]], 1.0, [True, False], 0.5)
    """
    return _ReLUAutoencode.apply(x_in, W_enc, b_enc, W_dec, dense_above)
