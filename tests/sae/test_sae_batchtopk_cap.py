"""BatchTopK's per-token cap (``max_latents_per_token``): loud tokens cannot take the quiet tokens' latents."""

from __future__ import annotations

import pytest
import torch

from workbench.sae import AttentionSAE, SAEConfig, load_sae, train
from workbench.sae.batchtopk import cap_per_token


def _mix(n: int, gen: torch.Generator):
    """Quiet tokens: 2 of 32 planted directions; loud tokens (a fifth): 8 of 32 others at three times the scale."""
    quiet_dirs, loud_dirs = torch.nn.functional.normalize(torch.randn(2, 32, 16, generator=gen), dim=2)

    def draw(dirs, m, per, scale):
        which = torch.randint(0, 32, (m, per), generator=gen)
        return scale * (dirs[which] * (1 + torch.rand(m, per, 1, generator=gen))).sum(1)

    acts = torch.cat([draw(quiet_dirs, n - n // 5, 2, 1.0), draw(loud_dirs, n // 5, 8, 3.0)])
    return acts[torch.randperm(n, generator=gen)], draw(quiet_dirs, 1000, 2, 1.0)


@pytest.mark.parametrize("cap", [None, 4])
def test_a_cap_keeps_quiet_tokens_reconstructed(cap):
    """k = 2 per token on average. Uncapped, the loud fifth (8 latents' worth at 9x the squared norm) takes
    nearly every slot of the batch and the quiet tokens get none: their inference L0 is ~0 and FVU ~1 (the
    paper's BatchTopK on such a mix; measured L0 0.03, FVU 1.19). Capped at 4 per token the loud tokens keep
    at most 4 x 1/5 = 0.8 of the 2 slots a token, the quiet ones get theirs (measured L0 1.57, FVU 0.55), and
    the inference L0 on the training mix stays within 10% of k (threshold and cap applied together)."""
    gen = torch.Generator().manual_seed(0)
    acts, quiet = _mix(4000, gen)
    sae, _ = train(acts, d_sae=64, architecture="batchtopk", k=2, batch_size=200, n_tokens=200 * 40, lr=3e-3,
                   progress=False, max_latents_per_token=cap)
    with torch.no_grad():
        f = sae.encode(quiet)
        fvu = float((sae.decode(f) - quiet).pow(2).sum() / (quiet - quiet.mean(0)).pow(2).sum())
        l0_quiet = float((f > 0).sum(-1).float().mean())
        l0_mix = float((sae.encode(acts) > 0).sum(-1).float().mean())
    if cap is None:
        assert l0_quiet < 0.5 and fvu > 0.8
    else:
        assert l0_quiet > 1.0 and fvu < 0.6
        assert l0_mix == pytest.approx(2.0, rel=0.1)
        assert int((sae.encode(acts) > 0).sum(-1).max()) <= cap


def test_cap_per_token_save_load_and_bad_caps(tmp_path):
    key = torch.tensor([[0.5, 3.0, 2.0, 1.0]])
    assert cap_per_token(key, 2).tolist() == [[0.0, 3.0, 2.0, 0.0]] and cap_per_token(key, None) is key
    with pytest.raises(ValueError, match=r"max_latents_per_token: expected None or an int in \[k=4, d_sae=16\]"):
        SAEConfig(d_in=8, d_sae=16, architecture="batchtopk", k=4, max_latents_per_token=3)
    with pytest.raises(ValueError, match=r"max_latents_per_token: only for architectures 'batchtopk' and 'matry"):
        SAEConfig(d_in=8, d_sae=16, architecture="topk", k=4, max_latents_per_token=8)
    sae = AttentionSAE(SAEConfig(d_in=8, d_sae=16, architecture="matryoshka", k=2, max_latents_per_token=3))
    x = torch.randn(64, 8) * 10
    assert int((sae.encode(x) > 0).sum(-1).max()) <= 3
    with pytest.warns(UserWarning, match="SAELens loads this folder as a jumprelu SAE without the cap"):
        sae.save(tmp_path)  # our loader keeps the cap
    loaded = load_sae(tmp_path)
    assert loaded.cfg.max_latents_per_token == 3 and torch.allclose(loaded.encode(x), sae.encode(x), atol=1e-5)
