"""The UI-format workflows in example_workflows/ (ComfyUI's Templates browser)
match the API-format graphs in examples/, and are drawn as the frontend
would save them. No server needed (tests/test_comfyui.py checks that ComfyUI
serves them)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import comfyui_workflows as W

ROOT = Path(__file__).resolve().parents[1]
API_GRAPHS = W.api_graphs()
UI_WORKFLOWS = W.ui_workflows()


@pytest.fixture(scope="module")
def specs():
    return W.specs_from_classes()


def _with_defaults(graph: dict, specs: dict) -> dict:
    """Widget inputs an API graph leaves out take their defaults (as /prompt does)."""
    out = {}
    for nid, node in graph.items():
        inputs = dict(node["inputs"])
        for name, spec in specs[node["class_type"]]:
            if W.is_widget(spec) and name not in inputs and "default" in W._options(spec):
                inputs[name] = W._options(spec)["default"]
        out[nid] = {**node, "inputs": inputs}
    return W.comparable(out)


def test_every_example_graph_has_a_workflow_and_thumbnail():
    assert len(API_GRAPHS) >= 6
    for api in API_GRAPHS:
        ui = W.UI_DIR / api.name
        assert ui.is_file(), (f"{api.relative_to(ROOT)} has no UI workflow: run "
                              f"python tests/comfyui_workflows.py draft {api.relative_to(ROOT)}, lay it out "
                              "in ComfyUI (groups, notes), save it over the draft, add its thumbnail")
        thumb = ui.with_suffix(".jpg")
        assert thumb.is_file(), f"{thumb.relative_to(ROOT)} missing: python tests/comfyui_workflows.py thumbnails"
        from PIL import Image
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and im.size[0] == im.size[1] >= 200
    assert {p.stem for p in UI_WORKFLOWS} == {p.stem for p in API_GRAPHS}


@pytest.mark.parametrize("ui_path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_api_copy_is_the_ui_workflow(ui_path, specs):
    ui = json.loads(ui_path.read_text())
    api = json.loads((W.API_DIR / ui_path.name).read_text())
    assert _with_defaults(W.ui_to_api(ui, specs), specs) == _with_defaults(api, specs), (
        f"examples/{ui_path.name} differs from example_workflows/{ui_path.name}: change the UI workflow "
        "(in ComfyUI, or its widgets_values; a node that gained inputs needs its values added in input "
        "order), then python tests/comfyui_workflows.py sync rewrites the API copy")


@pytest.mark.parametrize("ui_path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_is_drawn_as_the_frontend_saves_it(ui_path, specs):
    ui = json.loads(ui_path.read_text())
    assert ui["version"] == 0.4 and ui["last_node_id"] >= max(n["id"] for n in ui["nodes"])
    nodes = {n["id"]: n for n in ui["nodes"]}
    links = {ln[0]: ln for ln in ui["links"]}
    assert ui["last_link_id"] >= max(links, default=0)
    for lid, origin, oslot, target, tslot, kind in ui["links"]:
        out, inp = nodes[origin]["outputs"][oslot], nodes[target]["inputs"][tslot]
        assert lid in out["links"] and inp["link"] == lid, f"link {lid} is not wired both ways"
        assert out["type"] == inp["type"] == kind, f"link {lid}: {out['type']} -> {inp['type']}"
    for node in ui["nodes"]:
        if node["type"] in W.VIRTUAL_NODES:
            continue
        spec = specs[node["type"]]
        sockets = [n for n, s in spec if not W.is_widget(s)]
        assert [i["name"] for i in node["inputs"]] == sockets, f"node {node['id']}: socket inputs"
        order = []  # the frontend's widgets: each widget input, seeds followed by their control
        for n, s in spec:
            if W.is_widget(s):
                order += [n] + ([f"{n} control"] if W.has_control(n, s) else [])
        assert len(node["widgets_values"]) == len(order), f"node {node['id']}: widget values"
        for label, value in zip(order, node["widgets_values"]):
            if label.endswith(" control"):  # "fixed": the template reproduces its result
                assert value == "fixed", f"node {node['id']}: {label} is {value!r}"
        for link in node["inputs"]:
            assert link["link"] is None or link["link"] in links


@pytest.mark.parametrize("ui_path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_every_step_is_grouped_and_explained(ui_path):
    ui = json.loads(ui_path.read_text())
    real = [n for n in ui["nodes"] if n["type"] not in W.VIRTUAL_NODES]
    notes = [n for n in ui["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    assert len(ui["groups"]) >= 2 and len(notes) >= len(ui["groups"])

    def inside(node, box):
        x, y, w, h = box
        return x <= node["pos"][0] and node["pos"][0] + node["size"][0] <= x + w and \
            y <= node["pos"][1] and node["pos"][1] + node["size"][1] <= y + h

    for node in real:
        assert any(inside(node, g["bounding"]) for g in ui["groups"]), f"node {node['id']} is in no group"
    for note in notes:
        assert len(note["widgets_values"][0]) > 80  # a sentence or more, not a label
    for a in ui["nodes"]:  # nothing drawn on top of anything else
        for b in ui["nodes"]:
            if a["id"] < b["id"]:
                ax, ay = a["pos"]
                bx, by = b["pos"]
                overlap = (ax < bx + b["size"][0] and bx < ax + a["size"][0]
                           and ay < by + b["size"][1] and by < ay + a["size"][1])
                assert not overlap, f"nodes {a['id']} and {b['id']} overlap"
    text = " ".join(n["widgets_values"][0] for n in notes)
    assert "input" in text and "output" in text  # says where files are read and written


def test_conversion_follows_the_frontend_rules():
    """A seed widget carries its control value; socket inputs index the links."""
    specs = {"N": [("image", ("IMAGE", {})), ("seed", ("INT", {"default": 0})),
                   ("mode", (["a", "b"], {})), ("mask", ("MASK", {})), ("upload", ("INT", {"forceInput": True}))]}
    ui = {"nodes": [{"id": 2, "type": "N", "mode": 0, "widgets_values": [7, "fixed", "b"],
                     "inputs": [{"name": "image", "link": None}, {"name": "mask", "link": 5},
                                {"name": "upload", "link": None}]},
                    {"id": 3, "type": "Note", "widgets_values": ["text"]},
                    {"id": 4, "type": "N", "mode": 4, "widgets_values": [1, "fixed", "a"], "inputs": []}],
          "links": [[5, 9, 1, 2, 1, "MASK"]]}
    assert W.ui_to_api(ui, specs) == {"2": {"class_type": "N", "inputs": {"seed": 7, "mode": "b",
                                                                          "mask": ["9", 1]}}}
    ui["nodes"][0]["widgets_values"] = [7, "b"]  # a workflow missing the control value
    with pytest.raises(ValueError):
        W.ui_to_api(ui, specs)


# ---------------------------------------------------------------- docs/comfyui.md's commands

DOC = ROOT / "docs" / "comfyui.md"


def doc_lines() -> list[str]:
    from doc_blocks import blocks
    return [c for b in blocks([DOC]) if b.lang == "bash" for c in b.commands()]


def test_doc_manual_install_runs_in_a_comfyui_tree(tmp_path):
    """The manual install as written, in a ComfyUI-shaped folder: the clone is
    a copy here (no network); `python install.py` itself runs in
    tests/test_comfyui.py, which installs the pack exactly this way."""
    import shutil
    import subprocess
    import sys
    lines = doc_lines()
    start = lines.index("cd ComfyUI/custom_nodes")
    manual = lines[start:lines.index("python install.py") + 1]
    assert manual[1].startswith("git clone ") and manual[1].endswith(" LiveLayers")
    comfy = tmp_path / "ComfyUI"
    pack = comfy / "custom_nodes" / "LiveLayers"
    pack.mkdir(parents=True)
    for name in ("install.py", "requirements.txt", "plugin.json"):
        shutil.copy(ROOT / name, pack / name)
    shutil.copytree(ROOT / "examples", pack / "examples")
    script = [ln for ln in manual if not ln.startswith("git clone") and ln != "python install.py"]
    script += [ln for ln in lines if ln.startswith("mkdir -p ../../input")]
    script = [ln.replace("python ", f"{sys.executable} ", 1) if ln.startswith("python ") else ln
              for ln in script]
    out = subprocess.run(["bash", "-ec", "\n".join(script)], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "--dry-run" in " ".join(manual) and "keeping torch==" in out.stdout
    assert (comfy / "input" / "examples" / "assets" / "toy_scene.png").is_file()
    # the real install is the one the integration test performs
    import comfyui_host
    import inspect
    assert "installer.name" in inspect.getsource(comfyui_host.install_pack)


def test_doc_developer_commands_exist_and_draft_works(tmp_path, monkeypatch):
    lines = doc_lines()
    for ln in lines:
        for word in ln.split():
            if word.startswith("tests/") and "<" not in word:
                assert (ROOT / word).is_file(), word
    assert any(ln.endswith("tests/comfyui_host.py") for ln in [x.split("  ")[0] for x in lines])
    monkeypatch.setattr(W, "UI_DIR", tmp_path)
    assert W.main(["draft", str(ROOT / "examples" / "demo.json")]) == 0
    drafted = json.loads((tmp_path / "demo.json").read_text())
    assert W.comparable(W.ui_to_api(drafted, W.specs_from_classes())) == \
        W.comparable(json.loads((ROOT / "examples" / "demo.json").read_text()))
