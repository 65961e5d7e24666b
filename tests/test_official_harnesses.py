"""The harnesses that time the published code (bench/official_*.py) make its
inputs in its own layouts; the published code itself is never shipped, so
these tests check the inputs, and the refusals, without it."""
from __future__ import annotations

import importlib
import json
import sys
import time

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
    ("official_blended_diffusion.py", "not a blended-diffusion clone (missing main.py"),
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
    saved = sys.modules.get("pkg_resources")
    monkeypatch.delattr(F, "_pad", raising=False)
    try:
        t2l.compat_shims()
        assert F._pad is F.pad
        import pkg_resources  # the real one when setuptools ships it, else the shim
        assert pkg_resources.packaging.version.parse("1.10") < pkg_resources.packaging.version.parse("2.0")
    finally:  # leave torch and sys.modules as they were (a shim there breaks pytest's own imports)
        if not had and hasattr(F, "_pad"):
            del F._pad
        sys.modules.pop("pkg_resources", None)
        if saved is not None:
            sys.modules["pkg_resources"] = saved


@pytest.mark.parametrize("args, says", [
    (["bench_text2live.py", "--official", "."], "--official .: the official code runs at the reference "
                                                 "settings only"),
    (["bench_text2live.py", "--settings", "reference", "--official", "."],
     "--official .: not a Text2LIVE clone (missing train_image.py"),
    (["bench_text2live_video.py", "--quick", "--official", "."],
     "--official .: the official code runs at the paper config only"),
    (["bench_text2live_video.py", "--official", "."], "--official .: not a Text2LIVE clone (missing train_video.py"),
    (["bench_atlas.py", "--only", "official"], "--only official needs --official DIR"),
    (["bench_atlas.py", "--official", "."], "--official .: not a layered-neural-atlases clone"),
    (["bench_diffusion.py", "--only", "official"], "--only official needs --official DIR"),
    (["bench_diffusion.py", "--official-python", sys.executable], "--official-python needs --official DIR"),
    (["bench_diffusion.py", "--official", "."], "--official .: not a blended-diffusion clone (missing main.py"),
])
def test_the_benches_refuse_an_official_run_they_cannot_do(tmp_path, args, says):
    import subprocess
    res = subprocess.run([sys.executable, str(ROOT / "bench" / args[0]), *args[1:]], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == "", res.stdout
    assert says in res.stderr, res.stderr


# ---------------------------------------------------------------- Text2LIVE video

def test_true_atlas_has_the_nla_networks_interface_and_is_the_clip(bench_module):
    """The stand-in for the NLA checkpoint, read the way the official dataset
    reads it (util/atlas_utils.get_frames_data / get_high_res_atlas): opacity is
    the true mask, the object's centre maps to one atlas point in every frame at
    the asked atlas pixels per frame pixel, and the atlas colour there is the object's."""
    import torch

    from livelayers.toyworld.clips import make_toy_clip
    t2lv = bench_module("official_text2live_video")
    clip = make_toy_clip(n_frames=5, height=48, width=80, seed=0, shape="circle", colour="red",
                         texture="plain", size=0.3, velocity=(3.0, 1.0))
    grid = 2000
    scale = 1.5                                         # atlas pixels per frame pixel
    fg_map, bg_map, fg_colour, bg_colour, alpha = t2lv.true_atlas(clip, grid, scale)
    assert fg_colour is bg_colour                       # NLA's one atlas network for both layers
    n, _, h, w = clip.frames.shape
    norm = torch.tensor([max(h, w) / 2, max(h, w) / 2, n / 2])
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for t in range(n):
        xyt = torch.stack([xs.flatten(), ys.flatten(), torch.full((h * w,), t)], 1).float() / norm - 1
        a = 0.5 * (alpha(xyt) + 1)                      # the dataset's alpha, before its 0.99 / 0.001
        torch.testing.assert_close(a.view(h, w), clip.masks[t, 0], rtol=0, atol=1e-6)
        uv = fg_map(xyt).view(h, w, 2) * 0.5 + 0.5      # the dataset's foreground UVs in [0, 1]
        cx, cy = (int(c) for c in clip.centres[t])
        px = uv * grid
        assert torch.allclose(px[cy, cx + 1] - px[cy, cx], torch.tensor([scale, 0.0]), atol=1e-3)
        assert torch.allclose(px[cy + 1, cx] - px[cy, cx], torch.tensor([0.0, scale]), atol=1e-3)
        centre_uv = uv[cy, cx] - (torch.tensor(clip.centres[t]).float() - torch.tensor([cx, cy])) * scale / grid
        assert torch.allclose(centre_uv, torch.tensor([0.5, 0.5]), atol=1e-5)
        rgb = 0.5 * (fg_colour(uv[cy, cx][None]) + 1)   # get_high_res_atlas's colours
        assert torch.allclose(rgb[0], clip.frames[t, :, cy, cx], atol=0.05)
        assert bg_map(xyt).abs().max() <= t2lv.MAX_OUT


def test_official_video_config_changes_only_the_clip_texts_and_layer(tmp_path, bench_module):
    import yaml
    t2lv = bench_module("official_text2live_video")
    published = {"resx": 768, "resy": 432, "n_aug": 6, "num_scales": 7, "skip_n33d": 128,
                 "grid_atlas_resolution": 2000, "crops_min_cover": 0.95, "masks_border_expansion": 30,
                 "device": "cuda", "seed": -1, "use_wandb": False}
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "video_config.yaml").write_text(yaml.safe_dump(published))
    cfg = t2lv.official_config(str(tmp_path), "cpu", 5, 432, 768)
    for key in ("n_aug", "num_scales", "skip_n33d", "grid_atlas_resolution", "crops_min_cover",
                "masks_border_expansion"):
        assert cfg[key] == published[key]
    assert (cfg["device"], cfg["seed"], cfg["maximum_number_of_frames"]) == ("cpu", 0, 5)
    assert cfg["finetune_foreground"] and not cfg["finetune_background"]
    assert cfg["checkpoint_path"].split("/")[2] == t2lv.CLIP_NAME     # where it reads data/videos/<name>
    assert cfg["comp_text"] == ["blue circle"] and cfg["src_text"] == ["red circle"]


# ---------------------------------------------------------------- Blended Diffusion

@pytest.mark.parametrize("extra, says", [
    (["--channels", "48"], "--channels: allowed: a multiple of 32 (its group norms have 32 groups)"),
    (["--channels", "0"], "--channels: allowed: 32 or more"),
    (["--steps", "0"], "--steps: allowed: 1 or more"),
    (["--image", "a.png"], "--image and --mask: allowed: both or neither"),
])
def test_blended_diffusion_harness_refuses_bad_settings_before_any_work(tmp_path, bench_module, extra, says):
    """A folder with the files a clone has passes the clone check; the settings
    are then refused before the official code (absent here) is imported."""
    bd = bench_module("official_blended_diffusion")
    for rel in bd.NEEDED:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert bd.checkout_problem(str(tmp_path)) is None
    import subprocess
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "official_blended_diffusion.py"),
                          "--root", str(tmp_path), *extra], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == f"official_blended_diffusion: {says}"


def test_blended_diffusion_shims_give_back_only_what_is_missing(bench_module, monkeypatch):
    """numpy 2 without numpy.core.shape_base gets ``block`` back; lpips builds a
    random VGG (pnet_rand) whatever the caller asks, once wrapped."""
    import types

    import numpy as np
    bd = bench_module("official_blended_diffusion")
    saved = {k: sys.modules.pop(k, None) for k in ("numpy.core.shape_base", "pkg_resources")}
    real_import = __import__("importlib").import_module

    def no_shape_base(name, *a):
        if name == "numpy.core.shape_base":
            raise ImportError(name)
        return real_import(name, *a)
    monkeypatch.setattr("importlib.import_module", no_shape_base)
    try:
        bd.compat_shims()
        assert sys.modules["numpy.core.shape_base"].block is np.block
        import pkg_resources  # the real one when setuptools ships it, else the shim
        assert pkg_resources.packaging.version.parse("0.1") < pkg_resources.packaging.version.parse("1.0")
    finally:  # leave sys.modules as it was for the other tests (a shim there breaks pytest's own imports)
        for name, module in saved.items():
            sys.modules.pop(name, None)
            if module is not None:
                sys.modules[name] = module

    calls = []
    fake = types.SimpleNamespace(LPIPS=lambda *a, **k: calls.append(k) or "model")
    monkeypatch.setitem(sys.modules, "lpips", fake)
    bd.random_lpips()
    bd.random_lpips()  # wrapped once, not twice
    assert fake.LPIPS(net="vgg") == "model" and calls == [{"net": "vgg", "pnet_rand": True}]
    fake.LPIPS(net="vgg", pnet_rand=False)
    assert calls[-1]["pnet_rand"] is True


def test_blended_diffusion_clip_load_reads_the_random_state_whatever_the_name(bench_module, monkeypatch):
    import types
    bd = bench_module("official_blended_diffusion")
    seen = []
    clip = types.SimpleNamespace(load=lambda name, *a, **k: seen.append((name, a, k)) or ("model", None))
    package = types.ModuleType("CLIP")
    package.clip = clip
    monkeypatch.setitem(sys.modules, "CLIP", package)
    monkeypatch.setitem(sys.modules, "CLIP.clip", clip)
    bd.route_clip_load("/tmp/random-ViT-B-16.pt")
    assert clip.load("ViT-B/16", device="cpu", jit=False) == ("model", None)
    assert seen == [("/tmp/random-ViT-B-16.pt", (), {"device": "cpu", "jit": False})]


def test_blended_diffusion_scaled_model_is_saved_where_the_editor_loads_it(tmp_path, bench_module,
                                                                          monkeypatch):
    """The editor's config reaches the clone's create_model_and_diffusion with
    only the width changed; the random UNet it builds is the checkpoint the
    editor then loads (checkpoints/256x256_diffusion_uncond.pt, relative path);
    with fp16 off its convert_to_fp16 does nothing."""
    import types

    import torch
    bd = bench_module("official_blended_diffusion")
    got = []

    def create_model_and_diffusion(**config):
        got.append(config)
        net = torch.nn.Conv2d(3, config["num_channels"], 1)
        net.convert_to_fp16 = lambda: net.half()
        return net, "diffusion"
    editor = types.SimpleNamespace(create_model_and_diffusion=create_model_and_diffusion)
    used = {}
    bd.scale_model(editor, 64, 1, False, used)
    monkeypatch.chdir(tmp_path)
    config = {"image_size": 256, "num_channels": 256, "num_res_blocks": 2, "use_fp16": True,
              "attention_resolutions": "32, 16, 8"}
    model, diffusion = editor.create_model_and_diffusion(**config)
    assert got == [used] and used == {**config, "num_channels": 64, "num_res_blocks": 1, "use_fp16": False}
    state = torch.load(tmp_path / "checkpoints" / "256x256_diffusion_uncond.pt", weights_only=True)
    assert set(state) == {"weight", "bias"} and torch.equal(state["weight"], model.weight)
    model.convert_to_fp16()
    assert model.weight.dtype == torch.float32 and diffusion == "diffusion"
    editor = types.SimpleNamespace(create_model_and_diffusion=create_model_and_diffusion)
    bd.scale_model(editor, 64, 1, True, {})   # fp16 as the editor sets it: converted
    half, _ = editor.create_model_and_diffusion(**config)
    half.convert_to_fp16()
    assert half.weight.dtype == torch.float16


def test_blended_diffusion_steps_are_timed_without_the_editors_work_between_them(bench_module):
    """The official loop's steps take 0.05 s, the editor's own work on each
    sample (figures, metrics) 0.3 s: the step times are the 0.05 s, and the
    loop is stopped after the warm-up + the timed steps."""
    import types
    bd = bench_module("official_blended_diffusion")
    made = []

    def p_sample_loop_progressive(*args, **kwargs):
        for j in range(75):
            time.sleep(0.05)
            made.append(j)
            yield {"sample": j}

    def edit_image_by_prompt():
        for _ in editor.diffusion.p_sample_loop_progressive("model", (4, 3, 256, 256)):
            time.sleep(0.3)
    editor = types.SimpleNamespace(diffusion=types.SimpleNamespace(
        p_sample_loop_progressive=p_sample_loop_progressive), edit_image_by_prompt=edit_image_by_prompt)
    times = bd.time_sampling(editor, steps=2, cuda=False)
    assert made == [0, 1, 2] and len(times) == 3
    assert all(0.045 < t < 0.2 for t in times), times


def test_blended_diffusion_test_inputs_and_arguments(tmp_path, bench_module, monkeypatch):
    """The plain test image is 256² RGB with the mask's centre square white;
    the editor's arguments come from the clone's own parser with this bench's
    inputs (a stand-in parser here: the clone is not in CI)."""
    bd = bench_module("official_blended_diffusion")
    image, mask = bd.test_inputs(str(tmp_path))
    img, m = np.asarray(Image.open(image)), np.asarray(Image.open(mask))
    assert img.shape == (256, 256, 3) and tuple(img[128, 128]) == (200, 30, 30)
    assert m.shape == (256, 256) and m[128, 128] == 255 and m[10, 10] == 0 and (m > 0).mean() == 0.25
    (tmp_path / "optimization").mkdir()
    (tmp_path / "optimization" / "arguments.py").write_text(
        "import argparse, sys\n"
        "def get_arguments():\n"
        "    p = argparse.ArgumentParser()\n"
        "    for a in ('-p', '-i', '--mask', '--output_path', '--batch_size', '--aug_num', '--iterations_num'):\n"
        "        p.add_argument(a)\n"
        "    p.add_argument('--skip_timesteps', default=25)\n"
        "    return p.parse_args()\n")
    # sys.path by hand, so that the finally below undoes exactly this
    sys.path.insert(0, str(tmp_path))
    monkeypatch.delitem(sys.modules, "optimization", raising=False)
    monkeypatch.delitem(sys.modules, "optimization.arguments", raising=False)
    argv = list(sys.argv)
    try:
        args = bd.official_args(image, mask, 4, 8)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("optimization", None), sys.modules.pop("optimization.arguments", None)
    assert sys.argv == argv   # restored
    assert (args.p, args.i, args.mask, args.batch_size, args.aug_num, args.skip_timesteps) == (
        bd.PROMPT, image, mask, "4", "8", 25)
    assert args.output_path == "output" and args.iterations_num == "1"


def test_reference_design_makes_the_official_codes_passes(bench_module, toy_clip, one_thread):
    """Read from the official code: per step two UNet passes on all samples
    (one without grad) and one CLIP batch of samples x views; ours: one UNet
    pass (with grad) and the same CLIP batch."""
    import torch

    from livelayers.engine.models.diffusion import load_diffusion
    bench = bench_module("bench_diffusion")
    handle = load_diffusion(str(ROOT / "tests" / "assets" / "toy_ddpm"), device="cpu", offline=True)
    unet_calls, clip_calls = [], []
    encode = toy_clip.encode_image
    hook = handle.unet.register_forward_pre_hook(
        lambda module, args: unet_calls.append((args[0].shape[0], torch.is_grad_enabled())))
    toy_clip.encode_image = lambda x, *a: clip_calls.append(x.shape[0]) or encode(x, *a)
    try:
        x, m = bench.scene(handle.sample_size)
        times = bench.reference_step_times(handle, toy_clip, x, m, samples=3, k=1, views=4)
        assert len(times) == 2
        assert unet_calls == [(3, False), (3, True)] * 2 and clip_calls == [12, 12]
        unet_calls.clear(), clip_calls.clear()
        times = bench.ours_step_times(handle, toy_clip, x, m, samples=3, k=1, views=4)
        assert len(times) == 2
        assert unet_calls == [(3, True)] * 2 and clip_calls == [12, 12]
    finally:
        hook.remove()
        toy_clip.encode_image = encode
