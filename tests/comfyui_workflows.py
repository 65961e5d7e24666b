"""ComfyUI's two workflow formats, for the shipped examples.

``example_workflows/<name>.json`` are UI-format workflows (what ComfyUI's
frontend saves and its Templates browser opens: nodes with positions,
links, groups and notes); ``examples/<name>.json`` are the API-format
graphs the headless runner and ``/prompt`` take. The UI files are the
source; the API copies are checked against them (tests/test_comfyui_workflows.py)
and can be rewritten from them:

    python tests/comfyui_workflows.py api example_workflows/demo.json     # print the API graph
    python tests/comfyui_workflows.py sync                               # rewrite examples/*.json
    python tests/comfyui_workflows.py draft examples/new.json            # a first UI layout
    python tests/comfyui_workflows.py thumbnails [name ...]              # <name>.jpg from a run

The conversion follows ComfyUI's frontend (1.35): a node's widget values
are stored in ``widgets_values`` in input order (required, then optional),
an INT input named ``seed``/``noise_seed`` or with ``control_after_generate``
is followed by its control value ("fixed", "randomize", ...), upload
buttons are not stored, and ``inputs`` lists the node's socket inputs (the
non-widget ones) in input order; a link's target slot indexes that list.
Frontend-only nodes (Note, MarkdownNote, Reroute, PrimitiveNode) and muted
or bypassed nodes are not part of the API graph.
"""
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UI_DIR = ROOT / "example_workflows"
API_DIR = ROOT / "examples"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
VIRTUAL_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
SEED_NAMES = ("seed", "noise_seed")


# ---------------------------------------------------------------- node specs

def specs_from_classes(classes: dict | None = None) -> dict[str, list[tuple[str, tuple]]]:
    """{class_type: [(input name, spec tuple), ...]} in INPUT_TYPES order
    (required, then optional; hidden inputs are not part of a workflow)."""
    if classes is None:
        from livelayers import NODE_CLASS_MAPPINGS as classes
    out = {}
    for name, cls in classes.items():
        spec = cls.INPUT_TYPES()
        out[name] = [(k, tuple(v)) for section in ("required", "optional")
                     for k, v in (spec.get(section) or {}).items()]
    return out


def specs_from_object_info(info: dict) -> dict[str, list[tuple[str, tuple]]]:
    """The same from a server's /object_info (its input_order is INPUT_TYPES order)."""
    out = {}
    for name, node in info.items():
        order = node.get("input_order", {})
        inputs = node.get("input", {})
        out[name] = [(k, tuple(inputs[section][k])) for section in ("required", "optional")
                     for k in order.get(section, inputs.get(section, {}).keys())]
    return out


def _options(spec: tuple) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def is_widget(spec: tuple) -> bool:
    kind = spec[0]
    return (isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES) and not _options(spec).get("forceInput")


def has_control(name: str, spec: tuple) -> bool:
    """Whether the frontend adds a control_after_generate value after this widget."""
    flag = _options(spec).get("control_after_generate")
    if flag is not None:
        return bool(flag)
    return spec[0] == "INT" and name in SEED_NAMES


def socket_type(spec: tuple) -> str:
    return "COMBO" if isinstance(spec[0], (list, tuple)) else spec[0]


# ---------------------------------------------------------------- UI -> API

def ui_to_api(ui: dict, specs: dict) -> dict:
    """The API-format graph of a UI-format workflow (what "Export (API)" writes)."""
    links = {link[0]: link for link in ui.get("links", [])}
    graph = {}
    for node in sorted(ui["nodes"], key=lambda n: n["id"]):
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) in (2, 4):
            continue
        if node["type"] not in specs:
            raise KeyError(f"node {node['id']}: unknown type {node['type']!r}")
        spec = specs[node["type"]]
        inputs: dict = {}
        values = list(node.get("widgets_values") or [])
        for name, s in spec:
            if not is_widget(s):
                continue
            if not values:
                raise ValueError(f"node {node['id']} ({node['type']}): no widget value for {name!r}")
            inputs[name] = values.pop(0)
            if has_control(name, s):
                values.pop(0)
        if values:
            raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget values left over")
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, origin, origin_slot, *_ = links[slot["link"]]
                inputs[slot["name"]] = [str(origin), origin_slot]
        entry = {"inputs": inputs, "class_type": node["type"]}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        graph[str(node["id"])] = entry
    return graph


def comparable(graph: dict) -> dict:
    """An API graph without what does not change a run (titles, input order)."""
    return {k: {"class_type": v["class_type"], "inputs": dict(sorted(v["inputs"].items()))}
            for k, v in sorted(graph.items(), key=lambda kv: int(kv[0]))}


# ---------------------------------------------------------------- API -> UI draft

NODE_WIDTH, COLUMN_GAP, ROW_GAP = 340, 80, 50


def _depths(graph: dict) -> dict[str, int]:
    """Longest distance from a source for every node id (its layout column)."""
    memo: dict[str, int] = {}

    def depth(nid: str) -> int:
        if nid not in memo:
            ups = [v[0] for v in graph[nid]["inputs"].values() if isinstance(v, list)]
            memo[nid] = 1 + max((depth(u) for u in ups), default=-1)
        return memo[nid]

    for nid in graph:
        depth(nid)
    return memo


def _height(spec: list, classes_outputs: int) -> int:
    widgets = sum(1 for _, s in spec if is_widget(s)) + sum(1 for n, s in spec if has_control(n, s))
    sockets = max(sum(1 for _, s in spec if not is_widget(s)), classes_outputs)
    multiline = sum(1 for _, s in spec if is_widget(s) and _options(s).get("multiline"))
    return 40 + 22 * sockets + 26 * widgets + 60 * multiline


def _note_height(text: str, width: float) -> int:
    """Height a MarkdownNote needs for ``text`` at ``width`` (about 7.5 px a character)."""
    per_line = max(20, int(width / 7.5))
    lines = sum(1 + len(line) // per_line for line in text.splitlines())
    return 50 + 18 * lines


def _place(graph: dict, specs: dict, outputs: dict, stages: list[dict]) -> dict[str, tuple]:
    """(x, y, height) of every node: stages left to right, a stage's nodes in
    sub-columns by depth, stacked top-down; notes get room above."""
    depth = _depths(graph)
    placed, x = {}, 60.0
    top = 120.0 + max((_note_height(st.get("note", ""), NODE_WIDTH) for st in stages), default=0)
    for stage in stages:
        members = sorted((str(i) for i in stage["nodes"]), key=lambda i: (depth[i], int(i)))
        columns = sorted({depth[i] for i in members})
        for c, d in enumerate(columns):
            y = top
            for nid in (i for i in members if depth[i] == d):
                h = _height(specs[graph[nid]["class_type"]], len(outputs[graph[nid]["class_type"]]))
                placed[nid] = (x + c * (NODE_WIDTH + COLUMN_GAP), y, h)
                y += h + ROW_GAP
        x += len(columns) * (NODE_WIDTH + COLUMN_GAP) + COLUMN_GAP
    return placed


def draft_ui(graph: dict, specs: dict, outputs: dict[str, list[tuple[str, str]]],
             stages: list[dict] | None = None, control: str = "fixed") -> dict:
    """A UI-format workflow for an API graph: one group per stage ({"title",
    "nodes": [ids], "note": markdown}), stages left to right with their note
    above them; without stages, one stage per depth. ``outputs``:
    {class_type: [(name, type), ...]}."""
    depth = _depths(graph)
    ids = sorted(graph, key=int)
    if not stages:
        stages = [{"title": f"Step {d + 1}", "nodes": [i for i in ids if depth[i] == d]}
                  for d in sorted(set(depth.values()))]
    missing = set(ids) - {str(i) for st in stages for i in st["nodes"]}
    if missing:
        raise ValueError(f"nodes {sorted(missing, key=int)} are in no stage")
    placed = _place(graph, specs, outputs, stages)
    next_link, links, nodes = 1, [], []
    node_by_id: dict[str, dict] = {}
    for order, nid in enumerate(sorted(ids, key=lambda i: (depth[i], int(i)))):
        entry, spec = graph[nid], specs[graph[nid]["class_type"]]
        widgets = []
        for name, s in spec:
            if is_widget(s):
                default = _options(s).get("default", s[0][0] if isinstance(s[0], (list, tuple)) else "")
                value = entry["inputs"].get(name, default)
                if isinstance(value, list):
                    raise NotImplementedError(f"node {nid}: widget input {name!r} is linked")
                widgets.append(value)
                if has_control(name, s):
                    widgets.append(control)
        x, y, h = placed[nid]
        node = {"id": int(nid), "type": entry["class_type"], "pos": [x, y], "size": [NODE_WIDTH, h],
                "flags": {}, "order": order, "mode": 0,
                "inputs": [{"name": n, "type": socket_type(s), "link": None} for n, s in spec
                           if not is_widget(s)],
                "outputs": [{"name": n, "type": t, "links": None, "slot_index": i}
                            for i, (n, t) in enumerate(outputs[entry["class_type"]])],
                "properties": {"Node name for S&R": entry["class_type"]},
                "widgets_values": widgets}
        if entry.get("_meta", {}).get("title"):
            node["title"] = entry["_meta"]["title"]
        nodes.append(node)
        node_by_id[nid] = node
    for nid in ids:  # links, in target order
        for slot_index, slot in enumerate(node_by_id[nid]["inputs"]):
            value = graph[nid]["inputs"].get(slot["name"])
            if not isinstance(value, list):
                continue
            origin, out_slot = node_by_id[value[0]], value[1]
            out = origin["outputs"][out_slot]
            links.append([next_link, origin["id"], out_slot, int(nid), slot_index, out["type"]])
            slot["link"] = next_link
            out["links"] = (out["links"] or []) + [next_link]
            next_link += 1
    groups, last_id = [], max(int(i) for i in ids)
    for gid, stage in enumerate(stages, start=1):
        members = [node_by_id[str(i)] for i in stage["nodes"]]
        x0 = min(n["pos"][0] for n in members) - 20
        y0 = min(n["pos"][1] for n in members) - 60
        x1 = max(n["pos"][0] + n["size"][0] for n in members) + 20
        y1 = max(n["pos"][1] + n["size"][1] for n in members) + 20
        groups.append({"id": gid, "title": stage["title"], "bounding": [x0, y0, x1 - x0, y1 - y0],
                       "color": "#3f789e", "font_size": 24, "flags": {}})
        if stage.get("note"):
            last_id += 1
            h = _note_height(stage["note"], x1 - x0)
            nodes.append({"id": last_id, "type": "MarkdownNote", "pos": [x0, y0 - h - 20],
                          "size": [x1 - x0, h], "flags": {}, "order": len(nodes), "mode": 0,
                          "inputs": [], "outputs": [], "title": stage.get("note_title", "Note"),
                          "properties": {}, "widgets_values": [stage["note"]],
                          "color": "#432", "bgcolor": "#653"})
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(comparable(graph)))), "revision": 0,
            "last_node_id": last_id, "last_link_id": next_link - 1, "nodes": nodes, "links": links,
            "groups": groups, "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
            "version": 0.4}


def outputs_from_classes(classes: dict | None = None) -> dict[str, list[tuple[str, str]]]:
    if classes is None:
        from livelayers import NODE_CLASS_MAPPINGS as classes
    return {name: list(zip(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES), cls.RETURN_TYPES))
            for name, cls in classes.items()}


# ---------------------------------------------------------------- files

def ui_workflows() -> list[Path]:
    return sorted(UI_DIR.glob("*.json"))


def api_graphs() -> list[Path]:
    return sorted(API_DIR.glob("*.json"))


def _wrap(items: list[str], indent: int, width: int = 100) -> str:
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(item) + 2 + indent > width:
            lines.append(line + ",")
            line = item
        else:
            line = f"{line}, {item}" if line else item
    lines.append(line)
    return ("\n" + " " * indent).join(lines)


def format_api(graph: dict) -> str:
    """An API graph as the hand-written examples were: a node's class and title
    on its first line, its inputs (links first) wrapped below."""
    blocks = []
    for nid, node in graph.items():
        head = f'  {json.dumps(nid)}: {{"class_type": {json.dumps(node["class_type"])}'
        if node.get("_meta"):
            head += f', "_meta": {json.dumps(node["_meta"])}'
        inputs = sorted(node["inputs"].items(), key=lambda kv: not isinstance(kv[1], list))
        items = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in inputs]
        pad = " " * (len(json.dumps(nid)) + 5)
        blocks.append(f'{head},\n{pad}"inputs": {{{_wrap(items, len(pad) + 11)}}}}}')
    return "{\n" + ",\n".join(blocks) + "\n}\n"


def write_api(path: Path, graph: dict) -> None:
    path.write_text(format_api(graph))
    assert json.loads(path.read_text()) == graph


def sync(specs: dict | None = None) -> list[Path]:
    """Rewrite examples/<name>.json from every example_workflows/<name>.json whose graph differs."""
    specs = specs or specs_from_classes()
    changed = []
    for ui_path in ui_workflows():
        graph = ui_to_api(json.loads(ui_path.read_text()), specs)
        api_path = API_DIR / ui_path.name
        if not api_path.is_file() or comparable(json.loads(api_path.read_text())) != comparable(graph):
            write_api(api_path, graph)
            changed.append(api_path)
    return changed


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    command, args = argv[0], argv[1:]
    if command == "api":
        print(json.dumps(ui_to_api(json.loads(Path(args[0]).read_text()), specs_from_classes()), indent=1))
    elif command == "sync":
        for p in sync():
            print(f"wrote {p.relative_to(ROOT)}")
    elif command == "draft":
        api = Path(args[0])
        ui = draft_ui(json.loads(api.read_text()), specs_from_classes(), outputs_from_classes())
        out = UI_DIR / api.name
        out.write_text(json.dumps(ui, indent=1) + "\n")
        print(f"wrote {out}: add groups and notes in ComfyUI, then save it back")
    elif command == "thumbnails":
        from comfyui_thumbnails import make_thumbnails  # noqa: PLC0415
        outputs = ROOT
        if "--outputs" in args:
            i = args.index("--outputs")
            outputs, args = Path(args[i + 1]), args[:i] + args[i + 2:]
        for p in make_thumbnails(args or None, outputs=outputs):
            print(f"wrote {p.relative_to(ROOT)}")
    else:
        print(f"unknown command {command!r}\n{__doc__}")
        return 2
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main(sys.argv[1:]))
