"""Export a LiveLayers workflow as a render-farm job.

Two formats, each produced with the farm's own library so that what we write
is what the farm accepts:

* Open Job Description (``jobtemplate-2023-09`` + ``TASK_CHUNKING``), built as
  a plain dict and validated with ``openjd.model`` (decode + create_job with
  the chosen parameter values) before it is written. Runs on AWS Deadline
  Cloud; ``openjd check`` / ``openjd run`` test it locally.
* OpenCue, built as a pyoutline ``Outline`` and serialised to the Cue job
  spec XML by pyoutline's ``cue`` backend without contacting a Cuebot.

Both jobs have an optional ``train`` step that runs the training graph once
and a ``render`` step, chunked over the frame range, that depends on it and
runs ``python -m livelayers run <graph> --frames <chunk>`` per chunk.

Nothing here imports ui/ or nodes/: a caller that wants the graph checked
against the node registry passes the registry in.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .atomic import atomic_path
from .frames import format_frames, parse_frames
from .paths import project_root

OPENJD_EXTENSIONS = ["TASK_CHUNKING"]
RANGE_CONSTRAINTS = ("CONTIGUOUS", "NONCONTIGUOUS")
FORMATS = ("openjd", "opencue")

# OpenJD identifiers: letters, digits, underscore, not starting with a digit.
_IDENT_BAD = re.compile(r"[^A-Za-z0-9_]")


class FarmExportError(ValueError):
    """A job cannot be exported as asked; the message says what to change."""


# ---------------------------------------------------------------- the job


@dataclass
class FarmJob:
    """Everything both exporters need, checked once.

    ``overrides`` maps ``"node_id.input"`` to a value; each is applied (as a
    ``--set`` argument) to whichever of the two graphs has that node id.
    """

    graph: Path
    frames: str
    chunk: int = 10
    train_graph: Path | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    python: str = "python"
    name: str = ""
    offline: bool = False
    frame_list: list[int] = field(default_factory=list)
    workflows: dict[str, dict] = field(default_factory=dict)  # "render"/"train" -> workflow
    # Farm tasks run in the farm's session folder, not where the job was
    # exported: the graphs' relative paths resolve against this folder
    # (``run --root``). Default: the exporting working directory.
    root: str = ""

    def set_args(self, step: str) -> list[tuple[str, str]]:
        """The ``(key, value)`` overrides that apply to ``step``'s graph."""
        wf = self.workflows.get(step, {})
        return [(k, v) for k, v in self.overrides.items() if k.split(".", 1)[0] in wf]


def load_api_workflow(path: Path) -> dict:
    """Read an API-format workflow with the runner's own loader; a clear error if it is not one."""
    from .executor import WorkflowError, load_workflow
    try:
        data = load_workflow(path)
    except WorkflowError as e:
        raise FarmExportError(str(e)) from None
    if not data or not all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        raise FarmExportError(
            f"workflow file {str(path)!r} is not an API-format workflow; allowed: "
            '{"<id>": {"class_type": ..., "inputs": {...}}} (ComfyUI: "Export (API)")')
    return data


def check_frames(frames: str) -> list[int]:
    """Frame numbers of an OpenJD range expression; a clear error if it is not one."""
    try:
        frame_list = parse_frames(frames)
    except ValueError as e:
        raise FarmExportError(f"--frames: {e}") from None
    if not frame_list:
        raise FarmExportError("--frames: a farm job needs a frame range, e.g. '1001-1100'")
    return frame_list


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["3.prompt=a red hat", ...]`` → ``{"3.prompt": "a red hat"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        node, dot, name = key.partition(".")
        if not sep or not dot or not node or not name:
            raise FarmExportError(f"--set {item!r}: allowed form is NODE_ID.INPUT=VALUE, "
                                  "e.g. --set 3.prompt='a red hat'")
        out[key] = value
    return out


def make_job(graph: str | Path, frames: str, chunk: int = 10, *,
             train_graph: str | Path | None = None, overrides: dict[str, str] | None = None,
             python: str = "python", name: str = "", offline: bool = False,
             registry: dict[str, type] | None = None, root: str | Path | None = None) -> FarmJob:
    """Check the inputs of an export and gather them in a ``FarmJob``.

    With ``registry`` the graphs are also validated by the runner's own
    ``validate_workflow`` (so a job is never sent with a graph that fails on
    the first frame).
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise FarmExportError(f"--chunk is {chunk!r}; allowed: an integer >= 1")
    job = FarmJob(graph=Path(graph), frames=frames.strip(), chunk=chunk,
                  train_graph=Path(train_graph) if train_graph else None,
                  overrides=dict(overrides or {}), python=python, offline=offline,
                  root=str(Path(root if root is not None else os.getcwd()).resolve()))
    job.frame_list = check_frames(frames)
    job.workflows["render"] = load_api_workflow(job.graph)
    if job.train_graph is not None:
        job.workflows["train"] = load_api_workflow(job.train_graph)
    _check_overrides(job)
    if registry is not None:
        with project_root(job.root):  # the graphs' files as the workers will see them
            _validate_with_registry(job, registry)
            _check_render_trains_nothing(job, registry)
            _check_render_frames_on_disk(job, registry)
    job.name = name or f"livelayers-{job.graph.stem}"
    return job


def _check_overrides(job: FarmJob) -> None:
    """Every ``--set`` must name a node of one of the graphs (inputs are the runner's check:
    an optional input may be absent from the graph and still be set)."""
    for key in job.overrides:
        node = key.partition(".")[0]
        if not any(node in wf for wf in job.workflows.values()):
            raise FarmExportError(f"--set {key}: no node {node!r} in "
                                  + " or ".join(repr(str(p)) for p in _graph_paths(job)))


def _graph_paths(job: FarmJob) -> list[Path]:
    return [job.graph] + ([job.train_graph] if job.train_graph else [])


def _validate_with_registry(job: FarmJob, registry: dict[str, type]) -> None:
    """Run the runner's own checks on each graph, with the overrides applied as it will."""
    from .executor import WorkflowError, apply_overrides, parse_override, validate_workflow
    for step, wf in job.workflows.items():
        sets = {}
        path = job.graph if step == "render" else job.train_graph
        try:
            for key, value in job.set_args(step):  # as the runner will read them: by type
                node, name, parsed = parse_override(f"{key}={value}", wf, registry)
                sets[f"{node}.{name}"] = parsed
            validate_workflow(apply_overrides(wf, sets), registry)
        except WorkflowError as e:
            raise FarmExportError(f"{path}: {e}") from None


def _render_graph(job: FarmJob, registry: dict[str, type]) -> tuple[dict, list[str]]:
    """The render graph as one chunk-less run of the whole range sees it, and the ids it runs."""
    from .executor import (apply_overrides, parse_override, set_frames,
                           validate_workflow)
    wf = job.workflows["render"]
    sets = {}
    for key, value in job.set_args("render"):
        node, name, parsed = parse_override(f"{key}={value}", wf, registry)
        sets[f"{node}.{name}"] = parsed
    wf = set_frames(apply_overrides(wf, sets), registry, job.frame_list)
    return wf, validate_workflow(wf, registry)


def _check_render_trains_nothing(job: FarmJob, registry: dict[str, type]) -> None:
    """A trainer (``LL_TRAINS``) in the render step would train again in every chunk, all
    into the same run folder and output files: refused when the job has several chunks.
    The training belongs in the train graph; the render graph loads what it wrote."""
    if len(job.frame_list) <= job.chunk:
        return  # one task: it trains once
    wf, order = _render_graph(job, registry)
    for nid in order:
        class_type = wf[nid]["class_type"]
        if not getattr(registry[class_type], "LL_TRAINS", False):
            continue
        fix = ("move the training into the --train-graph and load its result in the render "
               "graph (LL_LoadAtlas, LL_LoadGenerator, LL_LoadImage of the run_dir file)"
               if job.train_graph else
               "export the train/render pair: the render graph that loads the trained result "
               "plus --train-graph with the graph that trains (e.g. examples/atlas_render.json "
               "--train-graph examples/atlas.json; see docs/farm.md)")
        raise FarmExportError(
            f"{job.graph}: node {nid} ({class_type}) trains, so each of the "
            f"{-(-len(job.frame_list) // job.chunk)} render chunks would train again; {fix}")


def _check_render_frames_on_disk(job: FarmJob, registry: dict[str, type]) -> None:
    """A range beyond the frames of a plate sequence is refused now, not on the farm.

    Uses the nodes' own disk checks (``LL_VALIDATE_FILES``) on the whole range, but only a
    sequence that is partly on disk counts: files that are absent altogether may be
    what the train step writes.
    """
    from .errors import InputError
    from .executor import WorkflowError, is_link
    from .io import MissingFramesError
    wf, order = _render_graph(job, registry)
    for nid in order:
        node = wf[nid]
        check = getattr(registry[node["class_type"]], "LL_VALIDATE_FILES", None)
        if check is None:
            continue
        literals = {k: v for k, v in (node.get("inputs") or {}).items() if not is_link(v)}
        try:
            check(literals)
        except InputError as e:
            cause = e.__cause__
            partly = (isinstance(cause, MissingFramesError)
                      and 0 < len(cause.missing) < len(job.frame_list))
            if e.input_name == "frames" and partly:
                problem = f"--frames {job.frames}: {e.problem}"
                raise FarmExportError(f"{job.graph}: " + str(WorkflowError(
                    f"{problem}; allowed: {e.allowed}" if e.allowed else problem,
                    nid, node["class_type"], e.input_name))) from None


def _runner_args(job: FarmJob, graph_ref: str, frames_ref: str | None,
                 progress: str, root_ref: str | None = None) -> list[str]:
    """Arguments after the Python executable for one step's command.

    ``progress``: the runner's ``--progress`` mode (``openjd`` prints the
    ``openjd_progress: N`` lines OpenJD/Deadline Cloud read from the log).
    """
    args = ["-m", "livelayers", "run", graph_ref, "--progress", progress]
    if root_ref:
        args += ["--root", root_ref]
    if frames_ref is not None:
        args += ["--frames", frames_ref]
    if job.offline:
        args.append("--offline")
    return args


# ---------------------------------------------------------------- OpenJD


def _ident(text: str) -> str:
    """An OpenJD identifier made from ``text`` ("3.prompt" → "Set_3_prompt")."""
    return ("Set_" + _IDENT_BAD.sub("_", text))[:64]


def _override_params(job: FarmJob) -> dict[str, str]:
    """``"node.input"`` → job-parameter name (unique), one per override."""
    names: dict[str, str] = {}
    for key in job.overrides:
        base = name = _ident(key)
        n = 2
        while name in names.values():
            name = f"{base[:60]}_{n}"
            n += 1
        names[key] = name
    return names


def openjd_template(job: FarmJob, *, graph_ref: str, train_ref: str | None,
                    range_constraint: str = "CONTIGUOUS",
                    target_runtime_s: int | None = None) -> dict[str, Any]:
    """The job template as a dict (``jobtemplate-2023-09`` + ``TASK_CHUNKING``).

    ``graph_ref``/``train_ref`` are the PATH parameters' defaults (relative
    paths resolve against the template's folder, as in a Deadline Cloud job
    bundle). Each ``--set`` override becomes its own STRING job parameter, so
    a submitter can edit a prompt without editing the graph.
    """
    if range_constraint not in RANGE_CONSTRAINTS:
        raise FarmExportError(f"range constraint {range_constraint!r}; allowed: "
                              + ", ".join(RANGE_CONSTRAINTS))
    override_names = _override_params(job)
    render = _openjd_render_step(job, override_names, range_constraint, target_runtime_s)
    steps = [render]
    if train_ref is not None:
        render["dependencies"] = [{"dependsOn": "train"}]
        steps = [_openjd_train_step(job, override_names), render]
    return {
        "specificationVersion": "jobtemplate-2023-09",
        "extensions": list(OPENJD_EXTENSIONS),
        "name": job.name,
        "description": f"LiveLayers workflow {job.graph.name}"
                       + (f" trained by {job.train_graph.name}" if job.train_graph else ""),
        "parameterDefinitions": _openjd_parameters(job, graph_ref, train_ref, override_names),
        "steps": steps,
    }


def _openjd_parameters(job: FarmJob, graph_ref: str, train_ref: str | None,
                       override_names: dict[str, str]) -> list[dict[str, Any]]:
    """The job parameters a submitter sees: the graphs, frames, chunk size,
    Python, the project root, then one STRING per ``--set`` override."""
    ui_group = {"groupLabel": "LiveLayers"}
    params: list[dict[str, Any]] = [
        {"name": "WorkflowFile", "type": "PATH", "objectType": "FILE", "dataFlow": "IN",
         "default": graph_ref, "description": "API-format workflow the render step runs per chunk.",
         "userInterface": {"control": "CHOOSE_INPUT_FILE", "label": "Render workflow", **ui_group}},
    ]
    if train_ref is not None:
        params.append(
            {"name": "TrainWorkflowFile", "type": "PATH", "objectType": "FILE", "dataFlow": "IN",
             "default": train_ref, "description": "API-format workflow the train step runs once.",
             "userInterface": {"control": "CHOOSE_INPUT_FILE", "label": "Train workflow",
                               **ui_group}})
    params += [
        {"name": "Frames", "type": "STRING", "minLength": 1, "default": job.frames,
         "description": "Frames to render: an OpenJD range expression such as 1001-1100 or 1-9:2.",
         "userInterface": {"label": "Frames", **ui_group}},
        {"name": "ChunkSize", "type": "INT", "minValue": 1, "default": job.chunk,
         "description": "Frames per render task (the model loads once per chunk).",
         "userInterface": {"label": "Chunk size", **ui_group}},
        {"name": "Python", "type": "STRING", "minLength": 1, "default": job.python,
         "description": "Python executable with livelayers installed, on the worker.",
         "userInterface": {"label": "Python", **ui_group}},
        # STRING, not PATH: OpenJD allows PATH defaults only inside the bundle folder.
        {"name": "Root", "type": "STRING", "minLength": 1, "default": job.root,
         "description": "Folder the graphs' relative paths (plates, atlas, run folders, "
         "outputs) resolve against on the worker: storage every worker sees.",
         "userInterface": {"label": "Project root", **ui_group}},
    ]
    for key, pname in override_names.items():
        params.append({"name": pname, "type": "STRING", "default": str(job.overrides[key]),
                       "description": f"Value of input {key} (passed as --set {key}=...).",
                       "userInterface": {"label": key, "groupLabel": "Overrides"}})
    return params


def _openjd_set_args(job: FarmJob, step: str, override_names: dict[str, str]) -> list[str]:
    """``--set key={{Param.Set_…}}`` for the overrides that apply to ``step``'s graph."""
    out: list[str] = []
    for key, _ in job.set_args(step):
        out += ["--set", f"{key}={{{{Param.{override_names[key]}}}}}"]
    return out


def _openjd_render_step(job: FarmJob, override_names: dict[str, str], range_constraint: str,
                        target_runtime_s: int | None) -> dict[str, Any]:
    """The chunked render step: one task per chunk of ``{{Param.Frames}}``."""
    chunks: dict[str, Any] = {"defaultTaskCount": "{{Param.ChunkSize}}",
                              "rangeConstraint": range_constraint}
    if target_runtime_s is not None:
        chunks["targetRuntimeSeconds"] = int(target_runtime_s)
    return {
        "name": "render",
        "description": "Render the workflow over the frame range, one chunk per task.",
        "parameterSpace": {"taskParameterDefinitions": [
            {"name": "Frame", "type": "CHUNK[INT]", "range": "{{Param.Frames}}", "chunks": chunks}]},
        "script": {"actions": {"onRun": {
            "command": "{{Param.Python}}",
            "args": _runner_args(job, "{{Param.WorkflowFile}}", "{{Task.Param.Frame}}", "openjd",
                                 "{{Param.Root}}")
            + _openjd_set_args(job, "render", override_names)}}},
    }


def _openjd_train_step(job: FarmJob, override_names: dict[str, str]) -> dict[str, Any]:
    """The train step, run once before any render task."""
    return {
        "name": "train",
        "description": "Train once (the render step reads what this writes).",
        "script": {"actions": {"onRun": {
            "command": "{{Param.Python}}",
            "args": _runner_args(job, "{{Param.TrainWorkflowFile}}", None, "openjd", "{{Param.Root}}")
            + _openjd_set_args(job, "train", override_names)}}},
    }


def validate_openjd(template: dict, template_dir: Path,
                    values: dict[str, str] | None = None):
    """Decode ``template`` and instantiate a job from it with openjd.model.

    Returns the ``openjd.model.Job``; raises ``FarmExportError`` with
    openjd's own message when either stage rejects it.
    """
    from openjd.model import (DecodeValidationError, create_job, decode_job_template,
                              preprocess_job_parameters)
    template_dir = Path(template_dir).absolute()  # openjd wants it absolute (`--out job/` is relative)
    try:
        decoded = decode_job_template(template=template, supported_extensions=OPENJD_EXTENSIONS)
        param_values = preprocess_job_parameters(
            job_template=decoded, job_parameter_values=dict(values or {}),
            job_template_dir=template_dir, current_working_dir=template_dir)
        return create_job(job_template=decoded, job_parameter_values=param_values)
    except (DecodeValidationError, ValueError) as e:
        raise FarmExportError(f"Open Job Description rejected the template: {e}") from None


def openjd_chunks(job_model, step: str = "render") -> list[str]:
    """The ``Frame`` value of every task (chunk) of ``step`` in an instantiated job."""
    from openjd.model import StepParameterSpaceIterator
    the_step = next(s for s in job_model.steps if s.name == step)
    it = StepParameterSpaceIterator(space=the_step.parameterSpace)
    return [str(task["Frame"].value) for task in it]


def write_job_file(data: dict, path: Path) -> None:
    """Write ``data`` as YAML (``.yaml``/``.yml``) or JSON, atomically."""
    with atomic_path(path) as tmp:
        if path.suffix in (".yaml", ".yml"):
            import yaml  # openjd-model depends on PyYAML
            text = yaml.safe_dump(data, sort_keys=False, width=100)
        else:
            text = json.dumps(data, indent=2) + "\n"
        Path(tmp).write_text(text)


def _bundle_names(job: FarmJob) -> tuple[str, str | None]:
    """File names of the render and train graphs inside the job folder."""
    train = None
    if job.train_graph is not None:
        train = job.train_graph.name
        if train == job.graph.name:
            train = "train_" + train
    return job.graph.name, train


def _copy_graphs(job: FarmJob, out_dir: Path) -> tuple[str, str | None]:
    """Copy the graph(s) into the job folder (a self-contained job bundle)."""
    names = _bundle_names(job)
    for src, name in zip((job.graph, job.train_graph), names):
        if src is not None and src.resolve() != (out_dir / name).resolve():
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(src, tmp)
    return names


def export_openjd(job: FarmJob, out_dir: str | Path, *, filename: str = "template.yaml",
                  range_constraint: str = "CONTIGUOUS",
                  target_runtime_s: int | None = None) -> Path:
    """Write a job bundle: ``template.yaml`` + the graph(s) + ``parameter_values.yaml``.

    The template is validated with openjd.model before anything is written.
    Returns the template's path.
    """
    out_dir = Path(out_dir)
    graph_ref, train_ref = _bundle_names(job)
    template = openjd_template(job, graph_ref=graph_ref, train_ref=train_ref,
                               range_constraint=range_constraint,
                               target_runtime_s=target_runtime_s)
    validate_openjd(template, out_dir)  # PATH defaults resolve against the bundle folder
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / filename
    # The bundle is whole or absent to a submitter: every file the template
    # names is written (atomically) before the template itself appears.
    _copy_graphs(job, out_dir)
    # Deadline Cloud job bundles carry the submitted values next to the template.
    write_job_file({"parameterValues": [{"name": "Frames", "value": job.frames},
                                        {"name": "ChunkSize", "value": job.chunk}]},
                   out_dir / ("parameter_values" + path.suffix))
    write_job_file(template, path)
    return path


# ---------------------------------------------------------------- OpenCue


def opencue_range(frames: list[int]) -> str:
    """OpenCue frame spec of a frame list: runs ``a-b`` / ``a-bxs``, comma-joined."""
    parts: list[str] = []
    i = 0
    while i < len(frames):
        j = i
        step = frames[i + 1] - frames[i] if i + 1 < len(frames) else 1
        while step > 0 and j + 1 < len(frames) and frames[j + 1] - frames[j] == step:
            j += 1
        if j == i:
            parts.append(str(frames[i]))
        elif step == 1:
            parts.append(f"{frames[i]}-{frames[j]}")
        else:
            parts.append(f"{frames[i]}-{frames[j]}x{step}")
        i = j + 1
    return ",".join(parts)


def _is_contiguous(frames: list[int]) -> bool:
    return all(b - a == 1 for a, b in zip(frames, frames[1:]))


@contextlib.contextmanager
def offline_outline_config(session_dir: Path):
    """Point pyoutline's session folders at ``session_dir`` for the block.

    ``Outline.setup()`` (run by serialisation) writes a session folder; we
    keep it out of the user's home and restore pyoutline's config afterwards.
    """
    import outline
    saved = {k: outline.config.get("outline", k) for k in ("session_dir", "user_dir")}
    try:
        for k in saved:
            outline.config.set("outline", k, str(session_dir))
        yield outline
    finally:
        for k, v in saved.items():
            outline.config.set("outline", k, v)


def _cue_frames_token(job: FarmJob) -> str:
    """The Cuebot token that hands a render chunk to the runner's ``--frames``.

    ``#FRAME_START#-#FRAME_END#`` is exact when the frames are one contiguous
    run (the runner reads it as an OpenJD range). Otherwise only
    ``#FRAMESPEC#`` is exact, and it is in OpenCue syntax (``1-9x2``): used
    only if the runner's ``parse_frames`` accepts that syntax.
    """
    if _is_contiguous(job.frame_list):
        return "#FRAME_START#-#FRAME_END#"
    try:
        parse_frames(opencue_range(job.frame_list))
    except ValueError:
        raise FarmExportError(
            f"frames {job.frames!r} are not one contiguous run; OpenCue hands such chunks "
            "over as OpenCue frame specs ('1-9x2'), which this runner does not read. "
            "Allowed: a contiguous range such as '1001-1100' (or export with --format openjd)"
        ) from None
    return "#FRAMESPEC#"


def opencue_outline(job: FarmJob, *, graph_path: str, train_path: str | None,
                    show: str = "testing", shot: str = "livelayers", user: str | None = None,
                    facility: str = "local", service: str = "shell"):
    """A pyoutline ``Outline``: optional ``train`` layer (one frame), chunked ``render`` layer.

    Launch it on a farm with ``outline.cuerun.launch(ol, use_pycuerun=False)``.
    """
    import getpass

    import outline
    from outline.modules.shell import Shell, ShellCommand
    frames_token = _cue_frames_token(job)
    cue_range = opencue_range(job.frame_list)
    ol = outline.Outline(job.name, frame_range=cue_range, shot=shot, show=show,
                         user=user or getpass.getuser(), facility=facility)
    train = None
    if train_path is not None:
        cmd = [job.python] + _runner_args(job, train_path, None, "log", job.root)
        cmd += [a for k, v in job.set_args("train") for a in ("--set", f"{k}={v}")]
        # ShellCommand = one frame whatever the job's range: training runs once.
        train = ShellCommand("train", command=shell_join(cmd), service=service)
        ol.add_layer(train)
    cmd = [job.python] + _runner_args(job, graph_path, frames_token, "log", job.root)
    cmd += [a for k, v in job.set_args("render") for a in ("--set", f"{k}={v}")]
    render = Shell("render", command=shell_join(cmd), range=cue_range, chunk=job.chunk,
                   service=service)
    ol.add_layer(render)
    if train is not None:
        render.depend_all(train)  # layer-on-layer: no chunk starts before training ends
    return ol


def opencue_spec(job: FarmJob, **outline_kw) -> str:
    """The OpenCue job spec XML (what ``cuerun`` sends to a Cuebot), made offline.

    ``outline_kw``: as for ``opencue_outline``. pyoutline's session folder
    (written by ``Outline.setup``) goes to a temporary folder, removed after.
    """
    session = Path(tempfile.mkdtemp(prefix="ll_outline_"))
    try:
        with offline_outline_config(session) as outline:
            import outline.cuerun
            ol = opencue_outline(job, **outline_kw)
            launcher = outline.cuerun.OutlineLauncher(ol, range=opencue_range(job.frame_list))
            # serialize_simple: the commands as they are, no pycuerun wrapper.
            return launcher.serialize(use_pycuerun=False)
    finally:
        shutil.rmtree(session, ignore_errors=True)


def shell_join(args: list[str]) -> str:
    """Quote for the shell, but leave Cuebot's ``#TOKEN#`` words unquoted (readable)."""
    return " ".join(a if re.fullmatch(r"[#A-Z_\-]+", a) else shlex.quote(a) for a in args)


def export_opencue(job: FarmJob, out_dir: str | Path, *, filename: str = "job.xml",
                   **spec_kw) -> Path:
    """Write the OpenCue job spec and the graph(s) into ``out_dir``.

    Commands use the graphs' absolute paths in ``out_dir`` (OpenCue has no
    bundle-relative paths): put ``out_dir`` on storage the render nodes see.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graph_name, train_name = _copy_graphs(job, out_dir)
    xml = opencue_spec(job, graph_path=str((out_dir / graph_name).resolve()),
                       train_path=str((out_dir / train_name).resolve()) if train_name else None,
                       **spec_kw)
    path = out_dir / filename
    with atomic_path(path) as tmp:
        Path(tmp).write_text(xml)
    return path


def export_job(fmt: str, job: FarmJob, out_dir: str | Path, **kw) -> Path:
    """Export ``job`` as ``fmt`` ("openjd" or "opencue") into ``out_dir``."""
    if fmt == "openjd":
        return export_openjd(job, out_dir, **kw)
    if fmt == "opencue":
        return export_opencue(job, out_dir, **kw)
    raise FarmExportError(f"--format {fmt!r}; allowed: {', '.join(FORMATS)}")


# ---------------------------------------------------------------- CLI


def register_cli(subparsers, registry: dict[str, type] | Callable[[], dict] | None = None) -> None:
    """Add ``export-job`` to the runner's argparse sub-commands.

    ``registry`` (the node registry, or a function returning it) lets the
    command validate the graphs with the runner before writing the job.
    """
    p = subparsers.add_parser(
        "export-job", help="export a workflow as an OpenJD or OpenCue farm job",
        description="Write a render-farm job that runs the workflow over a frame range in "
                    "chunks (and an optional training graph once, first).")
    p.add_argument("graph", help="API-format workflow JSON rendered per chunk")
    p.add_argument("--frames", required=True, help="OpenJD range expression, e.g. 1001-1100")
    p.add_argument("--chunk", type=int, default=10, help="frames per task (default 10)")
    p.add_argument("--format", choices=FORMATS, default="openjd", dest="fmt")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--train-graph", default=None, help="workflow run once before rendering")
    p.add_argument("--set", action="append", default=[], metavar="ID.INPUT=VALUE",
                   help="override a node input in the job (repeatable)")
    p.add_argument("--python", default="python", help="Python executable on the workers")
    p.add_argument("--name", default="", help="job name (default livelayers-<graph>)")
    p.add_argument("--offline", action="store_true", help="pass --offline to the runner")
    p.add_argument("--root", default=None,
                   help="folder the graphs' relative paths resolve against on the workers "
                        "(default: this working directory)")
    p.add_argument("--range-constraint", choices=RANGE_CONSTRAINTS, default="CONTIGUOUS",
                   help="OpenJD chunk shape (default CONTIGUOUS)")
    p.add_argument("--show", default="testing", help="OpenCue show (default testing)")
    p.add_argument("--shot", default="livelayers", help="OpenCue shot (default livelayers)")
    p.set_defaults(func=lambda args: _cli_export(args, registry))


def _cli_export(args: argparse.Namespace, registry) -> int:
    import sys
    try:
        reg = registry() if callable(registry) else registry
        job = make_job(args.graph, args.frames, args.chunk, train_graph=args.train_graph,
                       overrides=parse_overrides(args.set), python=args.python,
                       name=args.name, offline=args.offline, registry=reg, root=args.root)
        kw = ({"range_constraint": args.range_constraint} if args.fmt == "openjd"
              else {"show": args.show, "shot": args.shot})
        path = export_job(args.fmt, job, args.out, **kw)
    except FarmExportError as e:
        print(f"export-job: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({len(job.frame_list)} frames, chunk {job.chunk}: "
          f"{format_frames(job.frame_list)})")
    return 0
