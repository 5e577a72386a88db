import threading

import pytest

from callbacks._jobs import OrderedJobs


@pytest.mark.parametrize("background", [True, False])
def test_results_come_back_in_submission_order(background):
    jobs = OrderedJobs(background=background, max_unfinished=3)
    for value in range(6):
        jobs.submit(lambda v: v * v, value)
    assert jobs.finished(wait=True) == [0, 1, 4, 9, 16, 25]
    assert jobs.pending == 0
    jobs.close()


def test_a_background_job_runs_while_the_caller_goes_on_and_is_handed_back_once():
    release = threading.Event()
    jobs = OrderedJobs(background=True)
    jobs.submit(lambda: release.wait(10) and "done")
    assert jobs.finished() == [] and jobs.pending == 1  # the caller was not blocked
    release.set()
    assert jobs.finished(wait=True) == ["done"]
    assert jobs.finished(wait=True) == []
    jobs.close()


def test_submit_waits_while_max_unfinished_jobs_are_queued():
    release = threading.Event()
    started = []
    jobs = OrderedJobs(background=True, max_unfinished=1)
    jobs.submit(lambda: started.append(1) or release.wait(10))
    blocked = threading.Thread(target=lambda: jobs.submit(lambda: started.append(2)))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive() and started == [1]  # the second submit waits for the first job
    release.set()
    blocked.join(10)
    assert not blocked.is_alive()
    jobs.finished(wait=True)
    assert started == [1, 2]
    jobs.close()


@pytest.mark.parametrize("background", [True, False])
def test_a_failed_job_raises_where_its_result_is_handed_back(background):
    jobs = OrderedJobs(background=background)
    jobs.submit(lambda: 1)
    jobs.submit(lambda: 1 / 0)
    jobs.submit(lambda: 3)
    assert jobs.finished(wait=True) == [1]
    with pytest.raises(ZeroDivisionError):
        jobs.finished(wait=True)
    assert jobs.finished(wait=True) == [3]
    jobs.close()
