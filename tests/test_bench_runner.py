"""``python -m livelayers bench`` (bench/suite.py): one table of every bench's
rows, the JSON it writes, ``--compare``, refusals, and a failing bench.

Timings are never asserted beyond "finite and positive"; what is asserted is
the structure: the fields, ratio = reference / ours, the comparison's
after/before. The full quick run (every bench) is docs/performance.md's
command, run here verbatim (claimed in tests/test_docs_commands.py).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doc_blocks import ROOT, blocks

SUITE = ROOT / "bench" / "suite.py"
FIELDS = {"bench", "case", "unit", "ours", "reference", "ratio", "note"}
ALL = ["io", "clip", "panel", "stylise", "regions", "diffusion", "atlas", "text2live", "text2live_video"]
DOC = ROOT / "docs" / "performance.md"
FULL_RUN = "python -m livelayers bench --json bench.json"


def load_suite(path: Path = SUITE):
    spec = importlib.util.spec_from_file_location("bench_suite_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "livelayers", "bench", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def check_run(data: dict, benches: list[str], size: str = "quick") -> None:
    """The saved run's structure, and ratio = reference / ours in every row."""
    assert data["format"] == "livelayers-bench/1"
    assert data["size"] == size and data["threads"] == 1 and data["benches"] == benches
    assert data["failed"] == []
    for key in ("platform", "cpu_count", "torch", "device"):
        assert data["machine"][key], key
    assert re.match(r"\d{4}-\d\d-\d\dT", data["date"])
    order = [benches.index(r["bench"]) for r in data["rows"]]
    assert order == sorted(order) and set(order) == set(range(len(benches)))  # every bench, in order
    for r in data["rows"]:
        assert set(r) == FIELDS, r
        assert math.isfinite(r["ours"]) and r["ours"] > 0, r
        if r["reference"] is None:
            assert r["ratio"] is None, r
        else:
            assert r["reference"] > 0 and r["ratio"] == pytest.approx(r["reference"] / r["ours"]), r


def table_rows(stdout: str) -> list[str]:
    """The lines of a printed table below its dashed rule."""
    lines = stdout.splitlines()
    rule = next(i for i, ln in enumerate(lines) if re.match(r"^-+(  -+)+$", ln))
    return [ln for ln in lines[rule + 1:] if ln.strip()]


@pytest.mark.timeout(600)
def test_two_benches_json_table_and_compare(tmp_path):
    out = tmp_path / "runs" / "before.json"
    res = cli("--size", "quick", "--only", "io", "clip", "--json", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    check_run(data, ["io", "clip"])
    assert any(r["reference"] is not None for r in data["rows"] if r["bench"] == "clip")
    assert [p.name for p in out.parent.iterdir()] == ["before.json"]  # no temporary file left

    # the printed table: one line per row, in order, numbers as saved
    lines = table_rows(res.stdout)
    assert len(lines) == len(data["rows"])
    for line, r in zip(lines, data["rows"]):
        assert line.startswith(r["bench"]) and r["case"] in line
        if r["ratio"] is not None:
            assert f"{r['ratio']:.2f}x" in line
    assert "reference design" in res.stdout and "ratio" in res.stdout

    # two saved runs, nothing run: a file against itself is 1.00x in every row
    same = cli("--compare", str(out), "--against", str(out), cwd=tmp_path, timeout=60)
    assert same.returncode == 0, same.stderr
    lines = table_rows(same.stdout)
    assert len(lines) == len(data["rows"]) and all(ln.endswith("1.00x") for ln in lines), same.stdout

    # a new run against the saved one: after/before per row of the benches run
    again = cli("--only", "io", "--compare", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    compared = table_rows(again.stdout.split("after/before = ")[1])
    io_rows = [r for r in data["rows"] if r["bench"] == "io"]
    assert len(compared) == len(io_rows)
    for line, r in zip(compared, io_rows):
        assert r["case"] in line
        change = float(re.search(r"(\d+\.\d+)x$", line).group(1))
        assert math.isfinite(change) and change > 0, line


@pytest.mark.parametrize("args, says", [
    (["--only", "io", "nope"], "--only nope: unknown bench; allowed: " + ", ".join(ALL)),
    (["--threads", "0"], "--threads 0: allowed: 1 or more"),
    (["--compare", "missing.json"],
     "--compare missing.json: no such file; allowed: a file written by bench --json"),
    (["--against", "x.json"], "--against NEW.json needs --compare OLD.json"),
    (["--official", "text2live"], "--official text2live: allowed: NAME=DIR, NAME one of text2live, atlas, "
                                  "diffusion, text2live_video"),
    (["--official", "io=x"], "--official io=x: io: no bench times its published code; "
                             "allowed: text2live, atlas, diffusion, text2live_video"),
    (["--size", "reference", "--official", "text2live_video=."],
     "--official text2live_video=.: not a Text2LIVE clone (missing train_video.py, configs/video_config.yaml, "
     "datasets/video_dataset.py, models/video_model.py, util/atlas_loss.py, util/atlas_utils.py, "
     "CLIP/clip/clip.py); allowed: a clone of github.com/omerbt/Text2LIVE"),
    (["--size", "reference", "--official", "atlas=."],
     "--official atlas=.: not a layered-neural-atlases clone (missing train.py, config/config.json, "
     "implicit_neural_networks.py, loss_utils.py, unwrap_utils.py, evaluate.py); "
     "allowed: a clone of github.com/ykasten/layered-neural-atlases"),
    (["--official-python", "atlas=/bin/sh"],
     "--official-python atlas=/bin/sh: allowed: NAME=PY for a NAME given to --official"),
    (["--official", "text2live=clone"], "--official text2live=clone: the published code runs at "
                                        "--size reference only"),
    (["--size", "reference", "--only", "io", "--official", "text2live=clone"],
     "--official text2live=clone: --only leaves out text2live"),
    (["--size", "reference", "--official", "text2live=missing"],
     "--official text2live=missing: no such folder; allowed: a clone of github.com/omerbt/Text2LIVE"),
    (["--size", "reference", "--official", "text2live=."],
     "--official text2live=.: not a Text2LIVE clone (missing train_image.py, configs/image_config.yaml, "
     "models/clip_extractor.py, models/clip_relevancy.py, util/losses.py, CLIP/clip/clip.py); "
     "allowed: a clone of github.com/omerbt/Text2LIVE"),
    (["--official", "diffusion=clone"], "--official diffusion=clone: the published code runs at "
                                        "--size reference only"),
    (["--size", "reference", "--only", "atlas", "--official", "diffusion=clone"],
     "--official diffusion=clone: --only leaves out diffusion"),
    (["--size", "reference", "--official", "diffusion=."],
     "--official diffusion=.: not a blended-diffusion clone (missing main.py, optimization/image_editor.py, "
     "optimization/arguments.py, optimization/augmentations.py, optimization/losses.py, "
     "guided_diffusion/guided_diffusion/script_util.py, guided_diffusion/guided_diffusion/gaussian_diffusion.py, "
     "guided_diffusion/guided_diffusion/unet.py, CLIP/clip/clip.py, CLIP/clip/model.py); "
     "allowed: a clone of github.com/omriav/blended-diffusion"),
])
def test_bad_arguments_are_refused_before_any_work(tmp_path, args, says):
    t0 = time.perf_counter()
    res = cli(*args, "--json", "out.json", cwd=tmp_path, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"livelayers: bench: {says}"]
    assert not (tmp_path / "out.json").exists() and res.stdout == ""
    assert time.perf_counter() - t0 < 30  # no bench started (a child alone imports torch)


def test_a_saved_file_of_another_kind_is_refused(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    res = cli("--compare", "other.json", cwd=tmp_path, timeout=60)
    assert res.returncode == 2 and "not a livelayers-bench/1 file" in res.stderr


FAKE = {
    "_timing.py": (ROOT / "bench" / "_timing.py").read_text(),
    "bench_io.py": "def rows(size):\n    raise RuntimeError('the EXR writer broke')\n",
    "bench_clip.py": ("from _timing import row\n"
                      "def rows(size):\n    return [row('clip', 'a pass', 'ms', 2.0, 3.0)]\n"),
    "bench_panel.py": ("def rows(size):\n    return [{'bench': 'panel', 'case': 'x', 'unit': 'ms', "
                       "'ours': float('nan'), 'reference': None, 'ratio': None, 'note': ''}]\n"),
    "bench_text2live.py": "import os\ndef rows(size):\n    os._exit(3)\n",
    "bench_atlas.py": ("from _timing import row\n"
                       "def rows(size):\n    return [row('atlas', 'a step', 's', 4.0)]\n"),
}


@pytest.mark.timeout(300)
def test_a_failing_bench_is_reported_in_its_row_and_the_others_still_run(tmp_path, capsys):
    """A copy of the suite next to fake benches: one raises, one returns NaN,
    one kills its process; the others' rows still come, the exit status is 1."""
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "suite.py").write_text(SUITE.read_text())
    for name, text in FAKE.items():
        (folder / name).write_text(text)
    suite = load_suite(folder / "suite.py")
    args = argparse.Namespace(size="quick", only=["io", "clip", "panel", "text2live", "atlas"],
                              threads=1, json=str(tmp_path / "run.json"), compare=None, against=None,
                              official=None, official_python=None)
    assert suite.cmd_bench(args) == 1
    captured = capsys.readouterr()
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["failed"] == ["io", "panel", "text2live"]
    by_bench = {r["bench"]: r for r in data["rows"]}
    assert by_bench["clip"]["ratio"] == 1.5 and by_bench["atlas"]["ours"] == 4.0
    assert by_bench["io"]["note"] == "RuntimeError: the EXR writer broke"
    assert "not a finite number" in by_bench["panel"]["note"]
    assert "ended (exit 3)" in by_bench["text2live"]["note"]
    for name in ("io", "panel", "text2live"):
        assert by_bench[name]["case"] == "(failed)" and by_bench[name]["ours"] is None
    failed_lines = [ln for ln in table_rows(captured.out) if "(failed)" in ln]
    assert len(failed_lines) == 3 and "the EXR writer broke" in failed_lines[0]
    assert "3 bench(es) failed: io, panel, text2live" in captured.err


OFFICIAL_FAKE = {
    "_timing.py": FAKE["_timing.py"],
    "official_text2live.py": (ROOT / "bench" / "official_text2live.py").read_text(),
    "_official.py": (ROOT / "bench" / "_official.py").read_text(),
    "bench_text2live.py": ("import os\nfrom _timing import row\n"
                           "def rows(size):\n    return [row('text2live', 'step', 's', 1.0, 2.0, "
                           "os.environ.get('LIVELAYERS_OFFICIAL_TEXT2LIVE', 'none') + ' ' + "
                           "os.environ.get('LIVELAYERS_OFFICIAL_TEXT2LIVE_PYTHON', 'none'))]\n"),
    "bench_io.py": ("import os\nfrom _timing import row\n"
                    "def rows(size):\n    return [row('io', 'x', 's', 1.0, None, "
                    "os.environ.get('LIVELAYERS_OFFICIAL_TEXT2LIVE', 'none'))]\n"),
}


def fake_bench_with_clone(tmp_path, fakes: dict, harness: str, clone_name: str):
    """A bench folder of ``fakes`` (file name -> text) beside the real suite, and a
    fake clone holding the files ``harness``'s NEEDED lists (empty: the check reads
    names only). Returns (the loaded suite, the clone's path)."""
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "suite.py").write_text(SUITE.read_text())
    for name, text in fakes.items():
        (folder / name).write_text(text)
    clone = tmp_path / clone_name
    suite = load_suite(folder / "suite.py")
    sys.path.insert(0, str(folder))
    try:
        needed = importlib.import_module(harness).NEEDED
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(harness, None)
    for rel in needed:
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        (clone / rel).write_text("")
    return suite, clone


@pytest.mark.timeout(300)
def test_official_clone_reaches_the_text2live_bench_only_when_asked(tmp_path, monkeypatch):
    """--official text2live=DIR: DIR (absolute) reaches the child's bench through
    its environment variable and the run records it; a variable left in the
    caller's environment does not leak into a run that did not ask for it."""
    suite, clone = fake_bench_with_clone(tmp_path, OFFICIAL_FAKE, "official_text2live", "Text2LIVE")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIVELAYERS_OFFICIAL_TEXT2LIVE", "/stale/from/the/shell")
    monkeypatch.setenv("LIVELAYERS_OFFICIAL_TEXT2LIVE_PYTHON", "/stale/python")
    base = dict(only=["io", "text2live"], threads=1, compare=None, against=None)
    args = argparse.Namespace(size="reference", json="with.json", official=["text2live=Text2LIVE"],
                              official_python=[f"text2live={sys.executable}"], **base)
    assert suite.check_args(args) is None
    assert suite.cmd_bench(args) == 0
    data = json.loads((tmp_path / "with.json").read_text())
    assert data["official"] == {"text2live": str(clone)}
    notes = {r["bench"]: r["note"] for r in data["rows"]}
    assert notes == {"io": str(clone), "text2live": f"{clone} {os.path.abspath(sys.executable)}"}
    args = argparse.Namespace(size="reference", json="without.json", official=None, official_python=None,
                              **base)
    assert suite.cmd_bench(args) == 0
    data = json.loads((tmp_path / "without.json").read_text())
    assert data["official"] == {} and {r["note"] for r in data["rows"]} == {"none", "none none"}


DIFFUSION_FAKE = {
    "_timing.py": FAKE["_timing.py"],
    "official_blended_diffusion.py": (ROOT / "bench" / "official_blended_diffusion.py").read_text(),
    "_official.py": (ROOT / "bench" / "_official.py").read_text(),
    "bench_diffusion.py": ("import os\nfrom _timing import row\n"
                           "def rows(size):\n    return [row('diffusion', 'step', 's', 1.0, 2.0, "
                           "os.environ.get('LIVELAYERS_OFFICIAL_DIFFUSION', 'none') + ' ' + "
                           "os.environ.get('LIVELAYERS_OFFICIAL_DIFFUSION_PYTHON', 'none'))]\n"),
}


@pytest.mark.timeout(300)
def test_official_clone_reaches_the_diffusion_bench_with_its_python(tmp_path, monkeypatch):
    """--official diffusion=DIR --official-python diffusion=PY: both (absolute)
    reach the diffusion bench through LIVELAYERS_OFFICIAL_DIFFUSION(_PYTHON);
    stale values in the caller's environment do not."""
    suite, clone = fake_bench_with_clone(tmp_path, DIFFUSION_FAKE, "official_blended_diffusion",
                                         "blended-diffusion")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIVELAYERS_OFFICIAL_DIFFUSION", "/stale/from/the/shell")
    monkeypatch.setenv("LIVELAYERS_OFFICIAL_DIFFUSION_PYTHON", "/stale/python")
    base = dict(only=["diffusion"], threads=1, compare=None, against=None)
    args = argparse.Namespace(size="reference", json="with.json", official=["diffusion=blended-diffusion"],
                              official_python=[f"diffusion={sys.executable}"], **base)
    assert suite.check_args(args) is None
    assert suite.cmd_bench(args) == 0
    data = json.loads((tmp_path / "with.json").read_text())
    assert data["official"] == {"diffusion": str(clone)}
    assert [r["note"] for r in data["rows"]] == [f"{clone} {os.path.abspath(sys.executable)}"]
    args = argparse.Namespace(size="reference", json="without.json", official=None, official_python=None,
                              **base)
    assert suite.cmd_bench(args) == 0
    data = json.loads((tmp_path / "without.json").read_text())
    assert data["official"] == {} and [r["note"] for r in data["rows"]] == ["none none"]


def test_rows_helper_and_groups():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from _timing import check_size, row
    finally:
        sys.path.remove(str(ROOT / "bench"))
    r = row("x", "case", "s", 2.0, 5.0, "n")
    assert r == {"bench": "x", "case": "case", "unit": "s", "ours": 2.0, "reference": 5.0, "ratio": 2.5,
                 "note": "n"}
    assert row("x", "case", "s", 2.0)["ratio"] is None
    with pytest.raises(ValueError, match="allowed: quick, reference"):
        check_size("huge")
    suite = load_suite()
    assert list(suite.BENCHES) == ALL
    # the memory-comparing benches start from a small process of their own
    assert suite._groups(ALL) == [ALL[:7], ["text2live"], ["text2live_video"]]
    assert suite._groups(["text2live", "io", "clip"]) == [["text2live"], ["io", "clip"]]
    for name, module in suite.BENCHES.items():  # every bench script has rows(size)
        assert "\ndef rows(size: str) -> list[dict]:" in (ROOT / "bench" / f"{module}.py").read_text()


def full_run_command() -> str:
    found = [c for b in blocks([DOC]) if b.lang == "bash" for c in b.commands() if c == FULL_RUN]
    assert len(found) == 1, f"{DOC.name} shows `{FULL_RUN}` {len(found)} times, not once"
    return found[0]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_full_quick_run_of_docs_performance_md(tmp_path):
    """docs/performance.md's command, verbatim: every bench at the quick size
    (about 2 minutes on one idle core), none failing, the JSON complete."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    res = subprocess.run(["bash", "-c", full_run_command()], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=840)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data = json.loads((tmp_path / "bench.json").read_text())
    check_run(data, ALL)
    refs = {r["bench"] for r in data["rows"] if r["reference"] is not None}
    assert refs == {"clip", "regions", "diffusion", "atlas", "text2live", "text2live_video"}
    print({k: round(v, 1) for k, v in data["seconds"].items()}, f"load {data['machine']['load_average']}")
