"""A model copy is checked before any loader uses it; a malformed plugin.json is
one clear error; ``models fetch`` failures are one line and never leave half a
folder (engine/models/manifest.py, resolve.py, catalogue.py)."""
from __future__ import annotations

import json
import shutil
import urllib.error

import pytest

from livelayers.engine.errors import CorruptFileError, ModelNotFoundError
from livelayers.engine.models import catalogue, manifest, resolve

FIX = "python -m livelayers models fetch"


def _load_dino(spec):
    from livelayers.engine.models.dino import load_dino
    return load_dino(spec, device="cpu", offline=True)


def _load_ddpm(spec):
    from livelayers.engine.models.diffusion import load_diffusion
    return load_diffusion(spec, device="cpu", offline=True)


def _load_clip(spec):
    from livelayers.engine.models.clip import load_clip
    return load_clip(spec, device="cpu", offline=True)


# (loader, catalogue id, shipped folder, the file to damage)
LOADERS = [(_load_dino, "toy-dino", "toy_dino", "model.safetensors"),
           (_load_ddpm, "toy-ddpm", "toy_ddpm", "unet/diffusion_pytorch_model.safetensors"),
           (_load_clip, "toy-clip", "toy_clip", "open_clip_model.safetensors")]


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setenv("LIVELAYERS_MODELS", str(root))
    return root


def _copy(assets, folder, models_dir, model_id):
    kind = manifest.get_entry(model_id)["kind"]
    dest = models_dir / kind / model_id
    shutil.copytree(assets / folder, dest)
    return dest


@pytest.mark.parametrize("load, model_id, folder, damaged", LOADERS, ids=[m[1] for m in LOADERS])
def test_a_truncated_copy_is_refused_with_the_fetch_command(assets, models_dir, load, model_id,
                                                            folder, damaged):
    copy = _copy(assets, folder, models_dir, model_id)
    size = (copy / damaged).stat().st_size
    with open(copy / damaged, "r+b") as f:
        f.truncate(size // 2)  # what an interrupted copy or download leaves
    with pytest.raises(CorruptFileError) as e:
        load(model_id)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"model '{model_id}'" in msg and damaged in msg
    assert f"expected {size} bytes, found {size // 2}" in msg
    assert f"{FIX} {model_id}" in msg
    # the command the message gives repairs the copy, and the model loads again
    assert catalogue.fetch_model(model_id) == copy
    assert (copy / damaged).stat().st_size == size
    load(model_id)


def test_a_sha256_mismatch_of_the_right_size_is_refused(assets, models_dir):
    copy = _copy(assets, "toy_dino", models_dir, "toy-dino")
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-5] ^= 0x40  # same size, different content (a weight byte, the header still parses)
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"file model\.safetensors .* wrong content: expected "
                                               r"sha256 .* fix: `python -m livelayers models fetch toy-dino`"):
        _load_dino("toy-dino")
    # an explicit path is the user's own folder: it is loaded as it is
    _load_dino(str(copy))


def test_a_missing_file_is_refused(assets, models_dir):
    copy = _copy(assets, "toy_dino", models_dir, "toy-dino")
    (copy / "config.json").unlink()
    with pytest.raises(CorruptFileError, match=r"file config\.json .* is missing"):
        _load_dino("toy-dino")


def test_the_shipped_folder_itself_says_how_to_regenerate(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"x" * 10)
    entry = {"id": "toy", "kind": "dino", "source": f"local-dir:{folder}",
             "regenerate": "python -m make_toy --out here",
             "files": [{"path": "w.bin", "sha256": None, "size": 11}]}
    with pytest.raises(CorruptFileError, match=r"expected 11 bytes, found 10 .*regenerate it: "
                                               r"`python -m make_toy --out here`"):
        resolve.resolve_entry(entry, offline=True)
    assert resolve.resolve_entry(entry, offline=True, verify=False).path == str(folder)


def test_the_hash_cache_hashes_each_file_once(assets, models_dir, monkeypatch):
    copy = _copy(assets, "toy_dino", models_dir, "toy-dino")
    calls = []
    real = manifest.sha256_file
    monkeypatch.setattr(manifest, "sha256_file", lambda p, *a: calls.append(str(p)) or real(p, *a))
    hashed = {f["path"] for f in manifest.get_entry("toy-dino")["files"] if f.get("sha256")}
    resolve.resolve("toy-dino", "dino", offline=True)
    assert sorted(calls) == sorted(str(copy / p) for p in hashed)
    calls.clear()
    resolve.resolve("toy-dino", "dino", offline=True)
    _load_dino("toy-dino")
    assert calls == []  # same path, size and mtime: not hashed again
    # rewriting a file changes its mtime: that file (only) is hashed again
    (copy / "README.md").write_bytes((copy / "README.md").read_bytes())
    resolve.resolve("toy-dino", "dino", offline=True)
    assert calls == [str(copy / "README.md")]


# -------------------------------------------------------- a malformed plugin.json

@pytest.fixture
def broken_plugin(tmp_path, monkeypatch):
    plugin = tmp_path / "plugin.json"
    plugin.write_text('{"id": "livelayers", "models": [{"id": "a", "source": "x"},]}')
    monkeypatch.setattr(manifest, "PLUGIN_JSON", plugin)
    monkeypatch.setattr(catalogue, "PLUGIN_JSON", plugin)
    return plugin


def test_a_malformed_plugin_json_is_one_clear_error(broken_plugin, assets):
    for spec, kind in (("toy-dino", "dino"), ("facebook/dino-vitb8", "dino"), ("ViT-B-32/openai", "clip")):
        with pytest.raises(CorruptFileError) as e:
            resolve.resolve(spec, kind, offline=True)
        msg = str(e.value)
        assert str(broken_plugin) in msg and "not valid JSON" in msg and "line 1 column" in msg
        assert "\n" not in msg
    # an explicit path never reads the catalogue, so it still works
    assert resolve.resolve(str(assets / "toy_dino"), "dino").source == "explicit"
    _load_dino(f"local-dir:{assets / 'toy_dino'}")


def test_models_commands_report_a_malformed_plugin_json_in_one_line(broken_plugin, capsys):
    from livelayers.__main__ import main
    for argv in (["models", "list"], ["models", "verify"], ["models", "fetch", "a"]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        lines = (out + err).strip().splitlines()
        assert len(lines) == 1 and str(broken_plugin) in lines[0] and "Traceback" not in out + err


def test_entries_without_id_are_refused(tmp_path):
    plugin = tmp_path / "plugin.json"
    plugin.write_text(json.dumps({"models": [{"source": "hf-hub:a/b"}]}))
    with pytest.raises(CorruptFileError, match="needs 'id' and 'source'"):
        manifest.load_catalogue(plugin)
    plugin.write_text(json.dumps({"models": {"id": "a"}}))
    with pytest.raises(CorruptFileError, match="must be a list"):
        manifest.load_catalogue(plugin)


# ---------------------------------------------------------------- models fetch

@pytest.fixture
def hub_catalogue(tmp_path, monkeypatch, models_dir):
    """A plugin.json with one hub entry and one URL entry; downloads allowed."""
    plugin = tmp_path / "plugin.json"
    plugin.write_text(json.dumps({"models": [
        {"id": "hub-model", "kind": "dino", "source": "hf-hub:acme/dino",
         "files": [{"path": "config.json", "sha256": None, "size": None},
                   {"path": "model.safetensors", "sha256": None, "size": 8}]},
        {"id": "url-model", "kind": "diffusion-pixel", "source": "https://example.invalid/m.pt",
         "files": [{"path": "m.pt", "sha256": None, "size": 4}]}]}))
    monkeypatch.setattr(manifest, "PLUGIN_JSON", plugin)
    monkeypatch.setattr(catalogue, "PLUGIN_JSON", plugin)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    return models_dir


def _fake_snapshot(fail: BaseException | None, weights: bytes = b"8 bytes!"):
    """A snapshot_download that writes the first file, then fails (or finishes)."""
    import tempfile
    from pathlib import Path

    def snapshot_download(repo, allow_patterns=None, local_dir=None, cache_dir=None,
                          local_files_only=False):
        if local_files_only:  # the resolver's look into the cache: not cached
            from huggingface_hub.errors import LocalEntryNotFoundError
            raise LocalEntryNotFoundError("not in the cache")
        folder = Path(local_dir) if local_dir else Path(tempfile.mkdtemp())
        (folder / "config.json").write_text("{}")
        if fail is not None:
            raise fail
        (folder / "model.safetensors").write_bytes(weights)
        return str(folder)
    return snapshot_download


def _hub_errors():
    """What a fetch meets offline or behind a broken proxy: urllib's and the
    socket's errors, and huggingface_hub's HTTP client's (which are not OSErrors)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError
    request = httpx2.Request("GET", "https://huggingface.co/acme/dino")
    return [urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
            TimeoutError("The read operation timed out"),
            ConnectionResetError(104, "Connection reset by peer"),
            httpx2.ConnectError("[Errno 111] Connection refused", request=request),
            httpx2.ReadTimeout("timed out", request=request),
            HfHubHTTPError("503 Server Error: Service Unavailable\n(Request ID: abc)",
                           response=httpx2.Response(503, request=request))]


@pytest.mark.parametrize("error", _hub_errors(), ids=lambda e: type(e).__name__)
def test_fetch_network_failure_is_one_line_exit_1_and_no_half_folder(hub_catalogue, monkeypatch,
                                                                     capsys, error):
    import huggingface_hub

    from livelayers.__main__ import main
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _fake_snapshot(error))
    assert main(["models", "fetch", "hub-model"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = (out + err).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not download hub-model from "
                                                   "hf-hub:acme/dino")
    assert type(error).__name__ in lines[0] and f"{FIX} hub-model" in lines[0]
    parent = hub_catalogue / "dino"
    assert not (parent / "hub-model").exists()
    assert list(parent.iterdir()) == []  # the staging folder went too


def test_a_failed_refetch_keeps_the_old_folder_and_a_good_one_replaces_it(hub_catalogue, monkeypatch):
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _fake_snapshot(None, b"old one!"))
    dest = catalogue.fetch_model("hub-model")
    assert dest == hub_catalogue / "dino" / "hub-model"
    assert (dest / "model.safetensors").read_bytes() == b"old one!"
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        _fake_snapshot(urllib.error.URLError("down")))
    with pytest.raises(resolve.DownloadError):
        catalogue.fetch_model("hub-model")
    assert (dest / "model.safetensors").read_bytes() == b"old one!"
    # a download of the wrong size is refused and does not replace the old folder either
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _fake_snapshot(None, b"short"))
    with pytest.raises(CorruptFileError, match="model.safetensors size mismatch expected 8 bytes, found 5"):
        catalogue.fetch_model("hub-model")
    assert (dest / "model.safetensors").read_bytes() == b"old one!"
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _fake_snapshot(None, b"new one!"))
    assert catalogue.fetch_model("hub-model") == dest
    assert (dest / "model.safetensors").read_bytes() == b"new one!"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["hub-model"]


def test_url_fetch_failure_and_success(hub_catalogue, monkeypatch, capsys):
    import io
    import urllib.request

    from livelayers.__main__ import main

    def refused(url, timeout=None):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    monkeypatch.setattr(urllib.request, "urlopen", refused)
    assert main(["models", "fetch", "url-model"]) == 1
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "could not download url-model from https://example.invalid/m.pt" in out
    parent = hub_catalogue / "diffusion-pixel"
    assert list(parent.iterdir()) == []

    class _Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: _Response(b"ckpt"))
    assert main(["models", "fetch", "url-model"]) == 0
    assert (parent / "url-model" / "m.pt").read_bytes() == b"ckpt"
    # resolution then finds the folder by its id
    assert resolve.resolve("url-model", "diffusion-pixel", offline=True).path == str(parent / "url-model")


def test_dino_download_failure_is_one_line(hub_catalogue, monkeypatch):
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        _fake_snapshot(urllib.error.URLError("no network")))
    from livelayers.engine.models.dino import load_dino
    with pytest.raises(ModelNotFoundError) as e:  # a DownloadError
        load_dino("hub-model", device="cpu", offline=False)
    assert isinstance(e.value, resolve.DownloadError) and "\n" not in str(e.value)
    assert f"{FIX} hub-model" in str(e.value)


def test_a_fetched_sd_folder_loads_without_the_unfetched_image_processor(assets, tmp_path):
    """`models fetch sd-2-1-base` downloads only the listed files; SD 2.x's
    model_index.json also names a feature_extractor, which the loader skips."""
    from livelayers.engine.models.diffusion import load_diffusion
    folder = tmp_path / "sd"
    shutil.copytree(assets / "toy_sd", folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index))
    assert not (folder / "feature_extractor").exists()
    h = load_diffusion(str(folder), device="cpu", offline=True)
    assert h.kind == "latent"
    listed = {f["path"].split("/")[0] for f in manifest.get_entry("sd-2-1-base")["files"]}
    assert "feature_extractor" not in listed and "safety_checker" not in listed
