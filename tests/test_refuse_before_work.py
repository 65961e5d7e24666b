"""Refuse before working: what is knowable before the first node runs is checked
first (one line naming node and input, nothing run, nothing written), and the
runner's exit statuses (docs/runner.md) for success, refusal, failure and stop."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from livelayers import __main__ as cli
from livelayers.engine import progress
from livelayers.engine.executor import WorkflowError, run_workflow
from livelayers.nodes import NODE_CLASS_MAPPINGS
from livelayers.nodes.io_nodes import LL_LoadImage, LL_SaveEXR


def _png(path: Path, value: float, size: int = 8) -> None:
    import OpenImageIO as oiio
    path.parent.mkdir(parents=True, exist_ok=True)
    assert oiio.ImageBuf(np.full((size, size, 3), value, np.float32)).write(str(path), "uint8")


@pytest.fixture
def ran(monkeypatch):
    """Names of the nodes whose function ran (the real functions still run)."""
    calls: list[str] = []
    for cls in (LL_LoadImage, LL_SaveEXR):
        real = getattr(cls, cls.FUNCTION)

        def counted(self, *a, _real=real, _name=cls.__name__, **kw):
            calls.append(_name)
            return _real(self, *a, **kw)
        monkeypatch.setattr(cls, cls.FUNCTION, counted)
    return calls


def _graph(load_path: str, save_path: str, **save_inputs) -> dict:
    save = {"path": save_path, "composite": ["1", 0], "plate": ["1", 2], "frames": ""}
    save.update(save_inputs)
    load = {"path": load_path, "frames": "", "colourspace": "auto", "layer": ""}
    return {"1": {"class_type": "LL_LoadImage", "inputs": load},
            "2": {"class_type": "LL_SaveEXR", "inputs": save}}


def _refused(workflow: dict, **kw) -> str:
    with pytest.raises(WorkflowError) as err:
        run_workflow(workflow, NODE_CLASS_MAPPINGS, **kw)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_path_that_is_not_exr_is_refused_before_any_node_runs(tmp_path, ran):
    _png(tmp_path / "still.png", 0.5)
    msg = _refused(_graph(str(tmp_path / "still.png"), str(tmp_path / "out" / "edit.####.png")))
    assert msg.startswith("node 2 (LL_SaveEXR) input 'path': ") and "does not end in .exr" in msg
    assert "allowed: " in msg
    assert ran == [] and not (tmp_path / "out").exists()


def test_several_frames_need_a_frame_token_in_the_path(tmp_path, ran):
    _png(tmp_path / "still.png", 0.5)
    graph = _graph(str(tmp_path / "still.png"), str(tmp_path / "out" / "edit.exr"))
    msg = _refused(graph, frames=[1, 2, 3])
    assert msg.startswith("node 2 (LL_SaveEXR) input 'path': ")
    assert "no frame token" in msg and "3 frames" in msg and "####" in msg
    graph["2"]["inputs"]["frames"] = "1-3"  # the same written in the graph
    assert "no frame token" in _refused(graph)
    assert ran == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("given, missing", [("edit_image", "edit_alpha"),
                                            ("edit_alpha", "edit_image")])
def test_edit_image_and_edit_alpha_come_together(tmp_path, ran, given, missing):
    _png(tmp_path / "still.png", 0.5)
    graph = _graph(str(tmp_path / "still.png"), str(tmp_path / "out" / "e.####.exr"))
    graph["2"]["inputs"][given] = ["1", 0 if given == "edit_image" else 1]
    msg = _refused(graph)
    assert msg.startswith(f"node 2 (LL_SaveEXR) input '{missing}': ") and f"'{given}'" in msg
    assert ran == [] and not (tmp_path / "out").exists()


def test_a_frame_range_longer_than_the_sequence_on_disk_is_refused(tmp_path, ran):
    for f in (1, 2, 3):
        _png(tmp_path / "plate" / f"p.{f:04d}.png", f / 4)
    graph = _graph(str(tmp_path / "plate" / "p.####.png"), str(tmp_path / "out" / "e.####.exr"))
    msg = _refused(graph, frames=list(range(1, 11)))
    assert msg.startswith("node 1 (LL_LoadImage) input 'frames': ")
    assert "4-10" in msg and "allowed: " in msg
    assert ran == [] and not (tmp_path / "out").exists()
    # ... also when the skip of complete frames would have run only the missing ones
    _refused(graph, frames=list(range(1, 11)), skip_complete=lambda p: False)
    assert ran == []
    result = run_workflow(graph, NODE_CLASS_MAPPINGS, frames=[1, 2, 3])  # the range on disk runs
    assert [Path(p).name for p in result.written] == ["e.0001.exr", "e.0002.exr", "e.0003.exr"]


def test_a_still_serves_every_frame_of_a_range(tmp_path):
    """As LL_LoadImage serves a still for any range, LL_SaveEXR holds a batch of 1 over it."""
    from livelayers.engine.io import read_exr_layers
    _png(tmp_path / "still.png", 0.5)
    graph = _graph(str(tmp_path / "still.png"), str(tmp_path / "out" / "e.####.exr"),
                   edit_image=["1", 0], edit_alpha=["1", 1], source=["1", 0])
    result = run_workflow(graph, NODE_CLASS_MAPPINGS, frames=[1, 2, 3])
    assert [Path(p).name for p in result.written] == ["e.0001.exr", "e.0002.exr", "e.0003.exr"]
    first = read_exr_layers(result.written[0])
    assert {"composite", "edit", "source"} <= set(first)
    for p in result.written[1:]:
        layers = read_exr_layers(p)
        assert all(np.array_equal(layers[k], first[k]) for k in first)


# ---------------------------------------------------------------- --set keeps types


def test_set_reads_values_by_the_inputs_declared_type(tmp_path):
    _png(tmp_path / "still.png", 0.5)
    wf = _graph(str(tmp_path / "still.png"), str(tmp_path / "e.####.exr"))
    wf["2"]["inputs"]["metadata"] = ""
    assert cli._override("2.metadata=5", wf, NODE_CLASS_MAPPINGS) == ("2.metadata", "5")
    assert cli._override("2.keep_nonnegative=true", wf, NODE_CLASS_MAPPINGS)[1] is True
    assert cli._override("2.seed=7", wf, NODE_CLASS_MAPPINGS) == ("2.seed", 7)
    with pytest.raises(WorkflowError) as err:
        cli._override("2.seed=seven", wf, NODE_CLASS_MAPPINGS)
    assert str(err.value).startswith("node 2 (LL_SaveEXR) input 'seed': ")
    assert "not an integer" in str(err.value) and "allowed: " in str(err.value)


# ---------------------------------------------------------------- exit statuses


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    """In-process CLI runs: signal handlers and the stop flag restored afterwards."""
    monkeypatch.chdir(tmp_path)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    progress.clear_stop()
    yield
    progress.clear_stop()
    for s, h in handlers.items():
        signal.signal(s, h)


def _write(tmp_path: Path, workflow: dict) -> str:
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(workflow))
    return str(path)


def test_exit_status_0_on_success_and_2_when_refused(tmp_path, cli_env, ran, capsys):
    _png(tmp_path / "still.png", 0.5)
    graph = _write(tmp_path, _graph(str(tmp_path / "still.png"), str(tmp_path / "out" / "e.####.exr")))
    assert cli.main(["run", graph, "--progress", "none", "--frames", "1-2"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["e.0001.exr", "e.0002.exr"]
    capsys.readouterr()
    ran.clear()
    assert cli.main(["run", graph, "--progress", "none", "--set", "2.path=out/e.png"]) == 2
    assert ran == []
    err = capsys.readouterr().err.strip()
    assert err.startswith("livelayers: node 2 (LL_SaveEXR) input 'path'") and "\n" not in err
    assert cli.main(["run", graph, "--progress", "none", "--set", "2.seed=x"]) == 2
    assert "input 'seed'" in capsys.readouterr().err and ran == []


def test_exit_status_1_when_a_node_fails(tmp_path, cli_env, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")  # on disk (passes the check), unreadable
    graph = _write(tmp_path, _graph(str(bad), str(tmp_path / "out" / "e.####.exr")))
    assert cli.main(["run", graph, "--progress", "none"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("livelayers: ") and "LL_LoadImage" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_exit_status_130_when_stopped_by_sigterm(tmp_path, cli_env, monkeypatch, capsys):
    _png(tmp_path / "still.png", 0.5)
    graph = _write(tmp_path, _graph(str(tmp_path / "still.png"), str(tmp_path / "out" / "e.####.exr")))
    real = LL_LoadImage.load

    def load_then_sigterm(self, *a, **kw):
        out = real(self, *a, **kw)
        os.kill(os.getpid(), signal.SIGTERM)  # the farm stops the task during the first node
        return out
    monkeypatch.setattr(LL_LoadImage, "load", load_then_sigterm)
    assert cli.main(["run", graph, "--progress", "none"]) == cli.EXIT_STOPPED == 130
    assert "stopped" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # LL_SaveEXR never ran


def test_runner_doc_lists_the_statuses_the_tests_above_check():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "runner.md").read_text()
    header = next(line for line in doc.splitlines() if line.startswith("| command |"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == ["0", "1", "2", "130"]
    run_row = next(line for line in doc.splitlines() if line.startswith("| `run`"))
    cells = [c.strip() for c in run_row.strip("|").split("|")][1:]
    assert len(cells) == 4 and all(c and c != "—" for c in cells)
    for command in ("wedge", "export-job", "models verify", "models fetch", "panel"):
        assert f"| `{command}`" in doc
