"""The harnesses that time the published code (bench/official_*.py) make its
inputs in its own layouts; the published code itself is never shipped, so
these tests check the inputs, and the refusals, without it."""
from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
from PIL import Image

from doc_blocks import ROOT


@pytest.fixture()
def bench_module():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_nla_data_folder_is_the_bench_clip_in_nla_layout(tmp_path, bench_module):
    """Frames, masks and both flows under NLA's file names; the background's
    flow is the clip's pan (-1, 0) px per frame, the masks are the true ones."""
    from livelayers.toyworld.clips import make_toy_clip
    nla = bench_module("official_nla")
    frames_dir = nla.write_clip(str(tmp_path), n_frames=4, size=32)
    clip = make_toy_clip(n_frames=4, height=32, width=32, seed=0)
    names = sorted(p.name for p in (tmp_path / "toy").iterdir())
    assert frames_dir == str(tmp_path / "toy") and names == [f"{t:05d}.png" for t in range(4)]
    for t, name in enumerate(names):
        rgb = np.asarray(Image.open(tmp_path / "toy" / name)) / 255.0
        assert np.abs(rgb - clip.frames[t].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6
        mask = np.asarray(Image.open(tmp_path / "toy_maskrcnn" / name)) > 127
        assert (mask == (clip.masks[t, 0].numpy() > 0.5)).all()
    flows = sorted(p.name for p in (tmp_path / "toy_flow").iterdir())
    assert flows == sorted(f"{a}_{b}.npy" for i in range(3) for a, b in
                           ((names[i], names[i + 1]), (names[i + 1], names[i])))
    fwd = np.load(tmp_path / "toy_flow" / f"{names[0]}_{names[1]}.npy")
    bwd = np.load(tmp_path / "toy_flow" / f"{names[1]}_{names[0]}.npy")
    assert fwd.shape == (32, 32, 2) and fwd.dtype == np.float32
    background = clip.masks[0, 0].numpy() < 0.5
    assert np.median(fwd[..., 0][background]) == pytest.approx(-1.0, abs=0.25)
    assert np.median(bwd[..., 0][background]) == pytest.approx(1.0, abs=0.25)


def test_nla_config_keeps_the_published_sizes_and_changes_only_the_inputs(tmp_path, bench_module):
    nla = bench_module("official_nla")
    published = {"samples_batch": 10000, "number_of_channels_atlas": 256, "number_of_layers_atlas": 8,
                 "resx": 768, "resy": 432, "iters_num": 400000, "pretrain_iter_number": 100,
                 "data_folder": "data/blackswan", "rgb_coeff": 5000}
    (tmp_path / "clone" / "config").mkdir(parents=True)
    (tmp_path / "clone" / "config" / "config.json").write_text(json.dumps(published))
    path = nla.write_config(str(tmp_path / "clone"), str(tmp_path), "/data/toy", 8, 64, 3, 10000)
    cfg = json.loads(open(path).read())
    assert (cfg["number_of_channels_atlas"], cfg["number_of_layers_atlas"], cfg["rgb_coeff"]) == (256, 8, 5000)
    assert (cfg["resx"], cfg["resy"], cfg["maximum_number_of_frames"]) == (64, 64, 8)
    assert (cfg["iters_num"], cfg["samples_batch"], cfg["data_folder"]) == (5, 10000, "/data/toy")
    assert cfg["evaluate_every"] > cfg["iters_num"] and cfg["pretrain_iter_number"] == 1


@pytest.mark.parametrize("script, says", [
    ("official_nla.py", "not a layered-neural-atlases clone (missing train.py"),
    ("official_text2live.py", "not a Text2LIVE clone (missing train_image.py"),
])
def test_a_folder_that_is_not_the_clone_is_refused_before_any_work(tmp_path, script, says):
    import subprocess
    res = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert says in res.stderr and "allowed: a clone of github.com/" in res.stderr


def test_text2live_shims_give_back_only_what_is_missing(bench_module, monkeypatch):
    import torch.nn.functional as F
    t2l = bench_module("official_text2live")
    had = hasattr(F, "_pad")
    monkeypatch.delattr(F, "_pad", raising=False)
    try:
        t2l.compat_shims()
        assert F._pad is F.pad
    finally:
        if not had and hasattr(F, "_pad"):
            del F._pad  # leave torch as it was for the other tests
    import pkg_resources  # the real one when setuptools ships it, else the shim
    assert pkg_resources.packaging.version.parse("1.10") < pkg_resources.packaging.version.parse("2.0")


@pytest.mark.parametrize("args, says", [
    (["bench_text2live.py", "--official", "."], "--official .: the official code runs at the reference "
                                                 "settings only"),
    (["bench_text2live.py", "--settings", "reference", "--official", "."],
     "--official .: not a Text2LIVE clone (missing train_image.py"),
    (["bench_atlas.py", "--only", "official"], "--only official needs --official DIR"),
    (["bench_atlas.py", "--official", "."], "--official .: not a layered-neural-atlases clone"),
])
def test_the_benches_refuse_an_official_run_they_cannot_do(tmp_path, args, says):
    import subprocess
    res = subprocess.run([sys.executable, str(ROOT / "bench" / args[0]), *args[1:]], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == "", res.stdout
    assert says in res.stderr, res.stderr
