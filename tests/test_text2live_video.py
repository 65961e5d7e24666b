"""Text2LIVE video: space–time crops, the frame layer the objective sees vs
the renderer, determinism, checkpoint/resume, previews, input errors, files,
the node, and the shared objective (image trainer unchanged).

A small decomposition of a toy clip (masks given, 200 steps: opacity IoU 0.986) and a randomly
initialised toy-sized CLIP keep this fast; edit quality with the trained toy
CLIP is in test_text2live_video_quality.py.
"""
from __future__ import annotations

import pytest
import torch

from livelayers.engine.atlas import AtlasSettings, decompose
from livelayers.engine.atlas.crops import Box, sample_atlas_crop
from livelayers.engine.atlas.render import Edit, render_edit
from livelayers.engine.errors import Cancelled, InputError
from livelayers.engine.progress import Progress
from livelayers.engine.text2live import video as V
from livelayers.engine.text2live.generator import GeneratorConfig
from livelayers.engine.text2live.objective import OBJECTIVE_FIELDS
from livelayers.engine.text2live.settings import Text2LIVESettings, VideoSettings
from livelayers.toyworld.clips import make_toy_clip

TINY_GEN = GeneratorConfig(scales=3, channels_down=8, channels_up=8)
N, H, W = 6, 48, 64

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def clip():
    return make_toy_clip(n_frames=N, height=H, width=W, seed=1, shape="circle", colour="red",
                         texture="checkered", velocity=(2.0, 0.5), size=0.2)


@pytest.fixture(scope="module")
def atlas(clip):
    return decompose(clip.frames, clip.masks, AtlasSettings(steps=200), seed=0, device="cpu",
                     frame_numbers=list(range(1001, 1001 + N)))


def tiny(**kw) -> VideoSettings:
    base = dict(steps=4, views=2, generator=TINY_GEN, atlas_resolution=48, box_margin=4, box_threshold=0.5,
                box_min_size=24, whole_every=3, checkpoint_every=2, bootstrap_steps=4)
    base.update(kw)
    return VideoSettings(**base)


# --------------------------------------------------------------------------- settings

def test_video_defaults_are_the_papers():
    s = VideoSettings()
    assert (s.steps, s.lr_decay, s.lambda_structure, s.lambda_sparsity) == (3000, 0.999, 3.0, 0.1)
    assert (s.lambda_l0, s.lambda_l1, s.views, s.whole_every) == (0.005, 0.01, 6, 75)
    assert (s.frame_offset, s.box_threshold, s.box_margin, s.box_min_size) == (2, 0.95, 30, 129)
    assert s.bg_crop == (0.95, 1.0) and s.layer == "fg" and s.frame_example   # the official 4th example
    for name in OBJECTIVE_FIELDS:   # the shared objective reads these from either settings class
        assert hasattr(s, name) and hasattr(Text2LIVESettings(), name)
    with pytest.raises(ValueError, match="layer"):
        VideoSettings(layer="mid").validate()


# --------------------------------------------------------------------------- crops

def test_frame_triplet_is_clamped_to_the_clip():
    assert V.frame_triplet(3, 8, 2) == (1, 3, 5)
    assert V.frame_triplet(0, 8, 2) == (0, 2)
    assert V.frame_triplet(7, 8, 2) == (5, 7)
    assert V.frame_triplet(1, 3, 2) == (0, 1, 2)


def test_foreground_crops_hold_the_object_and_fit_the_generator(atlas, clip):
    s = tiny()
    data = V.ClipData(atlas, "fg", 48, None, s.fg_atlas_margin)
    gen = torch.Generator().manual_seed(0)
    seen = 0
    for step in range(1, 12):
        if step % s.whole_every == 0:
            continue
        crop = V.choose_crop(data, s, step, gen, multiple=8)
        assert len(crop.frames) in (2, 3) and not crop.whole
        for f, box in zip(crop.frames, crop.boxes):
            inside = clip.masks[f, 0] > 0.99
            rows, cols = torch.nonzero(inside, as_tuple=True)
            assert box.y0 <= int(rows.min()) and box.y1 > int(rows.max())   # the object is in its box
            assert box.x0 <= int(cols.min()) and box.x1 > int(cols.max())
            assert box.width >= 24 and box.height >= 24 and box.width < W   # a crop, not the frame
        a = crop.atlas_box
        assert a.width % 8 == 0 and a.height % 8 == 0
        assert 0 <= a.x0 and a.x1 <= data.canvas.width and 0 <= a.y0 and a.y1 <= data.canvas.height
        seen += 1
    assert seen >= 6
    whole = V.choose_crop(data, s, 3, gen, multiple=8)
    assert whole.whole and all(b == Box(0, 0, W, H) for b in whole.boxes)
    assert whole.atlas_box == Box(0, 0, data.canvas.width, data.canvas.height)


def test_background_crops_are_one_box_in_every_frame(atlas):
    s = tiny(layer="bg")
    data = V.ClipData(atlas, "bg", 48, None, s.fg_atlas_margin)
    assert data.inner == Box(0, 0, data.canvas.width, data.canvas.height)   # no margin for bg
    gen = torch.Generator().manual_seed(3)
    for step in (1, 2, 4, 5):
        crop = V.choose_crop(data, s, step, gen, multiple=8)
        assert len(set(crop.boxes)) == 1
        b = crop.boxes[0]
        assert 0.95 * W - 1 <= b.width <= W and 0.95 * H - 1 <= b.height <= H


def test_the_frame_layer_is_exactly_what_the_renderer_draws(atlas):
    """The training-time path (atlas crop → sample → opacity) equals
    LL_AtlasRender's layer for the same atlas edit, for both layers."""
    g = torch.Generator().manual_seed(0)
    for layer in ("fg", "bg"):
        data = V.ClipData(atlas, layer, 48, None, 0.25)
        rgb = torch.rand(1, 3, data.canvas.height, data.canvas.width, generator=g)
        alpha = torch.rand(1, 1, data.canvas.height, data.canvas.width, generator=g)
        edit = Edit(data.inner.crop(rgb), data.inner.crop(alpha))
        want_colour, want_alpha, _ = render_edit(atlas, [2], **{layer: edit}, plate=torch.zeros(1, 3, H, W))
        uv, opacity = data.maps(2)
        full = Box(0, 0, data.canvas.width, data.canvas.height)
        prem, a = V.frame_layer(*sample_atlas_crop(rgb, alpha, data.canvas, full, uv[None]),
                                opacity[None], layer)
        torch.testing.assert_close(a, want_alpha, rtol=0, atol=1e-5)
        torch.testing.assert_close(prem, want_colour * want_alpha, rtol=0, atol=1e-5)


def test_the_frame_example_is_the_generator_on_one_raw_frame_crop(atlas, clip):
    """With frame_example on, the objective sees one frame more than the crop
    holds: the generator's edit of one of the crop's frames, made directly on
    the layer's own reconstruction there; a foreground edit's alpha is at most
    the NLA opacity, and its composite is the edit over that input."""
    from livelayers.engine.text2live.objective import encode_texts
    from livelayers.engine.text2live.trainer import build_generator
    seen = {}

    def capture(clip_, frames, sparsity_alpha, texts, s, step, gen):
        seen[s.frame_example] = frames
        return sparsity_alpha.mean(), {}

    for on in (True, False):
        s = tiny(frame_example=on)
        data = V.ClipData(atlas, "fg", 48, None, s.fg_atlas_margin)
        generator = build_generator(s, 0, torch.device("cpu"))
        crop = V.choose_crop(data, s, 1, torch.Generator().manual_seed(0), generator.multiple)
        V.video_loss_step(None, generator, data, crop, encode_texts, s, 1, torch.Generator().manual_seed(0),
                          None, torch.device("cpu"), objective_fn=capture)
    extra = seen[True][-1]
    assert len(seen[True]) == len(seen[False]) + 1 == len(crop.frames) + 1
    match = [(f, b) for f, b in zip(crop.frames, crop.boxes)
             if torch.equal(b.crop(data.layer_source(f))[None], extra.source)]
    assert match                                     # its input is one of the crop's frames
    f, box = match[0]
    opacity = box.crop(data.maps(f)[1])[None]
    assert extra.alpha.shape == opacity.shape and (extra.alpha <= opacity + 1e-6).all()   # a·α
    assert (extra.source <= opacity + 1e-6).all()     # the object on black: α·c_fg, c_fg in [0, 1]
    assert (opacity < 0.01).any() and (opacity > 0.9).any()     # the crop holds object and background
    colour_times_alpha = extra.composite - (1 - extra.alpha) * extra.source
    assert (colour_times_alpha >= -1e-6).all() and (colour_times_alpha <= extra.alpha + 1e-6).all()
    assert extra.alpha.requires_grad                  # the generator learns from it


# --------------------------------------------------------------------------- training runs

def _flat(gen) -> torch.Tensor:
    return torch.cat([t.flatten().float() for t in gen.state_dict().values()])


def test_same_seed_same_result_and_resume_is_bit_identical(random_clip, atlas, clip, tmp_path):
    kw = dict(roi_text="red circle", bootstrap_masks=clip.masks, settings=tiny(steps=5))
    full = V.train_text2live_video(random_clip, atlas, clip.frames, "blue circle", seed=3,
                                   run_dir=tmp_path / "a", **kw)
    again = V.train_text2live_video(random_clip, atlas, clip.frames, "blue circle", seed=3, **kw)
    other = V.train_text2live_video(random_clip, atlas, clip.frames, "blue circle", seed=4, **kw)
    assert full.losses["total"] == again.losses["total"] and len(full.losses["total"]) == 5
    assert torch.equal(full.edit.alpha, again.edit.alpha) and torch.equal(full.edit.rgb, again.edit.rgb)
    assert not torch.equal(full.edit.alpha, other.edit.alpha)
    assert (tmp_path / "a" / V.GENERATOR_FILE).is_file() and (tmp_path / "a" / V.EDIT_FILE).is_file()

    seen = []
    stopper = Progress(callback=lambda step, total, info: seen.append(step),
                       should_stop=lambda: len(seen) >= 3)
    with pytest.raises(Cancelled):
        V.train_text2live_video(random_clip, atlas, clip.frames, "blue circle", seed=3,
                                run_dir=tmp_path / "b", progress=stopper, **kw)
    assert (tmp_path / "b" / "checkpoint.pt").is_file() and not (tmp_path / "b" / V.EDIT_FILE).exists()
    resumed = V.train_text2live_video(random_clip, atlas, clip.frames, "blue circle", seed=3,
                                      run_dir=tmp_path / "b", **kw)
    assert resumed.losses["total"] == full.losses["total"]
    assert torch.equal(_flat(resumed.generator), _flat(full.generator))
    assert torch.equal(resumed.edit.rgb, full.edit.rgb)
    with pytest.raises(InputError, match="run_dir"):   # another run in the same folder is refused
        V.train_text2live_video(random_clip, atlas, clip.frames, "green circle", seed=3,
                                run_dir=tmp_path / "b", **kw)


def test_progress_previews_are_rendered_frames_and_bg_layer_trains(random_clip, atlas, clip):
    got = []
    p = Progress(callback=lambda step, total, info: got.append((step, total, info.get("preview"))),
                 preview_every=2)
    r = V.train_text2live_video(random_clip, atlas, clip.frames, "blue sky", roi_text="grass",
                                settings=tiny(layer="bg", steps=4), progress=p)
    assert [g[0] for g in got] == [1, 2, 3, 4] and all(g[1] == 4 for g in got)
    assert [g[2] is not None for g in got] == [False, True, False, True]
    assert got[1][2].shape == (1, 3, H, W)          # a whole rendered frame
    assert r.layer == "bg" and r.edit.rgb.shape[-1] == 48
    assert r.relevancy.shape == (N, 1, H, W)        # relevancy of the ROI text, once per frame
    assert set(r.losses) >= {"clip", "direction", "screen", "structure", "sparsity", "bootstrap"}
    assert r.losses["bootstrap"][0] > 0 and r.losses["structure"][1] > 0
    colour, alpha, comp = V.render_video(atlas, r.edit, "bg", [0, 5], plate=clip.frames[[0, 5]])
    assert colour.shape == (2, 3, H, W) and alpha.shape == (2, 1, H, W)


def test_bad_inputs_are_clear_errors(random_clip, atlas, clip):
    s = tiny()
    with pytest.raises(InputError, match=r"frames.*64x48 frames"):
        V.train_text2live_video(random_clip, atlas, clip.frames[..., :40], "blue", settings=s)
    with pytest.raises(InputError, match=r"frames.*holds 5 frames"):
        V.train_text2live_video(random_clip, atlas, clip.frames[:5], "blue", settings=s)
    with pytest.raises(InputError, match="prompt"):
        V.train_text2live_video(random_clip, atlas, clip.frames, "  ", settings=s)
    with pytest.raises(InputError, match="bootstrap_masks"):
        V.train_text2live_video(random_clip, atlas, clip.frames, "blue", settings=s,
                                bootstrap_masks=clip.masks[:2])
    with pytest.raises(InputError, match="atlas"):
        V.train_text2live_video(random_clip, "an atlas", clip.frames, "blue", settings=s)
    with pytest.raises(InputError, match="settings.*views"):
        V.train_text2live_video(random_clip, atlas, clip.frames, "blue", settings=tiny(views=0))
    short = make_toy_clip(n_frames=2, height=H, width=W, seed=0)
    two = decompose(short.frames, short.masks, AtlasSettings(steps=2), seed=0, device="cpu")
    with pytest.raises(InputError, match=r"atlas.*2 frames.*>= 3"):
        V.train_text2live_video(random_clip, two, short.frames, "blue", settings=s)


# --------------------------------------------------------------------------- files and node

def test_atlas_edit_file_round_trip_and_chunks_equal_one_render(atlas, clip, tmp_path):
    g = torch.Generator().manual_seed(0)
    ha, wa = V.ClipData(atlas, "fg", 48, None).inner.height, V.ClipData(atlas, "fg", 48, None).inner.width
    edit = Edit(torch.rand(1, 3, ha, wa, generator=g), torch.rand(1, 1, ha, wa, generator=g))
    path = V.save_atlas_edit(edit, tmp_path / "atlas_edit.png")
    back = V.load_atlas_edit(path)
    assert back.rgb.shape == edit.rgb.shape
    assert float((back.rgb - edit.rgb).abs().max()) <= 0.5 / 65535 + 1e-6   # 16 bits, straight colour
    assert float((back.alpha - edit.alpha).abs().max()) <= 0.5 / 65535 + 1e-6
    whole = V.render_video(atlas, back, "fg", list(range(N)), plate=clip.frames)
    parts = [V.render_video(atlas, V.load_atlas_edit(path), "fg", idx, plate=clip.frames[idx])
             for idx in ([0, 1, 2], [3, 4], [5])]
    for k in range(3):
        assert torch.equal(torch.cat([p[k] for p in parts]), whole[k])


def test_node_contract_and_run(random_clip, atlas, clip, tmp_path):
    from livelayers.nodes import NODE_CLASS_MAPPINGS
    from livelayers.nodes.atlas_nodes import LL_AtlasRender
    from livelayers.nodes.video_nodes import LL_Text2LIVEVideo
    assert NODE_CLASS_MAPPINGS["LL_Text2LIVEVideo"] is LL_Text2LIVEVideo
    cls = LL_Text2LIVEVideo
    assert cls.CATEGORY == "LiveLayers/video" and cls.DESCRIPTION and cls.OUTPUT_NODE
    assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) == len(cls.OUTPUT_TOOLTIPS)
    spec = cls.INPUT_TYPES()
    for group in ("required", "optional"):
        for name, (_, opts) in spec[group].items():
            assert opts.get("tooltip"), f"{name} has no tooltip"
    assert {"clip", "atlas", "frames", "prompt", "roi_text", "layer", "steps", "seed",
            "atlas_resolution", "views"} <= set(spec["required"])
    assert {"screen_prompt", "run_dir", "device"} <= set(spec["optional"])
    plate = clip.frames.permute(0, 2, 3, 1)
    out = cls().run(random_clip, atlas, plate, "blue circle", "red circle", "fg", 2, 0, 48, 2,
                    run_dir=str(tmp_path / "run"), generator_scales=3, generator_channels=8,
                    box_margin=4, box_min_size=24)
    edit, alpha, gen, preview = out["result"]
    assert edit.shape[0] == 1 and edit.shape[-1] == 3 and alpha.shape == edit.shape[:3]
    assert max(edit.shape[1:3]) == 48 and preview.shape == (1, H, W, 3)
    assert sorted(p.rsplit("/", 1)[1] for p in out["ui"]["text"]) == ["atlas_edit.png",
                                                                     "generator.safetensors"]
    layer, layer_alpha, comp = LL_AtlasRender().run(atlas, "1001-1002", fg_edit=edit, fg_edit_alpha=alpha,
                                                     plate=plate)
    assert layer.shape == (2, H, W, 3) and layer_alpha.shape == (2, H, W)
    with pytest.raises(InputError, match="layer"):
        cls().run(random_clip, atlas, plate, "blue", "", "top", 1, 0, 48, 2)
    with pytest.raises(InputError, match="atlas_resolution"):
        cls().run(random_clip, atlas, plate, "blue", "", "fg", 1, 0, 8, 2)


# --------------------------------------------------------------------------- the bench

@pytest.mark.slow
def test_bench_quick_times_both_designs():
    """bench/bench_text2live_video.py --quick (what docs/video.md's bench runs at
    small sizes): both designs train on the same crops and the table is printed."""
    import re
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "bench/bench_text2live_video.py", "--quick"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    rows = {m.group(1): [float(x) for x in m.group(2).split()]
            for m in re.finditer(r"^(ours|reference)\s+([\d.\s]+)$", res.stdout, re.M)}
    assert set(rows) == {"ours", "reference"}, res.stdout
    assert all(len(r) == 5 and r[0] > 0 and r[3] > 0 for r in rows.values()), rows  # step s, peak MiB
    assert re.search(r"speed-up \(reference step / ours\): \d+\.\d+x", res.stdout)
    assert re.search(r"memory ratio \(reference / ours\): +\d+\.\d+x", res.stdout)
