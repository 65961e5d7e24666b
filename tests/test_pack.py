"""The pack as ComfyUI and ComfyUI-Manager see it."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_NODES = {"LL_LoadImage", "LL_LoadCLIP", "LL_Composite", "LL_SaveEXR", "LL_Relevancy",
                  "LL_Text2LIVE", "LL_ApplyGenerator", "LL_AtlasDecompose", "LL_LoadAtlas",
                  "LL_AtlasExtract", "LL_AtlasRender", "LL_LoadDiffusion", "LL_BlendedDiffusion",
                  "LL_BlendedLatentDiffusion", "LL_LoadDINO", "LL_LearnableRegions"}


def import_like_comfyui(pack_dir: Path):
    """What ComfyUI's load_custom_node does: the module name is the absolute
    path of the folder, loaded from its __init__.py with spec_from_file_location."""
    name = str(pack_dir).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, pack_dir / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def comfy_pack(tmp_path_factory):
    custom_nodes = tmp_path_factory.mktemp("custom_nodes")
    pack = custom_nodes / "ComfyUI-LiveLayers"
    ignore = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "out", "runs",
                                    "*.egg-info")
    shutil.copytree(ROOT, pack, ignore=ignore)
    return import_like_comfyui(pack)


def test_pack_imports_under_an_absolute_path_name(comfy_pack):
    assert EXPECTED_NODES <= set(comfy_pack.NODE_CLASS_MAPPINGS)
    # The copy must use its own modules, not the pip-installed livelayers.
    cls = comfy_pack.NODE_CLASS_MAPPINGS["LL_SaveEXR"]
    assert cls.__module__.startswith(comfy_pack.__name__)
    assert "comfy" not in sys.modules and "folder_paths" not in sys.modules


def test_every_node_follows_the_classic_contract(comfy_pack):
    for name, cls in comfy_pack.NODE_CLASS_MAPPINGS.items():
        assert cls.__name__ == name
        assert cls.CATEGORY.startswith("LiveLayers/"), name
        assert getattr(cls, "DESCRIPTION", ""), f"{name} has no DESCRIPTION"
        assert callable(getattr(cls, cls.FUNCTION)), name
        assert isinstance(cls.RETURN_TYPES, tuple), name
        assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES), name
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for inp, entry in (spec.get(section) or {}).items():
                opts = entry[1] if len(entry) > 1 else {}
                assert opts.get("tooltip"), f"{name}.{inp} has no tooltip"
        assert name in comfy_pack.NODE_DISPLAY_NAME_MAPPINGS, name


def test_plugin_manifest_lists_the_nodes_and_models():
    manifest = json.loads((ROOT / "plugin.json").read_text())
    from livelayers import NODE_CLASS_MAPPINGS, __version__
    assert manifest["id"] == "livelayers"
    assert manifest["version"] == __version__
    assert sorted(manifest["nodes"]) == sorted(NODE_CLASS_MAPPINGS)
    for model in manifest["models"]:
        assert {"id", "kind", "source", "files", "licence"} <= set(model), model.get("id")


def test_cli_lists_its_commands():
    out = subprocess.run([sys.executable, "-m", "livelayers", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("run", "demo", "models", "export-job"):
        assert command in out


def test_install_py_keeps_the_installed_torch(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "install.py"), "--dry-run"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    import importlib.metadata
    assert f"torch=={importlib.metadata.version('torch')}" in out
    assert "-m pip install -c" in out
    for req in ("open_clip_torch", "diffusers", "OpenImageIO"):
        assert req in out
    reqs = (ROOT / "requirements.txt").read_text()
    assert "\ntorch" not in reqs and not reqs.startswith("torch")


def test_nodes_train_even_under_comfyui_inference_mode():
    """ComfyUI runs every node inside torch.inference_mode(); relevancy needs
    gradients through CLIP, and the loader's weights must be usable by autograd."""
    import torch
    from livelayers.nodes import NODE_CLASS_MAPPINGS as N
    from livelayers.toyworld import scenes
    import numpy as np

    scene = scenes.random_scene(np.random.default_rng(3), 2, distinct=True)
    img, masks = scenes.render_scene(scene, 64)
    with torch.inference_mode():
        image = torch.from_numpy(img)[None]  # an inference tensor, as ComfyUI would pass
        (clip,) = N["LL_LoadCLIP"]().load("toy-clip", "cpu", "fp32")
        obj = scene.objects[0]
        (mask,) = N["LL_Relevancy"]().run(clip, image, f"a {obj.colour} shape", "", "all", "")
    assert mask.shape == (1, 64, 64)
    peak = np.unravel_index(mask[0].argmax().item(), (64, 64))
    assert masks[0][peak] > 0.5  # the map still finds the named object


def test_pyproject_lists_every_package():
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"livelayers"} | {
        "livelayers." + ".".join(p.parent.relative_to(ROOT).parts)
        for p in ROOT.glob("*/**/__init__.py")
        if p.parent.relative_to(ROOT).parts[0] in ("engine", "nodes", "toyworld", "ui")}
    assert found == listed


def test_install_models_fetch_failure_is_one_line(monkeypatch, capsys):
    """`python install.py --models ID` on a machine without network: one line, exit 1."""
    import importlib.util
    from livelayers.engine.models import catalogue
    from livelayers.engine.models.resolve import DownloadError
    spec = importlib.util.spec_from_file_location("ll_install", ROOT / "install.py")
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)

    def offline(model_id, **kw):
        raise DownloadError(f"could not download {model_id}: <urlopen error [Errno -3] no network>")
    monkeypatch.setattr(catalogue, "fetch_model", offline)
    monkeypatch.setattr(install, "_catalogue", lambda: catalogue)
    assert install.models(["sd-2-1-base"], dry_run=False) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["livelayers install: sd-2-1-base: could not download sd-2-1-base: "
                   "<urlopen error [Errno -3] no network>"]
