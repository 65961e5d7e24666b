"""Helpers the panel tests share (tests/ is on sys.path: ``from qt_helpers import wait_for``)."""
from __future__ import annotations

import time


def wait_for(condition, timeout: float = 30.0) -> None:
    """Run Qt's event loop until ``condition()`` is true; AssertionError after
    ``timeout`` seconds. The panel's signals (progress, results) arrive only
    while events are processed, so tests wait with this, not with sleep."""
    from PySide6.QtWidgets import QApplication
    end = time.monotonic() + timeout
    while not condition():
        QApplication.processEvents()
        time.sleep(0.005)
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the panel")
    QApplication.processEvents()
