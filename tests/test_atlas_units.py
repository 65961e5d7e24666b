"""Fast unit tests of the atlas pieces: hash grid, STMap convention, files,
resume, rendering arithmetic (no long training)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from livelayers.engine.atlas import (AtlasSettings, decompose, decompose_or_reuse, load_atlas, load_matching,
                                    save_atlas)
from livelayers.engine.atlas.encoding import HashGrid, PositionalEncoding
from livelayers.engine.atlas.products import atlas_grid, extract, stmap
from livelayers.engine.atlas.render import Edit, render_edit
from livelayers.engine.errors import Cancelled, CorruptFileError, InputError
from livelayers.engine.progress import Progress
from livelayers.toyworld.clips import make_toy_clip

TINY = dict(steps=12, batch=256, levels=4, map_levels=3, log2_table=10, hidden=16, checkpoint_every=5)


@pytest.fixture(scope="module")
def clip():
    return make_toy_clip(n_frames=4, height=24, width=32, seed=3)


@pytest.fixture(scope="module")
def tiny_atlas(clip):
    return decompose(clip.frames, clip.masks, AtlasSettings(**TINY), seed=1, device="cpu",
                     frame_numbers=[1001, 1002, 1003, 1004])


# ---------------------------------------------------------------- hash grid

@pytest.mark.parametrize("dim", [2, 3])
def test_hash_grid_exact_at_vertices(dim):
    torch.manual_seed(0)
    grid = HashGrid(dim, levels=5, features=2, log2_table=8, base=3, scale=1.6, init_range=1.0)
    for level, r in enumerate(grid.res.long().tolist()):
        k = torch.randint(0, r + 1, (50, dim))           # integer vertices of this level
        x = k.float() / r * 2 - 1                         # their [-1,1] coordinates
        out = grid(x).view(50, grid.levels, 2)[:, level]
        rows = grid.vertex_index(k[None].expand(grid.levels, -1, -1))[level]
        torch.testing.assert_close(out, grid.table[rows], rtol=0, atol=1e-5)


def test_hash_grid_dense_levels_are_collision_free_and_hashed_levels_fit():
    grid = HashGrid(2, levels=6, log2_table=10, base=4, scale=2.0)
    assert grid.dense.tolist() == [(r + 1) ** 2 <= 1024 for r in grid.res.long().tolist()]
    r = int(grid.res[0])
    k = torch.stack(torch.meshgrid(torch.arange(r + 1), torch.arange(r + 1), indexing="ij"), -1).view(-1, 2)
    rows = grid.vertex_index(k[None].expand(grid.levels, -1, -1))
    assert rows[0].unique().numel() == (r + 1) ** 2        # dense: one row per vertex
    assert rows.max() < grid.table.shape[0]


def test_hash_grid_is_continuous_and_interpolates_linearly():
    torch.manual_seed(0)
    grid = HashGrid(3, levels=4, log2_table=9, base=4, scale=1.5, init_range=1.0)
    x = torch.rand(200, 3) * 1.8 - 0.9
    eps = 1e-4
    jump = (grid(x + eps) - grid(x)).abs().max()
    assert jump < 1e-2                                    # no jumps across cell borders
    # Along an edge inside one cell of level 0, the value is linear in x.
    r = float(grid.res[0])
    a = torch.tensor([[1.0, 1.0, 1.0]]) / r * 2 - 1
    b = torch.tensor([[2.0, 1.0, 1.0]]) / r * 2 - 1
    mid = grid((a + b) / 2)[:, :2]
    torch.testing.assert_close(mid, (grid(a)[:, :2] + grid(b)[:, :2]) / 2, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dim,levels,log2_table,base,scale", [
    (3, 12, 14, 8, 1.4),    # the opacity grid: 4 dense + 8 hashed levels
    (3, 6, 14, 4, 1.5),     # the mapping grids: 5 dense + 1 hashed
    (2, 12, 14, 8, 1.4),    # the atlas grids: 9 dense + 3 hashed
    (2, 16, 19, 16, 1.38),  # Hashing-NVD's big tables
])
def test_hash_grid_fast_path_equals_the_reference_gather(dim, levels, log2_table, base, scale):
    """The level-by-level forward (grid_sample on dense levels, outer-XOR
    hashing) gives the direct all-corners gather's values and gradients."""
    torch.manual_seed(0)
    grid = HashGrid(dim, levels=levels, log2_table=log2_table, base=base, scale=scale, init_range=1.0)
    x = torch.rand(4096, dim) * 2.2 - 1.1            # includes points outside [-1, 1] (held at the edge)
    x[:4] = torch.tensor([-1.0, 1.0, 1.0, -1.0])[:, None]
    w = torch.randn(4096, grid.out_dim)
    outs, grads = [], []
    for forward in (grid.forward, grid.forward_reference):
        grid.table.grad = None
        out = forward(x)
        (out * w).sum().backward()
        outs.append(out.detach())
        grads.append(grid.table.grad.clone())
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-4)


def test_positional_encoding_values():
    pe = PositionalEncoding(2, 3)
    x = torch.tensor([[0.5, -0.25]])
    out = pe(x)
    assert out.shape == (1, 2 * 7)
    assert math.isclose(float(out[0, 2]), math.sin(math.pi * 0.5), abs_tol=1e-6)   # sin(2^0 π x0)
    assert math.isclose(float(out[0, 8]), math.cos(math.pi * 0.5), abs_tol=1e-6)   # cos(2^0 π x0)


# ---------------------------------------------------------------- STMap convention

def test_stmap_pixel_centres_convention(tiny_atlas):
    ha, wa, (u0, v0, u1, v1) = atlas_grid(tiny_atlas, "fg", 40)
    assert max(ha, wa) == 40
    p = (u1 - u0) / wa
    assert math.isclose((v1 - v0) / ha, p, rel_tol=1e-6)   # square atlas pixels
    # UVs at the centres of atlas pixels (row 0, col 0) and (row ha-1, col 3).
    uv = torch.tensor([[u0 + 0.5 * p, u0 + 3.5 * p], [v0 + 0.5 * p, v0 + (ha - 0.5) * p]]).view(1, 2, 1, 2)
    st = stmap(uv, (u0, v0, u1, v1))
    torch.testing.assert_close(st[0, 0, 0], torch.tensor([0.5 / wa, 3.5 / wa]))
    torch.testing.assert_close(st[0, 1, 0], torch.tensor([1 - 0.5 / ha, 1 - (ha - 0.5) / ha]))
    assert st[:, 2].abs().max() == 0 and st.dtype == torch.float32


def test_extract_shapes_and_values(tiny_atlas, clip):
    out = extract(tiny_atlas, 48, [0, 2])
    ha, wa, _ = atlas_grid(tiny_atlas, "fg", 48)
    assert out["fg_atlas"].shape == (1, 3, ha, wa) and out["fg_alpha"].shape == (1, 1, ha, wa)
    assert out["uv_fg"].shape == (2, 3, 24, 32) and out["alpha"].shape == (2, 1, 24, 32)
    assert 0 <= float(out["uv_bg"][:, :2].min()) and float(out["uv_bg"][:, :2].max()) <= 1


# ---------------------------------------------------------------- rendering arithmetic

def test_render_layer_over_plate_is_the_composite(tiny_atlas, clip):
    ha, wa, _ = atlas_grid(tiny_atlas, "bg", 32)
    rgb = torch.rand(1, 3, ha, wa, generator=torch.Generator().manual_seed(0))
    alpha = torch.rand(1, 1, ha, wa, generator=torch.Generator().manual_seed(1))
    layer, a, comp = render_edit(tiny_atlas, [1, 3], bg=Edit(rgb, alpha), plate=clip.frames[[1, 3]])
    over = layer * a + (1 - a) * clip.frames[[1, 3]]
    torch.testing.assert_close(over, comp, rtol=0, atol=1e-5)
    # A fully opaque constant bg edit gives alpha = 1 − α_NLA and that colour.
    const = Edit(torch.full((1, 3, ha, wa), 0.25), torch.ones(1, 1, ha, wa))
    layer, a, _ = render_edit(tiny_atlas, [0], bg=const)
    _, _, nla = tiny_atlas.frame_maps([0])
    torch.testing.assert_close(a, 1 - nla, rtol=0, atol=1e-5)
    assert torch.allclose(layer[a.expand_as(layer) > 1e-3], torch.tensor(0.25), atol=1e-5)


def test_render_rejects_bad_edits_and_plates(tiny_atlas, clip):
    ha, wa, _ = atlas_grid(tiny_atlas, "fg", 32)
    with pytest.raises(InputError, match="fg_edit.*not the fg atlas's aspect"):
        render_edit(tiny_atlas, [0], fg=Edit(torch.zeros(1, 3, ha + 8, wa), torch.ones(1, 1, ha + 8, wa)))
    good = Edit(torch.zeros(1, 3, ha, wa), torch.ones(1, 1, ha, wa))
    with pytest.raises(InputError, match="plate.*48x24.*32x24"):
        render_edit(tiny_atlas, [0], fg=good, plate=torch.zeros(1, 3, 24, 48))
    with pytest.raises(InputError, match="frames 1010"):
        tiny_atlas.indices([1010], "LL_AtlasRender")


# ---------------------------------------------------------------- atlas files

def test_atlas_file_round_trip(tiny_atlas, tmp_path):
    path = save_atlas(tiny_atlas, tmp_path / "a.atlas.safetensors")
    back = load_atlas(path)
    assert back.frame_numbers == [1001, 1002, 1003, 1004] and back.boxes == tiny_atlas.boxes
    torch.testing.assert_close(back.frame_maps([2])[0], tiny_atlas.frame_maps([2])[0])


def test_load_matching_takes_only_this_jobs_atlas(tiny_atlas, tmp_path):
    path = tmp_path / "a.atlas.safetensors"
    fp = tiny_atlas.info["fingerprint"]
    assert load_matching(path, fp) is None and load_matching(None, fp) is None   # no file
    save_atlas(tiny_atlas, path)
    assert load_matching(path, fp).info["fingerprint"] == fp
    assert load_matching(path, "another job's fingerprint") is None
    path.write_bytes(b"not an atlas")
    assert load_matching(path, fp) is None                                      # damaged: made again


def test_decompose_or_reuse_decomposes_once(clip, tiny_atlas, tmp_path):
    path = tmp_path / "once.atlas.safetensors"
    args = (clip.frames, clip.masks, AtlasSettings(**TINY), 1, path)
    first = decompose_or_reuse(*args, device="cpu", frame_numbers=[1001, 1002, 1003, 1004])
    assert first.info["fingerprint"] == tiny_atlas.info["fingerprint"] and path.is_file()
    stamp = path.stat().st_mtime_ns
    steps = []
    again = decompose_or_reuse(*args, device="cpu", progress=Progress(lambda s, t, i: steps.append(s)))
    assert steps == [] and path.stat().st_mtime_ns == stamp                     # reused, not trained
    torch.testing.assert_close(again.frame_maps([1])[0], first.frame_maps([1])[0])
    other = decompose_or_reuse(clip.frames, clip.masks, AtlasSettings(**TINY), 2, path, device="cpu")
    assert other.info["fingerprint"] != first.info["fingerprint"] and path.stat().st_mtime_ns != stamp


def test_indices_read_frame_range_text_and_plates_are_cut_to_the_frames(tiny_atlas):
    assert tiny_atlas.indices("1002-1003", "LL_AtlasRender") == [1, 2]
    assert tiny_atlas.indices("", "LL_AtlasRender") == [0, 1, 2, 3]
    with pytest.raises(InputError, match="input 'frames' is 'x-y'.*Open Job Description"):
        tiny_atlas.indices("x-y", "LL_AtlasRender")
    plate = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    assert tiny_atlas.plate_for(plate, [1, 3])[:, 0, 0, 0].tolist() == [1.0, 3.0]  # whole clip: cut
    assert tiny_atlas.plate_for(plate[:2], [1, 3]).shape[0] == 2                   # as given
    assert tiny_atlas.plate_for(None, [1]) is None


def test_corrupt_and_mismatched_atlas_files_are_rejected(tiny_atlas, tmp_path):
    from safetensors.torch import load_file, save_file
    good = save_atlas(tiny_atlas, tmp_path / "good.safetensors")
    data = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="not a readable atlas file"):
        load_atlas(tmp_path / "trunc.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CorruptFileError, match="not a readable atlas file"):
        load_atlas(tmp_path / "junk.safetensors")
    # Flip one weight: digest mismatch.
    tensors = load_file(str(good))
    from safetensors import safe_open
    with safe_open(str(good), "pt") as f:
        meta = f.metadata()
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(tmp_path / "flip.safetensors"), metadata=meta)
    with pytest.raises(CorruptFileError, match="sha256"):
        load_atlas(tmp_path / "flip.safetensors")
    for key, value, message in (("kind", "livelayers.text2live", "file kind"),
                                ("format_version", "99", "format version '99'")):
        save_file(load_file(str(good)), str(tmp_path / f"{key}.safetensors"), metadata={**meta, key: value})
        with pytest.raises(CorruptFileError, match=message):
            load_atlas(tmp_path / f"{key}.safetensors")
    with pytest.raises(FileNotFoundError):
        load_atlas(tmp_path / "missing.safetensors")


# ---------------------------------------------------------------- resume + determinism

def test_interrupt_and_resume_equals_uninterrupted(clip, tmp_path):
    settings = AtlasSettings(**TINY)
    ref = decompose(clip.frames, clip.masks, settings, seed=5, device="cpu")
    steps_seen = []
    stop_at = 7
    progress = Progress(callback=lambda s, t, info: steps_seen.append((s, info["psnr"])),
                        should_stop=lambda: len(steps_seen) >= stop_at)
    with pytest.raises(Cancelled):
        decompose(clip.frames, clip.masks, settings, seed=5, device="cpu", run_dir=tmp_path, progress=progress)
    assert (tmp_path / "checkpoint.pt").exists() and len(steps_seen) == stop_at
    assert all(np.isfinite(p) for _, p in steps_seen)
    resumed_steps = []
    out = decompose(clip.frames, clip.masks, settings, seed=5, device="cpu", run_dir=tmp_path,
                    progress=Progress(callback=lambda s, t, info: resumed_steps.append(s)))
    assert resumed_steps[0] == stop_at + 1 and resumed_steps[-1] == settings.steps
    for (k, a), b in zip(ref.fields.state_dict().items(), out.fields.state_dict().values()):
        assert torch.equal(a, b), k
    # A different seed in the same run folder is refused, not silently resumed.
    with pytest.raises(CorruptFileError, match="different"):
        decompose(clip.frames, clip.masks, settings, seed=6, device="cpu", run_dir=tmp_path)



def test_more_steps_resume_a_finished_run_and_a_saved_atlas_is_not_mistaken_for_it(clip, tmp_path):
    """Asking a finished run folder for more steps continues it from its last
    step (as Text2LIVE does) instead of refusing the folder or starting over;
    the atlas it makes is a new product (its fingerprint names the steps)."""
    from dataclasses import replace
    short = AtlasSettings(**TINY)
    first = decompose(clip.frames, clip.masks, short, seed=5, device="cpu", run_dir=tmp_path)
    longer = replace(short, steps=short.steps + 4)
    seen = []
    extended = decompose(clip.frames, clip.masks, longer, seed=5, device="cpu", run_dir=tmp_path,
                         progress=Progress(callback=lambda s, t, info: seen.append((s, t))))
    assert seen == [(s, longer.steps) for s in range(short.steps + 1, longer.steps + 1)]
    assert extended.info["fingerprint"] != first.info["fingerprint"]
    assert any(not torch.equal(a, b) for a, b in zip(first.fields.state_dict().values(),
                                                     extended.fields.state_dict().values()))

def test_same_seed_same_result_and_input_errors(clip, tiny_atlas):
    again = decompose(clip.frames, clip.masks, AtlasSettings(**TINY), seed=1, device="cpu")
    for a, b in zip(tiny_atlas.fields.state_dict().values(), again.fields.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(InputError, match="masks.*allowed: one 32x24 mask per frame"):
        decompose(clip.frames, clip.masks[:, :, :20], AtlasSettings(**TINY))
    with pytest.raises(InputError, match="2 or more frames"):
        decompose(clip.frames[:1], None, AtlasSettings(**TINY))
    with pytest.raises(InputError, match="encoding"):
        decompose(clip.frames, None, AtlasSettings(**{**TINY, "encoding": "nerf"}))
