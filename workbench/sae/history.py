"""Training an SAE with a held-out curve, and the record of it kept beside the SAE.

:func:`workbench.sae.train` logs each step's loss, L0 and FVU *of the training
batch*. A browser also wants to see the SAE generalise while it trains:
:func:`train_with_held_out` measures the fraction of variance unexplained and
L0 on held-out activations (:func:`held_out_fvu_l0`) at evenly spaced steps,
and hands every new point to a callback (a live curve).
:func:`training_record` keeps both curves in one Dataset, with ``train_``
and ``probe_`` names so it merges into a :func:`~workbench.sae.sae_dashboard`
result; :func:`save_training_record` writes it beside the SAE's SAELens
folder (SAELens ignores the extra file) and :func:`training_history` splits
it back into what :func:`workbench.figures.sae.training_curves` draws.

Examples
--------
>>> import torch
>>> _ = torch.manual_seed(0)
>>> acts, held_out = torch.randn(4096, 16), torch.randn(512, 16)
>>> sae, record = train_with_held_out(acts, held_out, n_tokens=4096, batch_size=256, n_points=4, d_sae=32, k=4,
...                                   progress=False)
>>> record["probe_step"].values.tolist(), record.sizes["train_step"]
([4, 8, 12, 16], 16)
>>> history, held = training_history(record)
>>> bool(held["fvu"][-1] < held["fvu"][0])
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import xarray as xr

from workbench.sae.training import train

HISTORY_FILE = "history.json"  # beside cfg.json; SAELens ignores it


@torch.no_grad()
def held_out_fvu_l0(sae, acts: torch.Tensor) -> tuple[float, float]:
    """Fraction of variance unexplained and mean L0 of ``sae`` on activations ``acts`` [n, d_in].

    FVU is ``E||x - x_hat||^2 / E||x - E x||^2`` (``1 -`` explained variance).

    Examples
    --------
    >>> import torch
    >>> from workbench.sae import AttentionSAE, SAEConfig
    >>> sae = AttentionSAE(SAEConfig(d_in=4, d_sae=8, k=2))
    >>> fvu, l0 = held_out_fvu_l0(sae, torch.randn(64, 4))
    >>> l0 <= 2.0
    True
    """
    variance = (acts - acts.mean(0)).pow(2).sum(-1).mean()
    f = sae.encode(acts)
    return float((sae.decode(f) - acts).pow(2).sum(-1).mean() / variance), float((f > 0).sum(-1).float().mean())


def train_with_held_out(acts, held_out: torch.Tensor, *, n_tokens: int, batch_size: int, n_points: int = 40,
                        callback: Callable[[int, object], None] | None = None,
                        on_point: Callable[[tuple], None] | None = None, **train_kwargs) -> tuple[object, xr.Dataset]:
    """:func:`workbench.sae.train`, measuring :func:`held_out_fvu_l0` on ``held_out`` as it goes.

    Parameters
    ----------
    acts : torch.Tensor [n, d_in] or xr.DataArray
        Training activations, as :func:`workbench.sae.train` takes them.
    held_out : torch.Tensor [m, d_in]
        Activations the SAE never trains on.
    n_tokens, batch_size : int
        Training budget and batch, passed on to :func:`~workbench.sae.train`.
    n_points : int
        Held-out measurements: every ``n_steps // n_points`` steps, and at the last step.
    callback : callable, optional
        ``callback(step, sae)`` after every step, before a measurement (it may raise to stop).
    on_point : callable, optional
        ``on_point(points)`` after each measurement, with every point so far
        as ``(step, tokens, fvu, l0)`` tuples.
    **train_kwargs
        The rest of :func:`~workbench.sae.train`'s arguments (``d_sae``, ``k``, ``lr`` ...).

    Returns
    -------
    (AttentionSAE, xr.Dataset)
        The SAE and its :func:`training_record`.

    Examples
    --------
    >>> import torch
    >>> seen = []
    >>> _, record = train_with_held_out(torch.randn(1024, 8), torch.randn(64, 8), n_tokens=1024, batch_size=256,
    ...                                 n_points=2, on_point=seen.append, d_sae=8, k=2, progress=False)
    >>> [len(points) for points in seen], record["probe_tokens"].values.tolist()
    ([1, 2], [512, 1024])
    """
    n_steps = max(1, n_tokens // batch_size)
    every = max(1, n_steps // n_points)
    points: list[tuple] = []

    def step_done(step: int, sae) -> None:
        if callback is not None:
            callback(step, sae)
        if step % every and step != n_steps:
            return
        fvu, l0 = held_out_fvu_l0(sae, held_out)
        points.append((step, step * batch_size, fvu, l0))
        if on_point is not None:
            on_point(tuple(points))

    sae, history = train(acts, n_tokens=n_tokens, batch_size=batch_size, callback=step_done, **train_kwargs)
    return sae, training_record(history, points)


def held_out_curve(points, prefix: str = "") -> xr.Dataset:
    """Held-out points ``(step, tokens, fvu, l0)`` as a curve over ``step``, as training histories are.

    Examples
    --------
    >>> curve = held_out_curve([(1, 256, 0.9, 4.0), (2, 512, 0.5, 3.5)])
    >>> curve["fvu"].values.tolist(), curve["tokens"].values.tolist()
    ([0.9, 0.5], [256, 512])
    """
    steps, tokens, fvu, l0 = (np.array(col) for col in zip(*points)) if len(points) else ([],) * 4
    return xr.Dataset({f"{prefix}fvu": (f"{prefix}step", fvu), f"{prefix}l0": (f"{prefix}step", l0)},
                      coords={f"{prefix}step": steps, f"{prefix}tokens": (f"{prefix}step", tokens)})


def training_record(history: xr.Dataset, points) -> xr.Dataset:
    """A :func:`workbench.sae.train` history and its held-out points, as :func:`sae_dashboard` results keep them.

    The history's ``fvu``/``l0`` become ``train_fvu``/``train_l0`` over
    ``train_step``, the points ``probe_fvu``/``probe_l0`` over ``probe_step``;
    :func:`training_history` splits them again.

    Examples
    --------
    >>> import torch
    >>> from workbench.sae import train
    >>> _, history = train(torch.randn(512, 8), d_sae=8, k=2, batch_size=256, n_tokens=512, progress=False)
    >>> record = training_record(history, [(2, 512, 0.8, 2.0)])
    >>> record.sizes["train_step"], record["probe_fvu"].values.tolist()
    (2, [0.8])
    """
    train = xr.Dataset({"train_fvu": ("train_step", history["fvu"].values),
                        "train_l0": ("train_step", history["l0"].values)},
                       coords={"train_step": history["step"].values,
                               "train_tokens": ("train_step", history["tokens"].values)})
    return xr.merge([train, held_out_curve(points, prefix="probe_")])


def training_history(ds: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset | None] | None:
    """``(history, held_out)`` of a :func:`training_record` (or a result holding one), None without one.

    Both as :func:`workbench.figures.sae.training_curves` takes them.

    Examples
    --------
    >>> import xarray as xr
    >>> record = xr.Dataset({"train_fvu": ("train_step", [0.5]), "train_l0": ("train_step", [3.0])},
    ...                     coords={"train_step": [1], "train_tokens": ("train_step", [256])})
    >>> history, held_out = training_history(record)
    >>> list(history.data_vars), held_out, training_history(xr.Dataset())
    (['fvu', 'l0'], None, None)
    """
    if "train_fvu" not in ds:
        return None
    history = ds[["train_fvu", "train_l0"]].rename({"train_fvu": "fvu", "train_l0": "l0", "train_step": "step",
                                                     "train_tokens": "tokens"})
    held = None
    if "probe_fvu" in ds:
        held = ds[["probe_fvu", "probe_l0"]].rename({"probe_fvu": "fvu", "probe_l0": "l0", "probe_step": "step",
                                                     "probe_tokens": "tokens"})
    return history, held


def save_training_record(folder: str | Path, record: xr.Dataset) -> Path:
    """Write a :func:`training_record` beside the SAE saved in ``folder`` (as ``history.json``).

    Examples
    --------
    >>> import tempfile
    >>> record = held_out_curve([(1, 256, 0.9, 4.0)], prefix="probe_")
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_training_record(folder, record)
    >>> load_training_record(folder).identical(record)
    True
    """
    path = Path(folder) / HISTORY_FILE
    path.write_text(json.dumps(record.to_dict(data="list")))
    return path


def load_training_record(folder: str | Path) -> xr.Dataset | None:
    """The :func:`training_record` saved beside the SAE in ``folder``; None when there is none.

    Examples
    --------
    >>> import tempfile
    >>> load_training_record(tempfile.mkdtemp()) is None
    True
    """
    path = Path(folder) / HISTORY_FILE
    return xr.Dataset.from_dict(json.loads(path.read_text())) if path.is_file() else None
