"""Every command docs/panel.md shows runs (offscreen): the interactive ones
with --screenshot added (so they exit), the screenshot recipes as written
but into a temporary folder."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
from PySide6.QtWidgets import QApplication  # noqa: E402

from doc_blocks import blocks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "panel.md"


@pytest.fixture(scope="module")
def qapp():
    return QApplication.instance() or QApplication([])


def doc_commands() -> list[str]:
    """Command lines of the doc's fenced blocks that run the panel."""
    return [c for b in blocks([DOC]) for c in b.commands() if "-m livelayers panel" in c]


def run(line: str, tmp: Path) -> tuple[int, Path]:
    """Run one doc command in this process (through the CLI's own parser):
    (exit status, the screenshot it wrote)."""
    from livelayers.__main__ import main
    args = shlex.split(line)
    while "=" in args[0]:  # leading VAR=value: QT_QPA_PLATFORM=offscreen is set by conftest
        args.pop(0)
    assert args[:3] == ["python", "-m", "livelayers"], line
    args = args[3:]
    if "--screenshot" not in args:
        args += ["--screenshot", "shot.png"]
    i = args.index("--screenshot") + 1
    args[i] = str(tmp / Path(args[i]).name)
    args = [a.replace("out/panel/", f"{tmp}/out/") for a in args]
    return main(args), Path(args[i])


def test_the_doc_shows_the_commands():
    cmds = doc_commands()
    assert len(cmds) == 6 and sum("--screenshot" in c for c in cmds) == 2
    assert sum("--run" in c for c in cmds) == 1


@pytest.mark.parametrize("line", [c for c in doc_commands() if "--run" not in c])
def test_interactive_commands_open(qapp, line, tmp_path):
    code, png = run(line, tmp_path)
    assert code == 0 and png.stat().st_size > 10000


@pytest.mark.slow
@pytest.mark.parametrize("line", [c for c in doc_commands() if "--run" in c])
def test_screenshot_recipes_run_the_graph(qapp, line, tmp_path):
    code, png = run(line, tmp_path)
    assert code == 0 and png.stat().st_size > 20000
    assert list((tmp_path / "out").glob("*.exr"))           # the run wrote its EXR(s)
