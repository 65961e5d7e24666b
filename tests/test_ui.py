"""The PySide6 prompt panel, offscreen, with the real executor and fake nodes."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("PySide6")
from PySide6.QtWidgets import QApplication, QGroupBox  # noqa: E402

from livelayers.engine import progress as engine_progress  # noqa: E402
from livelayers.engine.errors import Cancelled  # noqa: E402
from livelayers.ui.panel import LiveLayersPanel  # noqa: E402
from livelayers.ui.worker import tensor_to_qimage  # noqa: E402
from qt_helpers import wait_for  # noqa: E402  (tests/qt_helpers.py)


class LL_TestText:
    """A text source: its output feeds the painter's linked prompt."""
    CATEGORY = "LiveLayers/test"
    DESCRIPTION = "Test node: outputs its text."
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("text",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "", "tooltip": "the edit to make"})}}

    def run(self, text):
        return (text,)


class LL_TestPainter:
    """Reports progress (loss, previews) for ``steps`` steps, then writes its prompt to a file."""
    CATEGORY = "LiveLayers/test"
    DESCRIPTION = "Test node: fake training loop."
    RETURN_TYPES = ()
    RETURN_NAMES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "prompt": ("STRING", {"tooltip": "linked in the test graph"}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 100000, "tooltip": "loop length"}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1, "tooltip": "file name"}),
            "out_dir": ("STRING", {"tooltip": "where to write"}),
            "delay": ("FLOAT", {"default": 0.0, "tooltip": "seconds per step"}),
        }}

    def run(self, prompt, steps, seed, out_dir, delay):
        progress = engine_progress.current("LL_TestPainter")
        for i in range(1, steps + 1):
            time.sleep(delay)
            info = {"loss": 1.0 / i}
            if progress.wants_preview(i):
                img = torch.zeros(1, 3, 16, 16)
                img[:, 0] = 1.0  # red
                info["preview"] = img
            progress.update(i, steps, **info)
        path = Path(out_dir) / f"layer_{seed}.txt"
        path.write_text(prompt)
        return {"ui": {"written": [str(path)]}, "result": ()}


REGISTRY = {"LL_TestText": LL_TestText, "LL_TestPainter": LL_TestPainter}


@pytest.fixture(scope="module")
def qapp():
    return QApplication.instance() or QApplication([])


def graph(out_dir, steps=20, delay=0.0):
    return {"1": {"class_type": "LL_TestText", "inputs": {"text": "a red hat"}},
            "2": {"class_type": "LL_TestPainter",
                  "inputs": {"prompt": ["1", 0], "steps": steps, "seed": 7,
                             "out_dir": str(out_dir), "delay": delay}}}


def test_panel_shows_prompt_and_key_number_fields(qapp, tmp_path):
    panel = LiveLayersPanel(graph(tmp_path), registry=REGISTRY)
    # the linked prompt and the non-prompt strings/floats are not fields
    assert set(panel.field_widgets) == {"1.text", "2.steps", "2.seed"}
    assert panel.field_widgets["1.text"].text() == "a red hat"
    assert panel.field_widgets["2.steps"].text() == "20"
    assert panel.field_widgets["1.text"].toolTip() == "the edit to make"
    assert "allowed: 1 … 100000" in panel.field_widgets["2.steps"].toolTip()
    # seed and steps sit in the top row (with randomise and lock); the rest under "All fields"
    assert panel.seed_edit is panel.field_widgets["2.seed"] and panel.seed_lock.isChecked()
    titles = [b.title() for b in panel.findChildren(QGroupBox)]
    assert titles == ["1 · LL_TestText"]
    assert panel.error_label.isHidden() and panel.last_error is None


def test_editing_fields_changes_the_workflow_dict(qapp, tmp_path):
    wf = graph(tmp_path)
    panel = LiveLayersPanel(wf, registry=REGISTRY)
    panel.field_widgets["1.text"].setText("a golden crown")
    assert wf["1"]["inputs"]["text"] == "a golden crown"       # edited in place
    panel.field_widgets["2.steps"].setText("12")
    assert wf["2"]["inputs"]["steps"] == 12 and isinstance(wf["2"]["inputs"]["steps"], int)
    panel.field_widgets["2.steps"].setText("12x")               # not a number: not written
    assert wf["2"]["inputs"]["steps"] == 12
    assert "not an integer" in panel.field_widgets["2.steps"].toolTip()
    panel.field_widgets["2.seed"].setText(str(2**40))            # beyond a 32-bit spin box
    assert wf["2"]["inputs"]["seed"] == 2**40

    saved = panel.save_workflow(tmp_path / "edited.json")
    assert json.loads(saved.read_text()) == wf


def test_run_updates_progress_preview_and_written_files(qapp, tmp_path):
    panel = LiveLayersPanel(graph(tmp_path, steps=20), registry=REGISTRY)
    panel.field_widgets["1.text"].setText("a blue scarf")
    values, outcomes = [], []
    panel.progress_bar.valueChanged.connect(values.append)
    panel.run_finished.connect(outcomes.append)
    assert panel.run()
    assert not panel.run_button.isEnabled() and panel.stop_button.isEnabled()
    wait_for(lambda: outcomes)
    assert outcomes == ["done"], panel.error_label.text()
    out = tmp_path / "layer_7.txt"
    assert out.read_text() == "a blue scarf"                     # the edit reached the executor
    assert [panel.written_list.item(i).text() for i in range(panel.written_list.count())] == [str(out)]
    assert panel.progress_bar.value() == 1000
    assert len(values) > 5 and values == sorted(values) and 0 < values[0] < 1000
    preview = panel.viewer.canvas.pictures["preview"]          # the engine's preview, in the viewer
    assert preview.size == (16, 16) and tuple(preview.display[5, 5]) == (1.0, 0.0, 0.0)
    assert len(panel.loss_plot.points) > 5 and panel.loss_plot.points[-1][1] < panel.loss_plot.points[0][1]
    assert len(panel.history.entries) == 1 and panel.history.entries[0].seed == 7
    assert panel.run_button.isEnabled() and not panel.stop_button.isEnabled()
    assert "LL_TestPainter" in panel.log_view.toPlainText()


def test_stop_cancels_cleanly_and_reenables_run(qapp, tmp_path):
    panel = LiveLayersPanel(graph(tmp_path, steps=100000, delay=0.002), registry=REGISTRY)
    outcomes = []
    panel.run_finished.connect(outcomes.append)
    panel.run()
    wait_for(lambda: "loss=" in panel.status_label.text())
    assert panel.status_label.text().startswith("LL_TestPainter · loss=")   # numbers shown live
    panel.stop_button.click()
    wait_for(lambda: outcomes, timeout=10)
    assert outcomes == ["stopped"]
    assert isinstance(panel.last_error, Cancelled)
    assert panel.error_label.text().startswith("Stopped:")
    assert panel.run_button.isEnabled() and not panel.stop_button.isEnabled()
    assert not (tmp_path / "layer_7.txt").exists()               # stopped before writing
    # and it runs again afterwards
    panel.field_widgets["2.steps"].setText("3")
    panel.workflow["2"]["inputs"]["delay"] = 0.0
    panel.run()
    wait_for(lambda: len(outcomes) == 2)
    assert outcomes[-1] == "done" and (tmp_path / "layer_7.txt").exists()


def test_invalid_workflow_shows_the_validation_error(qapp, tmp_path):
    wf = graph(tmp_path)
    wf["2"]["inputs"]["steps"] = 0                               # below the minimum 1
    panel = LiveLayersPanel(wf, registry=REGISTRY)
    assert not panel.error_label.isHidden()
    text = panel.error_label.text()
    assert text.startswith("Workflow error:") and "node 2" in text and "'steps'" in text
    assert "minimum 1" in text
    assert panel.run() is False and panel.run_button.isEnabled()
    panel.field_widgets["2.steps"].setText("2")
    assert panel.run()
    panel.wait()
    wait_for(lambda: not panel.running)
    assert panel.error_label.isHidden()

    panel.set_workflow({"5": {"class_type": "LL_Missing", "inputs": {}}})
    assert "unknown node class 'LL_Missing'" in panel.error_label.text()
    (tmp_path / "broken.json").write_text("{not json")
    assert panel.open_workflow(tmp_path / "broken.json") is False
    assert "not valid JSON" in panel.error_label.text()


def test_bad_frames_text_is_reported(qapp, tmp_path):
    panel = LiveLayersPanel(graph(tmp_path), registry=REGISTRY)
    panel.frames_edit.setText("1-x")
    assert panel.run() is False
    assert "input 'frames'" in panel.error_label.text() and "1-10" in panel.error_label.text()


def test_tensor_to_qimage_pixels():
    img = torch.zeros(2, 4, 6, 8)
    img[0, 0, :, :4] = 1.0                # left half red
    img[0, 1, :, 4:] = 1.0                # right half green
    img[0, 3] = 0.5                       # alpha
    q = tensor_to_qimage(img)
    assert (q.width(), q.height()) == (8, 6)
    assert q.pixelColor(1, 3).red() == 255 and q.pixelColor(1, 3).green() == 0
    assert q.pixelColor(6, 3).green() == 255 and q.pixelColor(6, 3).alpha() == 128
    grey = tensor_to_qimage(torch.full((1, 1, 4, 4), 0.2))
    assert grey.pixelColor(0, 0).red() == grey.pixelColor(0, 0).blue() == 51
    with pytest.raises(ValueError, match="preview must be"):
        tensor_to_qimage(torch.zeros(1, 2, 4, 4))


def test_panel_screenshot(qapp, tmp_path):
    panel = LiveLayersPanel(graph(tmp_path), registry=REGISTRY)
    panel.resize(600, 500)
    pix = panel.grab()
    assert (pix.width(), pix.height()) == (600, 500)
    assert pix.save(str(tmp_path / "panel.png")) and (tmp_path / "panel.png").stat().st_size > 1000


def test_panel_cli_screenshot(qapp, tmp_path):
    """`python -m livelayers panel g.json --screenshot x.png`, through the runner's parser."""
    from PySide6.QtGui import QImage

    from livelayers.__main__ import main
    wf = {"1": {"class_type": "LL_NotInstalled", "inputs": {"prompt": "a red hat", "seed": 3}}}
    (tmp_path / "g.json").write_text(json.dumps(wf))
    png = tmp_path / "shot.png"
    assert main(["panel", str(tmp_path / "g.json"), "--screenshot", str(png),
                 "--size", "640x700"]) == 0
    assert (QImage(str(png)).width(), QImage(str(png)).height()) == (640, 700)
    assert main(["panel", "--size", "big"]) == 2


def test_qt_binding_keeps_reference_counts():
    """PySide6 6.12.0 on Python 3.11 loses a reference per signal and aborts Python
    after ~570 emits; the panel refuses such a binding (ui/qtcheck.py)."""
    from livelayers.ui.qtcheck import qt_binding_problem
    assert qt_binding_problem() is None


def test_many_progress_updates_do_not_crash(qapp, tmp_path):
    """5000 updates = 5000 cross-thread signals (+500 previews): a leaking binding dies here."""
    before = sys.getrefcount(True), sys.getrefcount(None)
    panel = LiveLayersPanel(graph(tmp_path, steps=5000), registry=REGISTRY)
    outcomes = []
    panel.run_finished.connect(outcomes.append)
    panel.run()
    wait_for(lambda: outcomes, timeout=120)
    assert outcomes == ["done"] and panel.progress_bar.value() == 1000
    after = sys.getrefcount(True), sys.getrefcount(None)
    assert after[0] > before[0] - 1000 and after[1] > before[1] - 1000
