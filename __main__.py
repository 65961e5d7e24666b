"""``python -m livelayers …``: the command line.

    run GRAPH.json [--frames 1001-1050] [--set ID.input=value …]   run a workflow headless
    demo [--out DIR]                                                the bundled demo graph
    models list|verify|fetch …                                      the model catalogue
    export-job GRAPH.json --format openjd|opencue …                 render-farm job export
    wedge GRAPH.json --vary ID.input=A|B … --out DIR                variations + contact sheet
    panel [GRAPH.json]                                              the PySide6 prompt panel
    bench [--size quick|reference] [--only NAME …] [--json PATH]     every benchmark, one table
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import sys
import time
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
EXIT_STOPPED = 130


def _install_signal_handlers() -> None:
    """First Ctrl-C/SIGTERM asks the work to stop cleanly (checkpoint, no
    partial files); a second one ends the process at once."""
    from .engine import progress

    def handler(signum, frame):
        if progress.stop_requested():
            raise KeyboardInterrupt
        print(f"\nlivelayers: {signal.Signals(signum).name} received: stopping after the "
              "current step (send again to abort)", file=sys.stderr, flush=True)
        progress.request_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _terminal_progress(mode: str):
    """A Progress that draws a tqdm bar, prints ``openjd_progress:`` lines, or nothing."""
    from .engine.progress import Progress

    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "log"
    if mode == "none":
        return Progress(), lambda: None
    if mode == "openjd":
        last = [-1]

        def openjd(step, total, info):
            pct = int(100 * step / max(total, 1))
            if pct != last[0]:
                last[0] = pct
                print(f"openjd_progress: {pct}", flush=True)
                if "node" in info:
                    print(f"openjd_status: {info['node']}", flush=True)
        return Progress(callback=openjd), lambda: None
    if mode == "log":
        last = [-10.0, None]  # percent and node of the last line printed

        def log(step, total, info):
            pct = 100.0 * step / max(total, 1)
            if pct - last[0] >= 10 or step == total or info.get("node") != last[1]:
                last[0], last[1] = pct, info.get("node")
                extra = " ".join(f"{k}={v:.4g}" for k, v in info.items() if isinstance(v, float))
                print(f"[{pct:5.1f}%] {info.get('node', '')} {extra}".rstrip(), file=sys.stderr,
                      flush=True)
        return Progress(callback=log), lambda: None
    from tqdm import tqdm
    bar = tqdm(total=1000, unit="‰", file=sys.stderr, dynamic_ncols=True)

    def draw(step, total, info):
        bar.n = int(1000 * step / max(total, 1))
        post = {k: f"{v:.4g}" for k, v in info.items() if isinstance(v, float)}
        if "node" in info:
            post["node"] = info["node"]
        bar.set_postfix(post, refresh=False)
        bar.refresh()
    return Progress(callback=draw), bar.close


def cmd_run(args) -> int:
    """``run``: with ``--root`` the graph's relative paths resolve against that folder."""
    from .engine.paths import project_root
    root = getattr(args, "root", None)
    if root and not Path(root).is_dir():
        print(f"livelayers: --root {root}: not a folder; allowed: the folder the graph's "
              "relative paths are relative to", file=sys.stderr)
        return 2
    with project_root(root or None):
        return _run_graph(args)


def _run_graph(args) -> int:
    from .engine import executor
    from .engine.frames import parse_frames

    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["LIVELAYERS_OFFLINE"] = "1"
    from .nodes import NODE_CLASS_MAPPINGS
    from .engine.io import exr_is_complete

    _install_signal_handlers()
    try:
        workflow = executor.load_workflow(args.graph)
        overrides = dict(_override(o, workflow, NODE_CLASS_MAPPINGS) for o in args.set or [])
        frames = parse_frames(args.frames) if args.frames else None
    except (executor.WorkflowError, ValueError) as e:
        print(f"livelayers: {e}", file=sys.stderr)
        return 2
    progress, close = _terminal_progress(args.progress)
    started = time.time()
    try:
        skip = None if args.force else _current_frames(
            executor.apply_overrides(workflow, overrides), NODE_CLASS_MAPPINGS)
        result = executor.run_workflow(workflow, NODE_CLASS_MAPPINGS, overrides=overrides,
                                       frames=frames, progress=progress, skip_complete=skip)
    except executor.NodeFailed as e:  # a node's own bug or a library's error: exit 1
        close()
        return report_failure(e, getattr(args, "debug", False))
    except executor.WorkflowError as e:
        close()
        print(f"livelayers: {e}", file=sys.stderr)
        return 2 if e.__cause__ is None else 1
    except KeyboardInterrupt:
        close()
        print("livelayers: aborted", file=sys.stderr)
        return EXIT_STOPPED
    except Exception as e:
        close()
        from .engine.errors import Cancelled, LiveLayersError
        if isinstance(e, Cancelled):
            print(f"livelayers: stopped ({e}); nothing partial was written", file=sys.stderr)
            return EXIT_STOPPED
        if isinstance(e, LiveLayersError):
            print(f"livelayers: {e}", file=sys.stderr)
            return 1
        return report_failure(e, getattr(args, "debug", False))
    close()
    if result.skipped_frames:
        from .engine.frames import format_frames
        print(f"livelayers: frames {format_frames(result.skipped_frames)} already written by "
              "this job, skipped",
              file=sys.stderr)
    for path in result.written:
        print(path)
    # Exit 0 only when every expected output exists and is complete.
    final = executor.apply_overrides(workflow, overrides)
    if frames is not None:
        final = executor.set_frames(final, NODE_CLASS_MAPPINGS, frames)
    missing = [p for p in executor.expected_outputs(final, NODE_CLASS_MAPPINGS)
               if not exr_is_complete(p)]
    if missing:
        print(f"livelayers: {len(missing)} expected output(s) missing: {', '.join(missing[:5])}",
              file=sys.stderr)
        return 1
    print(f"livelayers: done in {time.time() - started:.1f} s", file=sys.stderr)
    return 0


def _current_frames(workflow: dict, registry: dict):
    """The runner's retry predicate: an output counts as done only when it is complete
    and its header provenance is this job's; a file left by another job is said so."""
    from .engine import provenance

    def is_done(path: str) -> bool:
        state = provenance.output_state(path, workflow, registry)
        if state in (provenance.STALE, provenance.NO_PROVENANCE):
            why = ("was made by a different job (its livelayers/api_workflow header differs: "
                   "another prompt, seed or input)" if state == provenance.STALE
                   else "has no livelayers/api_workflow header")
            print(f"livelayers: {path} {why}: rendering it again", file=sys.stderr, flush=True)
        elif state == provenance.INCOMPLETE:
            print(f"livelayers: {path} is incomplete: rendering it again", file=sys.stderr,
                  flush=True)
        return state == provenance.CURRENT
    return is_done


def report_failure(error: BaseException, debug: bool = False, hint: bool = True) -> int:
    """An unexpected exception as one line (``livelayers: node 3 (LL_X) failed:
    RuntimeError: …``) and, for commands that have ``--debug``, a hint to use it;
    with ``--debug`` the traceback first. Exit status 1."""
    import traceback

    from .engine.executor import NodeFailed
    if debug:
        cause = error.exc if isinstance(error, NodeFailed) else error
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
    line = str(error) if isinstance(error, NodeFailed) else (
        f"failed: {type(error).__name__}: {error}")
    print(f"livelayers: {line}", file=sys.stderr)
    if hint and not debug:
        print("livelayers: run again with --debug to see the traceback", file=sys.stderr)
    return 1


def _override(text: str, workflow: dict | None = None, registry: dict | None = None):
    """``--set ID.input=value`` read as the input's declared type (a STRING stays text)."""
    from .engine.executor import parse_override
    node_id, name, value = parse_override(text, workflow, registry)
    return f"{node_id}.{name}", value


def cmd_demo(args) -> int:
    """Run examples/demo.json offline on the toy models; write a layered EXR."""
    graph = PACKAGE_DIR / "examples" / "demo.json"
    out = Path(args.out).resolve()
    workflow = json.loads(graph.read_text())
    sets = []
    for node_id, node in workflow.items():
        inputs = node.get("inputs", {})
        for key in ("path", "image_path"):
            value = inputs.get(key)
            if isinstance(value, str) and value.startswith("examples/"):
                sets.append(f"{node_id}.{key}={PACKAGE_DIR / value}")
        if node.get("class_type") == "LL_SaveEXR":
            sets.append(f"{node_id}.path={out / 'demo.####.exr'}")
    ns = argparse.Namespace(graph=str(graph), set=sets, frames=None, offline=True,
                            progress=args.progress, force=True, debug=args.debug)
    return cmd_run(ns)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m livelayers",
                                 description="LiveLayers: text-driven RGBA edit layers, headless.")
    ap.add_argument("--version", action="version", version=f"livelayers {_version()}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run an API-format workflow headless",
                         description="Run a ComfyUI API-format workflow with this pack's nodes. "
                                     "Exit status 0 only when every output was written.")
    run.add_argument("graph", help="workflow JSON (ComfyUI 'Export (API)' format)")
    run.add_argument("--frames", help="Open Job Description range: 1001-1050, 1-9:2, 1,4,7; "
                                      "sets every node's 'frames' input")
    run.add_argument("--set", action="append", metavar="ID.input=value",
                     help="override an input (value parsed as JSON when possible); repeatable")
    run.add_argument("--offline", action="store_true", help="never download models")
    run.add_argument("--progress", choices=["auto", "bar", "log", "openjd", "none"],
                     default="auto", help="progress display (openjd: openjd_progress lines)")
    run.add_argument("--force", action="store_true",
                     help="recompute frames whose outputs already exist and are complete")
    run.add_argument("--debug", action="store_true",
                     help="on a failure, print the Python traceback too")
    run.add_argument("--root", default=None, metavar="DIR",
                     help="folder the graph's relative paths resolve against (default: the "
                          "working directory; farm jobs pass the folder they were exported from)")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="run the bundled demo graph offline on the toy models")
    demo.add_argument("--out", default="out/demo", help="folder for the layered EXR")
    demo.add_argument("--progress", choices=["auto", "bar", "log", "none"], default="auto")
    demo.add_argument("--debug", action="store_true",
                      help="on a failure, print the Python traceback too")
    demo.set_defaults(func=cmd_demo)

    _bench_cli(sub)
    for hook in _cli_hooks():
        if "registry" in inspect.signature(hook).parameters:
            hook(sub, registry=_registry)  # lets export-job validate graphs first
        else:
            hook(sub)
    return ap


def _registry() -> dict:
    from .nodes import NODE_CLASS_MAPPINGS
    return NODE_CLASS_MAPPINGS


def _bench_cli(sub) -> None:
    """``bench``: bench/suite.py, loaded by path (bench/ is a folder of scripts,
    not a package, and comes with a checkout, not with an installed wheel)."""
    import importlib.util
    path = PACKAGE_DIR / "bench" / "suite.py"
    if path.is_file():
        spec = importlib.util.spec_from_file_location("livelayers_bench_suite", path)
        suite = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(suite)
        suite.register_cli(sub)
        return

    def missing(args) -> int:
        print(f"livelayers: bench: {path.parent} is missing: the benchmarks come with a checkout "
              "of the repository, not with an installed package", file=sys.stderr)
        return 2
    sub.add_parser("bench", help="run the benchmarks (needs a checkout)").set_defaults(func=missing)


def _cli_hooks():
    """Subcommands contributed by other parts (imported lazily, optional)."""
    import importlib
    import importlib.util
    for module in ("engine.models.catalogue", "engine.farm", "wedge", "ui.app"):
        if importlib.util.find_spec(f".{module}", __package__) is None:
            continue
        try:
            mod = importlib.import_module(f".{module}", __package__)
        except ImportError:
            if module == "ui.app":  # the panel needs Qt; the rest of the CLI must not
                continue
            raise
        register = getattr(mod, "register_cli", None)
        if register is not None:
            yield register


def _version() -> str:
    try:
        return json.loads((PACKAGE_DIR / "plugin.json").read_text())["version"]
    except Exception:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except Exception as e:  # whatever a command did not expect: one line, never a traceback
        return report_failure(e, getattr(args, "debug", False), hint=hasattr(args, "debug"))


if __name__ == "__main__":
    sys.exit(main())
