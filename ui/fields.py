"""Which workflow inputs the panel shows, without Qt.

The panel edits a ComfyUI API-format workflow in place. It shows only the
inputs an artist iterates on: prompt-like text and a few key numbers, with
literal values (a linked input belongs to the graph, not to the panel).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: STRING inputs shown as prompt fields (plus any name ending in "prompt").
PROMPT_INPUTS = ("prompt", "roi_text", "screen_prompt", "negative_prompt", "text")
#: Number inputs shown as fields.
NUMBER_INPUTS = ("steps", "seed")


@dataclass(frozen=True)
class Field:
    """One editable input: ``workflow[node_id]["inputs"][name]``.

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

    @property
    def key(self) -> str:
        """``"node_id.input"``, the runner's ``--set`` spelling."""
        return f"{self.node_id}.{self.name}"


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


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


def _node_order(node_id: str):
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def editable_fields(workflow: dict, registry: dict[str, type] | None = None) -> list[Field]:
    """The inputs to show, grouped by node (nodes in id order, inputs in graph order)."""
    registry = registry or {}
    fields: list[Field] = []
    for node_id in sorted(workflow, key=lambda n: _node_order(str(n))):
        node = workflow[node_id]
        if not isinstance(node, dict):
            continue
        class_type = str(node.get("class_type", "?"))
        cls = registry.get(class_type)
        for name, value in (node.get("inputs") or {}).items():
            if _is_link(value):
                continue
            typ, opts = _spec(cls, name)
            kind = _kind(name, value, typ)
            if kind is None:
                continue
            fields.append(Field(str(node_id), class_type, name, kind,
                                tooltip=str(opts.get("tooltip", "")),
                                minimum=opts.get("min"), maximum=opts.get("max")))
    return fields


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
