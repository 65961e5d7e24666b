"""The headless runner: validation, ordering, overrides, frames, cancel."""
from __future__ import annotations

import pytest

from livelayers.engine import executor
from livelayers.engine.errors import Cancelled
from livelayers.engine.executor import WorkflowError, run_workflow, validate_workflow
from livelayers.engine.progress import Progress

CALLS: list[str] = []


class Number:
    RETURN_TYPES = ("INT",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1, "min": 0, "max": 10})}}

    def make(self, value):
        CALLS.append(f"Number({value})")
        return (value,)


class Add:
    RETURN_TYPES = ("INT",)
    FUNCTION = "add"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {}), "b": ("INT", {})},
                "optional": {"mode": (["plain", "double"],)}}

    def add(self, a, b, mode="plain"):
        CALLS.append(f"Add({a},{b})")
        return ((a + b) * (2 if mode == "double" else 1),)


class Text:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {})}}

    def make(self, text):
        return (text,)


class Sink:
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    written: dict[str, list[int]] = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {}), "path": ("STRING", {})},
                "optional": {"frames": ("STRING", {"default": ""})}}

    @classmethod
    def LL_OUTPUT_PATHS(cls, path, frames="", **_):
        from livelayers.engine.frames import parse_frames
        return [path.replace("#", str(f)) for f in parse_frames(frames) or [1]]

    def save(self, value, path, frames=""):
        CALLS.append(f"Sink({value})")
        files = self.LL_OUTPUT_PATHS(path, frames)
        return {"ui": {"written": files, "value": [value]}, "result": ()}


class Slow:
    RETURN_TYPES = ("INT",)
    FUNCTION = "work"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"min": 1})}}

    def work(self, steps):
        from livelayers.engine.progress import current
        p = current("Slow")
        for i in range(steps):
            p.update(i + 1, steps)
        return (steps,)


REGISTRY = {"Number": Number, "Add": Add, "Text": Text, "Sink": Sink, "Slow": Slow}


def graph():
    return {
        "1": {"class_type": "Number", "inputs": {"value": 2}},
        "2": {"class_type": "Number", "inputs": {"value": 3}},
        "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "Sink", "inputs": {"value": ["3", 0], "path": "out/x.#.exr"}},
        "9": {"class_type": "Number", "inputs": {"value": 7}},  # not needed by any output
    }


def test_runs_only_what_outputs_need_in_dependency_order():
    CALLS.clear()
    result = run_workflow(graph(), REGISTRY)
    assert CALLS == ["Number(2)", "Number(3)", "Add(2,3)", "Sink(5)"]
    assert "9" not in result.executed
    assert result.outputs["4"]["value"] == [5]
    assert result.written == ["out/x.1.exr"]


@pytest.mark.parametrize("mutate, fragments", [
    (lambda g: g["3"].update(class_type="Nope"), ["node 3", "'Nope'", "unknown node class"]),
    (lambda g: g["3"]["inputs"].pop("b"), ["node 3", "(Add)", "input 'b'", "missing"]),
    (lambda g: g["1"]["inputs"].update(value=11), ["node 1", "input 'value'", "maximum 10"]),
    (lambda g: g["1"]["inputs"].update(value="2"), ["node 1", "not an integer"]),
    (lambda g: g["3"]["inputs"].update(mode="triple"), ["input 'mode'", "not one of"]),
    (lambda g: g["3"]["inputs"].update(bogus=1), ["input 'bogus'", "is not an input of Add"]),
    (lambda g: g["3"]["inputs"].update(a=["8", 0]), ["links to node 8"]),
    (lambda g: g["3"]["inputs"].update(a=["1", 3]), ["output 3", "has 1 outputs"]),
    (lambda g: (g.update({"5": {"class_type": "Text", "inputs": {"text": "x"}}}),
                g["3"]["inputs"].update(a=["5", 0])), ["expects INT", "which is STRING"]),
    (lambda g: g["1"].update(class_type="Add", inputs={"a": ["3", 0], "b": ["2", 0]}),
     ["cycle"]),
])
def test_validation_errors_name_node_class_and_input(mutate, fragments):
    g = graph()
    mutate(g)
    CALLS.clear()
    with pytest.raises(WorkflowError) as err:
        run_workflow(g, REGISTRY)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert CALLS == []  # nothing ran before validation failed


def test_no_output_node_is_an_error():
    g = graph()
    del g["4"]
    with pytest.raises(WorkflowError, match="no output node"):
        validate_workflow(g, REGISTRY)


def test_overrides_change_inputs_and_reject_unknown_nodes():
    CALLS.clear()
    result = run_workflow(graph(), REGISTRY, overrides={"1.value": 10, "3.mode": "double"})
    assert result.outputs["4"]["value"] == [26]
    with pytest.raises(WorkflowError, match="node 42"):
        run_workflow(graph(), REGISTRY, overrides={"42.value": 1})
    assert executor.parse_override("3.steps=200") == ("3", "steps", 200)
    assert executor.parse_override("3.text=a red circle") == ("3", "text", "a red circle")


class Typed:
    RETURN_TYPES = ("INT",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {}), "n": ("INT", {"min": 0}),
                             "x": ("FLOAT", {}), "on": ("BOOLEAN", {}),
                             "mode": (["plain", "double"],), "size": ([64, 128],),
                             "value": ("INT", {})}}


@pytest.mark.parametrize("text, name, want", [
    ("5", "text", "5"), ("true", "text", "true"), ('["1", 0]', "text", '["1", 0]'),
    ("a red circle", "text", "a red circle"), ("200", "n", 200), (" -3 ", "n", -3),
    ("2", "x", 2.0), ("0.25", "x", 0.25), ("true", "on", True), ("No", "on", False),
    ("1", "on", True), ("double", "mode", "double"), ("128", "size", 128),
    ('["1", 0]', "value", ["1", 0]),
])
def test_set_text_is_read_by_the_inputs_declared_type(text, name, want):
    wf = {"3": {"class_type": "Typed", "inputs": {}}, "1": {"class_type": "Number", "inputs": {}}}
    reg = dict(REGISTRY, Typed=Typed)
    got = executor.parse_override(f"3.{name}={text}", wf, reg)[2]
    assert got == want and type(got) is type(want)
    from livelayers.graph import Graph  # the Python API reads text with the same function
    assert Graph(wf, registry=reg).parse_text(f"3.{name}", text) == want


@pytest.mark.parametrize("text, name, fragments", [
    ("five", "n", ["input 'n'", "not an integer", "allowed: "]),
    ("2.5", "n", ["input 'n'", "not an integer"]),
    ("nan", "x", ["input 'x'", "not a number", "allowed: a finite number"]),
    ("maybe", "on", ["input 'on'", "not true/false", "allowed: true, false"]),
    ("triple", "mode", ["input 'mode'", "not one of ['plain', 'double']"]),
    ("1", "bogus", ["input 'bogus'", "is not an input of Typed"]),
])
def test_set_text_that_the_type_cannot_take_is_one_line_naming_node_and_input(text, name,
                                                                              fragments):
    wf = {"3": {"class_type": "Typed", "inputs": {}}}
    with pytest.raises(WorkflowError) as err:
        executor.parse_override(f"3.{name}={text}", wf, dict(REGISTRY, Typed=Typed))
    message = str(err.value)
    assert message.startswith("node 3 (Typed) input ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_frames_set_every_frames_input_and_skip_complete_ones():
    done = {"out/x.2.exr"}
    result = run_workflow(graph(), REGISTRY, frames=[1, 2, 3], skip_complete=lambda p: p in done)
    assert result.skipped_frames == [2]
    assert result.written == ["out/x.1.exr", "out/x.3.exr"]
    nothing = run_workflow(graph(), REGISTRY, frames=[2], skip_complete=lambda p: p in done)
    assert nothing.executed == [] and nothing.skipped_frames == [2]


def test_progress_is_monotonic_and_stop_cancels():
    g = {"1": {"class_type": "Slow", "inputs": {"steps": 5}},
         "2": {"class_type": "Sink", "inputs": {"value": ["1", 0], "path": "p"}}}
    seen = []
    run_workflow(g, REGISTRY, progress=Progress(callback=lambda s, t, i: seen.append(s / t)))
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 5

    calls = {"n": 0}

    def stop_after_three():
        calls["n"] += 1
        return calls["n"] > 3

    CALLS.clear()
    with pytest.raises(Cancelled):
        run_workflow(g, REGISTRY, progress=Progress(should_stop=stop_after_three))
    assert not any(c.startswith("Sink") for c in CALLS)


def test_load_workflow_rejects_ui_format_and_bad_json(tmp_path):
    ui = tmp_path / "ui.json"
    ui.write_text('{"nodes": [], "links": []}')
    with pytest.raises(WorkflowError, match="API"):
        executor.load_workflow(ui)
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(WorkflowError, match="not valid JSON"):
        executor.load_workflow(bad)
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text('{"prompt": {"1": {"class_type": "Number", "inputs": {"value": 1}}}}')
    assert executor.load_workflow(wrapped)["1"]["class_type"] == "Number"


def test_every_shipped_example_graph_validates_against_the_real_nodes():
    import json
    from pathlib import Path
    from livelayers.nodes import NODE_CLASS_MAPPINGS
    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.json"))
    assert len(examples) >= 5
    for path in examples:
        order = validate_workflow(json.loads(path.read_text()), NODE_CLASS_MAPPINGS)
        assert order, path.name
