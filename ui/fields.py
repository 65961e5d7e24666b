"""Which workflow inputs the panel shows, without Qt.

The panel edits a ComfyUI API-format workflow in place. It shows only the
inputs an artist iterates on: prompt-like text and a few key numbers, with
literal values (a linked input belongs to the graph, not to the panel).

One field per idea: a value that feeds several nodes is one field.
- Inputs a node class lists in ``LL_DEPRECATED_INPUTS`` (LL_SaveEXR's
  ``edit_prompt`` / ``seed``, which only repeated the trainer's values; the
  EXR now reads its provenance from the graph) are not shown.
- Text inputs of the same name holding the same non-empty text in several
  nodes are one field that writes all of them: ComfyUI's "Export (API)"
  inlines a primitive node's value into every input it feeds, so identical
  copies are how one shared value looks in an API graph. Numbers are never
  merged (two trainers with seed 0 are a coincidence, not one idea).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.executor import is_link  # what counts as a link: the runner's own test

#: STRING inputs shown as prompt fields (plus any name ending in "prompt").
PROMPT_INPUTS = ("prompt", "roi_text", "screen_prompt", "negative_prompt", "text")
#: Number inputs shown as fields.
NUMBER_INPUTS = ("steps", "seed")
#: Inputs whose text names the region to edit: the live matte follows them.
MATTE_INPUTS = ("roi_text",)


@dataclass(frozen=True)
class Field:
    """One editable idea: ``workflow[node_id]["inputs"][name]`` for each target.

    ``targets``: ((node_id, name), ...), the first is the field's own node.
    ``kind`` is ``"text"`` or ``"int"``/``"float"``; ``minimum``/``maximum``
    and ``tooltip`` come from the node class's INPUT_TYPES when it is known.
    """

    node_id: str
    class_type: str
    name: str
    kind: str
    tooltip: str = ""
    minimum: float | None = None
    maximum: float | None = None
    multiline: bool = False
    targets: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """``"node_id.input"``, the runner's ``--set`` spelling (of the first target)."""
        return f"{self.node_id}.{self.name}"

    @property
    def keys(self) -> list[str]:
        """Every ``"node_id.input"`` this field writes."""
        return [f"{n}.{i}" for n, i in (self.targets or ((self.node_id, self.name),))]

    def read(self, workflow: dict) -> Any:
        return workflow[self.node_id]["inputs"][self.name]

    def write(self, workflow: dict, value: Any) -> None:
        for node_id, name in self.targets or ((self.node_id, self.name),):
            workflow[node_id]["inputs"][name] = value


def _spec(cls: type | None, name: str) -> tuple[Any, dict]:
    """(type, options) of input ``name`` from INPUT_TYPES, or (None, {})."""
    if cls is None:
        return None, {}
    try:
        spec = cls.INPUT_TYPES()
    except Exception:  # a broken class shows up in validation, not here
        return None, {}
    for section in ("required", "optional"):
        entry = (spec.get(section) or {}).get(name)
        if entry is not None:
            entry = tuple(entry) if isinstance(entry, (list, tuple)) else (entry,)
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            return entry[0], opts
    return None, {}


def _kind(name: str, value: Any, typ: Any) -> str | None:
    """The field kind for an input, or None when the panel does not show it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and typ in (None, "STRING") and (
            name in PROMPT_INPUTS or name.endswith("prompt")):
        return "text"
    if name in NUMBER_INPUTS:
        if typ == "INT" or (typ is None and isinstance(value, int)):
            return "int"
        if typ == "FLOAT" or (typ is None and isinstance(value, float)):
            return "float"
    return None


def node_order(node_id: str):
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def deprecated_inputs(cls: type | None) -> dict[str, str]:
    """``{input: why}`` the node class no longer wants typed (``LL_DEPRECATED_INPUTS``)."""
    found = getattr(cls, "LL_DEPRECATED_INPUTS", None) if cls is not None else None
    return dict(found) if isinstance(found, dict) else {}


def editable_fields(workflow: dict, registry: dict[str, type] | None = None) -> list[Field]:
    """The fields to show, grouped by node (nodes in id order, inputs in graph order);
    identical text copies merged into the first node's field."""
    registry = registry or {}
    fields: list[Field] = []
    merged: dict[tuple[str, str], int] = {}  # (name, text) -> index in fields
    for node_id in sorted(workflow, key=lambda n: node_order(str(n))):
        node = workflow[node_id]
        if not isinstance(node, dict):
            continue
        class_type = str(node.get("class_type", "?"))
        cls = registry.get(class_type)
        hidden = deprecated_inputs(cls)
        for name, value in (node.get("inputs") or {}).items():
            if is_link(value) or name in hidden:
                continue
            typ, opts = _spec(cls, name)
            kind = _kind(name, value, typ)
            if kind is None:
                continue
            target = (str(node_id), name)
            if kind == "text" and value.strip() and (name, value) in merged:
                i = merged[(name, value)]
                fields[i] = _with_target(fields[i], target)
                continue
            if kind == "text" and value.strip():
                merged[(name, value)] = len(fields)
            fields.append(Field(str(node_id), class_type, name, kind,
                                tooltip=str(opts.get("tooltip", "")),
                                minimum=opts.get("min"), maximum=opts.get("max"),
                                multiline=bool(opts.get("multiline", False)),
                                targets=(target,)))
    return fields


def _with_target(field: Field, target: tuple[str, str]) -> Field:
    from dataclasses import replace
    return replace(field, targets=field.targets + (target,))


def primary_fields(fields: list[Field]) -> dict[str, Field]:
    """The fields the panel puts at the top: ``prompt``, ``roi`` (the region text
    the live matte follows), ``seed`` and ``steps`` of the edit's node (the first
    node with a prompt field; else the first node with each)."""
    by_role: dict[str, Field] = {}
    prompt = next((f for f in fields if f.kind == "text" and f.name == "prompt"), None)
    if prompt is not None:
        by_role["prompt"] = prompt
    home = prompt.node_id if prompt is not None else None
    wanted = {"roi": lambda f: f.kind == "text" and f.name in MATTE_INPUTS,
              "seed": lambda f: f.kind == "int" and f.name == "seed",
              "steps": lambda f: f.kind == "int" and f.name == "steps"}
    for role, test in wanted.items():
        pick = next((f for f in fields if test(f) and f.node_id == home), None) \
            or next((f for f in fields if test(f)), None)
        if pick is not None:
            by_role[role] = pick
    return by_role


def parse_number(text: str, kind: str) -> int | float:
    """The number a field's text means; ``ValueError`` with a readable message if none.

    No clamping here: a value outside the node's range goes into the workflow
    and the executor's validation names the node, input and allowed range.
    """
    text = text.strip()
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not {'an integer' if kind == 'int' else 'a number'}") from None
