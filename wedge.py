"""Wedges: one graph run over the product of input variations, one contact sheet.

    python -m livelayers wedge graph.json --vary 3.prompt="blue circle|green circle" \\
        --vary 3.seed=0-3 --out wedge/

    from livelayers.graph import Graph
    w = Graph.load("graph.json").wedge({"3.prompt": ["blue circle", "green circle"],
                                        "3.seed": "0-3"}, out="wedge")
    w.run()                      # 8 variants, then wedge/sheet.png + wedge/sheet.exr
    w.export("openjd", "job/")   # one OpenJD job, one task per variant (+ a sheet step)

Each variant is the graph with its values set, run by the runner's executor
into its own folder ``OUT/<name>/`` named from its values
(``prompt-blue_circle__seed-0``): the output nodes' ``path`` and every
``run_dir``/``atlas_path`` are moved into that folder (file names kept), so
variants never share checkpoints or files. A variant whose every output is a
complete EXR whose provenance (the ``livelayers/api_workflow`` header
LL_SaveEXR writes) is exactly the variant's graph is skipped: a killed wedge
resumes where it stopped, a changed graph or value reruns. Every variant is
built and checked with the runner's validation before anything runs, so a bad
``--vary`` is one error line, not a failure hours in.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .engine import executor
from .engine import progress as progress_mod
from .engine.atomic import atomic_path
from .engine.executor import WorkflowError
from .graph import Graph, _as_progress

MANIFEST = "variant.json"
SHEET_NAMES = ("sheet.png", "sheet.exr")
#: Inputs that name where a node writes (moved into the variant's folder).
WRITTEN_INPUTS = ("run_dir", "atlas_path")
_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")
NAME_VALUE_CHARS = 32


class WedgeError(WorkflowError):
    """A wedge that cannot be built or run as asked; one line saying what to change."""


# ---------------------------------------------------------------- variations

@dataclass
class Variation:
    """One varied input: ``target`` as given ("3.prompt" or "Edit.prompt"), the node
    id and input it resolves to, its values, and the key used in names/labels."""

    target: str
    node_id: str
    input: str
    values: list
    key: str = ""


@dataclass
class Variant:
    """One point of the product: ``number`` (1-based), ``values`` {target: value},
    the folder ``name`` and ``dir``, and the graph ``workflow`` that runs."""

    number: int
    values: dict[str, Any]
    name: str
    dir: Path
    workflow: dict = field(repr=False)

    def label(self, variations: list[Variation]) -> list[str]:
        """The tile label: one ``key: value`` line per variation."""
        return [f"{v.key}: {self.values[v.target]}" for v in variations]


def parse_vary(text: str) -> tuple[str, str]:
    """``'3.prompt=blue circle|green circle'`` → ``('3.prompt', 'blue circle|green circle')``."""
    target, sep, raw = str(text).partition("=")
    if not sep or "." not in target or not raw.strip():
        raise WedgeError(f"--vary {text!r} must look like NODE.input=VALUE|VALUE|... "
                         "(NODE = id or title; numbers may be a range such as 0-3)")
    return target.strip(), raw


def _expand(graph: Graph, target: str, raw: Any) -> list:
    """The values of one variation: a list as given, a JSON list, ``a|b|c``, and for
    integer inputs OpenJD ranges (``0-3``, ``1-9:2``, ``1,4``) as in ``--frames``."""
    from .engine.frames import parse_frames
    if isinstance(raw, (list, tuple)):
        return list(raw)
    if not isinstance(raw, str):
        return [raw]
    text = raw.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError:
            values = None
        if isinstance(values, list):
            return values
    values = []
    for item in raw.split("|"):
        try:
            value = graph.parse_text(target, item)
        except WorkflowError:  # not one integer: maybe a range, below
            if graph.input_type(target) != "INT":
                raise
            value = None
        if graph.input_type(target) == "INT" and not isinstance(value, int):
            try:
                values.extend(parse_frames(item.strip()))
                continue
            except ValueError:
                raise WedgeError(f"{item.strip()!r} is not an integer or a range; allowed: "
                                 "5, 0-3, 1-9:2, 0,4,7") from None
        values.append(value)
    return values


def _safe(value: Any) -> str:
    """A folder-name-safe rendering of a value (letters, digits, . + -, '_' for the rest)."""
    text = _UNSAFE.sub("_", str(value)).strip("._") or "empty"
    return text[:NAME_VALUE_CHARS].rstrip("._")


def _variant_names(variations: list[Variation], points: list[tuple]) -> list[str]:
    """Folder names from the values; names that collide after making them safe
    get a short hash of the exact values."""
    names = ["__".join(f"{v.key}-{_safe(x)}" for v, x in zip(variations, point))
             for point in points]
    for name in {n for n in names if names.count(n) > 1}:
        for i, point in enumerate(points):
            if names[i] == name:
                digest = hashlib.sha1(json.dumps(point, default=str).encode()).hexdigest()[:6]
                names[i] = f"{name}-{digest}"
    return names


def _canonical(workflow: dict) -> Any:
    """The workflow as LL_SaveEXR's provenance header stores it (JSON, sorted keys)."""
    return json.loads(json.dumps(workflow, sort_keys=True, default=str))


# ---------------------------------------------------------------- the wedge

@dataclass
class WedgeResult:
    ran: list[Variant] = field(default_factory=list)
    skipped: list[Variant] = field(default_factory=list)  # already complete (provenance match)
    written: list[Path] = field(default_factory=list)  # files the variants that ran wrote
    sheet: tuple[Path, Path] | None = None  # (png, exr)


class Wedge:
    """A graph and its variations; ``run`` executes them, ``export`` makes a farm job.

    ``vary``: ``{target: values}`` (values a list, or text as after ``--vary
    target=``) or a list of ``"target=text"`` strings. Every variant is built
    and validated here: errors come before any work.
    """

    def __init__(self, graph: Graph | dict | str | Path, vary: dict[str, Any] | list[str],
                 out: str | Path, *, registry: dict[str, type] | None = None):
        if isinstance(graph, (str, Path)):
            graph = Graph.load(graph, registry=registry)
        elif isinstance(graph, dict):
            graph = Graph(graph, registry=registry)
        self.graph = graph.copy()
        self.registry = self.graph.registry
        self.out = Path(out)
        self.variations = self._variations(vary)
        self.variants = self._variants()

    # -- building

    def _variations(self, vary) -> list[Variation]:
        items = [parse_vary(v) for v in vary] if isinstance(vary, (list, tuple)) else list(
            (vary or {}).items())
        if not items:
            raise WedgeError("a wedge needs at least one --vary NODE.input=VALUE|VALUE")
        out: list[Variation] = []
        for target, raw in items:
            try:
                node_id, name = self.graph.resolve(target)
            except WorkflowError as e:
                raise WedgeError(f"--vary {target}: {e}") from None
            if any((v.node_id, v.input) == (node_id, name) for v in out):
                raise WedgeError(f"--vary {target}: input {node_id}.{name} is varied twice")
            try:
                values = _expand(self.graph, target, raw)
            except WorkflowError as e:
                raise WedgeError(f"--vary {target}: {e}") from None
            if not values:
                raise WedgeError(f"--vary {target}: no values")
            repeated = [v for i, v in enumerate(values) if v in values[:i]]
            if repeated:
                raise WedgeError(f"--vary {target}: the value {repeated[0]!r} is given twice")
            out.append(Variation(target, node_id, name, values))
        inputs = [v.input for v in out]
        for v in out:  # the input name, or node_input when two nodes' inputs share it
            v.key = v.input if inputs.count(v.input) == 1 else f"{v.node_id}_{v.input}"
        return out

    def _variants(self) -> list[Variant]:
        points = list(itertools.product(*(v.values for v in self.variations)))
        names = _variant_names(self.variations, points)
        variants = []
        for number, (point, name) in enumerate(zip(points, names), start=1):
            g = self.graph.copy()
            values = {}
            for variation, value in zip(self.variations, point):
                try:
                    g.set(f"{variation.node_id}.{variation.input}", value)
                except WorkflowError as e:
                    raise WedgeError(f"--vary {variation.target}={value!r}: {e}") from None
                values[variation.target] = value
            folder = self.out / name
            workflow = redirect_outputs(g.workflow, self.registry, folder)
            try:
                executor.validate_workflow(workflow, self.registry)
            except WorkflowError as e:
                raise WedgeError(f"variant {name}: {e}") from None
            variants.append(Variant(number, values, name, folder, workflow))
        return variants

    def variant(self, ref: int | str) -> Variant:
        """A variant by number (1-based, as the farm's task parameter) or folder name."""
        for v in self.variants:
            if str(ref) in (str(v.number), v.name):
                return v
        raise WedgeError(f"--variant {ref!r}: allowed: 1-{len(self.variants)} or a name such as "
                         f"{self.variants[0].name!r}")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the sheet: columns = the last variation's values."""
        cols = len(self.variations[-1].values)
        return len(self.variants) // cols, cols

    # -- state

    def outputs(self, v: Variant) -> list[str]:
        """The files a variant writes: known in advance from the output nodes, else
        those its manifest recorded when it last completed."""
        paths = executor.expected_outputs(v.workflow, self.registry)
        if paths:
            return paths
        manifest = self._manifest(v)
        return list(manifest.get("written", [])) if manifest else []

    def _manifest(self, v: Variant) -> dict | None:
        try:
            data = json.loads((v.dir / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return data if data.get("workflow") == _canonical(v.workflow) else None

    def is_complete(self, v: Variant) -> bool:
        """Every output is there, complete, and (EXRs) was made by exactly this
        variant's graph: the provenance LL_SaveEXR stores in the header."""
        from .engine.provenance import is_current  # the runner's own retry check
        paths = self.outputs(v)
        return bool(paths) and all(is_current(p, v.workflow, self.registry) for p in paths)

    # -- running

    def run(self, *, progress=None, stop=None, only: list[int | str] | None = None,
            force: bool = False, sheet: bool | None = None,
            log: Callable[[str], None] | None = None) -> WedgeResult:
        """Run the variants (all, or ``only`` these numbers/names) one after another.

        Complete variants are skipped unless ``force``. ``progress``/``stop``
        as for ``Graph.run`` (info carries ``variant``); a stop raises
        ``Cancelled`` after the running variant's trainer checkpointed; the
        variants already finished stay finished. ``sheet`` (default: when all
        variants run) writes OUT/sheet.png and OUT/sheet.exr at the end.
        """
        todo = [self.variant(r) for r in only] if only else list(self.variants)
        outer = _as_progress(progress, stop)
        log = log or (lambda line: None)
        result = WedgeResult()
        for i, v in enumerate(todo):
            outer.check()
            head = f"variant {v.number}/{len(self.variants)} {v.name}"
            if not force and self.is_complete(v):
                log(f"{head}: already complete, skipped")
                result.skipped.append(v)
                continue
            log(f"{head}: running")
            started = time.time()
            run = executor.run_workflow(v.workflow, self.registry,
                                        progress=_variant_progress(outer, i, len(todo), v.name))
            self._write_manifest(v, run.written)
            result.ran.append(v)
            result.written.extend(Path(p) for p in run.written)
            log(f"{head}: done in {time.time() - started:.1f} s")
        if sheet if sheet is not None else not only:
            result.sheet = self.write_sheet(log=log)
        return result

    def _write_manifest(self, v: Variant, written: list[str]) -> None:
        data = {"number": v.number, "name": v.name, "values": v.values,
                "written": [str(p) for p in written], "workflow": _canonical(v.workflow)}
        with atomic_path(v.dir / MANIFEST) as tmp:
            tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")

    # -- the contact sheet

    def write_sheet(self, log: Callable[[str], None] | None = None) -> tuple[Path, Path]:
        """OUT/sheet.png and OUT/sheet.exr from each variant's first output EXR.

        The EXR holds every channel of the results, tile for tile bit-exact,
        plus ``label.Y``; its ``livelayers/wedge_tiles`` header lists each
        tile's box, values and source file. A variant not complete yet gets an
        empty tile labelled "(missing)".
        """
        from .engine import contact_sheet as cs
        images, missing = [], []
        for v in self.variants:
            exrs = [p for p in self.outputs(v) if Path(p).suffix.lower() == ".exr"]
            images.append(_read_all_channels(sorted(exrs)[0])
                          if exrs and self.is_complete(v) else None)
            if images[-1] is None:
                missing.append(v.name)
        found = [im for im in images if im is not None]
        if not found:
            raise WedgeError(f"no variant of {self.out} is complete yet; nothing to put on a sheet")
        names, formats, space = found[0][1], found[0][2], found[0][3]
        if any(im[1] != names for im in found):
            raise WedgeError("the variants' EXRs have different channels; one sheet needs one set")
        blank = np.zeros_like(found[0][0])
        tiles = [cs.Tile(im[0] if im is not None else blank,
                         v.label(self.variations) + ([] if im is not None else ["(missing)"]))
                 for v, im in zip(self.variants, images)]
        sheet, labels, boxes = cs.build_sheet(tiles, self.shape[1])
        meta = {"wedge_tiles": [{"number": v.number, "name": v.name, "values": v.values,
                                 "box": list(b), "source": str(sorted(
                                     p for p in self.outputs(v) if p.endswith(".exr"))[0])
                                 if v.name not in missing else None}
                                for v, b in zip(self.variants, boxes)],
                "wedge_vary": {v.target: v.values for v in self.variations},
                "colourspace": space}
        exr = cs.write_sheet_exr(self.out / SHEET_NAMES[1], sheet, names, formats, labels, meta)
        png = cs.write_sheet_png(self.out / SHEET_NAMES[0], display_rgb(sheet, names, space),
                                 labels)
        if missing and log:
            log(f"sheet: {len(missing)} variant(s) not complete yet: {', '.join(missing)}")
        return png, exr

    # -- farm export

    def export(self, fmt: str, job_dir: str | Path, *, python: str = "python",
               offline: bool = False, name: str = "") -> Path:
        """One farm job for the whole wedge: a task per variant, then the sheet.

        ``fmt``: "openjd" (job bundle: template.yaml + graph.json; task
        parameter ``Variant`` = the variant's name) or "opencue" (job.xml +
        graph.json; the layer's frame number = the variant's number).
        ``OUT`` is written as an absolute path: put it on storage the workers see.
        """
        from .engine import farm
        job_dir = Path(job_dir)
        name = name or f"livelayers-wedge-{self.out.resolve().name}"
        if fmt == "openjd":
            return export_openjd(self, job_dir, python=python, offline=offline, name=name)
        if fmt == "opencue":
            return export_opencue(self, job_dir, python=python, offline=offline, name=name)
        raise WedgeError(f"--export {fmt!r}; allowed: {', '.join(farm.FORMATS)}")

    def cli_args(self, graph_ref: str, out_ref: str, *, offline: bool = False) -> list[str]:
        """``-m livelayers wedge GRAPH --vary ... --out OUT`` reproducing this wedge
        (values as JSON lists, so any text survives)."""
        args = ["-m", "livelayers", "wedge", graph_ref]
        for v in self.variations:
            args += ["--vary", f"{v.node_id}.{v.input}={json.dumps(v.values)}"]
        args += ["--out", out_ref]
        return args + (["--offline"] if offline else [])


def redirect_outputs(workflow: dict, registry: dict[str, type], folder: Path) -> dict:
    """A copy of ``workflow`` writing into ``folder``: output nodes' ``path`` keep
    their file name, ``run_dir`` becomes ``folder/run_<id>``, ``atlas_path``
    ``folder/<id>_<name>``. Empty inputs ("" = not saved) stay empty."""
    wf = json.loads(json.dumps(workflow))
    taken: set[str] = set()
    for node_id, node in sorted(wf.items(), key=lambda kv: executor._sort_key(kv[0])):
        cls = registry.get(node.get("class_type"))
        inputs = node.get("inputs") or {}
        for name, value in list(inputs.items()):
            if not isinstance(value, str) or not value.strip():
                continue
            if name == "path" and getattr(cls, "OUTPUT_NODE", False):
                file = Path(value).name
                file = file if file not in taken else f"{node_id}_{file}"
                taken.add(file)
                inputs[name] = str(folder / file)
            elif name == "run_dir":
                inputs[name] = str(folder / f"run_{node_id}")
            elif name == "atlas_path":
                inputs[name] = str(folder / f"{node_id}_{Path(value).name}")
    return wf


def _variant_progress(outer: progress_mod.Progress, index: int, count: int,
                      name: str) -> progress_mod.Progress:
    """Map one variant's run (0..1000) onto the whole wedge's fraction."""
    def callback(step: int, total: int, info: dict) -> None:
        if outer.callback is not None:
            fraction = (index + (step / total if total else 0.0)) / count
            outer.callback(int(fraction * 1000), 1000, dict(info, variant=name))

    return progress_mod.Progress(callback=callback, should_stop=outer.should_stop,
                                 preview_every=outer.preview_every, label=name)


def _read_all_channels(path: str) -> tuple[np.ndarray, list[str], list[str], str]:
    """(pixels (H, W, C) float32, channel names, "half"/"float" per channel, colour space)."""
    import OpenImageIO as oiio

    from .engine.io import read_exr_header
    header = read_exr_header(path)
    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        raise WedgeError(f"cannot read {path}: {oiio.geterror()}")
    try:
        spec = inp.spec()
        pixels = inp.read_image(0, 0, 0, spec.nchannels, oiio.FLOAT)
    finally:
        inp.close()
    pixels = np.asarray(pixels, np.float32).reshape(spec.height, spec.width, spec.nchannels)
    names = list(header["channels"])
    formats = [header["channelformats"][n] for n in names]
    return pixels, names, formats, str(header.get("livelayers/colourspace", "lin_rec709"))


def display_rgb(sheet: np.ndarray, names: list[str], space: str) -> np.ndarray:
    """The sheet's picture for the PNG: the ``composite`` layer if there is one,
    else the unprefixed R,G,B (the edit, premultiplied: over black), converted
    from the EXR's scene-linear space to sRGB."""
    from .engine.io.colour import NETWORK_SPACE, convert_array
    for prefix in ("composite.", ""):
        wanted = [prefix + c for c in "RGB"]
        if all(w in names for w in wanted):
            rgb = sheet[..., [names.index(w) for w in wanted]]
            return convert_array(np.ascontiguousarray(rgb), space, NETWORK_SPACE)
    return np.zeros(sheet.shape[:2] + (3,), np.float32)


# ---------------------------------------------------------------- farm jobs

def _check_template_text(wedge: Wedge) -> None:
    for v in wedge.variations:
        if "{{" in json.dumps(v.values):
            raise WedgeError(f"--vary {v.target}: a value holds '{{{{', which job templates "
                             "read as a format string; allowed: text without '{{'")


def export_openjd(wedge: Wedge, job_dir: Path, *, python: str, offline: bool, name: str) -> Path:
    """Job bundle: template.yaml (steps ``variants``, one task per variant, and
    ``sheet``, after them) + graph.json, validated with openjd.model first."""
    from .engine import farm
    _check_template_text(wedge)
    ui = {"groupLabel": "LiveLayers wedge"}
    params = [
        {"name": "WorkflowFile", "type": "PATH", "objectType": "FILE", "dataFlow": "IN",
         "default": "graph.json", "description": "API-format workflow every variant runs.",
         "userInterface": {"control": "CHOOSE_INPUT_FILE", "label": "Workflow", **ui}},
        # STRING, not PATH: OpenJD PATH defaults must be relative to the bundle, and the
        # wedge folder is shared storage every worker sees (as the graph's own paths are).
        {"name": "WedgeDir", "type": "STRING", "minLength": 1, "default": str(wedge.out.resolve()),
         "description": "Absolute folder, seen by every worker, of the variants' folders "
                        "and the contact sheet.",
         "userInterface": {"label": "Wedge folder", **ui}},
        {"name": "Python", "type": "STRING", "minLength": 1, "default": python,
         "description": "Python executable with livelayers installed, on the worker.",
         "userInterface": {"label": "Python", **ui}},
    ]
    base = wedge.cli_args("{{Param.WorkflowFile}}", "{{Param.WedgeDir}}", offline=offline)
    variants = {
        "name": "variants",
        "description": f"One task per variant ({len(wedge.variants)}): "
                       + " x ".join(f"{v.key} ({len(v.values)})" for v in wedge.variations),
        "parameterSpace": {"taskParameterDefinitions": [
            {"name": "Variant", "type": "STRING", "range": [v.name for v in wedge.variants]}]},
        "script": {"actions": {"onRun": {"command": "{{Param.Python}}", "args": base + [
            "--variant", "{{Task.Param.Variant}}", "--progress", "openjd"]}}},
    }
    sheet = {
        "name": "sheet", "description": "The contact sheet of all variants.",
        "dependencies": [{"dependsOn": "variants"}],
        "script": {"actions": {"onRun": {"command": "{{Param.Python}}",
                                         "args": base + ["--sheet-only", "--progress", "openjd"]}}},
    }
    template = {"specificationVersion": "jobtemplate-2023-09", "name": name,
                "description": f"LiveLayers wedge of {len(wedge.variants)} variants",
                "parameterDefinitions": params, "steps": [variants, sheet]}
    farm.validate_openjd(template, job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    wedge.graph.save(job_dir / "graph.json")
    path = job_dir / "template.yaml"
    farm.write_job_file(template, path)
    return path


def export_opencue(wedge: Wedge, job_dir: Path, *, python: str, offline: bool, name: str) -> Path:
    """job.xml (pyoutline, serialised offline): layer ``variants`` over frames
    1-N (frame = variant number, one per task), layer ``sheet`` after it."""
    import getpass
    import shutil
    import tempfile

    from .engine import farm
    job_dir.mkdir(parents=True, exist_ok=True)
    graph_path = wedge.graph.save(job_dir / "graph.json").resolve()
    base = [python] + wedge.cli_args(str(graph_path), str(wedge.out.resolve()), offline=offline)
    frames = f"1-{len(wedge.variants)}"
    session = Path(tempfile.mkdtemp(prefix="ll_outline_"))
    try:
        with farm.offline_outline_config(session) as outline:
            import outline.cuerun
            from outline.modules.shell import Shell, ShellCommand
            ol = outline.Outline(name, frame_range=frames, shot="livelayers", show="testing",
                                 user=getpass.getuser(), facility="local")
            variants = Shell("variants", command=farm.shell_join(
                base + ["--variant", "#IFRAME#", "--progress", "log"]), range=frames, chunk=1,
                service="shell")
            sheet = ShellCommand("sheet", command=farm.shell_join(
                base + ["--sheet-only", "--progress", "log"]), service="shell")
            ol.add_layer(variants)
            ol.add_layer(sheet)
            sheet.depend_all(variants)
            xml = outline.cuerun.OutlineLauncher(ol, range=frames).serialize(use_pycuerun=False)
    finally:
        shutil.rmtree(session, ignore_errors=True)
    path = job_dir / "job.xml"
    with atomic_path(path) as tmp:
        tmp.write_text(xml)
    return path


# ---------------------------------------------------------------- CLI

def register_cli(subparsers, registry=None) -> None:
    """Add ``wedge`` to the runner's sub-commands."""
    p = subparsers.add_parser(
        "wedge", help="run a workflow over the product of input variations, with a contact sheet",
        description="Run every combination of the --vary values, each into its own folder "
                    "under --out (complete ones are skipped), then write OUT/sheet.png and "
                    "OUT/sheet.exr. With --export, write a farm job instead of running.")
    p.add_argument("graph", help="API-format workflow JSON")
    p.add_argument("--vary", action="append", required=True, metavar="NODE.input=V1|V2|...",
                   help="values of one input (NODE = id or title); integers may be ranges "
                        "such as 0-3; a JSON list also works; repeatable")
    p.add_argument("--out", required=True, help="wedge folder (variant folders + sheet)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.input=value",
                   help="set an input for every variant; repeatable")
    p.add_argument("--variant", action="append", metavar="N|NAME",
                   help="run only this variant (number 1..N or folder name); repeatable")
    p.add_argument("--sheet-only", action="store_true", help="only write the contact sheet")
    p.add_argument("--no-sheet", action="store_true", help="do not write the contact sheet")
    p.add_argument("--force", action="store_true", help="rerun variants that are complete")
    p.add_argument("--list", action="store_true", help="print the variants and their state")
    p.add_argument("--offline", action="store_true", help="never download models")
    p.add_argument("--progress", choices=["auto", "bar", "log", "openjd", "none"], default="auto")
    p.add_argument("--export", choices=("openjd", "opencue"), default=None,
                   help="write the wedge as one farm job into --job instead of running it")
    p.add_argument("--job", default=None, help="folder for the exported job")
    p.add_argument("--python", default="python", help="Python executable on the workers")
    p.set_defaults(func=lambda args: cmd_wedge(args, registry))


def _say(line: str) -> None:
    print(f"livelayers wedge: {line}", file=sys.stderr, flush=True)


def cmd_wedge(args: argparse.Namespace, registry=None) -> int:
    import os

    from .__main__ import EXIT_STOPPED, _install_signal_handlers, _terminal_progress
    from .engine.errors import Cancelled, LiveLayersError
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["LIVELAYERS_OFFLINE"] = "1"
    try:
        reg = registry() if callable(registry) else registry
        graph = Graph.load(args.graph, registry=reg)
        for item in args.set:
            target, sep, text = item.partition("=")
            if not sep:
                raise WedgeError(f"--set {item!r} must look like NODE.input=value")
            graph.set_text(target, text)
        wedge = Wedge(graph, args.vary, args.out)
        only = [wedge.variant(r).number for r in args.variant or []]
        if args.export and not args.job:
            raise WedgeError("--export needs --job FOLDER for the job files")
    except WorkflowError as e:
        _say(str(e))
        return 2
    if args.export:
        try:
            path = wedge.export(args.export, args.job, python=args.python, offline=args.offline)
        except (WorkflowError, ValueError) as e:
            _say(str(e))
            return 2
        print(path)
        _say(f"wrote {path} ({len(wedge.variants)} variants)")
        return 0
    if args.list:
        for v in wedge.variants:
            print(f"{v.number}\t{v.name}\t{'complete' if wedge.is_complete(v) else 'to run'}")
        return 0
    _install_signal_handlers()
    progress, close = _terminal_progress(args.progress)
    try:
        if args.sheet_only:
            sheet = wedge.write_sheet(log=_say)
        else:
            result = wedge.run(progress=progress, only=only or None, force=args.force,
                               sheet=False if args.no_sheet or only else None, log=_say)
            sheet = result.sheet
            _say(f"{len(result.ran)} variant(s) run, {len(result.skipped)} already complete")
    except KeyboardInterrupt:
        close()
        _say("aborted")
        return EXIT_STOPPED
    except Cancelled as e:
        close()
        _say(f"stopped ({e}); finished variants are kept, rerun to continue")
        return EXIT_STOPPED
    except WorkflowError as e:
        close()
        _say(str(e))
        return 2 if e.__cause__ is None else 1
    except LiveLayersError as e:
        close()
        _say(str(e))
        return 1
    close()
    for path in sheet or ():
        print(path)
    return 0
