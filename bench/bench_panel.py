"""Cost of running through the prompt panel vs calling the executor directly,
and of the farm exports.

    QT_QPA_PLATFORM=offscreen python bench/bench_panel.py [--steps 2000] [--repeat 3]

A fake node reports ``--steps`` progress updates (a 64x64 preview every 10th,
as the panel asks). Rows: the executor with a silent Progress; the executor
with the panel's callback (QImage conversion + queued signals, no GUI); the
whole panel (thread, signals delivered, widgets updated). Then the
viewer's costs: the live matte (relevancy of the region text with the toy
CLIP, model already loaded) at two frame sizes, reading a written EXR back
into the viewer's pictures, and drawing a picture (float -> QImage). Then the
time to export a 100-frame job as OpenJD (with openjd.model validation) and
as OpenCue XML. Prints a table and ratios; numbers depend on the machine and
are never asserted in tests.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from PySide6.QtWidgets import QApplication

from livelayers.engine import farm
from livelayers.engine import progress as engine_progress
from livelayers.engine.executor import run_workflow
from livelayers.engine.progress import Progress

from _timing import best_of, check_size, row  # bench/_timing.py


class LL_BenchLoop:
    """Fake trainer: ``steps`` updates with a loss, a preview when asked."""
    RETURN_TYPES, RETURN_NAMES, FUNCTION, OUTPUT_NODE = (), (), "run", True
    CATEGORY, DESCRIPTION = "LiveLayers/bench", "bench node"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"prompt": ("STRING", {"tooltip": "unused"}),
                             "steps": ("INT", {"min": 1, "tooltip": "updates"})}}

    def run(self, prompt, steps):
        progress = engine_progress.current("bench")
        image = torch.rand(1, 3, 64, 64)
        for i in range(1, steps + 1):
            info = {"loss": 1.0 / i}
            if progress.wants_preview(i):
                info["preview"] = image
            progress.update(i, steps, **info)
        return {"ui": {"written": []}, "result": ()}


REGISTRY = {"LL_BenchLoop": LL_BenchLoop}


def measure_panel(steps: int, repeat: int) -> list[tuple[str, float]]:
    """[(what, best seconds)] of ``steps`` progress updates: the executor alone,
    with the panel's callback, through the whole panel."""
    app = QApplication.instance() or QApplication([])
    from livelayers.ui.panel import LiveLayersPanel
    from livelayers.ui.worker import RunThread

    wf = {"1": {"class_type": "LL_BenchLoop", "inputs": {"prompt": "a hat", "steps": steps}}}

    def direct():
        run_workflow(wf, REGISTRY, progress=Progress(preview_every=10))

    thread = RunThread(wf, REGISTRY)  # its callback, called in this thread, no receivers

    def callback_only():
        run_workflow(wf, REGISTRY, progress=Progress(callback=thread._callback, preview_every=10))

    panel = LiveLayersPanel(json.loads(json.dumps(wf)), registry=REGISTRY)

    def through_panel():
        outcome = []
        panel.run_finished.connect(outcome.append)
        panel.run()
        while not outcome:
            app.processEvents()
        panel.run_finished.disconnect()

    return [("executor, silent progress", best_of(direct, repeat)),
            ("executor + panel callback (QImage, signals)", best_of(callback_only, repeat)),
            ("whole panel (thread, GUI updates)", best_of(through_panel, repeat))]


def measure_export(repeat: int) -> tuple[float, float]:
    """(OpenJD s, OpenCue s) to export a 100-frame job, chunk 10, train + render."""
    wf = {"1": {"class_type": "LL_BenchLoop", "inputs": {"prompt": "a hat", "steps": 1}}}
    with tempfile.TemporaryDirectory() as tmp:
        graph = Path(tmp) / "graph.json"
        graph.write_text(json.dumps(wf))
        job = farm.make_job(graph, "1001-1100", 10, train_graph=graph)
        t_jd = best_of(lambda: farm.export_openjd(job, Path(tmp) / "jd"), repeat)
        t_cue = best_of(lambda: farm.export_opencue(job, Path(tmp) / "cue"), repeat)
    return t_jd, t_cue


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = measure_panel(args.steps, args.repeat)
    base = rows[0][1]
    print(f"{args.steps} progress updates, preview every 10th (64x64)")
    print(f"{'':46s} {'s':>8s} {'us/update':>10s} {'ratio':>7s}")
    for name, t in rows:
        print(f"{name:46s} {t:8.3f} {1e6 * t / args.steps:10.1f} {t / base:7.2f}")

    viewer_rows(args.repeat)

    t_jd, t_cue = measure_export(args.repeat)
    print("\nexport 100 frames, chunk 10, train + render")
    print(f"{'openjd (template + openjd.model validation)':46s} {t_jd:8.3f} s")
    print(f"{'opencue (pyoutline spec XML)':46s} {t_cue:8.3f} s   ratio {t_cue / t_jd:.2f}")


def measure_viewer(repeat: int, matte_sides=(96, 512), exr_sides=(512, 1920)) -> list[tuple]:
    """[(what, side px, best seconds)]: live matte latency, EXR read-back, drawing."""
    import numpy as np

    from livelayers.engine.models.clip import load_clip
    from livelayers.engine.relevancy import relevancy_map
    from livelayers.nodes.io_nodes import LL_SaveEXR
    from livelayers.ui.layers import plate_picture, read_result
    from livelayers.ui.viewer import picture_to_qimage

    QApplication.instance() or QApplication([])
    clip = load_clip(f"local-dir:{Path(__file__).resolve().parents[1] / 'tests/assets/toy_clip'}",
                     device="cpu")
    out = []
    for side in matte_sides:
        image = torch.rand(1, 3, side, side)
        t = best_of(lambda: relevancy_map(clip, image, "red circle", blocks="all"), repeat)
        out.append(("live matte (toy CLIP, blocks all)", side, t))
    with tempfile.TemporaryDirectory() as tmp:
        for side in exr_sides:
            h = side * 9 // 16 if side > 1000 else side
            img = torch.rand(1, h, side, 3)
            alpha = torch.rand(1, h, side)
            saved = LL_SaveEXR().save(f"{tmp}/r{side}.####.exr", edit_image=img, edit_alpha=alpha,
                                      source=img, composite=img, relevancy=alpha, frames="1")
            path = saved["result"][0]
            t_read = best_of(lambda: read_result(path), repeat)
            pic = plate_picture(np.random.rand(h, side, 3).astype(np.float32))
            t_draw = best_of(lambda: picture_to_qimage(pic), repeat)
            out.append(("EXR -> layer/alpha/comp/relevancy pictures", side, t_read))
            out.append(("picture -> QImage (draw)", side, t_draw))
    return out


def viewer_rows(repeat: int) -> None:
    """Live matte latency, EXR read-back and drawing, by image size."""
    measured = measure_viewer(repeat)
    print(f"\n{'viewer':46s} {'side px':>8s} {'ms':>8s}")
    for name, side, t in measured:
        print(f"{name:46s} {side:8d} {1e3 * t:8.1f}")


def rows(size: str) -> list[dict]:
    """The table rows of ``python -m livelayers bench`` (quick: 200 updates, best of
    1, the small viewer sizes; reference: 2000 updates, best of 3, as
    docs/panel.md). No reference design: the panel's notes give the executor
    alone (silent progress) as the baseline of its overhead."""
    quick = check_size(size) == "quick"
    steps, repeat = (200, 1) if quick else (2000, 3)
    panel = measure_panel(steps, repeat)
    base = panel[0][1]
    out = [row("panel", f"{steps} progress updates, {name}", "us/update", 1e6 * t / steps,
               note=f"executor alone {1e6 * base / steps:.1f} us/update ({t / base:.0f}x)")
           for name, t in panel[1:]]
    sides = dict(matte_sides=(96,), exr_sides=(512,)) if quick else {}
    for name, side, t in measure_viewer(repeat, **sides):
        h = side * 9 // 16 if side > 1000 else side   # as measure_viewer draws them
        out.append(row("panel", f"{name}, {side}x{h}", "ms", 1e3 * t))
    t_jd, t_cue = measure_export(repeat)
    out.append(row("panel", "export 100 frames, chunk 10, train + render: OpenJD (validated)", "ms",
                   1e3 * t_jd))
    out.append(row("panel", "export 100 frames, chunk 10, train + render: OpenCue XML", "ms",
                   1e3 * t_cue))
    return out


if __name__ == "__main__":
    main()
