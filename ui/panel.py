"""LiveLayersPanel: an embeddable PySide6 prompt panel for LiveLayers workflows.

The panel holds no state of its own beyond the workflow dict it edits: every
field writes straight into ``workflow[node_id]["inputs"][name]``, Run hands
a copy of that dict to ``engine.executor.run_workflow`` in a worker thread,
and Save writes the dict back as API-format JSON. What the panel shows while
running comes from the engine's ``Progress`` updates, relayed as Qt signals.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QListWidget, QPlainTextEdit, QProgressBar, QPushButton,
                               QScrollArea, QSizePolicy, QSplitter, QVBoxLayout, QWidget)

from ..engine.atomic import atomic_path
from ..engine.errors import Cancelled, InputError, LiveLayersError
from ..engine.frames import parse_frames
from .fields import Field, editable_fields, parse_number
from .qtcheck import qt_binding_problem
from .worker import RunThread

PREVIEW_SIZE = 192  # px, longest side of the preview shown (display only)
_INVALID_STYLE = "QLineEdit { border: 1px solid #d33; }"


def default_registry() -> dict[str, type]:
    """This pack's node classes (imported on first use: the panel can embed elsewhere)."""
    from ..nodes import NODE_CLASS_MAPPINGS
    return NODE_CLASS_MAPPINGS


def describe_error(error: BaseException) -> str:
    """One line for the panel: the kind of problem, then the engine's own message."""
    from ..engine.executor import WorkflowError
    if isinstance(error, Cancelled):
        return f"Stopped: {error}"
    if isinstance(error, WorkflowError):
        return f"Workflow error: {error}"
    if isinstance(error, InputError):
        return f"Input error: {error}"
    if isinstance(error, LiveLayersError):
        return f"{type(error).__name__}: {error}"
    return f"Unexpected {type(error).__name__}: {error}"


class LiveLayersPanel(QWidget):
    """Prompt fields, Run/Stop, progress, preview, log and written files.

    ``registry``: node classes by name (default: this pack's). Emits
    ``run_finished(outcome)`` with "done", "stopped" or "failed".
    """

    run_finished = Signal(str)
    workflow_changed = Signal()

    def __init__(self, workflow: dict | None = None, *, registry: dict[str, type] | None = None,
                 path: str | Path | None = None, parent: QWidget | None = None):
        problem = qt_binding_problem()
        if problem is not None:  # refuse now rather than crash the host mid-run
            raise RuntimeError(f"LiveLayers panel: {problem}")
        super().__init__(parent)
        self.registry = registry if registry is not None else default_registry()
        self.workflow: dict = {}
        self.path: Path | None = None
        self.field_widgets: dict[str, QLineEdit] = {}
        self.written: list[str] = []
        self.last_error: BaseException | None = None
        self._thread: RunThread | None = None
        self._started = 0.0
        self._last_node = ""
        self._outcome = ""
        self._build()
        if workflow is not None:
            self.set_workflow(workflow, path)
        elif path is not None:
            self.open_workflow(path)

    # ------------------------------------------------------------ layout

    def _build(self) -> None:
        self.open_button = QPushButton("Open…", toolTip="Load an API-format workflow JSON")
        self.save_button = QPushButton("Save graph…",
                                       toolTip="Write the workflow with the edited values")
        self.path_label = QLabel("no workflow loaded")
        # a long path must not widen the panel (it stays readable in the tooltip)
        self.path_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        top = QHBoxLayout()
        for w in (self.open_button, self.save_button):
            top.addWidget(w)
        top.addWidget(self.path_label, 1)

        self.fields_box = QWidget()
        self.fields_layout = QVBoxLayout(self.fields_box)
        self.fields_layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(self.fields_box)

        self.frames_edit = QLineEdit(placeholderText="all frames",
                                     toolTip="Frames to run: an Open Job Description range such "
                                             "as 1-10, 1-9:2 or 1,4,7; empty = all")
        self.run_button = QPushButton("Run", toolTip="Run the workflow with these values")
        self.stop_button = QPushButton("Stop", enabled=False,
                                       toolTip="Stop at the next step (trainers checkpoint first)")
        run_row = QHBoxLayout()
        run_row.addWidget(QLabel("Frames"))
        run_row.addWidget(self.frames_edit, 1)
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.stop_button)

        self.progress_bar = QProgressBar(minimum=0, maximum=1000, value=0, textVisible=True)
        self.progress_bar.setFormat("%p%")
        self.status_label = QLabel("")
        self.error_label = QLabel("", wordWrap=True, visible=False,
                                  textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet("QLabel { color: #b00; }")

        self.preview_label = QLabel("preview", alignment=Qt.AlignmentFlag.AlignCenter)
        self.preview_label.setMinimumSize(PREVIEW_SIZE // 2, PREVIEW_SIZE // 2)
        self.log_view = QPlainTextEdit(readOnly=True, maximumBlockCount=2000)
        self.written_list = QListWidget(toolTip="Files written by the last run")
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.log_view)
        right.addWidget(self.written_list)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.preview_label)
        bottom.addWidget(right)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(scroll, 2)
        layout.addLayout(run_row)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.error_label)
        layout.addWidget(bottom, 3)

        self.open_button.clicked.connect(self._ask_open)
        self.save_button.clicked.connect(self._ask_save)
        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)

    # ------------------------------------------------------------ workflow

    def set_workflow(self, workflow: dict, path: str | Path | None = None) -> None:
        """Show ``workflow`` (edited in place) and check it against the registry."""
        self.workflow = workflow
        self.path = Path(path) if path is not None else None
        self.path_label.setText(str(self.path) if self.path else "(unsaved workflow)")
        self.path_label.setToolTip(self.path_label.text())
        self._rebuild_fields()
        self.check_workflow()

    def open_workflow(self, path: str | Path) -> bool:
        """Load a workflow file; a bad file is reported in the panel. True if loaded."""
        from ..engine.executor import WorkflowError, load_workflow
        try:
            workflow = load_workflow(path)
        except WorkflowError as e:
            self.show_error(e)
            return False
        self.set_workflow(workflow, path)
        self.log(f"Opened {path}")
        return True

    def save_workflow(self, path: str | Path) -> Path:
        """Write the edited workflow as API-format JSON (atomically)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.workflow, indent=2) + "\n")
        self.path = path
        self.path_label.setText(str(path))
        self.path_label.setToolTip(str(path))
        self.log(f"Saved {path}")
        return path

    def check_workflow(self) -> bool:
        """Validate with the executor; show the first problem. True if valid."""
        from ..engine.executor import validate_workflow
        try:
            validate_workflow(self.workflow, self.registry)
        except Exception as e:
            self.show_error(e)
            return False
        self.clear_error()
        return True

    def _rebuild_fields(self) -> None:
        while self.fields_layout.count():
            item = self.fields_layout.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.field_widgets.clear()
        groups: dict[str, QFormLayout] = {}
        for field in editable_fields(self.workflow, self.registry):
            form = groups.get(field.node_id)
            if form is None:
                box = QGroupBox(f"{field.node_id} · {field.class_type}")
                form = groups[field.node_id] = QFormLayout(box)
                self.fields_layout.addWidget(box)
            edit = self._field_widget(field)
            form.addRow(field.name, edit)
            self.field_widgets[field.key] = edit
        if not groups:
            self.fields_layout.addWidget(QLabel("This workflow has no prompt, steps or seed "
                                                "inputs with literal values."))
        self.fields_layout.addStretch(1)

    def _field_widget(self, field: Field) -> QLineEdit:
        value = self.workflow[field.node_id]["inputs"][field.name]
        edit = QLineEdit(str(value))
        tip = field.tooltip or f"input '{field.name}' of node {field.node_id}"
        if field.minimum is not None or field.maximum is not None:
            tip += f" (allowed: {field.minimum} … {field.maximum})"
        edit.setToolTip(tip)
        edit.setProperty("base_tooltip", tip)
        edit.textChanged.connect(lambda text, f=field, w=edit: self._on_edit(f, w, text))
        return edit

    def _on_edit(self, field: Field, edit: QLineEdit, text: str) -> None:
        """Write the field into the workflow dict; a non-number is flagged, not written."""
        if field.kind == "text":
            value: object = text
        else:
            try:
                value = parse_number(text, field.kind)
            except ValueError as e:
                edit.setStyleSheet(_INVALID_STYLE)
                edit.setToolTip(f"{field.key}: {e}; the workflow keeps its previous value")
                return
        edit.setStyleSheet("")
        edit.setToolTip(edit.property("base_tooltip"))
        self.workflow[field.node_id]["inputs"][field.name] = value
        self.workflow_changed.emit()

    # ------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        return self._thread is not None

    def run(self) -> bool:
        """Start a run of (a copy of) the workflow. False if it could not start."""
        if self.running:
            return False
        try:
            frames = parse_frames(self.frames_edit.text())
        except ValueError as e:
            self.show_error(InputError("panel", "frames", str(e)))
            return False
        if not self.check_workflow():
            self.log(f"Not run: {self.error_label.text()}")
            return False
        self.written = []
        self.written_list.clear()
        self.progress_bar.setValue(0)
        self.status_label.setText("starting…")
        self._last_node = ""
        self._outcome = "failed"  # until the thread reports otherwise
        self._started = time.monotonic()
        self.log("Run" + (f" frames {self.frames_edit.text().strip()}" if frames else ""))
        self._thread = RunThread(copy.deepcopy(self.workflow), self.registry, frames=frames,
                                 parent=self)
        self._thread.progressed.connect(self._on_progress)
        self._thread.preview.connect(self._on_preview)
        self._thread.succeeded.connect(self._on_success)
        self._thread.failed.connect(self._on_failure)
        self._thread.finished.connect(self._on_thread_finished)
        self._set_running(True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Ask the running workflow to stop at its next progress update."""
        if self._thread is not None:
            self._thread.request_stop()
            self.stop_button.setEnabled(False)
            self.status_label.setText("stopping…")
            self.log("Stop requested")

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.open_button.setEnabled(not running)

    def _on_progress(self, step: int, total: int, info: dict) -> None:
        self.progress_bar.setValue(int(1000 * step / total) if total else 0)
        node = str(info.get("node", ""))
        numbers = "  ".join(f"{k}={v:.4g}" for k, v in info.items()
                            if isinstance(v, float) and not isinstance(v, bool))
        self.status_label.setText(" · ".join(p for p in (node, numbers) if p))
        if node and node != self._last_node:
            self._last_node = node
            self.log(f"→ {node}")

    def _on_preview(self, image) -> None:
        """Show a preview scaled (for display only) to fit the preview area."""
        size = self.preview_label.size()
        side = max(PREVIEW_SIZE // 2, min(size.width(), size.height()))
        pix = QPixmap.fromImage(image).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation)
        self.preview_label.setPixmap(pix)

    def _on_success(self, result) -> None:
        self.progress_bar.setValue(1000)
        self.written = list(result.written)
        self.written_list.addItems(self.written)
        took = time.monotonic() - self._started
        skipped = f", {len(result.skipped_frames)} frames already done" \
            if result.skipped_frames else ""
        self.status_label.setText(f"done in {took:.1f} s")
        self.log(f"Done in {took:.1f} s: {len(self.written)} file(s) written{skipped}")
        self.clear_error()
        self._outcome = "done"

    def _on_failure(self, error: BaseException) -> None:
        self.show_error(error)
        self._outcome = "stopped" if isinstance(error, Cancelled) else "failed"
        self.status_label.setText(self._outcome)

    def _on_thread_finished(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.deleteLater()
        self._set_running(False)
        self.run_finished.emit(self._outcome)

    def wait(self, timeout_ms: int = 60000) -> bool:
        """Block until the current run's thread ends (for scripts and tests)."""
        return self._thread.wait(timeout_ms) if self._thread is not None else True

    # ------------------------------------------------------------ messages

    def show_error(self, error: BaseException) -> None:
        self.last_error = error
        text = describe_error(error)
        self.error_label.setText(text)
        self.error_label.setVisible(True)
        self.log(text)

    def clear_error(self) -> None:
        self.last_error = None
        self.error_label.setText("")
        self.error_label.setVisible(False)

    def log(self, line: str) -> None:
        self.log_view.appendPlainText(line)

    # ------------------------------------------------------------ dialogs

    def _ask_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open workflow", "", "Workflow (*.json)")
        if path:
            self.open_workflow(path)

    def _ask_save(self) -> None:
        start = str(self.path) if self.path else "workflow.json"
        path, _ = QFileDialog.getSaveFileName(self, "Save workflow", start, "Workflow (*.json)")
        if path:
            self.save_workflow(path)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        """Stop a running workflow cleanly before the widget goes away."""
        if self._thread is not None:
            self._thread.request_stop()
            self._thread.wait(30000)
        super().closeEvent(event)
