"""Helpers shared by the harnesses that time the published code from a clone
the user made (bench/official_*.py; the clones are never shipped). Standard
library only at import: ``python -m livelayers bench`` checks a clone before any work."""
from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone


def missing_files(root: str, needed: tuple[str, ...], what: str) -> str | None:
    """Why ``root`` is not a clone of ``what`` (judged by ``needed`` files), or None."""
    if not os.path.isdir(root):
        return "no such folder"
    missing = [p for p in needed if not os.path.isfile(os.path.join(root, p))]
    if missing:
        return f"not a {what} clone (missing {', '.join(missing)})"
    return None


def commit_of(root: str) -> str:
    """The clone's HEAD commit, or "unknown" (not a git clone)."""
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=30)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def now() -> str:
    """The local date and time of a measurement, to the minute."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="minutes")


def random_clip_file(folder: str, shape: tuple, name: str) -> str:
    """A state dict of a randomly initialised CLIP of ``shape`` (the clone's own
    ``CLIP`` class arguments), saved as ``folder/random-<name>.pt`` where the
    clone's ``clip.load`` can read it as a file (hubs may be unreachable)."""
    import torch
    from CLIP.clip import model as clip_model  # the clone's vendored CLIP, on sys.path

    torch.manual_seed(0)
    path = os.path.join(folder, f"random-{name}.pt")
    torch.save(clip_model.CLIP(*shape).state_dict(), path)
    return path


def peak_memory(device: str) -> tuple[float, str]:
    """(MiB, what it is) of this process's peak: CUDA max allocated, or max RSS on a CPU."""
    import resource

    import torch
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20, "cuda max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "max RSS"
