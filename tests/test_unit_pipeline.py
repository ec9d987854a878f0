"""``scoring.pipeline.ordered_map`` and ``device.predict_streams``: order, bounded lookahead, errors, streams."""

from __future__ import annotations

import threading
import time

import pytest

from skol_spark.model.device import predict_streams
from skol_spark.scoring.pipeline import ordered_map


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_results_come_back_in_input_order_whatever_finishes_first(workers):
    delays = [0.03, 0.0, 0.02, 0.0, 0.01, 0.0]

    def slow_square(i):
        time.sleep(delays[i % len(delays)])
        return i * i

    assert list(ordered_map(slow_square, range(20), workers=workers)) == [i * i for i in range(20)]


def test_items_run_concurrently_but_at_most_workers_plus_one_are_taken_ahead():
    workers, taken, running, peak = 2, [], [0], [0]
    lock = threading.Lock()

    def items():
        for i in range(12):
            taken.append(i)
            yield i

    def work(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i

    consumed = []
    for value in ordered_map(work, items(), workers=workers):
        # when the caller holds result k, the input was read at most up to k + workers + 1
        assert len(taken) <= value + workers + 2
        consumed.append(value)
    assert consumed == list(range(12))
    assert peak[0] == workers  # the items did overlap, and no more than `workers` at once


def test_an_error_is_raised_where_its_item_would_have_been_yielded():
    def fail_on_three(i):
        if i == 3:
            raise ValueError("item 3")
        return i

    got = []
    with pytest.raises(ValueError, match="item 3"):
        for value in ordered_map(fail_on_three, range(10), workers=2):
            got.append(value)
    assert got == [0, 1, 2]


def test_a_caller_that_stops_early_leaves_no_thread_running():
    before = {t.name for t in threading.enumerate()}
    results = ordered_map(lambda i: time.sleep(0.01) or i, range(100), workers=3)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    results.close()
    left = {t.name for t in threading.enumerate()} - before
    assert not [name for name in left if name.startswith("skol-score")]


@pytest.mark.parametrize("threads, configured, gpu, expected", [
    (2, 0, False, 2), (4, 0, False, 4), (1, 0, False, 1),  # CPU auto: one single-threaded predict per core
    (2, 0, True, 1), (8, 0, True, 1),  # GPU auto: one predict drives the device
    (4, 2, False, 2), (2, 1, False, 1), (2, 5, False, 2), (4, 2, True, 2),  # set: kept, at most the threads
])
def test_predict_streams(threads, configured, gpu, expected):
    assert predict_streams(threads, configured, gpu=gpu) == expected
