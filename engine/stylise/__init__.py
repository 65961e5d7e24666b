"""Text-driven stylisation of video objects (Loeschcke, Belongie, Benaim
2022) on a layered atlas: a copy of the foreground atlas colour field is
fine-tuned with CLIP (global + local texts, temporal triplet, sparsity); the
mappings, opacity and background stay the decomposition's.

    result = stylise_atlas(clip, atlas, "a swan with crocodile skin", "crocodile skin")
    layer, alpha, comp = render_stylised(result.atlas, indices, plate)   # engine.stylise.render
    save_atlas(result.atlas, "shot.stylised.atlas.safetensors")          # an ordinary LL_ATLAS
"""
from .render import atlas_cutoff, is_stylised, layer_alpha, render_stylised
from .settings import PREFIX_COUNTS, PREFIXES, TERMS, StyliseSettings, apply_prefix
from .trainer import StyliseResult, stylise_atlas, stylise_or_reuse

__all__ = ["PREFIXES", "PREFIX_COUNTS", "TERMS", "StyliseSettings", "StyliseResult", "apply_prefix",
           "atlas_cutoff", "is_stylised", "layer_alpha", "render_stylised", "stylise_atlas",
           "stylise_or_reuse"]
