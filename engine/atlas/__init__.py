"""Neural layered atlases (Kasten et al. 2021) with Hashing-NVD-style hash-grid
fields: decompose a clip into foreground/background atlases, extract atlas
images and per-frame UV maps (STMaps), and render atlas edits to every frame.

    atlas = decompose(frames, masks)             # engine.atlas.train
    atlas = decompose(frames, object_text="the red circle", clip=handle)  # no masks (bootstrap.py)
    save_atlas(atlas, "shot.atlas.safetensors")  # engine.atlas.store
    atlas = decompose_or_reuse(frames, masks, atlas_path="shot.atlas.safetensors")  # once per job
    atlas = load_atlas("shot.atlas.safetensors")
    img = atlas_image(atlas, "fg", 256)          # engine.atlas.products
    out = render_edit(atlas, indices, fg_edit=...)  # engine.atlas.render
"""
from .fields import ENCODINGS, AtlasSettings
from .store import Atlas, load_atlas, load_matching, save_atlas
from .train import decompose, decompose_or_reuse

__all__ = ["ENCODINGS", "Atlas", "AtlasSettings", "decompose", "decompose_or_reuse", "load_atlas",
           "load_matching", "save_atlas"]
