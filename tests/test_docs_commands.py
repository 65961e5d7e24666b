"""Docs are tests: every command a fenced ``bash`` block of README.md or docs/
shows is run by the test suite, and does what the text says.

Each command is either
- run here, verbatim, in the doc's order, in a fresh workspace per doc (a
  folder where ``examples/``, ``tests/assets/`` and ``.venv`` are linked in, so
  the relative paths resolve as in a checkout; ``python`` is the project's);
- claimed by another test file (``CLAIMED``) that reads the same doc and runs
  the command with the checks that command needs (images opened, headers
  read);
- ``RUN_ELSEWHERE``: the very command another doc runs here (run once); or
- ``NOT_RUN`` for the one reason allowed: it needs a service this machine has
  not (a render farm account, the network).
A command in no list fails ``test_every_command_has_a_runner``; an entry whose
command has left the docs fails too, so the lists cannot go stale.
Other fences carry a tag saying what they are (python, text, json, yaml, xml).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from doc_blocks import ROOT, blocks

LANGS = {"bash", "python", "text", "json", "yaml", "xml"}

# (doc, start of the command) -> the test file that runs it (and reads that doc)
CLAIMED = {
    ("README.md", ".venv/bin/python -m livelayers run examples/text2live.json --frames 1-10"):
        "tests/test_readme_commands.py",
    ("README.md", ".venv/bin/python -m livelayers wedge examples/text2live.json"): "tests/test_wedge.py",
    ("README.md", ".venv/bin/python -m livelayers export-job examples/atlas_render.json"):
        "tests/test_farm.py",
    ("docs/comfyui.md", "cd ComfyUI/custom_nodes"): "tests/test_comfyui_workflows.py",
    ("docs/comfyui.md", "git clone <repository URL> LiveLayers"): "tests/test_comfyui_workflows.py",
    ("docs/comfyui.md", "cd LiveLayers"): "tests/test_comfyui_workflows.py",
    ("docs/comfyui.md", "python install.py --dry-run"): "tests/test_comfyui_workflows.py",
    ("docs/comfyui.md", "python install.py"): "tests/test_comfyui_workflows.py",
    ("docs/comfyui.md", "mkdir -p ../../input/examples"): "tests/test_comfyui_workflows.py",
    ("docs/comfyui.md", ".venv/bin/python tests/comfyui_host.py"): "tests/test_comfyui.py",
    ("docs/comfyui.md", ".venv/bin/python -m pytest -q -p no:cacheprovider tests/test_comfyui.py"):
        "tests/test_comfyui.py",
    ("docs/panel.md", "python -m livelayers panel"): "tests/test_ui_docs.py",
    ("docs/panel.md", "QT_QPA_PLATFORM=offscreen python -m livelayers panel"): "tests/test_ui_docs.py",
    ("docs/scripting.md", "python -m livelayers run out/scripted/graph.json"): "tests/test_graph_api.py",
    ("docs/scripting.md", "python -m livelayers wedge examples/text2live.json"): "tests/test_wedge.py",
    ("docs/scripting.md", "python examples/wedge_text2live.py"): "tests/test_wedge.py",
    ("docs/scripting.md", "ROOT=$PWD"): "tests/test_wedge.py",
    ("docs/scripting.md", "openjd check job/wedge/template.yaml"): "tests/test_wedge.py",
    ("docs/scripting.md", "openjd run job/wedge/template.yaml"): "tests/test_wedge.py",
    ("docs/stylise.md", "python -m livelayers"): "tests/test_stylise_quality.py",
    ("docs/models.md", "python -c \"from livelayers.engine.models.catalogue import update_hashes"):
        "tests/test_models_resolve.py",   # on a copy: here it would rewrite the package's plugin.json
    ("docs/video.md", "python -m livelayers run examples/text2live_video.json"):
        "tests/test_text2live_video_graphs.py",
    ("docs/video.md", "ROOT=$PWD"): "tests/test_text2live_video_graphs.py",
    ("docs/video.md", "python -m livelayers export-job"): "tests/test_text2live_video_graphs.py",
    ("docs/video.md", "openjd run job/video/template.yaml"): "tests/test_text2live_video_graphs.py",
    ("docs/performance.md", "python -m livelayers bench --json bench.json"):  # every bench, ~2 min
        "tests/test_bench_runner.py",
}
# The same command as one run verbatim from another doc, depending on nothing
# before it: run once, there ((doc, command) -> (other doc, its command)).
RUN_ELSEWHERE = {
    ("docs/runner.md", "python -m livelayers demo --out out/demo"):
        ("README.md", ".venv/bin/python -m livelayers demo --out out/demo"),
}
NOT_RUN = {
    ("docs/farm.md", "pip install deadline"): "needs the network (the Deadline Cloud client)",
    ("docs/farm.md", "deadline bundle submit"): "needs a render farm account (AWS Deadline Cloud)",
    # the published code is cloned from the network and never shipped; the bench's
    # refusals and its plumbing are tested in tests/test_bench_runner.py and
    # tests/test_official_harnesses.py
    ("docs/performance.md", "git clone https://github.com/"): "needs the network (the published code)",
    ("docs/performance.md", "python -m venv ../nla-env"): "needs the network (NLA's own environment)",
    ("docs/performance.md", "../nla-env/bin/pip install"): "needs the network (NLA's own environment)",
    ("docs/performance.md", "python -m livelayers bench --size reference --only text2live atlas --official"):
        "needs the network (the clones above)",
    ("docs/text2live.md", "python bench/bench_text2live.py --settings reference --steps 2 --threads 1 --official"):
        "needs the network (a clone of the published code, docs/performance.md)",
    ("docs/performance.md", "python -m venv ../bd-env"): "needs the network (Blended Diffusion's environment)",
    ("docs/performance.md", "../bd-env/bin/pip install"): "needs the network (Blended Diffusion's environment)",
    ("docs/performance.md", "python -m livelayers bench --size reference --only diffusion --official"):
        "needs the network (the clone above)",
    ("docs/diffusion.md", "python bench/bench_diffusion.py --only official --official"):
        "needs the network (a clone of the published code, docs/performance.md)",
    ("docs/performance.md", "python -m livelayers bench --size reference --only text2live_video --official"):
        "needs the network (the Text2LIVE clone above)",
    ("docs/video.md", "python bench/bench_text2live_video.py --threads 1 --official"):
        "needs the network (a clone of the published code, docs/performance.md)",
}
# README's first block is what CI runs (.ci/run: the install and the test
# command); its demo command is also run here (install aside).
CI_BLOCK = ("README.md", 5)
# Commands run here but shortened: the documented command, with these
# arguments appended (argparse and --set: the last value wins), because the
# full run trains for long (the region network: an hour; the example's
# exhaustive region search: minutes; sampling 64 toy scenes: minutes;
# compiling ViT-B/32: minutes). Only sizes, steps and output change;
# tests/test_comfyui.py runs the example graph too (at its quick sizes).
SHORTENED = {
    "nice -n 10 python -m livelayers.toyworld.train_regions":
        ["--images", "3", "--steps", "2", "--eval-images", "0", "--out", "out/toy_regions"],
    "python -m livelayers.toyworld.ddpm_quality": ["--samples", "8", "--steps", "10"],
    # ViT-B/32's compile alone is ~90 s here; the toy CLIP's ~40 s
    "python bench/bench_clip_compile.py": ["--clip", "toy-clip", "--views", "4", "--repeat", "1"],
    "python -m livelayers run examples/learnable_regions.json":
        ["--set", "5.anchors=1", "--set", "5.boxes_per_anchor=2", "--set", "5.steps=2",
         "--set", "5.diffusion_steps=6", "--set", "5.samples=1"],
}


def command_blocks():
    return [b for b in blocks() if b.lang == "bash"]


def runner_of(doc: str, command: str):
    keys = [k for k in (*CLAIMED, *NOT_RUN, *RUN_ELSEWHERE) if k[0] == doc and command.startswith(k[1])]
    return max(keys, key=lambda k: len(k[1])) if keys else None  # the most specific claim


def test_every_fenced_block_says_what_it_is():
    untagged = [f"{b.doc}:{b.line}" for b in blocks() if b.lang not in LANGS]
    assert not untagged, f"fenced blocks without a tag from {sorted(LANGS)}: {untagged}"


def test_every_command_has_a_runner_and_no_claim_is_stale():
    used = set()
    for b in command_blocks():
        for c in b.commands():
            key = runner_of(b.doc, c)
            if key:
                used.add(key)
    stale = [k for k in (*CLAIMED, *NOT_RUN, *RUN_ELSEWHERE) if k not in used]
    assert not stale, f"claims for commands the docs no longer show: {stale}"
    for (doc, command), (other, same) in RUN_ELSEWHERE.items():
        assert same in here_commands(other), f"{doc}: `{command}` is said to run in {other}, which does not run it"
        assert command.split(" ", 1)[1] == same.split(" ", 1)[1], (command, same)  # the same but for the python
    for (doc, _), test_file in CLAIMED.items():
        text = (ROOT / test_file).read_text()
        assert Path(doc).name in text, f"{test_file} claims a {doc} command but never reads {doc}"


def here_commands(doc: str) -> list[str]:
    out = []
    for b in command_blocks():
        if b.doc != doc:
            continue
        for c in b.commands():
            if (b.doc, b.line) == CI_BLOCK:
                c = c.removeprefix("bash scripts/setup.sh && ")
                if "-m pytest" in c:
                    continue  # the test command itself: CI runs it (checked below)
            if runner_of(doc, c) is None:
                extra = next((a for p, a in SHORTENED.items() if c.startswith(p)), [])
                out.append(" ".join([c, *extra]))
    return out


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text()
    (block,) = [b for b in command_blocks() if (b.doc, b.line) == CI_BLOCK]
    (test_command,) = [c for c in block.commands() if "-m pytest" in c]
    assert test_command in ci.splitlines()


HERE_DOCS = sorted({b.doc for b in command_blocks() if here_commands(b.doc)})


def workspace(tmp: Path) -> Path:
    for name in ("examples", "bench", ".venv"):
        (tmp / name).symlink_to(ROOT / name)
    (tmp / "tests").mkdir()
    (tmp / "tests" / "assets").symlink_to(ROOT / "tests" / "assets")
    return tmp


@pytest.mark.slow
@pytest.mark.timeout(2400)  # a whole doc's commands (runner.md trains the toy atlas: ~1-3 min)
@pytest.mark.parametrize("doc", HERE_DOCS)
def test_the_docs_commands_run(doc, tmp_path):
    """The doc's unclaimed commands, as one shell session in its order, each
    must exit 0 (set -e); `-x` shows which one failed."""
    ws = workspace(tmp_path)
    script = "set -euxo pipefail\n" + "\n".join(here_commands(doc)) + "\n"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               HF_HUB_OFFLINE="1", QT_QPA_PLATFORM="offscreen")
    run = subprocess.run(["bash", "-c", script], cwd=ws, env=env, capture_output=True, text=True,
                         timeout=1500)
    assert run.returncode == 0, f"{doc}:\n{run.stderr[-4000:]}"
    for check in CHECKS.get(doc, ()):
        check(ws)


def exr_sequence(folder: str, count: int):
    def check(ws: Path):
        from livelayers.engine.io import exr_is_complete
        files = sorted((ws / folder).glob("*.exr"))
        assert len(files) >= count and all(exr_is_complete(f) for f in files), (folder, files)
    return check


def file_exists(path: str):
    def check(ws: Path):
        assert (ws / path).exists(), path
    return check


# What the text says each doc's commands make, beyond exit status 0.
CHECKS = {
    "README.md": [exr_sequence("out/demo", 1)],
    "docs/runner.md": [exr_sequence("out/atlas", 8)],   # its demo command runs in README.md's
    "docs/farm.md": [file_exists("job/template.yaml"), file_exists("job/parameter_values.yaml")],
    "docs/regions.md": [file_exists("out/toy_regions"), exr_sequence("out", 1)],
}
