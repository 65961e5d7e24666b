"""The amortised region network as a model on disk: save, load, check.

A region-model folder holds ``config.json`` (``"format": "livelayers-regions"``,
the network's sizes, the box sizes and the DINO / CLIP it was trained
with, and the training report) and ``model.safetensors``. Loading never
runs code (safetensors). Catalogue id of the toy one: ``toy-regions``
(``tests/assets/toy_regions``, made by ``toyworld/train_regions.py``).

The network reads DINO features and a CLIP text embedding, so it only
works with a DINO of the same width and a CLIP of the same embedding size
as the ones it was trained with (``check_compatible``); a real DINO / CLIP
needs a network trained with them (the same script, on real data).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CorruptFileError, InputError, ModelNotFoundError
from .network import AmortisedRegionNetwork

FORMAT = "livelayers-regions"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class RegionModel:
    """A frozen amortised region network and what it was trained with."""
    network: AmortisedRegionNetwork
    box_sizes: tuple[float, ...]      # the M box sides it was trained on (fractions of the shorter side)
    dino: str = ""                    # DINO it was trained with (spec)
    clip: str = ""                    # CLIP whose text embedding it reads (spec)
    source: str = ""
    report: dict = field(default_factory=dict)

    @property
    def feature_dim(self) -> int:
        return self.network.feature_dim

    @property
    def text_dim(self) -> int:
        return self.network.text_dim

    def check_compatible(self, dino, clip, node: str = "LL_LearnableRegions",
                         input_name: str = "region_model") -> None:
        """InputError unless DINO's width and CLIP's embedding size are the trained ones."""
        if dino.embed_dim != self.feature_dim:
            raise InputError(node, input_name, f"was trained on DINO features of width {self.feature_dim} "
                             f"({self.dino or 'unknown DINO'}) but this DINO has {dino.embed_dim}",
                             "a region model trained with this DINO (toyworld/train_regions.py)")
        if clip.embed_dim != self.text_dim:
            raise InputError(node, input_name, f"reads CLIP text embeddings of size {self.text_dim} "
                             f"({self.clip or 'unknown CLIP'}) but this CLIP has {clip.embed_dim}",
                             "a region model trained with this CLIP (toyworld/train_regions.py)")


def save_region_model(network: AmortisedRegionNetwork, folder: str | Path, box_sizes, *,
                      dino: str = "", clip: str = "", report: dict | None = None,
                      half: bool = True) -> Path:
    """Write a region-model folder (config.json + model.safetensors) atomically."""
    from safetensors.torch import save_file

    from ..atomic import atomic_path
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().half() if half else v.detach().float()).contiguous()
             for k, v in network.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    config = {"format": FORMAT, **network.config(), "box_sizes": [round(float(s), 6) for s in box_sizes],
              "dino": dino, "clip": clip, "livelayers": report or {}}
    with atomic_path(folder / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    return folder


def _read(folder: Path) -> RegionModel:
    cfg_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.is_file() or not weights.is_file():
        raise CorruptFileError(f"{folder}: a region model folder needs {CONFIG_NAME} + {WEIGHTS_NAME}")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{cfg_path} is not valid JSON: {e}") from e
    if config.get("format") != FORMAT:
        raise CorruptFileError(f"{cfg_path}: not a LiveLayers region model (format={FORMAT!r})")
    from safetensors.torch import load_file
    try:
        state = load_file(str(weights))
    except Exception as e:
        raise CorruptFileError(f"{weights}: not readable safetensors ({e})") from e
    keys = ("feature_dim", "text_dim", "hidden", "roi_size", "geometry_dim")
    net = AmortisedRegionNetwork(**{k: int(config[k]) for k in keys if k in config})
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise CorruptFileError(f"{folder}: weights do not match the config ({e})") from e
    net.eval().requires_grad_(False)
    return RegionModel(net, tuple(float(s) for s in config.get("box_sizes", ())), config.get("dino", ""),
                       config.get("clip", ""), str(folder), config.get("livelayers", {}))


def load_region_model(spec: str, offline: bool | None = None, search_dirs=(),
                      node: str = "LL_LearnableRegions", input_name: str = "region_model") -> RegionModel:
    """Load a region model: a catalogue id (``toy-regions``), ``local-dir:/path`` or a
    folder, through ``engine/models/resolve.py`` (kind ``regions``)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(node, input_name, f"is {spec!r}", "a catalogue id (toy-regions), local-dir:/path or a folder")
    spec = spec.strip()
    if spec.startswith("local-dir:"):
        path = Path(spec[len("local-dir:"):]).expanduser()
    else:
        from ..models.resolve import resolve_model
        path = Path(resolve_model(spec, kind="regions", offline=offline, search_dirs=search_dirs))
    if not path.is_dir():
        raise ModelNotFoundError(f"region model {spec!r}: {str(path)!r} is not a folder; train one with "
                                 f"`python -m livelayers.toyworld.train_regions --out <folder>`")
    model = _read(path)
    model.source = spec
    return model
