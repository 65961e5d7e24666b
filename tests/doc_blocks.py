"""The fenced blocks of README.md and docs/*.md, and the shell commands in them
(one home for reading the docs as tests: tests/test_docs_commands.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A fence may be indented (inside a list item); it closes at the same indent.
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.S | re.M)


@dataclass(frozen=True)
class Block:
    doc: str      # "README.md" or "docs/farm.md"
    line: int     # line of the opening fence
    lang: str     # the fence's language tag ("" when untagged)
    text: str     # the body, indentation removed
    marker: str = ""  # the name of a ``<!-- name -->`` comment right above the fence

    def shell_lines(self) -> list[str]:
        """``commands()`` without ``VAR=value`` assignments (tests set those themselves)."""
        return [c for c in self.commands() if not re.match(r"^[A-Z_]+=", c)]

    def commands(self) -> list[str]:
        """The block's commands: continuation lines joined, comments dropped
        (a comment starts a line, or follows two spaces: ``####`` in a frame
        pattern is not one)."""
        out, pending = [], ""
        for raw in self.text.splitlines():
            line = raw.split("  #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
            if not line.strip() and not pending:
                continue
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            out.append((pending + line.strip()).strip())
            pending = ""
        return [c for c in out if c]


def doc_files() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


MARKER = re.compile(r"<!--\s*(?P<name>[\w-]+)\s*-->\s*$")


def blocks(files: list[Path] | None = None) -> list[Block]:
    found = []
    for path in files or doc_files():
        text = path.read_text()
        for m in FENCE.finditer(text):
            indent = len(m.group("indent"))
            body = "\n".join(ln[indent:] for ln in m.group("body").splitlines())
            above = MARKER.search(text[:m.start()].rstrip())
            found.append(Block(str(path.relative_to(ROOT)), text[:m.start()].count("\n") + 1,
                               m.group("lang"), body, above.group("name") if above else ""))
    return found


def marked_block(doc: str, marker: str) -> Block:
    """The block of ``doc`` ("docs/video.md") right below ``<!-- marker -->``."""
    found = [b for b in blocks([ROOT / doc]) if b.marker == marker]
    assert len(found) == 1, f"{doc} has {len(found)} code blocks marked <!-- {marker} -->, not 1"
    return found[0]
