"""Scripting LiveLayers graphs from Python, over the runner's own executor.

    from livelayers.graph import Graph
    g = Graph()
    plate = g.add("LL_LoadImage", path="examples/assets/toy_scene.png")
    clip = g.add("LL_LoadCLIP", model="toy-clip")
    edit = g.add("LL_Text2LIVE", clip=clip[0], image=plate[0], prompt="blue circle",
                 roi_text="red circle", title="Edit")
    g.add("LL_SaveEXR", path="out/edit.####.exr", edit_image=edit["edit"], ...)
    g.set("Edit.steps", 50)            # by title, or g.set("3.steps", 50) by node id
    result = g.run(progress=print_it, stop=event.is_set)
    result[edit]        # the node's outputs (tensors), result.written = EXR paths
    g.save("edit.json") # API JSON: `python -m livelayers run edit.json` and ComfyUI load it

A graph IS an API-format workflow (``{"id": {"class_type", "inputs", "_meta"}}``)
kept as a plain dict; building one fills in every widget input's default the
way ComfyUI's front end does, so a graph built here and one exported from
ComfyUI are the same JSON. Checking and running are the executor's
(``engine/executor.py``): the same ``WorkflowError`` messages as
``python -m livelayers run``. This module lives outside engine/ because it
needs the node registry (nodes/), which engine/ must never import.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import executor
from .engine import progress as progress_mod
from .engine.atomic import atomic_path
from .engine.executor import WorkflowError

__all__ = ["Graph", "GraphResult", "Node", "Output", "WorkflowError", "widget_defaults"]


def default_registry() -> dict[str, type]:
    """The pack's node registry (imported on first use: it loads torch and the nodes)."""
    from .nodes import NODE_CLASS_MAPPINGS
    return NODE_CLASS_MAPPINGS


# ---------------------------------------------------------------- widgets

def _is_widget(typ: Any, opts: dict) -> bool:
    """Inputs the front end shows as a widget (and so writes into the API JSON)."""
    if opts.get("forceInput"):
        return False
    return isinstance(typ, (list, tuple)) or typ in executor.PRIMITIVE_TYPES or typ == "COMBO"


def _widget_default(typ: Any, opts: dict) -> Any:
    """ComfyUI's front-end default: ``default``, else min (numbers), the first
    choice (combos), "" or False."""
    if "default" in opts:
        return opts["default"]
    if isinstance(typ, (list, tuple)) or typ == "COMBO":
        choices = list(typ) if isinstance(typ, (list, tuple)) else list(opts.get("options", []))
        return choices[0] if choices else None
    if typ in ("INT", "FLOAT"):
        return opts.get("min", 0)
    return "" if typ == "STRING" else False


def widget_defaults(cls: type) -> dict[str, Any]:
    """``{input: default}`` for every widget input of a node class, in INPUT_TYPES order
    (required, then optional; hidden and link inputs have none)."""
    out = {}
    for name, (section, typ, opts) in executor._input_specs(cls).items():
        if section != "hidden" and _is_widget(typ, opts):
            value = _widget_default(typ, opts)
            if value is not None:
                out[name] = value
    return out


# ---------------------------------------------------------------- nodes and links

class Output(list):
    """A link to one output of a node: ``["node_id", index]`` (a list, so the
    API JSON is written as ComfyUI writes links)."""

    def __init__(self, node_id: str, index: int):
        super().__init__([str(node_id), int(index)])

    @property
    def node_id(self) -> str:
        return self[0]

    @property
    def index(self) -> int:
        return self[1]


class Node:
    """A node of a ``Graph``: ``node[0]`` or ``node["composite"]`` is a link to an output."""

    def __init__(self, graph: "Graph", node_id: str):
        self.graph, self.id = graph, str(node_id)

    @property
    def class_type(self) -> str:
        return self.graph.workflow[self.id]["class_type"]

    @property
    def inputs(self) -> dict:
        """The node's inputs (the live dict: edits change the graph)."""
        return self.graph.workflow[self.id].setdefault("inputs", {})

    @property
    def title(self) -> str | None:
        return (self.graph.workflow[self.id].get("_meta") or {}).get("title")

    def __getitem__(self, key: int | str) -> Output:
        cls = self.graph.registry.get(self.class_type)
        returns = tuple(getattr(cls, "RETURN_TYPES", ()))
        names = tuple(getattr(cls, "RETURN_NAMES", ()) or ())
        if isinstance(key, str):
            if key not in names:
                raise WorkflowError(f"has no output named {key!r}; its outputs are: "
                                    f"{', '.join(names) or 'none'}", self.id, self.class_type)
            key = names.index(key)
        if cls is not None and not 0 <= key < len(returns):
            raise WorkflowError(f"has no output {key}; it has {len(returns)} outputs", self.id,
                                self.class_type)
        return Output(self.id, key)

    def __repr__(self) -> str:
        title = f" {self.title!r}" if self.title else ""
        return f"<Node {self.id} {self.class_type}{title}>"


# ---------------------------------------------------------------- results

@dataclass
class GraphResult:
    """What a run produced. ``result[node]`` = that node's outputs (a tuple);
    ``result[node[i]]`` = one output (a tensor, a handle, ...)."""

    values: dict[str, tuple] = field(default_factory=dict)  # node id -> outputs, every node run
    ui: dict[str, dict] = field(default_factory=dict)  # output node id -> its "ui" dict
    written: list[Path] = field(default_factory=list)  # files the output nodes wrote
    executed: list[str] = field(default_factory=list)  # node ids, in order
    skipped_frames: list[int] = field(default_factory=list)  # already complete on disk

    def __getitem__(self, ref: "Node | Output | str"):
        if isinstance(ref, Output):
            return self.values[ref.node_id][ref.index]
        node_id = ref.id if isinstance(ref, Node) else str(ref)
        if node_id not in self.values:
            raise KeyError(f"node {node_id} did not run "
                           "(only output nodes and what feeds them run)")
        return self.values[node_id]


# ---------------------------------------------------------------- the graph

def _as_progress(progress, stop) -> progress_mod.Progress:
    """A Progress from a Progress, a ``callback(step, total, info)`` or None, plus
    ``stop``: a ``() -> bool`` or anything with ``is_set()`` (threading.Event)."""
    if stop is not None and hasattr(stop, "is_set"):
        stop = stop.is_set
    if isinstance(progress, progress_mod.Progress):
        if stop is None:
            return progress
        outer = progress
        return progress_mod.Progress(
            callback=outer.callback, preview_every=outer.preview_every, label=outer.label,
            should_stop=lambda: bool(stop()) or bool(outer.should_stop and outer.should_stop()))
    if progress is not None and not callable(progress):
        raise TypeError("progress must be a Progress, a callback(step, total, info) or None")
    return progress_mod.Progress(callback=progress, should_stop=stop)


class Graph:
    """An API-format workflow to build, edit, check, run and save.

    ``Graph()`` is empty; ``Graph.load(path)`` reads an API JSON (as ComfyUI's
    "Export (API)" writes it, or a file this class saved); ``Graph(dict)``
    wraps a workflow dict (copied). ``registry`` defaults to this pack's nodes.
    """

    def __init__(self, workflow: dict | None = None, *, registry: dict[str, type] | None = None):
        self.registry = registry if registry is not None else default_registry()
        self.workflow: dict[str, dict] = copy.deepcopy(workflow) if workflow else {}
        for node_id in list(self.workflow):
            if not isinstance(node_id, str):
                self.workflow[str(node_id)] = self.workflow.pop(node_id)

    @classmethod
    def load(cls, path: str | Path, *, registry: dict[str, type] | None = None) -> "Graph":
        """Read an API-format workflow with the runner's loader (same errors)."""
        return cls(executor.load_workflow(path), registry=registry)

    # -- building

    def add(self, class_type: str, /, *, id: str | int | None = None, title: str | None = None,
            **inputs: Any) -> Node:
        """Add a node; widget inputs not given get their defaults (as in ComfyUI).

        Inputs are values or links (``other[0]``, ``other["name"]``; a node
        with one output may be passed itself). ``id`` defaults to the next
        free number; ``title`` is stored in ``_meta`` (ComfyUI's node title)
        and can be used by ``set``/``get``/``node``. An unknown class, an
        unknown input, a bad value or a mistyped link is a ``WorkflowError`` now.
        """
        node_id = self._new_id(id)
        if class_type not in self.registry:
            raise WorkflowError(f"unknown node class {class_type!r}; this pack provides: "
                                f"{', '.join(sorted(self.registry))}", node_id, class_type)
        cls = self.registry[class_type]
        given = {name: self._link_or_value(value) for name, value in inputs.items()}
        node: dict[str, Any] = {"class_type": class_type, "inputs": {}}
        defaults = widget_defaults(cls)
        for name in executor._input_specs(cls):  # INPUT_TYPES order, as ComfyUI exports
            if name in given or name in defaults:
                node["inputs"][name] = given.pop(name) if name in given else defaults[name]
        node["inputs"].update(given)  # unknown names, refused below
        if title:
            node["_meta"] = {"title": str(title)}
        for name, value in node["inputs"].items():
            self._check_input(node_id, node, name, value)
        self.workflow[node_id] = node
        return Node(self, node_id)

    def _new_id(self, wanted) -> str:
        if wanted is not None:
            node_id = str(wanted)
            if node_id in self.workflow:
                raise WorkflowError(f"node id {node_id} is already in the graph", node_id)
            return node_id
        numbers = [int(k) for k in self.workflow if k.isdigit()]
        return str(max(numbers, default=0) + 1)

    def _link_or_value(self, value: Any) -> Any:
        if isinstance(value, Node):
            returns = getattr(self.registry.get(value.class_type), "RETURN_TYPES", ())
            if len(returns) != 1:
                raise WorkflowError(f"has {len(returns)} outputs; link one of them: "
                                    f"node[0]..node[{len(returns) - 1}]", value.id,
                                    value.class_type)
            return Output(value.id, 0)
        if isinstance(value, Output):
            return Output(value.node_id, value.index)
        return copy.deepcopy(value)

    def _check_input(self, node_id: str, node: dict, name: str, value: Any) -> None:
        """The executor's own check of one input (missing inputs and VALIDATE_INPUTS
        are whole-node checks: ``validate``/``run``/``save`` make them)."""
        workflow = dict(self.workflow)
        workflow[node_id] = node
        executor.validate_input(node_id, node["class_type"], name, value, workflow, self.registry)

    # -- finding and editing

    def node(self, ref: "Node | str | int") -> Node:
        """A node by id, by title (``_meta.title``), or a Node of this graph."""
        if isinstance(ref, Node):
            ref = ref.id
        ref = str(ref)
        if ref in self.workflow:
            return Node(self, ref)
        titled = [nid for nid, n in self.workflow.items()
                  if (n.get("_meta") or {}).get("title") == ref]
        if len(titled) == 1:
            return Node(self, titled[0])
        if len(titled) > 1:
            raise WorkflowError(f"the title {ref!r} names nodes {', '.join(titled)}; use a node id")
        raise WorkflowError(f"no node with id or title {ref!r} (nodes: "
                            f"{', '.join(self._describe(n) for n in self.workflow)})")

    def _describe(self, node_id: str) -> str:
        title = (self.workflow[node_id].get("_meta") or {}).get("title")
        return f"{node_id} {title!r}" if title else node_id

    def resolve(self, target: str) -> tuple[str, str]:
        """``"3.prompt"`` or ``"Edit.prompt"`` → ``("3", "prompt")``; the input must
        be one the node's class declares."""
        ref, dot, name = str(target).rpartition(".")
        if not dot or not ref or not name:
            raise WorkflowError(f"{target!r} must look like NODE.input (NODE = id or title), "
                                "e.g. 3.prompt")
        node = self.node(ref)
        specs = executor._input_specs(self.registry[node.class_type])
        if name not in specs or specs[name][0] == "hidden":
            raise WorkflowError(f"is not an input of {node.class_type}; its inputs are: "
                                f"{', '.join(n for n, s in specs.items() if s[0] != 'hidden')}",
                                node.id, node.class_type, name)
        return node.id, name

    def input_type(self, target: str) -> Any:
        """The INPUT_TYPES type of ``target`` ("INT", "STRING", a combo list, "IMAGE" ...)."""
        node_id, name = self.resolve(target)
        return executor._input_specs(self.registry[self.workflow[node_id]["class_type"]])[name][1]

    def set(self, target: str, value: Any) -> None:
        """Set an input: ``g.set("3.prompt", "a blue hat")`` or by title ``"Edit.prompt"``.
        A bad value is a ``WorkflowError`` now (the executor's check)."""
        node_id, name = self.resolve(target)
        value = self._link_or_value(value)
        node = self.workflow[node_id]
        self._check_input(node_id, node, name, value)
        node.setdefault("inputs", {})[name] = value

    def set_text(self, target: str, text: str) -> None:
        """Set an input from command-line text (``--set 3.steps=200``)."""
        self.set(target, self.parse_text(target, text))

    def parse_text(self, target: str, text: str) -> Any:
        """Command-line text as the value ``target`` takes, by its declared type:
        the runner's own ``--set`` parse (``executor.coerce_text``): a text input
        keeps the text as typed (``--set 3.prompt=1`` is the prompt "1"), a
        number or true/false that is not one is a ``WorkflowError`` now."""
        node_id, name = self.resolve(target)
        return executor.coerce_text(node_id, self.workflow[node_id]["class_type"], name, text,
                                    self.registry)

    def get(self, target: str) -> Any:
        node_id, name = self.resolve(target)
        return copy.deepcopy(self.workflow[node_id].get("inputs", {}).get(name))

    def remove(self, ref: "Node | str | int") -> None:
        node_id = self.node(ref).id
        users = [nid for nid, n in self.workflow.items() if node_id in executor._links_of(n)]
        if users:
            raise WorkflowError(f"is linked into node(s) {', '.join(users)}; "
                                "remove those links first",
                                node_id, self.workflow[node_id]["class_type"])
        del self.workflow[node_id]

    def copy(self) -> "Graph":
        return Graph(self.workflow, registry=self.registry)

    # -- checking, saving, running

    def validate(self) -> list[str]:
        """The runner's whole-graph check; the node ids that will run, in order."""
        return executor.validate_workflow(self.workflow, self.registry)

    def to_dict(self) -> dict:
        """The API-format workflow (a copy): class_type, inputs and, if titled, _meta."""
        return json.loads(self.to_json())

    def to_json(self, indent: int | None = 2) -> str:
        ordered = dict(sorted(self.workflow.items(), key=lambda kv: executor._sort_key(kv[0])))
        return json.dumps(ordered, indent=indent)

    def save(self, path: str | Path, *, validate: bool = True) -> Path:
        """Write the API JSON atomically (checked first unless ``validate=False``)."""
        if validate:
            self.validate()
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json() + "\n")
        return path

    def expected_outputs(self) -> list[str]:
        """Files the output nodes will write (those that can tell in advance)."""
        return executor.expected_outputs(self.workflow, self.registry)

    def run(self, *, progress=None, stop=None, frames: list[int] | str | None = None,
            skip_complete: bool = False) -> GraphResult:
        """Validate and run on the runner's executor; outputs come back as tensors.

        ``progress``: a ``callback(step, total, info)`` (step/total in
        thousandths of the run, ``info["node"]`` = the class running) or a
        Progress. ``stop``: ``() -> bool`` or a threading.Event; when it turns
        true the run raises ``Cancelled`` at the next step (trainers checkpoint
        first; nothing partial is written). ``frames``: as ``--frames``.
        ``skip_complete``: frames already complete on disk are not computed.
        """
        from .engine.frames import parse_frames
        if isinstance(frames, str):
            frames = parse_frames(frames)
        skip = None
        if skip_complete:
            from .engine.io import exr_is_complete
            skip = exr_is_complete
        result = executor.run_workflow(self.workflow, self.registry, frames=frames,
                                       progress=_as_progress(progress, stop),
                                       skip_complete=skip, keep_values=True)
        return GraphResult(values=result.values, ui=result.outputs,
                           written=[Path(p) for p in result.written], executed=result.executed,
                           skipped_frames=result.skipped_frames)

    # -- wedges

    def wedge(self, vary: dict[str, Any] | list[str], out: str | Path, **kw):
        """A ``Wedge`` of this graph (see livelayers.wedge): ``g.wedge({"3.prompt":
        ["blue circle", "green circle"], "3.seed": "0-3"}, out="wedge").run()``."""
        from .wedge import Wedge
        return Wedge(self, vary, out, **kw)

    def __contains__(self, ref) -> bool:
        try:
            self.node(ref)
        except WorkflowError:
            return False
        return True

    def __len__(self) -> int:
        return len(self.workflow)

    def __repr__(self) -> str:
        return f"<Graph {len(self.workflow)} nodes: " + ", ".join(
            f"{nid} {n['class_type']}" for nid, n in self.workflow.items()) + ">"
