"""Text2LIVE (Bar-Tal et al., ECCV 2022) for images: a generator trained on one
image to produce a text-driven RGBA edit layer.

- ``generator.py``  the Deep-Image-Prior skip U-Net, inference (one pass or tiled), files
- ``augment.py``    the internal dataset's crops and the CLIP views (differentiable)
- ``losses.py``     every loss term as a pure function
- ``settings.py``   ``Text2LIVESettings``: every number, with the paper's defaults
- ``trainer.py``    ``train_text2live`` (checkpoints, resume, previews) and ``render``

See docs/text2live.md.
"""
from .generator import (GeneratorConfig, SkipGenerator, apply_generator, load_generator,
                        save_generator)
from .settings import TEMPLATES, Text2LIVESettings
from .trainer import TrainResult, render, train_text2live

__all__ = ["GeneratorConfig", "SkipGenerator", "apply_generator", "load_generator", "save_generator",
           "TEMPLATES", "Text2LIVESettings", "TrainResult", "render", "train_text2live"]
