"""io nodes called directly (headless): LL_LoadImage, LL_Composite, LL_SaveEXR."""
from __future__ import annotations

import json

import numpy as np
import OpenImageIO as oiio
import pytest
import torch

from livelayers.engine.errors import InputError
from livelayers.engine.io import exr_is_complete, read_exr_header, read_exr_layers
from livelayers.toyworld.scenes import random_scene, render_scene
from livelayers.nodes.io_nodes import LL_Composite, LL_LoadImage, LL_SaveEXR

HALF_TOL = 2e-3


def srgb_to_linear(x):
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def write_png(path, pixels):
    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, "uint8")
    spec.attribute("oiio:UnassociatedAlpha", 1)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec) and out.write_image(np.ascontiguousarray(pixels, np.float32))
    out.close()


@pytest.fixture
def plate_dir(tmp_path):
    """Three toy-world frames, 40x48, as an 8-bit PNG sequence 1001-1003."""
    rng = np.random.default_rng(0)
    for f in (1001, 1002, 1003):
        image, _ = render_scene(random_scene(rng), 40, 48)
        write_png(tmp_path / f"plate.{f}.png", image)
    return tmp_path


def test_nodes_follow_the_conventions():
    for cls in (LL_LoadImage, LL_Composite, LL_SaveEXR):
        assert cls.CATEGORY == "LiveLayers/io" and cls.DESCRIPTION
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, (_, opts) in spec.get(section, {}).items():
                assert opts.get("tooltip"), f"{cls.__name__}.{name} has no tooltip"
    assert LL_SaveEXR.OUTPUT_NODE


def test_load_save_round_trip_with_plate(plate_dir):
    image, alpha, plate = LL_LoadImage().load(str(plate_dir / "plate.####.png"), frames="1001-1003")
    assert image.shape == (3, 40, 48, 3) and alpha.shape == (3, 40, 48)
    assert torch.all(alpha == 1)  # no alpha in the file: all opaque (not core LoadImage's 1 - alpha)
    # An edit: a half-transparent dark square in the top-left quarter of every frame.
    edit = torch.zeros_like(image) + torch.tensor([0.05, 0.02, 0.3])
    edit_alpha = torch.zeros_like(alpha)
    edit_alpha[:, :20, :24] = 0.6
    (comp,) = LL_Composite().composite(edit, edit_alpha, image)
    out = LL_SaveEXR().save(str(plate_dir / "out/edit.####.exr"), edit_image=edit, edit_alpha=edit_alpha,
                            source=image, composite=comp, relevancy=edit_alpha, plate=plate,
                            metadata='{"shot": "sh010"}', edit_prompt="a blue square", seed=42,
                            extra_pnginfo={"workflow": {"nodes": []}})
    paths = out["result"][0].split("\n")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["edit.1001.exr", "edit.1002.exr", "edit.1003.exr"]
    assert out["ui"]["text"] == paths and out["ui"]["images"] == []  # headless: no previews
    header = read_exr_header(paths[1])
    assert header["livelayers/prompt"] == "a blue square" and header["livelayers/seed"] == 42
    assert header["livelayers/shot"] == "sh010" and header["livelayers/frame"] == 1002
    assert header["livelayers/edit_solve"] == "over_source"
    assert json.loads(header["livelayers/workflow"]) == {"nodes": []}
    layers = read_exr_layers(paths[1])
    # The compositor's linear Over of the EXR reproduces the node's sRGB composite.
    over = layers[""][..., :3] + (1 - layers[""][..., 3:]) * layers["source"]
    assert np.abs(over - srgb_to_linear(comp[1].numpy())).max() < HALF_TOL
    assert layers[""][..., 3].max() == pytest.approx(0.6, abs=1e-3)
    assert layers[""][20:, :, 3].max() == 0  # alpha only where the edit is
    # Reading the 'source' layer back gives the plate again (8-bit -> linear half -> sRGB).
    again, _, info = LL_LoadImage().load(str(plate_dir / "out/edit.####.exr"), layer="source")
    assert info.frames == [1001, 1002, 1003]
    assert (again - image).abs().max() < HALF_TOL


def test_load_alpha_polarity_is_alpha(tmp_path):
    px = np.zeros((4, 6, 4), np.float32)
    px[..., 0] = 1.0
    px[:, :3, 3] = 1.0  # left half opaque, right half transparent
    write_png(tmp_path / "a.png", px)
    image, alpha, _ = LL_LoadImage().load(str(tmp_path / "a.png"))
    assert torch.all(alpha[0, :, :3] == 1) and torch.all(alpha[0, :, 3:] == 0)
    assert torch.all(image[0, ..., 0] == 1)  # straight colour, even where transparent


def test_load_errors_name_the_input(tmp_path):
    for f in (1, 2, 5):
        write_png(tmp_path / f"p.{f:04d}.png", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(InputError, match=r"LL_LoadImage: input 'frames'.*frames 3-4"):
        LL_LoadImage().load(str(tmp_path / "p.####.png"), frames="1-5")
    with pytest.raises(InputError, match=r"input 'frames'.*Open Job Description"):
        LL_LoadImage().load(str(tmp_path / "p.####.png"), frames="one to five")
    with pytest.raises(InputError, match=r"input 'path'.*not found"):
        LL_LoadImage().load(str(tmp_path / "nope.png"))
    with pytest.raises(InputError, match=r"input 'path' is empty"):
        LL_LoadImage().load("  ")
    LL_SaveEXR().save(str(tmp_path / "l.exr"), composite=torch.rand(1, 2, 2, 3))
    with pytest.raises(InputError, match=r"input 'layer'.*'beauty' not found.*composite"):
        LL_LoadImage().load(str(tmp_path / "l.exr"), layer="beauty")


def test_save_keep_nonnegative_dark_edit_over_bright_plate(tmp_path):
    plate = torch.full((1, 6, 6, 3), 0.95)
    edit, edit_alpha = torch.full((1, 6, 6, 3), 0.02), torch.full((1, 6, 6), 0.4)
    (comp,) = LL_Composite().composite(edit, edit_alpha, plate)
    want = srgb_to_linear(comp[0].numpy())
    for keep, solve in ((False, "over_source"), (True, "over_source_nonnegative")):
        path = LL_SaveEXR().save(str(tmp_path / f"k{int(keep)}.exr"), edit_image=edit, edit_alpha=edit_alpha,
                                 source=plate, keep_nonnegative=keep)["result"][0]
        assert read_exr_header(path)["livelayers/edit_solve"] == solve
        rgba = read_exr_layers(path)[""]
        over = rgba[..., :3] + (1 - rgba[..., 3:]) * read_exr_layers(path)["source"]
        assert np.abs(over - want).max() < HALF_TOL  # exact either way
        if keep:
            assert rgba[..., :3].min() >= 0 and rgba[..., 3].min() > 0.45  # alpha raised
        else:
            assert rgba[..., :3].min() < -0.1 and np.allclose(rgba[..., 3], 0.4, atol=1e-3)


def test_composite_pixel_math_and_broadcasting():
    colour = torch.ones(1, 4, 5, 3)
    alpha = torch.full((1, 4, 5), 0.25)
    alpha[0, 0, 0] = 1.0
    bg = torch.stack([torch.full((4, 5, 3), v) for v in (0.0, 0.4, 0.8)])
    (out,) = LL_Composite().composite(colour, alpha, bg)  # batch 1 layer over 3 frames
    assert out.shape == (3, 4, 5, 3)
    for i, v in enumerate((0.0, 0.4, 0.8)):
        assert torch.allclose(out[i, 1:, 1:], torch.tensor(0.25 + 0.75 * v))
        assert torch.allclose(out[i, 0, 0], torch.tensor(1.0))
    with pytest.raises(InputError, match="input 'layer_alpha' has batch 2.*allowed: batch 1"):
        LL_Composite().composite(colour, alpha.expand(2, -1, -1), bg)
    with pytest.raises(InputError, match="input 'background' is 6x4 pixels"):
        LL_Composite().composite(colour, alpha, torch.zeros(1, 4, 6, 3))


def test_save_rejects_bad_inputs_and_writes_nothing(tmp_path):
    img, mask = torch.rand(2, 8, 8, 3), torch.rand(2, 8, 8)
    target = str(tmp_path / "o.####.exr")
    cases = [
        (dict(edit_image=img, edit_alpha=mask, source=img[:1]), "input 'source' has batch 1"),
        (dict(edit_image=img, edit_alpha=mask, composite=torch.rand(2, 8, 9, 3)), "input 'composite' is 9x8"),
        (dict(edit_image=img), "input 'edit_alpha' is missing"),
        (dict(composite=img, relevancy=mask, compression="dwaa"), "input 'compression'.*lossy.*relevancy"),
        (dict(composite=img, frames="1-3"), "input 'frames' names 3 frames"),
        (dict(composite=img, metadata="{oops"), "input 'metadata' is not valid JSON"),
        (dict(composite=img, colourspace="srgb_tx"), "input 'colourspace'"),
        ({}, "every other layer input"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            LL_SaveEXR().save(target, **kwargs)
    with pytest.raises(InputError, match="input 'path'.*no frame token"):
        LL_SaveEXR().save(str(tmp_path / "single.exr"), composite=img)
    assert list(tmp_path.iterdir()) == []


def test_save_without_source_records_the_fallback(tmp_path):
    img, mask = torch.rand(1, 8, 8, 3), torch.rand(1, 8, 8)
    out = LL_SaveEXR().save(str(tmp_path / "still.exr"), edit_image=img, edit_alpha=mask)
    path = out["result"][0]
    assert read_exr_header(path)["livelayers/edit_solve"] == "alpha_times_linear_colour"
    rgba = read_exr_layers(path)[""]
    want = mask[0, ..., None].numpy() * srgb_to_linear(img[0].numpy())
    assert np.abs(rgba[..., :3] - want).max() < HALF_TOL


def test_output_paths_and_completeness_for_farm_retries(tmp_path):
    pattern = str(tmp_path / "r.####.exr")
    expected = LL_SaveEXR.LL_OUTPUT_PATHS(path=pattern, frames="1-3")
    assert expected == [str(tmp_path / f"r.000{f}.exr") for f in (1, 2, 3)]
    assert LL_SaveEXR.LL_OUTPUT_PATHS(path=pattern, frames="") == []  # depends on the batch
    LL_SaveEXR().save(pattern, composite=torch.rand(2, 8, 8, 3), frames="1-2")
    data = open(expected[1], "rb").read()
    open(expected[1], "wb").write(data[: len(data) // 2])  # a frame killed mid-copy
    assert [exr_is_complete(p) for p in expected] == [True, False, False]


def test_inside_comfyui_paths_use_its_folders_and_previews_are_pngs(tmp_path, monkeypatch):
    """A stand-in ``folder_paths`` module: relative paths go to ComfyUI's output
    folder; the UI gets an animated WEBP of a sequence (a PNG of a still) in its temp folder."""
    import sys
    import types
    fake = types.ModuleType("folder_paths")
    for kind in ("input", "output", "temp"):
        (tmp_path / kind).mkdir()
        setattr(fake, f"get_{kind}_directory", lambda k=kind: str(tmp_path / k))
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    edit, alpha = torch.rand(2, 8, 8, 3), torch.rand(2, 8, 8)
    out = LL_SaveEXR().save("shot/e.####.exr", edit_image=edit, edit_alpha=alpha, source=edit)
    assert out["ui"]["text"] == [str(tmp_path / "output/shot" / f"e.000{f}.exr") for f in (1, 2)]
    assert LL_SaveEXR.LL_OUTPUT_PATHS(path="shot/e.####.exr", frames="1-2") == out["ui"]["text"]
    (preview,) = out["ui"]["images"]          # a sequence plays as one animation
    assert out["ui"]["animated"] == (True,) and preview["type"] == "temp"
    from PIL import Image
    webp = Image.open(tmp_path / "temp" / preview["filename"])
    assert webp.format == "WEBP" and webp.n_frames == 2 and webp.size == (8, 8)
    one = LL_SaveEXR().save("shot/one.exr", edit_image=edit[:1], edit_alpha=alpha[:1], source=edit[:1])
    (still,) = one["ui"]["images"]            # a single frame is a PNG
    assert "animated" not in one["ui"]
    png = oiio.ImageInput.open(str(tmp_path / "temp" / still["filename"]))
    assert png.spec().width == 8 and png.format_name() == "png"
    png.close()


def test_load_path_with_output_annotation_reads_what_an_earlier_graph_wrote(tmp_path, monkeypatch):
    """'x.png [output]' (ComfyUI's own folder annotation) reads from ComfyUI's
    output folder inside ComfyUI and from the working directory headless."""
    import sys
    import types
    for kind in ("input", "output", "temp"):
        (tmp_path / kind / "run").mkdir(parents=True)
    write_png(tmp_path / "output/run/edit.png", np.full((2, 3, 3), 0.25, np.float32))
    write_png(tmp_path / "input/run/edit.png", np.full((2, 3, 3), 0.75, np.float32))
    monkeypatch.chdir(tmp_path / "output")
    headless = LL_LoadImage().load("run/edit.png [output]")[0]
    fake = types.ModuleType("folder_paths")
    for kind in ("input", "output", "temp"):
        setattr(fake, f"get_{kind}_directory", lambda k=kind: str(tmp_path / k))
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    monkeypatch.chdir(tmp_path)
    inside = LL_LoadImage().load("run/edit.png [output]")[0]
    plain = LL_LoadImage().load("run/edit.png")[0]              # no annotation: the input folder
    assert headless.shape == inside.shape == (1, 2, 3, 3)
    assert abs(float(headless.mean()) - 0.25) < 0.01 and abs(float(inside.mean()) - 0.25) < 0.01
    assert abs(float(plain.mean()) - 0.75) < 0.01


def test_load_is_changed_follows_the_files(tmp_path):
    write_png(tmp_path / "s.0001.png", np.zeros((2, 2, 3), np.float32))
    before = LL_LoadImage.IS_CHANGED(str(tmp_path / "s.####.png"))
    assert before == LL_LoadImage.IS_CHANGED(str(tmp_path / "s.####.png"))
    write_png(tmp_path / "s.0002.png", np.zeros((2, 2, 3), np.float32))  # a new frame appears
    assert LL_LoadImage.IS_CHANGED(str(tmp_path / "s.####.png")) != before
    missing = LL_LoadImage.IS_CHANGED(str(tmp_path / "none.png"))
    assert missing != missing  # NaN: always re-run, so load() reports the problem


def test_save_colour_depth_float_writes_float_colour(tmp_path):
    from livelayers.engine.io import read_exr_header
    img = torch.rand(1, 8, 8, 3)
    for depth, fmt in (("half", "half"), ("float", "float")):
        path = LL_SaveEXR().save(str(tmp_path / f"{depth}.exr"), composite=img,
                                 colour_depth=depth)["result"][0]
        formats = read_exr_header(path)["channelformats"]
        assert formats["composite.R"] == fmt
    with pytest.raises(InputError, match="colour_depth"):
        LL_SaveEXR().save(str(tmp_path / "bad.exr"), composite=img, colour_depth="int8")
    assert not (tmp_path / "bad.exr").exists()
