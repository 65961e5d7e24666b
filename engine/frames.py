"""Frame ranges, as Open Job Description range expressions.

``"1-10"``, ``"1-9:2"``, ``"1,4,7"``, ``"1001-1050,1060"``. Parsing is done by
openjd-model's own ``IntRangeExpr`` so that what a farm job template sends is
exactly what we accept.
"""
from __future__ import annotations

from typing import Iterable


def parse_frames(expr: str | int | Iterable[int] | None) -> list[int] | None:
    """Frame numbers in the expression's order; ``None``/``""`` means all frames.

    >>> parse_frames("1-4")
    [1, 2, 3, 4]
    >>> parse_frames("1-9:4,20")
    [1, 5, 9, 20]
    >>> parse_frames("") is None
    True
    """
    if expr is None:
        return None
    if isinstance(expr, int):
        return [expr]
    if not isinstance(expr, str):
        return [int(f) for f in expr]
    text = expr.strip()
    if not text:
        return None
    from openjd.model import IntRangeExpr
    try:
        return list(IntRangeExpr.from_str(text.replace(" ", "")))
    except Exception as e:
        raise ValueError(f"frame range {expr!r} is not an Open Job Description range "
                         f"expression like '1-10', '1-9:2' or '1,4,7' ({e})") from e


def format_frames(frames: Iterable[int]) -> str:
    """Compact expression for a list of frames.

    >>> format_frames([1, 2, 3, 5, 7, 8])
    '1-3,5,7-8'
    """
    frames = list(frames)
    parts: list[str] = []
    i = 0
    while i < len(frames):
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
            j += 1
        parts.append(str(frames[i]) if i == j else f"{frames[i]}-{frames[j]}")
        i = j + 1
    return ",".join(parts)
