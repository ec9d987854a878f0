"""Score a task's tables in several threads, results in input order.

Why: a windowed LSTM predicts as a chain of small matrix products, 50 steps
per window. Split over two intra-op threads, every step pays a hand-off
between them, and the decoding, windowing and Arrow work around each predict
runs on one core while the other waits. Two single-threaded predicts on
different tables keep both cores busy instead, in one worker with one model
(TensorFlow calls release the GIL). The output is the same: a table's windows
are predicted, summed and averaged exactly as in one thread.
"""

from __future__ import annotations

import collections
import concurrent.futures
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int) -> Iterator[R]:
    """``map(fn, items)`` in ``workers`` threads, yielded in order.

    At most ``workers + 1`` items are in flight (every thread busy while the
    caller consumes a result), so memory stays bounded by a few tables, not
    by the partition. An error is raised where its item would
    have been yielded; items after it are cancelled or left to finish.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="skol-score")
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
