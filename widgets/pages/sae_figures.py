"""The figures of the Attention SAEs page, drawn from a stored :func:`~workbench.sae.sae_dashboard` result.

:func:`figure_builders` names each figure by exactly the choices it depends
on, so the page builds it once per view (:meth:`~widgets.pages.base.Page.figure`);
:func:`sae_figures` draws them all, for the paper export of a saved result.
"""

from __future__ import annotations

from typing import Callable, Hashable

import plotly.graph_objects as go
import xarray as xr

from workbench.sae.browse import most_active_feature, most_active_token, unpack_prompt
from workbench.sae.history import held_out_curve, training_history

FIGURES = ("training", "feature", "prompt", "token_dfa", "steering", "families", "firing")  # in page order


def feature_figure(ds: xr.Dataset, feature: int) -> go.Figure:
    """The dashboard of ``feature``: activation histogram, DFA on its top example, head shares, logit effects."""
    from workbench.figures.sae import feature_dashboard

    top_dfa = ds["dfa_top"].sel(feature=[feature]).expand_dims("seq", axis=1)
    fig = feature_dashboard(ds, feature, head_share=ds["head_share"], dfa=top_dfa,
                            firing=ds["feature_activation"].sel(feature=feature))
    family = str(ds["family_label"].sel(feature=feature).values)
    peak = float(ds["activation"].sel(feature=feature).max())
    return fig.update_layout(title=f"feature {feature}: {family.replace('_', ' ')}, top activation {peak:.3g}")


def live_training_builder(live: tuple) -> tuple[Hashable, Callable[[], go.Figure]]:
    """``(key, build)`` of the held-out curve of an SAE being trained (``(step, tokens, fvu, l0)`` points)."""
    from workbench.figures.sae import training_curves

    curve = held_out_curve(live)
    return ("training", "live", len(live)), lambda: training_curves(curve.isel(step=slice(0, 0)), curve)


def figure_builders(ds: xr.Dataset | None, prompt: xr.Dataset | None, feature: int, token: int,
                    steering=None) -> dict[str, tuple[Hashable, Callable[[], go.Figure]]]:
    """``{name: (key, build)}`` of the figures of a stored result, a prompt and a steering run
    (:func:`~workbench.sae.steer`), in page order; each key names exactly the choices its figure depends on."""
    from workbench.figures.sae import firing_histogram, head_family_matrix, prompt_heatmap, token_dfa, training_curves

    builders = {}
    curves = None if ds is None else training_history(ds)
    if curves is not None:
        builders["training"] = (("training",), lambda: training_curves(*curves))
    if ds is not None:
        builders["feature"] = (("feature", feature), lambda: feature_figure(ds, feature))
    if prompt is not None:
        text = prompt.attrs["prompt"]
        builders["prompt"] = (("prompt", text), lambda: prompt_heatmap(prompt))
        builders["token_dfa"] = (("token_dfa", text, token), lambda: token_dfa(prompt, token))
    if steering is not None:
        from workbench.figures.sae_steering import steering_bars

        run = (steering.layer, steering.feature, steering.scale, tuple(steering.prompt), steering.kl)
        builders["steering"] = (("steering", *run), lambda: steering_bars(steering))
    if ds is not None:
        layer = int(ds.attrs["layer"])
        builders["families"] = (("families",), lambda: head_family_matrix(
            ds[["head_counts"]].expand_dims(layer=[layer]), layer))
        builders["firing"] = (("firing",), lambda: firing_histogram(ds))
    return builders


def sae_figures(ds: xr.Dataset, feature: int | None = None, token: int | None = None) -> dict[str, go.Figure]:
    """The page's figures for a stored :func:`~workbench.sae.sae_dashboard` result.

    Examples
    --------
    >>> import tempfile
    >>> from widgets.pages.sae import SAEPage
    >>> page = SAEPage(cache_dir=tempfile.mkdtemp(), d_sae=32, k=4, n_seq=16, seq_len=16, n_tokens=512,
    ...                eval_seq=4)
    >>> _ = page.train(); _ = page.wait(300)
    >>> list(sae_figures(page.result))
    ['training', 'feature', 'prompt', 'token_dfa', 'families', 'firing']
    """
    prompt = unpack_prompt(ds)
    feature = most_active_feature(ds) if feature is None else feature
    token = most_active_token(prompt) if token is None else token
    return {name: build() for name, (_, build) in figure_builders(ds, prompt, feature, token).items()}
