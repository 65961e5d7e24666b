"""Weight resolution order, offline errors, and the plugin.json catalogue."""
from __future__ import annotations

import argparse
import json

import pytest

from livelayers.engine.errors import ModelNotFoundError
from livelayers.engine.models import catalogue, resolve


def _clip_folder(path, tag="x"):
    """A folder that looks like an open_clip local-dir (resolution never loads it)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {}, "tag": tag}))
    (path / "open_clip_model.safetensors").write_bytes(tag.encode() * 10)
    return path


def _hf_cache(cache, repo, files):
    """A Hugging Face hub cache holding one snapshot of ``repo`` (the on-disk layout
    huggingface_hub reads with local_files_only=True)."""
    base = cache / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    for name, data in files.items():
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_bytes(data)
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(snap.name)
    return snap


@pytest.fixture
def env(tmp_path, monkeypatch):
    """$LIVELAYERS_MODELS, a ComfyUI-like folder and an HF cache, all empty."""
    models, comfy, hf = tmp_path / "models", tmp_path / "comfy_clip", tmp_path / "hf"
    for p in (models, comfy, hf):
        p.mkdir()
    monkeypatch.setenv("LIVELAYERS_MODELS", str(models))
    return models, comfy, hf


CLIP_FILES = {"open_clip_config.json": b'{"model_cfg": {}}', "open_clip_model.safetensors": b"w" * 8}


def test_resolution_order(env, tmp_path):
    models, comfy, hf = env
    spec = "hf-hub:someorg/tiny-clip"
    snap = _hf_cache(hf, "someorg/tiny-clip", CLIP_FILES)
    kw = dict(offline=True, search_dirs=[str(comfy)], hf_cache_dir=str(hf))
    # only the HF cache has it
    r = resolve.resolve_clip(spec, **kw)
    assert (r.source, r.local_dir) == ("hf-cache", str(snap))
    # ComfyUI's folder beats the HF cache
    in_comfy = _clip_folder(comfy / "tiny-clip", "comfy")
    assert resolve.resolve_clip(spec, **kw).path == str(in_comfy)
    # $LIVELAYERS_MODELS/<kind>/<org--repo> beats both
    in_env = _clip_folder(models / "clip" / "someorg--tiny-clip", "env")
    r = resolve.resolve_clip(spec, **kw)
    assert (r.source, r.path) == ("env", str(in_env))
    # an explicit path beats everything
    explicit = _clip_folder(tmp_path / "mine", "explicit")
    r = resolve.resolve_clip(f"local-dir:{explicit}", **kw)
    assert (r.source, r.local_dir) == ("explicit", str(explicit))
    assert resolve.resolve_model(str(explicit), "clip", **kw) == str(explicit)


def test_offline_missing_model_says_what_to_fetch_and_where(env):
    models, comfy, hf = env
    with pytest.raises(ModelNotFoundError) as e:
        resolve.resolve("dino-vitb8", "dino", offline=True, hf_cache_dir=str(hf))
    msg = str(e.value)
    assert "python -m livelayers models fetch dino-vitb8" in msg
    assert str(models / "dino" / "dino-vitb8") in msg
    assert "HF_HUB_OFFLINE" in msg
    # a hub repo that is not in the catalogue: the huggingface-cli command instead
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download acme/thing"):
        resolve.resolve("acme/thing", "diffusion-latent", offline=True, hf_cache_dir=str(hf))


def test_offline_follows_hf_hub_offline_and_online_returns_the_hub_id(env, monkeypatch):
    models, comfy, hf = env
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError):
        resolve.resolve_model("acme/thing", "diffusion-latent", hf_cache_dir=str(hf))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    # allowed to download: the answer is what to download (nothing is fetched here)
    assert resolve.resolve_model("acme/thing", "diffusion-latent", hf_cache_dir=str(hf)) == "acme/thing"
    r = resolve.resolve_clip("ViT-B-32/openai", hf_cache_dir=str(hf))
    assert (r.source, r.name, r.pretrained) == ("download", "ViT-B-32", "openai")
    assert r.quick_gelu  # OpenAI weights need QuickGELU; the plain config would be wrong


def test_single_file_models_in_search_folders(env):
    models, comfy, hf = env
    (models / "diffusion-pixel").mkdir()
    f = models / "diffusion-pixel" / "guided-diffusion-256-uncond.pt"
    f.write_bytes(b"weights")
    r = resolve.resolve("guided-diffusion-256-uncond", "diffusion-pixel", offline=True)
    assert (r.source, r.path) == ("env", str(f))


# ------------------------------------------------------------------ catalogue

def test_repo_catalogue_is_well_formed():
    entries = catalogue.load_catalogue()
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids))
    assert {"toy-clip", "openai-vit-b-32", "sd-2-1-base", "guided-diffusion-256-uncond",
            "dino-vitb8"} <= set(ids)
    for e in entries:
        assert e["kind"] in catalogue.KINDS and e["licence"] and e["description"]
        assert e["source"].startswith(("hf-hub:", "local-dir:", "https://"))
        assert e["files"] and all("path" in f and "sha256" in f for f in e["files"])
    gd = catalogue.get_entry("guided-diffusion-256-uncond")
    assert "research" in gd["licence"].lower()


@pytest.fixture
def local_catalogue(tmp_path):
    """A plugin.json with one local model whose hashes are recorded."""
    model = _clip_folder(tmp_path / "toy", "toy")
    plugin = tmp_path / "plugin.json"
    plugin.write_text(json.dumps({"id": "livelayers", "version": "0.1.0", "nodes": ["keep"],
                                  "models": [{"id": "toy", "kind": "clip",
                                              "source": f"local-dir:{model}", "files": [],
                                              "licence": "MIT", "description": "t"}]}))
    assert catalogue.update_hashes(path=plugin) == ["toy"]
    return plugin, model


def test_update_hashes_records_files_and_keeps_other_keys(local_catalogue):
    plugin, model = local_catalogue
    data = json.loads(plugin.read_text())
    assert data["nodes"] == ["keep"]
    files = {f["path"]: f for f in data["models"][0]["files"]}
    assert set(files) == {"open_clip_config.json", "open_clip_model.safetensors"}
    w = model / "open_clip_model.safetensors"
    assert files[w.name]["sha256"] == catalogue.sha256_file(w) and files[w.name]["size"] == 30


def test_verify_detects_a_flipped_byte_and_a_missing_file(local_catalogue):
    plugin, model = local_catalogue
    report = catalogue.verify_models(path=plugin)
    assert report.ok and report.exit_code == 0 and report.models[0].status == "ok"
    w = model / "open_clip_model.safetensors"
    data = bytearray(w.read_bytes())
    data[3] ^= 0x01
    w.write_bytes(bytes(data))
    report = catalogue.verify_models(path=plugin)
    assert not report.ok and report.exit_code == 1
    assert report.models[0].status == "mismatch"
    bad = [f for f in report.models[0].files if f.status != "ok"]
    assert [(f.path, f.status) for f in bad] == [(str(w), "hash mismatch")]
    w.unlink()
    report = catalogue.verify_models(path=plugin)
    assert report.models[0].status == "missing" and "missing" in report.format()
    # the whole catalogue: what is not on this machine is listed, not a failure;
    # a model named on the command line must be here
    assert report.exit_code == 0 and "can be fetched" in report.format()
    named = catalogue.verify_models([report.models[0].id], path=plugin)
    assert named.exit_code == 1 and "PROBLEMS" in named.format()
    with pytest.raises(ValueError, match="unknown model id"):
        catalogue.verify_models(["nope"], path=plugin)


def test_hub_files_without_hash_are_unchecked_not_ok(env, monkeypatch):
    models, comfy, hf = env
    _clip_folder(models / "clip" / "openai-vit-b-32")  # config + weights present, no sha256 known
    report = catalogue.verify_models(["openai-vit-b-32"])
    m = report.models[0]
    assert m.status == "unchecked" and report.exit_code == 0
    assert {f.status for f in m.files} == {"unchecked"}


def test_fetch_offline_is_a_clear_error(env):
    with pytest.raises(ModelNotFoundError, match="models fetch sd-2-1-base"):
        catalogue.fetch_model("sd-2-1-base", allow_download=False)
    with pytest.raises(ValueError, match="unknown model id"):
        catalogue.fetch_model("no-such-model", allow_download=False)


def test_cli_verify_exit_codes(local_catalogue, monkeypatch, capsys):
    plugin, model = local_catalogue
    monkeypatch.setattr(catalogue, "PLUGIN_JSON", plugin)
    parser = argparse.ArgumentParser()
    catalogue.register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "verify", "toy"])
    assert args.func(args) == 0
    (model / "open_clip_config.json").write_text("changed")
    capsys.readouterr()
    args = parser.parse_args(["models", "verify", "--json"])
    assert args.func(args) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["models"][0]["status"] == "mismatch"
    args = parser.parse_args(["models", "list", "--json"])
    assert args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["id"] == "toy" and rows[0]["location"] == str(model)
    args = parser.parse_args(["models", "fetch", "toy", "--offline"])
    assert args.func(args) == 0  # local models need no download: it says where they are
    assert str(model) in capsys.readouterr().out


def test_docs_update_hashes_command_on_a_copy_of_plugin_json(tmp_path, monkeypatch, capsys):
    """docs/models.md's `python -c "...update_hashes(['toy-clip'])"`, run verbatim
    in-process against a copy of plugin.json (run as is it would rewrite the
    package's own file): it reports toy-clip and records the files as they are."""
    import shlex
    import shutil
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    command = next(line for line in doc.splitlines()
                   if line.startswith("python -c") and "update_hashes" in line)
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-c"]
    real = catalogue.PLUGIN_JSON
    copy = tmp_path / "plugin.json"
    shutil.copy(real, copy)
    monkeypatch.setattr(catalogue, "PLUGIN_JSON", copy)
    exec(compile(argv[2], "<docs/models.md>", "exec"), {})
    assert capsys.readouterr().out.strip() == "['toy-clip']"
    recorded = {f["path"]: f for f in catalogue.get_entry("toy-clip", copy)["files"]}
    shipped = catalogue.manifest.shipped_folder(catalogue.get_entry("toy-clip", real))
    assert set(recorded) == {"open_clip_config.json", "open_clip_model.safetensors"}
    for name, f in recorded.items():
        assert f["sha256"] == catalogue.sha256_file(shipped / name)
        assert f["size"] == (shipped / name).stat().st_size
