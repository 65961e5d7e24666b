"""The toy-model training scripts stop and resume from their run folder
(checkpoint keys written by ``engine.checkpoint.states`` and read back by
``load_states``): stopped after one step, the same call continues from it."""
from __future__ import annotations

import pytest

from livelayers.engine.checkpoint import load_checkpoint
from livelayers.engine.errors import Cancelled
from livelayers.engine.progress import Progress

pytestmark = pytest.mark.usefixtures("one_thread")


def stop_after_first_step() -> Progress:
    return Progress(callback=lambda step, total, info: None, should_stop=lambda: True)


def test_toy_ddpm_stops_and_resumes(tmp_path, capsys):
    from livelayers.toyworld.train_ddpm import train
    kw = dict(steps=2, batch=2, pool=4, save_every=100, run_dir=tmp_path / "run")
    with pytest.raises(Cancelled):
        train(tmp_path / "out", progress=stop_after_first_step(), **kw)
    first = load_checkpoint(tmp_path / "run" / "checkpoint.pt", expect={"kind": "toy_ddpm"})
    assert first["step"] == 1 and not (tmp_path / "out").exists()
    train(tmp_path / "out", **kw)
    assert "resumed at step 1" in capsys.readouterr().out
    last = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert last["step"] == 2 and (tmp_path / "out" / "unet").is_dir()
    # the resumed run trained on from the saved weights: its optimiser saw 2 steps
    assert all(int(s["step"]) == 2 for s in last["opt"]["state"].values())


def test_toy_dino_stops_and_resumes(tmp_path):
    from livelayers.toyworld.train_dino import train
    with pytest.raises(Cancelled):
        train(None, steps=2, batch=8, run_dir=tmp_path / "run", progress=stop_after_first_step())
    first = load_checkpoint(tmp_path / "run" / "checkpoint.pt", expect={"kind": "toy_dino"})
    assert first["step"] == 1
    with pytest.raises(Cancelled):  # resumes at step 1, so the next update is step 2
        train(None, steps=3, batch=8, run_dir=tmp_path / "run", progress=stop_after_first_step())
    second = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert second["step"] == 2
    assert all(int(s["step"]) == 2 for s in second["opt"]["state"].values())
