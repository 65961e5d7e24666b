"""Text2LIVE video on a procedurally made clip with known masks and motion,
with the trained toy CLIP, against the paper's two baselines.

Clip (the example plate, examples/make_video_assets.py): 8 frames of 96x64,
a checkered red circle moving (2.5, 0.5) px per frame over grass panning
-1 px per frame. It is decomposed from the text "red circle" alone (no masks,
250 steps), then edited with "blue circle" / ROI "red circle" by

* ours: ``train_text2live_video`` (what LL_Text2LIVEVideo runs), with the
  example graph's settings (examples/text2live_video.json, node 4);
* the atlas baseline: the image method trained on the fg atlas image;
* the frames baseline: the image method trained on all frames, applied per frame.

Measures (``engine.text2live.baselines.edit_measures``): per frame the IoU of
the rendered edit alpha (> 0.5) with the true mask, the mean change more than
2 px outside the object, and flicker = the mean over points fixed on the object
(following its true track) of the standard deviation across frames of the
edited frames' colour there. Flicker is compared on the same clip with the
light changing from frame to frame (below: on the steady clip every method is
near the measure's floor). Measured numbers (seeds 0/1/2 of the edit, one
decomposition) are next to each threshold and in docs/video.md; the bench
bench/text2live_video_quality.py prints the same table.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from livelayers.engine.atlas import AtlasSettings, decompose
from livelayers.engine.atlas.measure import opacity_iou
from livelayers.engine.text2live.baselines import compare
from livelayers.engine.text2live.generator import GeneratorConfig
from livelayers.engine.text2live.settings import Text2LIVESettings, VideoSettings
from livelayers.toyworld.clips import make_toy_clip

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

# examples/make_video_assets.CLIP (checked against the example PNGs below)
CLIP = dict(n_frames=8, height=64, width=96, seed=0, shape="circle", colour="red",
            texture="checkered", velocity=(2.5, 0.5), size=0.16)
OBJECT_TEXT, PROMPT, ROI = "red circle", "blue circle", "red circle"
DECOMPOSE_STEPS = 250
GEN = GeneratorConfig(scales=4, channels_down=32, channels_up=32)
# ours: the example graph's LL_Text2LIVEVideo inputs (test_example_graph_uses_these_settings)
VIDEO = VideoSettings(steps=100, views=4, generator=GEN, atlas_resolution=128, relevancy_blocks="all",
                      bootstrap_steps=40, box_margin=8, box_min_size=32, whole_every=10)
# the baselines: the image method with the same budget
IMAGE = Text2LIVESettings(steps=100, resolution=0, views=4, generator=GEN, relevancy_blocks="all",
                          bootstrap_steps=40, checkpoint_every=10_000)

# Thresholds. Measured, edit seeds 0/1/2 (one decomposition, seed 0: opacity IoU 0.949;
# 2-core Intel Xeon, the frame example on):
#                     min IoU            max outside             flicker
#   ours              .942/.942/.942     .0001/.0001/.0001       .0018/.0014/.0019
#   atlas baseline    .534/.586/.286     .0000/.0000/.0000       .0032/.0020/.0061
#   frames baseline   .839/.736/.808     .0639/.0446/.0475       .0012/.0024/.0021
# (the plate itself, unedited, scores flicker .0032: the measure's floor from
# sampling pixel grids at moving sub-pixel points; a smooth edit can go below it.
# On a 2-core AMD EPYC, before the frame example, ours .945/.942/.956, flicker <= .0031.)
MIN_OPACITY_IOU = 0.9    # measured 0.949 (issue 8: >= 0.9)
MIN_IOU = 0.8            # issue 8's bound; ours measured >= .942
MAX_OUTSIDE = 0.03       # issue 8's bound; ours measured <= .0002
MAX_FLICKER = 0.005      # ours measured <= .0037 (changing light, below)


@pytest.fixture(scope="module")
def toy_video():
    return make_toy_clip(**CLIP)


@pytest.fixture(scope="module")
def atlas(toy_video, toy_clip, one_thread):
    """The clip decomposed from the object's name alone (no masks)."""
    return decompose(toy_video.frames, None, AtlasSettings(steps=DECOMPOSE_STEPS), seed=0, device="cpu",
                     object_text=OBJECT_TEXT, clip=toy_clip)


@pytest.fixture(scope="module")
def results(toy_clip, atlas, toy_video, one_thread):
    v = toy_video
    return compare(toy_clip, atlas, v.frames, v.masks, v.centres, PROMPT, ROI, VIDEO, IMAGE, seed=0)


def test_example_graph_uses_these_settings(toy_video):
    """docs/video.md's numbers are this test's: the example plate is this clip and
    the example graph's LL_Text2LIVEVideo node runs these settings."""
    from livelayers.engine.io import load_image
    plate = load_image(str(ROOT / "examples/assets/toy_video/frame.####.png"))
    assert plate.rgb.shape == toy_video.frames.shape
    assert float((plate.rgb - toy_video.frames).abs().max()) <= 0.5 / 255 + 1e-6   # 8-bit PNGs
    for name in ("text2live_video.json", "text2live_video_train.json"):
        graph = json.loads((ROOT / "examples" / name).read_text())
        decomp, edit = graph["3"]["inputs"], graph["4"]["inputs"]
        assert (decomp["object_text"], decomp["steps"], decomp["seed"]) == (OBJECT_TEXT, DECOMPOSE_STEPS, 0)
        assert (edit["prompt"], edit["roi_text"], edit["layer"], edit["seed"]) == (PROMPT, ROI, "fg", 0)
        v = VIDEO
        assert (edit["steps"], edit["views"], edit["atlas_resolution"], edit["bootstrap_steps"]) == \
            (v.steps, v.views, v.atlas_resolution, v.bootstrap_steps)
        assert (edit["box_margin"], edit["box_min_size"], edit["whole_every"]) == \
            (v.box_margin, v.box_min_size, v.whole_every)
        assert (edit["generator_scales"], edit["generator_channels"]) == (GEN.scales, GEN.channels_down)
        assert edit["relevancy_blocks"] == v.relevancy_blocks


def test_the_clip_decomposes_from_text_alone(atlas, toy_video):
    iou = opacity_iou(atlas, toy_video.masks)
    print(f"opacity IoU from '{OBJECT_TEXT}': {iou:.3f}")
    assert atlas.info["bootstrap"] == "text"
    assert iou >= MIN_OPACITY_IOU


def test_ours_edits_the_object_in_every_frame_and_nothing_else(results, toy_video):
    for name, r in results.items():
        print(f"{name:<16} {r.measures.row()}  ({r.seconds:.0f} s)")
    ours = results["ours"]
    m = ours.measures
    assert len(m.iou) == toy_video.frames.shape[0]
    assert m.min_iou >= MIN_IOU, m.iou
    assert m.max_outside <= MAX_OUTSIDE, m.outside
    assert m.flicker < MAX_FLICKER, m.flicker
    # and it is the edit asked for: the circle is blue now, in every frame
    inside = toy_video.masks[:, 0] > 0.5
    for t in range(toy_video.frames.shape[0]):
        mean = ours.composite[t][:, inside[t]].mean(1)
        assert mean[2] > mean[0] + 0.15, (t, mean)


def test_ours_beats_the_atlas_baseline_on_iou(results):
    ours, atlas_b = (results[k].measures for k in ("ours", "atlas baseline"))
    assert ours.min_iou > atlas_b.min_iou + 0.2, (ours.iou, atlas_b.iou)


# --------------------------------------------------------------------------- flicker
# On the clip above every frame shows the same object under the same light, so the
# frames baseline, applied frame by frame, is nearly consistent too: measured flicker
# ours / frames baseline .0013 / .0039, .0013 / .0019, .0031 / .0037 (seeds 0/1/2) on
# one machine and .0015 / .0012, .0026 / .0024 (seeds 0/1) on another; within the
# noise of the measure (the plate scores .0032), so not a test. Where the light changes
# from frame to frame, as in a real shot, the method's point shows: its one atlas
# edit stays one colour while a per-frame edit follows each frame.
LIGHT = 0.15              # each frame's exposure is scaled by a gain drawn in [1 - LIGHT, 1 + LIGHT]
# Measured (seeds 0/1/2, plate flicker .0229): ours .0022/.0020/.0037, frames baseline
# .0053/.0135/.0189 (2.4x, 6.8x, 5.1x); without the frame example (VideoSettings) ours
# was .0016/.0013/.0020.
FLICKER_RATIO = 1.5


@pytest.fixture(scope="module")
def lit_video():
    """The clip above with a gain per frame (seeded), as when the light changes."""
    v = make_toy_clip(**CLIP)
    gains = 1 + LIGHT * (2 * torch.rand(v.frames.shape[0], generator=torch.Generator().manual_seed(123)) - 1)
    v.frames = (v.frames * gains.view(-1, 1, 1, 1)).clamp(0, 1)
    return v


@pytest.fixture(scope="module")
def lit_atlas(lit_video, toy_clip, one_thread):
    return decompose(lit_video.frames, None, AtlasSettings(steps=DECOMPOSE_STEPS), seed=0, device="cpu",
                     object_text=OBJECT_TEXT, clip=toy_clip)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ours_flickers_less_than_the_frames_baseline_when_the_light_changes(seed, toy_clip, lit_atlas,
                                                                          lit_video):
    v = lit_video
    r = compare(toy_clip, lit_atlas, v.frames, v.masks, v.centres, PROMPT, ROI, VIDEO, IMAGE, seed=seed,
                methods=("ours", "frames baseline"))
    ours, frames_b = r["ours"].measures, r["frames baseline"].measures
    print(f"changing light, seed {seed}: flicker ours {ours.flicker:.4f}, frames baseline {frames_b.flicker:.4f}")
    assert frames_b.flicker > FLICKER_RATIO * ours.flicker, (ours.flicker, frames_b.flicker)
    assert ours.flicker < MAX_FLICKER and ours.min_iou >= MIN_IOU and ours.max_outside <= MAX_OUTSIDE
