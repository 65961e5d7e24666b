"""LiveLayersPanel: an embeddable PySide6 prompt panel for LiveLayers workflows.

The panel holds no state of its own beyond the workflow dict it edits: every
field writes straight into ``workflow[node_id]["inputs"][name]`` (one field
per idea: see ``ui/fields.py``), Run hands a copy of that dict to the back
end (the executor in a QThread, or a ComfyUI server), and Save writes the
dict back as API-format JSON.

Around that: a viewer (plate, live matte, run previews, the written edit
layer over a checkerboard, its alpha, the composite, the relevancy map; A/B
wipe, zoom, pan, pixel values), the live matte of the region text (computed
in a worker thread while typing), a loss plot, and a history strip of
finished runs whose click restores their values.
"""
from __future__ import annotations

import copy
import json
import random
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QComboBox, QDockWidget, QFileDialog, QFormLayout, QGridLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QPlainTextEdit, QProgressBar, QPushButton, QScrollArea,
                               QSizePolicy, QSplitter, QTabWidget, QToolButton, QVBoxLayout,
                               QWidget)

from ..engine.atomic import atomic_path
from ..engine.errors import Cancelled, InputError, LiveLayersError
from ..engine.frames import parse_frames
from .backends import ComfyUIBackend, InProcessBackend
from .fields import Field, editable_fields, parse_number, primary_fields
from .graph import exr_by_frame, matte_spec, plate_spec, resolve_input_path
from .history import HistoryEntry, HistoryStrip
from .layers import Picture, matte_picture, plate_picture, read_result, srgb_image_picture
from .lossplot import LossPlot
from .qtcheck import qt_binding_problem
from .viewer import Viewer

MATTE_DEBOUNCE_MS = 300  # typing pause before the live matte is computed
SEED_MAX = 2**31 - 1  # randomised seeds stay in a range every host's spin box takes
_INVALID_STYLE = "QLineEdit, QPlainTextEdit { border: 1px solid #d33; }"


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


class PromptEdit(QPlainTextEdit):
    """A few lines for the prompt, with QLineEdit's ``text()``/``setText()``;
    Ctrl+Enter runs."""

    edited = Signal(str)
    submitted = Signal()

    def __init__(self, text: str = "", parent=None):
        super().__init__(text, parent)
        self.setTabChangesFocus(True)
        self.setFixedHeight(self.fontMetrics().lineSpacing() * 3 + 12)
        self.textChanged.connect(lambda: self.edited.emit(self.toPlainText()))

    def text(self) -> str:
        return self.toPlainText()

    def setText(self, text: str) -> None:  # noqa: N802 (Qt spelling)
        if text != self.toPlainText():
            self.setPlainText(text)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and \
                event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)


class LiveLayersPanel(QWidget):
    """Viewer, prompt fields, Run/Stop, progress, loss plot, history, log, files.

    ``registry``: node classes by name (default: this pack's). ``backend``:
    ``InProcessBackend()`` (default) or ``ComfyUIBackend(url)``. ``live_matte``:
    compute the matte of the region text while it is typed. Emits
    ``run_finished(outcome)`` with "done", "stopped" or "failed", and
    ``matte_ready()`` when a live matte is shown.
    """

    run_finished = Signal(str)
    workflow_changed = Signal()
    matte_ready = Signal()

    def __init__(self, workflow: dict | None = None, *, registry: dict[str, type] | None = None,
                 path: str | Path | None = None, backend=None, live_matte: bool = True,
                 parent: QWidget | None = None):
        problem = qt_binding_problem()
        if problem is not None:  # refuse now rather than crash the host mid-run
            raise RuntimeError(f"LiveLayers panel: {problem}")
        super().__init__(parent)
        self.registry = registry if registry is not None else default_registry()
        self.backend = backend or InProcessBackend()
        self.live_matte = live_matte  # False: no matte worker (scripts that never look at it)
        self.workflow: dict = {}
        self.path: Path | None = None
        self.fields: list[Field] = []
        self.field_widgets: dict[str, QLineEdit | PromptEdit] = {}
        self.primary: dict[str, Field] = {}
        self.written: list[str] = []
        self.results: dict[int | None, str] = {}
        self.last_error: BaseException | None = None
        self.last_entry: HistoryEntry | None = None
        self._thread = None
        self._started = 0.0
        self._last_node = ""
        self._outcome = ""
        self._saw_preview = False
        self._result_cache: dict[tuple, dict[str, Picture]] = {}
        self._plate_rgb = None
        self._matte_worker = None
        self._matte_started = 0.0
        self._build()
        self.set_backend(self.backend)
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
        self.backend_combo = QComboBox(toolTip="Where runs execute")
        self.backend_combo.addItems(["In-process", "ComfyUI server"])
        self.server_edit = QLineEdit("http://127.0.0.1:8188", visible=False,
                                     toolTip="Address of a running ComfyUI with LiveLayers installed")
        top = QHBoxLayout()
        for w in (self.open_button, self.save_button):
            top.addWidget(w)
        top.addWidget(self.path_label, 1)
        top.addWidget(self.backend_combo)
        top.addWidget(self.server_edit)

        self.viewer = Viewer()
        self.matte_label = QLabel("", toolTip="The live matte: relevancy of the region text "
                                              "on this frame, from the graph's own CLIP")
        self.matte_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.primary_box = QWidget()
        self.primary_layout = QGridLayout(self.primary_box)
        self.primary_layout.setContentsMargins(0, 0, 0, 0)
        self.seed_random_button = QToolButton(text="Random", toolTip="A new random seed")
        self.seed_lock = QToolButton(text="lock", checkable=True, checked=True,
                                     toolTip="Locked: runs keep this seed. Unlocked: every Run "
                                             "draws a new seed (kept in the history)")
        self.frames_edit = QLineEdit(placeholderText="all frames",
                                     toolTip="Frames to run: an Open Job Description range such "
                                             "as 1-10, 1-9:2 or 1,4,7; empty = all")
        self.run_button = QPushButton("Run", toolTip="Run the workflow with these values "
                                                     "(Ctrl+Enter)")
        self.stop_button = QPushButton("Stop", enabled=False,
                                       toolTip="Stop at the next step (trainers checkpoint first)")
        self.progress_bar = QProgressBar(minimum=0, maximum=1000, value=0, textVisible=True)
        self.progress_bar.setFormat("%p%")
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.stop_button)
        run_row.addWidget(self.progress_bar, 1)
        self.loss_plot = LossPlot()
        self.status_label = QLabel("")
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.error_label = QLabel("", wordWrap=True, visible=False,
                                  textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet("QLabel { color: #d44; }")

        self._seed_label, self._steps_label = QLabel("Seed"), QLabel("Steps")
        self._seed_slot, self._steps_slot = QWidget(), QWidget()
        for slot in (self._seed_slot, self._steps_slot):
            QHBoxLayout(slot).setContentsMargins(0, 0, 0, 0)
        numbers = QHBoxLayout()
        for w in (self._seed_label, self._seed_slot, self.seed_random_button, self.seed_lock,
                  self._steps_label, self._steps_slot, QLabel("Frames"), self.frames_edit):
            numbers.addWidget(w, 1 if w in (self._seed_slot, self.frames_edit) else 0)

        controls = QWidget()
        # the splitter must not squeeze the controls (labels would overlap): they keep their height
        controls.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        cl = QVBoxLayout(controls)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.primary_box)
        cl.addLayout(numbers)
        cl.addLayout(run_row)
        cl.addWidget(self.loss_plot)
        cl.addWidget(self.status_label)
        cl.addWidget(self.error_label)

        self.history = HistoryStrip()
        self.fields_box = QWidget()
        self.fields_layout = QVBoxLayout(self.fields_box)
        self.fields_layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(self.fields_box)
        self.log_view = QPlainTextEdit(readOnly=True, maximumBlockCount=2000)
        self.written_list = QListWidget(toolTip="Files written by the last run")
        self.tabs = QTabWidget()
        self.tabs.addTab(self.history, "History")
        self.tabs.addTab(scroll, "All fields")
        self.tabs.addTab(self.log_view, "Log")
        self.tabs.addTab(self.written_list, "Files")
        self.tabs.setMinimumHeight(90)

        splitter = QSplitter(Qt.Orientation.Vertical, childrenCollapsible=False)
        viewer_box = QWidget()
        vl = QVBoxLayout(viewer_box)
        vl.setContentsMargins(0, 0, 0, 0)
        vl.addWidget(self.viewer, 1)
        vl.addWidget(self.matte_label)
        splitter.addWidget(viewer_box)
        splitter.addWidget(controls)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 0)
        splitter.setStretchFactor(2, 1)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)

        self._matte_timer = QTimer(self, singleShot=True, interval=MATTE_DEBOUNCE_MS)
        self._matte_timer.timeout.connect(self.request_matte)
        self.open_button.clicked.connect(self._ask_open)
        self.save_button.clicked.connect(self._ask_save)
        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        self.seed_random_button.clicked.connect(self.randomise_seed)
        self.history.activated.connect(self.restore)
        self.viewer.frame_changed.connect(self._on_frame)
        self.backend_combo.currentIndexChanged.connect(self._on_backend_choice)
        self.server_edit.editingFinished.connect(lambda: self._on_backend_choice(1))
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.run)
        QShortcut(QKeySequence("Escape"), self, activated=self.stop)

    # ------------------------------------------------------------ back end

    def set_backend(self, backend) -> None:
        """Run on ``backend`` from the next Run on (InProcessBackend / ComfyUIBackend)."""
        self.backend = backend
        self.backend_combo.blockSignals(True)
        self.backend_combo.setCurrentIndex(1 if isinstance(backend, ComfyUIBackend) else 0)
        self.backend_combo.blockSignals(False)
        self.server_edit.setVisible(isinstance(backend, ComfyUIBackend))
        if isinstance(backend, ComfyUIBackend):
            self.server_edit.setText(backend.url)
        self.log(f"Runs execute {backend.describe()}")
        if self.workflow:
            self.refresh_plate()
            self.request_matte(later=True)

    def _on_backend_choice(self, index: int) -> None:
        try:
            backend = ComfyUIBackend(self.server_edit.text()) if index == 1 else InProcessBackend()
        except ValueError as e:
            self.show_error(InputError("panel", "server", str(e)))
            return
        self.set_backend(backend)

    # ------------------------------------------------------------ workflow

    def set_workflow(self, workflow: dict, path: str | Path | None = None) -> None:
        """Show ``workflow`` (edited in place) and check it against the registry."""
        self.workflow = workflow
        self.path = Path(path) if path is not None else None
        self.path_label.setText(str(self.path) if self.path else "(unsaved workflow)")
        self.path_label.setToolTip(self.path_label.text())
        self._rebuild_fields()
        self.check_workflow()
        self.results = {}
        self.viewer.clear_results()
        self.refresh_plate()
        self.request_matte(later=False)

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

    def _search_dirs(self) -> list[str]:
        """Where relative plate paths are looked for besides the working directory."""
        dirs = [str(self.path.parent)] if self.path is not None else []
        input_dir = getattr(self.backend, "input_dir", None)
        return dirs + ([str(input_dir)] if input_dir else [])

    # ------------------------------------------------------------ fields

    def _rebuild_fields(self) -> None:
        layouts = [self.fields_layout, self.primary_layout, self._seed_slot.layout(),
                   self._steps_slot.layout()]
        for layout in layouts:
            while layout.count():
                item = layout.takeAt(0)
                if item.widget() is not None:
                    item.widget().deleteLater()
        self.field_widgets.clear()
        self.fields = editable_fields(self.workflow, self.registry)
        self.primary = primary_fields(self.fields)
        primary_keys = {f.key for f in self.primary.values()}
        self._build_primary()
        groups: dict[str, QFormLayout] = {}
        for field in self.fields:
            if field.key in primary_keys:
                continue
            form = groups.get(field.node_id)
            if form is None:
                box = QGroupBox(f"{field.node_id} · {field.class_type}")
                form = groups[field.node_id] = QFormLayout(box)
                self.fields_layout.addWidget(box)
            edit = self._field_widget(field)
            form.addRow(field.name, edit)
        if not self.fields:
            self.fields_layout.addWidget(QLabel("This workflow has no prompt, steps or seed "
                                                "inputs with literal values."))
        self.fields_layout.addStretch(1)

    def _build_primary(self) -> None:
        """Prompt box and region text (rebuilt per graph); seed and steps into their slots."""
        row = 0
        for role, label in (("prompt", "Prompt"), ("roi", "Object")):
            field = self.primary.get(role)
            if field is None:
                continue
            edit = self._field_widget(field, multiline=role == "prompt")
            if role == "prompt":
                edit.setPlaceholderText("Describe the edit, e.g. 'blue circle'")
                edit.submitted.connect(self.run)
            else:
                edit.setPlaceholderText("What to edit, e.g. 'red circle': the matte follows it")
                edit.textChanged.connect(self._on_roi_typed)
            self.primary_layout.addWidget(QLabel(label), row, 0)
            self.primary_layout.addWidget(edit, row, 1)
            row += 1
        for role, slot, label in (("seed", self._seed_slot, self._seed_label),
                                  ("steps", self._steps_slot, self._steps_label)):
            field = self.primary.get(role)
            if field is not None:
                slot.layout().addWidget(self._field_widget(field))
            for w in (slot, label):
                w.setVisible(field is not None)
        self.seed_random_button.setVisible("seed" in self.primary)
        self.seed_lock.setVisible("seed" in self.primary)

    @property
    def prompt_edit(self) -> PromptEdit | None:
        f = self.primary.get("prompt")
        return self.field_widgets.get(f.key) if f else None

    @property
    def roi_edit(self) -> QLineEdit | None:
        f = self.primary.get("roi")
        return self.field_widgets.get(f.key) if f else None

    @property
    def seed_edit(self) -> QLineEdit | None:
        f = self.primary.get("seed")
        return self.field_widgets.get(f.key) if f else None

    def _field_widget(self, field: Field, multiline: bool = False):
        value = field.read(self.workflow)
        edit = PromptEdit(str(value)) if multiline else QLineEdit(str(value))
        tip = field.tooltip or f"input '{field.name}' of node {field.node_id}"
        if field.minimum is not None or field.maximum is not None:
            tip += f" (allowed: {field.minimum} … {field.maximum})"
        if len(field.keys) > 1:
            tip += f"\nOne value, written to {', '.join(field.keys)}"
        edit.setToolTip(tip)
        edit.setProperty("base_tooltip", tip)
        signal = edit.edited if multiline else edit.textChanged
        signal.connect(lambda text, f=field, w=edit: self._on_edit(f, w, text))
        self.field_widgets[field.key] = edit
        return edit

    def _on_edit(self, field: Field, edit, text: str) -> None:
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
        field.write(self.workflow, value)
        self.workflow_changed.emit()

    def randomise_seed(self) -> int | None:
        """Put a new random seed in the seed field (None when the graph has none)."""
        f = self.primary.get("seed")
        if f is None:
            return None
        top = int(min(SEED_MAX, f.maximum if f.maximum is not None else SEED_MAX))
        low = int(max(0, f.minimum or 0))
        seed = random.SystemRandom().randint(low, top)
        self.field_widgets[f.key].setText(str(seed))
        return seed

    def field_values(self) -> dict[str, object]:
        """Every field's current value by key."""
        return {f.key: f.read(self.workflow) for f in self.fields}

    # ------------------------------------------------------------ plate and results

    def refresh_plate(self) -> None:
        """Show the graph's plate (the current frame of its LL_LoadImage)."""
        from ..engine.io import resolve_files
        spec = plate_spec(self.workflow)
        self._plate_rgb = None
        if spec is None:
            self.viewer.set_frames(None)
            self.viewer.set_picture("plate", None)
            return
        try:
            _, _, frames = resolve_files(resolve_input_path(spec.path, self._search_dirs()),
                                         spec.frames or None)
        except Exception as e:
            self.viewer.set_frames(None)
            self.viewer.set_picture("plate", None)
            self.log(f"Plate not shown: {e}")
            return
        self.viewer.set_frames(frames)
        self._show_plate_frame()

    def _show_plate_frame(self) -> None:
        from .matte import load_plate_frame
        spec = plate_spec(self.workflow)
        if spec is None:
            return
        try:
            rgb, space = load_plate_frame(spec, self.viewer.frame, self._search_dirs())
        except Exception as e:
            self.log(f"Plate not shown: {e}")
            return
        self._plate_rgb = rgb
        linear = space if space and _is_linear(space) else "lin_rec709"
        self.viewer.set_picture("plate", plate_picture(rgb, linear))

    def _on_frame(self, frame: int) -> None:
        self._show_plate_frame()
        self.show_results()
        self.request_matte()

    def show_results(self, choose_view: bool = False) -> None:
        """Show the written EXR of the current frame: layer, alpha, composite, relevancy."""
        self.viewer.clear_results()
        path = self.results.get(self.viewer.frame) if self.viewer.frame in self.results else None
        if path is None and self.results:
            path = self.results.get(None) or (next(iter(self.results.values()))
                                              if len(self.results) == 1 else None)
        if path is None:
            return
        try:
            mtime = Path(path).stat().st_mtime_ns
            pictures = self._result_cache.get((path, mtime))
            if pictures is None:
                pictures = self._result_cache[(path, mtime)] = read_result(path)
        except Exception as e:
            self.log(f"Result not shown ({path}): {e}")
            return
        for name, pic in pictures.items():
            if name != "source":
                self.viewer.set_picture(name, pic)
        if choose_view:
            for name in ("composite", "layer"):
                if name in pictures:
                    self.viewer.show_view(name)
                    break

    # ------------------------------------------------------------ live matte

    def _on_roi_typed(self, _text: str) -> None:
        if self._matte_worker is not None:
            self._matte_worker.cancel()  # the running map is for a text that is gone
        self.matte_label.setText("matte: waiting for typing to pause…")
        self._matte_timer.start()

    def request_matte(self, later: bool = False) -> int | None:
        """Compute the live matte of the region text now (``later``: after the
        typing pause). Returns the job's generation, None when there is no matte."""
        if later:
            self._matte_timer.start()
            return None
        from .matte import MatteJob
        spec = matte_spec(self.workflow)
        text = self.roi_edit.text().strip() if self.roi_edit is not None else ""
        if spec is None or not text or not self.live_matte:
            if self._matte_worker is not None:
                self._matte_worker.cancel()
            self.viewer.set_picture("matte", None)
            self.matte_label.setText("" if spec is None or not self.live_matte
                                     else "matte: type the object to edit")
            return None
        worker = self._ensure_matte_worker()
        self._matte_started = time.monotonic()
        self.matte_label.setText(f"matte: computing '{text}'…")
        return worker.request(MatteJob(spec, text, self.viewer.frame, tuple(self._search_dirs())))

    def _ensure_matte_worker(self):
        if self._matte_worker is None:
            from .matte import MatteWorker
            self._matte_worker = MatteWorker(self)
            self._matte_worker.ready.connect(self._on_matte)
            self._matte_worker.failed.connect(self._on_matte_failed)
        return self._matte_worker

    def _on_matte(self, generation: int, matte, plate) -> None:
        if self._matte_worker is None or generation != self._matte_worker.generation:
            return  # superseded while queued
        self.viewer.set_picture("matte", matte_picture(plate, matte))
        if self.viewer.view in ("plate", "matte", ""):
            self.viewer.show_view("matte")
        took = time.monotonic() - self._matte_started
        text = self.roi_edit.text().strip() if self.roi_edit is not None else ""
        frame = f" frame {self.viewer.frame}" if self.viewer.frame is not None else ""
        self.matte_label.setText(f"matte: '{text}'{frame} ({took:.2f} s)")
        self.matte_ready.emit()

    def _on_matte_failed(self, generation: int, message: str) -> None:
        if self._matte_worker is not None and generation == self._matte_worker.generation:
            self.matte_label.setText(f"matte: {message}")

    # ------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        return self._thread is not None

    def run(self) -> bool:
        """Start a run of (a copy of) the workflow. False if it could not start."""
        if self.running:
            return False
        if "seed" in self.primary and not self.seed_lock.isChecked():
            self.randomise_seed()
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
        self.loss_plot.reset()
        self.status_label.setText("starting…")
        self._last_node = ""
        self._outcome = "failed"  # until the thread reports otherwise
        self._saw_preview = False
        self._started = time.monotonic()
        self._run_values = (self.field_values(), self.frames_edit.text().strip(), time.time())
        self.log("Run " + self.backend.describe()
                 + (f", frames {self.frames_edit.text().strip()}" if frames else ""))
        self._thread = self.backend.make_thread(copy.deepcopy(self.workflow), self.registry,
                                                frames, parent=self)
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
        self.backend_combo.setEnabled(not running)

    def _on_progress(self, step: int, total: int, info: dict) -> None:
        self.progress_bar.setValue(int(1000 * step / total) if total else 0)
        node = str(info.get("node", ""))
        numbers = "  ".join(f"{k}={v:.4g}" for k, v in info.items()
                            if isinstance(v, float) and not isinstance(v, bool))
        self.status_label.setText(" · ".join(p for p in (node, numbers) if p))
        if isinstance(info.get("loss"), float):
            self.loss_plot.add(step, info["loss"], node)
        if node and node != self._last_node:
            self._last_node = node
            self.log(f"→ {node}")

    def _on_preview(self, image) -> None:
        """The engine's preview (a QImage) becomes the viewer's Preview view."""
        import numpy as np
        img = image.convertToFormat(image.Format.Format_RGB888)
        w, h = img.width(), img.height()
        arr = np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())[:, :3 * w]
        rgb = arr.reshape(h, w, 3).astype(np.float32) / 255.0
        self.viewer.set_picture("preview", srgb_image_picture(rgb, "preview"))
        if not self._saw_preview and self.viewer.view in ("plate", "matte", "", "preview"):
            self.viewer.show_view("preview")
        self._saw_preview = True

    def _on_success(self, result) -> None:
        self.progress_bar.setValue(1000)
        self.written = list(result.written)
        self.written_list.addItems(self.written)
        took = time.monotonic() - self._started
        skipped = f", {len(result.skipped_frames)} frames already done" \
            if getattr(result, "skipped_frames", None) else ""
        self.status_label.setText(f"done in {took:.1f} s")
        self.log(f"Done in {took:.1f} s: {len(self.written)} file(s) written{skipped}")
        self.clear_error()
        self._outcome = "done"
        self.results = exr_by_frame(self.written)
        self.show_results(choose_view=True)
        self._add_history(took)

    def _add_history(self, took: float) -> None:
        values, frames, started = self._run_values
        pic = self.viewer.canvas.pictures.get("composite") or self.viewer.canvas.pictures.get("layer")
        from .viewer import picture_to_qimage
        get = lambda role: values.get(self.primary[role].key) if role in self.primary else None  # noqa: E731
        entry = HistoryEntry(values=values, prompt=get("prompt"), seed=get("seed"), steps=get("steps"),
                             frames=frames, written=list(self.written), started=started,
                             duration=took, backend=self.backend.name,
                             thumbnail=picture_to_qimage(pic) if pic is not None else None)
        self.last_entry = entry
        self.history.add(entry)

    def restore(self, entry: HistoryEntry) -> None:
        """Put a finished run's values back in the fields and show its results."""
        for key, value in entry.values.items():
            widget = self.field_widgets.get(key)
            if widget is not None:
                widget.setText(str(value))
        self.frames_edit.setText(entry.frames)
        self.results = exr_by_frame(entry.written)
        self.show_results(choose_view=True)
        self.log(f"Restored the run of {time.strftime('%H:%M:%S', time.localtime(entry.started))}"
                 + (f" (seed {entry.seed})" if entry.seed is not None else ""))

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

    # ------------------------------------------------------------ dialogs, embedding

    def _ask_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open workflow", "", "Workflow (*.json)")
        if path:
            self.open_workflow(path)

    def _ask_save(self) -> None:
        start = str(self.path) if self.path else "workflow.json"
        path, _ = QFileDialog.getSaveFileName(self, "Save workflow", start, "Workflow (*.json)")
        if path:
            self.save_workflow(path)

    def as_dock(self, parent: QWidget | None = None, title: str = "LiveLayers") -> QDockWidget:
        """This panel in a QDockWidget, for a host's QMainWindow (Nuke, Houdini, …)."""
        dock = QDockWidget(title, parent)
        dock.setObjectName("LiveLayersDock")
        dock.setWidget(self)
        return dock

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Stop a running workflow and the matte worker, and wait for both."""
        if self._thread is not None:
            self._thread.request_stop()
            self._thread.wait(timeout_ms)
        if self._matte_worker is not None:  # a daemon thread: it ends after its current stage
            self._matte_worker.shutdown()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        """Stop running work cleanly before the widget goes away."""
        self.shutdown()
        super().closeEvent(event)


def _is_linear(space: str) -> bool:
    from ..engine.io import is_linear
    try:
        return is_linear(space)
    except Exception:
        return False
