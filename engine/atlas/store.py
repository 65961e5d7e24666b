"""The LL_ATLAS handle: trained fields + everything needed to render them,
saved as one safetensors file with a JSON header.

The file holds the five fields' weights, the settings, the clip's frame
count, size and frame numbers, the atlas UV boxes, a format version and a
SHA-256 of the tensor bytes. ``load_atlas`` rejects anything else with a
``CorruptFileError`` that names the problem.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..atomic import atomic_path
from .. import progress
from ..errors import CorruptFileError, InputError
from .coords import ClipGeometry
from .fields import UV_SCALE, AtlasFields, AtlasSettings

KIND = "livelayers.atlas"
# Per-frame map cache budget (uv_fg, uv_bg, alpha: 20 bytes per pixel, 41 MB per
# 1080p frame); $LIVELAYERS_ATLAS_CACHE_MB overrides it, 0 turns caching off.
DEFAULT_CACHE_MB = 1024
FORMAT_VERSION = 1
LAYERS = ("fg", "bg")


def _tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _default_cache_bytes() -> int:
    raw = os.environ.get("LIVELAYERS_ATLAS_CACHE_MB", "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_CACHE_MB
    except ValueError:
        mb = DEFAULT_CACHE_MB
    return int(max(mb, 0) * (1 << 20))


class MapCache:
    """Per-frame maps ``t → (uv_fg (2,H,W), uv_bg (2,H,W), alpha (1,H,W))``
    (CPU tensors), bounded by bytes: the least recently used frames are
    dropped first, so rendering a long clip keeps memory flat. A frame larger
    than the whole budget is simply not kept."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = _default_cache_bytes() if max_bytes is None else int(max_bytes)
        self._items: OrderedDict[int, tuple[torch.Tensor, ...]] = OrderedDict()
        self.nbytes = 0

    @staticmethod
    def _size(maps) -> int:
        return sum(m.numel() * m.element_size() for m in maps)

    def get(self, t: int):
        maps = self._items.get(t)
        if maps is not None:
            self._items.move_to_end(t)
        return maps

    def put(self, t: int, maps) -> None:
        if t in self._items:
            self.nbytes -= self._size(self._items.pop(t))
        size = self._size(maps)
        if size > self.max_bytes:
            return
        self.trim(self.max_bytes - size)
        self._items[t] = maps
        self.nbytes += size

    def trim(self, budget: int | None = None) -> None:
        """Drop least recently used frames until at most ``budget`` bytes
        (default: ``max_bytes``) are held."""
        budget = self.max_bytes if budget is None else budget
        while self._items and self.nbytes > budget:
            self.nbytes -= self._size(self._items.popitem(last=False)[1])

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0

    def __contains__(self, t) -> bool:
        return t in self._items

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Atlas:
    """A trained decomposition. ``boxes[layer] = (u0, v0, u1, v1)``: the part
    of UV space each atlas image covers (fg: where α ≥ 0.05 was seen; bg: all
    of the clip), with a small margin."""
    fields: AtlasFields
    settings: AtlasSettings
    geometry: ClipGeometry
    frame_numbers: list[int]
    boxes: dict[str, tuple[float, float, float, float]]
    info: dict = field(default_factory=dict)
    _maps: MapCache = field(default_factory=MapCache, repr=False)  # frame index → (uv_fg, uv_bg, alpha)

    # ------------------------------------------------------------ construction
    @classmethod
    def from_training(cls, fields, settings, geometry, frame_numbers, seed, fingerprint, train_psnr,
                      extra_info: dict | None = None):
        info = {"seed": seed, "fingerprint": fingerprint, "train_psnr": train_psnr, **(extra_info or {})}
        atlas = cls(fields, settings, geometry, list(frame_numbers), boxes={}, info=info)
        atlas.boxes = atlas._measure_boxes()
        return atlas

    def _measure_boxes(self) -> dict[str, tuple[float, float, float, float]]:
        lo = {k: torch.full((2,), math.inf) for k in LAYERS}
        hi = {k: torch.full((2,), -math.inf) for k in LAYERS}
        for t in range(self.geometry.n_frames):
            uv_f, uv_b, a = self.frame_maps([t])
            seen = a[0, 0].reshape(-1) >= 0.05
            for k, uv in (("fg", uv_f[0].reshape(2, -1)[:, seen]), ("bg", uv_b[0].reshape(2, -1))):
                if uv.shape[1]:
                    lo[k] = torch.minimum(lo[k], uv.min(1).values)
                    hi[k] = torch.maximum(hi[k], uv.max(1).values)
        margin = 2 * self.geometry.unit_per_pixel * UV_SCALE  # two frame pixels
        boxes = {}
        for k in LAYERS:
            if not torch.isfinite(lo[k]).all():  # no foreground anywhere: the whole UV square
                boxes[k] = (-1.0, -1.0, 1.0, 1.0)
            else:
                boxes[k] = (float(lo[k][0] - margin), float(lo[k][1] - margin),
                            float(hi[k][0] + margin), float(hi[k][1] + margin))
        return boxes

    # ------------------------------------------------------------ frames
    @property
    def n_frames(self) -> int:
        return self.geometry.n_frames

    def indices(self, frames: list[int] | str | int | None, node: str,
                input_name: str = "frames") -> list[int]:
        """Frame numbers (None = all), or a node's Open Job Description range
        text ('1001-1010'; '' = all), → indices into the clip."""
        if frames is not None and not isinstance(frames, list):
            from ..frames import parse_frames
            try:
                frames = parse_frames(frames)
            except ValueError as e:
                raise InputError(node, input_name, f"is {frames!r}",
                                 "an Open Job Description range like '1-10'") from e
        if frames is None:
            return list(range(self.n_frames))
        where = {f: i for i, f in enumerate(self.frame_numbers)}
        missing = [f for f in frames if f not in where]
        if missing:
            from ..frames import format_frames
            raise InputError(node, input_name, f"asks for frames {format_frames(missing)} that the "
                             "atlas was not trained on",
                             f"frames {format_frames(self.frame_numbers)}")
        return [where[f] for f in frames]

    def plate_for(self, plate: torch.Tensor | None, indices: list[int]) -> torch.Tensor | None:
        """The plate ``(K, 3, H, W)`` to composite rendered frames ``indices``
        over: a plate of the whole clip is cut to those frames; any other is
        taken as given (the renderers check it against ``indices``)."""
        if plate is not None and plate.shape[0] == self.n_frames and len(indices) != self.n_frames:
            return plate[indices]
        return plate

    def check_plate(self, plate: torch.Tensor, n_expected: int, node: str, input_name: str) -> None:
        """A plate ``(K, 3, H, W)`` must have the atlas's frame size and ``n_expected`` frames."""
        g = self.geometry
        if tuple(plate.shape[-2:]) != (g.height, g.width):
            raise InputError(node, input_name, f"is {plate.shape[-1]}x{plate.shape[-2]} pixels, "
                             f"but the atlas was trained on {g.width}x{g.height} frames",
                             f"{g.width}x{g.height} frames (nothing is resized)")
        if plate.shape[0] != n_expected:
            raise InputError(node, input_name, f"holds {plate.shape[0]} frames",
                             f"{n_expected} (the frames being rendered)")

    def clear_cache(self) -> None:
        """Forget the cached per-frame maps (they are re-evaluated on demand)."""
        self._maps.clear()

    def set_cache_bytes(self, max_bytes: int) -> None:
        """Budget of the per-frame map cache in bytes (0 = no caching)."""
        self._maps.max_bytes = int(max_bytes)
        self._maps.trim()

    @torch.no_grad()
    def _evaluate_frame(self, t: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mappings and opacity of frame ``t`` in chunks of ``chunk`` points:
        ``(2,H,W)``, ``(2,H,W)``, ``(1,H,W)`` on the CPU."""
        g = self.geometry
        dev = next(self.fields.parameters()).device
        xyt = g.frame_grid(t, dev)
        out = torch.empty(g.height * g.width, 5)
        for s in range(0, xyt.shape[0], chunk):
            progress.check("atlas maps")  # a 1080p frame is seconds of chunks
            p = xyt[s:s + chunk]
            out[s:s + chunk] = torch.cat([self.fields.uv_fg(p), self.fields.uv_bg(p),
                                          self.fields.alpha(p)], 1).cpu()
        m = out.T.reshape(5, g.height, g.width)
        return m[0:2], m[2:4], m[4:5]

    @torch.no_grad()
    def frame_maps(self, indices: list[int], chunk: int = 1 << 16):
        """Per-frame fields: ``uv_fg (K,2,H,W)``, ``uv_bg (K,2,H,W)``, ``alpha (K,1,H,W)``
        (evaluated frame by frame in chunks of points; kept in a bounded LRU
        cache, ``MapCache``)."""
        got = {}
        for t in indices:
            if t in got:
                continue
            maps = self._maps.get(t)
            if maps is None:
                maps = self._evaluate_frame(t, chunk)
                self._maps.put(t, maps)
            got[t] = maps
        uv_f, uv_b, a = zip(*(got[t] for t in indices))
        return torch.stack(uv_f), torch.stack(uv_b), torch.stack(a)

    @torch.no_grad()
    def reconstruct(self, indices: list[int]) -> torch.Tensor:
        """The decomposition's own rendering of the frames, ``(K, 3, H, W)``."""
        g = self.geometry
        uv_f, uv_b, a = self.frame_maps(indices)
        c_f = self.fields.rgb_fg(uv_f.permute(0, 2, 3, 1).reshape(-1, 2))
        c_b = self.fields.rgb_bg(uv_b.permute(0, 2, 3, 1).reshape(-1, 2))
        k = len(indices)
        c_f = c_f.reshape(k, g.height, g.width, 3).permute(0, 3, 1, 2)
        c_b = c_b.reshape(k, g.height, g.width, 3).permute(0, 3, 1, 2)
        return a * c_f + (1 - a) * c_b

    # ------------------------------------------------------------ save / load
    def header(self) -> dict[str, str]:
        g = self.geometry
        return {"kind": KIND, "format_version": str(FORMAT_VERSION),
                "settings": json.dumps(self.settings.to_dict(), sort_keys=True),
                "n_frames": str(g.n_frames), "height": str(g.height), "width": str(g.width),
                "frame_numbers": json.dumps(self.frame_numbers),
                "boxes": json.dumps(self.boxes), "info": json.dumps(self.info)}


def save_atlas(atlas: Atlas, path: str | Path) -> Path:
    """Write the atlas atomically as safetensors (+ JSON header with a digest)."""
    from safetensors.torch import save_file
    tensors = {f"fields.{k}": v.detach().cpu().contiguous() for k, v in atlas.fields.state_dict().items()}
    meta = atlas.header()
    meta["sha256"] = _tensor_digest(tensors)
    path = Path(path)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # truncated, garbage, not safetensors
        raise CorruptFileError(f"{path}: not a readable atlas file (safetensors: {e})") from e
    return tensors, meta


def load_atlas(path: str | Path, device: str | torch.device = "cpu") -> Atlas:
    """Load and check an atlas file; ``CorruptFileError`` names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no atlas file there (LL_AtlasDecompose writes one to its atlas_path)")
    tensors, meta = _read(path)
    if meta.get("kind") != KIND:
        raise CorruptFileError(f"{path}: file kind is {meta.get('kind')!r}, expected {KIND!r} "
                               "(not a LiveLayers atlas)")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise CorruptFileError(f"{path}: atlas format version {meta.get('format_version')!r}; this "
                               f"LiveLayers reads version {FORMAT_VERSION} (re-run LL_AtlasDecompose)")
    if meta.get("sha256") != _tensor_digest(tensors):
        raise CorruptFileError(f"{path}: weights do not match the file's sha256 (damaged file)")
    try:
        settings = AtlasSettings.from_dict(json.loads(meta["settings"]))
        geometry = ClipGeometry(int(meta["n_frames"]), int(meta["height"]), int(meta["width"]))
        frame_numbers = [int(f) for f in json.loads(meta["frame_numbers"])]
        boxes = {k: tuple(float(x) for x in v) for k, v in json.loads(meta["boxes"]).items()}
        info = json.loads(meta.get("info", "{}"))
        fields = AtlasFields(settings)
        fields.load_state_dict({k[len("fields."):]: v for k, v in tensors.items()}, strict=True)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CorruptFileError(f"{path}: atlas header or weights are inconsistent ({e})") from e
    if len(frame_numbers) != geometry.n_frames or set(boxes) != set(LAYERS):
        raise CorruptFileError(f"{path}: header lists {len(frame_numbers)} frame numbers for "
                               f"{geometry.n_frames} frames, boxes {sorted(boxes)}")
    fields.eval()
    return Atlas(fields.to(device), settings, geometry, frame_numbers, boxes, info)


def load_matching(path: str | Path | None, fingerprint: str) -> Atlas | None:
    """The atlas saved at ``path`` when it was made by the job whose
    fingerprint is ``fingerprint`` (its ``info["fingerprint"]``), else None:
    no path, no file, another job's atlas, or a damaged file (which the
    caller then overwrites with a fresh result)."""
    if not path or not Path(path).is_file():
        return None
    try:
        done = load_atlas(path)
    except CorruptFileError:
        return None
    return done if done.info.get("fingerprint") == fingerprint else None
