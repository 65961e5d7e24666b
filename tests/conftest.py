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


def _load_cpu_clip(folder: Path):
    from livelayers.engine.models.clip import load_clip
    return load_clip(f"local-dir:{folder}", device="cpu")


@pytest.fixture(scope="session")
def toy_clip_dir() -> Path:
    return ASSETS / "toy_clip"


@pytest.fixture(scope="session")
def toy_clip(toy_clip_dir):
    """The toy open_clip model as a CLIPHandle (CPU, fp32)."""
    return _load_cpu_clip(toy_clip_dir)


@pytest.fixture(scope="session")
def toy_clip_v2_dir() -> Path:
    return ASSETS / "toy_clip_v2"


@pytest.fixture(scope="session")
def toy_clip_v2(toy_clip_v2_dir):
    """The toy CLIP trained with the v2 recipe (knows shapes and textures)."""
    return _load_cpu_clip(toy_clip_v2_dir)


@pytest.fixture(scope="module")
def random_clip():
    """A toy-sized open_clip model with random weights, wrapped as a CLIPHandle."""
    import torch

    from livelayers.engine.models.clip import handle_from_model
    from livelayers.toyworld.train_clip import build_model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model()
    return handle_from_model(model)


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for the module: on a shared 2-core machine two
    threads spin against other jobs and run several times slower. Restored after."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
