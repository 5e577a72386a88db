"""Jobs run one at a time in a background thread, their results handed back in order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Optional


class OrderedJobs:
    """A queue of jobs run one after another, off the caller's thread or inline.

    With ``background=True`` each job runs in one worker thread, in submission order, while
    the caller goes on; :meth:`finished` hands back the results of the jobs done so far, in
    submission order (a later job that finished first waits for the earlier ones). With
    ``background=False`` a job runs inside :meth:`submit`; results are handed back the same
    way, so the caller's code is the same in both modes.

    Args:
        background: run jobs in a worker thread.
        max_unfinished: :meth:`submit` waits while this many background jobs are queued or
            running, so a caller faster than its jobs cannot pile up unbounded work (and the
            memory of its arguments).
        name: prefix of the worker thread's name (shown by debuggers and profilers).
    """

    def __init__(self, background: bool = True, max_unfinished: int = 2, name: str = "jobs") -> None:
        if max_unfinished < 1:
            raise ValueError(f"max_unfinished must be >= 1, got {max_unfinished}")
        self.background = background
        self.max_unfinished = max_unfinished
        self._name = name
        self._executor: Optional[ThreadPoolExecutor] = None
        self._pending: deque[Future] = deque()

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        """Queue ``job(*args)`` (run it now when not in the background); first wait while
        ``max_unfinished`` jobs are unfinished."""
        if self.background:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
            while len(unfinished := [f for f in self._pending if not f.done()]) >= self.max_unfinished:
                wait(unfinished, return_when=FIRST_COMPLETED)
            self._pending.append(self._executor.submit(job, *args))
            return
        future: Future = Future()
        try:
            future.set_result(job(*args))
        except BaseException as error:  # noqa: BLE001 - re-raised by finished(), as in the background
            future.set_exception(error)
        self._pending.append(future)

    def finished(self, wait: bool = False) -> list[Any]:
        """Results of the leading finished jobs, in submission order; ``wait=True`` waits for
        every queued job. A failed job ends the list before it; the next call raises its
        exception (and goes on with the jobs after it in the call after that)."""
        results = []
        while self._pending and (wait or self._pending[0].done()):
            if results and self._pending[0].exception() is not None:
                break
            results.append(self._pending.popleft().result())
        return results

    @property
    def pending(self) -> int:
        """Jobs queued or running whose results were not handed back yet."""
        return len(self._pending)

    def close(self) -> None:
        """Wait for the running and queued jobs and stop the worker thread (results are kept)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
