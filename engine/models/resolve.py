"""Where a model's weights are: one search order for every kind of model.

Every loader (CLIP, DINO, diffusion, region models) and the ``models`` CLI
find weights through this module. Order (docs/models.md):

1. an explicit path (``local-dir:/path``, or a file/folder path); the
   catalogue is not read at all for these;
2. ``$LIVELAYERS_MODELS/<kind>/<name>``;
3. extra search folders (the nodes pass ComfyUI's models folders; the engine
   never imports ComfyUI);
4. a catalogue entry's own shipped folder (the toy models under tests/assets);
5. the Hugging Face cache (``snapshot_download(local_files_only=True)``);
6. a download, only when allowed.

A model found in steps 2-5 for a catalogue entry is checked against the
entry before it is used (``manifest.refuse_bad``: every listed file present,
sizes where recorded, sha256 where recorded), so a truncated or half-fetched
copy is refused in one line that says how to fetch it again.

Offline (``HF_HUB_OFFLINE=1`` or ``offline=True``) a model found nowhere
raises ``ModelNotFoundError`` that says what to fetch, the command, and where
to put it. Nothing here loads weights; loaders read safetensors or use
``torch.load(weights_only=True)``. ``download_hub`` / ``download_url`` are
the only downloaders (used by ``models fetch`` and the DINO loader); a
network failure in them is one ``DownloadError`` line.

``<name>`` is tried in a few spellings: the catalogue id (``toy-clip``), the
repo as ``org--repo`` and ``repo``, or for an open_clip name + tag
``ViT-B-32--openai`` and ``ViT-B-32-openai``. In a search folder, ``name`` may
be a folder or, for single-file models, ``name.safetensors|.bin|.pt|.pth``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import ModelNotFoundError
from . import manifest
from .manifest import FETCH_COMMAND, MODELS_ENV

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
CLIP_CONFIG = "open_clip_config.json"
# open_clip's own preference order for the weights of an hf-hub model
CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
DOWNLOAD_TIMEOUT_S = 60.0


class DownloadError(ModelNotFoundError):
    """Downloading was allowed but failed (no network, HTTP error, timeout):
    the model is still not on this machine."""


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether ``HF_HUB_OFFLINE`` is set to a true value."""
    if offline is not None:
        return bool(offline)
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def models_root() -> Path | None:
    """``$LIVELAYERS_MODELS`` as a Path, or None when unset."""
    root = os.environ.get(MODELS_ENV, "").strip()
    return Path(root).expanduser() if root else None


@dataclass
class Resolved:
    """The answer of a resolution.

    path:   local file or folder (None when only a download can provide it).
    hub:    what a downloader would fetch (``org/repo``, an URL, or an
            open_clip ``name/tag``), when known.
    source: how it was found: "explicit", "env", "search-dir", "catalogue",
            "hf-cache" or "download".
    entry:  the catalogue entry the spec named (None for explicit paths and
            specs the catalogue does not know).
    For CLIP, ``local_dir`` (an open_clip local-dir folder) or ``name`` +
    ``pretrained`` (a weights file or a tag) say how to build the model.
    """
    spec: str
    kind: str
    source: str
    path: str | None = None
    hub: str | None = None
    local_dir: str | None = None
    name: str | None = None
    pretrained: str | None = None
    quick_gelu: bool = False  # the tag's weights were trained with QuickGELU
    searched: list[str] = field(default_factory=list)
    entry: dict | None = None


@dataclass
class _Plan:
    """What to look for: names to try in search folders, a hub repo, etc."""
    spec: str
    kinds: tuple[str, ...]           # $LIVELAYERS_MODELS sub-folders, in order
    names: list[str]
    entry: dict | None = None        # the catalogue entry, when the spec names one
    local: Path | None = None        # a catalogue entry's shipped folder
    hf_repo: str | None = None       # org/repo in the HF cache or hub
    url: str | None = None
    clip_name: str | None = None     # open_clip built-in name for name+tag specs
    clip_tag: str | None = None
    clip_quick_gelu: bool = False

    @property
    def kind(self) -> str:
        return self.kinds[0]

    @property
    def catalogue_id(self) -> str | None:
        return self.entry["id"] if self.entry else None


def _kinds(kind: str | Sequence[str]) -> tuple[str, ...]:
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if not kinds:
        raise ValueError("no model kind given")
    return kinds


# ---------------------------------------------------------------- spec parsing

def _looks_like_path(spec: str) -> bool:
    return (spec.startswith(("/", "./", "../", "~", "\\")) or (len(spec) > 1 and spec[1] == ":")
            or os.path.exists(os.path.expanduser(spec)))


def _hub_plan(spec: str, kinds: tuple[str, ...], repo: str) -> _Plan:
    entry = manifest.entry_for_source(f"hf-hub:{repo}")
    names = ([entry["id"]] if entry else []) + [repo.replace("/", "--"), repo.split("/")[-1]]
    return _Plan(spec, kinds, names, entry=entry, hf_repo=repo)


def _plan(spec, kinds: tuple[str, ...]) -> _Plan:
    """Turn any accepted (non-path) spec into what to search for."""
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise ValueError(f"a (name, pretrained tag) pair has 2 items; got {spec!r}")
        return _clip_name_tag_plan(f"{spec[0]}/{spec[1]}", str(spec[0]), str(spec[1]))
    spec = str(spec).strip()
    if not spec:
        raise ValueError("the model spec is empty; give a catalogue id, a hub id or a folder")
    clip = kinds[0] == "clip"
    entry = manifest.get_entry(spec)
    if entry is not None:
        return _catalogue_plan(spec, entry, kinds[0])
    if spec.startswith("hf-hub:"):
        return _hub_plan(spec, kinds, spec[len("hf-hub:"):].strip("/"))
    if clip and "/" in spec and not _looks_like_path(spec):
        name, tag = spec.split("/", 1)
        return _clip_name_tag_plan(spec, name, tag)
    if not clip and spec.count("/") == 1 and not _looks_like_path(spec):
        return _hub_plan(spec, kinds, spec)  # a diffusers / transformers repo id: org/repo
    if clip and not _looks_like_path(spec):
        _reject_bare_clip_name(spec)
    return _Plan(spec, kinds, names=[spec])  # a plain name: only search folders


def _catalogue_plan(spec: str, entry: dict, kind: str) -> _Plan:
    source = entry.get("source", "")
    plan = _Plan(spec, (entry.get("kind", kind),), [entry["id"]], entry=entry,
                 local=manifest.shipped_folder(entry))
    if source.startswith("hf-hub:"):
        plan.hf_repo = source[len("hf-hub:"):].strip("/")
    elif source.startswith(("http://", "https://")):
        plan.url = source
    return plan


def _clip_name_tag_plan(spec: str, name: str, tag: str) -> _Plan:
    import open_clip
    if name not in open_clip.list_models():
        raise ValueError(f"'{name}' is not an open_clip model name (see open_clip.list_models(), "
                         f"e.g. ViT-B-32, ViT-B-16, ViT-L-14)")
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        raise ValueError(f"open_clip has no pretrained tag '{tag}' for {name}; allowed: "
                         f"{', '.join(open_clip.list_pretrained_tags_by_model(name))}")
    repo = (cfg.get("hf_hub") or "").strip("/") or None
    entry = manifest.entry_for_source(f"hf-hub:{repo}") if repo else None
    names = ([entry["id"]] if entry else []) + [f"{name}--{tag}", f"{name}-{tag}"]
    return _Plan(spec, ("clip",), names, entry=entry, hf_repo=repo,
                 url=cfg.get("url") or None, clip_name=name, clip_tag=tag,
                 clip_quick_gelu=bool(cfg.get("quick_gelu", False)))


def _reject_bare_clip_name(spec: str) -> None:
    import open_clip
    if spec in open_clip.list_models():
        tags = open_clip.list_pretrained_tags_by_model(spec)
        raise ValueError(f"'{spec}' names an architecture but no weights; add a pretrained tag, "
                         f"e.g. '{spec}/{tags[0] if tags else 'openai'}' (tags: {', '.join(tags)})")


# ------------------------------------------------------------------ searching

def _in_folder(root: Path, name: str) -> Path | None:
    """root/name as a non-empty folder, or root/name.<weights suffix> as a file."""
    cand = root / name
    if cand.is_dir() and any(cand.iterdir()):
        return cand
    if cand.is_file():
        return cand
    for suffix in WEIGHT_SUFFIXES:
        if (root / f"{name}{suffix}").is_file():
            return root / f"{name}{suffix}"
    return None


def _hf_cached(plan: _Plan, cache_dir: str | None) -> Path | None:
    """The plan's repo in the Hugging Face cache (a snapshot folder or, for an
    open_clip name + tag, the weights file), or None when it is not cached."""
    import huggingface_hub as hf
    from huggingface_hub.errors import LocalEntryNotFoundError

    if not plan.hf_repo:
        return None
    if plan.clip_name:
        for filename in CLIP_WEIGHT_FILES:
            hit = hf.try_to_load_from_cache(plan.hf_repo, filename, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return Path(hit)
        return None
    try:
        folder = Path(hf.snapshot_download(plan.hf_repo, local_files_only=True, cache_dir=cache_dir))
    except LocalEntryNotFoundError:  # not in the cache: the next step decides
        return None
    if plan.kind == "clip" and not (folder / CLIP_CONFIG).is_file():
        return None
    return folder if folder.is_dir() and any(folder.iterdir()) else None


def _found(plan: _Plan, path: Path, source: str, searched: list[str]) -> Resolved:
    r = Resolved(plan.spec, plan.kind, source, path=str(path),
                 hub=plan.hf_repo or plan.url, searched=searched, entry=plan.entry)
    if plan.kind == "clip":
        if path.is_dir():
            if not (path / CLIP_CONFIG).is_file():
                raise ModelNotFoundError(
                    f"CLIP folder '{path}' has no {CLIP_CONFIG}; an open_clip local-dir holds "
                    f"{CLIP_CONFIG} and the weights (open_clip_model.safetensors)")
            r.local_dir = str(path)
        elif plan.clip_name:
            r.name, r.pretrained, r.quick_gelu = plan.clip_name, str(path), plan.clip_quick_gelu
        else:
            raise ModelNotFoundError(
                f"CLIP spec '{plan.spec}' points at the file '{path}'; give the folder holding "
                f"{CLIP_CONFIG} + weights, or use 'ViT-B-32/<path to weights>' style name + file")
    return r


def _explicit(spec, kinds: tuple[str, ...]) -> Resolved | None:
    """Step 1: the spec is a path (or an open_clip name + weights file)."""
    if isinstance(spec, (tuple, list)):
        if len(spec) == 2 and os.path.isfile(os.path.expanduser(spec[1])):
            weights = os.path.expanduser(spec[1])
            return Resolved(f"{spec[0]}/{spec[1]}", kinds[0], "explicit", path=weights,
                            name=str(spec[0]), pretrained=weights)
        return None
    spec_s = str(spec).strip()
    if not (spec_s.startswith("local-dir:") or (spec_s and _looks_like_path(spec_s))):
        return None
    raw = spec_s[len("local-dir:"):] if spec_s.startswith("local-dir:") else spec_s
    path = Path(raw).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"{kinds[0]} model path '{path}' does not exist (from spec '{spec_s}')")
    return _found(_Plan(spec_s, kinds, [path.name]), path.resolve(), "explicit", [str(path)])


def resolve(spec, kind: str | Sequence[str], offline: bool | None = None,
            search_dirs: Sequence[str | os.PathLike] = (), hf_cache_dir: str | None = None,
            verify: bool = True) -> Resolved:
    """Find a model (see the module docstring for the order).

    spec: explicit path, ``local-dir:/path``, catalogue id, ``hf-hub:org/repo``,
    ``org/repo`` (non-CLIP kinds) or an open_clip ``name/tag`` (CLIP).
    kind: "clip" | "diffusion-pixel" | "diffusion-latent" | "dino" | "regions"
    (the sub-folder of ``$LIVELAYERS_MODELS``), or several to try in order
    (a diffusion spec of unknown kind). A catalogue entry's own kind wins.
    verify: check a catalogue model's files before answering (``models
    verify`` turns it off to report instead of refuse).
    Raises ``ModelNotFoundError`` when the model is nowhere and downloading is
    not allowed (or an explicit path does not exist), ``CorruptFileError``
    for a bad copy of a catalogue model or a malformed plugin.json,
    ``ValueError`` for a spec that cannot name a model.
    """
    kinds = _kinds(kind)
    explicit = _explicit(spec, kinds)
    if explicit is not None:
        return explicit
    return _search(_plan(spec, kinds), offline, search_dirs, hf_cache_dir, verify)


def resolve_entry(entry: dict, offline: bool | None = None,
                  search_dirs: Sequence[str | os.PathLike] = (), hf_cache_dir: str | None = None,
                  verify: bool = True) -> Resolved:
    """``resolve`` for a catalogue entry given as a dict (any plugin.json)."""
    plan = _catalogue_plan(entry["id"], entry, entry.get("kind", "clip"))
    return _search(plan, offline, search_dirs, hf_cache_dir, verify)


def _search(plan: _Plan, offline: bool | None, search_dirs: Sequence[str | os.PathLike],
            hf_cache_dir: str | None, verify: bool) -> Resolved:
    """Steps 2-6 of the order for a parsed spec; a hit for a catalogue entry
    is checked against the entry (when ``verify``)."""
    hit, source, searched = _local_hit(plan, search_dirs, hf_cache_dir)
    if hit is not None:
        if verify and plan.entry is not None:
            manifest.refuse_bad(plan.entry, hit)
        return _found(plan, hit, source, searched)
    # 6. download, only when allowed
    if not is_offline(offline) and (plan.hf_repo or plan.url):
        r = Resolved(plan.spec, plan.kind, "download", hub=plan.hf_repo or plan.url,
                     searched=searched, entry=plan.entry)
        if plan.kind == "clip":
            if plan.clip_name:
                r.name, r.pretrained = plan.clip_name, plan.clip_tag
                r.quick_gelu = plan.clip_quick_gelu
            else:
                r.name = f"hf-hub:{plan.hf_repo}"
        return r
    raise ModelNotFoundError(_not_found_message(plan, searched, is_offline(offline)))


def _local_hit(plan: _Plan, search_dirs, hf_cache_dir) -> tuple[Path | None, str, list[str]]:
    """Steps 2-5: (where, how found, what was searched)."""
    searched: list[str] = []
    # 2./3. $LIVELAYERS_MODELS/<kind>/<name>, then the extra folders
    roots = []
    env_root = models_root()
    if env_root is not None:
        roots += [(env_root / k, "env") for k in plan.kinds]
    roots += [(Path(d), "search-dir") for d in search_dirs]
    for root, source in roots:
        for name in plan.names:
            searched.append(str(root / name))
            hit = _in_folder(root, name)
            if hit is not None:
                return hit, source, searched
    # 4. a catalogue entry's shipped folder
    if plan.local is not None:
        searched.append(str(plan.local))
        if plan.local.is_dir() and any(plan.local.iterdir()):
            return plan.local, "catalogue", searched
    # 5. Hugging Face cache
    if plan.hf_repo:
        searched.append(f"Hugging Face cache: {plan.hf_repo}")
        hit = _hf_cached(plan, hf_cache_dir)
        if hit is not None:
            return hit, "hf-cache", searched
    return None, "", searched


def _not_found_message(plan: _Plan, searched: list[str], offline: bool) -> str:
    name = plan.names[0].replace("/", "--")
    where = (f"${MODELS_ENV}/{plan.kind}/{name}" if models_root() is None
             else str(models_root() / plan.kind / name))
    why = ("downloading is off (HF_HUB_OFFLINE=1 or --offline)" if offline
           else "it has no download source")
    lines = [f"{plan.kind} model '{plan.spec}' is not on this machine and {why}."]
    if plan.catalogue_id:
        lines.append(f"Fetch it on a machine with network: `{FETCH_COMMAND} {plan.catalogue_id}`"
                     f" (add --dest DIR to choose the folder)")
    elif plan.local is not None:
        lines.append("It is a generated toy model: regenerate it (see docs/models.md).")
    elif plan.hf_repo:
        lines.append(f"Fetch it on a machine with network: `huggingface-cli download {plan.hf_repo}`"
                     f" (or `hf download {plan.hf_repo} --local-dir DIR`)")
    elif plan.url:
        lines.append(f"Download {plan.url}")
    lines.append(f"then put it at {where} (or give the node the folder's path).")
    if searched:
        lines.append("Searched: " + "; ".join(searched))
    return "\n".join(lines)


def resolve_model(spec, kind: str | Sequence[str], offline: bool | None = None,
                  search_dirs: Sequence[str | os.PathLike] = (), hf_cache_dir: str | None = None) -> str:
    """A local path for ``spec`` or, when downloading is allowed and it is
    nowhere local, the hub id / URL to download (see ``resolve``)."""
    r = resolve(spec, kind, offline=offline, search_dirs=search_dirs, hf_cache_dir=hf_cache_dir)
    return r.path if r.path is not None else (r.hub or r.spec)


def resolve_clip(spec, offline: bool | None = None, search_dirs: Sequence[str | os.PathLike] = (),
                 hf_cache_dir: str | None = None) -> Resolved:
    """``resolve`` for kind "clip": the answer has ``local_dir`` or ``name`` + ``pretrained``."""
    return resolve(spec, "clip", offline=offline, search_dirs=search_dirs, hf_cache_dir=hf_cache_dir)


# ---------------------------------------------------------------- downloading

def network_errors() -> tuple[type[BaseException], ...]:
    """What a failed download raises: OSError covers urllib's URLError/HTTPError,
    timeouts and refused connections; huggingface_hub adds its HTTP client's
    errors (not OSErrors) and Xet transfer errors."""
    import huggingface_hub.errors as hf_errors
    extra = tuple(getattr(hf_errors, n) for n in ("HfHubHTTPError", "HTTPError", "XetDownloadError")
                  if isinstance(getattr(hf_errors, n, None), type))
    return (OSError, *extra)


def _download_failed(what: str, source: str, error: BaseException, model_id: str | None) -> DownloadError:
    reason = " ".join(str(error).split()) or type(error).__name__
    if len(reason) > 240:
        reason = reason[:237] + "..."
    again = f"`{FETCH_COMMAND} {model_id}`" if model_id else "the download"
    return DownloadError(f"could not download {what} from {source} ({type(error).__name__}: {reason}); "
                         f"check the network or proxy (HTTPS_PROXY) and run {again} again, or fetch "
                         f"it on a machine with network and copy it to ${MODELS_ENV}/<kind>/<id>")


def download_hub(repo: str, files: Sequence[str] | None = None, local_dir: str | os.PathLike | None = None,
                 cache_dir: str | None = None, model_id: str | None = None) -> Path:
    """``huggingface_hub.snapshot_download`` of ``repo`` (only ``files`` when
    given) into ``local_dir`` or the Hugging Face cache; its folder.
    Network failures raise ``DownloadError`` (one line)."""
    import huggingface_hub as hf
    try:
        return Path(hf.snapshot_download(repo, allow_patterns=list(files) if files else None,
                                         local_dir=str(local_dir) if local_dir else None,
                                         cache_dir=cache_dir))
    except network_errors() as e:
        raise _download_failed(model_id or repo, f"hf-hub:{repo}", e, model_id) from e


def download_url(url: str, path: str | os.PathLike, model_id: str | None = None,
                 timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to the file ``path`` (written atomically: a failed
    download leaves no file). Network failures raise ``DownloadError``."""
    import shutil
    import urllib.request

    from ..atomic import atomic_path

    path = Path(path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(path) as tmp:  # noqa: S310
            with open(tmp, "wb") as f:
                shutil.copyfileobj(response, f, 1 << 20)
    except network_errors() as e:
        raise _download_failed(model_id or path.name, url, e, model_id) from e
    return path
