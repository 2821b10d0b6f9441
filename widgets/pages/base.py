"""What every dashboard page shares: state, background jobs, messages, figures, export.

A page is a ``param.Parameterized`` state object. Its methods (``load``,
``run``, ``export`` ...) do the work and can be called from a test or a
notebook without a browser; :meth:`Page.view` renders the same state with
Panel, and ``__panel__`` lets ``page`` display inline in JupyterLab.

Interactions stay fast because choosing what to look at (a layer, a
component) never recomputes: figures are built once per view through
:meth:`Page.figure`, most of them ahead of time by :meth:`Page.prefetch`, and
the figure grid re-sends only the panes whose figure changed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Hashable, Mapping

import panel as pn
import param
import plotly.graph_objects as go

from widgets.access import DataFolders
from widgets.jobs import Cancelled, Job
from widgets.jupyter import prefer_inline
from widgets.results import ResultStore

prefer_inline()  # in a kernel, even a plain pn.extension("plotly") then publishes Bokeh and Panel inline (offline)

# Exceptions a user can cause with bad input; anything else is a bug and keeps its traceback type in the message.
USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError)

# Jobs that compute a keyed result, shared by every session that asks for the same key while one runs:
# two visitors training identical settings follow one job instead of racing to write one folder.
_SHARED_JOBS: dict[str, Job] = {}
_SHARED_LOCK = threading.Lock()


def readable(err: BaseException) -> str:
    """One line a user can act on, for any exception raised by the analysis.

    Examples
    --------
    >>> readable(ValueError("path: expected an existing file, got 'x.nc'"))
    "path: expected an existing file, got 'x.nc'"
    >>> readable(RuntimeError("boom"))
    'RuntimeError: boom'
    """
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return text if isinstance(err, USER_ERRORS) else f"{type(err).__name__}: {text}"


def query_settings(page: param.Parameterized, args: dict, names: tuple[str, ...]) -> dict:
    """Settings named in a URL query (``/sae?layer=0&d_sae=64``), parsed by each parameter's type.

    Examples
    --------
    >>> class Demo(param.Parameterized):
    ...     model, layer = param.String(), param.Integer()
    >>> query_settings(Demo, {"layer": [b"0"], "model": [b"tiny-gelu-2l"], "other": [b"1"]}, ("model", "layer"))
    {'model': 'tiny-gelu-2l', 'layer': 0}
    """
    out = {}
    for name in names:
        if name not in args:
            continue
        raw = args[name][-1] if isinstance(args[name], (list, tuple)) else args[name]
        raw = raw.decode() if isinstance(raw, bytes) else str(raw)
        kind = page.param[name]
        try:
            out[name] = int(raw) if isinstance(kind, param.Integer) else \
                float(raw) if isinstance(kind, param.Number) else raw
        except ValueError:
            raise ValueError(f"{name}: expected a number in the URL query, got {raw!r}") from None
    return out


def default_cache() -> Path:
    """Cache folder: :func:`workbench.hooks.workbench_root`, the folder the CLI uses too.

    Hook stores go in its ``hooks`` folder (:func:`workbench.hooks.hooks_root`),
    so ``workbench cache list`` sees what the pages cached.

    Examples
    --------
    >>> isinstance(default_cache(), Path)
    True
    """
    from workbench.hooks import workbench_root

    return workbench_root()


class Page(param.Parameterized):
    """Base of the dashboard pages; subclasses set ``title``/``slug`` and fill in
    :meth:`figures`, :meth:`controls`.

    Parameters
    ----------
    cache_dir : path, optional
        Where results and exports go; default :func:`default_cache`.
    data_folders : widgets.access.DataFolders, optional
        The only folders whose files the page reads; default :class:`~widgets.access.DataFolders`'s.
    """

    title: ClassVar[str] = "page"
    slug: ClassVar[str] = "page"
    summary: ClassVar[str] = ""  # one line on the landing page
    intro: ClassVar[str] = ""  # opens the page: what it shows and what to try first
    terms: ClassVar[tuple[str, ...]] = ()  # glossary keys of the metrics the page shows, explained in its header
    help: ClassVar[dict[str, str]] = {}  # parameter -> glossary key: its tooltip (the widget's description)
    empty_hint: ClassVar[str] = "Nothing to show yet: choose settings and press the page's run button."
    wide_figures: ClassVar[tuple[str, ...]] = ()  # figures drawn a whole row wide (paper-width panels of panels)

    @classmethod
    def _explain_parameters(cls) -> None:
        """Once per class: each parameter named in :attr:`help` takes its glossary name as label and its
        glossary text as ``doc`` (Panel shows a parameter's doc as its widget's tooltip)."""
        if cls.__dict__.get("_explained"):
            return
        from workbench.glossary import explain, term

        for name, key in cls.help.items():
            cls.param[name].doc = explain(key)
            label = term(key)
            cls.param[name].label = label[0].upper() + label[1:]
        cls._explained = True

    message = param.String(default="", doc="Last error in words a user can act on; empty when all is well.")
    status = param.String(default="", doc="What the page is doing or last did.")
    progress = param.Integer(default=0, bounds=(-1, 100), doc="Percent done; -1 while unknown.")
    running = param.Boolean(default=False, doc="A background job is running.")
    revision = param.Integer(default=0, doc="Bumped whenever the figures change.")

    _choosing = False  # True while the page itself replaces a selector's options and value (see _choose)

    def __init__(self, cache_dir: str | os.PathLike | None = None, data_folders: DataFolders | None = None,
                 **params: Any):
        self._explain_parameters()
        super().__init__(**params)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache()
        self.data_folders = data_folders if data_folders is not None else DataFolders()
        self.store = ResultStore(self.cache_dir)
        self._job: Job | None = None
        self._on_result: Callable[[Any], None] | None = None
        self._partial: Any = None
        self._exports: list[Job] = []
        self._memo: dict[Hashable, go.Figure] = {}
        self._memo_lock = threading.Lock()
        self._memo_generation = 0
        self._prefetch_pending: tuple[int, dict] | None = None
        self._prefetch_threads: list[threading.Thread] = []

    def _choose(self, name: str, options: list, value: Any) -> None:
        """Replace selector ``name``'s options and value together, as the page's own choice.

        The options go first and :attr:`_choosing` is True from then on: a served
        Select resets a value missing from its new options to the first option,
        and that reset must not reach the watchers as a user's choice. Watchers
        that check :attr:`_choosing` leave the redraw to the caller.
        """
        self._choosing = True
        try:
            self.param[name].objects = list(options)  # a copy: param may add None to the list it is given
            setattr(self, name, value)
        finally:
            self._choosing = False

    @classmethod
    def warm_up(cls, cache_dir: str | os.PathLike) -> None:
        """Called once when the server starts, before it takes visitors: do the slow, shared work here.

        Work a first visitor would wait for (imports, loading a model, the
        default result) belongs here; start a thread for anything longer.
        The default renders a throwaway page once per process
        (:func:`widgets.template.warm_up_rendering`); overrides call it too.
        """
        from widgets.template import warm_up_rendering

        warm_up_rendering(str(cache_dir))

    @classmethod
    def warm_up_in_background(cls, cache_dir: str | os.PathLike, load: Callable[..., Any],
                              *args: Any) -> threading.Thread:
        """The default :meth:`warm_up`, then ``load(*args)`` (a model, say) in a thread, which is returned.

        For a :meth:`warm_up` override: the first visitor's job then finds it loaded.
        """
        Page.warm_up(cache_dir)
        thread = threading.Thread(target=load, args=args, daemon=True, name=f"workbench-{cls.slug}-warm-up")
        thread.start()
        return thread

    # ----- state -------------------------------------------------------------------------------
    def figures(self) -> dict[str, go.Figure]:
        """The page's current figures by name; empty until there is something to show."""
        return {}

    def figure(self, key: Hashable, build: Callable[[], go.Figure]) -> go.Figure:
        """The figure ``key`` (e.g. ``("gram", layer, target)``) of the current result, built once.

        The same object comes back for the same key until :meth:`forget_figures`,
        so showing a view seen before is a dictionary lookup and the figure
        grid leaves that pane alone. Figures handed out must not be changed in place.

        Examples
        --------
        >>> import tempfile
        >>> page = Page(cache_dir=tempfile.mkdtemp())
        >>> first = page.figure(("demo", 1), go.Figure)
        >>> page.figure(("demo", 1), go.Figure) is first, page.figure(("demo", 2), go.Figure) is first
        (True, False)
        """
        with self._memo_lock:
            fig = self._memo.get(key)
        if fig is None:
            fig = build()
            with self._memo_lock:
                fig = self._memo.setdefault(key, fig)
        return fig

    def forget_figures(self) -> None:
        """Drop the memoised figures; call when the result they were drawn from changes."""
        with self._memo_lock:
            self._memo.clear()
            self._memo_generation += 1

    def prefetch(self, builds: Mapping[Hashable, Callable[[], go.Figure]]) -> None:
        """Build the figures of other views ahead of time, so choosing them later is a lookup.

        ``builds`` maps keys of :meth:`figure` to their builders. They run in a
        background thread started by the next :meth:`poll`, i.e. once a served
        page is showing, so they never delay a page load; figures of a
        result replaced meanwhile (:meth:`forget_figures`) are thrown away.
        """
        with self._memo_lock:
            self._prefetch_pending = (self._memo_generation, dict(builds))

    def wait_for_figures(self, timeout: float = 120.0) -> bool:
        """Build the figures queued by :meth:`prefetch` now and block until every background build ends.

        For tests and scripts, where no served page polls: :meth:`poll`
        starts the builds otherwise. True when builds were queued or running
        and all have ended within ``timeout`` seconds.

        Examples
        --------
        >>> import tempfile
        >>> page = Page(cache_dir=tempfile.mkdtemp())
        >>> page.prefetch({("demo",): go.Figure})
        >>> page.built_figure(("demo",)), page.wait_for_figures(), page.built_figure(("demo",)) is not None
        (None, True, True)
        """
        self._start_prefetch()
        with self._memo_lock:
            threads = list(self._prefetch_threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return bool(threads) and not any(thread.is_alive() for thread in threads)

    def built_figure(self, key: Hashable) -> go.Figure | None:
        """The figure built under ``key`` (by :meth:`figure` or a prefetch) for the current result, else None.

        Unlike :meth:`figure` it never builds one: tests use it to see what was built ahead.
        """
        with self._memo_lock:
            return self._memo.get(key)

    def _start_prefetch(self) -> threading.Thread | None:
        with self._memo_lock:
            pending, self._prefetch_pending = self._prefetch_pending, None
        if pending is None:
            return None
        generation, builds = pending

        def build_all() -> None:
            for key, build in builds.items():
                with self._memo_lock:
                    if self._memo_generation != generation:
                        return
                    if key in self._memo:
                        continue
                try:
                    fig = build()
                except USER_ERRORS:  # shown as a message if the user ever picks this view
                    continue
                with self._memo_lock:
                    if self._memo_generation == generation:
                        self._memo.setdefault(key, fig)

        thread = threading.Thread(target=build_all, name=f"workbench-{self.slug}-figures", daemon=True)
        thread.start()
        with self._memo_lock:
            self._prefetch_threads = [t for t in self._prefetch_threads if t.is_alive()] + [thread]
        return thread

    def on_partial(self, partial: Any) -> None:
        """Called on the event loop with the running job's latest :meth:`~widgets.jobs.Job.publish`."""

    def on_open(self) -> None:
        """Called once a served page is open; pages start work that is not cached yet."""

    def apply_query(self, names: tuple[str, ...]) -> None:
        """Set the parameters ``names`` found in the served page's URL query; a bad value becomes the message."""
        settings = self.attempt(lambda: query_settings(self, pn.state.session_args, names))
        if settings:
            self.attempt(lambda: self.param.update(**settings))

    def fail(self, err: BaseException) -> None:
        """Show ``err`` as the page message instead of raising it."""
        self.message = readable(err)
        self.status = ""

    def attempt(self, action: Callable[[], Any]) -> Any:
        """Run a quick action, turning bad input into a page message; returns its value or None."""
        try:
            value = action()
        except USER_ERRORS as err:
            self.fail(err)
            return None
        self.message = ""
        return value

    def start(self, work: Callable[[Job], Any], name: str, on_result: Callable[[Any], None], *,
              share: str | None = None) -> Job | None:
        """Run ``work`` in a background :class:`~widgets.jobs.Job`; ``on_result`` gets its value.

        Only one job runs per page: a second start while one runs is refused
        with a message. ``on_result`` runs in :meth:`poll`, i.e. on the event
        loop when served, so it may change widgets. With ``share`` (the
        result's key), a page asking for a key whose job already runs in any
        session follows that job, its progress and its result, instead of
        starting a second one.
        """
        if self.running:
            self.message = f"{name}: wait for '{self._job.name}' to finish or cancel it"
            return None
        self.message, self.progress, self.running = "", 0, True
        self._on_result, self._partial = on_result, None
        with _SHARED_LOCK:
            for done in [k for k, job in _SHARED_JOBS.items() if job.done or job.cancelled]:
                del _SHARED_JOBS[done]
            shared = f"{self.cache_dir}:{share}" if share is not None else None
            job = _SHARED_JOBS.get(shared) if shared is not None else None
            if job is None:
                job = Job(work, name=name)
                if shared is not None:
                    _SHARED_JOBS[shared] = job
            job.followers += 1
        self._job = job
        self.status = job.message
        return job

    def poll(self) -> bool:
        """Copy job progress into the parameters; deliver partial and finished results. True while running.

        Also starts the figure builds queued by :meth:`prefetch`.
        """
        self._start_prefetch()
        for job in [j for j in self._exports if j.done]:
            self._exports.remove(job)
            if job.error is not None:
                self.fail(job.error)
            else:
                self.status = f"wrote {job.result}"
        job = self._job
        if job is None or not self.running:
            return False
        self.progress = -1 if job.fraction is None else int(round(100 * job.fraction))
        self.status = job.message
        if not job.done:  # once done, the result (or the cancel) supersedes any partial one
            partial = job.partial
            if partial is not None and partial is not self._partial:
                self._partial = partial
                try:
                    self.on_partial(partial)
                except USER_ERRORS as err:
                    self.fail(err)
            return True
        self.running = False
        if isinstance(job.error, Cancelled):
            self.status, self.progress = f"{job.name}: cancelled", 0
        elif job.error is not None:
            self.fail(job.error)
        else:
            self.status, self.progress = f"{job.name}: done in {job.seconds:.1f} s", 100
            try:
                self._on_result(job.result)
            except USER_ERRORS as err:
                self.fail(err)
        return False

    def cancel(self) -> None:
        """Ask the running job to stop at its next check; a job other sessions follow too goes on for them."""
        job = self._job
        if job is None or not self.running:
            return
        with _SHARED_LOCK:
            job.followers -= 1
            others = job.followers > 0
        if others:
            self.running, self.progress = False, 0
            self.status = f"{job.name}: cancelled here (another session still follows it)"
        else:
            job.cancel()
            self.status = f"{job.name}: cancelling"

    def wait(self, timeout: float = 120.0) -> "Page":
        """Block until no job runs, including those a finished job starts, polling after each (tests and scripts).

        ``timeout`` is per job.
        """
        while True:
            if self._job is not None:
                self._job.wait(timeout)
            self.poll()
            if not self.running:
                return self

    def export(self, name: str, fmt: str = "pdf", out_dir: str | os.PathLike | None = None) -> Path:
        """Write figure ``name`` in the paper template as ``fmt`` (pdf, svg or png).

        Default folder: ``<cache>/exports``; the file is ``<slug>-<name>.<fmt>``.
        """
        from workbench.figures import FORMATS, export

        figures = self.figures()
        if name not in figures:
            raise KeyError(f"name: expected one of the figures shown {sorted(figures)}, got {name!r}")
        if fmt not in FORMATS:
            raise ValueError(f"fmt: expected one of {list(FORMATS)}, got {fmt!r}")
        folder = Path(out_dir) if out_dir is not None else self.cache_dir / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        return export(figures[name], folder / f"{self.slug}-{name}.{fmt}")

    def export_in_background(self, name: str, fmt: str) -> Job:
        """:meth:`export` in a thread: kaleido starts Chromium, which takes seconds."""
        self.status = f"exporting {name} as {fmt}"
        job = Job(lambda _: self.export(name, fmt), name=f"export {name}")
        self._exports.append(job)
        return job

    # ----- view --------------------------------------------------------------------------------
    def controls(self) -> list:
        """Widgets that drive the page (sidebar when served)."""
        return []

    def header(self) -> pn.viewable.Viewable:
        """What the page shows (:attr:`intro`, its :attr:`terms` explained on hover), then the error message,
        status line, progress bar and cancel button."""
        from widgets.template import intro_pane, job_bar, message_box

        return pn.Column(*intro_pane(self), message_box(self), job_bar(self), sizing_mode="stretch_width")

    def body(self) -> pn.viewable.Viewable:
        """The figures, each with its export control, redrawn when ``revision`` changes."""
        from widgets.template import figure_grid

        return figure_grid(self)

    def view(self) -> pn.viewable.Viewable:
        """The page without the site template: controls beside header and figures."""
        from widgets.template import start_polling

        start_polling(self)
        return pn.Row(pn.Column(*self.controls(), width=300),
                      pn.Column(self.header(), self.body(), sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return self.view()

    def _repr_mimebundle_(self, include=None, exclude=None):
        """``page`` as the last line of a notebook cell renders the page itself, offline, not its repr.

        The first display sets the kernel up (:func:`widgets.jupyter.notebook_setup`); outside a
        Jupyter kernel the page shows static images (:func:`widgets.jupyter.static_page`).
        """
        from widgets.jupyter import page_mimebundle

        return page_mimebundle(self, include, exclude)
