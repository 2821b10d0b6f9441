"""NC metrics at every layer of a model, and over training.

Features are caught with forward hooks (a torch ``nn.Module``) or with
``run_with_cache`` (a TransformerLens ``HookedTransformer`` or
``TransformerBridge``), streamed batch by batch into one
:class:`~workbench.collapse.NCAccumulator` per layer, and returned as one
Dataset with a ``layer`` dim; :func:`track` stacks such results over epochs.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from workbench.device import resolve_device
from workbench.collapse._validate import as_classifier, check_count
from workbench.collapse.accumulator import NCAccumulator

Classifiers = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None


def _batches(data: Any, batch_size: int) -> Iterator[tuple[Any, Any]]:
    """(inputs, labels) batches from a pair of arrays, a torch Dataset or an iterable of batches."""
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"data: expected as many labels as inputs, got {len(y)} labels for {len(x)} inputs")
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
    elif isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        yield from torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    else:
        yield from data


def _as_tensor(x: Any, device: torch.device, like: torch.dtype | None = None) -> torch.Tensor:
    """``x`` on ``device``; floating inputs take the model's dtype (numpy arrays arrive as float64)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if like is not None and t.is_floating_point():
        t = t.to(like)
    return t.to(device)


def _param_dtype(model: Any) -> torch.dtype | None:
    params = model.parameters() if isinstance(model, nn.Module) else iter(())
    first = next(params, None)
    return first.dtype if first is not None and first.is_floating_point() else None


def default_layers(model: nn.Module) -> list[str]:
    """Every leaf module of ``model`` except the last, which usually emits the logits.

    Examples
    --------
    >>> default_layers(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
    ['0', '1']
    """
    leaves = [name for name, module in model.named_modules() if name and not list(module.children())]
    return leaves[:-1]


def _features_by_layer(model: Any, inputs: torch.Tensor, layers: Sequence[str],
                       position: int) -> dict[str, torch.Tensor]:
    if hasattr(model, "run_with_cache"):  # TransformerLens-style: hook names, (batch, pos, d) activations
        _, cache = model.run_with_cache(inputs, names_filter=list(layers))
        return {name: cache[name][:, position] for name in layers}
    caught: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(lambda _m, _i, out, name=name: caught.__setitem__(name, out))
               for name in layers]
    try:
        model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    for name, out in caught.items():
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"layers: expected module {name!r} to output a tensor, got {type(out).__name__}; "
                            f"hook one of its submodules instead")
    return {name: out.flatten(1) for name, out in caught.items()}


def _check_layers(model: Any, layers: Sequence[str] | None) -> list[str]:
    if layers is None:
        if hasattr(model, "run_with_cache"):
            raise ValueError("layers: expected hook names (e.g. ['blocks.0.hook_resid_post']) for a transformer, "
                             "got None")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch nn.Module or a TransformerLens model, got {type(model).__name__}")
        return default_layers(model)
    if isinstance(layers, str):
        raise TypeError(f"layers: expected a sequence of layer names, got the string {layers!r}; "
                        f"write [{layers!r}] for one layer")
    layers = list(layers)
    if not layers:
        raise ValueError("layers: expected at least one layer name, got an empty list")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers: expected distinct names, got {layers}")
    if not hasattr(model, "run_with_cache"):
        known = dict(model.named_modules())
        missing = [name for name in layers if name not in known]
        if missing:
            raise ValueError(f"layers: expected module names of the model, got unknown {missing} "
                             f"(known: {list(known)[1:8]}...)")
    return layers


@torch.no_grad()
def layerwise(model: Any, data: Any, layers: Sequence[str] | None = None, *, classifiers: Classifiers = None,
              n_classes: int | None = None, global_mean: str = "class_means", nc3: str = "papyan",
              position: int = -1, batch_size: int = 512, device: str | torch.device | None = None) -> xr.Dataset:
    """NC metrics of the features at each chosen layer, with a ``layer`` dim.

    Parameters
    ----------
    model : torch.nn.Module or TransformerLens model
        Run in ``eval`` mode on ``device``; a model with ``run_with_cache``
        (``HookedTransformer``, ``TransformerBridge``) is read through its hooks.
    data : (inputs, labels), torch Dataset, or iterable of (inputs, labels) batches
        Labels are class indices; a list of batches is read twice when
        ``classifiers`` asks for NC4.
    layers : sequence of str, optional
        Module names (``model.named_modules()``) or hook names; default: every
        leaf module but the last.
    classifiers : mapping or callable, optional
        ``{layer: W}`` or ``{layer: (W, b)}``: the linear map from that layer's
        features to the logits, for ``nc3``, ``nc4`` and ``nc2_equinorm_w``.
    n_classes : int, optional
        K; default: one more than the largest label seen.
    global_mean, nc3
        As in :func:`~workbench.collapse.nc_metrics`.
    position : int
        Token position read from TransformerLens hook activations (batch, pos, d);
        a plain module's outputs are flattened to one vector per sample.
    batch_size : int
        Batch size when ``data`` is arrays or a Dataset.
    device : str or torch.device, optional
        Default CUDA when available, else CPU.

    Returns
    -------
    xarray.Dataset
        The variables of ``nc_metrics`` stacked over ``layer``, plus
        ``layer_dim`` (each layer's feature width) and ``classifier``, the
        rows of that layer's ``classifiers`` entry. ``class_means`` and
        ``classifier`` are (layer, class, dim) with ``dim`` running to the
        widest layer: a layer's values fill its first ``layer_dim`` columns and
        the rest is NaN, as is all of ``classifier`` at a layer without one.
        Select one layer and trim, ``ds.class_means.sel(layer=name)[:, :width]``,
        or hand the selection to :func:`~workbench.figures.collapse.class_means_3d`.
        Together they take 16 K d bytes per layer (float64; K classes, d the
        widest layer).

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> x, y = torch.randn(60, 4), torch.arange(60) % 3
    >>> ds = layerwise(net, (x, y), device="cpu")
    >>> ds.nc1.dims, ds.layer.values.tolist()
    (('layer',), ['0', '1'])

    Layers of different widths, one with a classifier: the class means of the
    narrower layer are NaN beyond its width.

    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8),
    ...                           torch.nn.Linear(8, 3))
    >>> ds = layerwise(net, (x, y), ["1", "2"], classifiers={"2": net[3].weight}, device="cpu")
    >>> ds.class_means.dims, ds.sizes["dim"], ds.layer_dim.values.tolist()
    (('layer', 'class', 'dim'), 16, [16, 8])
    >>> bool(ds.class_means.sel(layer="2", dim=slice(8, None)).isnull().all())
    True
    >>> [bool(ds.classifier.sel(layer=name).notnull().any()) for name in ("1", "2")]
    [False, True]
    """
    dev = resolve_device(device)
    names = _check_layers(model, layers)
    batch_size = check_count("batch_size", batch_size)
    if isinstance(data, Iterator):
        data = list(data)  # a one-shot iterator cannot be read twice
    if not isinstance(data, (tuple, torch.utils.data.Dataset, Iterable)):
        raise TypeError(f"data: expected (inputs, labels), a torch Dataset or an iterable of (inputs, labels) "
                        f"batches, got {type(data).__name__}")
    k = _n_classes(data, n_classes)
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.to(dev).eval()
    try:
        accs: dict[str, NCAccumulator] = {}
        dtype = _param_dtype(model)
        for inputs, labels in _batches(data, batch_size):
            feats = _features_by_layer(model, _as_tensor(inputs, dev, dtype), names, position)
            for name, f in feats.items():
                if name not in accs:
                    accs[name] = NCAccumulator(k, f.shape[1], device=dev)
                accs[name].update(f, labels)
        if not accs:
            raise ValueError("data: expected at least one batch, got none")
        mapping = dict(classifiers() if callable(classifiers) else (classifiers or {}))
        unknown = [name for name in mapping if name not in names]
        if unknown:
            raise ValueError(f"classifiers: expected keys among the layers {names}, got {unknown}")
        if mapping:  # NC4 needs the final class means: a second pass
            for inputs, labels in _batches(data, batch_size):
                feats = _features_by_layer(model, _as_tensor(inputs, dev, dtype), list(mapping), position)
                for name, clf in mapping.items():
                    accs[name].second_pass(feats[name], labels, *_w_b(clf))
        results, rows = [], []
        for name in names:
            w, b = _w_b(mapping[name]) if name in mapping else (None, None)
            results.append(accs[name].result(w, b, global_mean=global_mean, nc3=nc3))
            rows.append(as_classifier(w, b, k, accs[name].dim)[0])
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    return _stack(results, names, rows)


def _n_classes(data: Any, n_classes: int | None) -> int:
    if n_classes is not None:
        return n_classes  # NCAccumulator checks it is an int >= 2
    if isinstance(data, tuple) and len(data) == 2:
        labels = data[1]
        if len(labels) == 0:
            raise ValueError("data: expected at least one sample, got none")
        top = labels.max() if isinstance(labels, torch.Tensor) else np.max(np.asarray(labels))
        return int(top) + 1
    raise ValueError("n_classes: expected an int when data is a Dataset or an iterable of batches "
                     "(the classes are not known before the pass), got None")


def _w_b(classifier: Any) -> tuple[Any, Any]:
    if isinstance(classifier, tuple):
        if len(classifier) != 2:
            raise ValueError(f"classifiers: expected W or (W, b) per layer, got a tuple of {len(classifier)}")
        return classifier
    return classifier, None


def _stack(results: list[xr.Dataset], names: list[str], rows: list[np.ndarray | None]) -> xr.Dataset:
    """Concatenate per-layer results over ``layer``; (class, dim) arrays are NaN-padded to the widest layer.

    ``rows`` holds each layer's classifier (class, width), or None.
    """
    widths = [ds.sizes["dim"] for ds in results]
    trimmed = [ds.drop_dims("dim").drop_attrs() for ds in results]
    out = xr.concat(trimmed, dim=xr.DataArray(names, dims="layer", name="layer"), data_vars="all",
                    coords="minimal", compat="override")
    out["layer_dim"] = ("layer", np.array(widths))
    k, width = out.sizes["class"], max(widths)
    out["class_means"] = _padded([ds.class_means.values for ds in results], k, width)
    out["classifier"] = _padded(rows, k, width)
    out = out.assign_coords(dim=np.arange(width))
    out.attrs = {key: results[0].attrs[key] for key in ("n_samples", "n_classes", "global_mean", "nc3_form",
                                                          "workbench_version")}
    return out


def _padded(blocks: list[np.ndarray | None], n_classes: int, width: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Per-layer (class, width_l) blocks as one (layer, class, dim) array, NaN beyond each block and for None."""
    out = np.full((len(blocks), n_classes, width), np.nan)
    for i, block in enumerate(blocks):
        if block is not None:
            out[i, :, :block.shape[1]] = block
    return ("layer", "class", "dim"), out


class NCTracker:
    """Records :func:`layerwise` metrics at chosen epochs; call it from a training loop.

    Made by :func:`track`. ``tracker(epoch)`` measures the model now;
    :meth:`result` stacks everything measured over an ``epoch`` dim.
    """

    def __init__(self, model: Any, data: Any, layers: Sequence[str] | None, kwargs: dict[str, Any]) -> None:
        self.model, self.data, self.layers, self.kwargs = model, data, layers, kwargs
        self.records_: list[xr.Dataset] = []
        self.epochs_: list[int] = []

    def __call__(self, epoch: int, **extra: float) -> xr.Dataset:
        """Measure at ``epoch``; keyword scalars (e.g. ``train_loss``) are stored alongside."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
            raise TypeError(f"epoch: expected an int, got {epoch!r}")
        for key, value in extra.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{key}: expected a number, got {type(value).__name__}")
        if self.epochs_ and epoch <= self.epochs_[-1]:
            raise ValueError(f"epoch: expected a number after the last recorded epoch {self.epochs_[-1]}, got {epoch}")
        ds = layerwise(self.model, self.data, self.layers, **self.kwargs)
        for key, value in extra.items():
            ds[key] = ((), float(value))
        self.records_.append(ds)
        self.epochs_.append(int(epoch))
        return ds

    def result(self) -> xr.Dataset:
        """All recorded metrics with an ``epoch`` dim first (``class_means``: epoch, layer, class, dim)."""
        if not self.records_:
            raise ValueError("result: nothing recorded yet; call the tracker at least once")
        out = xr.concat(self.records_, dim=xr.DataArray(self.epochs_, dims="epoch", name="epoch"),
                        data_vars="all", coords="minimal", compat="override")
        out.attrs = self.records_[0].attrs
        return out


def track(model: Any, data: Any, layers: Sequence[str] | None = None, **layerwise_kwargs: Any) -> NCTracker:
    """A training callback that records layerwise NC metrics per epoch.

    ``layerwise_kwargs`` are passed to :func:`layerwise` on every call; a
    callable ``classifiers`` is re-evaluated each time, so NC3/NC4 follow the
    current weights.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(30, 4), torch.arange(30) % 3
    >>> tracker = track(net, (x, y), device="cpu")
    >>> for epoch in range(3):
    ...     _ = tracker(epoch, train_loss=1.0 / (epoch + 1))
    >>> tracker.result().nc1.dims
    ('epoch', 'layer')
    """
    return NCTracker(model, data, layers, layerwise_kwargs)
