"""The standalone prompt panel: ``python -m livelayers panel [graph.json]``.

Qt is imported only when the command runs, so listing the CLI's commands
(or running on a farm node without a display) never needs PySide6.

``--run`` / ``--matte`` / ``--view`` / ``--screenshot`` make it scriptable:
run the graph once, wait for the live matte, pick a view and write the
window to a PNG (the docs' screenshots are made this way, offscreen).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_SIZE = "760x900"


def make_window(graph: str | None = None, registry: dict[str, type] | None = None, *,
                dock: bool = False, backend=None, live_matte: bool = True):
    """A QMainWindow holding a LiveLayersPanel (a QApplication must exist).

    ``dock=True`` puts the panel in a QDockWidget beside a placeholder
    central widget, as a host application (Nuke, Houdini) would show it.
    """
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QLabel, QMainWindow

    from .panel import LiveLayersPanel

    window = QMainWindow()
    panel = LiveLayersPanel(registry=registry, path=graph, backend=backend, live_matte=live_matte)
    if dock:
        window.setCentralWidget(QLabel("host application", alignment=Qt.AlignmentFlag.AlignCenter))
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, panel.as_dock(window))
    else:
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
    p.add_argument("--set", action="append", metavar="ID.input=value", default=[],
                   help="set an input before the panel opens (value parsed as JSON when "
                        "possible); repeatable")
    p.add_argument("--comfyui", metavar="URL",
                   help="run on a ComfyUI server (e.g. http://127.0.0.1:8188) instead of in-process")
    p.add_argument("--comfyui-input", metavar="DIR",
                   help="that server's input folder, when it is on this machine (the viewer and "
                        "the live matte find relative plate paths there)")
    p.add_argument("--size", default=DEFAULT_SIZE, help=f"window size WxH (default {DEFAULT_SIZE})")
    p.add_argument("--dock", action="store_true",
                   help="show the panel docked in a host-like main window")
    p.add_argument("--run", action="store_true", help="run the graph once at start (with --screenshot: "
                                                      "wait for it to finish first)")
    p.add_argument("--matte", action="store_true",
                   help="with --screenshot: wait for the live matte first")
    p.add_argument("--view", choices=["plate", "matte", "preview", "layer", "alpha", "composite",
                                      "relevancy"], help="view to show")
    p.add_argument("--frame", type=int, metavar="N", help="show frame N of a plate sequence")
    p.add_argument("--wipe", type=float, metavar="F",
                   help="A/B wipe (plate | composite) at this fraction of the width, 0..1")
    p.add_argument("--screenshot", metavar="PNG",
                   help="render the window to PNG and exit (works offscreen)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds --run/--matte may take before the screenshot gives up")


def _size(text: str) -> tuple[int, int] | None:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        return None
    return (w, h) if w > 0 and h > 0 else None


def _apply_sets(panel, sets: list[str]) -> None:
    """``--set`` values into the panel's workflow, then the fields are rebuilt."""
    from ..engine.executor import apply_overrides, parse_override
    overrides = {}
    for text in sets:
        node_id, name, value = parse_override(text, panel.workflow, panel.registry)  # typed like the runner
        overrides[f"{node_id}.{name}"] = value
    panel.set_workflow(apply_overrides(panel.workflow, overrides), panel.path)


def _wait(app, done, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not done():
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() > end:
            return False
    app.processEvents()
    return True


def _run(args: argparse.Namespace) -> int:
    size = _size(args.size)
    if size is None:
        print(f"panel: --size {args.size!r}; allowed: WxH such as {DEFAULT_SIZE}", file=sys.stderr)
        return 2
    from PySide6.QtWidgets import QApplication

    from .qtcheck import qt_binding_problem
    problem = qt_binding_problem()
    if problem is not None:
        print(f"panel: {problem}", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    backend = None
    if args.comfyui:
        from .backends import ComfyUIBackend
        try:
            backend = ComfyUIBackend(args.comfyui, input_dir=args.comfyui_input)
        except ValueError as e:
            print(f"panel: --comfyui: {e}", file=sys.stderr)
            return 2
    # a one-shot screenshot that does not show the matte need not load a model for it
    wants_matte = not args.screenshot or args.matte or args.view == "matte"
    window = make_window(args.graph, dock=args.dock, backend=backend, live_matte=wants_matte)
    panel = window.panel
    try:
        if args.set:
            _apply_sets(panel, args.set)
    except Exception as e:  # WorkflowError: a bad --set
        print(f"panel: {e}", file=sys.stderr)
        return 2
    panel.frames_edit.setText(args.frames)
    window.resize(*size)
    window.show()
    app.processEvents()
    outcome = [] if args.run else ["not run"]
    panel.run_finished.connect(outcome.append)
    if args.run and not panel.run():
        print(f"panel: not run: {panel.error_label.text()}", file=sys.stderr)
        if args.screenshot:
            return _close(window, 1)
    if not args.screenshot:
        code = app.exec()
        panel.shutdown()
        return code
    if not _wait(app, lambda: outcome, args.timeout):
        print(f"panel: the run did not finish in {args.timeout:.0f} s", file=sys.stderr)
        return _close(window, 1)
    if args.matte and panel.roi_edit is not None:
        if "matte" not in panel.viewer.canvas.pictures:
            panel.request_matte()
        shown = lambda: "matte" in panel.viewer.canvas.pictures and \
            not panel.matte_label.text().startswith("matte: computing")  # noqa: E731
        if not _wait(app, shown, args.timeout):
            print("panel: the live matte did not arrive in time", file=sys.stderr)
            return _close(window, 1)
    if args.frame is not None:
        panel.viewer.set_frame(args.frame)
        app.processEvents()
    if args.view:
        panel.viewer.show_view(args.view)
    if args.wipe is not None:
        panel.viewer.canvas.set_wipe(True, min(1.0, max(0.0, args.wipe)))
    app.processEvents()
    ok = window.grab().save(args.screenshot)
    print(f"wrote {args.screenshot}" if ok else f"panel: could not write {args.screenshot}")
    failed = outcome and outcome[0] == "failed"
    if failed:
        print(f"panel: the run failed: {panel.error_label.text()}", file=sys.stderr)
    return _close(window, 0 if ok and not failed else 1)


def _close(window, code: int) -> int:
    window.panel.shutdown()
    window.close()
    return code


def register_cli(subparsers) -> None:
    """Add ``panel`` to the runner's argparse sub-commands."""
    p = subparsers.add_parser("panel", help="open the PySide6 prompt panel",
                              description="See the plate and the live matte while typing the "
                                          "prompt; run the workflow (in-process or on a ComfyUI "
                                          "server) with progress and previews; browse the edit "
                                          "layer, alpha, composite and relevancy; keep a history "
                                          "of runs.")
    _add_arguments(p)
    p.set_defaults(func=_run)
