"""Learnable edit regions (Lin et al., CVPR 2024), with a real gradient.

    from livelayers.engine.regions import learn_regions, recolour_editor
    result = learn_regions(dino, clip, editor, image, "a blue circle", K=3, M=5, steps=30)
    result.box, result.mask, result.image, result.layer_rgb, result.layer_alpha

See docs/regions.md.
"""
from .anchors import anchors_from_attention, saliency_map, top_k_peaks
from .boxes import DEFAULT_BOX_SIZES, box_iou, box_mask, box_proposals, roi_features
from .editors import colour_in_prompt, diffusion_editor, recolour_editor
from .learn import OBJECTIVES, RegionsResult, box_sizes_for, dino_view, learn_regions, train_anchor
from .losses import (box_losses, clip_targets, edit_losses, rank_candidates, ranking_scores,
                     region_losses)
from .network import RegionNetwork, gumbel_softmax_st

__all__ = [
    "anchors_from_attention", "saliency_map", "top_k_peaks",
    "DEFAULT_BOX_SIZES", "box_iou", "box_mask", "box_proposals", "roi_features",
    "colour_in_prompt", "diffusion_editor", "recolour_editor",
    "OBJECTIVES", "RegionsResult", "box_sizes_for", "dino_view", "learn_regions", "train_anchor",
    "box_losses", "clip_targets", "edit_losses", "rank_candidates", "ranking_scores", "region_losses",
    "RegionNetwork", "gumbel_softmax_st",
]
