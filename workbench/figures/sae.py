"""Figures for attention-output SAEs: feature dashboards, the L0/CE frontier, firing and family plots,
training curves, and the features and DFA of a prompt.

Each builder takes the xarray result of a :mod:`workbench.sae` function and
returns a plotly figure in the paper template (the examples of a dashboard
also come as token-highlighted HTML).

Examples
--------
>>> import numpy as np, xarray as xr
>>> ev = xr.Dataset({"firing_histogram": ("log10_frequency", np.array([0, 2, 5]))},
...                 coords={"log10_frequency": [-3.0, -2.0, -1.0]})
>>> firing_histogram(ev).data[0].type
'bar'
"""

from __future__ import annotations

import html
import numbers
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import xarray as xr
from plotly.subplots import make_subplots

from workbench.figures.template import (
    DIVERGING,
    FONT_PX,
    FULL_WIDTH_PX,
    TOP_MARGIN_WITH_TITLE,
    PALETTE,
    SEQUENTIAL,
    SINGLE_COLUMN_PX,
    apply_paper_style,
    integer_ticks,
    log_ticks,
)


def _require(ds, names: tuple[str, ...], what: str, arg: str) -> None:
    if not isinstance(ds, xr.Dataset) or not set(names) <= set(ds.variables):
        got = sorted(ds.variables) if isinstance(ds, xr.Dataset) else type(ds).__name__
        raise TypeError(f"{arg}: expected the xr.Dataset of {what} (with {list(names)}), got {got}")


def feature_examples_html(top: xr.Dataset, feature: int, *, max_examples: int = 10) -> str:
    """Token-highlighted examples of ``feature`` from :func:`workbench.sae.top_activations`, as HTML.

    The example token is underlined; every token's background is the
    feature's activation there, relative to the feature's largest.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> top = xr.Dataset({"context_token": (("feature", "example", "offset"), np.array([[["a", "b"]]], dtype=object)),
    ...                   "context_activation": (("feature", "example", "offset"), np.array([[[0.0, 2.0]]])),
    ...                   "activation": (("feature", "example"), np.array([[2.0]])),
    ...                   "kind": (("feature", "example"), np.array([["top"]]))},
    ...                  coords={"feature": [7], "offset": [-1, 0]})
    >>> "<u>b</u>" in feature_examples_html(top, 7)
    True
    """
    _require(top, ("context_token", "context_activation", "activation", "kind"), "top_activations", "top")
    one = top.sel(feature=feature)
    peak = float(np.nanmax(one["context_activation"].values)) or 1.0
    rows = []
    for e in range(min(max_examples, one.sizes["example"])):
        if one["kind"].values[e] == "":
            continue
        spans = []
        for offset, token, act in zip(one["offset"].values, one["context_token"].values[e],
                                      one["context_activation"].values[e]):
            alpha = 0.0 if not np.isfinite(act) else max(0.0, float(act)) / peak
            text = html.escape(str(token)).replace("\n", "&#8629;")
            text = f"<u>{text}</u>" if offset == 0 else text
            spans.append(f'<span style="background: rgba(230,159,0,{alpha:.2f})" title="{act:.3g}">{text}</span>')
        label = f"{one['kind'].values[e]} {float(one['activation'].values[e]):.3g}"
        rows.append(f'<div style="font-family: monospace; white-space: pre">{html.escape(label)}: '
                    f'{"".join(spans)}</div>')
    return f'<div class="sae-feature" data-feature="{feature}">' + "\n".join(rows) + "</div>"


def _dfa_seq(dfa: xr.DataArray, seq: int | None) -> int:
    """Position along the seq dim of one feature's ``dfa`` (seq, dest, src): ``seq``, checked, or where it peaks."""
    n_seq = dfa.sizes["seq"]
    if seq is None and n_seq > 0:
        preactivation = dfa.sum("src").values  # (seq, dest), up to the feature's constant bias
        return int(np.unravel_index(np.argmax(preactivation), preactivation.shape)[0])
    if isinstance(seq, bool) or not isinstance(seq, numbers.Integral) or not 0 <= seq < n_seq:
        raise ValueError(f"seq: expected a sequence index in [0, {n_seq}) along the seq dim of dfa, got {seq!r}")
    return int(seq)


def feature_dashboard(top: xr.Dataset, feature: int, *, head_share: xr.DataArray, dfa: xr.DataArray | None = None,
                      firing: xr.DataArray | None = None, seq: int | None = None,
                      tokens: Sequence[str] | None = None) -> go.Figure:
    """Dashboard of one feature: activation histogram, DFA heatmap, head shares, logit effects.

    Parameters
    ----------
    top : xr.Dataset
        From :func:`workbench.sae.top_activations` (includes ``feature``).
    feature : int
    head_share : xr.DataArray (feature, head)
        From :func:`workbench.sae.head_attribution`.
    dfa : xr.DataArray (feature, seq, dest, src), optional
        From :func:`workbench.sae.dfa`; one sequence's DFA is shown (``seq``).
    firing : xr.DataArray, optional
        Activations of the feature over many tokens for the histogram;
        default the activations of the examples in ``top``.
    seq : int, optional
        Which sequence of ``dfa`` to show, by position along its ``seq`` dim
        (``dfa.isel(seq=seq)``), in ``[0, n_seq)``; only with ``dfa``.
        Default: the sequence where the feature's pre-activation peaks. DFA
        summed over ``src`` is that pre-activation less a per-feature
        constant, so it is read from ``dfa`` alone (``top`` numbers its
        sequences in its own tokens). For standard, JumpReLU and BatchTopK
        SAEs, whose activation grows with the pre-activation, that is where
        the activation is largest; a TopK SAE may drop that token from its
        top k. The shown sequence is named in the heatmap's x-axis title.
    tokens : sequence of str, optional
        The decoded tokens of the shown sequence, one per position: the DFA
        heatmap's axes then show them (else positions).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> top = xr.Dataset({"activation": (("feature", "example"), np.array([[2.0, 1.0]])),
    ...                   "top_logit_token": (("feature", "rank"), np.array([["a"]], dtype=object)),
    ...                   "top_logit": (("feature", "rank"), np.array([[0.5]])),
    ...                   "bottom_logit_token": (("feature", "rank"), np.array([["b"]], dtype=object)),
    ...                   "bottom_logit": (("feature", "rank"), np.array([[-0.5]]))}, coords={"feature": [3]})
    >>> share = xr.DataArray(np.array([[0.25, 0.75]]), dims=("feature", "head"), coords={"feature": [3]})
    >>> [t.type for t in feature_dashboard(top, 3, head_share=share).data]  # no DFA given: no heatmap
    ['histogram', 'bar', 'bar']

    With DFA over two sequences, the one where the feature is driven hardest is shown:

    >>> dfa = xr.DataArray(np.array([[[[1.0, 0.0], [0.5, 0.5]], [[0.0, 0.0], [3.0, -1.0]]]]),
    ...                    dims=("feature", "seq", "dest", "src"), coords={"feature": [3]})
    >>> fig = feature_dashboard(top, 3, head_share=share, dfa=dfa)
    >>> fig.data[1].z.tolist(), fig.layout.xaxis2.title.text
    ([[0.0, 0.0], [3.0, -1.0]], 'source position (sequence 1)')
    """
    _require(top, ("activation", "top_logit", "top_logit_token", "bottom_logit", "bottom_logit_token"),
             "top_activations", "top")
    if not isinstance(head_share, xr.DataArray) or head_share.dims != ("feature", "head"):
        raise TypeError("head_share: expected the (feature, head) DataArray of head_attribution")
    if dfa is None and seq is not None:
        raise ValueError(f"seq: expected None when no dfa is given, got {seq!r}")
    if dfa is None and tokens is not None:
        raise ValueError("tokens: expected None when no dfa is given (they label the DFA heatmap's axes)")
    one = top.sel(feature=feature)
    # Tilted token labels under the DFA heatmap need room above the lower row's titles.
    fig = make_subplots(rows=2, cols=2, horizontal_spacing=0.2, vertical_spacing=0.3 if tokens is not None else 0.2,
                        subplot_titles=("activations", "DFA by source position", "decoder share per head",
                                        "logit effects"))
    values = firing.values.ravel() if firing is not None else one["activation"].values
    fig.add_trace(go.Histogram(x=values[np.isfinite(values) & (values > 0)], marker_color=PALETTE[0],
                               name="activation"), row=1, col=1)
    fig.update_xaxes(title_text="activation (where > 0)", row=1, col=1)
    fig.update_yaxes(title_text="tokens", row=1, col=1)
    if dfa is not None:
        one_dfa = dfa.sel(feature=feature)
        shown = _dfa_seq(one_dfa, seq)
        z = one_dfa.isel(seq=shown).values
        bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() and np.nanmax(np.abs(z)) > 0 else 1.0
        fig.add_trace(go.Heatmap(z=z, colorscale=DIVERGING, zmin=-bound, zmax=bound, name="DFA",
                                 colorbar=dict(title=dict(text="DFA", side="right"), len=0.4, y=0.8, x=1.0,
                                               thickness=8)),
                      row=1, col=2)  # DFA is signed: white is 0
        if tokens is not None and len(tokens) != z.shape[-1]:
            raise ValueError(f"tokens: expected one token per position ({z.shape[-1]}), got {len(tokens)}")
        ticks = _token_ticks(_token_labels(tokens)) if tokens is not None else dict(dtick=1, tick0=0)
        fig.update_xaxes(title_text=f"source token (sequence {shown})" if tokens is not None
                         else f"source position (sequence {shown})", showgrid=False, **ticks, row=1, col=2)
        ticks = {k: v for k, v in ticks.items() if k not in ("tickangle", "title_standoff")}
        fig.update_yaxes(title_text="destination token" if tokens is not None else "destination position",
                         autorange="reversed", showgrid=False, **ticks, row=1, col=2)
    fig.add_trace(go.Bar(x=head_share["head"].values, y=head_share.sel(feature=feature).values,
                         marker_color=PALETTE[2], name="head share"), row=2, col=1)
    fig.update_xaxes(title_text="head", dtick=1, tick0=0, row=2, col=1)
    fig.update_yaxes(title_text="share of decoder norm", row=2, col=1)
    logit_tokens = list(one["top_logit_token"].values) + list(one["bottom_logit_token"].values)
    effects = np.concatenate([one["top_logit"].values, one["bottom_logit"].values])
    fig.add_trace(go.Bar(x=effects, y=[repr(str(t)) for t in logit_tokens], orientation="h", name="logit effect",
                         marker_color=[PALETTE[2] if v > 0 else PALETTE[3] for v in effects]), row=2, col=2)
    fig.update_xaxes(title_text="direct logit effect", row=2, col=2)
    labels = [repr(str(t)) for t in logit_tokens]
    fig.update_yaxes(title_text="output token", autorange="reversed", tickmode="array", tickvals=labels,
                     ticktext=labels, row=2, col=2)  # every token named, not every other one
    fig.update_layout(showlegend=False, title=f"feature {feature}", bargap=0.15)
    apply_paper_style(fig, width=FULL_WIDTH_PX, height=640 if tokens is not None else 500)
    fig.update_annotations(font_size=FONT_PX)
    return fig.update_layout(margin=dict(t=TOP_MARGIN_WITH_TITLE))  # room for the title above the subplot titles


def l0_ce_frontier(evaluations: xr.Dataset) -> go.Figure:
    """CE loss recovered against L0, one line per layer.

    Parameters
    ----------
    evaluations : xr.Dataset
        :func:`workbench.sae.evaluate` results concatenated along ``layer`` and
        a sweep dim (``k``, ``l1_coefficient``...), with ``l0`` and ``ce_loss_recovered``.
        NaN values (the ratio is undefined) leave gaps; a layer with no
        defined value says so in the legend.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ev = xr.Dataset({"l0": (("layer", "k"), [[4.0, 8.0]]), "ce_loss_recovered": (("layer", "k"), [[0.8, 0.9]])},
    ...                 coords={"layer": [0], "k": [4, 8]})
    >>> l0_ce_frontier(ev).data[0].name
    'layer 0'
    """
    _require(evaluations, ("l0", "ce_loss_recovered"), "evaluate results", "evaluations")
    fig = go.Figure()
    layers = evaluations["layer"].values if "layer" in evaluations.dims else [None]
    for i, layer in enumerate(layers):
        ev = evaluations.sel(layer=layer) if layer is not None else evaluations
        order = np.argsort(ev["l0"].values.ravel())
        recovered = ev["ce_loss_recovered"].values.ravel()[order]
        name = f"layer {layer}" if layer is not None else "SAE"
        if np.isnan(recovered).all():  # evaluate gives NaN where ablating the layer barely moves the loss
            name += " (n/a)"
        fig.add_trace(go.Scatter(x=ev["l0"].values.ravel()[order], y=recovered,
                                 mode="lines+markers", name=name,
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    l0 = evaluations["l0"].values
    fig.update_xaxes(title_text="L0 (active latents per token)", type="log", **log_ticks(l0))
    fig.update_yaxes(title_text="CE loss recovered")
    return apply_paper_style(fig, width=SINGLE_COLUMN_PX, height=260)


def firing_histogram(evaluation: xr.Dataset) -> go.Figure:
    """Histogram of the latents' log10 firing frequency, dead fraction in the title.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ev = xr.Dataset({"firing_histogram": ("log10_frequency", [1, 3]), "dead_fraction": 0.25},
    ...                 coords={"log10_frequency": [-2.0, -1.0]})
    >>> firing_histogram(ev).layout.title.text
    'dead: 25.0%'
    """
    _require(evaluation, ("firing_histogram",), "evaluate", "evaluation")
    fig = go.Figure(go.Bar(x=evaluation["log10_frequency"].values, y=evaluation["firing_histogram"].values,
                           marker_color=PALETTE[0]))
    if "dead_fraction" in evaluation:
        fig.update_layout(title=f"dead: {100 * float(evaluation['dead_fraction']):.1f}%")
    fig.update_xaxes(title_text="log10 firing frequency")
    fig.update_yaxes(title_text="latents", **integer_ticks(np.nanmax(evaluation["firing_histogram"].values, initial=1)))
    return apply_paper_style(fig, width=SINGLE_COLUMN_PX, height=240)


def head_family_matrix(families: xr.Dataset, layer: int) -> go.Figure:
    """Heatmap of feature counts per head and family in ``layer`` (from :func:`workbench.sae.feature_families`).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> fam = xr.Dataset({"head_counts": (("layer", "head", "family"), np.ones((1, 2, 4), dtype=int))},
    ...                  coords={"layer": [1], "head": [0, 1], "family": ["a", "b", "c", "d"]})
    >>> head_family_matrix(fam, 1).data[0].type
    'heatmap'
    """
    _require(families, ("head_counts",), "feature_families", "families")
    if layer not in families["layer"].values:
        raise ValueError(f"layer: expected one of {families['layer'].values.tolist()}, got {layer!r}")
    counts = families["head_counts"].sel(layer=layer)
    families_ = [str(f) for f in counts["family"].values]  # the x values a click reports: the family names
    fig = go.Figure(go.Heatmap(z=counts.values, x=families_, y=[f"head {h}" for h in counts["head"].values],
                               colorscale=SEQUENTIAL, text=counts.values, texttemplate="%{text}",
                               colorbar=dict(title="features", **integer_ticks(np.nanmax(counts.values, initial=1)))))
    fig.update_yaxes(title_text="head", autorange="reversed", tickmode="array",
                     tickvals=[f"head {h}" for h in counts["head"].values], ticktext=[str(h) for h in counts["head"].values])
    fig.update_xaxes(title_text="feature family", tickmode="array", tickvals=families_, tickangle=0,
                     ticktext=[f.replace("_", "<br>") for f in families_])
    fig.update_layout(title=f"layer {layer}: features per head and family")
    return apply_paper_style(fig, width=SINGLE_COLUMN_PX, height=300)


def training_curves(history: xr.Dataset, held_out: xr.Dataset | None = None) -> go.Figure:
    """Reconstruction loss (FVU) and L0 against tokens seen while an SAE trains.

    Parameters
    ----------
    history : xr.Dataset
        ``fvu`` and ``l0`` over ``step`` with a ``tokens`` coordinate, e.g. the
        history :func:`workbench.sae.train` returns (measured on each training batch).
    held_out : xr.Dataset, optional
        The same variables measured on held-out activations during training.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> hist = xr.Dataset({"fvu": ("step", [0.9, 0.5]), "l0": ("step", [8.0, 8.0])},
    ...                   coords={"step": [0, 1], "tokens": ("step", [256, 512])})
    >>> [t.name for t in training_curves(hist).data]
    ['training batch', 'training batch']
    """
    _require(history, ("fvu", "l0", "tokens"), "train history", "history")
    if held_out is not None:
        _require(held_out, ("fvu", "l0", "tokens"), "held-out measurements", "held_out")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss: fraction of variance unexplained",
                                                        "L0: active latents per token"))
    for i, (name, ds, mode) in enumerate((("training batch", history, "lines"),
                                          ("held out", held_out, "lines+markers"))):
        if ds is None or ds.sizes.get("step", 0) == 0:
            continue
        for col, var in ((1, "fvu"), (2, "l0")):
            fig.add_trace(go.Scatter(x=ds["tokens"].values, y=ds[var].values, mode=mode, name=name,
                                     legendgroup=name, showlegend=col == 1,
                                     line=dict(color=PALETTE[i], width=1), marker=dict(size=3)), row=1, col=col)
    fig.update_xaxes(title_text="tokens seen")
    fvu = np.concatenate([ds["fvu"].values.ravel() for ds in (history, held_out) if ds is not None])
    fig.update_yaxes(title_text="FVU", type="log", row=1, col=1, **log_ticks(fvu))
    fig.update_yaxes(title_text="L0 (active latents)", row=1, col=2)
    fig.update_annotations(font_size=FONT_PX)
    return apply_paper_style(fig, width=FULL_WIDTH_PX, height=260)


def _token_labels(tokens) -> list[str]:
    return [str(t).replace("\n", "\\n") for t in tokens]


def _token_ticks(labels: list[str]) -> dict:
    """An x axis of tokens: each token's text at its position, tilted; the margin grows to hold them and the title."""
    return dict(tickmode="array", tickvals=np.arange(len(labels)), ticktext=labels, tickangle=-60, automargin=True,
                title_standoff=8)


def prompt_heatmap(prompt: xr.Dataset) -> go.Figure:
    """Which features fire on each token of a prompt: heatmap (feature x token position).

    Parameters
    ----------
    prompt : xr.Dataset
        ``activation`` (feature, pos) and ``token`` (pos), the decoded tokens;
        x is the position (ticks show the tokens), so a click reports it.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> p = xr.Dataset({"activation": (("feature", "pos"), np.array([[0.0, 1.5]])),
    ...                 "token": ("pos", ["<bos>", "def"])}, coords={"feature": [4], "pos": [0, 1]})
    >>> list(prompt_heatmap(p).data[0].y)
    ['f4']
    """
    _require(prompt, ("activation", "token"), "a prompt's feature activations", "prompt")
    pos = prompt["pos"].values
    fig = go.Figure(go.Heatmap(z=prompt["activation"].values, x=pos,
                               y=[f"f{int(f)}" for f in prompt["feature"].values], colorscale=SEQUENTIAL,
                               colorbar=dict(title="activation"), xgap=1, ygap=1,
                               hovertemplate="%{y} at position %{x}: %{z:.3g}<extra></extra>"))
    fig.update_xaxes(showgrid=False, title_text="token (click one for its DFA)",
                     **_token_ticks(_token_labels(prompt["token"].values)))
    fig.update_yaxes(autorange="reversed", showgrid=False, title_text="feature")
    fig.update_layout(title="features firing on each token")
    return apply_paper_style(fig, width=FULL_WIDTH_PX, height=max(320, 170 + 18 * prompt.sizes["feature"]))


def token_dfa(prompt: xr.Dataset, pos: int) -> go.Figure:
    """DFA by source position of the features active at token ``pos`` of a prompt.

    Parameters
    ----------
    prompt : xr.Dataset
        ``activation`` (feature, pos), ``dfa`` (feature, dest, src) from
        :func:`workbench.sae.dfa`, and ``token`` (pos).
    pos : int
        The destination token.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> p = xr.Dataset({"activation": (("feature", "pos"), np.array([[0.0, 1.5]])),
    ...                 "dfa": (("feature", "dest", "src"), np.ones((1, 2, 2))),
    ...                 "token": ("pos", ["<bos>", "def"])},
    ...                coords={"feature": [4], "pos": [0, 1], "dest": [0, 1], "src": [0, 1]})
    >>> token_dfa(p, 1).data[0].z.tolist()
    [[1.0, 1.0]]
    """
    _require(prompt, ("activation", "dfa", "token"), "a prompt's feature activations and DFA", "prompt")
    n_pos = prompt.sizes["pos"]
    if not 0 <= pos < n_pos:
        raise ValueError(f"pos: expected a token position in [0, {n_pos}), got {pos!r}")
    active = prompt["activation"].isel(pos=pos).values > 0
    labels = _token_labels(prompt["token"].values)
    fig = go.Figure()
    if active.any():
        values = prompt["dfa"].isel(dest=pos).values[active][:, : pos + 1]
        bound = float(np.abs(values).max()) or 1.0
        fig.add_trace(go.Heatmap(z=values, x=np.arange(pos + 1),
                                 y=[f"f{int(f)}" for f in prompt["feature"].values[active]], colorscale=DIVERGING,
                                 zmin=-bound, zmax=bound, colorbar=dict(title="DFA"), xgap=1, ygap=1,
                                 hovertemplate="%{y} reads position %{x}: %{z:.3g}<extra></extra>"))
        fig.update_xaxes(**_token_ticks(labels[: pos + 1]))
    fig.update_xaxes(title_text="source token", showgrid=False)
    fig.update_yaxes(autorange="reversed", showgrid=False, title_text="feature")
    suffix = "" if active.any() else ": no feature fires here"
    fig.update_layout(title=f"DFA at {labels[pos]!r} (position {pos}){suffix}")
    return apply_paper_style(fig, width=FULL_WIDTH_PX, height=max(320, 170 + 18 * int(active.sum())))
