"""Train attention-output SAEs: one layer from activations, or every layer from one cached pass.

Training is resumable: with ``checkpoint_dir`` the model, Adam state, dead-
latent counters, history and position in the (seeded) data order are saved
every ``checkpoint_every`` steps, and a rerun with the same arguments picks
up from the last checkpoint and ends with the same weights as an
uninterrupted run.

Examples
--------
>>> import torch
>>> sae, history = train(torch.randn(2048, 16), d_sae=32, k=4, batch_size=256, n_tokens=2048, progress=False)
>>> history.sizes["step"], sae.cfg.k
(8, 4)
"""

from __future__ import annotations

import itertools
import os
import pickle
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from workbench import __version__
from workbench.memory import check_fits
from workbench.sae._validate import (
    check_device,
    check_folder,
    check_layer,
    check_positive_float,
    check_positive_int,
    check_trainable_dtype,
)
from workbench.sae.config import SAEConfig
from workbench.sae.model import AttentionSAE
from workbench.sae.source import ActivationSource

CHECKPOINT_FILE = "checkpoint.pt"
#: Longest default ``dead_window`` (tokens); shorter runs get a quarter of the run (:func:`default_dead_window`).
DEAD_WINDOW = 1_000_000
#: The default ``dead_window`` is at most ``1 / DEAD_WINDOW_FRACTION`` of the run.
DEAD_WINDOW_FRACTION = 4


class DeadWindowWarning(UserWarning):
    """An explicit ``dead_window`` longer than the run: no latent can be counted dead (AuxK and resampling never act)."""


def default_dead_window(n_steps: int, batch_size: int) -> int:
    """The ``dead_window`` (tokens) :func:`train` uses when none is given: it follows the run.

    A quarter of the run in whole batches (at least one), at most
    :data:`DEAD_WINDOW` tokens: ``min(DEAD_WINDOW, batch_size * max(1, n_steps // 4))``.
    A fixed 1M-token window is longer than every short run, so AuxK and
    resampling would never act there; a quarter leaves three quarters of the
    run for them, and a window much shorter than that counts latents that
    merely fire rarely as dead (a twentieth of a 60-step run left twice as
    many latents dead in ``test_data_init_leaves_fewer_dead_latents_at_small_k``).

    Examples
    --------
    >>> default_dead_window(n_steps=100, batch_size=512), default_dead_window(n_steps=3, batch_size=512)
    (12800, 512)
    >>> default_dead_window(n_steps=100_000, batch_size=4096)  # long runs: SAELens-sized, 1M tokens
    1000000
    """
    return min(DEAD_WINDOW, batch_size * max(1, n_steps // DEAD_WINDOW_FRACTION))


#: Initial directions of the latents (``train(init=...)``).
INITS = ("data", "random")


@torch.no_grad()
def init_from_data(sae: AttentionSAE, samples: torch.Tensor, mean: torch.Tensor) -> None:
    """Point latent ``i``'s decoder row and encoder column along ``samples[i] - mean``, keeping their norms.

    Latents then start where the data is: from random directions in
    ``d_in`` dimensions most latents point away from every token, never win
    a TopK slot at small ``k`` and stay dead. A sample equal to ``mean``
    keeps its random direction.

    Examples
    --------
    >>> import torch
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> sae = AttentionSAE(SAEConfig(d_in=2, d_sae=2, k=1))
    >>> init_from_data(sae, torch.tensor([[3.0, 1.0], [1.0, 5.0]]), torch.tensor([1.0, 1.0]))
    >>> (sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)).round(decimals=4).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    centred = samples.to(sae.W_dec) - mean.to(sae.W_dec)
    norms = centred.norm(dim=1, keepdim=True)
    usable = norms.squeeze(1) > 0
    random_directions = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    directions = torch.where(usable[:, None], centred / norms.clamp_min(1e-30), random_directions)
    sae.W_dec.copy_(directions * sae.W_dec.norm(dim=1, keepdim=True))
    sae.W_enc.copy_(directions.t() * sae.W_enc.norm(dim=0, keepdim=True))


def _provenance(acts) -> dict:
    if not isinstance(acts, xr.DataArray):
        return {}
    out = {"hook_name": acts.name if isinstance(acts.name, str) else None, "model_name": acts.attrs.get("model_id")}
    if acts.dims[-2:] == ("head", "d_head"):
        out["n_heads"] = int(acts.sizes["head"])
    return out


def _save_checkpoint(folder: Path, payload: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CHECKPOINT_FILE}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, folder / CHECKPOINT_FILE)  # atomic: a crash keeps the previous checkpoint


def _load_checkpoint(folder: Path, run: dict) -> dict | None:
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"checkpoint_dir: could not read {path} ({type(error).__name__}); "
                         "use another folder or resume=False") from error
    if payload["run"] != run:
        changed = sorted(k for k in run if payload["run"].get(k) != run[k])
        raise ValueError(f"checkpoint_dir: {path} belongs to a run with different arguments {changed}; "
                         "use another folder or resume=False")
    return payload


def train(acts, *, d_sae: int, architecture: str = "topk", k: int | None = None,
          l1_coefficient: float | None = None, lr: float = 1e-3, batch_size: int = 4096,
          n_tokens: int | None = None, lr_decay: float = 0.0, seed: int = 0, progress: bool = True,
          device: str | torch.device | None = None, betas: tuple[float, float] = (0.9, 0.999),
          dead_window: int | None = None, resample_every: int = 2_000, buffer_tokens: int = 262_144,
          max_grad_norm: float | None = 1.0, checkpoint_dir: str | os.PathLike | None = None,
          checkpoint_every: int = 500, resume: bool = True, init: str | None = None,
          callback: Callable[[int, AttentionSAE], None] | None = None,
          **config) -> tuple[AttentionSAE, xr.Dataset]:
    """Train an SAE on activations; returns it with its training history.

    Parameters
    ----------
    acts : torch.Tensor [n, d_in] or xr.DataArray
        Activations; a ``hook_z`` DataArray from :class:`~workbench.hooks.HookCache`
        is flattened to z_cat and read lazily, chunk by chunk.
    d_sae : int
        Number of latents.
    architecture : {"topk", "batchtopk", "matryoshka", "standard", "jumprelu"}
    k : int, optional
        Latents per token (TopK family).
    l1_coefficient : float, optional
        Sparsity penalty (``standard``: L1, ``jumprelu``: L0).
    lr : float
        Adam learning rate.
    batch_size : int
        Tokens per step.
    n_tokens : int, optional
        Token budget; default one pass over ``acts``.
    lr_decay : float
        Fraction of the steps, at the end, over which the learning rate falls
        linearly to zero (0 keeps it constant).
    seed : int
        Seeds the initial weights and the data order.
    progress : bool
        Show a progress bar.
    device : str or torch.device, optional
        Where to train; default CPU.
    betas : (float, float)
        Adam betas.
    dead_window : int, optional
        A latent that has not fired for this many tokens is dead (AuxK target,
        resampled for ``standard``). Default: a quarter of the run in whole
        batches (at least one), at most 1M tokens (:func:`default_dead_window`),
        so AuxK and resampling act on short runs too. An explicit window longer
        than the run never lets them act (a :class:`DeadWindowWarning` says so).
    resample_every : int
        Steps between dead-latent resamplings (``standard`` only).
    buffer_tokens : int
        Tokens loaded and shuffled together.
    max_grad_norm : float, optional
        Clip the gradient (all parameters together) to this norm before each
        step, as SAELens does (``None``: no clipping). It matters early on,
        when the gradient is largest: unclipped, those steps fill Adam's
        second moment (``beta2 = 0.999`` remembers ~1000 steps) and shrink
        every later step.
    checkpoint_dir : str or PathLike, optional
        Save a checkpoint here every ``checkpoint_every`` steps and resume
        from it when ``resume``.
    init : {"data", "random"}, optional
        Initial direction of each latent (decoder row and encoder column):
        along a training token minus the data mean (:func:`init_from_data`),
        or a random direction. Default ``"data"`` for the TopK family
        (``topk``, ``batchtopk``), ``"random"`` for the others (not measured
        there). On layer 1 of the bundled ``tiny-attn-2l`` (the recipe of
        ``tests/sae/test_sae_bundled.py``: d_sae 1024, 400k tokens), TopK at
        k = 4 left 65% of the latents dead on held-out text from random
        directions and 18% from data, held-out FVU 0.329 and 0.307; at k = 16
        FVU 0.179 and 0.174, dead 4% and 12% (8% with ``dead_window=50_000``).
        BatchTopK at k = 4 was unchanged (96% dead either way) until its
        decoder rows were kept at unit norm: 61% dead on held-out text, FVU
        0.396 at an inference L0 of 2.2 there (``benchmarks/bench_dead_latents.py``).
    callback : callable, optional
        ``callback(step, sae)`` after every step (logging, early stops).
    **config
        Further :class:`SAEConfig` fields (``n_heads``, ``aux_k``, ``hook_name``...).

    Returns
    -------
    sae : AttentionSAE
    history : xr.Dataset
        Per ``step``: ``loss``, ``mse``, the architecture's sparsity term
        (``aux``, ``l1`` or ``l0_penalty``), ``l0``, ``fvu`` (of the batch) and
        ``dead_fraction`` (the fraction of latents unfired for the last
        ``dead_window`` tokens; NaN for the steps before ``dead_window``
        tokens have been seen, when no latent can yet count as dead).

    Examples
    --------
    >>> import torch
    >>> sae, hist = train(torch.randn(1024, 8), d_sae=16, architecture="standard", l1_coefficient=0.1,
    ...                   batch_size=128, n_tokens=1024, progress=False)
    >>> sorted(hist.data_vars)
    ['dead_fraction', 'fvu', 'l0', 'l1', 'loss', 'mse']
    """
    from tqdm.auto import tqdm

    device = check_device(device)
    lr = check_positive_float("lr", lr)
    if dead_window is not None:
        dead_window = check_positive_int("dead_window", dead_window)
    resample_every = check_positive_int("resample_every", resample_every)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    if max_grad_norm is not None:
        max_grad_norm = check_positive_float("max_grad_norm", max_grad_norm)
    if init is not None and init not in INITS:
        raise ValueError(f"init: expected one of {INITS} or None, got {init!r}")
    if not 0.0 <= lr_decay <= 1.0:
        raise ValueError(f"lr_decay: expected a fraction in [0, 1], got {lr_decay!r}")
    source = ActivationSource(acts, batch_size=batch_size, seed=seed, buffer_tokens=buffer_tokens, device=device)
    n_tokens = source.n_tokens if n_tokens is None else check_positive_int("n_tokens", n_tokens)
    if n_tokens < source.batch_size:
        raise ValueError(f"n_tokens: expected at least batch_size={source.batch_size} tokens, got {n_tokens}")
    n_steps = n_tokens // source.batch_size
    if dead_window is None:
        dead_window = default_dead_window(n_steps, source.batch_size)
    elif (n_steps - 1) * source.batch_size < dead_window:
        warnings.warn(f"dead_window: {dead_window} tokens is longer than the run ({n_steps} steps of "
                      f"{source.batch_size} tokens): no latent is ever counted dead, so AuxK and resampling never "
                      "act, and the history's dead_fraction is NaN (unknown) throughout", DeadWindowWarning,
                      stacklevel=2)
    check_fits(n_elements=12 * n_steps, itemsize=4, argument="n_tokens",
               what=f"the training history of {n_steps} steps")
    cfg = SAEConfig(**{"d_in": source.d_in, "d_sae": d_sae, "architecture": architecture, "k": k,
                       "l1_coefficient": l1_coefficient, **_provenance(acts), **config, "device": str(device)})
    check_trainable_dtype(cfg.dtype)
    sae = AttentionSAE(cfg, seed=seed, device=device)
    arch = sae.architecture
    if init is None:
        init = "data" if getattr(arch, "ranks_by_decoder_norm", False) else "random"
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr, betas=tuple(betas))
    generator = torch.Generator().manual_seed(seed)
    since_fired = torch.zeros(cfg.d_sae, dtype=torch.long, device=device)
    history: dict[str, torch.Tensor] = {}
    start = 0
    acts_mean = source.mean()  # also tells a checkpoint of other activations (of the same shape) apart
    run = {"config": cfg.to_dict(), "seed": seed, "lr": lr, "lr_decay": lr_decay, "batch_size": source.batch_size,
           "n_steps": n_steps, "betas": list(betas), "dead_window": dead_window, "resample_every": resample_every,
           "buffer_tokens": buffer_tokens, "max_grad_norm": max_grad_norm, "n_tokens_in_acts": source.n_tokens,
           "acts_mean": acts_mean.tolist(), "init": init}
    # checked now, not at the first checkpoint after training
    folder = check_folder("checkpoint_dir", checkpoint_dir) if checkpoint_dir is not None else None
    saved = _load_checkpoint(folder, run) if folder is not None and resume else None
    if saved is not None:
        sae.load_state_dict(saved["sae"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        since_fired.copy_(saved["since_fired"])
        history = {name: t.to(device) for name, t in saved["history"].items()}
        start = int(saved["step"])
    else:
        with torch.no_grad():  # start b_dec at the data mean: the first steps then fit structure, not offset
            sae.b_dec.copy_(acts_mean)
        if init == "data":  # the first d_sae tokens of the (seeded) data order
            first = itertools.islice(source.batches(), -(-cfg.d_sae // source.batch_size))
            init_from_data(sae, torch.cat(list(first))[:cfg.d_sae], acts_mean)

    bar = tqdm(total=n_steps, initial=start, desc=f"training {architecture} SAE", unit="step",
               disable=not progress)
    batches = source.batches(start)
    decay_start = n_steps - int(round(lr_decay * n_steps))
    for step in range(start, n_steps):
        x = next(batches).to(sae.W_enc.dtype)  # activations are stored float32; the SAE may be narrower
        if step >= decay_start:
            for group in optimizer.param_groups:
                group["lr"] = lr * (n_steps - step) / (n_steps - decay_start)
        dead = since_fired >= dead_window
        out = arch.training_loss(sae, x, dead)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        arch.before_step(sae)
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), max_grad_norm)
        optimizer.step()
        arch.after_step(sae)
        since_fired += x.shape[0]
        since_fired[out.fired] = 0
        if (step + 1) % resample_every == 0 and arch.resample(sae, dead, x, optimizer, generator):
            since_fired[dead] = 0
        with torch.no_grad():
            variance = (x - x.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)
            # before a latent can have gone dead_window tokens unfired, no latent can be dead: unknown, not 0
            filled = step * source.batch_size >= dead_window
            row = {"loss": out.loss, **out.terms, "l0": out.l0, "fvu": out.terms["mse"] / variance,
                   "dead_fraction": dead.float().mean() if filled else out.l0.new_tensor(float("nan"))}
            for name, value in row.items():
                history.setdefault(name, torch.zeros(n_steps, device=device))[step] = value.detach()
        bar.update(1)
        if folder is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == n_steps):
            _save_checkpoint(folder, {"run": run, "step": step + 1, "sae": sae.state_dict(),
                                      "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                                      "since_fired": since_fired.cpu(),
                                      "history": {n: t.cpu() for n, t in history.items()}})
        if callback is not None:
            callback(step + 1, sae)
    bar.close()
    with torch.no_grad():  # the batches after the last step: the same on a resumed run
        arch.finish(sae, (batch.to(sae.W_enc.dtype) for batch in batches))
    if getattr(arch, "ranks_by_decoder_norm", False):
        from workbench.sae.topk import fold_decoder_norms

        fold_decoder_norms(sae)  # unit decoder rows: ranking by pre * norm is ranking by pre (SAELens layout)
    sae.eval()
    data = {name: ("step", t.cpu().numpy()) for name, t in history.items()}
    hist = xr.Dataset(data, coords={"step": np.arange(n_steps), "tokens": ("step", (np.arange(n_steps) + 1)
                                                                           * source.batch_size)},
                      attrs={"architecture": architecture, "d_sae": d_sae, "k": -1 if k is None else k,
                             "lr": lr, "lr_decay": lr_decay, "batch_size": source.batch_size, "seed": seed,
                             "max_grad_norm": -1.0 if max_grad_norm is None else max_grad_norm, "init": init,
                             "dead_window": dead_window,
                             "workbench_version": __version__})
    return sae, hist


def train_layers(model, tokens: torch.Tensor, layers: Iterable[int] | None = None, *, cache=None,
                 forward_batch_size: int = 32, checkpoint_dir: str | os.PathLike | None = None,
                 **kw) -> dict[int, tuple[AttentionSAE, xr.Dataset]]:
    """One ``hook_z`` SAE per layer, all from a single cached forward pass.

    Parameters
    ----------
    model : TransformerBridge
    tokens : torch.LongTensor [seq, pos]
    layers : iterable of int, optional
        Default: every layer.
    cache : HookCache or path, optional
        Where the activations are cached; default the user cache folder.
    forward_batch_size : int
        Sequences per forward pass while caching.
    checkpoint_dir : str or PathLike, optional
        Checkpoints go to ``<checkpoint_dir>/layer_<L>``.
    **kw
        Passed to :func:`train` (``d_sae``, ``k``, ``architecture``...).

    Returns
    -------
    dict
        ``{layer: (sae, history)}``.

    Examples
    --------
    >>> import tempfile
    >>> from workbench.models import load_model, tokenize
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> tokens = tokenize(model, ["def f(x):\\n    return x"] * 8, seq_len=16)
    >>> out = train_layers(model, tokens, cache=tempfile.mkdtemp(), d_sae=64, k=4, batch_size=64, progress=False)
    >>> sorted(out), out[1][0].cfg.hook_name
    ([0, 1], 'blocks.1.attn.hook_z')
    """
    from workbench.hooks import HookCache

    layers = list(range(model.cfg.n_layers)) if layers is None else [check_layer(model, layer) for layer in layers]
    if not layers:
        raise ValueError("layers: expected at least one layer, got an empty list")
    if not isinstance(cache, HookCache):
        cache = HookCache(cache)
    hooks = [f"blocks.{layer}.attn.hook_z" for layer in layers]
    ds = cache.activations(model, tokens, hooks, batch_size=forward_batch_size,
                           progress=kw.get("progress", True))
    out = {}
    for layer, hook in zip(layers, hooks):
        folder = None if checkpoint_dir is None else Path(checkpoint_dir) / f"layer_{layer}"
        out[layer] = train(ds[hook], checkpoint_dir=folder, **kw)
    return out
