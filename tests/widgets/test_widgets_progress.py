"""Live progress on the pages, and view changes that are lookups sending only the changed figures."""

from __future__ import annotations

import threading
import time
import warnings

import pytest

from widgets.jobs import Job
from widgets.pages.base import Page


def _poll_until(page: Page, condition, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        page.poll()
        if time.time() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


def _prefetched(page: Page) -> None:
    """Start the figure builds a page queued (a served page's next poll does) and wait for them."""
    thread = page._start_prefetch()
    assert thread is not None, "the page queued no figures to build ahead"
    thread.join(60)


def test_partial_results_reach_the_page_in_order_and_stop_when_done(tmp_path):
    seen = []

    class Recorder(Page):
        def on_partial(self, partial):
            seen.append(partial)

    page = Recorder(cache_dir=tmp_path)
    steps = [threading.Event() for _ in range(3)]

    def work(job: Job) -> str:
        for i, step in enumerate(steps):
            job.publish(i)
            step.wait(30)
        job.publish("superseded by the result")
        return "done"

    page.start(work, "steps", lambda result: seen.append(result))
    for i, step in enumerate(steps):
        _poll_until(page, lambda: seen[-1:] == [i])
        page.poll()  # the same partial is not delivered twice
        step.set()
    page.wait(30)
    assert seen == [0, 1, 2, "done"]


@pytest.fixture()
def gated_collapse(monkeypatch):
    """run_experiment that pauses after epoch 2 until the test opens the gate."""
    import workbench.collapse

    real, gate = workbench.collapse.run_experiment, threading.Event()

    def gated(*args, progress, **kwargs):
        def report(epoch, metrics):
            stop = progress(epoch, metrics)
            if epoch == 2:
                gate.wait(60)
            return stop
        return real(*args, progress=report, **kwargs)

    monkeypatch.setattr(workbench.collapse, "run_experiment", gated)
    return gate


def test_collapse_page_draws_live_nc_curves_while_training(tmp_path, gated_collapse):
    from widgets.pages.collapse import CollapsePage

    page = CollapsePage(cache_dir=tmp_path, n_classes=3, n_major=20, width=8, depth=2, epochs=6, record_every=1)
    page.run()
    _poll_until(page, lambda: page.live is not None and page.live.sizes["epoch"] == 3)
    page.poll()  # the run waits at the gate: this poll sees its settled state
    assert page.running and page.result is None and page.progress == round(100 * 2 / 6)
    assert page.param.layer.objects == ["relu1", "relu2", "linear1"] and page.layer == "linear1"
    live = page.figures()
    assert list(live) == ["nc_curves", "nc1_by_layer", "gram", "means_3d"]
    nc1 = next(t for t in live["nc_curves"].data if t.name == "NC1")
    assert list(nc1.x) == [0, 1, 2]
    gated_collapse.set()
    progress = [page.progress]
    while page.poll():
        progress.append(page.progress)
        time.sleep(0.005)
    assert progress == sorted(progress) and page.progress == 100
    assert page.live is page.result and page.result.epoch.values.tolist() == list(range(7))
    nc1 = next(t for t in page.figures()["nc_curves"].data if t.name == "NC1")
    assert list(nc1.x) == list(range(7))


def test_cancelled_collapse_run_drops_its_live_curves(tmp_path, gated_collapse):
    from widgets.pages.collapse import CollapsePage

    page = CollapsePage(cache_dir=tmp_path, n_classes=2, n_major=10, width=8, epochs=6, record_every=1)
    page.run()
    _poll_until(page, lambda: page.live is not None and page.live.sizes["epoch"] == 3)
    page.cancel()
    gated_collapse.set()
    page.wait(60)
    assert page.status.endswith("cancelled") and page.live is None and page.result is None
    assert page.figures() == {}


def test_overview_cache_button_reports_each_chunk(tmp_path, monkeypatch):
    from widgets.pages.overview import OverviewPage

    reports = []
    real = Job.report
    monkeypatch.setattr(Job, "report", lambda job, fraction, message: (reports.append((fraction, message)),
                                                                       real(job, fraction, message))[1])
    page = OverviewPage(cache_dir=tmp_path, n_seq=4, seq_len=8)
    page.cache_hooks()
    page.wait(180)
    assert page.message == "" and page.progress == 100 and len(page.entries) == 3
    chunks = [(fraction, message) for fraction, message in reports if "chunk" in message]
    assert [fraction for fraction, _ in chunks] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert chunks[-1][1] == f"caching 3 hooks of {page.model}: chunk 4/4"


def test_overview_cancel_mid_cache_keeps_no_partial_store(tmp_path, monkeypatch):
    from widgets.pages.overview import OverviewPage

    page = OverviewPage(cache_dir=tmp_path, n_seq=4, seq_len=8)
    real = Job.report

    def cancel_at_half(job, fraction, message):
        real(job, fraction, message)
        if fraction == 0.5:
            job.cancel()

    monkeypatch.setattr(Job, "report", cancel_at_half)
    page.cache_hooks()
    page.wait(180)
    assert page.status.endswith("cancelled") and page.entries == [] and page.hook_cache.list() == []


@pytest.fixture(scope="module")
def collapse_result(tmp_path_factory):
    from widgets.pages.collapse import CollapsePage

    root = tmp_path_factory.mktemp("collapse-views")
    page = CollapsePage(cache_dir=root, n_classes=3, n_major=20, width=8, depth=2, epochs=2, record_every=1)
    page.run()
    page.wait(120)
    return root, page.settings()


def test_layer_change_is_a_lookup_and_updates_only_the_changed_panes(collapse_result, monkeypatch):
    import workbench.figures.collapse as builders
    from widgets.pages.collapse import CollapsePage
    from widgets.template import figure_grid

    root, settings = collapse_result
    page = CollapsePage(cache_dir=root, **settings)
    grid = figure_grid(page)
    panes = {block[0].name: block[0] for block in grid}
    _prefetched(page)
    for name in ("nc_vs_epoch", "nc_vs_layer", "gram_heatmap"):  # every view is built: no builder may run
        monkeypatch.setattr(builders, name, lambda *a, **k: pytest.fail("a view change rebuilt a figure"))
    shown = {name: pane.object for name, pane in panes.items()}
    sources = {name: pane._wb_source for name, pane in panes.items()}  # the memoised figures the panes show
    page.layer = "relu1"
    assert panes["nc_curves"].object is not shown["nc_curves"] and panes["gram"].object is not shown["gram"]
    assert panes["nc1_by_layer"].object is shown["nc1_by_layer"]  # not re-sent
    assert panes["nc_curves"].object.layout.title.text == "NC metrics at relu1"
    page.target = "of"
    assert panes["gram"].object.layout.title.text.startswith("Gram vs orthogonal frame")
    page.param.update(layer="linear1", target="etf")
    assert all(panes[name]._wb_source is fig for name, fig in sources.items())  # back to the very same figures


def test_figures_are_not_changed_by_being_shown(collapse_result):
    from widgets.pages.collapse import CollapsePage
    from widgets.template import plotly_pane

    root, settings = collapse_result
    page = CollapsePage(cache_dir=root, **settings)
    figures = page.figures()
    before = {name: fig.to_json() for name, fig in figures.items()}
    names = list(figures)
    for name, other in zip(names, names[1:] + names[:1]):
        pane = plotly_pane(figures[name], name)
        model = pane.get_root()
        pane.relayout_data = {"width": 1030, "height": 0}  # what a resize in the browser sends back
        pane.object = figures[other]
        pane.object = figures[name]
        pane._cleanup(model)
    assert {name: fig.to_json() for name, fig in figures.items()} == before


def test_pages_use_no_deprecated_panel_options(tmp_path, collapse_result):
    from bokeh.document import Document

    from widgets.pages.collapse import CollapsePage
    from widgets.pages.connectome import ConnectomePage
    from widgets.pages.overview import OverviewPage
    from widgets.template import site

    root, settings = collapse_result
    titles = {"overview": "Overview", "collapse": "Neural collapse", "connectome": "Connectome"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", PendingDeprecationWarning)
        warnings.simplefilter("error", DeprecationWarning)
        for page in (OverviewPage(cache_dir=tmp_path), CollapsePage(cache_dir=root, **settings),
                     ConnectomePage(cache_dir=tmp_path)):
            site(page, titles).server_doc(Document())


def test_overview_warm_up_scores_the_default_model_before_returning(tmp_path):
    from widgets.pages.overview import OverviewPage
    from widgets.results import ResultStore, result_key
    from workbench.models import list_models

    models = list_models()
    thread = OverviewPage.warm_up(tmp_path)
    store = ResultStore(tmp_path)
    assert store.load(result_key("induction", {"model": models[0]})) is not None
    if thread is not None:
        thread.join(180)
    assert len(store.keys("induction")) == len(models)
    page = OverviewPage(cache_dir=tmp_path)
    assert list(page.figures()) == ["induction"] and page._job is None
