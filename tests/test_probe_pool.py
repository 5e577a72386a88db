import multiprocessing
import os
import signal
import time
import warnings

import pytest
import torch
from threadpoolctl import threadpool_info

from attnconv_pl.analyses.probe_pool import ProbePool, available_cores, one_thread, resolve_workers


def row_sum_and_process(points: torch.Tensor, row: int) -> tuple[float, int, int]:
    if row == 2:
        warnings.warn(f"row {row} is odd", RuntimeWarning, stacklevel=2)
    return float(points[row].sum()), os.getpid(), torch.get_num_threads()


def test_calls_come_back_in_order_from_other_processes_with_their_warnings():
    points = torch.arange(12.0).reshape(4, 3)
    pool = ProbePool(workers=2)
    with pytest.warns(RuntimeWarning, match="row 2 is odd"):
        results = pool.run([(row_sum_and_process, (points, row)) for row in range(4)])
    pool.close()
    assert [total for total, _, _ in results] == [3.0, 12.0, 21.0, 30.0]
    assert os.getpid() not in {pid for _, pid, _ in results}
    assert {threads for _, _, threads in results} == {1}
    assert points.is_shared()  # passed to the workers through shared memory


@pytest.mark.parametrize("workers", [0, 1])
def test_one_worker_or_none_runs_in_this_process(workers):
    points = torch.ones(3, 2)
    results = ProbePool(workers).run([(row_sum_and_process, (points, row)) for row in range(2)])
    assert [(total, pid) for total, pid, _ in results] == [(2.0, os.getpid())] * 2
    assert not points.is_shared()


def test_the_default_takes_the_cores_others_leave_free():
    assert resolve_workers(None, claimed=0) == available_cores()
    assert resolve_workers(None, claimed=available_cores() + 3) == 1
    assert resolve_workers(0) == 1 and resolve_workers(3, claimed=100) == 3


def start_a_pool_and_die(ready) -> None:
    """A pool's owner that is killed (SIGKILL) while its workers run."""
    pool = ProbePool(workers=2)
    pids = pool.run([(row_sum_and_process, (torch.ones(2, 2), 0)) for _ in range(4)])
    ready.send(sorted({pid for _, pid, _ in pids}))
    os.kill(os.getpid(), signal.SIGKILL)


def test_workers_end_when_the_pools_owner_is_killed():
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    owner = context.Process(target=start_a_pool_and_die, args=(sender,))
    owner.start()
    workers = receiver.recv()
    owner.join(60)
    assert owner.exitcode == -signal.SIGKILL and workers
    deadline = time.monotonic() + 60  # a bound against hanging, not a timing assertion
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_one_thread_limits_torch_and_blas_inside_the_block_and_restores_after():
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert torch.get_num_threads() == before
