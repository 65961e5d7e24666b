"""What the panel reads from a graph, without Qt: fields (one per idea), the
plate, the live matte's recipe, and the EXR provenance LL_SaveEXR derives
from the graph that ran."""
from __future__ import annotations

import torch

from livelayers.engine.executor import run_workflow
from livelayers.engine.io import read_exr_header
from livelayers.nodes import NODE_CLASS_MAPPINGS
from livelayers.nodes.io_nodes import LL_SaveEXR, graph_provenance
from livelayers.ui.fields import editable_fields, primary_fields
from livelayers.ui.graph import exr_by_frame, frame_of, matte_spec, plate_spec


class LL_TestEdit:
    """A fake edit node: a constant blue layer over a grey plate, with a prompt."""
    CATEGORY, DESCRIPTION, FUNCTION = "LiveLayers/test", "test", "run"
    RETURN_TYPES, RETURN_NAMES = ("IMAGE", "MASK", "IMAGE"), ("edit", "alpha", "source")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"prompt": ("STRING", {"tooltip": "t"}),
                             "seed": ("INT", {"min": 0, "tooltip": "t"}),
                             "steps": ("INT", {"min": 1, "tooltip": "t"})}}

    def run(self, prompt, seed, steps):
        edit = torch.zeros(1, 8, 8, 3)
        edit[..., 2] = 1
        return edit, torch.ones(1, 8, 8) * 0.5, torch.full((1, 8, 8, 3), 0.5)


class LL_TestText:
    CATEGORY, DESCRIPTION, FUNCTION = "LiveLayers/test", "test", "run"
    RETURN_TYPES, RETURN_NAMES = ("STRING",), ("text",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"tooltip": "t"})}}

    def run(self, value):
        return (value,)


REGISTRY = {**NODE_CLASS_MAPPINGS, "LL_TestEdit": LL_TestEdit, "LL_TestText": LL_TestText}


def edit_graph(out, prompt="a blue hat"):
    return {"2": {"class_type": "LL_TestEdit", "inputs": {"prompt": prompt, "seed": 7, "steps": 3}},
            "3": {"class_type": "LL_SaveEXR",
                  "inputs": {"path": str(out / "e.####.exr"), "frames": "1",
                             "edit_image": ["2", 0], "edit_alpha": ["2", 1], "source": ["2", 2],
                             "edit_prompt": "a stale copy", "seed": 99}}}


def test_deprecated_copies_are_hidden_and_identical_texts_are_one_field(tmp_path):
    wf = edit_graph(tmp_path)
    wf["5"] = {"class_type": "LL_TestEdit", "inputs": {"prompt": "a blue hat", "seed": 0, "steps": 2}}
    fields = editable_fields(wf, REGISTRY)
    keys = [f.keys for f in fields]
    # LL_SaveEXR's edit_prompt/seed are not fields; the two identical prompts are one
    assert keys == [["2.prompt", "5.prompt"], ["2.seed"], ["2.steps"], ["5.seed"], ["5.steps"]]
    fields[0].write(wf, "a red hat")
    assert wf["2"]["inputs"]["prompt"] == wf["5"]["inputs"]["prompt"] == "a red hat"
    roles = primary_fields(fields)
    assert {r: f.key for r, f in roles.items()} == {"prompt": "2.prompt", "seed": "2.seed",
                                                    "steps": "2.steps"}
    assert "edit_prompt" in LL_SaveEXR.LL_DEPRECATED_INPUTS


def test_exr_provenance_comes_from_the_graph_that_ran(tmp_path):
    result = run_workflow(edit_graph(tmp_path), REGISTRY)
    header = read_exr_header(result.written[0])
    assert header["livelayers/prompt"] == "a blue hat"        # not the stale copy
    assert header["livelayers/seed"] == 7 and header["livelayers/steps"] == 3
    assert header["livelayers/edit_node"] == "2 LL_TestEdit"
    # a graph that names no prompt of its own keeps the old inputs' values (old graphs load)
    wf = edit_graph(tmp_path / "old")
    wf["2"]["inputs"]["prompt"] = ""
    header = read_exr_header(run_workflow(wf, REGISTRY).written[0])
    assert header["livelayers/prompt"] == "a stale copy" and header["livelayers/seed"] == 7


def test_provenance_follows_a_linked_prompt_and_names_the_models():
    wf = {"1": {"class_type": "LL_TestText", "inputs": {"value": "fire"}},
          "2": {"class_type": "LL_LoadCLIP", "inputs": {"model": "toy-clip"}},
          "3": {"class_type": "LL_Text2LIVE", "inputs": {"clip": ["2", 0], "prompt": ["1", 0],
                                                         "roi_text": "mouth", "seed": 4, "steps": 9}},
          "4": {"class_type": "LL_SaveEXR", "inputs": {"edit_image": ["3", 0]}}}
    meta = graph_provenance(wf, "4")
    assert meta == {"edit_node": "3 LL_Text2LIVE", "prompt": "fire", "roi_text": "mouth",
                    "seed": 4, "steps": 9, "models": ["toy-clip"]}


def test_plate_and_matte_recipe_come_from_the_graph():
    wf = {"1": {"class_type": "LL_LoadImage", "inputs": {"path": "", "image": "shot.png"}},
          "7": {"class_type": "LL_LoadImage", "inputs": {"path": "plate.####.exr", "frames": "1-4",
                                                          "colourspace": "ACEScg", "layer": ""}},
          "2": {"class_type": "LL_LoadCLIP", "inputs": {"model": "toy-clip", "device": "cpu"}},
          "3": {"class_type": "LL_Text2LIVE", "inputs": {"clip": ["2", 0], "image": ["7", 0],
                                                         "prompt": "p", "roi_text": "hat",
                                                         "relevancy_blocks": "last"}}}
    plate = plate_spec(wf)
    assert (plate.node_id, plate.path, plate.frames, plate.colourspace) == ("7", "plate.####.exr",
                                                                            "1-4", "ACEScg")
    spec = matte_spec(wf)
    assert (spec.node_id, spec.input_name, spec.model, spec.device, spec.blocks) == \
        ("3", "roi_text", "toy-clip", "cpu", "last")
    assert spec.plate == plate
    del wf["3"]
    assert plate_spec(wf).path == "shot.png" and matte_spec(wf) is None  # the uploaded file


def test_written_files_by_frame():
    assert frame_of("/a/edit.1001.exr") == 1001 and frame_of("/a/still.exr") is None
    assert exr_by_frame(["/o/e.0001.exr", "/o/e.0002.exr", "/o/log.txt"]) == \
        {1: "/o/e.0001.exr", 2: "/o/e.0002.exr"}
