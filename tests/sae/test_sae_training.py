"""Training: resumable checkpoints, lazy reading of a hook cache, the sparse TopK kernel, architectures."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from workbench.sae import ActivationSource, AttentionSAE, SAEConfig, architectures, train
from workbench.sae._sparse_relu import relu_autoencode
from workbench.sae._sparse_topk import topk_autoencode
from workbench.sae.training import DEAD_WINDOW, DeadWindowWarning, default_dead_window

KW = dict(d_sae=32, k=4, batch_size=128, n_tokens=128 * 12, lr=3e-3, seed=5, progress=False, dead_window=512)


class Interrupt(Exception):
    pass


def _stop_at(step_to_fail: int):
    def callback(step, sae):
        if step == step_to_fail:
            raise Interrupt
    return callback


@pytest.mark.parametrize("architecture", ["topk", "standard", "batchtopk"])  # batchtopk: its end-of-run threshold
def test_interrupted_run_resumes_without_loss(tmp_path, architecture):
    acts = torch.randn(1000, 16)
    kw = {**KW, "architecture": architecture, "resample_every": 5, "dead_window": 256}
    if architecture == "standard":
        kw.update(k=None, l1_coefficient=0.5)
    full, full_history = train(acts, **kw)
    with pytest.raises(Interrupt):
        train(acts, checkpoint_dir=tmp_path, checkpoint_every=4, callback=_stop_at(10), **kw)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 8
    resumed, history = train(acts, checkpoint_dir=tmp_path, checkpoint_every=4, **kw)
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    xr.testing.assert_equal(full_history, history)


def test_resume_refuses_a_different_run(tmp_path):
    acts = torch.randn(1000, 16)
    train(acts, checkpoint_dir=tmp_path, **KW)
    with pytest.raises(ValueError, match=r"checkpoint_dir: .* different arguments \['lr'\]"):
        train(acts, checkpoint_dir=tmp_path, **{**KW, "lr": 1e-3})


def test_trains_from_a_lazy_hook_cache(random_model, hook_cache):
    tokens = torch.randint(0, 64, (40, 16), generator=torch.Generator().manual_seed(0))
    ds = hook_cache.activations(random_model, tokens, ["blocks.1.attn.hook_z"], batch_size=8, progress=False)
    z = ds["blocks.1.attn.hook_z"]
    assert z.chunks is not None  # dask-backed: read chunk by chunk
    source = ActivationSource(z, batch_size=64, seed=0, buffer_tokens=128)
    assert (source.d_in, source.n_tokens, len(source._chunks)) == (32, 640, 5)
    # the stream is a permutation of the cached tokens within each epoch
    epoch = torch.cat([b for _, b in zip(range(10), source.batches())])
    expected = torch.from_numpy(z.values.reshape(-1, 32))
    assert torch.equal(epoch[epoch[:, 0].argsort()], expected[expected[:, 0].argsort()])
    sae, history = train(z, d_sae=64, k=4, batch_size=64, n_tokens=640 * 3, progress=False)
    assert sae.cfg.hook_name == "blocks.1.attn.hook_z" and sae.cfg.n_heads == 2
    assert history.sizes["step"] == 30


def test_sparse_topk_matches_dense_gradients():
    gen = torch.Generator().manual_seed(0)
    x, W_enc, b_enc, W_dec = (torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True)
                              for s in ((9, 6), (6, 20), (20,), (20, 6)))
    out, _, _ = topk_autoencode(x, W_enc, b_enc, W_dec, 3)
    (out.sin().sum()).backward()
    sparse = [t.grad.clone() for t in (x, W_enc, b_enc, W_dec)]
    for t in (x, W_enc, b_enc, W_dec):
        t.grad = None
    pre = x @ W_enc + b_enc
    vals, idx = pre.topk(3, dim=1)
    ((torch.zeros_like(pre).scatter(1, idx, vals.relu()) @ W_dec).sin().sum()).backward()
    for got, t in zip(sparse, (x, W_enc, b_enc, W_dec)):
        assert torch.allclose(got, t.grad)


@pytest.mark.parametrize("dense_above", [0.0, 1.0])  # the dense and the sparse passes
def test_relu_autoencode_matches_dense_autograd(dense_above):
    gen = torch.Generator().manual_seed(1)
    x, W_enc, b_enc, W_dec = (torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True)
                              for s in ((9, 6), (6, 20), (20,), (20, 6)))
    with torch.no_grad():
        b_enc -= 3.0  # some tokens with no active latent, some latents that never fire
    out, l1, fired, l0 = relu_autoencode(x, W_enc, b_enc, W_dec, dense_above)
    (out.sin().sum() + 0.7 * l1).backward()
    got = [t.grad.clone() for t in (x, W_enc, b_enc, W_dec)]
    for t in (x, W_enc, b_enc, W_dec):
        t.grad = None
    f = (x @ W_enc + b_enc).relu()
    ((f @ W_dec).sin().sum() + 0.7 * f.sum()).backward()
    assert torch.allclose(out, f @ W_dec) and torch.allclose(l1, f.sum())
    assert torch.equal(fired, (f > 0).any(0)) and not fired.all() and (f > 0).any(1).logical_not().any()
    assert float(l0) == pytest.approx(float((f > 0).sum(1).double().mean()))
    for grad, t in zip(got, (x, W_enc, b_enc, W_dec)):
        assert torch.allclose(grad, t.grad)


@pytest.mark.parametrize("architecture", architectures())
def test_every_architecture_learns_sparse_codes(architecture):
    gen = torch.Generator().manual_seed(0)
    basis = torch.randn(24, 16, generator=gen)
    codes = torch.rand(4000, 24, generator=gen) * (torch.rand(4000, 24, generator=gen) < 0.1)
    acts = codes @ basis
    kw = {"topk": {"k": 3}, "batchtopk": {"k": 3}, "matryoshka": {"k": 3}, "standard": {"l1_coefficient": 0.2},
          "jumprelu": {"l1_coefficient": 0.1, "jumprelu_bandwidth": 0.1, "jumprelu_init_threshold": 0.05}}[architecture]
    sae, history = train(acts, d_sae=48, architecture=architecture, lr=3e-3, batch_size=200, n_tokens=60_000,
                         progress=False, **kw)
    fvu = history["fvu"].values
    assert fvu[-10:].mean() < 0.5 * fvu[:3].mean()
    f = sae.encode(acts)
    l0 = float((f > 0).float().sum(-1).mean())
    assert l0 < 24
    if architecture == "topk":
        assert l0 <= 3
    if architecture in ("batchtopk", "matryoshka"):  # a mean of k per token from the learned threshold
        assert 1.0 <= l0 <= 6.0
    if architecture == "standard":
        assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(48), atol=1e-5)


def test_auxk_revives_dead_latents():
    acts = torch.randn(4000, 16)
    sae = AttentionSAE(SAEConfig(d_in=16, d_sae=64, k=2))
    dead = torch.ones(64, dtype=torch.bool)
    step = sae.architecture.training_loss(sae, acts[:256], dead)
    assert float(step.terms["aux"].detach()) > 0
    step.loss.backward()
    assert float(sae.W_enc.grad.abs().sum(0).gt(0).float().mean()) > 0.5  # dead columns get gradient
    _, history = train(acts, d_sae=64, k=2, batch_size=256, n_tokens=40_000, dead_window=1024, progress=False)
    assert history["dead_fraction"].values[-1] < 0.5


def test_auxk_reaches_latents_negative_on_every_input():
    """A dead latent is one whose pre-activation is negative everywhere: AuxK must still move it."""
    acts = torch.randn(256, 16)
    sae = AttentionSAE(SAEConfig(d_in=16, d_sae=64, k=2))
    with torch.no_grad():
        sae.b_enc[:32] = -1e3  # latents 0..31 cannot fire on any input
    dead = torch.zeros(64, dtype=torch.bool)
    dead[:32] = True
    step = sae.architecture.training_loss(sae, acts, dead)
    step.terms["aux"].backward()
    assert bool(sae.W_enc.grad[:, :32].abs().sum(0).gt(0).all())
    assert bool(sae.W_enc.grad[:, 32:].eq(0).all())  # the live latents are not in the aux loss


@pytest.mark.parametrize("resample", [True, False])
def test_resampling_revives_killed_standard_latents(resample):
    """Kill half the latents after the first step (b_enc = -1e3: ReLU passes no gradient, so only
    resampling can bring them back); with resampling they fire again, without it they stay dead."""
    from workbench.data.synthetic_sae import planted_dictionary

    acts = torch.from_numpy(planted_dictionary(n_tokens=4000, d_in=32, n_features=24, n_heads=4, seed=2)["acts"].values)
    killed = torch.arange(0, 32, 2)

    def kill(step, sae):
        if step == 1:
            with torch.no_grad():
                sae.b_enc[killed] = -1e3

    n_steps = 60
    sae, history = train(acts, d_sae=32, architecture="standard", l1_coefficient=0.05, batch_size=200,
                         n_tokens=200 * n_steps, lr=3e-3, seed=1, progress=False, dead_window=1000,
                         resample_every=20 if resample else 10 * n_steps, callback=kill)
    fires = (sae.encode(acts).detach() > 0).any(0)
    assert float(history["dead_fraction"].max()) >= 0.5  # the killed half was seen as dead
    if resample:
        assert bool(fires[killed].all())
        assert float(sae.b_enc.detach()[killed].max()) > -1.0
    else:
        assert not bool(fires[killed].any())


def test_downstream_finetuning_lowers_kl_and_leaves_the_model_alone(random_model):
    from workbench.sae import finetune_downstream

    tokens = torch.randint(0, random_model.cfg.d_vocab, (32, 16), generator=torch.Generator().manual_seed(0))
    sae = AttentionSAE(SAEConfig(d_in=32, d_sae=64, k=2, hook_name="blocks.1.attn.hook_z"), seed=0)
    before = {name: p.detach().clone() for name, p in random_model.named_parameters()}
    flags = {name: p.requires_grad for name, p in random_model.named_parameters()}
    history = finetune_downstream(sae, random_model, tokens, 1, n_steps=80, batch_size=8, lr=3e-3, progress=False)
    assert float(history["kl"][-10:].mean()) < 0.5 * float(history["kl"][:10].mean())
    for name, p in random_model.named_parameters():
        assert torch.equal(p, before[name]) and p.requires_grad == flags[name], name
    assert int((sae.encode(torch.randn(5, 32)) != 0).sum(-1).max()) <= 2  # TopK keeps its sparsity
    assert torch.allclose(sae.W_dec.detach().norm(dim=1), torch.ones(64), atol=1e-5)  # SAELens layout again
    with pytest.raises(ValueError, match="sae: expected an SAE with fixed sparsity"):
        finetune_downstream(AttentionSAE(SAEConfig(d_in=32, d_sae=8, architecture="standard")), random_model,
                            tokens, 1, n_steps=1, progress=False)
    with pytest.raises(ValueError, match="mse_coefficient"):
        finetune_downstream(sae, random_model, tokens, 1, n_steps=1, mse_coefficient=-1.0, progress=False)


def test_sparse_topk_ranks_by_scale_and_matches_dense_gradients():
    """With ``scale`` the k latents are chosen by ``scale * pre`` but keep ``ReLU(pre)``; gradients match
    the dense computation with the same choice, and ``scale`` gets none."""
    gen = torch.Generator().manual_seed(1)
    x, W_enc, b_enc, W_dec = (torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True)
                              for s in ((9, 6), (6, 20), (20,), (20, 6)))
    scale = torch.rand(20, generator=gen, dtype=torch.float64) * 3 + 0.1
    out, vals, idx = topk_autoencode(x, W_enc, b_enc, W_dec, 3, scale=scale)
    (out.sin().sum()).backward()
    sparse = [t.grad.clone() for t in (x, W_enc, b_enc, W_dec)]
    for t in (x, W_enc, b_enc, W_dec):
        t.grad = None
    pre = x @ W_enc + b_enc
    dense_idx = (pre.detach() * scale).topk(3, dim=1).indices
    assert torch.equal(idx.sort(1).values, dense_idx.sort(1).values)
    assert not torch.equal(dense_idx.sort(1).values, pre.topk(3, dim=1).indices.sort(1).values)  # scale mattered
    assert torch.allclose(vals, pre.gather(1, idx).relu().detach())
    ((torch.zeros_like(pre).scatter(1, dense_idx, pre.gather(1, dense_idx).relu()) @ W_dec).sin().sum()).backward()
    for got, t in zip(sparse, (x, W_enc, b_enc, W_dec)):
        assert torch.allclose(got, t.grad)


@pytest.mark.parametrize("architecture", ["topk", "batchtopk"])
def test_topk_family_ranks_by_decoder_norm_and_ends_with_unit_rows(architecture):
    """A latent is ranked by what it adds to x_hat (pre * ||W_dec[i]||), in training and at inference;
    train() folds the norms into the encoder, which leaves the function unchanged."""
    sae = AttentionSAE(SAEConfig(d_in=2, d_sae=2, architecture=architecture, k=1))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.W_dec.copy_(torch.tensor([[10.0, 0.0], [0.0, 1.0]]))
        sae.b_dec.zero_()
        sae.b_enc.zero_()
    f = sae.encode(torch.tensor([[1.0, 2.0]]))
    if architecture == "topk":  # latent 0 adds 1 * 10, latent 1 adds 2 * 1
        assert f.tolist() == [[1.0, 0.0]]
    step = sae.architecture.training_loss(sae, torch.tensor([[1.0, 2.0]]), torch.zeros(2, dtype=torch.bool))
    assert torch.allclose(step.x_hat, torch.tensor([[10.0, 0.0]]))
    acts = torch.randn(2000, 8)
    trained, _ = train(acts, d_sae=32, architecture=architecture, k=3, batch_size=200, n_tokens=4000, lr=1e-2,
                       progress=False)
    assert torch.allclose(trained.W_dec.detach().norm(dim=1), torch.ones(32), atol=1e-5)


def test_gradient_clipping_is_optional_and_checked():
    acts = torch.randn(1000, 16)
    clipped, h1 = train(acts, **KW)
    free, h2 = train(acts, **{**KW, "max_grad_norm": None})
    assert not torch.equal(clipped.W_enc, free.W_enc)
    assert h1.attrs["max_grad_norm"] == 1.0 and h2.attrs["max_grad_norm"] == -1.0
    with pytest.raises(ValueError, match="max_grad_norm"):
        train(acts, **{**KW, "max_grad_norm": 0.0})


@pytest.mark.parametrize("architecture", ["topk", "standard"])
def test_bfloat16_trains_and_float16_is_refused(architecture):
    # the sparse kernels run their CPU sparse products in float32 for half dtypes
    acts = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))
    kw = {"topk": {"k": 4}, "standard": {"l1_coefficient": 0.01}}[architecture]
    train_kw = dict(d_sae=64, architecture=architecture, batch_size=200, n_tokens=4000, progress=False, **kw)
    sae16, history16 = train(acts, dtype="bfloat16", **train_kw)
    sae32, history32 = train(acts, **train_kw)
    assert sae16.W_enc.dtype == torch.bfloat16 and torch.isfinite(sae16.W_enc).all()
    assert float(history16.fvu[-1]) == pytest.approx(float(history32.fvu[-1]), abs=0.05)
    with pytest.raises(ValueError, match="dtype: expected float32, float64 or bfloat16 to train in, got 'float16'"):
        train(acts, dtype="float16", **train_kw)


def test_batchtopk_trains_with_unit_decoder_rows():
    """BatchTopK's decoder rows stay at unit norm after every step (and the gradient along them is removed)."""
    norms = []
    train(torch.randn(1000, 16), architecture="batchtopk", callback=lambda step, sae: norms.append(
        sae.W_dec.detach().norm(dim=1)), **KW)
    assert len(norms) == 12 and all(torch.allclose(n, torch.ones(32), atol=1e-5) for n in norms)


def test_dead_fraction_is_unknown_until_the_window_is_filled():
    """dead_window 512 tokens, batches of 128: the mask of step s has seen s * 128 tokens, so steps 0-3 cannot
    count a latent dead (NaN, not 0) and steps 4-11 can."""
    _, history = train(torch.randn(1000, 16), **KW)
    dead = history["dead_fraction"].values
    assert np.isnan(dead[:4]).all() and np.isfinite(dead[4:]).all()


def test_a_window_longer_than_the_run_warns_and_reports_nan():
    with pytest.warns(DeadWindowWarning, match=r"dead_window: 2000 tokens is longer than the run \(12 steps"):
        _, history = train(torch.randn(1000, 16), **{**KW, "dead_window": 2000})
    assert np.isnan(history["dead_fraction"].values).all()



def test_default_dead_window_is_a_quarter_of_the_run_and_never_warns():
    """40 steps of 128 tokens: the default window is 40 // 4 = 10 batches (1280 tokens), so the history's
    dead fraction is NaN for steps 0-9 and known from step 10 on, and no DeadWindowWarning fires; a run of
    1 step (no window can fill) does not warn either. Long runs cap the window at 1M tokens."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeadWindowWarning)
        _, history = train(torch.randn(1000, 16), **{**KW, "dead_window": None, "n_tokens": 128 * 40})
        _, short = train(torch.randn(1000, 16), **{**KW, "dead_window": None, "n_tokens": 128})
    dead = history["dead_fraction"].values
    assert np.isnan(dead[:10]).all() and np.isfinite(dead[10:]).all()
    assert np.isnan(short["dead_fraction"].values).all()
    assert default_dead_window(100_000, 4096) == DEAD_WINDOW == 1_000_000
