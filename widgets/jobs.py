"""Long work off the event loop: a thread that reports progress and can be cancelled.

A Bokeh/Panel document may only be changed from its own event loop, so a
:class:`Job` never touches widgets: its thread writes plain attributes
(``fraction``, ``message``, ``partial``, ``result``, ``error``) and the page
copies them into its parameters from a periodic callback on the loop (see
:meth:`widgets.pages.base.Page.poll`). The same object works without a
server, which is how the page state objects are tested.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


class Cancelled(Exception):
    """Raised inside a job's work function when the user pressed cancel."""


class Job:
    """Run ``work(job)`` in a daemon thread.

    ``work`` receives the job itself: it calls :meth:`report` to publish
    progress, :meth:`publish` to hand out a partial result (live curves) and
    :meth:`check` (or reads :attr:`cancelled`) to stop early.

    Parameters
    ----------
    work : callable
        ``work(job) -> result``.
    name : str
        Shown in messages, e.g. ``"rank sweep"``.

    Examples
    --------
    >>> job = Job(lambda j: (j.report(0.5, "half way"), 42)[1], name="demo")
    >>> job.wait(5).result, job.error
    (42, None)
    """

    def __init__(self, work: Callable[["Job"], Any], name: str = "job"):
        self.name = name
        self.fraction: float | None = 0.0
        self.message = f"{name}: starting"
        self.partial: Any = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = time.perf_counter()
        self.seconds: float | None = None
        self.followers = 0  # pages showing this job (see widgets.pages.base.Page.start)
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), name=f"workbench-{name}", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[["Job"], Any]) -> None:
        try:
            self.result = work(self)
        except BaseException as err:  # the page shows it; the server must survive any analysis error
            self.error = err
        finally:
            self.seconds = time.perf_counter() - self.started
            self._done.set()

    @property
    def done(self) -> bool:
        """True once the work function has returned or raised."""
        return self._done.is_set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Ask the work function to stop at its next :meth:`check`."""
        self._cancel.set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when cancel was asked for.

        Examples
        --------
        >>> job = Job(lambda j: None); job.wait(5).cancel()
        >>> try:
        ...     job.check()
        ... except Cancelled:
        ...     print("stopped")
        stopped
        """
        if self._cancel.is_set():
            raise Cancelled(f"{self.name} cancelled")

    def report(self, fraction: float | None, message: str) -> None:
        """Publish progress: ``fraction`` in [0, 1], or None when unknown."""
        self.fraction = None if fraction is None else min(max(float(fraction), 0.0), 1.0)
        self.message = message

    def publish(self, partial: Any) -> None:
        """Hand out a partial result, e.g. the metrics recorded so far; the page shows the latest one.

        Examples
        --------
        >>> job = Job(lambda j: [j.publish(n) for n in range(3)][-1]).wait(5)
        >>> job.partial
        2
        """
        self.partial = partial

    def wait(self, timeout: float | None = None) -> "Job":
        """Block until done (for tests and scripts); returns the job.

        Raises
        ------
        TimeoutError
            When the job is still running after ``timeout`` seconds.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self.name}: still running after {timeout} s")
        return self
