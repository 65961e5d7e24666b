"""What the shipped toy CLIP v2 (`toy-clip-v2`) knows: zero-shot accuracy of the committed weights
on the fixed held-out set the training log reports (400 single-object scenes,
seed 12345, each attribute picked among all its values from text alone).

These are properties of files in the repository, so they are asserted here;
docs/models.md gives the measured numbers and the training curve."""
from __future__ import annotations

import json

import pytest

# Measured on the committed weights (see docs/models.md); each floor sits
# below its measurement with margin, and at the bar (shape and
# texture >= 0.8, colour and background >= 0.95).
FLOORS = {"colour": 0.95, "background": 0.95, "shape": 0.80, "texture": 0.80}


@pytest.fixture(scope="module")
def accuracy(toy_clip_v2):
    from livelayers.toyworld.train_clip import zero_shot_accuracy
    return zero_shot_accuracy(toy_clip_v2.model, toy_clip_v2.tokenizer)


def test_zero_shot_accuracy_of_the_shipped_toy_clip_v2(accuracy):
    print(accuracy)
    for attr, floor in FLOORS.items():
        assert accuracy[attr] >= floor, (attr, accuracy)


def test_the_config_records_what_the_weights_score(accuracy, toy_clip_v2_dir):
    """The accuracy written beside the weights at training time is what they
    score now (fp16 storage changes it by at most a scene or two)."""
    recorded = json.loads((toy_clip_v2_dir / "open_clip_config.json").read_text())["livelayers"]
    for attr, value in recorded["zero_shot"].items():
        assert abs(accuracy[attr] - value) <= 0.01, (attr, value, accuracy[attr])
    assert recorded["curve"][-1]["step"] == recorded["trained_steps"]
