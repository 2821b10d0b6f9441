"""Figures for steering along an SAE feature (:func:`workbench.sae.steer`) and ablating features
(:func:`workbench.sae.ablate`).

Examples
--------
>>> import torch
>>> from workbench.models import load_model
>>> from workbench.sae import AttentionSAE, SAEConfig, steer
>>> model = load_model("tiny-attn-2l", device="cpu")
>>> out = steer(model, AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=4)), 1, 2, 30.0, text="import os", n_new=0)
>>> steering_bars(out).layout.xaxis.title.text
'change in next-token log-probability (nats)'
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from workbench.figures.template import PALETTE, SINGLE_COLUMN_PX, apply_paper_style


def _labels(tokens) -> list[str]:
    return [repr(str(t))[1:-1] or "(empty)" for t in tokens]


def steering_bars(result) -> go.Figure:
    """Horizontal bars: the tokens whose next-token log-probability rises (top) and falls (bottom) most.

    Parameters
    ----------
    result : SteeringResult
        From :func:`workbench.sae.steer`.

    Returns
    -------
    go.Figure
        One bar per token (``up`` and ``down`` traces), the change in nats on
        x; the title names the feature, the scale and KL(clean || steered).
    """
    for name in ("top_up", "top_down", "feature", "scale", "kl"):
        if not hasattr(result, name):
            raise TypeError(f"result: expected a SteeringResult from workbench.sae.steer, got {type(result).__name__}")
    up, down = result.top_up, result.top_down
    fig = go.Figure()
    # Largest rise at the top, largest fall at the bottom: plotly draws the first category at the bottom.
    for ds, name, colour in ((down, "down", PALETTE[1]), (up.isel(rank=slice(None, None, -1)), "up", PALETTE[0])):
        labels = [f"{label} " + "\u200b" * i for i, label in enumerate(_labels(ds["token"].values))]  # distinct
        fig.add_trace(go.Bar(x=ds["delta"].values, y=[f"{name}: {label}" for label in labels], orientation="h",
                             name=name, marker_color=colour,
                             customdata=np.stack([ds["logprob_clean"].values, ds["logprob_steered"].values], -1),
                             hovertemplate="%{y}: %{x:+.3f} nats (%{customdata[0]:.2f} -> %{customdata[1]:.2f})"
                                           "<extra></extra>"))
    fig.update_layout(title=f"feature {result.feature} x {result.scale:g}: next token, KL {result.kl:.3g} nats",
                      showlegend=False)
    fig.update_xaxes(title_text="change in next-token log-probability (nats)")
    fig.update_yaxes(title_text="token")
    n = up.sizes["rank"] + down.sizes["rank"]
    fig = apply_paper_style(fig, width=SINGLE_COLUMN_PX + 80, height=max(260, 60 + 18 * n))
    return fig.update_yaxes(automargin=True, title_standoff=6)


def continuation_html(result) -> str:
    """The prompt and its greedy continuations without and with steering, side by side, as HTML.

    Examples
    --------
    >>> import torch
    >>> from workbench.models import load_model
    >>> from workbench.sae import AttentionSAE, SAEConfig, steer
    >>> model = load_model("tiny-attn-2l", device="cpu")
    >>> out = steer(model, AttentionSAE(SAEConfig(d_in=128, d_sae=16, k=4)), 1, 2, 30.0, text="import", n_new=2)
    >>> "without steering" in continuation_html(out)
    True
    """
    prompt = html.escape(result.text)
    cells = []
    for title, text in (("without steering", result.continuation_clean),
                        (f"with feature {result.feature} x {result.scale:g}", result.continuation_steered)):
        cells.append(f'<div style="flex:1;min-width:0"><b>{html.escape(title)}</b>'
                     f'<pre style="white-space:pre-wrap;overflow-wrap:anywhere;margin:4px 0">{prompt}'
                     f'<span style="background:#fde6b1">{html.escape(text)}</span></pre></div>')
    return f'<div class="wb-continuations" style="display:flex;gap:16px">{"".join(cells)}</div>'
