"""The measure of how recognisable the toy DDPM's samples are (toyworld/ddpm_quality.py):
its parts against known answers, and that it tells drawn scenes from noise and from
colour fields."""
from __future__ import annotations

import pytest
import torch

from livelayers.toyworld import ddpm_quality as Q

pytestmark = pytest.mark.usefixtures("one_thread")


def test_inception_like_known_answers():
    confident_even = torch.eye(4).repeat(8, 1)                 # each class, sure of it
    assert Q.inception_like(confident_even) == pytest.approx(4.0, rel=1e-5)
    alike = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(32, 1)  # every image the same
    assert Q.inception_like(alike) == pytest.approx(1.0, rel=1e-6)
    two = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]).repeat(4, 1)
    assert Q.inception_like(two) == pytest.approx(2.0, rel=1e-5)


def test_real_scenes_are_recognised_and_noise_and_flat_colour_are_not(toy_clip):
    real, labels = Q.real_scenes(48, 32, seed=1)
    other, _ = Q.real_scenes(48, 32, seed=2)                    # scenes the bar was not set on
    assert real.shape == (48, 3, 32, 32) and 0 <= real.min() and real.max() <= 1
    noise = torch.rand(48, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    flat = torch.rand(48, 3, 1, 1, generator=torch.Generator().manual_seed(1)).expand(48, 3, 32, 32)
    scenes = Q.judge(toy_clip, other, real, labels)["background"]
    assert scenes["real_accuracy"] == 1.0                       # the judge knows backgrounds
    # measured: recognised .94, inception 3.78 (noise .02 / 1.00, flat colour .02 / 2.11)
    assert scenes["recognised"] >= 0.8 and scenes["inception_samples"] > 3.3, scenes
    for fake in (noise, flat):
        got = Q.judge(toy_clip, fake, real, labels)["background"]
        assert got["recognised"] <= 0.1 and got["inception_samples"] < 2.5, got

