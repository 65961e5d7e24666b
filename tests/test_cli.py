"""The command line end to end: demo, exit codes, SIGTERM, idempotent reruns."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OIIOTOOL = shutil.which("oiiotool") or str(Path(sys.executable).parent / "oiiotool")


def cli(*args, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "livelayers", *args], capture_output=True,
                          text=True, env=env, cwd=kw.pop("cwd", ROOT), **kw)


@pytest.mark.slow
def test_demo_writes_a_layered_exr_that_oiiotool_reads(tmp_path):
    out = tmp_path / "demo"
    run = cli("demo", "--out", str(out), "--progress", "none")
    assert run.returncode == 0, run.stderr
    exr = out / "demo.0001.exr"
    assert exr.is_file() and str(exr) in run.stdout
    info = subprocess.run([OIIOTOOL, "--info", "-v", str(exr)], capture_output=True, text=True,
                          check=True).stdout
    for channel in ("R (half), G (half), B (half), A (half)", "composite.R (half)",
                    "source.R (half)", "edit.A (half)", "alpha.A (float)", "relevancy.Y (float)",
                    "greenscreen.R (half)"):
        assert channel in info, channel
    assert "livelayers/prompt: \"blue circle\"" in info
    assert "livelayers/version" in info and "livelayers/api_workflow" in info
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_validation_error_exits_2_and_names_the_node(tmp_path):
    graph = json.loads((ROOT / "examples" / "demo.json").read_text())
    graph["3"]["inputs"]["steps"] = 0  # below the minimum
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(graph))
    run = cli("run", str(path), "--progress", "none")
    assert run.returncode == 2
    assert "node 3 (LL_Text2LIVE) input 'steps'" in run.stderr and "minimum" in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_frames_and_overrides_are_clear_errors(tmp_path):
    run = cli("run", str(ROOT / "examples" / "demo.json"), "--frames", "1-x")
    assert run.returncode == 2 and "Open Job Description range" in run.stderr
    run = cli("run", str(ROOT / "examples" / "demo.json"), "--set", "99.steps=3")
    assert run.returncode == 2 and "node 99" in run.stderr


def _slow_graph(tmp_path: Path) -> Path:
    graph = json.loads((ROOT / "examples" / "demo.json").read_text())
    graph["1"]["inputs"]["path"] = str(ROOT / "examples" / "assets" / "toy_scene.png")
    graph["3"]["inputs"].update(steps=100000, run_dir=str(tmp_path / "run"))
    graph["4"]["inputs"]["path"] = str(tmp_path / "out" / "edit.####.exr")
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(graph))
    return path


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_a_checkpoint_and_no_partial_output(tmp_path):
    graph = _slow_graph(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "livelayers", "run", str(graph), "--progress",
                             "log"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    lines: list[str] = []
    started = threading.Event()

    def read():  # wait (in a thread, so a silent child cannot hang the test) for training
        for line in proc.stderr:
            lines.append(line)
            if "LL_Text2LIVE" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(timeout=300), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    rest = "".join(lines)
    assert proc.returncode == 130, rest
    assert "stopped" in rest
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    assert (tmp_path / "run" / "checkpoint.pt").is_file()  # the trainer saved where it was


class LL_TestBoom:
    """A node with a bug: a plain RuntimeError, not one of LiveLayers' errors."""
    RETURN_TYPES, FUNCTION, OUTPUT_NODE, CATEGORY = (), "run", True, "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "x"})}}

    def run(self, text):
        raise RuntimeError(f"boom at {text}")


def test_a_node_bug_is_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    """No raw traceback: `node N (CLASS) failed: ExcType: message` + a hint, exit 1;
    `--debug` prints the traceback as well (docs/runner.md, exit statuses)."""
    from livelayers.__main__ import main
    from livelayers.nodes import NODE_CLASS_MAPPINGS
    monkeypatch.setitem(NODE_CLASS_MAPPINGS, "LL_TestBoom", LL_TestBoom)
    graph = tmp_path / "boom.json"
    graph.write_text(json.dumps({"7": {"class_type": "LL_TestBoom", "inputs": {"text": "f1"}}}))
    assert main(["run", str(graph), "--progress", "none"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["livelayers: node 7 (LL_TestBoom) failed: RuntimeError: boom at f1",
                   "livelayers: run again with --debug to see the traceback"]
    assert main(["run", str(graph), "--progress", "none", "--debug"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "in run\n" in err and "raise RuntimeError" in err      # the node's own frame
    assert err.strip().splitlines()[-1] == (
        "livelayers: node 7 (LL_TestBoom) failed: RuntimeError: boom at f1")
    # a failure outside any node (here: checking the outputs) is one line too
    from livelayers.engine import executor

    def broken(*a, **k):
        raise OSError("disk gone")
    monkeypatch.setattr(executor, "expected_outputs", broken)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"7": {"class_type": "LL_TestBoom", "inputs": {"text": "f1"}}}))
    monkeypatch.setattr(LL_TestBoom, "run", lambda self, text: ())
    assert main(["run", str(good), "--progress", "none"]) == 1
    err = capsys.readouterr().err
    assert "livelayers: failed: OSError: disk gone" in err and "Traceback" not in err
