"""Widget declarations several nodes share (ComfyUI ``INPUT_TYPES`` entries).

One function per widget idea; the node passes what differs (its defaults,
which come from its engine settings, and the tooltip where its wording is
its own). A node still lists its inputs itself, in its own order: ComfyUI's
saved workflows store widget values by position, so the order is part of
a node's contract.
"""
from __future__ import annotations

from dataclasses import replace

from ..engine.text2live.generator import GeneratorConfig
from ..engine.text2live.settings import DISTANCES, RELEVANCY_BLOCKS

MAX_SEED = 2**63 - 1
DEVICES = ["auto", "cpu", "cuda"]


def weight(default: float, tip: str, step: float = 0.01) -> tuple:
    """A loss weight: FLOAT in [0, 1000]."""
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1000.0, "step": step, "tooltip": tip})


def seed(tip: str) -> tuple:
    """A trainer's seed: INT in [0, 2^63 - 1], default 0."""
    return ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "tooltip": tip})


def steps(default: int, tip: str, most: int = 100000) -> tuple:
    """Training steps: INT in [1, most]."""
    return ("INT", {"default": default, "min": 1, "max": most, "tooltip": tip})


def device(tip: str) -> tuple:
    """Where a trainer runs: auto / cpu / cuda, default auto."""
    return (list(DEVICES), {"default": "auto", "tooltip": tip})


def run_dir(tip: str) -> tuple:
    """A trainer's checkpoint folder: STRING, default '' (no checkpoints)."""
    return ("STRING", {"default": "", "tooltip": tip})


# ---- Text2LIVE's trainers (image: LL_Text2LIVE, video: LL_Text2LIVEVideo); d = their settings

def text2live_clip() -> tuple:
    return ("LL_CLIP", {"tooltip": "CLIP model from LL_LoadCLIP (ViT-B/32 in the paper)."})


def screen_prompt() -> tuple:
    return ("STRING", {"default": "", "tooltip":
            "Text for the green-screen loss; '' = '{prompt} over a green screen.' "
            "and '{prompt} in front of a green screen.'"})


def lambda_screen(d) -> tuple:
    return weight(d.lambda_screen, "Weight of the green-screen CLIP loss.")


def bootstrap_inputs(d, alpha: str) -> dict:
    """bootstrap_weight, bootstrap_steps, relevancy_blocks, distance (in this
    order); ``alpha`` names what the bootstrap compares ("alpha", "frame alpha")."""
    return {
        "bootstrap_weight": weight(d.bootstrap_weight, f"Initial weight of MSE({alpha}, relevancy "
                                   "or mask); 0 = no bootstrapping.", 0.1),
        "bootstrap_steps": ("INT", {"default": d.bootstrap_steps, "min": 0, "max": 100000,
                            "tooltip": "The bootstrap weight falls linearly to 0 over these steps."}),
        "relevancy_blocks": (list(RELEVANCY_BLOCKS), {"default": d.relevancy_blocks, "tooltip":
                             "Relevancy rollout over the last ViT block (paper) or all blocks "
                             "(needed by tiny ViTs such as the toy CLIP)."}),
        "distance": (list(DISTANCES), {"default": d.distance, "tooltip":
                     "CLIP distance: spherical (official code) or cosine."}),
    }


def generator_inputs(g: GeneratorConfig) -> dict:
    """generator_scales, generator_channels (in this order), defaults from ``g``."""
    return {
        "generator_scales": ("INT", {"default": g.scales, "min": 1, "max": 10, "tooltip":
                             "U-Net scales of the generator (paper: 7)."}),
        "generator_channels": ("INT", {"default": g.channels_down, "min": 4, "max": 512, "tooltip":
                               "Channels per scale, down and up (paper: 128)."}),
    }


def generator_config(scales: int, channels: int) -> GeneratorConfig:
    """The generator the two widgets above describe (same channels down and up)."""
    return replace(GeneratorConfig(), scales=scales, channels_down=channels, channels_up=channels)
