"""The model catalogue: the ``models`` list in plugin.json.

Each entry::

    {"id": "toy-clip", "kind": "clip" | "diffusion-pixel" | "diffusion-latent" | "dino" | "regions",
     "source": "hf-hub:org/repo" | "local-dir:relative/or/absolute" | "https://…",
     "files": [{"path": "open_clip_model.safetensors", "sha256": "…" | null, "size": 123 | null}],
     "licence": "…", "description": "…", "regenerate": "command (toy models only)"}

``list_models`` says what is known and where it is, ``verify_models`` checks
files against their sha256 and size (files whose hash the catalogue does not
record are reported as present but unchecked), ``fetch_model`` downloads an
entry (Hugging Face snapshot or URL) and checks it, ``update_hashes``
rewrites the hashes of local entries after a toy model is retrained.
``register_cli`` adds ``models list|verify|fetch`` to the command line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..atomic import atomic_path
from ..errors import CorruptFileError, ModelNotFoundError
from . import resolve as _resolve

PLUGIN_JSON = _resolve.PACKAGE_ROOT / "plugin.json"
KINDS = ("clip", "diffusion-pixel", "diffusion-latent", "dino", "regions")


# ------------------------------------------------------------------- reading

def _plugin_path(path: str | os.PathLike | None) -> Path:
    return Path(path) if path is not None else PLUGIN_JSON


def load_catalogue(path: str | os.PathLike | None = None) -> list[dict]:
    """The ``models`` list of plugin.json (empty when the file has none)."""
    p = _plugin_path(path)
    if not p.is_file():
        return []
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{p} is not valid JSON: {e}") from e
    models = data.get("models", [])
    for m in models:
        if "id" not in m or "source" not in m:
            raise CorruptFileError(f"{p}: every model entry needs 'id' and 'source'; got {m}")
    return models


def get_entry(model_id: str, path: str | os.PathLike | None = None) -> dict | None:
    """The catalogue entry with this id, or None."""
    for entry in load_catalogue(path):
        if entry["id"] == model_id:
            return entry
    return None


def _save_catalogue(models: list[dict], path: str | os.PathLike | None = None) -> None:
    """Rewrite only the ``models`` key of plugin.json, atomically."""
    p = _plugin_path(path)
    data = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {
        "id": "livelayers", "version": "0.1.0", "nodes": []}
    data["models"] = models
    with atomic_path(p) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def locate(entry: dict, search_dirs: Sequence[str] = (), hf_cache_dir: str | None = None) -> Path | None:
    """Where this entry is on this machine (never downloads), or None."""
    try:
        r = _resolve.resolve_entry(entry, offline=True, search_dirs=search_dirs,
                                   hf_cache_dir=hf_cache_dir)
    except ModelNotFoundError:
        return None
    return Path(r.path) if r.path else None


def list_models(path: str | os.PathLike | None = None, search_dirs: Sequence[str] = (),
                hf_cache_dir: str | None = None) -> list[dict]:
    """Catalogue entries, each with ``location`` (a path string or None)."""
    out = []
    for entry in load_catalogue(path):
        loc = locate(entry, search_dirs, hf_cache_dir)
        out.append({**entry, "location": str(loc) if loc else None})
    return out


# ------------------------------------------------------------------ verifying

@dataclass
class FileCheck:
    path: str           # the file on disk (or where it should be)
    status: str         # "ok" | "unchecked" | "missing" | "size mismatch" | "hash mismatch"
    detail: str = ""


@dataclass
class ModelCheck:
    id: str
    status: str         # "ok" | "unchecked" | "missing" | "mismatch"
    location: str | None
    files: list[FileCheck] = field(default_factory=list)
    hint: str = ""


@dataclass
class VerifyReport:
    models: list[ModelCheck]

    @property
    def ok(self) -> bool:
        """True when nothing is missing or mismatched (unchecked files are fine)."""
        return all(m.status in ("ok", "unchecked") for m in self.models)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def as_dict(self) -> dict:
        return {"ok": self.ok, "models": [asdict(m) for m in self.models]}

    def format(self) -> str:
        lines = []
        for m in self.models:
            lines.append(f"{m.id:32s} {m.status:10s} {m.location or '-'}")
            for f in m.files:
                if f.status != "ok":
                    lines.append(f"    {f.status:14s} {f.path}" + (f"  ({f.detail})" if f.detail else ""))
            if m.hint:
                lines.append(f"    -> {m.hint}")
        lines.append("all present and verified" if self.ok else "PROBLEMS found (exit code 1)")
        return "\n".join(lines)


def _check_file(root: Path, spec: dict) -> FileCheck:
    p = root / spec["path"] if root.is_dir() else root
    if not p.is_file():
        return FileCheck(str(p), "missing")
    size = spec.get("size")
    if size is not None and p.stat().st_size != size:
        return FileCheck(str(p), "size mismatch", f"expected {size} bytes, found {p.stat().st_size}")
    want = spec.get("sha256")
    if not want:
        return FileCheck(str(p), "unchecked", "no sha256 in the catalogue")
    got = sha256_file(p)
    if got != want:
        return FileCheck(str(p), "hash mismatch", f"expected {want[:12]}…, found {got[:12]}…")
    return FileCheck(str(p), "ok")


def _check_model(entry: dict, search_dirs, hf_cache_dir) -> ModelCheck:
    loc = locate(entry, search_dirs, hf_cache_dir)
    fetch_hint = (entry.get("regenerate") and f"regenerate: {entry['regenerate']}") or \
        f"fetch: {_resolve.FETCH_COMMAND} {entry['id']}"
    if loc is None:
        return ModelCheck(entry["id"], "missing", None, hint=fetch_hint)
    files = [_check_file(loc, f) for f in entry.get("files", [])]
    statuses = {f.status for f in files}
    if "missing" in statuses:
        status = "missing"
    elif statuses & {"size mismatch", "hash mismatch"}:
        status = "mismatch"
    elif "unchecked" in statuses or not files:
        status = "unchecked"
    else:
        status = "ok"
    hint = fetch_hint if status in ("missing", "mismatch") else ""
    return ModelCheck(entry["id"], status, str(loc), files, hint)


def verify_models(ids: Iterable[str] | None = None, path: str | os.PathLike | None = None,
                  search_dirs: Sequence[str] = (), hf_cache_dir: str | None = None) -> VerifyReport:
    """Check catalogue entries (all, or ``ids``) on this machine.

    A model is "missing" (not found, or a listed file absent), "mismatch"
    (a size or sha256 differs), "unchecked" (present, but the catalogue has
    no sha256 for some file: typical for hub files) or "ok".
    """
    entries = load_catalogue(path)
    known = {e["id"]: e for e in entries}
    if ids:
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ValueError(f"unknown model id(s) {unknown}; the catalogue has: {sorted(known)}")
        entries = [known[i] for i in ids]
    return VerifyReport([_check_model(e, search_dirs, hf_cache_dir) for e in entries])


# ------------------------------------------------------------------- fetching

def fetch_model(model_id: str, dest: str | os.PathLike | None = None,
                allow_download: bool | None = None, path: str | os.PathLike | None = None,
                hf_cache_dir: str | None = None) -> Path:
    """Download a catalogue entry and verify it; return where it is.

    dest: a folder to put the files in. Default: ``$LIVELAYERS_MODELS/<kind>/<id>``
    when that variable is set, else the Hugging Face cache (hub entries; found
    there by resolution) — URL entries then need ``dest`` or the variable.
    allow_download: None = allowed unless ``HF_HUB_OFFLINE`` is set.
    """
    entry = get_entry(model_id, path)
    if entry is None:
        raise ValueError(f"unknown model id '{model_id}'; the catalogue has: "
                         f"{sorted(e['id'] for e in load_catalogue(path))}")
    kind, source = entry.get("kind", "clip"), entry["source"]
    if dest is None and _resolve.models_root() is not None:
        dest = _resolve.models_root() / kind / model_id
    if source.startswith("local-dir:"):
        return _fetch_local(entry, dest)
    if allow_download is None:
        allow_download = not _resolve.is_offline()
    if not allow_download:
        raise ModelNotFoundError(
            f"cannot fetch '{model_id}': downloading is off (HF_HUB_OFFLINE=1 or --offline). "
            f"Run `{_resolve.FETCH_COMMAND} {model_id}` on a machine with network and copy the "
            f"folder to ${_resolve.MODELS_ENV}/{kind}/{model_id}")
    if source.startswith("hf-hub:"):
        import huggingface_hub as hf
        patterns = [f["path"] for f in entry.get("files", [])] or None
        folder = Path(hf.snapshot_download(source[len("hf-hub:"):], allow_patterns=patterns,
                                           local_dir=str(dest) if dest else None,
                                           cache_dir=hf_cache_dir))
    elif source.startswith(("http://", "https://")):
        folder = _fetch_url(entry, dest)
    else:
        raise ValueError(f"model '{model_id}': unsupported source '{source}'")
    bad = [f for f in (_check_file(folder, s) for s in entry.get("files", []))
           if f.status not in ("ok", "unchecked")]
    if bad:
        raise CorruptFileError(f"fetched '{model_id}' but: " +
                               "; ".join(f"{f.path} {f.status} {f.detail}" for f in bad))
    return folder


def _fetch_local(entry: dict, dest) -> Path:
    """Local (toy) entries are not downloaded: copy them to ``dest`` if asked."""
    src = locate(entry)
    if src is None:
        raise ModelNotFoundError(f"'{entry['id']}' is a generated model and is missing; "
                                 f"regenerate it: {entry.get('regenerate', 'see docs/models.md')}")
    if dest is None or Path(dest).resolve() == src.resolve():
        return src
    shutil.copytree(src, dest, dirs_exist_ok=True)
    return Path(dest)


def _fetch_url(entry: dict, dest) -> Path:
    import urllib.request
    if dest is None:
        raise ValueError(f"'{entry['id']}' is downloaded from a URL: give --dest or set "
                         f"${_resolve.MODELS_ENV} so it lands where resolution looks")
    dest = Path(dest)
    files = entry.get("files") or [{"path": entry["source"].rsplit("/", 1)[-1]}]
    for f in files:
        with atomic_path(dest / f["path"]) as tmp:
            urllib.request.urlretrieve(entry["source"], tmp)  # noqa: S310 (catalogue URL)
    return dest


# ------------------------------------------------------------- toy-model hashes

def update_hashes(ids: Iterable[str] | None = None, path: str | os.PathLike | None = None) -> list[str]:
    """Record the current files (path, sha256, size) of local-dir entries.

    Toy-model training scripts call this after writing a model, so that
    ``verify`` checks what was just made. Returns the ids updated.
    """
    models = load_catalogue(path)
    wanted = set(ids) if ids else None
    updated = []
    for entry in models:
        if wanted is not None and entry["id"] not in wanted:
            continue
        if not entry["source"].startswith("local-dir:"):
            continue
        loc = locate(entry)
        if loc is None:
            continue
        entry["files"] = [{"path": str(p.relative_to(loc)).replace(os.sep, "/"),
                           "sha256": sha256_file(p), "size": p.stat().st_size}
                          for p in sorted(loc.rglob("*")) if p.is_file() and not p.name.startswith(".")]
        updated.append(entry["id"])
    if updated:
        _save_catalogue(models, path)
    return updated


# ------------------------------------------------------------------------ CLI

def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``models list|verify|fetch`` to an argparse sub-parser set.

    Each leaf sets ``func(args) -> int`` (the exit code) via ``set_defaults``.
    """
    p = subparsers.add_parser("models", help="list, verify and fetch the models in plugin.json",
                              description="Manage the model catalogue (plugin.json 'models').")
    sub = p.add_subparsers(dest="models_command", metavar="{list,verify,fetch}")
    sub.required = True
    ls = sub.add_parser("list", help="catalogue entries and where they are on this machine")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_cli_list)
    ver = sub.add_parser("verify", help="check files and sha256; exit 1 if anything is missing or mismatched")
    ver.add_argument("ids", nargs="*", help="model ids (default: all)")
    ver.add_argument("--json", action="store_true", help="machine-readable output")
    ver.set_defaults(func=_cli_verify)
    fe = sub.add_parser("fetch", help="download a model (Hugging Face or URL) and verify it")
    fe.add_argument("id", help="model id from `models list`")
    fe.add_argument("--dest", default=None, help="folder to put it in (default: "
                    "$LIVELAYERS_MODELS/<kind>/<id>, else the Hugging Face cache)")
    fe.add_argument("--offline", action="store_true", help="never download (explains what to do)")
    fe.set_defaults(func=_cli_fetch)
    return p


def _cli_list(args) -> int:
    rows = list_models()
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['id']:30s} {r.get('kind', ''):17s} {r['location'] or 'not on this machine'}\n"
              f"{'':30s} licence: {r.get('licence', '?')}")
    return 0


def _cli_verify(args) -> int:
    report = verify_models(args.ids or None)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.format())
    return report.exit_code


def _cli_fetch(args) -> int:
    try:
        where = fetch_model(args.id, dest=args.dest, allow_download=False if args.offline else None)
    except (ModelNotFoundError, CorruptFileError, ValueError) as e:
        print(f"error: {e}")
        return 1
    print(f"{args.id}: {where}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m livelayers.engine.models.catalogue list|verify|fetch`` (same as ``livelayers models``)."""
    ap = argparse.ArgumentParser(prog="livelayers")
    register_cli(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(["models", *(argv if argv is not None else __import__("sys").argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
