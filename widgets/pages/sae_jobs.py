"""The work the Attention SAEs page runs in background jobs: train, analyse, explore and steer a prompt.

Each function takes plain values (never the page) and a :class:`~widgets.jobs.Job`
to report to, so it runs in the job's thread without touching any widget.
SAEs are kept in the SAELens folder layout (:func:`workbench.sae.save_sae`)
under :func:`sae_folder`; an analysis is saved in the result store under
:func:`analysis_key`.

Examples
--------
>>> sae_name("tiny-attn-2l", 1, {"architecture": "standard", "d_sae": 64, "l1_coefficient": 0.5})[:20]
'standard-d64-l1_0.5-'
"""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import xarray as xr

from widgets.jobs import Job
from widgets.results import ResultStore, result_key
from workbench.sae.browse import analysis_tokens, hook_z_cat, prompt_features, sae_dashboard
from workbench.sae.history import load_training_record, save_training_record, train_with_held_out

if TYPE_CHECKING:
    from workbench.sae import SteeringResult

ARCHITECTURES = ("topk", "batchtopk", "matryoshka", "standard", "jumprelu")
K_SPARSE = ("topk", "batchtopk", "matryoshka")  # sparsity set by k, not by l1_coefficient
TRAIN_SETTINGS = ("architecture", "d_sae", "k", "l1_coefficient", "lr", "n_seq", "seq_len", "n_tokens", "seed")
BATCH_SIZE = 256
N_PROBES = 40  # held-out measurements while training
PROBE_SEQ = 8  # held-out windows those are measured on
STEER_NEW = 16  # tokens of the continuations with and without steering

# TransformerLens keeps hooks on the module itself: two sessions must not run the same model at once.
MODEL_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def shared_model(name: str):
    """The model ``name`` on the CPU, loaded once for every session (the last two models used are kept)."""
    from workbench.models import load_model

    return load_model(name, device="cpu")


def check_layer(model, layer: int) -> int:
    """``layer`` when ``model`` has it, else a ValueError a user can act on."""
    n_layers = model.cfg.n_layers
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer: expected a layer in [0, {n_layers}) of {model.workbench_id}, got {layer}")
    return layer


def sae_folder(cache_dir: str | Path, model: str, layer: int) -> Path:
    """Where the page keeps the SAEs of ``model``'s ``blocks.{layer}.attn.hook_z``.

    Examples
    --------
    >>> sae_folder("/c", "tiny-attn-2l", 1).as_posix()
    '/c/saes/tiny-attn-2l/layer_1'
    """
    return Path(cache_dir) / "saes" / re.sub(r"[^\w.-]+", "_", str(model)).strip("_") / f"layer_{layer}"


def sae_name(model: str, layer: int, settings: dict) -> str:
    """Folder name of the SAE trained with ``settings`` (see ``TRAIN_SETTINGS``) on ``model`` at ``layer``."""
    sparsity = f"k{settings['k']}" if settings["architecture"] in K_SPARSE \
        else f"l1_{settings['l1_coefficient']:g}"
    digest = result_key("sae-train", {"model": model, "layer": layer, **settings})[-8:]
    return f"{settings['architecture']}-d{settings['d_sae']}-{sparsity}-{digest}"


def analysis_key(folder: Path, model: str, layer: int, eval_seq: int, seq_len: int) -> str | None:
    """Result-store key of the analysis of the SAE in ``folder`` (None when it has no weights).

    The weights' modification time and size are part of it, so a retrained
    or replaced SAE is never shown with the analysis of its predecessor.
    """
    from workbench.sae.io import WEIGHTS_FILE

    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        return None
    stamp = weights.stat()
    return result_key("sae", {"model": model, "layer": layer, "sae": folder.name,
                              "weights": [stamp.st_mtime_ns, stamp.st_size], "eval_seq": eval_seq,
                              "seq_len": seq_len})


def load_and_check(job: Job, model_name: str, layer: int) -> int:
    """Load the model (for the jobs that follow) and check it has ``layer``."""
    job.report(None, f"loading {model_name}")
    return check_layer(shared_model(model_name), layer)


def _analysis(job: Job, start: float, model, sae, name: str, layer: int, eval_seq: int, seq_len: int,
              history: xr.Dataset | None) -> xr.Dataset:
    """:func:`~workbench.sae.sae_dashboard` of ``sae`` on ``eval_seq`` held-out windows, with its training
    ``history`` when there is one; reports from ``start`` to the end of the job."""
    def progress(fraction: float, message: str) -> None:
        job.check()
        job.report(start + (1 - start) * fraction, f"analysing {name}: {message}")

    with MODEL_LOCK:
        tokens = analysis_tokens(model, eval_seq, seq_len)
        ds = sae_dashboard(sae, model, layer, tokens, progress=progress)
    ds = ds.assign_attrs(model=str(model.workbench_id), sae=name)
    return ds if history is None else xr.merge([ds, history], combine_attrs="override")


def analyse(job: Job, store: ResultStore, key: str, model_name: str, layer: int, folder: Path, eval_seq: int,
            seq_len: int) -> xr.Dataset:
    """Compute everything the page shows for the SAE in ``folder``; save it under ``key`` (:func:`analysis_key`)."""
    from workbench.sae import load_sae

    job.report(None, f"loading {model_name} and {folder.name}")
    model = shared_model(model_name)
    check_layer(model, layer)
    ds = _analysis(job, 0.0, model, load_sae(folder), folder.name, layer, eval_seq, seq_len,
                   load_training_record(folder))
    store.save(key, ds)
    return ds


def train(job: Job, store: ResultStore, cache_dir: Path, model_name: str, layer: int, settings: dict,
          folder: Path, eval_seq: int) -> xr.Dataset:
    """Train an SAE with ``settings``, publishing its held-out curve; save it in ``folder``, then analyse it.

    The held-out curve (``(step, tokens, fvu, l0)`` points, see
    :meth:`~widgets.jobs.Job.publish`) is measured every few steps on
    ``PROBE_SEQ`` held-out windows; a cancel stops at the next step and saves nothing.
    """
    from workbench.hooks import HookCache, hooks_root
    from workbench.models import corpus_tokens
    from workbench.sae import hook_z_name, save_sae

    n_steps = max(1, settings["n_tokens"] // BATCH_SIZE)
    sparse_k = settings["architecture"] in K_SPARSE
    job.report(None, f"loading {model_name}")
    model = shared_model(model_name)
    check_layer(model, layer)
    hook = hook_z_name(layer)
    job.report(None, f"caching {hook} on {settings['n_seq']} x {settings['seq_len']} tokens")
    with MODEL_LOCK:
        tokens = corpus_tokens(model, settings["n_seq"], settings["seq_len"], split="train")
        acts = HookCache(hooks_root(cache_dir)).activations(model, tokens, [hook], progress=False)[hook]
        probe = hook_z_cat(model, corpus_tokens(model, PROBE_SEQ, settings["seq_len"]), layer)

    def measured(points: tuple) -> None:
        step, _, fvu, l0 = points[-1]
        job.publish(points)
        job.report(0.6 * step / n_steps, f"training: step {step}/{n_steps}, held-out FVU {fvu:.3f}, L0 {l0:.1f}")

    sae, record = train_with_held_out(
        acts, probe, n_tokens=settings["n_tokens"], batch_size=BATCH_SIZE, n_points=N_PROBES,
        callback=lambda step, sae: job.check(), on_point=measured, d_sae=settings["d_sae"],
        architecture=settings["architecture"], k=settings["k"] if sparse_k else None,
        l1_coefficient=None if sparse_k else settings["l1_coefficient"], lr=settings["lr"],
        seed=settings["seed"], progress=False, device="cpu", model_name=model_name)
    save_sae(sae, folder)
    save_training_record(folder, record)
    ds = _analysis(job, 0.6, model, sae, folder.name, layer, eval_seq, settings["seq_len"], record)
    store.save(analysis_key(folder, model_name, layer, eval_seq, settings["seq_len"]), ds)
    return ds


def explore_prompt(job: Job, model_name: str, layer: int, folder: Path, text: str) -> xr.Dataset:
    """:func:`~workbench.sae.prompt_features` of ``text`` for the SAE in ``folder``."""
    from workbench.sae import load_sae

    job.report(None, "features of the prompt")
    model, sae = shared_model(model_name), load_sae(folder)
    with MODEL_LOCK:
        return prompt_features(sae, model, check_layer(model, layer), text)


def steer_prompt(job: Job, model_name: str, layer: int, folder: Path, feature: int, scale: float,
                 text: str) -> "SteeringResult":
    """:func:`~workbench.sae.steer` along ``feature`` of the SAE in ``folder`` on ``text``."""
    from workbench.sae import load_sae, steer

    job.report(None, f"steering feature {feature} x {scale:g}")
    model, sae = shared_model(model_name), load_sae(folder)
    with MODEL_LOCK:
        return steer(model, sae, check_layer(model, layer), feature, scale, text=text, n_new=STEER_NEW)
