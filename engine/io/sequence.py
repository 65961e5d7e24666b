"""Frame-sequence file patterns: ``plate.####.exr``, ``plate.%04d.exr``,
``plate.@@@@.png``.

``#`` and ``@`` each stand for one digit of zero-padded frame number
(``####`` = 4 digits); ``%0Nd`` is printf style; ``%d`` is unpadded. A
pattern without a frame token names a single file. Negative frames are
written with a leading minus inside the padded width (``-001``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..frames import format_frames

_TOKEN = re.compile(r"#+|@+|%0?(\d*)d")


@dataclass(frozen=True)
class FramePattern:
    """A parsed file pattern: ``prefix`` + zero-padded frame (``width`` digits) + ``suffix``."""

    text: str
    prefix: str
    suffix: str
    width: int  # 0 = no padding; -1 = not a sequence (single file)

    @property
    def is_sequence(self) -> bool:
        return self.width >= 0

    def path(self, frame: int | None) -> Path:
        """The file of ``frame`` (``frame`` ignored for a single-file pattern)."""
        if not self.is_sequence:
            return Path(self.text)
        return Path(f"{self.prefix}{frame:0{self.width}d}{self.suffix}")

    def paths(self, frames: list[int]) -> list[Path]:
        return [self.path(f) for f in frames]

    def discover(self) -> list[int]:
        """Frame numbers whose files exist on disk, sorted."""
        if not self.is_sequence:
            return []
        folder = Path(self.prefix).parent
        stem = Path(self.prefix).name
        if not folder.is_dir():
            return []
        digits = r"-?\d+" if self.width == 0 else rf"-?\d{{{max(self.width - 1, 1)},}}"
        rx = re.compile(re.escape(stem) + f"({digits})" + re.escape(self.suffix) + "$")
        found = []
        for entry in folder.iterdir():
            m = rx.match(entry.name)
            # Only names this pattern would write (same padding), so 'a.01.exr'
            # is not mistaken for frame 1 of 'a.####.exr'.
            if m and entry.is_file() and self.path(int(m.group(1))).name == entry.name:
                found.append(int(m.group(1)))
        return sorted(found)


def parse_pattern(text: str | Path) -> FramePattern:
    """Parse a file pattern; only the file name (not folders) may hold the token."""
    text = str(text)
    name_start = len(text) - len(Path(text).name)
    matches = [m for m in _TOKEN.finditer(text) if m.start() >= name_start]
    if not matches:
        return FramePattern(text, text, "", -1)
    if len(matches) > 1:
        raise ValueError(f"file pattern {text!r} has {len(matches)} frame tokens; allowed: one "
                         "(####, @@@@ or %04d)")
    m = matches[0]
    token = m.group(0)
    if token[0] in "#@":
        width = len(token)
    else:
        width = int(m.group(1) or 0)
    return FramePattern(text, text[:m.start()], text[m.end():], width)


def missing_frames_message(pattern: FramePattern, missing: list[int], wanted: list[int]) -> str:
    """One message naming every missing frame of a sequence."""
    first = pattern.path(missing[0])
    on_disk = pattern.discover()  # what the user can ask for instead
    have = f"frames {format_frames(on_disk)}" if on_disk else "none"
    return (f"{len(missing)} of {len(wanted)} frames of {pattern.text!r} are missing: "
            f"frames {format_frames(missing)} (e.g. {first}); on disk: {have}")
