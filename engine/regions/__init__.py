"""Learnable edit regions (Lin et al., CVPR 2024): exhaustive, amortised and per-image.

    from livelayers.engine.regions import learn_regions, load_region_model, recolour_editor
    result = learn_regions(dino, clip, editor, image, "a blue circle", K=3, M=7,
                           mode="amortised", region_model=load_region_model("toy-regions"))
    result.box, result.mask, result.image, result.layer_rgb, result.layer_alpha, result.editor_runs

See docs/regions.md.
"""
from .anchors import DinoAnchors, anchors_from_attention, dino_anchors, dino_view, saliency_map, top_k_peaks
from .boxes import DEFAULT_BOX_SIZES, box_iou, box_mask, box_proposals, roi_features
from .editors import (RECOLOUR_REGIONS, colour_in_prompt, diffusion_editor, foreground_in_box,
                      quiet_progress, recolour_editor, surroundings)
from .learn import (MODES, OBJECTIVES, RANKS, RegionsResult, box_sizes_for, learn_regions, lowest_loss,
                    pick, proposal_logits, top_r, train_anchor)
from .losses import (box_losses, clip_targets, edit_losses, losses_and_scores, rank_candidates,
                     ranking_scores, region_losses)
from .model import RegionModel, load_region_model, save_region_model
from .network import (CUE_FEATURES, GEOMETRY_FEATURES, AmortisedRegionNetwork, BoundRegionNetwork,
                      RegionNetwork, box_geometry, box_inputs, dino_cues, gumbel_softmax_st)

__all__ = [
    "DinoAnchors", "anchors_from_attention", "dino_anchors", "dino_view", "saliency_map", "top_k_peaks",
    "DEFAULT_BOX_SIZES", "box_iou", "box_mask", "box_proposals", "roi_features",
    "RECOLOUR_REGIONS", "colour_in_prompt", "diffusion_editor", "foreground_in_box", "quiet_progress",
    "recolour_editor", "surroundings",
    "MODES", "OBJECTIVES", "RANKS", "RegionsResult", "box_sizes_for", "learn_regions", "lowest_loss",
    "pick", "proposal_logits", "top_r", "train_anchor",
    "box_losses", "clip_targets", "edit_losses", "losses_and_scores", "rank_candidates", "ranking_scores",
    "region_losses",
    "RegionModel", "load_region_model", "save_region_model",
    "CUE_FEATURES", "GEOMETRY_FEATURES", "AmortisedRegionNetwork", "BoundRegionNetwork", "RegionNetwork",
    "box_geometry", "box_inputs", "dino_cues", "gumbel_softmax_st",
]
