"""Page state objects without a browser: jobs, cached results, bad input, export."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import xarray as xr

from widgets.jobs import Cancelled, Job
from widgets.pages.base import readable
from widgets.results import ResultStore, result_key


def test_job_returns_result_reports_progress_and_keeps_errors():
    job = Job(lambda j: (j.report(0.25, "quarter"), 7)[1], name="seven").wait(10)
    assert (job.result, job.error, job.fraction, job.message) == (7, None, 0.25, "quarter")
    failed = Job(lambda j: 1 / 0).wait(10)
    assert isinstance(failed.error, ZeroDivisionError) and failed.done


def test_job_cancel_stops_work_at_next_check():
    def work(job):
        while True:
            job.check()
            time.sleep(0.01)

    job = Job(work, name="loop")
    job.cancel()
    assert isinstance(job.wait(10).error, Cancelled)


def test_result_store_round_trip_and_keys(tmp_path):
    store = ResultStore(tmp_path)
    key = result_key("demo", {"a": 1})
    assert key != result_key("demo", {"a": 2}) and store.load(key) is None
    store.save(key, xr.Dataset({"x": ("i", np.arange(3.0))}, attrs={"names": ["p", "q"]}))
    back = store.load(key)
    assert back.x.values.tolist() == [0.0, 1.0, 2.0] and list(back.attrs["names"]) == ["p", "q"]
    assert store.keys("demo") == [key] and store.keys("other") == []
    assert not list(store.root.glob(".*tmp*"))  # temporary store renamed away


def test_readable_keeps_user_errors_plain():
    assert readable(ValueError("rank: too big")) == "rank: too big"
    assert readable(KeyError("key: missing")) == "key: missing"
    assert readable(RuntimeError("x")) == "RuntimeError: x"


def test_overview_caches_every_hook_and_reopens_induction_from_cache(tmp_path, monkeypatch, capsys):
    from workbench.cli import main
    from workbench.hooks import HookCache
    from workbench.models.zoo import MODELS_DIR
    from widgets.pages.overview import OverviewPage

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    page = OverviewPage(n_seq=2, seq_len=8)  # the default folder, as `workbench serve` without --cache
    assert page.entries == [] and page.figures() == {}
    page.cache_hooks()
    page.wait(180)
    assert page.message == ""
    n_layers = json.loads((MODELS_DIR / page.model / "config.json").read_text())["architecture"]["n_layers"]
    expected = {f"blocks.{i}.attn.hook_z" for i in range(n_layers)} | {f"blocks.{n_layers - 1}.hook_resid_post"}
    assert {e["hook"] for e in page.entries} == expected
    assert all(e["n_seq"] == 2 and e["seq_len"] == 8 for e in page.entries)
    # one cache: the CLI (default folder and --cache of the page's folder) and HookCache() list the page's stores
    listed = {e["key"] for e in page.entries}
    for argv in (["cache", "list", "--json"], ["cache", "list", "--json", "--cache", str(tmp_path)]):
        assert main(argv) == 0
        assert {json.loads(line)["key"] for line in capsys.readouterr().out.splitlines()} == listed
    assert {e["key"] for e in HookCache().list()} == listed
    page.compute_induction()
    page.wait(180)
    assert page.induction.dims == ("layer", "head") and page.induction.sizes["layer"] == n_layers
    reopened = OverviewPage()
    assert list(reopened.figures()) == ["induction"] and reopened._job is None


def test_collapse_counts_follow_the_step_imbalance(tmp_path):
    from widgets.pages.collapse import CollapsePage

    page = CollapsePage(cache_dir=tmp_path, n_classes=5, n_major=30, ratio=3)
    assert page.counts() == [30, 30, 30, 10, 10]
    page.ratio = 1
    assert page.counts() == [30] * 5


@pytest.fixture(scope="module")
def collapse_cache(tmp_path_factory):
    from widgets.pages.collapse import CollapsePage

    root = tmp_path_factory.mktemp("collapse")
    page = CollapsePage(cache_dir=root, n_classes=3, n_major=20, ratio=2, width=16, epochs=2, record_every=1)
    page.run()
    page.wait(120)
    return root, page


def test_collapse_run_records_the_requested_run(collapse_cache):
    _, page = collapse_cache
    assert page.message == "" and not page.running
    ds = page.result
    assert ds.epoch.values.tolist() == [0, 1, 2]
    assert list(ds.attrs["n_per_class"]) == [20, 20, 10]
    assert list(page.figures()) == ["nc_curves", "nc1_by_layer", "gram", "means_3d"]
    before = page.revision
    page.layer = page.param.layer.objects[0]
    assert page.revision > before
    assert page.figures()["nc_curves"].layout.title.text == f"NC metrics at {page.layer}"
    # the 3-D view: this layer's class means and classifier rows at the last epoch, with the page's target
    fig = page.figures()["means_3d"]
    assert [t.name for t in fig.data] == ["class means", "classifier rows", "simplex ETF"]
    assert [len(t.x) for t in fig.data] == [3, 3, 3] and f"{page.layer}, epoch 2" in fig.layout.title.text


def test_collapse_reopens_from_cache_without_running(collapse_cache):
    from widgets.pages.collapse import CollapsePage

    root, page = collapse_cache
    again = CollapsePage(cache_dir=root, **page.settings())
    assert again.result is not None and again._job is None
    assert again.run() is None and again.status == "loaded from cache"


def test_collapse_cancel_discards_the_run(tmp_path):
    from widgets.pages.collapse import CollapsePage

    page = CollapsePage(cache_dir=tmp_path, n_classes=2, n_major=10, width=8, epochs=3)
    page.run()
    page.cancel()
    page.wait(120)
    assert page.status.endswith("cancelled") and page.result is None and ResultStore(tmp_path).keys() == []


@pytest.fixture(scope="module")
def connectome_page(tmp_path_factory):
    from widgets.pages.connectome import ConnectomePage

    page = ConnectomePage(cache_dir=tmp_path_factory.mktemp("connectome"), n_neurons=12, n_time=160,
                          rank_min=1, rank_max=2, n_restarts=2, max_iter=30, n_surrogates=2)
    traces = page.traces  # a recording with a covariate travels with it as a time coord
    page._use(traces.assign_coords(speed=("time", np.sin(np.arange(traces.sizes["time"]) / 9.0))), {"speed": 1})
    page.run()
    page.wait(120)
    return page


def test_connectome_run_fits_the_rank_sweep_and_browses_components(connectome_page):
    page = connectome_page
    assert page.message == ""
    assert page.result["sweep_error"]["rank"].values.tolist() == [1, 2]
    assert page.param.component.objects == list(range(page.result.attrs["rank"]))
    assert list(page.figures()) == ["traces", "rank_sweep", "component", "top_pairs", "communities", "consensus"]
    page.component = page.param.component.objects[-1]
    assert page.figures()["component"].layout.title.text.startswith(f"component {page.component} · EV ")


def test_connectome_page_overlays_significance_covariate_and_consensus(connectome_page):
    page = connectome_page
    c = int(page.component)
    p = float(page.result["explained_variance_p"][c])
    title = page.figures()["component"].layout.title.text
    assert f"p = {p:.2g} vs 2 surrogates (too few to test at 0.05: need 19)" in title  # p of the shown component
    assert page.figures()["component"].data[1].line.color != "#999999"  # 2 surrogates give p >= 1/3: no verdict
    assert "2 surrogates cannot reach p <= 0.05" in page.caution and "use at least 19" in page.caution
    page.n_surrogates = 19
    assert page.caution == ""  # enough to test: nothing to say
    page.n_surrogates = 2
    assert page.param.covariate.objects == ["", "speed"]
    page.covariate = "speed"
    assert [t.name for t in page.figures()["component"].data] == ["pairs", "time", "speed", "animals"]
    page.covariate = ""
    # consensus over the seeds, computed in the job: each neuron's confidence is its mean co-assignment
    # with its consensus mates (1 - its largest co-assignment when alone), counted here by hand
    co = page.result["consensus_co_assignment"][c].values
    labels = page.result["consensus_community"][c].values
    for i in range(labels.size):
        mates = np.flatnonzero((labels == labels[i]) & (np.arange(labels.size) != i))
        others = np.delete(co[i], i)
        expected = co[i, mates].mean() if mates.size else 1.0 - others.max()
        assert page.result["consensus_confidence"][c].values[i] == pytest.approx(expected)
    consensus = page.figures()["consensus"]
    assert consensus.layout.title.text.startswith("consensus of 3 runs")
    names = page.figures()["top_pairs"].data[0].y
    factor = page.result["pair_factor"][:, c]
    best = int(np.argmax(factor.values))
    assert names[0] == f"{factor['neuron_a'].values[best]}–{factor['neuron_b'].values[best]}"


def test_connectome_missing_file_is_a_message_not_an_exception(connectome_page, tmp_path):
    from widgets.access import DataFolders
    from widgets.pages.connectome import ConnectomePage

    page = ConnectomePage(cache_dir=tmp_path, data_folders=DataFolders([tmp_path]), source="file",
                          path=str(tmp_path / "missing.nc"))
    assert page.wait().traces is None and page.message == "path: no file or folder 'missing.nc' in the data folders"
    page.path = ""
    page.load()
    assert page.message == "path: expected a recording file or folder, got an empty path"
    assert page.run() is None and page.message.startswith("traces:")


def _file_page(tmp_path, path: str):
    from widgets.access import DataFolders
    from widgets.pages.connectome import ConnectomePage

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return ConnectomePage(cache_dir=tmp_path / "cache", data_folders=DataFolders([data]), source="file",
                          path=path.format(data=data, tmp=tmp_path))


@pytest.mark.parametrize("path", ["{tmp}/secret.json", "{tmp}/absent.nc", "{data}/../secret.json", "/etc/hostname"])
def test_connectome_reads_nothing_outside_the_data_folders_and_says_the_same_for_all(tmp_path, path):
    (tmp_path / "secret.json").write_text('{"api_key": 1, "password": 2}')
    page = _file_page(tmp_path, path).wait()
    assert page.traces is None and page.message == f"path: outside the data folders ({tmp_path / 'data'})"


def test_connectome_format_errors_quote_no_contents(tmp_path):
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "keys.npz", api_key=np.zeros(2), password=np.ones(2))
    message = _file_page(tmp_path, "{data}/keys.npz").wait().message
    assert message.startswith("path: 'keys.npz' is not a recording") and "api_key" not in message \
        and "password" not in message


def test_connectome_a_fifo_or_a_slow_file_never_blocks_the_caller(tmp_path, monkeypatch):
    """A FIFO used to block the server's event loop (every visitor) for as long as nobody wrote to it."""
    import os
    import time

    import workbench.connectome
    from widgets.pages.connectome import ConnectomePage

    (tmp_path / "data").mkdir()
    os.mkfifo(tmp_path / "data" / "pipe.nc")
    page = _file_page(tmp_path, "{data}/pipe.nc")
    assert page.wait(10).message == "path: 'pipe.nc' is neither a regular file nor a folder"

    real = workbench.connectome.load_traces
    monkeypatch.setattr(workbench.connectome, "load_traces", lambda path: (time.sleep(3), real(path))[1])
    bundled = str(workbench.connectome.__file__).rsplit("/workbench/", 1)[0] + "/data/connectome/suite2p_plane0"
    started = time.perf_counter()
    slow = ConnectomePage(cache_dir=tmp_path / "cache", source="file", path=bundled)  # starts reading
    assert time.perf_counter() - started < 1 and slow.running  # the read goes on in the job
    other = ConnectomePage(cache_dir=tmp_path / "cache")  # another visitor meanwhile
    assert other.traces is not None and time.perf_counter() - started < 2.5 and slow.running
    assert slow.wait(30).traces is not None and slow.message == ""


def test_connectome_picker_lists_the_bundled_recordings_and_loads_one(tmp_path):
    from widgets.pages.connectome import ConnectomePage

    page = ConnectomePage(cache_dir=tmp_path)
    worm = next(p for p in page.param.recording.objects if p.endswith("atanas2023_worm"))
    assert any(p.endswith("suite2p_plane0") for p in page.param.recording.objects)
    page.recording = worm
    assert page.wait(60).message == "" and page.source == "file" and page.path == worm
    assert page.traces.sizes["animal"] == 1 and page.traces.sizes["neuron"] > 50


def test_connectome_rank_above_the_smallest_mode_fits_and_only_the_cp_bound_is_a_message(tmp_path):
    """CP rank has no bound from one mode: 2 animals allow rank 3; only min(IJ, IK, JK) is refused."""
    from widgets.pages.connectome import ConnectomePage

    page = ConnectomePage(cache_dir=tmp_path, n_animals=2, n_neurons=12, n_time=80, rank_min=3, rank_max=3,
                          n_restarts=2, max_iter=20)
    page.run()
    assert page.wait(120).message == "" and page.result.attrs["rank"] == 3
    single = ConnectomePage(cache_dir=tmp_path, n_animals=1, n_neurons=12, n_time=40, rank_min=11, rank_max=11)
    single.run()
    single.wait(60)
    # (66 pairs, 10 windows, 1 animal): min(IJ, IK, JK) = 10
    assert single.message.startswith("rank_max: expected at most 10 (min(IJ, IK, JK)")
    assert single.result is None and not single.running


def test_connectome_cancel_stops_the_sweep(tmp_path):
    from widgets.pages.connectome import ConnectomePage

    page = ConnectomePage(cache_dir=tmp_path, n_neurons=10, n_time=120, rank_max=3, max_iter=2000)
    page.run()
    page.cancel()
    page.wait(60)
    assert page.status.endswith("cancelled") and page.result is None


def test_export_writes_each_format_and_figures_command_reexports(connectome_page, tmp_path):
    from widgets.app import export_results
    from workbench.cli import main

    svg = connectome_page.export("rank_sweep", "svg", out_dir=tmp_path)
    assert svg.name == "connectome-rank_sweep.svg" and svg.read_text().lstrip().startswith("<svg")
    with pytest.raises(KeyError, match="name: expected one of"):
        connectome_page.export("nope", "pdf")
    written = export_results(connectome_page.cache_dir, tmp_path / "figs", formats=("svg",))
    assert sorted(p.name.split("-", 2)[-1] for p in written) == ["communities.svg", "component.svg", "consensus.svg",
                                                                  "rank_sweep.svg", "top_pairs.svg"]
    assert main(["figures", str(tmp_path / "absent"), str(tmp_path / "out")]) == 2


def test_views_build_without_a_server(connectome_page):
    import panel as pn

    from widgets.app import PAGES, routes

    assert isinstance(connectome_page.__panel__(), pn.Row)
    assert sorted(routes(connectome_page.cache_dir)) == sorted(PAGES)
    assert {"overview", "collapse", "connectome"} <= set(PAGES)
    # the view renders Panel's bundle (what `page` alone in a notebook cell shows in a kernel) ...
    pn.extension("plotly")
    data, metadata = connectome_page.view()._repr_mimebundle_()
    assert "application/vnd.holoviews_exec.v0+json" in data and "text/html" in data
    # ... and without a Jupyter kernel the page degrades to static images with one warning, never a blank
    import widgets.jupyter as jupyter

    jupyter._state["warned"] = False
    with pytest.warns(UserWarning, match="no Jupyter kernel") as caught:
        shown = connectome_page._repr_mimebundle_()
        again = connectome_page._repr_mimebundle_()
    assert sum("no Jupyter kernel" in str(w.message) for w in caught) == 1  # said once, not per display
    assert again["text/plain"] == shown["text/plain"]
    assert shown["text/plain"].startswith("<ConnectomePage: ")
    figures = connectome_page.figures()
    assert figures and shown["text/html"].count('src="data:image/png;base64,') == len(figures)


def test_serve_defaults_bind_localhost():
    from workbench.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.address, args.port, args.cache) == ("127.0.0.1", 5006, None)


def test_concurrent_saves_of_one_key_all_succeed_and_readers_never_miss_it(tmp_path):
    """Fixed temporary names and delete-then-replace made 3 of 30 concurrent saves fail, with a
    moment where the result was missing; now every save succeeds and the result never disappears."""
    import multiprocessing
    from concurrent.futures import ThreadPoolExecutor

    store = ResultStore(tmp_path)
    key = result_key("demo", {"a": 1})
    ds = xr.Dataset({"x": ("i", np.arange(1000.0))})
    store.save(key, ds)
    missing = []

    def read_repeatedly() -> None:
        for _ in range(200):
            if store.load(key) is None:
                missing.append(1)

    with ThreadPoolExecutor(8) as pool:
        reader = pool.submit(read_repeatedly)
        saves = [pool.submit(store.save, key, ds) for _ in range(30)]
        assert all(f.result() == store.path(key) for f in saves)
        reader.result()
    with multiprocessing.get_context("spawn").Pool(4) as processes:
        assert processes.starmap(ResultStore(tmp_path).save, [(key, ds)] * 12) == [store.path(key)] * 12
    assert missing == [] and store.load(key).x.values.sum() == ds.x.values.sum()
    assert not list(store.root.glob(".*tmp*"))


def test_two_sessions_with_identical_settings_follow_one_job(tmp_path):
    """Two visitors running the same settings used to start two jobs writing one result; now the second
    follows the first (same job, live curves and result), and cancelling in one leaves it running for the other."""
    from widgets.pages.collapse import CollapsePage

    settings = dict(n_classes=3, epochs=30, width=16, depth=1, record_every=10)
    first, second, third = (CollapsePage(cache_dir=tmp_path, **settings) for _ in range(3))
    job = first.run()
    assert second.run() is job and job.followers == 2
    other = CollapsePage(cache_dir=tmp_path, **{**settings, "seed": 1}).run()
    assert other is not job  # other settings: a job of their own
    second.cancel()
    assert not second.running and not job.cancelled and first.running
    assert first.wait(120).result is not None and not job.cancelled
    assert third.run() is None and third.result is not None  # finished: read from the store, no job


def test_connectome_fits_the_bundled_worm_as_one_recording(tmp_path):
    """The bundled NeuroPAL worm: one animal, named neurons, synthetic controls hidden, robust colours, units."""
    from widgets.pages.connectome import ConnectomePage

    page = ConnectomePage(cache_dir=tmp_path, rank_min=1, rank_max=2, n_restarts=2, max_iter=10)
    controls = page.controls()
    synthetic = next(c for c in controls if "wb-synthetic" in (c.css_classes or []))
    assert synthetic.visible
    worm = next(r for r in page.param.recording.objects if r.endswith("atanas2023_worm"))
    page.recording = worm
    page.wait(120)
    assert page.message == "" and page.traces.sizes["animal"] == 1 and not synthetic.visible
    heat = page.figures()["traces"]
    from workbench.figures.traces import time_binned
    from workbench.figures.template import FULL_WIDTH_PX

    shown, frames = time_binned(page.traces.isel(animal=0), FULL_WIDTH_PX)  # what is drawn: one column per pixel
    values = shown.values[np.isfinite(shown.values)]
    assert (heat.data[0].zmin, heat.data[0].zmax) == pytest.approx(tuple(np.percentile(values, [1, 99])))
    assert list(heat.layout.yaxis.ticktext) == page.traces.neuron.values.tolist() and "AVAL" in heat.layout.yaxis.ticktext
    assert heat.layout.xaxis.title.text.startswith("time (s)") and "NeuroPAL" in heat.layout.yaxis.title.text
    assert "a.u." in heat.data[0].colorbar.title.text
    page.run()
    page.wait(600)
    assert page.message == "" and page.result.sizes["animal"] == 1 and page.result.attrs["rank"] in (1, 2)
    assert set(page.result.community.neuron.values) == set(page.traces.neuron.values)


def test_connectome_long_recording_is_read_and_drawn_off_the_event_loop_binned(tmp_path, monkeypatch):
    """200 x 40,000 frames: the job reads the file and draws the (binned) traces; the loop only shows them."""
    import threading

    import workbench.figures.traces as figures

    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "long.npz", traces=np.random.default_rng(0).random((1, 20, 40_000), dtype=np.float32),
             fps=np.float64(4.0))
    drawn_in = []
    real = figures.traces_heatmap
    monkeypatch.setattr(figures, "traces_heatmap",
                        lambda *args, **kw: (drawn_in.append(threading.current_thread().name), real(*args, **kw))[1])
    page = _file_page(tmp_path, "{data}/long.npz").wait(60)
    assert page.message == "" and page.traces.sizes["time"] == 40_000  # the analysis keeps every frame
    assert drawn_in == ["workbench-load recording"]
    fig = page.figures()["traces"]
    assert drawn_in == ["workbench-load recording"] and fig is page.built_figure(("traces", 0))
    from workbench.figures.template import FULL_WIDTH_PX

    frames = -(-40_000 // FULL_WIDTH_PX)  # one column per pixel of the figure's width
    assert len(fig.data[0].x) <= FULL_WIDTH_PX and f"mean over {frames}-frame bins" in fig.layout.title.text


def test_every_page_explains_itself_and_every_control_from_the_glossary(tmp_path):
    import panel as pn

    from workbench.glossary import GLOSSARY, explain
    from widgets.app import PAGES

    texts = {entry.text for entry in GLOSSARY.values()}
    assert {"alpha", "nc1", "nc2", "nc3", "nc4", "fms", "dfa", "induction_score", "l0", "fvu",
            "ce_loss_recovered"} <= set(GLOSSARY)
    for slug, cls in PAGES.items():
        assert cls.summary and cls.intro and cls.terms, slug
        for key in cls.terms:
            explain(key)
        page = cls(cache_dir=tmp_path / slug)
        inputs = [w for w in pn.Column(*page.controls()).select(pn.widgets.Widget)
                  if not isinstance(w, pn.widgets.Button)]
        assert inputs, slug
        for widget in inputs:
            assert widget.description, f"{slug}: control {widget.name!r} has no help text"
            assert not isinstance(widget, (pn.widgets.IntSlider, pn.widgets.FloatSlider)), \
                f"{slug}: {widget.name!r} is a slider, not a numeric field"
        glossary_helped = [w for w in inputs if w.description in texts]
        assert len(glossary_helped) >= len(inputs) - 1, f"{slug}: help text not from workbench.glossary"


def test_sae_settings_show_only_the_sparsity_control_of_the_architecture(tmp_path):
    import panel as pn

    from widgets.pages.sae import SAEPage

    page = SAEPage(cache_dir=tmp_path)
    fields = {w.name: w for w in pn.Column(*page.controls()).select(pn.widgets.Widget)}
    lr = fields["Learning rate"]
    assert isinstance(lr, pn.widgets.FloatInput) and lr.value == 3e-3 and lr.step == 1e-3
    assert fields["K"].visible and not fields["L1 coefficient"].visible
    page.architecture = "standard"
    assert not fields["K"].visible and fields["L1 coefficient"].visible


def _shown(obj) -> list[str]:
    """Names of the widgets under ``obj`` that are visible, with every container above them."""
    import panel as pn

    if not obj.visible:
        return []
    if isinstance(obj, pn.widgets.Widget):
        return [obj.name]
    children = obj.layout.objects if isinstance(obj, pn.Param) else getattr(obj, "objects", [])
    return [name for child in children for name in _shown(child)]


def test_connectome_shows_the_settings_of_the_chosen_source_only_and_the_url_still_sets_them(tmp_path, monkeypatch):
    import panel as pn

    from widgets.pages.connectome import ConnectomePage

    page = ConnectomePage(cache_dir=tmp_path)
    controls = pn.Column(*page.controls())
    shown = _shown(controls)
    assert "Neurons" in shown and "Path" not in shown and "Recording" not in shown  # synthetic: no file controls
    page.source = "file"
    shown = _shown(controls)
    assert "Path" in shown and "Recording" in shown and "Neurons" not in shown
    page.source = "synthetic"
    assert "Path" not in _shown(controls) and "Neurons" in _shown(controls)
    monkeypatch.setattr(type(pn.state), "session_args", property(lambda _: {"n_neurons": [b"12"], "n_surrogates": [b"4"]}))
    page.on_open()  # a served page's URL query still sets generator and fit settings
    assert (page.n_neurons, page.n_surrogates, page.traces.sizes["neuron"], page.message) == (12, 4, 12, "")
