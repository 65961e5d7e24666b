"""README's "Using it" run line does what its comment says (issue: docs are tests).

The other README commands are run elsewhere: the demo and models commands in
tests/test_cli.py and tests/test_models.py, the wedge line in tests/test_wedge.py,
export-job in tests/test_farm.py (the README line verbatim).
"""
from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest

from livelayers.__main__ import main
from livelayers.engine.io import read_exr_header
from livelayers.engine.io.exr import read_exr_layers

ROOT = Path(__file__).resolve().parents[1]


def readme_line(prefix: str) -> list[str]:
    (line,) = [ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith(prefix)]
    return shlex.split(line)


@pytest.mark.slow
def test_run_on_a_frame_range_writes_the_stills_edit_to_every_frame(tmp_path, monkeypatch, one_thread):
    """`run examples/text2live.json --frames 1-10 --set 3.prompt="blue circle"`:
    one training, ten complete EXRs with the same edit, the prompt in the header."""
    args = readme_line(".venv/bin/python -m livelayers run examples/text2live.json")
    assert args[1:3] == ["-m", "livelayers"] and "--frames" in args
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    assert main(args[3:] + ["--progress", "none"]) == 0
    files = sorted((tmp_path / "out").glob("text2live.*.exr"))
    assert [f.name for f in files] == [f"text2live.{i:04d}.exr" for i in range(1, 11)]
    first = read_exr_layers(files[0])
    for f in files[1:]:
        layers = read_exr_layers(f)
        assert layers.keys() == first.keys()
        for name, px in layers.items():
            np.testing.assert_array_equal(px, first[name])
    assert {"R", "G", "B", "A"} <= set(read_exr_header(files[0])["channels"])
    header = read_exr_header(files[-1])
    assert any("blue circle" in str(v) for k, v in header.items() if k.startswith("livelayers/"))
