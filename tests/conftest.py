"""Shared fixtures. Tests run on the CPU, offline, with the toy models only."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="session")
def assets() -> Path:
    return ASSETS


@pytest.fixture(scope="session")
def toy_clip_dir() -> Path:
    return ASSETS / "toy_clip"


@pytest.fixture(scope="session")
def toy_clip(toy_clip_dir):
    """The toy open_clip model as a CLIPHandle (CPU, fp32)."""
    from livelayers.engine.models.clip import load_clip
    return load_clip(f"local-dir:{toy_clip_dir}", device="cpu")
