"""Timing helper shared by the bench scripts (run as ``python bench/<name>.py``)."""
from __future__ import annotations

import time
from typing import Callable


def best_of(fn: Callable[[], object], repeat: int, warmup: bool = True) -> float:
    """Best wall time of ``repeat`` calls, in seconds (after one warm-up call):
    the minimum is the least disturbed by other work on a shared machine."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
