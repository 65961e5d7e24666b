"""engine/io: colour conversion, plate loading, layered EXR writing, the linear Over."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import torch

from livelayers.engine.errors import CorruptFileError
from livelayers.engine.io import (LayerSpec, MissingFramesError, available_colourspaces,
                                  exr_is_complete, from_linear, linear_premultiplied_layer,
                                  load_image, read_exr_header, read_exr_layers, to_linear,
                                  write_exr_sequence, write_layered_exr)
from livelayers.engine.io import exr as exr_module

HALF_TOL = 2e-3  # half float: 11-bit mantissa, ~5e-4 relative; values here are <= ~1


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """The sRGB (IEC 61966-2-1) decoding curve, written out as the known answer."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def write_png(path: Path, pixels: np.ndarray, fmt: str = "uint8") -> None:
    """Write (H,W,C) as is (alpha stored unassociated, no premultiply round trip)."""
    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, fmt)
    spec.attribute("oiio:UnassociatedAlpha", 1)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec)
    assert out.write_image(np.ascontiguousarray(pixels, np.float32))
    out.close()


def write_raw_exr(path: Path, pixels: np.ndarray, names, display=None, data_origin=(0, 0)) -> None:
    """A plain float EXR made with OIIO directly (a 'third-party' plate)."""
    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, "half")
    spec.channelnames = tuple(names)
    spec.x, spec.y = data_origin
    if display is not None:
        spec.full_x, spec.full_y, spec.full_width, spec.full_height = display
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec)
    assert out.write_image(np.ascontiguousarray(pixels, np.float32))
    out.close()


# ------------------------------------------------------------------ colour

def test_to_linear_matches_the_srgb_curve_and_round_trips():
    x = torch.linspace(0, 1, 999).reshape(1, 3, 1, 333)
    lin = to_linear(x, "lin_rec709")
    assert np.allclose(lin.numpy(), srgb_to_linear(x.numpy()), atol=1e-4)
    assert torch.allclose(from_linear(lin, "lin_rec709"), x, atol=1e-4)


def test_acescg_is_offered_and_converts_rec709_primaries():
    assert "ACEScg" in available_colourspaces()
    red = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    ap1 = to_linear(red, "ACEScg").flatten().numpy()
    # First column of the Rec.709 -> AP1 (ACEScg) matrix, Bradford D65->D60.
    assert np.allclose(ap1, [0.6131, 0.0702, 0.0206], atol=2e-3)
    white = to_linear(torch.ones(1, 3, 1, 1), "ACEScg").flatten().numpy()
    assert np.allclose(white, 1.0, atol=2e-3)


def test_unknown_colourspace_is_a_clear_error():
    with pytest.raises(ValueError, match="not a colour space.*lin_rec709"):
        to_linear(torch.zeros(1, 3, 1, 1), "linear-ish")


# ------------------------------------------------------------------ loading

def test_png_8_and_16_bit_grey_rgb_rgba(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.random((6, 7, 4)).astype(np.float32)
    write_png(tmp_path / "rgba.png", rgba)
    plate = load_image(tmp_path / "rgba.png")
    assert plate.rgb.shape == (1, 3, 6, 7) and plate.alpha.shape == (1, 1, 6, 7)
    # Straight colour as stored (not premultiplied), within 8-bit rounding.
    assert np.abs(plate.rgb[0].permute(1, 2, 0).numpy() - rgba[..., :3]).max() <= 0.5 / 255 + 1e-6
    assert np.abs(plate.alpha[0, 0].numpy() - rgba[..., 3]).max() <= 0.5 / 255 + 1e-6
    assert plate.info.bit_depth == "uint8" and plate.info.colourspace.startswith("sRGB")

    grey = rng.random((5, 4, 1)).astype(np.float32)
    write_png(tmp_path / "grey16.png", grey, "uint16")
    plate = load_image(tmp_path / "grey16.png")
    assert plate.alpha is None and plate.info.bit_depth == "uint16"
    for c in range(3):  # grey expands to three equal channels
        assert np.abs(plate.rgb[0, c].numpy() - grey[..., 0]).max() <= 0.5 / 65535 + 1e-6


def test_jpeg_and_float_tiff_auto_colourspace(tmp_path):
    rng = np.random.default_rng(1)
    img = np.full((8, 8, 3), 0.5, np.float32)
    oiio.ImageBuf(img).write(str(tmp_path / "a.jpg"), "uint8")
    assert abs(load_image(tmp_path / "a.jpg").rgb.mean().item() - 0.5) < 0.01
    lin = rng.random((4, 4, 3)).astype(np.float32) * 3  # scene-linear, HDR
    oiio.ImageBuf(lin).write(str(tmp_path / "hdr.tif"), "float")
    plate = load_image(tmp_path / "hdr.tif")
    assert plate.info.colourspace == "Linear Rec.709 (sRGB)"
    back = srgb_to_linear(np.clip(plate.rgb[0].permute(1, 2, 0).numpy(), 0, 1))
    ok = lin <= 1  # inside [0,1] the network value decodes back to the file's
    assert np.abs(back[ok] - lin[ok]).max() < 1e-3
    # HDR values are kept above 1, never clamped.
    assert plate.rgb.max() > 1.2


def test_exr_layer_choice_and_missing_layer_lists_layers(tmp_path):
    px = np.stack([np.full((4, 5), v, np.float32) for v in (0.1, 0.2, 0.3, 0.9, 0.8, 0.7)], -1)
    write_raw_exr(tmp_path / "l.exr", px, ["beauty.R", "beauty.G", "beauty.B",
                                           "composite.R", "composite.G", "composite.B"])
    first = load_image(tmp_path / "l.exr", colourspace="raw")  # no unprefixed RGB: first layer
    assert first.info.layer == "beauty"
    assert np.allclose(first.rgb[0, :, 0, 0].numpy(), [0.1, 0.2, 0.3], atol=1e-3)
    comp = load_image(tmp_path / "l.exr", colourspace="raw", layer="composite")
    assert np.allclose(comp.rgb[0, :, 0, 0].numpy(), [0.9, 0.8, 0.7], atol=1e-3)
    assert comp.info.channels == ("composite.R", "composite.G", "composite.B")
    with pytest.raises(CorruptFileError, match="'depth' not found.*beauty, composite"):
        load_image(tmp_path / "l.exr", layer="depth")


def test_exr_premultiplied_alpha_loads_as_straight_colour(tmp_path):
    px = np.zeros((2, 2, 4), np.float32)
    px[..., :3] = 0.25  # premultiplied linear 0.5 at alpha 0.5
    px[..., 3] = 0.5
    write_raw_exr(tmp_path / "p.exr", px, ["R", "G", "B", "A"])
    plate = load_image(tmp_path / "p.exr", colourspace="raw")
    assert np.allclose(plate.rgb.numpy(), 0.5, atol=1e-3)
    assert np.allclose(plate.alpha.numpy(), 0.5, atol=1e-3)


def test_data_window_inside_display_window_is_padded_with_zero(tmp_path):
    px = np.full((3, 4, 3), 0.5, np.float32)  # data window x=2,y=1, 4x3
    write_raw_exr(tmp_path / "w.exr", px, ["R", "G", "B"], display=(0, 0, 8, 6), data_origin=(2, 1))
    plate = load_image(tmp_path / "w.exr", colourspace="raw")
    assert plate.rgb.shape == (1, 3, 6, 8)
    assert plate.info.display_window == (0, 0, 8, 6) and plate.info.data_window == (2, 1, 4, 3)
    inside = plate.rgb[0, :, 1:4, 2:6]
    assert torch.allclose(inside, torch.tensor(0.5), atol=1e-3)
    assert plate.rgb.sum().item() == pytest.approx(inside.sum().item())  # zero elsewhere
    # Writing back with the plate's info keeps both windows and the pixels in register.
    out = write_layered_exr(tmp_path / "o.exr", {"source": LayerSpec(plate.rgb[0], encoding="linear")},
                            info=plate.info)
    header = read_exr_header(out)
    assert header["display_window"] == (0, 0, 8, 6) and header["data_window"] == (2, 1, 4, 3)
    assert np.allclose(read_exr_layers(out)["source"], 0.5, atol=1e-3)


def test_sequence_patterns_ranges_and_discovery(tmp_path):
    for f in range(1, 6):
        write_png(tmp_path / f"plate.{f:04d}.png", np.full((4, 4, 3), f / 10, np.float32))
    for pattern in ("plate.####.png", "plate.%04d.png", "plate.@@@@.png"):
        plate = load_image(tmp_path / pattern, frames="2-4")
        assert plate.info.frames == [2, 3, 4]
        assert np.allclose(plate.rgb[:, 0, 0, 0].numpy(), [0.2, 0.3, 0.4], atol=1 / 255)
    every = load_image(tmp_path / "plate.####.png")  # frames None: what is on disk
    assert every.info.frames == [1, 2, 3, 4, 5]
    odd = load_image(tmp_path / "plate.####.png", frames="1-5:2")
    assert odd.info.frames == [1, 3, 5]


def test_missing_frames_are_reported_together(tmp_path):
    for f in (1, 2, 4):
        write_png(tmp_path / f"p.{f:04d}.png", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(MissingFramesError) as err:
        load_image(tmp_path / "p.####.png", frames="1-6")
    assert err.value.missing == [3, 5, 6]
    assert "frames 3,5-6" in str(err.value) and "p.####.png" in str(err.value)
    with pytest.raises(MissingFramesError, match="no frames"):
        load_image(tmp_path / "q.####.png")
    with pytest.raises(MissingFramesError, match="not found"):
        load_image(tmp_path / "nothing.png")


def test_sequence_of_different_sizes_is_rejected(tmp_path):
    write_png(tmp_path / "s.0001.png", np.zeros((4, 4, 3), np.float32))
    write_png(tmp_path / "s.0002.png", np.zeros((4, 5, 3), np.float32))
    with pytest.raises(CorruptFileError, match="differ in size.*s.0002.png"):
        load_image(tmp_path / "s.####.png")


def test_corrupt_files_are_rejected(tmp_path):
    good = write_layered_exr(tmp_path / "good.exr", {"source": torch.rand(3, 32, 32)})
    data = good.read_bytes()
    (tmp_path / "trunc.exr").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.exr").write_text("not an image")
    with pytest.raises(CorruptFileError, match="truncated or corrupt"):
        load_image(tmp_path / "trunc.exr")
    with pytest.raises(CorruptFileError, match="not a readable image"):
        load_image(tmp_path / "text.exr")
    assert exr_is_complete(good)
    assert not exr_is_complete(tmp_path / "trunc.exr")
    assert not exr_is_complete(tmp_path / "text.exr")
    assert not exr_is_complete(tmp_path / "missing.exr")


# ------------------------------------------------------------------ writing

def test_layered_exr_layout_formats_and_metadata(tmp_path):
    h, w = 6, 9
    g = torch.Generator().manual_seed(0)
    rgba = torch.rand(4, h, w, generator=g)
    uv = torch.rand(2, h, w, generator=g)
    source, depth = torch.rand(3, h, w, generator=g), torch.rand(1, h, w, generator=g) * 100
    path = write_layered_exr(
        tmp_path / "x.exr",
        {"edit": LayerSpec(rgba, encoding="linear"), "composite": torch.rand(3, h, w),
         "source": source, "alpha": rgba[3:], "relevancy": torch.rand(1, h, w),
         "greenscreen": torch.rand(3, h, w), "uv_fg": uv, "stmap": uv, "depth": depth},
        metadata={"prompt": "a red circle", "seed": 7, "guidance": 1.5, "models": {"clip": "toy"}})
    header = read_exr_header(path)
    formats = header["channelformats"]
    assert [c for c in ("R", "G", "B", "A") if formats[c] == "half"] == ["R", "G", "B", "A"]
    for c in ("edit.R", "edit.A", "composite.G", "source.B", "greenscreen.R"):
        assert formats[c] == "half", c
    for c in ("alpha.A", "relevancy.Y", "uv_fg.R", "uv_fg.G", "stmap.R", "depth.Y"):
        assert formats[c] == "float", c
    assert header["compression"] == "zip"
    assert header["livelayers/prompt"] == "a red circle"
    assert header["livelayers/seed"] == 7 and header["livelayers/guidance"] == 1.5
    assert header["livelayers/models"] == '{"clip": "toy"}'
    assert header["livelayers/colourspace"] == "lin_rec709" and "livelayers/version" in header
    layers = read_exr_layers(path)
    # Linear edit stored as given (half), unprefixed copy identical; data exact float32.
    assert np.allclose(layers[""], rgba.permute(1, 2, 0).numpy(), atol=HALF_TOL)
    assert np.array_equal(layers[""], layers["edit"])
    assert np.array_equal(layers["uv_fg"], uv.permute(1, 2, 0).numpy())
    assert np.array_equal(layers["depth"][..., 0], depth[0].numpy())
    # Network-space colour layers are stored scene-linear (half).
    want = srgb_to_linear(source.permute(1, 2, 0).numpy())
    assert np.abs(layers["source"] - want).max() < HALF_TOL


def test_colour_only_file_is_all_half_and_float_option(tmp_path):
    half = write_layered_exr(tmp_path / "h.exr", {"composite": torch.rand(3, 4, 4)})
    assert set(read_exr_header(half)["channelformats"].values()) == {"half"}
    full = write_layered_exr(tmp_path / "f.exr", {"composite": torch.rand(3, 4, 4)}, half_colour=False)
    assert set(read_exr_header(full)["channelformats"].values()) == {"float"}


@pytest.mark.parametrize("compression", ["zip", "piz", "zips", "rle", "none"])
def test_lossless_compressions_keep_data_exact(tmp_path, compression):
    uv = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1))
    path = write_layered_exr(tmp_path / "c.exr", {"uv_bg": uv}, compression=compression)
    assert read_exr_header(path)["compression"] == compression
    assert np.array_equal(read_exr_layers(path)["uv_bg"], uv.permute(1, 2, 0).numpy())


def test_dwa_allowed_on_colour_refused_on_data(tmp_path):
    path = write_layered_exr(tmp_path / "d.exr", {"composite": torch.rand(3, 32, 32)}, compression="dwaa")
    assert read_exr_header(path)["compression"].startswith("dwaa")
    with pytest.raises(ValueError, match="lossy.*relevancy"):
        write_layered_exr(tmp_path / "bad.exr", {"composite": torch.rand(3, 32, 32),
                                                 "relevancy": torch.rand(1, 32, 32)}, compression="dwab")
    assert not (tmp_path / "bad.exr").exists()


def test_mismatched_layer_sizes_and_bad_names_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="'source' is 8x8.*allowed: every layer the same size"):
        write_layered_exr(tmp_path / "m.exr", {"edit": torch.rand(4, 6, 6), "source": torch.rand(3, 8, 8)})
    with pytest.raises(ValueError, match="not simple"):
        write_layered_exr(tmp_path / "m.exr", {"my layer": torch.rand(3, 6, 6)})
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_leaves_no_file(tmp_path, monkeypatch):
    real_write = exr_module._write

    def crash(tmp, spec, pixels):
        real_write(tmp, spec, pixels)  # a complete temp file exists...
        raise KeyboardInterrupt("killed")  # ...and the job dies before the rename

    monkeypatch.setattr(exr_module, "_write", crash)
    with pytest.raises(KeyboardInterrupt):
        write_layered_exr(tmp_path / "a.exr", {"source": torch.rand(3, 8, 8)})
    assert list(tmp_path.iterdir()) == []  # neither final file nor temp file


def test_written_files_are_world_readable(tmp_path):
    path = write_layered_exr(tmp_path / "p.exr", {"source": torch.rand(3, 4, 4)})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_exr_sequence_and_round_trip_through_load(tmp_path):
    src = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    paths = write_exr_sequence(tmp_path / "s.####.exr", [1001, 1002, 1003], {"source": src})
    assert [p.name for p in paths] == ["s.1001.exr", "s.1002.exr", "s.1003.exr"]
    assert read_exr_header(paths[1])["livelayers/frame"] == 1002
    back = load_image(tmp_path / "s.####.exr", layer="source")
    assert back.info.frames == [1001, 1002, 1003]
    assert torch.allclose(back.rgb, src, atol=HALF_TOL)  # sRGB -> linear half -> sRGB
    with pytest.raises(ValueError, match="no frame token"):
        write_exr_sequence(tmp_path / "single.exr", [1, 2], {"source": src[:2]})


def test_third_party_reader_sees_the_layout(tmp_path):
    path = write_layered_exr(tmp_path / "t.exr", {"edit": torch.rand(4, 8, 8), "relevancy": torch.rand(1, 8, 8)},
                             metadata={"prompt": "a blue star"})
    tool = Path(sys.executable).parent / "oiiotool"
    tool = str(tool) if tool.exists() else shutil.which("oiiotool")
    if tool:
        text = subprocess.run([tool, "--info", "-v", str(path)], capture_output=True, text=True,
                              check=True).stdout
    else:  # fall back to OIIO's own reader
        spec = oiio.ImageInput.open(str(path)).spec()
        text = " ".join(spec.channelnames) + " " + spec.get_string_attribute("livelayers/prompt")
    for needle in ("edit.R", "relevancy.Y", "a blue star"):
        assert needle in text


# ------------------------------------------------------------------ linear-light Over

def _over_case(n=2, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    colour, alpha, source = torch.rand(n, 3, h, w, generator=g), torch.rand(n, 1, h, w, generator=g), \
        torch.rand(n, 3, h, w, generator=g)
    # Half the pixels: a dark, semi-transparent edit over a bright plate (P < 0 there).
    colour[..., : h // 2, :] *= 0.05
    alpha[..., : h // 2, :] = 0.2 + 0.6 * alpha[..., : h // 2, :]
    source[..., : h // 2, :] = 0.85 + 0.15 * source[..., : h // 2, :]
    return colour, alpha, source


def _compositor_over(path: Path, source_lin: np.ndarray | None = None):
    """What Nuke/Blender do: read the EXR, out = P + (1 - A) * source (linear)."""
    layers = read_exr_layers(path)
    p, a = layers[""][..., :3], layers[""][..., 3:4]
    src = layers["source"] if source_lin is None else source_lin
    return p + (1 - a) * src, p, a


def test_linear_over_reproduces_the_network_composite(tmp_path):
    colour, alpha, source = _over_case()
    p, a = linear_premultiplied_layer(colour, alpha, source)
    composite = alpha * colour + (1 - alpha) * source
    for i in range(colour.shape[0]):
        path = write_layered_exr(tmp_path / f"o{i}.exr", {"edit": LayerSpec(torch.cat([p[i], a[i]]), encoding="linear"),
                                                          "source": source[i], "composite": composite[i]})
        out, p_file, _ = _compositor_over(path)
        want = srgb_to_linear(composite[i].permute(1, 2, 0).numpy())
        assert np.abs(out - want).max() < HALF_TOL
        assert p_file.min() < -0.02  # the negative values of dark-over-bright are kept
    # Linearising the colour alone is visibly wrong: the solve is what makes it exact.
    naive = (alpha * to_linear(colour) + (1 - alpha) * to_linear(source)).permute(0, 2, 3, 1).numpy()
    assert np.abs(naive - srgb_to_linear(composite.permute(0, 2, 3, 1).numpy())).max() > 0.05


def test_keep_nonnegative_raises_alpha_minimally(tmp_path):
    colour, alpha, source = _over_case(seed=3)
    p, a2 = linear_premultiplied_layer(colour, alpha, source, keep_nonnegative=True)
    assert p.min() > -1e-6 and (a2 >= alpha).all() and (a2 > alpha + 1e-3).any()
    lin_src = to_linear(source)
    composite = alpha * colour + (1 - alpha) * source
    lin_out = to_linear(composite)
    assert torch.allclose(p + (1 - a2) * lin_src, lin_out, atol=1e-5)  # Over still exact
    raised = (a2 > alpha + 1e-6).expand_as(p)
    # Minimal: wherever alpha was raised, some channel sits exactly at P = 0.
    tight = (p.abs() < 1e-5) & raised
    assert (tight.any(dim=1, keepdim=True) | ~raised[:, :1]).all()
    untouched = ~raised[:, :1]
    assert torch.equal(a2[untouched], alpha[untouched])
    path = write_layered_exr(tmp_path / "nn.exr", {"edit": LayerSpec(torch.cat([p[0], a2[0]]), encoding="linear"),
                                                   "source": source[0]})
    out, p_file, _ = _compositor_over(path)
    assert p_file.min() >= 0
    assert np.abs(out - srgb_to_linear(composite[0].permute(1, 2, 0).numpy())).max() < HALF_TOL


def test_without_source_the_layer_is_alpha_times_linear_colour():
    colour, alpha, _ = _over_case(n=1)
    p, a = linear_premultiplied_layer(colour, alpha, None)
    assert torch.equal(a, alpha)
    assert np.allclose(p.numpy(), alpha.numpy() * srgb_to_linear(colour.numpy()), atol=1e-4)


def test_multipart_exr_layers_are_found_in_any_part(tmp_path):
    """Nuke can write multi-part files; a layer in the second part still loads."""
    path = str(tmp_path / "mp.exr")
    specs = []
    for names in (("R", "G", "B"), ("composite.R", "composite.G", "composite.B")):
        spec = oiio.ImageSpec(4, 3, 3, "half")
        spec.channelnames = names
        spec.attribute("name", names[0].split(".")[0] if "." in names[0] else "rgba")
        specs.append(spec)
    out = oiio.ImageOutput.create(path)
    assert out.open(path, tuple(specs))
    out.write_image(np.full((3, 4, 3), 0.1, np.float32))
    assert out.open(path, specs[1], "AppendSubimage")
    out.write_image(np.full((3, 4, 3), 0.7, np.float32))
    out.close()
    assert np.allclose(load_image(path, colourspace="raw").rgb.numpy(), 0.1, atol=1e-3)
    assert np.allclose(load_image(path, colourspace="raw", layer="composite").rgb.numpy(), 0.7, atol=1e-3)
    with pytest.raises(CorruptFileError, match="2 parts.*composite"):
        load_image(path, layer="depth")
    assert exr_is_complete(path)


def test_identity_stmap_convention(tmp_path):
    from livelayers.engine.io import identity_stmap
    st = identity_stmap(4, 8)
    assert st.shape == (2, 4, 8)
    assert st[0, 0, 0] == pytest.approx(0.5 / 8) and st[0, 0, 7] == pytest.approx(7.5 / 8)
    assert st[1, 0, 0] == pytest.approx(1 - 0.5 / 4) and st[1, 3, 0] == pytest.approx(1 - 3.5 / 4)
    path = write_layered_exr(tmp_path / "st.exr", {"stmap": st})
    assert read_exr_header(path)["channels"] == ["stmap.R", "stmap.G"]
    assert np.array_equal(read_exr_layers(path)["stmap"], st.permute(1, 2, 0).numpy())


def test_overscan_outside_the_display_window_is_cropped_and_flagged(tmp_path):
    px = np.zeros((8, 12, 3), np.float32)
    px[1, 2] = 0.7  # data pixel (2,1) relative to origin (-2,-1) = display pixel (0,0)
    write_raw_exr(tmp_path / "os.exr", px, ["R", "G", "B"], display=(0, 0, 8, 6), data_origin=(-2, -1))
    plate = load_image(tmp_path / "os.exr", colourspace="raw")
    assert plate.rgb.shape == (1, 3, 6, 8) and plate.info.overscan
    assert plate.rgb[0, 0, 0, 0].item() == pytest.approx(0.7, abs=1e-3)
    assert plate.rgb.sum().item() == pytest.approx(3 * 0.7, abs=1e-2)
    out = write_layered_exr(tmp_path / "o.exr", {"source": plate.rgb[0]}, info=plate.info)
    assert read_exr_header(out)["data_window"] == (0, 0, 8, 6)  # clipped to what we hold
