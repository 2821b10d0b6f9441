"""Held-out quality of a trained SAE, computed the same way for ours and SAELens' (both workers import it)."""


def held_out_result(sae, held, seconds: float, n_tokens: int) -> dict:
    """Training time and tokens/s, held-out FVU and L0 of ``sae`` (anything with ``encode`` / ``decode``)."""
    import torch

    with torch.no_grad():
        feats = sae.encode(held)
        fvu = float((sae.decode(feats) - held).pow(2).sum() / (held - held.mean(0)).pow(2).sum())
        l0 = float((feats > 0).float().sum(-1).mean())
    return {"seconds": seconds, "tokens_per_s": n_tokens / seconds, "fvu": fvu, "l0": l0}
