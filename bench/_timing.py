"""Timing helper shared by the bench scripts (run as ``python bench/<name>.py``)."""
from __future__ import annotations

import json
import subprocess
import sys
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


def run_json(args: list[str]) -> dict:
    """Run ``python ARGS`` (a bench script in its own process, so that its peak
    memory is its own) and return the JSON object on the last line it prints."""
    out = subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def row(bench: str, case: str, unit: str, ours: float, reference: float | None = None,
        note: str = "") -> dict:
    """One row of ``python -m livelayers bench``'s table (see bench/suite.py):
    ``ratio`` = reference / ours, so above 1 means ours costs less (every unit
    with a reference is lower-is-better: seconds, MiB)."""
    ours = float(ours)
    reference = None if reference is None else float(reference)
    ratio = reference / ours if reference is not None and ours > 0 else None
    return {"bench": bench, "case": case, "unit": unit, "ours": ours, "reference": reference,
            "ratio": ratio, "note": note}


def check_size(size: str) -> str:
    """``size`` of a bench's ``rows(size)``: "quick" (seconds) or "reference"
    (the sizes its docs page reports)."""
    if size not in ("quick", "reference"):
        raise ValueError(f"size {size!r}: allowed: quick, reference")
    return size
