"""Background jobs: long calls run on a worker thread; the GUI polls them (QTimer) and can cancel them.

A job never blocks its caller: :meth:`Job.poll` returns a snapshot at once, and :meth:`Job.cancel` returns the
job to the user at once (state ``cancelled``). The worker sees the request through its :class:`JobContext`
(``ctx.check()``, ``ctx.sleep()``) and stops at its next check; work stuck inside one HTTP call finishes in the
background and its result is dropped. Long server-side work that can be stopped (a training round) is stopped by
the job function itself when it sees the request (see :meth:`OncoLabelLib.service.OncoLabelService.train`).

Threads rather than processes: the work is waiting for the server (the socket wait releases the GIL), so a thread
keeps Slicer responsive, and MRML stays on the GUI thread (job functions never touch the scene).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

__all__ = ["Job", "JobCancelled", "JobContext", "JobStatus", "null_context", "run_now", "PENDING", "RUNNING", "DONE",
           "FAILED", "CANCELLED"]

logger = logging.getLogger(__name__)

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class JobCancelled(Exception):
    """Raised inside a job function when the user cancelled the job."""


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job for the GUI.

    Attributes:
        state: ``pending``, ``running``, ``done``, ``failed`` or ``cancelled``.
        fraction: progress in [0, 1], or None when unknown (the GUI shows a busy bar).
        message: what the job is doing, for a status line.
        elapsed: seconds since the job started.
    """

    state: str
    fraction: Optional[float]
    message: str
    elapsed: float

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def text(self) -> str:
        """Status line with elapsed time, e.g. ``Running bone_metastasis… (12 s)``."""
        return f"{self.message} ({self.elapsed:.0f} s)" if self.state == RUNNING else self.message


class JobContext:
    """What a job function gets: progress reporting and cancellation checks."""

    def __init__(self, cancel_event: threading.Event, report: Callable[[Optional[float], str], None]) -> None:
        self._cancel, self._report = cancel_event, report

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`JobCancelled` if the user cancelled."""
        if self._cancel.is_set():
            raise JobCancelled("cancelled by the user")

    def progress(self, fraction: Optional[float], message: str) -> None:
        """Report progress (``fraction`` in [0, 1] or None) and a status message."""
        if fraction is not None:
            fraction = min(1.0, max(0.0, float(fraction)))
        self._report(fraction, message)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, waking at once (with :class:`JobCancelled`) when the user cancels."""
        if self._cancel.wait(seconds):
            raise JobCancelled("cancelled by the user")


def null_context() -> JobContext:
    """A context for running a job function directly: never cancelled, progress ignored."""
    return JobContext(threading.Event(), lambda fraction, message: None)


class Job:
    """Run ``fn(ctx)`` on a daemon worker thread.

    Args:
        fn: the work; takes a :class:`JobContext`, returns the result. It must not touch MRML or Qt.
        title: what the job does, shown until the function reports its own progress.
    """

    def __init__(self, fn: Callable[[JobContext], Any], *, title: str) -> None:
        self.fn, self.title = fn, title
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._state, self._fraction, self._message = PENDING, None, title
        self._result: Any = None
        self._error: Optional[BaseException] = None
        self._started: Optional[float] = None
        self._thread: Optional[threading.Thread] = None

    # --- GUI side ---------------------------------------------------------------------------------------------
    def start(self) -> "Job":
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"job {self.title!r} was already started")
            self._state, self._started = RUNNING, time.monotonic()
            self._thread = threading.Thread(target=self._run, name=f"OncoLabel: {self.title}", daemon=True)
        self._thread.start()
        return self

    def poll(self) -> JobStatus:
        """The current state; never blocks."""
        with self._lock:
            elapsed = time.monotonic() - self._started if self._started is not None else 0.0
            return JobStatus(self._state, self._fraction, self._message, elapsed)

    def cancel(self) -> None:
        """Ask the worker to stop and hand the job back at once; a late result is dropped."""
        self._cancel.set()
        with self._lock:
            if self._state in (PENDING, RUNNING):
                self._state, self._message = CANCELLED, f"{self.title}: cancelled"
        logger.info("job %r cancelled", self.title)

    @property
    def error(self) -> Optional[BaseException]:
        return self._error

    def result(self) -> Any:
        """The function's return value; raises its error, or :class:`JobCancelled`."""
        with self._lock:
            state = self._state
        if state == DONE:
            return self._result
        if state == FAILED:
            raise self._error  # type: ignore[misc]
        if state == CANCELLED:
            raise JobCancelled(f"{self.title}: cancelled by the user")
        raise RuntimeError(f"job {self.title!r} has not finished (state {state})")

    # --- scripts and tests (never on the GUI thread) -----------------------------------------------------------
    def wait(self, timeout: Optional[float] = None) -> JobStatus:
        """Block until the job is finished (from the caller's view) or ``timeout`` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll().finished:
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return self.poll()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the worker thread itself to end (after a cancel it may still be finishing); True if it did."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # --- worker side --------------------------------------------------------------------------------------------
    def _report(self, fraction: Optional[float], message: str) -> None:
        with self._lock:
            if self._state == RUNNING:
                self._fraction, self._message = fraction, message

    def _run(self) -> None:
        ctx = JobContext(self._cancel, self._report)
        try:
            ctx.check()
            value = self.fn(ctx)
        except JobCancelled:
            self._finish(CANCELLED, None, None, f"{self.title}: cancelled")
        except BaseException as exc:  # noqa: BLE001 -- handed to the GUI edge, which describes it
            logger.info("job %r failed: %s: %s", self.title, type(exc).__name__, exc)
            self._finish(FAILED, None, exc, f"{self.title}: failed")
        else:
            self._finish(DONE, value, None, f"{self.title}: done")

    def _finish(self, state: str, value: Any, error: Optional[BaseException], message: str) -> None:
        with self._lock:
            if self._state == CANCELLED:  # the user already has the job back: drop the late outcome
                return
            self._state, self._result, self._error, self._message = state, value, error, message
            if state == DONE:
                self._fraction = 1.0


def run_now(fn: Callable[[JobContext], Any]) -> Any:
    """Run a job function on the calling thread (scripts, tests, Slicer's Python console)."""
    return fn(null_context())
