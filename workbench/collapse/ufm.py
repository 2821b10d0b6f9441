"""The unconstrained-feature model (UFM) and its deep linear version, trained numerically.

Features are free parameters ``H`` (dim, N), one column per sample, fed through
M linear layers ``W_M ... W_1`` (the last maps to the K classes), with weight
decay on every layer and on the features (Mixon et al.; Dang et al. 2023).
Its optimum is known in closed form for MSE
(:func:`~workbench.collapse.imbalanced_geometry`), which makes it the test bed
for the metrics and the reference point for real networks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

import workbench
from workbench.device import one_cpu_thread, resolve_device
from workbench.collapse._validate import check_choice, check_count, check_counts, check_depth, check_positive

LOSSES = ("mse", "ce")
OPTIMIZERS = ("lbfgs", "gd")


def _objective(H, layers, bias, labels, onehot, loss, lam_w, lam_h):
    logits = H.T
    for w in layers:
        logits = logits @ w.T
    if bias is not None:
        logits = logits + bias
    n = H.shape[1]
    if loss == "mse":
        fit = 0.5 * ((logits - onehot) ** 2).sum() / n
    else:
        fit = torch.nn.functional.cross_entropy(logits, labels)
    decay = 0.5 * lam_w * sum((w**2).sum() for w in layers) + 0.5 * lam_h * (H**2).sum()
    return fit + decay


def train_ufm(n_per_class: Sequence[int], dim: int, depth: int = 1, lambda_W: float = 5e-4,
              lambda_H: float = 5e-4, loss: str = "mse", bias: bool = False, steps: int = 3000, seed: int = 0, *,
              optimizer: str = "lbfgs", lr: float = 1.0, init_scale: float = 0.3, tol: float = 1e-14,
              device: str | torch.device | None = None, progress: bool = False) -> xr.Dataset:
    """Minimise the (deep linear) unconstrained-feature model in float64.

    The objective is ``fit(W_M ... W_1 H + b, Y) + (lambda_W/2) sum_m ||W_m||^2
    + (lambda_H/2) ||H||^2`` with ``fit`` either ``(1/2N)||.||_F^2`` against
    one-hot targets (``"mse"``) or the mean cross-entropy (``"ce"``); the bias,
    when present, is not decayed.

    Parameters
    ----------
    n_per_class : sequence of int
        Samples per class; the labels are ``0,...,0,1,...`` in blocks.
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
        Iterations of the optimiser.
    seed : int
        Seed of the random initialisation.
    optimizer : {"lbfgs", "gd"}
        L-BFGS with a strong-Wolfe line search (default: reaches the optimum to
        ~1e-10 in a few thousand steps) or plain gradient descent with step ``lr``.
    lr : float
        Step size (L-BFGS scales its first step by it).
    init_scale : float
        Standard deviation of the initial entries (times 1/sqrt(dim) for the layers).
    tol : float
        L-BFGS stops when the largest gradient entry falls below it.
    device : str or torch.device, optional
        Default CUDA when available, else CPU.
    progress : bool
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
        ``features`` (sample, dim) with the ``label`` of each sample,
        ``classifier`` (class, dim) = the rows of the product W_M ... W_1,
        ``bias`` (class), ``layer_weight_sq_norm`` (layer), scalars
        ``objective`` and ``grad_max`` (the largest gradient entry at the end),
        and ``objective_trace`` (step).

    Examples
    --------
    >>> ds = train_ufm([20, 10], dim=3, depth=1, lambda_W=1e-2, lambda_H=1e-2, steps=300, device="cpu")
    >>> ds.features.dims, ds.classifier.shape
    (('sample', 'dim'), (2, 3))
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
    lr = check_positive("lr", lr)
    init_scale = check_positive("init_scale", init_scale)
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(int(seed))
    opts = dict(dtype=torch.float64)
    n = int(counts.sum())
    labels = torch.repeat_interleave(torch.arange(k), torch.from_numpy(counts)).to(dev)
    onehot = torch.nn.functional.one_hot(labels, k).to(torch.float64)
    H = (init_scale * torch.randn(dim, n, generator=gen, **opts)).to(dev).requires_grad_()
    shapes = [(dim, dim)] * (m - 1) + [(k, dim)]
    layers = [(init_scale * torch.randn(*s, generator=gen, **opts) / np.sqrt(dim)).to(dev).requires_grad_()
              for s in shapes]
    b = torch.zeros(k, device=dev, **opts).requires_grad_() if bias else None
    params = [H, *layers] + ([b] if bias else [])
    trace: list[float] = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = _objective(H, layers, b, labels, onehot, loss, lam_w, lam_h)
        value.backward()
        trace.append(float(value.detach()))
        return value

    bar = tqdm(total=steps, disable=not progress, desc=f"UFM depth {m}")
    with one_cpu_thread(dev):
        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS(params, lr=lr, max_iter=steps, max_eval=2 * steps, tolerance_grad=tol,
                                    tolerance_change=0.0, history_size=20, line_search_fn="strong_wolfe")
            opt.step(closure)
            bar.update(steps)
        else:
            opt = torch.optim.SGD(params, lr=lr)
            for _ in range(steps):
                opt.step(closure)
                bar.update(1)
    bar.close()

    final = closure()
    grad_max = max(float(p.grad.abs().max()) for p in params)
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
            "objective_trace": ("step", np.array(trace)),
        },
        coords={"label": ("sample", labels.cpu().numpy()), "class": np.arange(k), "dim": np.arange(dim),
                "layer": np.arange(1, m + 1)},
        attrs={"n_per_class": counts.tolist(), "depth": m, "lambda_W": lam_w, "lambda_H": lam_h, "loss": loss,
               "bias": int(bias), "optimizer": optimizer, "steps": int(steps), "seed": int(seed),
               "workbench_version": workbench.__version__},
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
                      steps: int = 2000, seed: int = 0, device: str | torch.device | None = None) -> xr.Dataset:
    """Minority cosine of the UFM optimum as the imbalance ratio grows (Fang et al. 2021).

    For each ratio R the UFM has ``k_majority`` classes of ``n_majority``
    samples and ``k_minority`` classes of ``max(1, round(n_majority / R))``.

    Returns
    -------
    xarray.Dataset
        ``minority_cosine`` and ``n_minority`` over ``ratio``.

    Examples
    --------
    >>> ds = minority_collapse([1, 16], n_majority=32, device="cpu")
    >>> bool(ds.minority_cosine.sel(ratio=16) > ds.minority_cosine.sel(ratio=1))
    True
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    if ratios.ndim != 1 or ratios.size == 0 or (ratios < 1).any():
        raise ValueError(f"ratios: expected a 1-D sequence of imbalance ratios >= 1, got {ratios.tolist()}")
    cosines, minorities = [], []
    minority = list(range(k_majority, k_majority + k_minority))
    for ratio in ratios:
        n_min = max(1, int(round(n_majority / ratio)))
        ufm = train_ufm([n_majority] * k_majority + [n_min] * k_minority, k_majority + k_minority + 2, depth,
                        lambda_W, lambda_H, loss=loss, steps=steps, seed=seed, device=device)
        cosines.append(minority_cosine(ufm.classifier, minority))
        minorities.append(n_min)
    return xr.Dataset({"minority_cosine": ("ratio", np.array(cosines)), "n_minority": ("ratio", np.array(minorities))},
                      coords={"ratio": ratios},
                      attrs={"n_majority": n_majority, "k_majority": k_majority, "k_minority": k_minority,
                             "lambda_W": lambda_W, "lambda_H": lambda_H, "loss": loss, "depth": depth})
