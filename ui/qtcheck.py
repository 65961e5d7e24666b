"""A guard against a Qt binding that corrupts Python's reference counts.

PySide6 6.12.0 on Python 3.11 drops a reference to the value a signal's
``emit()`` returns (``True``) and to a Python slot's return value (``None``)
on every call; after a few hundred signals Python aborts with "Fatal Python
error: bool_dealloc" (measured here: ~570 emits). The panel sends a signal
per progress update, so it would kill its host application mid-run. 6.11.3
is fine. Rather than trust version numbers, we measure: emit a few signals
and see whether the count of references to ``True`` drops.
"""
from __future__ import annotations

import sys

_verdict: str | None = None
_checked = False


def qt_binding_problem() -> str | None:
    """None if signals keep reference counts intact, else what to do about it."""
    global _verdict, _checked
    if _checked:
        return _verdict
    import PySide6
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal(int)

    probe = _Probe()
    before = sys.getrefcount(True)
    results = [probe.ping.emit(i) for i in range(20)]  # keep the results alive while counting
    leaked = before + len([r for r in results if r is True]) - sys.getrefcount(True)
    del results
    _checked = True
    if leaked >= 10:
        _verdict = (f"PySide6 {PySide6.__version__} on Python {sys.version.split()[0]} corrupts "
                    "reference counts on every signal and would crash after a few hundred; "
                    "install another version, e.g. pip install 'PySide6-Essentials==6.11.3'")
    return _verdict
