"""Training checkpoints: weights, optimiser, RNG states and step in one file.

Saved atomically (a crash mid-save keeps the previous checkpoint) and loaded
with ``torch.load(weights_only=True)``, so a checkpoint can never execute
code. Only tensors, numbers, strings, lists and dicts go in.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_path
from .errors import CorruptFileError

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    """Every RNG a trainer may draw from, as plain tensors and numbers."""
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": int(np_pos), "numpy_gauss": [int(np_has_gauss), float(np_gauss)],
        "python": torch.tensor(py_internal, dtype=torch.int64),
        "python_meta": [int(py_version), py_gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32),
                         state["numpy_pos"], has_gauss, gauss))
    version, py_gauss = state["python_meta"]
    random.setstate((version, tuple(int(v) for v in state["python"].tolist()), py_gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | Path, expect: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a checkpoint safely. ``expect`` maps keys to required values (e.g.
    ``{"kind": "text2live", "version": 1}``); a mismatch is a clear error."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated, not a torch file, or unsafe content
        raise CorruptFileError(f"{path}: not a readable LiveLayers checkpoint ({e})") from e
    if not isinstance(state, dict):
        raise CorruptFileError(f"{path}: checkpoint holds {type(state).__name__}, expected a dict")
    for key, want in (expect or {}).items():
        got = state.get(key)
        if got != want:
            raise CorruptFileError(f"{path}: checkpoint has {key}={got!r}, expected {want!r}")
    return state


def states(objects: dict[str, Any]) -> dict[str, Any]:
    """The saveable state of each named training object, for a checkpoint:
    ``torch.Generator`` by ``get_state()``, everything else (modules,
    optimisers, grad scalers) by ``state_dict()``.

    >>> g = torch.Generator().manual_seed(3)
    >>> net = torch.nn.Linear(2, 1)
    >>> sorted(states({"net": net, "gen": g}))
    ['gen', 'net']
    """
    return {name: obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()
            for name, obj in objects.items()}


def load_states(state: dict[str, Any], objects: dict[str, Any]) -> None:
    """Restore each named object from ``state[name]`` (the inverse of ``states``).

    >>> a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    >>> load_states(states({"g": a}), {"g": b})
    >>> torch.equal(torch.rand(3, generator=b), torch.rand(3, generator=a))
    True
    """
    for name, obj in objects.items():
        if isinstance(obj, torch.Generator):
            obj.set_state(state[name])
        else:
            obj.load_state_dict(state[name])


def resume_run(run_dir: Path | None, kind: str, version: int, fingerprint: str,
               objects: dict[str, Any], belongs: str) -> dict[str, Any] | None:
    """Restore ``run_dir/checkpoint.pt`` into ``objects`` and return the whole
    state (``None`` when there is no run folder or no checkpoint yet). A
    checkpoint of another run (other ``fingerprint``) is refused, naming
    ``belongs``: what it belongs to ("a different clip, masks, settings or seed")."""
    if run_dir is None or not (Path(run_dir) / CHECKPOINT_NAME).exists():
        return None
    path = Path(run_dir) / CHECKPOINT_NAME
    state = load_checkpoint(path, expect={"kind": kind, "version": version})
    if state["fingerprint"] != fingerprint:
        raise CorruptFileError(f"{path}: this run folder belongs to {belongs}; "
                               "use a new run_dir (or delete it)")
    load_states(state, objects)
    return state
