"""plugin.json's model catalogue: reading it, and checking a model's files.

This module is the one place that reads the catalogue; ``resolve.py`` (the
search order) and ``catalogue.py`` (the ``models`` CLI) both import it and it
imports neither, so there is no import cycle.

- ``load_catalogue`` reads the ``models`` list. A plugin.json that is not
  valid JSON, or whose entries lack ``id``/``source``, raises one
  ``CorruptFileError`` naming the file and the problem; it is never skipped.
- ``check_files(entry, location)`` checks what the entry lists in a model
  folder (or one file): presence, size (whenever the catalogue records it)
  and sha256 (when recorded). Hashes are cached in memory per process by
  (path, size, mtime), so loading a model twice hashes it once.
- ``refuse_bad(entry, location)`` turns the first bad file into one line that
  names the model, the file, expected vs found, and the command that fixes it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorruptFileError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_JSON = PACKAGE_ROOT / "plugin.json"
KINDS = ("clip", "diffusion-pixel", "diffusion-latent", "dino", "regions")
FETCH_COMMAND = "python -m livelayers models fetch"
MODELS_ENV = "LIVELAYERS_MODELS"


# ------------------------------------------------------------------- reading

def load_catalogue(path: str | os.PathLike | None = None) -> list[dict]:
    """The ``models`` list of plugin.json (``PLUGIN_JSON`` by default; empty
    when the file does not exist or has no ``models`` key)."""
    p = Path(path) if path is not None else PLUGIN_JSON
    if not p.is_file():
        return []
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{p} is not valid JSON ({e}); fix the file: the model "
                               f"catalogue is read from its 'models' list") from e
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"{p} is not UTF-8 text ({e})") from e
    if not isinstance(data, dict):
        raise CorruptFileError(f"{p}: the top level must be a JSON object, got {type(data).__name__}")
    models = data.get("models", [])
    if not isinstance(models, list):
        raise CorruptFileError(f"{p}: 'models' must be a list of entries, got {type(models).__name__}")
    for m in models:
        if not isinstance(m, dict) or "id" not in m or "source" not in m:
            raise CorruptFileError(f"{p}: every model entry needs 'id' and 'source'; got {m}")
    return models


def get_entry(model_id: str, path: str | os.PathLike | None = None) -> dict | None:
    """The catalogue entry with this id, or None."""
    return next((e for e in load_catalogue(path) if e["id"] == model_id), None)


def entry_for_source(source: str, path: str | os.PathLike | None = None) -> dict | None:
    """The catalogue entry whose ``source`` is exactly ``source``, or None."""
    return next((e for e in load_catalogue(path) if e.get("source") == source), None)


def shipped_folder(entry: dict) -> Path | None:
    """A ``local-dir:`` entry's folder (relative paths are relative to the package)."""
    source = entry.get("source", "")
    if not source.startswith("local-dir:"):
        return None
    local = Path(source[len("local-dir:"):]).expanduser()
    return local if local.is_absolute() else PACKAGE_ROOT / local


# ------------------------------------------------------------------ hashing

_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (never cached)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cached_sha256(path: str | os.PathLike) -> str:
    """``sha256_file``, remembered per process by (real path, size, mtime_ns):
    a file rewritten in place changes its mtime (or size) and is hashed again."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


# ------------------------------------------------------------------ checking

@dataclass
class FileCheck:
    path: str           # the file on disk (or where it should be)
    status: str         # "ok" | "unchecked" | "missing" | "size mismatch" | "hash mismatch"
    detail: str = ""
    name: str = ""      # the file as the catalogue lists it (e.g. "unet/config.json")

    @property
    def bad(self) -> bool:
        return self.status in ("missing", "size mismatch", "hash mismatch")


def check_file(root: Path, spec: dict) -> FileCheck:
    """Check one catalogue file spec (``path``, ``size``, ``sha256``) under ``root``
    (a folder; or the file itself for single-file models)."""
    root = Path(root)
    p = root / spec["path"] if root.is_dir() else root
    name = spec["path"]
    if not p.is_file():
        return FileCheck(str(p), "missing", "", name)
    size, found = spec.get("size"), p.stat().st_size
    if size is not None and found != size:
        return FileCheck(str(p), "size mismatch", f"expected {size} bytes, found {found}", name)
    want = spec.get("sha256")
    if not want:
        return FileCheck(str(p), "unchecked", "no sha256 in the catalogue", name)
    got = cached_sha256(p)
    if got != want:
        return FileCheck(str(p), "hash mismatch", f"expected sha256 {want[:12]}…, found {got[:12]}…", name)
    return FileCheck(str(p), "ok", "", name)


def file_specs_for(entry: dict, location: Path) -> list[dict]:
    """The entry's file specs that apply at ``location``: all of them for a
    folder; for a single file, the spec with the same file name (or the only
    spec of a one-file entry, which may be saved as ``<id>.pt``)."""
    specs = entry.get("files") or []
    if Path(location).is_dir():
        return list(specs)
    same = [s for s in specs if Path(s["path"]).name == Path(location).name]
    return same or (list(specs) if len(specs) == 1 else [])


def check_files(entry: dict, location: str | os.PathLike) -> list[FileCheck]:
    """Every applicable file of ``entry`` checked at ``location``."""
    location = Path(location)
    return [check_file(location, s) for s in file_specs_for(entry, location)]


def fix_hint(entry: dict, location: str | os.PathLike | None) -> str:
    """The command that repairs this entry at ``location``.

    A shipped (generated) folder is rebuilt with its ``regenerate`` command;
    a copy anywhere else is fetched again into the same place.
    """
    shipped = shipped_folder(entry)
    if location is not None and shipped is not None and \
            Path(location).resolve() == shipped.resolve():
        return f"regenerate it: `{entry.get('regenerate') or 'see docs/models.md'}`"
    command = f"{FETCH_COMMAND} {entry['id']}"
    if location is None:
        return f"`{command}`"
    root = os.environ.get(MODELS_ENV, "").strip()
    default = (Path(root).expanduser() / entry.get("kind", "clip") / entry["id"]) if root else None
    if default is not None and Path(location).resolve() == default.resolve():
        return f"`{command}`"
    if Path(location).is_dir() and "snapshots" not in Path(location).parts:
        return f"`{command} --dest {location}`"
    return f"`{command}`"


def refuse_bad(entry: dict, location: str | os.PathLike) -> None:
    """Raise ``CorruptFileError`` (one line) if any applicable file is missing,
    of the wrong size, or (where the catalogue has it) of the wrong sha256."""
    bad = next((c for c in check_files(entry, location) if c.bad), None)
    if bad is None:
        return
    what = {"missing": "is missing (a half-fetched copy?)",
            "size mismatch": f"has the wrong size: {bad.detail} (truncated or half-fetched?)",
            "hash mismatch": f"has the wrong content: {bad.detail}"}[bad.status]
    raise CorruptFileError(f"model '{entry['id']}': file {bad.name} in {location} {what}; "
                           f"fix: {fix_hint(entry, location)}")
