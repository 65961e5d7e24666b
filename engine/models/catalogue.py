"""The model catalogue: the ``models`` list in plugin.json, and the ``models`` CLI.

Each entry::

    {"id": "toy-clip", "kind": "clip" | "diffusion-pixel" | "diffusion-latent" | "dino" | "regions",
     "source": "hf-hub:org/repo" | "local-dir:relative/or/absolute" | "https://…",
     "files": [{"path": "open_clip_model.safetensors", "sha256": "…" | null, "size": 123 | null}],
     "licence": "…", "description": "…", "regenerate": "command (toy models only)"}

Reading plugin.json and checking files is ``manifest.py`` (shared with the
resolver, which checks a model the same way before any loader uses it);
finding a model is ``resolve.py``. Here: ``list_models`` says what is known
and where it is, ``verify_models`` checks files against their size and sha256
(files whose hash the catalogue does not record are reported as present but
unchecked), ``fetch_model`` downloads an entry (Hugging Face snapshot or URL)
into a staging folder, checks it and only then moves it into place,
``update_hashes`` rewrites the hashes of local entries after a toy model is
retrained. ``register_cli`` adds ``models list|verify|fetch`` to the command line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..atomic import atomic_path, replace_folder
from ..errors import CorruptFileError, ModelNotFoundError
from . import manifest
from . import resolve as _resolve
from .manifest import FileCheck, sha256_file  # noqa: F401 (part of this module's API)

PLUGIN_JSON = manifest.PLUGIN_JSON  # tests point the CLI at another plugin.json through this
KINDS = manifest.KINDS


# ------------------------------------------------------------------- reading

def _plugin_path(path: str | os.PathLike | None) -> Path:
    return Path(path) if path is not None else PLUGIN_JSON


def load_catalogue(path: str | os.PathLike | None = None) -> list[dict]:
    """The ``models`` list of plugin.json (empty when the file has none);
    a malformed file raises ``CorruptFileError`` naming it."""
    return manifest.load_catalogue(_plugin_path(path))


def get_entry(model_id: str, path: str | os.PathLike | None = None) -> dict | None:
    """The catalogue entry with this id, or None."""
    return manifest.get_entry(model_id, _plugin_path(path))


def _save_catalogue(models: list[dict], path: str | os.PathLike | None = None) -> None:
    """Rewrite only the ``models`` key of plugin.json, atomically."""
    p = _plugin_path(path)
    data = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {
        "id": "livelayers", "version": "0.1.0", "nodes": []}
    data["models"] = models
    with atomic_path(p) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def locate(entry: dict, search_dirs: Sequence[str] = (), hf_cache_dir: str | None = None) -> Path | None:
    """Where this entry is on this machine (never downloads, never refuses), or None."""
    try:
        r = _resolve.resolve_entry(entry, offline=True, search_dirs=search_dirs,
                                   hf_cache_dir=hf_cache_dir, verify=False)
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
class ModelCheck:
    id: str
    status: str         # "ok" | "unchecked" | "missing" | "mismatch"
    location: str | None
    files: list[FileCheck] = field(default_factory=list)
    hint: str = ""


@dataclass
class VerifyReport:
    models: list[ModelCheck]
    # Named models must be here; of the whole catalogue, only what is here
    # must be intact (a fresh machine has the toy models, not every real one).
    missing_is_a_problem: bool = True

    @property
    def ok(self) -> bool:
        """True when nothing is mismatched, nor missing where that counts
        (unchecked files are fine)."""
        fine = ("ok", "unchecked") if self.missing_is_a_problem else ("ok", "unchecked", "missing")
        return all(m.status in fine for m in self.models)

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
        if not self.ok:
            lines.append("PROBLEMS found (exit code 1)")
        elif any(m.status == "missing" for m in self.models):
            lines.append("every model on this machine verified; the missing ones can be fetched "
                         "(name them to require them)")
        else:
            lines.append("all present and verified")
        return "\n".join(lines)


def _check_model(entry: dict, search_dirs, hf_cache_dir) -> ModelCheck:
    loc = locate(entry, search_dirs, hf_cache_dir)
    if loc is None:
        hint = (f"regenerate: {entry['regenerate']}" if entry.get("regenerate")
                else f"fetch: {_resolve.FETCH_COMMAND} {entry['id']}")
        return ModelCheck(entry["id"], "missing", None, hint=hint)
    files = manifest.check_files(entry, loc)
    statuses = {f.status for f in files}
    if "missing" in statuses:
        status = "missing"
    elif statuses & {"size mismatch", "hash mismatch"}:
        status = "mismatch"
    elif "unchecked" in statuses or not files:
        status = "unchecked"
    else:
        status = "ok"
    hint = f"fix: {manifest.fix_hint(entry, loc)}" if status in ("missing", "mismatch") else ""
    return ModelCheck(entry["id"], status, str(loc), files, hint)


def verify_models(ids: Iterable[str] | None = None, path: str | os.PathLike | None = None,
                  search_dirs: Sequence[str] = (), hf_cache_dir: str | None = None) -> VerifyReport:
    """Check catalogue entries (all, or ``ids``) on this machine.

    With ``ids`` each named model must be present; without, the report
    is ok when every model that is present is intact. A model is "missing"
    (not found, or a listed file absent), "mismatch"
    (a size or sha256 differs), "unchecked" (present, but the catalogue has
    no sha256 for some file: typical for hub files) or "ok". The same check
    (``manifest.check_files``) runs before any loader uses a catalogue model.
    """
    entries = load_catalogue(path)
    known = {e["id"]: e for e in entries}
    if ids:
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ValueError(f"unknown model id(s) {unknown}; the catalogue has: {sorted(known)}")
        entries = [known[i] for i in ids]
    return VerifyReport([_check_model(e, search_dirs, hf_cache_dir) for e in entries],
                        missing_is_a_problem=bool(ids))


# ------------------------------------------------------------------- fetching

def fetch_model(model_id: str, dest: str | os.PathLike | None = None,
                allow_download: bool | None = None, path: str | os.PathLike | None = None,
                hf_cache_dir: str | None = None) -> Path:
    """Download a catalogue entry and verify it; return where it is.

    dest: a folder to put the files in. Default: ``$LIVELAYERS_MODELS/<kind>/<id>``
    when that variable is set, else the Hugging Face cache (hub entries; found
    there by resolution) — URL entries then need ``dest`` or the variable.
    Into a folder, the files are downloaded to a hidden staging folder beside
    it, checked, and only then moved into place (``replace_folder``): a failed
    or interrupted fetch leaves the old folder (or none), never half a one.
    allow_download: None = allowed unless ``HF_HUB_OFFLINE`` is set.
    Raises ``DownloadError`` (network), ``CorruptFileError`` (fetched files do
    not match the catalogue), ``ModelNotFoundError`` (offline), ``ValueError``.
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
    if not source.startswith(("hf-hub:", "http://", "https://")):
        raise ValueError(f"model '{model_id}': unsupported source '{source}'")
    if dest is None:
        if not source.startswith("hf-hub:"):
            raise ValueError(f"'{model_id}' is downloaded from a URL: give --dest or set "
                             f"${_resolve.MODELS_ENV} so it lands where resolution looks")
        # the Hugging Face cache: the hub client writes each file under a
        # temporary name and links it into the snapshot only when complete
        folder = _download(entry, None, hf_cache_dir)
        _refuse_fetched(entry, folder)
        return folder
    return _fetch_into(entry, Path(dest), lambda staged: _download(entry, staged, hf_cache_dir))


def _download(entry: dict, folder: Path | None, hf_cache_dir: str | None) -> Path:
    """Download the entry's files into ``folder`` (or the HF cache); its folder."""
    source = entry["source"]
    if source.startswith("hf-hub:"):
        patterns = [f["path"] for f in entry.get("files", [])] or None
        return _resolve.download_hub(source[len("hf-hub:"):], patterns, local_dir=folder,
                                     cache_dir=hf_cache_dir, model_id=entry["id"])
    files = entry.get("files") or [{"path": source.rsplit("/", 1)[-1]}]
    if len(files) != 1:
        raise ValueError(f"model '{entry['id']}': a URL source downloads one file; "
                         f"the catalogue lists {len(files)}")
    _resolve.download_url(source, folder / files[0]["path"], model_id=entry["id"])
    return folder


def _fetch_into(entry: dict, dest: Path, fill) -> Path:
    """Run ``fill(staged)`` on a staging folder beside ``dest``, check what it
    wrote against the catalogue, then replace ``dest`` with it. On any
    failure the staging folder is removed and ``dest`` is untouched."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    try:
        fill(staged)
        _refuse_fetched(entry, staged)
        replace_folder(staged, dest)
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # gone already after a successful replace
    return dest


def _refuse_fetched(entry: dict, folder: Path) -> None:
    bad = [f for f in manifest.check_files(entry, folder) if f.bad]
    if bad:
        raise CorruptFileError(f"fetched '{entry['id']}' but: " +
                               "; ".join(f"{f.name} {f.status} {f.detail}".strip() for f in bad))


def _fetch_local(entry: dict, dest) -> Path:
    """Local (toy) entries are not downloaded: copy the shipped folder to
    ``dest`` if asked (replacing a bad copy there), else say where it is."""
    src = manifest.shipped_folder(entry)
    if src is None or not src.is_dir() or not any(src.iterdir()):
        raise ModelNotFoundError(f"'{entry['id']}' is a generated model and is missing; "
                                 f"regenerate it: {entry.get('regenerate', 'see docs/models.md')}")
    if dest is None or Path(dest).resolve() == src.resolve():
        return src  # nothing to fetch: say where it is (`models verify` checks it)
    manifest.refuse_bad(entry, src)  # never spread a bad copy
    return _fetch_into(entry, Path(dest), lambda staged: shutil.copytree(src, staged, dirs_exist_ok=True))


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
        loc = manifest.shipped_folder(entry)
        if loc is None or not loc.is_dir():
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
    try:
        rows = list_models()
    except CorruptFileError as e:  # a malformed plugin.json: one line naming the file
        print(f"error: {e}")
        return 1
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['id']:30s} {r.get('kind', ''):17s} {r['location'] or 'not on this machine'}\n"
              f"{'':30s} licence: {r.get('licence', '?')}")
    return 0


def _cli_verify(args) -> int:
    try:
        report = verify_models(args.ids or None)
    except (CorruptFileError, ValueError) as e:  # malformed plugin.json, unknown id
        print(f"error: {e}")
        return 1
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.format())
    return report.exit_code


def _cli_fetch(args) -> int:
    try:
        where = fetch_model(args.id, dest=args.dest, allow_download=False if args.offline else None)
    except (ModelNotFoundError, CorruptFileError, ValueError) as e:
        # offline, not found, a failed download (DownloadError), files that do
        # not match the catalogue, an unknown id: one line, no traceback
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
