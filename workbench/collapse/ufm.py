"""The unconstrained-feature model (UFM) and its deep linear version, trained numerically.

Features are free parameters ``H`` (dim, N), one column per sample, fed through
M linear layers ``W_M ... W_1`` (the last maps to the K classes), with weight
decay on every layer and on the features (Mixon et al.; Dang et al. 2023).
Its optimum is known in closed form for MSE
(:func:`~workbench.collapse.imbalanced_geometry`), which makes it the test bed
for the metrics and the reference point for real networks.

For depth M >= 2 the objective has spurious local minima (the zero point,
classes wrongly switched off or sharing a direction) where the gradient
vanishes, so "converged" proves nothing: :func:`train_ufm` searches from
balanced starts with restarts and per-class escapes
(:mod:`workbench.collapse._ufm_solver`), then checks the bias-free MSE result
against the closed form and warns (:class:`UFMOptimumWarning`) when it misses.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

import workbench
from workbench.device import one_cpu_thread, resolve_device
from workbench.collapse._ufm_solver import (
    ESCAPE_GAIN,
    ESCAPE_STEPS,
    ESCAPES,
    balanced_start,
    class_is_on,
    layer_scale,
    minimise,
    objective,
    switch_class,
)
from workbench.collapse._validate import (
    check_choice,
    check_count,
    check_counts,
    check_dense_size,
    check_depth,
    check_positive,
)
from workbench.collapse.theory import imbalanced_geometry

LOSSES = ("mse", "ce")
OPTIMIZERS = ("lbfgs", "gd")


class UFMOptimumWarning(RuntimeWarning):
    """:func:`train_ufm` ended above the closed-form global optimum: its geometry is not the optimum's."""


def _closed_form_objective(counts: np.ndarray, m: int, lam_w: float, lam_h: float, loss: str,
                           bias: bool) -> tuple[float, str]:
    """The global optimum's objective where a closed form exists (bias-free MSE), else NaN and why not."""
    if loss != "mse" or bias:
        setting = "cross-entropy loss" if loss != "mse" else "a bias"
        return np.nan, f"none: no closed form for {setting} (imbalanced_geometry covers the bias-free MSE UFM)"
    return float(imbalanced_geometry(counts, lam_w, lam_h, m).objective), "imbalanced_geometry (Dang et al. 2023)"


def train_ufm(n_per_class: Sequence[int], dim: int, depth: int = 1, lambda_W: float = 5e-4,
              lambda_H: float = 5e-4, loss: str = "mse", bias: bool = False, steps: int = 3000, seed: int = 0, *,
              optimizer: str = "lbfgs", lr: float = 1.0, init_scale: float = 1.0, n_starts: int = 2,
              escape: bool = True, tol: float = 1e-14, theory_rtol: float = 1e-6,
              device: str | torch.device | None = None, progress: bool = False) -> xr.Dataset:
    """Minimise the (deep linear) unconstrained-feature model in float64, to its global optimum.

    The objective is ``fit(W_M ... W_1 H + b, Y) + (lambda_W/2) sum_m ||W_m||^2
    + (lambda_H/2) ||H||^2`` with ``fit`` either ``(1/2N)||.||_F^2`` against
    one-hot targets (``"mse"``) or the mean cross-entropy (``"ce"``); the bias,
    when present, is not decayed.

    For depth M >= 2 the zero point and every point with some classes wrongly
    switched off (or on) are local minima with a vanishing gradient, so a
    converged optimiser proves nothing. Each of ``n_starts`` starts is
    balanced (every layer ``s`` times an orthogonal map, ``s`` set by the
    counts and decays so that every class starts away from the zero basin);
    the best is then improved by escapes that switch each class off or on and
    re-optimise, kept only when the objective falls (see
    :mod:`workbench.collapse._ufm_solver`).

    For the bias-free MSE model the result is compared with the closed-form
    optimum (:func:`~workbench.collapse.imbalanced_geometry`): when the final
    objective differs from it by more than ``theory_rtol`` (relative), a
    :class:`UFMOptimumWarning` names both. Other settings have no closed form;
    the result says so in ``attrs["theory"]`` and ``theory_objective`` is NaN.

    Parameters
    ----------
    n_per_class : sequence of int
        Samples per class; the labels are ``0,...,0,1,...`` in blocks.
        Integral floats (``300.0``) are accepted.
    dim : int
        Feature and hidden width (at least the number of classes, so the
        orthogonal-frame optimum exists).
    depth : int
        Number M of linear layers.
    lambda_W, lambda_H : float
        Weight decay on each layer and on the features.
    loss : {"mse", "ce"}
    bias : bool
        Add an undecayed bias to the last layer.
    steps : int
        Iterations of the optimiser, per start and per escape.
    seed : int
        Seed of the random starts and escapes.
    optimizer : {"lbfgs", "gd"}
        L-BFGS with a strong-Wolfe line search (default: reaches the optimum to
        ~1e-10 in a few thousand steps) or plain gradient descent with step ``lr``.
    lr : float
        Step size (L-BFGS scales its first step by it).
    init_scale : float
        Multiplies the balanced start's layer scale ``s`` and feature norms.
    n_starts : int
        Independent balanced starts; the lowest objective is kept.
    escape : bool
        Try switching each class off/on from the best start (see above).
    tol : float
        L-BFGS stops when the largest gradient entry falls below it.
    theory_rtol : float
        Largest relative difference from the closed-form objective accepted
        without a :class:`UFMOptimumWarning`.
    device : str or torch.device, optional
        Default CUDA when available, else CPU.
    progress : bool
        Show a progress bar over starts and escapes.

    Returns
    -------
    xarray.Dataset
        ``features`` (sample, dim) with the ``label`` of each sample,
        ``classifier`` (class, dim) = the rows of the product W_M ... W_1,
        ``bias`` (class), ``layer_weight_sq_norm`` (layer), scalars
        ``objective``, ``grad_max`` (the largest gradient entry at the end),
        ``theory_objective`` (NaN without a closed form) and
        ``objective_gap`` (relative excess over it), and ``objective_trace``
        (step) of the run that produced the result. ``attrs`` name the
        ``theory``, the ``best_start`` and the number of ``escapes`` kept.

    Examples
    --------
    >>> ds = train_ufm([20, 10], dim=3, depth=1, lambda_W=1e-2, lambda_H=1e-2, steps=300, device="cpu")
    >>> ds.features.dims, ds.classifier.shape
    (('sample', 'dim'), (2, 3))

    The issue's depth-3 case, where a small random start ends at the zero point
    (objective 0.5), now reaches the closed form; its third class vanishes:

    >>> ds = train_ufm([20, 10, 2], dim=5, depth=3, lambda_W=0.02, lambda_H=0.02, device="cpu")
    >>> round(float(ds.objective), 6), round(float(ds.theory_objective), 6)
    (0.183333, 0.183333)
    """
    counts = check_counts(n_per_class)
    m = check_depth(depth)
    lam_w = check_positive("lambda_W", lambda_W)
    lam_h = check_positive("lambda_H", lambda_H)
    check_choice("loss", loss, LOSSES)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    k = counts.size
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < k:
        raise ValueError(f"dim: expected an int >= the number of classes ({k}), got {dim!r}")
    steps = check_count("steps", steps)
    n_starts = check_count("n_starts", n_starts)
    lr = check_positive("lr", lr)
    init_scale = check_positive("init_scale", init_scale)
    theory_rtol = check_positive("theory_rtol", theory_rtol)
    n = int(counts.sum())
    check_dense_size("dim", {"features (sample, dim)": (n, dim), "layers (depth, dim, dim)": (m, dim, dim)})
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(int(seed))
    labels = torch.repeat_interleave(torch.arange(k), torch.from_numpy(counts)).to(dev)
    onehot = torch.nn.functional.one_hot(labels, k).to(torch.float64)
    scale, h_norm = layer_scale(counts, m, lam_w, lam_h)
    scale, h_norm = init_scale * scale, init_scale * h_norm
    ends = np.concatenate([[0], np.cumsum(counts)])

    def run(H, layers, b, budget=steps):
        params = [H, *layers] + ([b] if bias else [])
        trace: list[float] = []
        value = minimise(params, lambda: objective(H, layers, b, labels, onehot, loss, lam_w, lam_h),
                         optimizer, budget, lr, tol, trace)
        bar.update(1)
        return value, H, layers, b, trace

    def better(result) -> bool:
        return result[0] < best[0] - ESCAPE_GAIN * abs(best[0])

    def fresh(H, layers, b):
        return (H.detach().clone().requires_grad_(), [w.detach().clone().requires_grad_() for w in layers],
                None if b is None else b.detach().clone().requires_grad_())

    bar = tqdm(total=n_starts + (k if escape else 0), disable=not progress, desc=f"UFM depth {m}")
    with one_cpu_thread(dev):
        best, best_start = None, 0
        for start in range(n_starts):
            H0, layers0 = balanced_start(counts, dim, m, scale, h_norm, gen)
            b0 = torch.zeros(k, dtype=torch.float64) if bias else None
            result = run(*fresh(H0.to(dev), [w.to(dev) for w in layers0], None if b0 is None else b0.to(dev)))
            if best is None or result[0] < best[0]:
                best, best_start = result, start
        escapes = 0
        improved = escape
        while improved and escapes < 2 * k:
            improved = False
            for cls in range(k):
                for switches in ESCAPES[class_is_on(best[2], cls)]:
                    H, layers, b = fresh(*best[1:4])
                    for on in switches:
                        switch_class(H, layers, slice(ends[cls], ends[cls + 1]), cls, on, scale, h_norm)
                    result = run(H, layers, b, min(steps, max(ESCAPE_STEPS, steps // 10)))  # a short look first
                    if better(result):
                        result = run(*result[1:4])
                    if better(result):
                        best, improved, escapes = result, True, escapes + 1
    bar.close()

    _, H, layers, b, trace = best
    H, layers, b = fresh(H, layers, b)
    params = [H, *layers] + ([b] if bias else [])
    final = objective(H, layers, b, labels, onehot, loss, lam_w, lam_h)
    final.backward()
    grad_max = max(float(p.grad.abs().max()) for p in params)
    theory_objective, theory = _closed_form_objective(counts, m, lam_w, lam_h, loss, bias)
    final = final.detach()
    gap = (float(final) - theory_objective) / theory_objective
    if abs(gap) > theory_rtol:
        warnings.warn(f"train_ufm: objective {float(final):.10g} differs from the closed-form optimum "
                      f"{theory_objective:.10g} (imbalanced_geometry) by {gap:.3g} relative, more than "
                      f"theory_rtol={theory_rtol:g}: the returned geometry is not the global optimum's "
                      f"(more steps, n_starts or another init_scale may help)", UFMOptimumWarning, stacklevel=2)
    with torch.no_grad():
        product = layers[0].detach()
        for w in layers[1:]:
            product = w.detach() @ product
    return xr.Dataset(
        {
            "features": (("sample", "dim"), H.detach().T.cpu().numpy()),
            "classifier": (("class", "dim"), product.cpu().numpy()),
            "bias": ("class", b.detach().cpu().numpy() if bias else np.zeros(k)),
            "layer_weight_sq_norm": ("layer", np.array([float((w.detach() ** 2).sum()) for w in layers])),
            "objective": ((), float(final.detach())),
            "grad_max": ((), grad_max),
            "theory_objective": ((), theory_objective),
            "objective_gap": ((), gap),
            "objective_trace": ("step", np.array(trace)),
        },
        coords={"label": ("sample", labels.cpu().numpy()), "class": np.arange(k), "dim": np.arange(dim),
                "layer": np.arange(1, m + 1)},
        attrs={"n_per_class": counts.tolist(), "depth": m, "lambda_W": lam_w, "lambda_H": lam_h, "loss": loss,
               "bias": int(bias), "optimizer": optimizer, "steps": int(steps), "seed": int(seed),
               "n_starts": n_starts, "best_start": best_start, "escapes": escapes, "theory": theory,
               "theory_rtol": theory_rtol, "workbench_version": workbench.__version__},
    )


def minority_cosine(classifier: xr.DataArray | np.ndarray, minority: Sequence[int]) -> float:
    """Mean pairwise cosine between the classifier rows of the minority classes.

    -1/(K-1) for a simplex ETF; it rises towards 1 as minority classes collapse.

    Examples
    --------
    >>> minority_cosine(np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), [1, 2])
    0.8
    """
    w = np.asarray(classifier, dtype=np.float64)
    rows = np.asarray(minority)
    if rows.ndim != 1 or rows.size < 2:
        raise ValueError(f"minority: expected at least two class indices, got {rows.tolist()}")
    unit = w[rows] / np.linalg.norm(w[rows], axis=1, keepdims=True)
    cos = unit @ unit.T
    return round(float(cos[~np.eye(rows.size, dtype=bool)].mean()), 12)


def minority_collapse(ratios: Sequence[float], *, n_majority: int = 64, k_majority: int = 2, k_minority: int = 2,
                      lambda_W: float = 5e-3, lambda_H: float = 5e-3, loss: str = "ce", depth: int = 1,
                      steps: int = 2000, seed: int = 0, theory_rtol: float = 1e-6,
                      device: str | torch.device | None = None) -> xr.Dataset:
    """Minority cosine of the UFM optimum as the imbalance ratio grows (Fang et al. 2021).

    For each ratio R the UFM (:func:`train_ufm`, width ``K + 2``) has
    ``k_majority`` classes of ``n_majority`` samples and ``k_minority`` classes
    of ``max(1, round(n_majority / R))``. With ``loss="mse"`` every optimum is
    checked against the closed form (:func:`~workbench.collapse.imbalanced_geometry`)
    and a ``ValueError`` is raised, naming both objectives, when it is more
    than ``theory_rtol`` (relative) above it: a cosine read off a wrong
    optimum would report a minority collapse that is not there, or hide one.
    Cross-entropy has no closed form (``attrs["theory"]`` says so). Where the
    minority classes vanish (MSE at large R) their cosine is undefined (NaN).

    Returns
    -------
    xarray.Dataset
        ``minority_cosine``, ``n_minority``, ``objective`` and
        ``theory_objective`` (NaN without a closed form) over ``ratio``.

    Examples
    --------
    >>> ds = minority_collapse([1, 16], n_majority=32, device="cpu")
    >>> bool(ds.minority_cosine.sel(ratio=16) > ds.minority_cosine.sel(ratio=1))
    True
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    if ratios.ndim != 1 or ratios.size == 0 or (ratios < 1).any():
        raise ValueError(f"ratios: expected a 1-D sequence of imbalance ratios >= 1, got {ratios.tolist()}")
    theory_rtol = check_positive("theory_rtol", theory_rtol)
    cosines, minorities, objectives, theories = [], [], [], []
    minority = list(range(k_majority, k_majority + k_minority))
    for ratio in ratios:
        n_min = max(1, int(round(n_majority / ratio)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UFMOptimumWarning)  # refused below, with the ratio
            ufm = train_ufm([n_majority] * k_majority + [n_min] * k_minority, k_majority + k_minority + 2, depth,
                            lambda_W, lambda_H, loss=loss, steps=steps, seed=seed, theory_rtol=theory_rtol,
                            device=device)
        if abs(float(ufm.objective_gap)) > theory_rtol:
            raise ValueError(f"minority_collapse: at ratio {ratio:g} the UFM objective {float(ufm.objective):.10g} "
                             f"differs from the closed-form optimum {float(ufm.theory_objective):.10g} "
                             f"(imbalanced_geometry) by {float(ufm.objective_gap):.3g} relative, more than "
                             f"theory_rtol={theory_rtol:g}: its minority cosine would describe a wrong optimum "
                             f"(raise steps or theory_rtol)")
        with np.errstate(invalid="ignore", divide="ignore"):  # vanished classes: NaN cosine
            cosines.append(minority_cosine(ufm.classifier, minority))
        minorities.append(n_min)
        objectives.append(float(ufm.objective))
        theories.append(float(ufm.theory_objective))
    return xr.Dataset({"minority_cosine": ("ratio", np.array(cosines)), "n_minority": ("ratio", np.array(minorities)),
                       "objective": ("ratio", np.array(objectives)),
                       "theory_objective": ("ratio", np.array(theories))},
                      coords={"ratio": ratios},
                      attrs={"n_majority": n_majority, "k_majority": k_majority, "k_minority": k_minority,
                             "lambda_W": lambda_W, "lambda_H": lambda_H, "loss": loss, "depth": depth,
                             "theory": ufm.attrs["theory"], "theory_rtol": theory_rtol})
