"""Headless executor for ComfyUI API-format workflows.

A workflow is ``{"id": {"class_type": "LL_…", "inputs": {name: value or
["other_id", output_index]}}}``. The executor is handed the node registry
(``NODE_CLASS_MAPPINGS``) by its caller, so engine/ never imports nodes/.

It follows ComfyUI's classic contract (INPUT_TYPES, RETURN_TYPES, FUNCTION,
OUTPUT_NODE, VALIDATE_INPUTS) and its rules: required inputs must be present,
only output nodes and their ancestors run, in dependency order. Everything is
validated before anything runs, and the first problem found is reported as one
``WorkflowError`` naming the node id, its class and the input. Nodes add their
own rules through two optional classmethods: ``LL_VALIDATE(inputs, linked)``
(literal inputs, names of the linked ones: cross-input rules, output paths)
and ``LL_VALIDATE_FILES(inputs)`` (what must be on disk), each raising
``InputError``.
"""
from __future__ import annotations

import copy
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import progress as progress_mod
from .errors import InputError, LiveLayersError
from .frames import format_frames

Registry = dict[str, type]
PRIMITIVE_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")


class WorkflowError(LiveLayersError, ValueError):
    """A workflow that cannot run; says which node, class and input."""

    def __init__(self, message: str, node_id: str | None = None, class_type: str | None = None,
                 input_name: str | None = None):
        self.node_id, self.class_type, self.input_name = node_id, class_type, input_name
        where = []
        if node_id is not None:
            where.append(f"node {node_id}")
        if class_type:
            where.append(f"({class_type})")
        if input_name:
            where.append(f"input '{input_name}'")
        super().__init__(f"{' '.join(where)}: {message}" if where else message)


class NodeFailed(WorkflowError):
    """A node raised an exception that is not one of ours (a bug, a library error).

    Reads ``node 3 (LL_Text2LIVE) failed: RuntimeError: message``; the original
    exception is ``exc`` (and ``__cause__``, so a ``--debug`` run can show its traceback).
    """

    def __init__(self, node_id: str, class_type: str, exc: BaseException):
        self.exc = exc
        LiveLayersError.__init__(self, f"node {node_id} ({class_type}) failed: "
                                       f"{type(exc).__name__}: {exc}")
        self.node_id, self.class_type, self.input_name = node_id, class_type, None


@dataclass
class RunResult:
    outputs: dict[str, dict] = field(default_factory=dict)  # output node id -> its "ui" dict
    written: list[str] = field(default_factory=list)  # files the output nodes wrote
    skipped_frames: list[int] = field(default_factory=list)  # already complete on disk
    executed: list[str] = field(default_factory=list)  # node ids, in order
    values: dict[str, tuple] = field(default_factory=dict)  # node id -> outputs (keep_values=True)


# --------------------------------------------------------------------------- loading

def load_workflow(path: str | Path) -> dict:
    """Read an API-format workflow JSON (also accepts ``{"prompt": {...}}``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise WorkflowError(f"workflow file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise WorkflowError(f"workflow file {path} is not valid JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowError(f"{path} is a ComfyUI UI-format workflow; save it with "
                            "'Export (API)' to get the API format this runner takes")
    if not isinstance(data, dict):
        raise WorkflowError(f"{path} must hold a JSON object of nodes")
    return data


def parse_override(text: str, workflow: dict | None = None,
                   registry: Registry | None = None) -> tuple[str, str, Any]:
    """``"12.steps=200"`` → ("12", "steps", 200).

    With ``workflow`` and ``registry`` the value is read as the input's
    declared type (``coerce_text``): a STRING input keeps the text as typed
    ("5" stays "5"), INT/FLOAT/BOOLEAN are converted or refused in one line.
    Without them (the node is unknown yet) values parse as JSON when they can.
    """
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise WorkflowError(f"--set {text!r} must look like NODE_ID.input=value")
    target, raw = text.split("=", 1)
    node_id, input_name = target.split(".", 1)
    node = (workflow or {}).get(node_id)
    if registry is not None and isinstance(node, dict) and node.get("class_type") in registry:
        return node_id, input_name, coerce_text(node_id, node["class_type"], input_name, raw,
                                                registry)
    return node_id, input_name, _json_or_text(raw)


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def coerce_text(node_id: str, class_type: str, name: str, text: str, registry: Registry) -> Any:
    """Command-line text as the value the input's declared type takes.

    STRING: the text as typed. INT / FLOAT: the number (``WorkflowError`` if it
    is not one). BOOLEAN: true/false (also 1/0, yes/no, on/off). A combo: the
    choice whose text it is. A JSON link ``["4", 0]`` for any input but STRING
    (whose text is always kept). Ranges are checked afterwards by validation,
    as for any value. This is the one parse of typed text: the runner's
    ``--set``, ``Graph.set_text``/``parse_text``, wedges and farm exports use it.
    """
    specs = _input_specs(registry[class_type])
    where = dict(node_id=node_id, class_type=class_type, input_name=name)
    if name not in specs or specs[name][0] == "hidden":
        raise WorkflowError(f"is not an input of {class_type}; its inputs are: "
                            f"{', '.join(n for n, s in specs.items() if s[0] != 'hidden')}", **where)
    typ = specs[name][1]
    if isinstance(typ, (list, tuple)):  # combo: the choice with this text
        for choice in typ:
            if str(choice) == text or (not isinstance(choice, str) and _json_or_text(text) == choice):
                return choice
        raise WorkflowError(f"value {text!r} is not one of {list(typ)}", **where)
    if typ == "STRING":
        return text
    link = _json_or_text(text)
    if is_link(link):  # a widget input converted to a socket takes a link too
        return link
    stripped = text.strip()
    if typ == "INT":
        try:
            return int(stripped)
        except ValueError:
            raise WorkflowError(f"value {text!r} is not an integer; allowed: a whole "
                                "number like 200", **where) from None
    if typ == "FLOAT":
        try:
            value = float(stripped)
        except ValueError:
            value = None
        if value is None or value != value or value in (float("inf"), float("-inf")):
            raise WorkflowError(f"value {text!r} is not a number; allowed: a finite "
                                "number like 0.5", **where)
        return value
    if typ == "BOOLEAN":
        if stripped.lower() in _TRUE + _FALSE:
            return stripped.lower() in _TRUE
        raise WorkflowError(f"value {text!r} is not true/false; allowed: true, false "
                            "(or 1/0, yes/no, on/off)", **where)
    raise WorkflowError(f"is a {typ} input, which takes a link from another node, not the "
                        f"value {text!r}; allowed: a link like [\"4\", 0]", **where)


def apply_overrides(workflow: dict, overrides: dict[str, Any] | None) -> dict:
    """A copy of ``workflow`` with ``{"id.input": value}`` applied."""
    wf = copy.deepcopy(workflow)
    for target, value in (overrides or {}).items():
        node_id, input_name = target.split(".", 1)
        if node_id not in wf:
            raise WorkflowError(f"--set names node {node_id}, which is not in the workflow "
                                f"(nodes: {', '.join(sorted(wf))})")
        wf[node_id].setdefault("inputs", {})[input_name] = value
    return wf


# --------------------------------------------------------------------------- validation

def is_link(value: Any) -> bool:
    """Whether an API-format input value is a link ``[node_id, output_index]``
    (node id a string or int, output index an int, not a bool), not a literal.
    The one test every part uses (runner, farm, provenance, panel, nodes)."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def ancestors(workflow: dict, node_id: str) -> list[str]:
    """Ids of the nodes feeding ``node_id`` (through links, transitively),
    nearest first (breadth-first); links to ids not in ``workflow`` are skipped."""
    seen, order, queue = {str(node_id)}, [], [str(node_id)]
    while queue:
        for value in ((workflow.get(queue.pop(0)) or {}).get("inputs") or {}).values():
            src = str(value[0]) if is_link(value) else None
            if src is not None and src in workflow and src not in seen:
                seen.add(src)
                order.append(src)
                queue.append(src)
    return order


def _input_specs(cls: type) -> dict[str, tuple[str, Any, dict]]:
    """name -> (section, type, options) from INPUT_TYPES()."""
    spec = cls.INPUT_TYPES()
    out = {}
    for section in ("required", "optional", "hidden"):
        for name, entry in (spec.get(section) or {}).items():
            if isinstance(entry, (tuple, list)):
                typ = entry[0]
                opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            else:
                typ, opts = entry, {}
            out[name] = (section, typ, opts)
    return out


def _check_literal(value: Any, typ: Any, opts: dict, where: dict) -> None:
    def fail(msg: str) -> None:
        raise WorkflowError(msg, **where)

    if isinstance(typ, (list, tuple)):  # combo
        if value not in typ:
            fail(f"value {value!r} is not one of {list(typ)}")
        return
    if typ == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            fail(f"value {value!r} is not an integer")
    elif typ == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(f"value {value!r} is not a number")
    elif typ == "STRING":
        if not isinstance(value, str):
            fail(f"value {value!r} is not a string")
    elif typ == "BOOLEAN":
        if not isinstance(value, bool):
            fail(f"value {value!r} is not true/false")
    else:
        fail(f"needs a link from a node that outputs {typ}, got the value {value!r}")
    if typ in ("INT", "FLOAT"):
        lo, hi = opts.get("min"), opts.get("max")
        if lo is not None and value < lo:
            fail(f"value {value} is below the minimum {lo}")
        if hi is not None and value > hi:
            fail(f"value {value} is above the maximum {hi}")


def _types_compatible(out_type: Any, in_type: Any) -> bool:
    if isinstance(in_type, (list, tuple)):  # a combo accepts a STRING/COMBO output
        return out_type in ("STRING", "COMBO", "*") or isinstance(out_type, (list, tuple))
    if "*" in (out_type, in_type):
        return True
    outs = {t.strip() for t in str(out_type).split(",")}
    ins = {t.strip() for t in str(in_type).split(",")}
    return bool(outs & ins)


def validate_workflow(workflow: dict, registry: Registry) -> list[str]:
    """Check the whole workflow; return the ids to execute, in dependency order.

    Raises ``WorkflowError`` for: an unknown class, a missing required input,
    an unknown input name, a value of the wrong type or out of range, a link
    to a missing node or output, a link whose types do not match, a cycle,
    a failing ``VALIDATE_INPUTS`` or ``LL_VALIDATE`` (a node's own cross-input,
    path and pattern rules), or no output node at all. What is on disk is
    ``check_files``' (``run_workflow`` makes both checks before any node runs).
    """
    if not isinstance(workflow, dict) or not workflow:
        raise WorkflowError("the workflow is empty")
    for node_id, node in workflow.items():
        _validate_node(str(node_id), node, workflow, registry)
    outputs = [nid for nid, node in workflow.items()
               if getattr(registry[node["class_type"]], "OUTPUT_NODE", False)]
    if not outputs:
        raise WorkflowError("the workflow has no output node (e.g. LL_SaveEXR), so nothing would run")
    return _execution_order(workflow, outputs)


def _validate_node(node_id: str, node: Any, workflow: dict, registry: Registry) -> None:
    if not isinstance(node, dict) or "class_type" not in node:
        raise WorkflowError("must be an object with 'class_type' and 'inputs'", node_id)
    class_type = node["class_type"]
    if class_type not in registry:
        known = ", ".join(sorted(registry))
        raise WorkflowError(f"unknown node class {class_type!r}; this pack provides: {known}",
                            node_id, class_type)
    cls = registry[class_type]
    specs = _input_specs(cls)
    inputs = node.get("inputs") or {}
    for name, (section, _, _) in specs.items():
        if section == "required" and name not in inputs:
            raise WorkflowError("required input is missing", node_id, class_type, name)
    literals = {}
    for name, value in inputs.items():
        validate_input(node_id, class_type, name, value, workflow, registry)
        if not is_link(value):
            literals[name] = value
    validate = getattr(cls, "VALIDATE_INPUTS", None)
    if validate is not None:
        wanted = inspect.signature(validate).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in wanted.values())
        args = {k: v for k, v in literals.items() if takes_all or k in wanted}
        verdict = validate(**args)
        if verdict is not True:
            raise WorkflowError(str(verdict), node_id, class_type)
    linked = frozenset(name for name, value in inputs.items() if is_link(value))
    _node_hook(cls, "LL_VALIDATE", node_id, class_type, literals, linked)


def _node_hook(cls: type, hook: str, node_id: str, class_type: str, *args) -> None:
    """Call a node's own check (``LL_VALIDATE(inputs, linked)``: cross-input
    rules, paths and patterns; ``LL_VALIDATE_FILES(inputs)``: what is on disk),
    turning its ``InputError`` into the runner's one-line ``WorkflowError``."""
    check = getattr(cls, hook, None)
    if check is None:
        return
    try:
        check(*args)
    except InputError as e:
        problem = f"{e.problem}; allowed: {e.allowed}" if e.allowed else e.problem
        raise WorkflowError(problem, node_id, class_type, e.input_name) from None


def check_files(workflow: dict, registry: Registry, order: list[str]) -> None:
    """The checks that read the disk (a sequence's frames exist), for the nodes
    about to run; made just before the first one runs. Kept out of
    ``validate_workflow`` because a graph may be validated (saved, exported to a
    farm) before the files it reads are written."""
    for nid in order:
        node = workflow[nid]
        literals = {k: v for k, v in (node.get("inputs") or {}).items() if not is_link(v)}
        _node_hook(registry[node["class_type"]], "LL_VALIDATE_FILES", nid, node["class_type"],
                   literals)


def validate_input(node_id: str, class_type: str, name: str, value: Any, workflow: dict,
                   registry: Registry) -> None:
    """Check one input of a node of a known class: the name, a literal's type and
    range, or a link's target and type (the Python graph API checks each input as it is set)."""
    specs = _input_specs(registry[class_type])
    where = dict(node_id=node_id, class_type=class_type, input_name=name)
    if name not in specs:
        raise WorkflowError(f"is not an input of {class_type}; its inputs are: "
                            f"{', '.join(specs)}", **where)
    _, typ, opts = specs[name]
    if not is_link(value):
        _check_literal(value, typ, opts, where)
        return
    src_id, idx = str(value[0]), value[1]
    if src_id not in workflow:
        raise WorkflowError(f"links to node {src_id}, which is not in the workflow", **where)
    src_class = workflow[src_id].get("class_type")
    if src_class not in registry:
        return  # reported when that node is validated
    returns = registry[src_class].RETURN_TYPES
    if not 0 <= idx < len(returns):
        raise WorkflowError(f"links to output {idx} of node {src_id} ({src_class}), "
                            f"which has {len(returns)} outputs", **where)
    if not _types_compatible(returns[idx], typ):
        raise WorkflowError(f"expects {typ} but is linked to output {idx} of node {src_id} "
                            f"({src_class}), which is {returns[idx]}", **where)


def _links_of(node: dict) -> list[str]:
    return [str(v[0]) for v in (node.get("inputs") or {}).values() if is_link(v)]


def _execution_order(workflow: dict, outputs: list[str]) -> list[str]:
    """Depth-first topological order of ``outputs`` and their ancestors."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(nid: str, path: list[str]) -> None:
        if state.get(nid) == 2:
            return
        if state.get(nid) == 1:
            cycle = path[path.index(nid):] + [nid]
            raise WorkflowError(f"the workflow has a cycle: {' -> '.join(cycle)}", nid,
                                workflow[nid].get("class_type"))
        state[nid] = 1
        for dep in _links_of(workflow[nid]):
            visit(dep, path + [nid])
        state[nid] = 2
        order.append(nid)

    for nid in sorted(outputs, key=_sort_key):
        visit(nid, [])
    return order


def _sort_key(node_id: str):
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


# --------------------------------------------------------------------------- frames

def set_frames(workflow: dict, registry: Registry, frames: list[int]) -> dict:
    """Set the literal ``frames`` input of every node that declares one."""
    wf = copy.deepcopy(workflow)
    expr = format_frames(frames)
    for node in wf.values():
        cls = registry.get(node.get("class_type"))
        if cls is None or "frames" not in _input_specs(cls):
            continue
        if not is_link(node.get("inputs", {}).get("frames")):
            node.setdefault("inputs", {})["frames"] = expr
    return wf


def expected_outputs(workflow: dict, registry: Registry) -> list[str]:
    """Files the output nodes will write, for those that can say (LL_OUTPUT_PATHS)."""
    paths: list[str] = []
    for node in workflow.values():
        cls = registry.get(node.get("class_type"))
        lister = getattr(cls, "LL_OUTPUT_PATHS", None)
        if lister is None or not getattr(cls, "OUTPUT_NODE", False):
            continue
        literals = {k: v for k, v in (node.get("inputs") or {}).items() if not is_link(v)}
        paths.extend(str(p) for p in lister(**literals))
    return paths


def frames_to_run(workflow: dict, registry: Registry, frames: list[int],
                  is_complete: Callable[[str], bool]) -> tuple[list[int], list[int]]:
    """Split ``frames`` into (to run, already complete on disk)."""
    todo, done = [], []
    for f in frames:
        paths = expected_outputs(set_frames(workflow, registry, [f]), registry)
        if paths and all(is_complete(p) for p in paths):
            done.append(f)
        else:
            todo.append(f)
    return todo, done


# --------------------------------------------------------------------------- running

def _node_progress(outer: progress_mod.Progress, index: int, count: int,
                   class_type: str) -> progress_mod.Progress:
    """Map a node's own step/total onto the whole run's fraction."""
    def callback(step: int, total: int, info: dict) -> None:
        fraction = (index + (step / total if total else 0.0)) / count
        if outer.callback is not None:
            outer.callback(int(fraction * 1000), 1000, dict(info, node=class_type))

    return progress_mod.Progress(callback=callback, should_stop=outer.should_stop,
                                 preview_every=outer.preview_every, label=class_type)


def _hidden_inputs(cls: type, node_id: str, workflow: dict) -> dict:
    """ComfyUI's hidden inputs: PROMPT is the API workflow (provenance), UNIQUE_ID the node id."""
    hidden = {}
    for name, (section, typ, _) in _input_specs(cls).items():
        if section != "hidden":
            continue
        if typ == "PROMPT":
            hidden[name] = workflow
        elif typ == "UNIQUE_ID":
            hidden[name] = node_id
        else:  # EXTRA_PNGINFO etc.: only the ComfyUI front end has them
            hidden[name] = None
    return hidden


def _call_node(cls: type, kwargs: dict) -> tuple[tuple, dict | None]:
    instance = cls()
    result = getattr(instance, cls.FUNCTION)(**kwargs)
    if isinstance(result, dict):
        return tuple(result.get("result", ())), result.get("ui")
    return tuple(result), None


def run_workflow(workflow: dict, registry: Registry, *, overrides: dict[str, Any] | None = None,
                 frames: list[int] | None = None, progress: progress_mod.Progress | None = None,
                 skip_complete: Callable[[str], bool] | None = None,
                 keep_values: bool = False) -> RunResult:
    """Validate, then execute the output nodes and their ancestors.

    ``frames`` sets every node's ``frames`` input (the farm chunk). With
    ``skip_complete`` (a predicate "this file is already fully written"),
    frames whose every output is complete are not computed again.
    ``keep_values`` returns every executed node's outputs in ``result.values``
    (the Python API's tensors; off for the CLI, which needs only the files).
    """
    progress = progress or progress_mod.Progress()
    wf = apply_overrides(workflow, overrides)
    result = RunResult()
    # Everything knowable is checked for the whole range before any frame is skipped or run.
    full = set_frames(wf, registry, frames) if frames is not None else wf
    check_files(full, registry, validate_workflow(full, registry))
    if frames is not None:
        if skip_complete is not None:
            frames, result.skipped_frames = frames_to_run(wf, registry, frames, skip_complete)
            if not frames:
                return result
        wf = set_frames(wf, registry, frames)
    order = validate_workflow(wf, registry)
    values: dict[str, tuple] = {}
    for index, nid in enumerate(order):
        progress.check()
        node = wf[nid]
        cls = registry[node["class_type"]]
        kwargs = {k: (values[str(v[0])][v[1]] if is_link(v) else v)
                  for k, v in (node.get("inputs") or {}).items()}
        kwargs.update(_hidden_inputs(cls, nid, wf))
        node_progress = _node_progress(progress, index, len(order), node["class_type"])
        with progress_mod.use(node_progress):
            try:
                values[nid], ui = _call_node(cls, kwargs)
            except LiveLayersError:
                raise
            except Exception as e:
                raise NodeFailed(nid, node["class_type"], e) from e
        result.executed.append(nid)
        if ui is not None:
            result.outputs[nid] = ui
            result.written.extend(str(p) for p in ui.get("written", []))
        progress.update(int((index + 1) * 1000 / len(order)), 1000, node=node["class_type"])
    if keep_values:
        result.values = values
    return result
