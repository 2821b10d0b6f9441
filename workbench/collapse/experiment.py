"""Neural collapse in a real network: an MLP followed by M bias-free linear layers.

The setup of Dang et al. (2023, Sec. 6): ReLU layers learn features, then
``n_linear`` bias-free linear layers (the last one maps to the classes) form
the deep linear head whose optimum the theory describes. NC metrics are
recorded at every layer every ``record_every`` epochs; at the linear layers the
product of the remaining linear maps is the classifier, so NC3 and NC4 are
defined there too.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

import workbench
from workbench.device import one_cpu_thread, resolve_device
from workbench.collapse._validate import check_choice, check_count, check_counts, check_positive
from workbench.collapse.layerwise import track


def _load(data: Any) -> tuple[torch.Tensor, torch.Tensor, str]:
    if data is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return torch.from_numpy(digits.data / 16.0).float(), torch.from_numpy(digits.target).long(), "sklearn digits"
    if isinstance(data, tuple) and len(data) == 2:
        x, y = (torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for v in data)
        name = "user arrays"
    elif isinstance(data, torch.utils.data.Dataset):
        pairs = [data[i] for i in range(len(data))]
        x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
        y = torch.as_tensor([int(p[1]) for p in pairs])
        name = type(data).__name__
    else:
        raise TypeError(f"data: expected None (sklearn digits), (inputs, labels) or a torch Dataset, "
                        f"got {type(data).__name__}")
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"data: expected inputs (sample, ...) and labels (sample,) of equal length, got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if y.dtype.is_floating_point:
        raise TypeError(f"data: expected integer labels, got dtype {y.dtype}")
    if len(y) == 0:
        raise ValueError("data: expected at least one sample, got none")
    if int(y.min()) < 0:
        raise ValueError(f"data: expected class labels >= 0, got {int(y.min())}")
    return x.flatten(1).float(), y.long(), name


def _subsample(x: torch.Tensor, y: torch.Tensor, n_per_class: Sequence[int] | None,
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n_per_class is None:
        return x, y
    counts = check_counts(n_per_class)
    k = int(y.max()) + 1
    if counts.size != k:
        raise ValueError(f"n_per_class: expected one count per class ({k}), got {counts.size}")
    rng = np.random.default_rng(seed)
    rows = []
    for c, n_c in enumerate(counts):
        members = np.flatnonzero(y.numpy() == c)
        if n_c > members.size:
            raise ValueError(f"n_per_class: class {c} has {members.size} samples, asked for {n_c}")
        rows.append(rng.choice(members, size=n_c, replace=False))
    keep = torch.from_numpy(np.sort(np.concatenate(rows)))
    return x[keep], y[keep]


def build_model(in_dim: int, n_classes: int, hidden: Sequence[int], n_linear: int) -> nn.Sequential:
    """ReLU layers ``fc{i}``/``relu{i}`` (with bias), then bias-free ``linear1..linear{n_linear}``.

    Examples
    --------
    >>> net = build_model(64, 10, hidden=(32, 32), n_linear=2)
    >>> [name for name, _ in net.named_children()]
    ['fc1', 'relu1', 'fc2', 'relu2', 'linear1', 'linear2']
    """
    if n_linear < 1:
        raise ValueError(f"n_linear: expected at least one (the classifier), got {n_linear}")
    if not hidden:
        raise ValueError("hidden: expected at least one ReLU layer width, got none")
    mods: list[tuple[str, nn.Module]] = []
    width = in_dim
    for i, h in enumerate(hidden, start=1):
        mods += [(f"fc{i}", nn.Linear(width, h)), (f"relu{i}", nn.ReLU())]
        width = h
    for m in range(1, n_linear + 1):
        mods.append((f"linear{m}", nn.Linear(width, n_classes if m == n_linear else width, bias=False)))
    return nn.Sequential(OrderedDict(mods))


def _heads(model: nn.Sequential, n_relu: int, n_linear: int) -> dict[str, torch.Tensor]:
    """For each recorded layer feeding the linear head, the product of the linear maps after it."""
    weights = [getattr(model, f"linear{m}").weight.detach() for m in range(1, n_linear + 1)]
    heads = {}
    for start in range(n_linear):  # features feeding linear{start+1}
        product = weights[start]
        for w in weights[start + 1:]:
            product = w @ product
        heads[f"relu{n_relu}" if start == 0 else f"linear{start}"] = product.cpu().double()
    return heads


def run_experiment(data: Any = None, *, n_per_class: Sequence[int] | None = None,
                   hidden: Sequence[int] = (256, 256, 256), n_linear: int = 3, loss: str = "mse",
                   epochs: int = 200, lr: float | None = None, momentum: float = 0.9, weight_decay: float = 5e-4,
                   feature_decay: float = 0.0, mlp_decay: float | None = None, batch_size: int | None = 128,
                   schedule: str = "step", record_every: int = 10, global_mean: str = "class_means",
                   nc3: str = "papyan", seed: int = 0, device: str | torch.device | None = None,
                   progress: bool | Callable[[int, xr.Dataset], bool | None] = True) -> xr.Dataset:
    """Train an MLP + bias-free linear head and record NC metrics per layer and epoch.

    Parameters
    ----------
    data : None, (inputs, labels) or torch Dataset
        Default: the handwritten digits shipped with scikit-learn (1797 8x8
        images, 10 classes), scaled to [0, 1]. Inputs are flattened.
    n_per_class : sequence of int, optional
        Subsample this many training samples per class (imbalanced data),
        e.g. ``(30, 30, 60, 60, 90, 90, 120, 120, 150, 150)``; default all.
    hidden : sequence of int
        Widths of the ReLU layers.
    n_linear : int
        Number M of bias-free linear layers; the last maps to the classes.
    loss : {"mse", "ce"}
        ``(1/2)||logits - onehot||^2`` per sample, or cross-entropy.
    epochs, lr, momentum, weight_decay, batch_size
        SGD settings; the step (default 0.1 for MSE, 0.05 for CE) falls
        tenfold at 1/2 and 3/4 of the epochs. Weight decay covers every layer.
        ``batch_size=None`` trains full-batch (one step per epoch).
    mlp_decay : float, optional
        Weight decay of the ReLU layers (the MLP body); default
        ``weight_decay``. 0 leaves the features as free as the MLP allows,
        as in the unconstrained-feature model.
    schedule : {"step", "constant"}
        The step falls tenfold at 1/2 and 3/4 of the epochs, or stays at ``lr``.
    feature_decay : float
        lambda_H >= 0: adds ``(lambda_H / 2) sum_i ||h_i||^2`` over the N
        training samples' features h_i feeding the linear head (the output of
        the last ReLU layer), as in the unconstrained-feature model, so the
        whole objective is the UFM's ``(1/2N)||W_M...W_1 H - Y||^2 +
        (lambda_W/2) sum ||W_m||^2 + (lambda_H/2)||H||^2`` (for MSE, with
        lambda_W = ``weight_decay``) with H produced by the MLP; compare the
        result with ``imbalanced_geometry(counts, weight_decay, feature_decay,
        n_linear)``. A mini-batch adds ``(lambda_H N / 2)`` times its mean
        squared feature norm, an unbiased estimate of the same term.
    record_every : int
        Measure every this many epochs (and at epoch 0 and the last).
    global_mean, nc3
        As in :func:`~workbench.collapse.nc_metrics`.
    seed : int
        Seeds the initialisation, the subsampling and the batch order.
    device : str or torch.device, optional
        Default CUDA when available, else CPU.
    progress : bool or callable
        True shows a progress bar. A callable ``progress(epoch, metrics)``
        is called instead after the first measurement (``epoch`` 0) and after
        every training epoch, ``epochs + 1`` times in all, with ``metrics``
        the Dataset of everything recorded so far (the same layout and
        attrs as the result, so live curves can be drawn from it; it is a
        new object only after a new measurement, and must not be changed).
        Returning True stops training there; the result then holds the
        epochs recorded so far. The last ``metrics`` passed is the result.

    Returns
    -------
    xarray.Dataset
        NC metrics over (``epoch``, ``layer``) as from
        :func:`~workbench.collapse.layerwise`, plus ``train_loss`` (the data
        term), ``train_accuracy`` and ``ufm_objective`` over ``epoch``: for
        MSE, the UFM objective evaluated at the linear head and the features
        the MLP produces, ``train_loss + (weight_decay/2) sum_m ||W_m||^2 +
        (feature_decay/2) sum_i ||h_i||^2``, which is never below
        ``imbalanced_geometry(...).objective`` (the features are one feasible
        H) and reaches it only at the UFM's global optimum (NaN for CE). Layers are ``relu1..`` and
        ``linear1..linear{M-1}``. ``class_means`` and ``classifier`` (the
        product of the linear maps after a layer; NaN at the ReLU layers but
        the last) are (epoch, layer, class, dim), NaN-padded beyond each layer's
        ``layer_dim``, at the recorded epochs only: about 4 MB for the
        defaults (21 records, 5 layers, 10 classes, width 256). Draw them with
        ``class_means_3d(ds.sel(epoch=e, layer=name))``
        (:func:`~workbench.figures.collapse.class_means_3d`).

    Examples
    --------
    >>> ds = run_experiment(hidden=(32,), n_linear=2, epochs=2, record_every=1, progress=False, device="cpu")
    >>> ds.nc1.dims, ds.layer.values.tolist()
    (('epoch', 'layer'), ['relu1', 'linear1'])
    >>> ds.class_means.dims, ds.class_means.shape
    (('epoch', 'layer', 'class', 'dim'), (3, 2, 10, 32))

    Live NC1 at the last layer while training, e.g. for a plot that redraws:

    >>> seen = []
    >>> def live(epoch, metrics):
    ...     seen.append((epoch, metrics.sizes["epoch"], round(float(metrics.nc1[-1, -1]), 3)))
    >>> ds = run_experiment(hidden=(16,), n_linear=1, epochs=4, record_every=2, progress=live, device="cpu")
    >>> [(epoch, n_recorded) for epoch, n_recorded, _ in seen]
    [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3)]
    >>> seen[-1][2] == round(float(ds.nc1[-1, -1]), 3)
    True
    """
    check_choice("loss", loss, ("mse", "ce"))
    check_choice("schedule", schedule, ("step", "constant"))
    if mlp_decay is not None and (isinstance(mlp_decay, bool) or not isinstance(mlp_decay, (int, float))
                                  or not (np.isfinite(mlp_decay) and mlp_decay >= 0)):
        raise ValueError(f"mlp_decay: expected None or a finite number >= 0, got {mlp_decay!r}")
    epochs, record_every = check_count("epochs", epochs), check_count("record_every", record_every)
    if batch_size is not None:
        batch_size = check_count("batch_size", batch_size)
    if isinstance(feature_decay, bool) or not isinstance(feature_decay, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(feature_decay) and feature_decay >= 0):
        raise ValueError(f"feature_decay: expected a finite number >= 0, got {feature_decay!r}")
    if lr is not None:
        lr = check_positive("lr", lr)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    x, y, source = _load(data)
    x, y = _subsample(x, y, n_per_class, seed)
    k = int(y.max()) + 1
    model = build_model(x.shape[1], k, hidden, n_linear).to(dev)
    body, head = model[:2 * len(hidden)], model[2 * len(hidden):]  # the MLP giving H, and the linear head
    batch_size = len(y) if batch_size is None else batch_size
    feature_weight = 0.5 * float(feature_decay) * len(y)
    layers = [f"relu{i}" for i in range(1, len(hidden) + 1)] + [f"linear{m}" for m in range(1, n_linear)]
    tracker = track(model, (x, y), layers, classifiers=lambda: _heads(model, len(hidden), n_linear),
                    n_classes=k, global_mean=global_mean, nc3=nc3, batch_size=2048, device=dev)
    step = lr if lr is not None else (0.1 if loss == "mse" else 0.05)
    groups = [{"params": list(head.parameters())},
              {"params": list(body.parameters()), "weight_decay": weight_decay if mlp_decay is None else mlp_decay}]
    opt = torch.optim.SGD(groups, lr=step, momentum=momentum, weight_decay=weight_decay)
    drops = [epochs // 2, 3 * epochs // 4] if schedule == "step" else []
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=drops, gamma=0.1)
    xd, yd = x.to(dev), y.to(dev)
    onehot = nn.functional.one_hot(yd, k).float()
    gen = torch.Generator().manual_seed(seed)

    def evaluate() -> dict[str, float]:
        with torch.no_grad():
            features = body(xd)
            logits = head(features)
            value = float(_loss(logits, yd, onehot, loss))
            # the UFM objective at the network's head and features: >= imbalanced_geometry's optimum (MSE)
            decay = sum(float((p**2).sum()) for p in head.parameters())
            objective = value + 0.5 * weight_decay * decay + feature_weight * float((features**2).sum(dim=1).mean())
            return {"train_loss": value, "train_accuracy": float((logits.argmax(1) == yd).float().mean()),
                    "ufm_objective": objective if loss == "mse" else np.nan}

    callback = progress if callable(progress) else None
    attrs = {"data": source, "n_per_class": np.bincount(y.numpy(), minlength=k).tolist(), "hidden": list(hidden),
             "n_linear": n_linear, "loss": loss, "epochs": epochs, "lr": step, "weight_decay": weight_decay,
             "feature_decay": float(feature_decay), "mlp_decay": weight_decay if mlp_decay is None else mlp_decay,
             "batch_size": batch_size, "schedule": schedule, "seed": seed, "workbench_version": workbench.__version__}
    latest: xr.Dataset | None = None  # the metrics recorded so far, rebuilt only after a new measurement

    def record(epoch: int) -> None:
        nonlocal latest
        tracker(epoch, **evaluate())
        latest = None

    def recorded() -> xr.Dataset:
        nonlocal latest
        if latest is None:
            latest = tracker.result()
            latest.attrs.update(attrs)
        return latest

    def stop_after(epoch: int) -> bool:
        return callback is not None and bool(callback(epoch, recorded()))

    # widths up to ~512 are small matrices: one thread beats two that wait on each other
    with one_cpu_thread(dev, enabled=max(hidden) <= 512):
        record(0)
        if not stop_after(0):
            for epoch in tqdm(range(1, epochs + 1), disable=callback is not None or not progress, desc="epochs"):
                model.train()
                for rows in torch.randperm(len(yd), generator=gen).split(batch_size):
                    rows = rows.to(dev)
                    opt.zero_grad()
                    features = body(xd[rows])
                    value = _loss(head(features), yd[rows], onehot[rows], loss)
                    if feature_weight:
                        value = value + feature_weight * (features**2).sum(dim=1).mean()
                    value.backward()
                    opt.step()
                sched.step()
                if epoch % record_every == 0 or epoch == epochs:
                    record(epoch)
                if stop_after(epoch):
                    break
    return recorded()


def _loss(logits: torch.Tensor, labels: torch.Tensor, onehot: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "mse":
        return 0.5 * ((logits - onehot) ** 2).sum(dim=1).mean()
    return nn.functional.cross_entropy(logits, labels)


def against_theory(ds: xr.Dataset, *, epoch: int = -1, lambda_H: float | None = None) -> xr.Dataset:
    """How closely a :func:`run_experiment` result matches Dang et al.'s closed form, per quantity.

    At the features feeding the linear head (the last ReLU layer), with the
    product of the M linear maps as classifier, the measured class-mean norms
    ``||h_k||``, classifier-row norms ``||w_k||`` and alignments ``w_k . h_k``
    are compared with :func:`~workbench.collapse.imbalanced_geometry`
    ``(counts, weight_decay, lambda_H, M)``: Pearson correlation across
    classes (NaN when the theory is the same for every class, as for balanced
    counts) and the largest relative error, over the classes the theory keeps
    (vanishing ones are counted in ``n_collapsed``). The theory's class means
    and classifier rows are mutually orthogonal, so the largest |cosine|
    between two (uncentred) class means and between two rows measure the
    angles. ``objective_gap`` is ``ufm_objective / theory objective - 1`` (0 at
    the UFM's global optimum; NaN when ``lambda_H`` is not the run's
    ``feature_decay``, since the run's objective then has another penalty).

    Parameters
    ----------
    ds : xarray.Dataset
        A :func:`run_experiment` result with MSE loss.
    epoch : int
        Position along ``epoch`` (default the last record).
    lambda_H : float, optional
        Feature decay for the theory; default the run's ``feature_decay``
        (which must then be positive).

    Returns
    -------
    xarray.Dataset
        ``correlation`` and ``max_relative_error`` over ``quantity``
        (``feature_norm``, ``classifier_norm``, ``classifier_mean_dot``);
        ``measured`` and ``theory`` over (``quantity``, ``class``); scalars
        ``max_cos_means``, ``max_cos_classifier``, ``objective_gap``, ``nc1``,
        ``train_accuracy``, ``n_collapsed``.

    Examples
    --------
    >>> ds = run_experiment(n_per_class=[20, 20, 40, 40, 60, 60, 80, 80, 100, 100], hidden=(32,), n_linear=1,
    ...                     epochs=5, batch_size=None, weight_decay=5e-4, feature_decay=5e-4, record_every=5,
    ...                     progress=False, device="cpu")
    >>> fit = against_theory(ds)
    >>> fit.quantity.values.tolist()
    ['feature_norm', 'classifier_norm', 'classifier_mean_dot']
    >>> bool(fit.objective_gap > 0)  # the network's features are one feasible point of the UFM
    True
    """
    from workbench.collapse.theory import imbalanced_geometry

    if ds.attrs.get("loss") != "mse":
        raise ValueError(f"ds: expected a run_experiment result with loss 'mse' (the theory is for MSE), "
                         f"got loss {ds.attrs.get('loss')!r}")
    lam_h = float(ds.attrs.get("feature_decay", 0.0)) if lambda_H is None else check_positive("lambda_H", lambda_H)
    if not lam_h > 0:
        raise ValueError("lambda_H: the run has no feature_decay; pass the lambda_H to compare with (> 0)")
    counts, m = ds.attrs["n_per_class"], int(ds.attrs["n_linear"])
    theory = imbalanced_geometry(counts, float(ds.attrs["weight_decay"]), lam_h, m)
    at = ds.isel(epoch=epoch).sel(layer=f"relu{len(ds.attrs['hidden'])}")
    width = int(at.layer_dim)
    means, rows = at.class_means.values[:, :width], at.classifier.values[:, :width]
    names = ("feature_norm", "classifier_norm", "classifier_mean_dot")
    measured = np.stack([at.mean_norm.values, at.classifier_norm.values, at.classifier_mean_dot.values])
    expected = np.stack([theory.mean_norm.values, theory.classifier_norm.values, theory.classifier_mean_dot.values])
    keep = ~theory.collapsed.values
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = [np.corrcoef(a[keep], b[keep])[0, 1] if np.ptp(b[keep]) > 0 else np.nan
                for a, b in zip(measured, expected)]
        rel = np.max(np.abs(measured[:, keep] / expected[:, keep] - 1), axis=1)

    def max_cos(v: np.ndarray) -> float:
        norms = np.linalg.norm(v, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (v @ v.T) / np.outer(norms, norms)
        return float(np.nanmax(np.abs(cos[np.ix_(keep, keep)][~np.eye(int(keep.sum()), dtype=bool)])))

    return xr.Dataset(
        {"correlation": ("quantity", np.asarray(corr)), "max_relative_error": ("quantity", rel),
         "measured": (("quantity", "class"), measured), "theory": (("quantity", "class"), expected),
         "max_cos_means": ((), max_cos(means)), "max_cos_classifier": ((), max_cos(rows)),
         "objective_gap": ((), float(at.ufm_objective) / float(theory.objective) - 1.0
                           if lam_h == float(ds.attrs.get("feature_decay", 0.0)) else np.nan),
         "nc1": ((), float(at.nc1)), "train_accuracy": ((), float(at.train_accuracy)),
         "n_collapsed": ((), int((~keep).sum()))},
        coords={"quantity": list(names), "class": np.arange(len(counts)), "epoch": int(at.epoch)},
        attrs={"layer": str(at.layer.values), "lambda_W": float(ds.attrs["weight_decay"]), "lambda_H": lam_h,
               "depth": m, "n_per_class": list(counts)})
