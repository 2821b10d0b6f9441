"""How the Attention SAEs page looks: its sidebar controls and its figures with the prompt explorer.

Widgets only set the page's parameters or call its methods
(:class:`~widgets.pages.sae.SAEPage`); the page holds all state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import panel as pn

from widgets.pages.base import USER_ERRORS
from widgets.pages.sae_figures import FIGURES
from widgets.pages.sae_jobs import K_SPARSE, TRAIN_SETTINGS
from widgets.template import FigureSlots, figure_block, figure_row, linked_select, settings

if TYPE_CHECKING:
    from widgets.pages.sae import SAEPage


def controls(page: "SAEPage") -> list:
    """Model, layer and SAE; the feature browser; the settings of a new SAE."""
    from workbench.models import list_models

    choose = settings(page, ["model", "layer", "sae"], widgets={
        "model": {"type": pn.widgets.AutocompleteInput, "options": list_models(), "restrict": False,
                  "min_characters": 0, "case_sensitive": False, "css_classes": ["wb-model"]},
        "layer": {"css_classes": ["wb-layer"]}, "sae": {"css_classes": ["wb-sae"]}})
    analyse = pn.widgets.Button(label="Analyse", css_classes=["wb-analyse"], disabled=page.param.running)
    analyse.on_click(lambda _: page.analyse())
    browse = settings(page, ["feature", "family"], widgets={
        "feature": {"css_classes": ["wb-feature"]}, "family": {"css_classes": ["wb-family"]}})
    pick = linked_select(page, "feature", "matches", label="Features of the family", css_classes=["wb-match"],
                         margin=(5, 20), sizing_mode="stretch_width",
                         description="The features of the chosen family; pick one to show it.")
    fields = settings(page, [*TRAIN_SETTINGS, "eval_seq"])
    # k sets the sparsity of the k-sparse architectures, the L1 coefficient that of the others: show the one that acts
    k_sparse = page.param.architecture.rx().rx.pipe(lambda arch: arch in K_SPARSE)
    fields.layout.objects[TRAIN_SETTINGS.index("k")].visible = k_sparse
    fields.layout.objects[TRAIN_SETTINGS.index("l1_coefficient")].visible = k_sparse.rx.not_()
    train = pn.widgets.Button(label="Train a new SAE", color="primary", css_classes=["wb-train"],
                              disabled=page.param.running, sizing_mode="stretch_width")
    train.on_click(lambda _: page.train())
    return [choose, analyse, pn.pane.Markdown("**Feature browser**"), browse, pick,
            pn.Card(fields, train, title="Train a new SAE", collapsed=True, sizing_mode="stretch_width",
                    margin=(10, 5))]


def examples_pane(page: "SAEPage") -> pn.pane.HTML:
    """The shown feature's token-highlighted examples, rewritten only when they change."""
    examples = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["wb-examples"])

    def show(*_) -> None:
        try:
            html = page.examples_html()
        except USER_ERRORS as err:
            page.fail(err)
            return
        if examples.object != html:
            examples.object = html

    page.param.watch(show, "revision")
    show()
    return examples


def prompt_input(page: "SAEPage") -> list:
    """The prompt's text and the button that explores it (again, when the text is unchanged)."""
    text = pn.widgets.TextAreaInput(value=page.prompt, rows=4, sizing_mode="stretch_width", css_classes=["wb-prompt"])
    explore = pn.widgets.Button(label="Explore prompt", css_classes=["wb-explore"], disabled=page.param.running)

    def submit(_) -> None:
        if text.value_input == page.prompt:
            page.run_prompt()
        else:
            page.prompt = text.value_input

    explore.on_click(submit)
    return [text, explore]


def steering_panel(page: "SAEPage") -> list:
    """Scale and prompt of a steering run along the shown feature, its button and the continuations."""
    scale = pn.widgets.FloatInput.from_param(page.param.steer_scale, css_classes=["wb-steer-scale"])
    text = pn.widgets.TextAreaInput.from_param(page.param.steer_prompt, rows=2,
                                               sizing_mode="stretch_width", css_classes=["wb-steer-prompt"])
    run = pn.widgets.Button(label="Steer along the shown feature", css_classes=["wb-steer"],
                            disabled=page.param.running)
    run.on_click(lambda _: page.steer())
    continuations = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["wb-continuations"])

    def show(*_) -> None:
        html = page.steering_html()
        if continuations.object != html:
            continuations.object = html

    page.param.watch(show, "revision")
    show()
    return [pn.Row(scale, text, sizing_mode="stretch_width"), run, continuations]


def body(page: "SAEPage") -> pn.Column:
    """Feature browser, prompt explorer, steering, heads x families and training, each figure in its fixed place."""
    analysed = "Press Analyse (sidebar) on a saved SAE, or train one, to fill this."
    slots = FigureSlots(page, list(FIGURES), on_click={"prompt": lambda data: page.click("prompt", data),
                                                       "families": lambda data: page.click("families", data)},
                        hints={"feature": analysed, "families": analysed, "firing": analysed,
                               "prompt": "Press Explore prompt to see the features of each token.",
                               "token_dfa": "Click a token in the prompt figure to see its DFA by source.",
                               "steering": "Press Steer along the shown feature.",
                               "training": "Train a new SAE (sidebar) to see its training curve."})
    steer = steering_panel(page)
    return pn.Column(
        pn.pane.Markdown("### Feature browser"), slots["feature"], examples_pane(page),
        pn.pane.Markdown("### Prompt explorer"), *prompt_input(page),
        figure_row(figure_block(slots["prompt"]), figure_block(slots["token_dfa"])),
        pn.pane.Markdown("### Steering"), *steer[:2], slots["steering"], steer[2],
        pn.pane.Markdown("### Heads x families"),
        figure_row(figure_block(slots["families"]), figure_block(slots["firing"])),
        pn.pane.Markdown("### Training"), slots["training"],
        sizing_mode="stretch_width")
