"""A pool of worker processes for the independent probes of one epoch, or the caller's own process.

:meth:`ProbePool.run` takes a list of calls ``(function, args)`` and hands back their results in
the order of the list, whether it runs them one after another in the caller's process
(``workers <= 1``) or spread over ``workers`` processes. The functions are the same plain
module-level functions in both cases, so the results are the caller's when it too computes on
one thread (each worker process runs torch and the BLAS libraries on one thread; see
:func:`one_thread`), up to the last bit of float32 matrix products, whose BLAS kernel can
differ between processes (measured: participation ratios 1e-7 apart at 200 probe inputs, all
equal at 1000). A multi-threaded caller also sums in another order.

Worker processes start from a ``forkserver`` (``spawn`` where there is none): never ``fork``,
which would copy the locks of the training process's threads. Tensor arguments are moved to
shared memory once (in place, see :func:`torch.Tensor.share_memory_`), so a snapshot reaches
every worker without a copy; each later call that passes the same tensor costs a file descriptor.
Warnings a call raises in a worker are raised again in the caller, in call order. A worker
ends as soon as the process that owns the pool ends, however it ends (killed included), so no
worker outlives a training run or holds on to its output pipes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, Optional

import torch
import torch.multiprocessing  # noqa: F401 - registers the reductions that pass tensors through shared memory
from threadpoolctl import threadpool_limits

Call = tuple[Callable[..., Any], tuple]
"""A function and its positional arguments; the function must be importable (module-level)."""

PRELOADED = ("attnconv_pl.analyses.dynamics",)
"""Modules the forkserver imports once, so that each worker starts without importing torch again."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_workers(requested: Optional[int], claimed: int = 0) -> int:
    """Worker processes of a probe pool.

    Args:
        requested: the setting (``num_workers``): a count, or None for the cores that ``claimed``
            leaves free; 0 and 1 both mean the caller's process.
        claimed: cores taken by other work (e.g. the training's data-loader workers).

    Returns:
        At least 1.
    """
    if requested is None:
        return max(1, available_cores() - claimed)
    return max(1, requested)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Inside the block torch and the BLAS libraries compute on one thread, as a worker
    process does all its life, so that their sums run in the workers' order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)


_WORKER_LIMITS = contextlib.ExitStack()
"""Holds a worker's :func:`one_thread` block open (a dropped generator would close it and
restore the threads)."""


def _start_worker(owner: Connection) -> None:
    """A worker process computes on one thread (the pool's processes are its parallelism) and
    ends when the pool's owner does (see :func:`_end_with`)."""
    threading.Thread(target=_end_with, args=(owner,), name="end-with-owner", daemon=True).start()
    _WORKER_LIMITS.enter_context(one_thread())  # never left: the limit holds until the worker ends


def _end_with(owner: Connection) -> None:
    """Wait for the end of the pipe whose sending end only the pool's owner holds, then end this
    worker: the pipe closes when the owner closes the pool or dies (even before its own parent
    collects its exit status)."""
    try:
        owner.recv()
    except EOFError:
        pass
    os._exit(0)


def _call_recording_warnings(function: Callable[..., Any], args: tuple) -> tuple[Any, list[tuple[str, type]]]:
    """``function(*args)`` in a worker, with the warnings it raised (message, category)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args)
    return result, [(str(warning.message), warning.category) for warning in caught]


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOADED))
        return context
    return multiprocessing.get_context("spawn")


class ProbePool:
    """Runs lists of independent calls, in ``workers`` processes or (``workers <= 1``) in order
    in the caller's process; the processes start on the first parallel :meth:`run` and stay
    until :meth:`close`.

    Args:
        workers: worker processes (see :func:`resolve_workers`).
    """

    def __init__(self, workers: int = 1) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.workers = workers
        self._executor: Optional[ProcessPoolExecutor] = None
        self._owner: Optional[Connection] = None  # the sending end of the workers' lifeline

    @property
    def parallel(self) -> bool:
        """Whether calls run in worker processes."""
        return self.workers > 1

    def run(self, calls: Sequence[Call]) -> list[Any]:
        """The result of each call, in the order of ``calls``; the first failed call's exception
        is raised (after the calls before it were handed back their warnings)."""
        if not self.parallel:
            return [function(*args) for function, args in calls]
        for _, args in calls:
            for argument in args:
                if isinstance(argument, torch.Tensor) and argument.device.type == "cpu":
                    argument.share_memory_()
        if self._executor is None:
            context = _context()
            lifeline, self._owner = context.Pipe(duplex=False)
            self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                                 initargs=(lifeline,))
        futures: list[Future] = [self._executor.submit(_call_recording_warnings, function, args)
                                 for function, args in calls]
        results = []
        for future in futures:
            result, caught = future.result()
            for message, category in caught:
                warnings.warn(message, category, stacklevel=2)
            results.append(result)
        return results

    def close(self) -> None:
        """Stop the worker processes (a later :meth:`run` starts new ones)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._owner.close()
            self._executor, self._owner = None, None
