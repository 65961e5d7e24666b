"""The standalone prompt panel: ``python -m livelayers panel [graph.json]``.

Qt is imported only when the command runs, so listing the CLI's commands
(or running on a farm node without a display) never needs PySide6.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def make_window(graph: str | None = None, registry: dict[str, type] | None = None):
    """A QMainWindow holding a LiveLayersPanel (a QApplication must exist)."""
    from PySide6.QtWidgets import QMainWindow

    from .panel import LiveLayersPanel

    window = QMainWindow()
    panel = LiveLayersPanel(registry=registry, path=graph)
    window.setCentralWidget(panel)
    window.setWindowTitle("LiveLayers" + (f" — {Path(graph).name}" if graph else ""))
    window.panel = panel
    return window


def main(argv: list[str] | None = None) -> int:
    """Open the panel; with ``--screenshot`` render it once to a PNG and exit."""
    parser = argparse.ArgumentParser(prog="python -m livelayers panel")
    _add_arguments(parser)
    return _run(parser.parse_args(argv))


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("graph", nargs="?", help="API-format workflow JSON to open")
    p.add_argument("--frames", default="", help="pre-fill the Frames field (OpenJD range)")
    p.add_argument("--size", default="720x640", help="window size WxH (default 720x640)")
    p.add_argument("--screenshot", metavar="PNG",
                   help="render the window to PNG and exit (works offscreen)")


def _run(args: argparse.Namespace) -> int:
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"panel: --size {args.size!r}; allowed: WxH such as 720x640", file=sys.stderr)
        return 2
    from PySide6.QtWidgets import QApplication

    from .qtcheck import qt_binding_problem
    problem = qt_binding_problem()
    if problem is not None:
        print(f"panel: {problem}", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = make_window(args.graph)
    window.panel.frames_edit.setText(args.frames)
    window.resize(w, h)
    if args.screenshot:
        window.show()
        app.processEvents()
        ok = window.grab().save(args.screenshot)
        window.close()
        print(f"wrote {args.screenshot}" if ok else f"panel: could not write {args.screenshot}")
        return 0 if ok else 1
    window.show()
    return app.exec()


def register_cli(subparsers) -> None:
    """Add ``panel`` to the runner's argparse sub-commands."""
    p = subparsers.add_parser("panel", help="open the PySide6 prompt panel",
                              description="Edit a workflow's prompts, seed and steps, run it "
                                          "with progress and preview, save the edited graph.")
    _add_arguments(p)
    p.set_defaults(func=_run)
