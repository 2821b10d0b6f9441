"""Every figure builder of :mod:`workbench.figures`, found automatically, with a small real input for each.

:func:`builders` walks the figure modules and returns every public function
whose return annotation is a plotly ``Figure`` (the template helpers excepted).
:data:`INPUTS` gives each builder, by ``"module.function"`` name, a function
that makes its arguments from small real results: the bundled ``tiny-attn-2l``
model, synthetic connectome traces, a four-epoch collapse run (two results whose
computation takes half a minute, a compression sweep and a minority-collapse
sweep, are given in their documented layout instead). The standard's
test (``tests/core/test_figure_standard.py``) builds every builder on these
inputs, so a builder missing here fails it; ``scripts/contact_sheet.py``
exports the same figures to PNG for a look.

Inputs are computed once per process (``functools.cache``), so the test and
the contact sheet pay for each once; loading the bundled model dominates.

Examples
--------
>>> names = [name for name, _ in builders()]
>>> "spectra.esd_figure" in names and "template.new_figure" not in names
True
>>> set(names) <= set(INPUTS)
True
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from typing import Any, Callable

import numpy as np
import plotly.graph_objects as go
import xarray as xr

#: Figure modules whose functions are helpers, not builders.
HELPER_MODULES = ("template", "export", "gallery")


def builders() -> list[tuple[str, Callable[..., go.Figure]]]:
    """``(name, function)`` of every public figure builder, ``name`` as ``"module.function"``, sorted.

    A builder is a public function defined in a module of
    :mod:`workbench.figures` (not :data:`HELPER_MODULES`) whose return
    annotation names ``go.Figure``.

    Examples
    --------
    >>> dict(builders())["collapse.nc_vs_layer"].__name__
    'nc_vs_layer'
    """
    import workbench.figures as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in HELPER_MODULES:
            continue
        module = importlib.import_module(f"workbench.figures.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(obj) or obj.__module__ != module.__name__:
                continue
            returns = inspect.signature(obj).return_annotation
            if returns is go.Figure or (isinstance(returns, str) and returns in ("go.Figure", "Figure")):
                found.append((f"{info.name}.{name}", obj))
    return sorted(found, key=lambda pair: pair[0])


# ---------------------------------------------------------------------------------------------- shared inputs


@functools.cache
def _model():
    from workbench.models import load_model

    return load_model("tiny-attn-2l", device="cpu")


@functools.cache
def _tokens():
    from workbench.sae import analysis_tokens

    return analysis_tokens(_model(), 4, 16)


@functools.cache
def _sae(k: int = 2):
    import torch

    from workbench.sae import AttentionSAE, SAEConfig

    torch.manual_seed(0)
    return AttentionSAE(SAEConfig(d_in=128, d_sae=8, k=k))


@functools.cache
def _sae_dashboard() -> xr.Dataset:
    from workbench.sae import sae_dashboard

    return sae_dashboard(_sae(), _model(), 1, _tokens(), prompt="def main(): return 0")


@functools.cache
def _prompt() -> xr.Dataset:
    from workbench.sae import unpack_prompt

    return unpack_prompt(_sae_dashboard())


@functools.cache
def _connectome() -> xr.Dataset:
    from workbench.connectome import dynamic_connectome, synthetic

    return dynamic_connectome(synthetic(16, 3, 240, 2).traces, rank=None, ranks=(1, 2, 3), n_restarts=2,
                              device="cpu", progress=False)


@functools.cache
def _layer_spectra() -> xr.Dataset:
    from workbench.spectra import layer_spectra

    return layer_spectra(_model(), progress=False, device="cpu")


@functools.cache
def _collapse_run() -> xr.Dataset:
    from workbench.collapse import run_experiment

    return run_experiment(hidden=(16, 16), n_linear=2, epochs=4, record_every=1, progress=False, device="cpu")


# ---------------------------------------------------------------------------------------------- per builder


def _nc_metrics():
    from workbench.collapse import nc_metrics

    rng = np.random.default_rng(0)
    means = np.eye(4) * 3
    x = means.repeat(10, axis=0) + 0.3 * rng.standard_normal((40, 4))
    return nc_metrics(x, np.arange(40) // 10, device="cpu")


def _sae_feature_dashboard():
    ds = _sae_dashboard()
    from workbench.sae import most_active_feature

    feature = most_active_feature(ds)
    dfa = ds["dfa_top"].sel(feature=[feature]).expand_dims("seq", axis=1)
    seq = int(ds["seq"].sel(feature=feature).isel(example=0))
    tokens = _model().to_str_tokens(_tokens()[seq]) if hasattr(_model(), "to_str_tokens") else None
    return (ds, feature), dict(head_share=ds["head_share"], dfa=dfa, firing=ds["feature_activation"].sel(feature=feature),
                               tokens=tokens)


def _l0_ce():
    from workbench.sae import evaluate

    rows = []
    for layer in (0, 1):
        per_k = [evaluate(_sae(k), _model(), _tokens()[:2], layer) for k in (2, 4)]
        rows.append(xr.concat(per_k, dim="k").assign_coords(k=[2, 4]))
    return (xr.concat(rows, dim="layer").assign_coords(layer=[0, 1]),), {}


def _training():
    from workbench.sae import train
    from workbench.sae.browse import hook_z_cat

    acts = hook_z_cat(_model(), _tokens(), 1)
    _, history = train(acts, d_sae=16, k=2, lr=3e-3, batch_size=16, n_tokens=16 * 12, progress=False, device="cpu")
    return (history,), {}


def _steering():
    from workbench.sae import steer

    return (steer(_model(), _sae(), 1, 2, 30.0, text="import os", n_new=0),), {}


def _head_norms():
    from workbench.hooks.cache import compute_hooks

    model = _model()
    hooks = [f"blocks.{i}.attn.hook_z" for i in range(model.cfg.n_layers)]
    out = compute_hooks(model, _tokens(), hooks, "float32")
    z = np.stack([out[h] for h in hooks])
    return (xr.DataArray(z, dims=("layer", "seq", "pos", "head", "d_head"),
                         coords={"layer": np.arange(len(hooks))}),), {}


def _induction():
    from workbench.models import induction_scores

    return (induction_scores(_model(), n_seqs=2, period=10),), {}


def _esd():
    from workbench.spectra import rank_metrics

    ds = _layer_spectra()
    i = int(np.flatnonzero(ds["matrix"].values == "blocks.0.attn.W_V")[0]) \
        if "blocks.0.attn.W_V" in ds["matrix"].values else 0
    sigma = ds["singular_value"].isel(matrix=i)
    sigma = sigma[np.isfinite(sigma.values)].rename(index="index")
    shape = (int(ds["rows"].values[i]), int(ds["cols"].values[i]))
    spec = xr.DataArray(sigma.values, dims=("index",), attrs={"rows": shape[0], "cols": shape[1]})
    return (spec, rank_metrics(spec)), {}


def _truncation():
    from workbench.spectra import truncation_curve

    W = np.random.default_rng(0).standard_normal((64, 32))
    return ({"svd": truncation_curve(W)},), {}


def _frontier():
    # The layout of compression_sweep's result (tested in tests/spectra); the sweep itself takes ~12 s per ratio.
    params_kept = np.array([[0.3, 0.5, 0.8], [0.3, 0.5, 0.8]])
    loss = np.array([[6.9, 5.8, 4.9], [5.6, 5.0, 4.6]])
    return (xr.Dataset({"loss": (("method", "ratio"), loss), "params_kept": (("method", "ratio"), params_kept)},
                       coords={"method": ["svd", "whitened"], "ratio": [0.3, 0.5, 0.8]},
                       attrs={"baseline_loss": 4.44}),), {}


def _minority():
    # The layout of minority_collapse's result; training the UFM at every ratio takes ~30 s, too long here.
    ratio = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 64.0])
    cosine = -1 / 3 + (4 / 3) * (1 - 1 / np.sqrt(ratio))
    return (xr.Dataset({"minority_cosine": ("ratio", cosine)}, coords={"ratio": ratio},
                       attrs={"k_majority": 2, "k_minority": 2}),), {}


def _consensus():
    from workbench.connectome.consensus import consensus_communities

    rng = np.random.default_rng(0)
    w = np.kron(np.eye(3), np.ones((5, 5))) + 0.2 * rng.random((15, 15))
    return (consensus_communities((w + w.T) / 2, seeds=[0, 1, 2]),), {}


def _late_token(prompt: xr.Dataset) -> int:
    """The position, past the first three, where most features fire: a DFA with several sources to read."""
    active = (prompt["activation"].values > 0).sum(axis=0)
    return 3 + int(np.argmax(active[3:]))


def _traces():
    from workbench.connectome import synthetic

    return (synthetic(16, 3, 240, 2).traces,), {"animal": 0}


#: ``"module.function"`` -> a function returning ``(args, kwargs)`` for that builder.
INPUTS: dict[str, Callable[[], tuple[tuple, dict[str, Any]]]] = {
    "collapse.class_means_3d": lambda: ((_nc_metrics(),), {"target": "etf"}),
    "collapse.gram_heatmap": lambda: ((_nc_metrics(),), {"target": "etf"}),
    "collapse.minority_collapse_plot": _minority,
    "collapse.nc_vs_epoch": lambda: ((_collapse_run(),), {}),
    "collapse.nc_vs_layer": lambda: ((_collapse_run(),), {}),
    "communities.coassignment_plot": _consensus,
    "connectome.community_graph": lambda: ((_connectome(),), {"component": 0}),
    "connectome.component_panel": lambda: ((_connectome(),), {"component": 0}),
    "connectome.rank_sweep_plot": lambda: ((_connectome(),), {}),
    "connectome.restart_similarity_plot": lambda: ((_connectome(),), {}),
    "connectome.top_pairs_plot": lambda: ((_connectome(),), {"component": 0, "k": 5}),
    "models.head_norms": _head_norms,
    "models.induction_heatmap": _induction,
    "sae.feature_dashboard": _sae_feature_dashboard,
    "sae.firing_histogram": lambda: ((_sae_dashboard(),), {}),
    "sae.head_family_matrix": lambda: ((_sae_dashboard()[["head_counts"]].expand_dims(layer=[1]), 1), {}),
    "sae.l0_ce_frontier": _l0_ce,
    "sae.prompt_heatmap": lambda: ((_prompt(),), {}),
    "sae.token_dfa": lambda: ((_prompt(), _late_token(_prompt())), {}),
    "sae.training_curves": _training,
    "sae_steering.steering_bars": _steering,
    "spectra.compression_frontier": _frontier,
    "spectra.esd_figure": _esd,
    "spectra.head_spectra_figure": lambda: ((_layer_spectra(),), {"kind": "ov"}),
    "spectra.metric_heatmap": lambda: ((_layer_spectra(),), {"metric": "alpha"}),
    "spectra.truncation_figure": _truncation,
    "traces.traces_heatmap": _traces,
}


def build(name: str) -> go.Figure:
    """The figure of builder ``name`` (``"module.function"``) on its input from :data:`INPUTS`.

    Examples
    --------
    >>> build("spectra.truncation_figure").layout.xaxis.title.text
    'rank k'
    """
    if name not in INPUTS:
        raise ValueError(f"name: expected a builder with an input in INPUTS ({sorted(INPUTS)}), got {name!r}")
    function = dict(builders())[name]
    args, kwargs = INPUTS[name]()
    return function(*args, **kwargs)
