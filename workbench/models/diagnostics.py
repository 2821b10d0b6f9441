"""Quick diagnostics of a language model: induction scores and held-out loss.

Examples
--------
>>> from workbench.models import load_model
>>> scores = induction_scores(load_model("tiny-attn-2l"), n_seqs=4, period=20)
>>> scores.dims
('layer', 'head')
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr


def repeated_random_tokens(d_vocab: int, *, n_seqs: int, period: int, n_repeats: int = 2, bos: int | None = 0,
                           seed: int = 0, low: int = 1) -> torch.LongTensor:
    """``n_seqs`` sequences of ``period`` random tokens repeated ``n_repeats`` times, BOS first.

    Examples
    --------
    >>> t = repeated_random_tokens(100, n_seqs=2, period=5)
    >>> t.shape, bool((t[:, 1:6] == t[:, 6:11]).all())
    (torch.Size([2, 11]), True)
    """
    gen = torch.Generator().manual_seed(seed)
    block = torch.randint(low, d_vocab, (n_seqs, period), generator=gen)
    tokens = block.repeat(1, n_repeats)
    if bos is not None:
        tokens = torch.cat([torch.full((n_seqs, 1), bos, dtype=torch.long), tokens], dim=1)
    return tokens


@torch.no_grad()
def induction_scores(model, *, n_seqs: int = 16, period: int = 50, seed: int = 0) -> xr.DataArray:
    """Induction score of every head: mean attention from i to i - period + 1.

    On random tokens repeated with period ``L``, an induction head at a
    position ``i`` of the second repeat attends to the token right after the
    earlier occurrence of the current token, at ``i - L + 1``. The score is the
    mean of that attention weight over the second repeat (1 = perfect).

    Examples
    --------
    >>> from workbench.models import load_model
    >>> float(induction_scores(load_model("tiny-attn-2l"), n_seqs=4, period=20).max()) > 0.4
    True
    """
    cfg = model.cfg
    if period + 1 > cfg.n_ctx // 2:
        raise ValueError(f"period: 2 * period + 1 must fit in n_ctx={cfg.n_ctx}, got period={period}")
    tokens = repeated_random_tokens(cfg.d_vocab, n_seqs=n_seqs, period=period, seed=seed)
    tokens = tokens.to(next(model.parameters()).device)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    dest = torch.arange(period + 1, 2 * period + 1)  # second repeat (BOS at 0)
    src = dest - period + 1
    scores = np.stack([
        cache[name][:, :, dest, src].mean(dim=(0, 2)).float().cpu().numpy() for name in names
    ])
    return xr.DataArray(scores, dims=("layer", "head"),
                        coords={"layer": np.arange(cfg.n_layers), "head": np.arange(cfg.n_heads)},
                        name="induction_score", attrs={"period": period, "n_seqs": n_seqs})


@torch.no_grad()
def mean_loss(model, tokens: torch.Tensor, *, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy (nats) of ``model`` over ``tokens`` [n, seq]."""
    total, count = 0.0, 0
    for start in range(0, tokens.shape[0], batch_size):
        batch = tokens[start:start + batch_size]
        logits = model(batch)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1), reduction="sum"
        )
        total += loss.item()
        count += batch[:, 1:].numel()
    return total / count


def unigram_entropy(train_ids: np.ndarray, eval_ids: np.ndarray, d_vocab: int) -> float:
    """Cross-entropy (nats) of ``eval_ids`` under the add-one unigram model of ``train_ids``.

    Examples
    --------
    >>> round(unigram_entropy(np.array([0, 1] * 50), np.array([0, 1]), 2), 4) == round(math.log(2), 4)
    True
    """
    counts = np.bincount(train_ids, minlength=d_vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[eval_ids].mean())
