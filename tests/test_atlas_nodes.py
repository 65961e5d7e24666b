"""The atlas nodes: contract, save/load, frame subsets, clear errors."""
from __future__ import annotations

import pytest
import torch

from livelayers.engine.errors import CorruptFileError, InputError
from livelayers.nodes import atlas_nodes as an
from livelayers.toyworld.clips import make_toy_clip


def test_node_contract():
    for name, cls in an.NODE_CLASS_MAPPINGS.items():
        assert cls.__name__ == name and cls.CATEGORY == "LiveLayers/atlas" and cls.DESCRIPTION
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
        spec = cls.INPUT_TYPES()
        for group in ("required", "optional"):
            for inp, (kind, opts) in spec.get(group, {}).items():
                assert opts.get("tooltip"), f"{name}.{inp} has no tooltip"


@pytest.fixture(scope="module")
def decomposed(tmp_path_factory):
    clip = make_toy_clip(n_frames=4, height=24, width=32, seed=2)
    path = tmp_path_factory.mktemp("atlas") / "shot.atlas.safetensors"
    frames = clip.frames.permute(0, 2, 3, 1)
    (atlas,) = an.LL_AtlasDecompose().run(frames, steps=3, seed=0, encoding="hash", atlas_path=str(path),
                                          masks=clip.masks[:, 0], first_frame=1001, batch=64, device="cpu")
    return clip, frames, atlas, path


def test_decompose_saves_and_reuses_the_atlas(decomposed):
    clip, frames, atlas, path = decomposed
    assert path.is_file() and atlas.frame_numbers == [1001, 1002, 1003, 1004]
    stamp = path.stat().st_mtime_ns
    (again,) = an.LL_AtlasDecompose().run(frames, steps=3, seed=0, encoding="hash", atlas_path=str(path),
                                          masks=clip.masks[:, 0], first_frame=1001, batch=64, device="cpu")
    assert path.stat().st_mtime_ns == stamp          # not retrained, not rewritten
    assert again.info["fingerprint"] == atlas.info["fingerprint"]
    (loaded,) = an.LL_LoadAtlas().run(str(path))
    torch.testing.assert_close(loaded.frame_maps([1])[2], atlas.frame_maps([1])[2])


def test_decompose_and_load_errors(decomposed, tmp_path):
    clip, frames, _, _ = decomposed
    with pytest.raises(InputError, match="LL_AtlasDecompose: input 'masks'"):
        an.LL_AtlasDecompose().run(frames, 3, 0, "hash", "", masks=clip.masks[:3, 0, :, :20], batch=64)
    with pytest.raises(InputError, match="LL_AtlasDecompose: input 'encoding'"):
        an.LL_AtlasDecompose().run(frames, 3, 0, "fourier", "", batch=64)
    with pytest.raises(InputError, match="LL_LoadAtlas: input 'path'"):
        an.LL_LoadAtlas().run(str(tmp_path / "nope.safetensors"))
    (tmp_path / "bad.safetensors").write_bytes(b"not an atlas")
    with pytest.raises(CorruptFileError):
        an.LL_LoadAtlas().run(str(tmp_path / "bad.safetensors"))


def test_extract_and_render_frame_subsets(decomposed):
    clip, frames, atlas, _ = decomposed
    fg, fg_a, bg, uv_fg, uv_bg, alpha = an.LL_AtlasExtract().run(atlas, 64, "1002-1003")
    assert uv_fg.shape == (2, 24, 32, 3) and uv_bg.shape == (2, 24, 32, 3) and alpha.shape == (2, 24, 32)
    assert fg.ndim == 4 and fg.shape[-1] == 3 and fg_a.shape == fg.shape[:3] and max(fg.shape[1:3]) == 64
    edit = torch.zeros_like(fg)
    edit[..., 0] = 1.0
    layer, layer_alpha, comp = an.LL_AtlasRender().run(atlas, "1002-1003", fg_edit=edit,
                                                       fg_edit_alpha=torch.ones(fg.shape[:3]), plate=frames)
    assert layer.shape == (2, 24, 32, 3) and layer_alpha.shape == (2, 24, 32)
    # An opaque fg edit: the layer's alpha is the opacity itself.
    torch.testing.assert_close(layer_alpha, alpha, rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="LL_AtlasRender: input 'frames' asks for frames 2000"):
        an.LL_AtlasRender().run(atlas, "2000", fg_edit=edit)
    with pytest.raises(InputError, match="LL_AtlasRender: input 'plate' is 16x24"):
        an.LL_AtlasRender().run(atlas, "", fg_edit=edit, plate=frames[:, :, :16])
    with pytest.raises(InputError, match="LL_AtlasRender: input 'fg_edit'"):
        an.LL_AtlasRender().run(atlas, "", fg_edit=edit[:, :, :3])
    with pytest.raises(InputError, match="frames"):
        an.LL_AtlasExtract().run(atlas, 64, "1-x")
