"""``python -m livelayers bench``: every benchmark in bench/ at one size, one
table of ratios, and a JSON file to compare a change before and after.

    python -m livelayers bench [--size quick|reference] [--only NAME ...] [--threads N]
                               [--json PATH] [--compare OLD.json] [--against NEW.json]
                               [--official NAME=DIR ...] [--official-python NAME=PY ...]

Each bench script has ``rows(size) -> list[dict]`` (see ``_timing.row``): one
row per timed case, {bench, case, unit, ours, reference, ratio, note}, where
``reference`` is the bench's reference design (a stand-in for the published
code's way of doing the step; None where there is none) and ``ratio`` =
reference / ours (above 1: ours costs less). The benches run one after the
other in a child process (``python bench/suite.py --child …``: the heavy
imports once, the CLI stays light); benches that compare peak memory get a
child of their own (``OWN_PROCESS``) and run each design in a subprocess. A bench that raises is reported in
its row and the command exits 1 after the others ran; a child that dies
takes only the bench it was running with it (a new child runs the rest).

``--official NAME=DIR`` also times the published code itself from a clone the
user made (never shipped; bench/official_text2live.py, bench/official_text2live_video.py,
bench/official_nla.py, bench/official_blended_diffusion.py),
beside ours, in the same run: the child finds DIR (and ``--official-python``,
the Python of that code's environment) in the environment variables of
``OFFICIAL``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# name -> module in bench/, in the order they run (cheap first)
BENCHES = {"io": "bench_io", "clip": "bench_clip", "panel": "bench_panel", "stylise": "bench_stylise",
           "regions": "bench_regions", "diffusion": "bench_diffusion", "atlas": "bench_atlas",
           "text2live": "bench_text2live", "text2live_video": "bench_text2live_video"}
# Benches whose rows compare peak memory (max RSS of a design's subprocess) get
# a child of their own: Linux keeps ru_maxrss across exec, so a design process
# started from a big process would report that process's peak, not its own.
OWN_PROCESS = {"text2live", "text2live_video"}
SIZES = ("quick", "reference")
FIELDS = ("bench", "case", "unit", "ours", "reference", "ratio", "note")
FORMAT = "livelayers-bench/1"
MARK = "livelayers-bench: "   # prefix of the child's result lines on its stdout
EXIT_BAD_ARGS, EXIT_STOPPED = 2, 130
# --official NAME=DIR: bench name -> (the environment variable its rows() reads,
# the published code it times, the size it runs at, the bench/ module that checks
# a clone); --official-python NAME=PY goes to the variable + "_PYTHON"
OFFICIAL = {"text2live": ("LIVELAYERS_OFFICIAL_TEXT2LIVE", "github.com/omerbt/Text2LIVE", "reference",
                          "official_text2live"),
            "atlas": ("LIVELAYERS_OFFICIAL_ATLAS", "github.com/ykasten/layered-neural-atlases", "reference",
                      "official_nla"),
            "diffusion": ("LIVELAYERS_OFFICIAL_DIFFUSION", "github.com/omriav/blended-diffusion", "reference",
                          "official_blended_diffusion"),
            "text2live_video": ("LIVELAYERS_OFFICIAL_TEXT2LIVE_VIDEO", "github.com/omerbt/Text2LIVE", "reference",
                                "official_text2live_video")}


# ---------------------------------------------------------------- the command

def register_cli(sub) -> None:
    p = sub.add_parser("bench", help="run the benchmarks in bench/: one table of ratios, JSON",
                       description="Run every benchmark in bench/ (or --only some) at one size and "
                                   "print one table: ours, the bench's reference design, ratio = "
                                   "reference / ours. --json writes it for a later --compare.")
    p.add_argument("--size", choices=SIZES, default="quick",
                   help="quick: seconds per bench (tests, a quick before/after); reference: the "
                        "sizes the docs pages report (minutes to an hour on a CPU)")
    p.add_argument("--only", nargs="+", metavar="NAME", help=f"run these: {', '.join(BENCHES)}")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", metavar="PATH", help="write the rows and the machine's description here")
    p.add_argument("--compare", metavar="OLD.json",
                   help="also print ours now / ours in OLD.json per row (a change's before/after)")
    p.add_argument("--against", metavar="NEW.json",
                   help="with --compare: compare two saved runs, run nothing")
    p.add_argument("--official", action="append", metavar="NAME=DIR",
                   help="also time the published code from your clone of it, beside ours "
                        f"(with --size reference; NAME: {', '.join(OFFICIAL)})")
    p.add_argument("--official-python", action="append", metavar="NAME=PY",
                   help="the Python of that code's environment (default: this one)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    problem = check_args(args)
    if problem:
        print(f"livelayers: bench: {problem}", file=sys.stderr)
        return EXIT_BAD_ARGS
    old = load_run(args.compare) if args.compare else None
    if args.against:
        print(format_compare(old, load_run(args.against)))
        return 0
    names = args.only or list(BENCHES)
    try:
        run = run_benches(names, args.size, args.threads, official_roots(args.official),
                          official_roots(args.official_python))
    except KeyboardInterrupt:
        print("livelayers: bench: stopped; nothing written", file=sys.stderr)
        return EXIT_STOPPED
    print(format_table(run))
    if args.json:
        save_run(run, args.json)
        print(f"livelayers: bench: wrote {args.json}", file=sys.stderr)
    if old is not None:
        print()
        print(format_compare(old, run))
    if run["failed"]:
        print(f"livelayers: bench: {len(run['failed'])} bench(es) failed: {', '.join(run['failed'])}",
              file=sys.stderr)
        return 1
    return 0


def check_args(args) -> str | None:
    """The first thing wrong with the arguments, as one line, or None."""
    unknown = [n for n in args.only or () if n not in BENCHES]
    if unknown:
        return f"--only {' '.join(unknown)}: unknown bench; allowed: {', '.join(BENCHES)}"
    if args.threads < 1:
        return f"--threads {args.threads}: allowed: 1 or more"
    if args.against and not args.compare:
        return "--against NEW.json needs --compare OLD.json"
    if args.against and (args.only or args.json):
        return "--against compares two saved runs: --only and --json do not apply"
    for spec in args.official or ():
        problem = official_problem(spec, args)
        if problem:
            return f"--official {spec}: {problem}"
    named = [s.partition("=")[0] for s in args.official or ()]
    for spec in args.official_python or ():
        name, sep, python = spec.partition("=")
        if not sep or name not in named:
            return f"--official-python {spec}: allowed: NAME=PY for a NAME given to --official"
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            return f"--official-python {spec}: {python} is not an executable file"
    for flag in ("compare", "against"):
        path = getattr(args, flag)
        if path:
            problem = run_file_problem(path)
            if problem:
                return f"--{flag} {path}: {problem}; allowed: a file written by bench --json"
    return None


def official_roots(specs) -> dict[str, str]:
    """--official NAME=DIR (or --official-python NAME=PY) values as {NAME: absolute path}."""
    return {name: os.path.abspath(root) for name, root in (s.split("=", 1) for s in specs or ())}


def official_problem(spec: str, args) -> str | None:
    """What is wrong with one --official NAME=DIR, or None."""
    name, sep, root = spec.partition("=")
    if not sep or not root:
        return f"allowed: NAME=DIR, NAME one of {', '.join(OFFICIAL)}"
    if name not in OFFICIAL:
        return f"{name}: no bench times its published code; allowed: {', '.join(OFFICIAL)}"
    _, code, size, checker = OFFICIAL[name]
    if args.size != size:
        return f"the published code runs at --size {size} only"
    if args.only and name not in args.only:
        return f"--only leaves out {name}"
    import importlib
    sys.path.insert(0, str(BENCH_DIR))
    problem = importlib.import_module(checker).checkout_problem(root)  # stdlib only: the CLI stays light
    return f"{problem}; allowed: a clone of {code}" if problem else None


# ---------------------------------------------------------------- running

def run_benches(names: list[str], size: str, threads: int, official: dict[str, str] | None = None,
                official_python: dict[str, str] | None = None) -> dict:
    """Run ``names`` in child processes; the run as saved by ``--json``.
    ``official``: {bench: a clone of its published code} to time beside ours;
    ``official_python``: {bench: the Python of that code's environment}."""
    official = {n: (root, (official_python or {}).get(n)) for n, root in (official or {}).items()}
    results: dict[str, dict] = {}
    machine: dict = {}
    started = datetime.now(timezone.utc).astimezone()
    for group in _groups(names):
        todo = group
        while todo:
            code, tail = _run_child(todo, size, threads, results, machine, official)
            todo = [n for n in todo if n not in results]
            if todo:  # the child died (or exited early) while running todo[0]
                why = f"the bench process ended (exit {code}) while running it: {tail}"
                results[todo[0]] = {"bench": todo[0], "error": why, "seconds": None}
                _say(f"bench {todo[0]}: failed: {why}")
                todo = todo[1:]
    rows, failed = [], []
    for name in names:
        res = results[name]
        if "error" in res:
            failed.append(name)
            rows.append({"bench": name, "case": "(failed)", "unit": "", "ours": None,
                         "reference": None, "ratio": None, "note": res["error"]})
        else:
            rows.extend(res["rows"])
    return {"format": FORMAT, "date": started.isoformat(timespec="seconds"), "size": size,
            "threads": threads, "machine": machine, "benches": names, "failed": failed,
            "official": {n: root for n, (root, _) in official.items()},
            "seconds": {n: results[n].get("seconds") for n in names}, "rows": rows}


def _groups(names: list[str]) -> list[list[str]]:
    """The children to start, in order: runs of shared benches, OWN_PROCESS alone."""
    groups: list[list[str]] = []
    for name in names:
        if name in OWN_PROCESS or not groups or groups[-1][0] in OWN_PROCESS:
            groups.append([name])
        else:
            groups[-1].append(name)
    return groups


def _run_child(names, size, threads, results, machine, official) -> tuple[int, str]:
    """One child for ``names``; fills ``results``/``machine`` from its lines.
    (exit status, last line of its stderr)."""
    cmd = [sys.executable, str(BENCH_DIR / "suite.py"), "--child", size, str(threads), *names]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=_child_env(threads, official),
                                cwd=BENCH_DIR.parent)
        try:
            for line in proc.stdout:
                if not line.startswith(MARK):
                    continue  # a bench's own prints
                msg = json.loads(line[len(MARK):])
                if "machine" in msg:
                    if not machine:  # the first child's: its load is the run's start
                        machine.update(msg["machine"])
                    continue
                results[msg["bench"]] = msg
                state = f"failed: {msg['error']}" if "error" in msg else f"{msg['seconds']:.1f} s"
                _say(f"bench {msg['bench']}: {state}")
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        err.seek(0)
        lines = [ln for ln in err.read().splitlines() if ln.strip()]
    return code, lines[-1] if lines else "(no error output)"


def _child_env(threads: int, official: dict[str, tuple[str, str | None]]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               HF_HUB_OFFLINE="1", LIVELAYERS_OFFLINE="1")
    for name, (variable, *_) in OFFICIAL.items():
        for var in (variable, variable + "_PYTHON"):
            env.pop(var, None)  # only what this run's --official says
        if name in official:
            root, python = official[name]
            env[variable] = root
            if python:
                env[variable + "_PYTHON"] = python
    env.setdefault("QT_QPA_PLATFORM", "offscreen")  # bench_panel builds widgets, never shows them
    top = _import_root()
    if top:
        env["PYTHONPATH"] = os.pathsep.join([top, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _import_root() -> str | None:
    """The folder to put on the child's path so that ``import livelayers`` finds
    this package, where it was found through a plain folder called livelayers
    (an installed or editable package is found without it)."""
    package = BENCH_DIR.parent
    return str(package.parent) if package.name == "livelayers" else None


def _say(text: str) -> None:
    print(f"livelayers: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the child

def child_main(size: str, threads: int, names: list[str]) -> int:
    """Run the benches in this process, one result line per bench on stdout."""
    import importlib

    import torch
    torch.set_num_threads(threads)
    _emit({"machine": machine_info(torch)})
    for name in names:
        t0 = time.perf_counter()
        try:
            rows = importlib.import_module(BENCHES[name]).rows(size)
            check_rows(name, rows)
            msg = {"bench": name, "rows": rows}
        except Exception as e:  # reported in its row; the other benches still run
            traceback.print_exc()
            msg = {"bench": name, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
        msg["seconds"] = time.perf_counter() - t0
        _emit(msg)
    return 0


def _emit(msg: dict) -> None:
    print(MARK + json.dumps(msg, allow_nan=False), flush=True)


def check_rows(name: str, rows) -> None:
    """Raise ValueError unless ``rows`` are well-formed rows of bench ``name``."""
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"rows({name!r}) returned {type(rows).__name__}, not a non-empty list")
    for r in rows:
        if not isinstance(r, dict) or set(r) != set(FIELDS):
            raise ValueError(f"a row of {name} has fields {sorted(r) if isinstance(r, dict) else r}, "
                             f"not {list(FIELDS)}")
        if r["bench"] != name:
            raise ValueError(f"a row of {name} names bench {r['bench']!r}")
        for key in ("ours", "reference", "ratio"):
            value = r[key]
            if value is None and key != "ours":
                continue
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: {r['case']}: {key} = {value!r}, not a finite number >= 0")


def machine_info(torch) -> dict:
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    else:
        device = "cpu"
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "device": device, "load_average": _load()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load() -> list[float] | None:
    """1/5/15-minute load averages when the run started (a loaded machine's
    timings are inflated: compare runs made under similar load)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------- files and tables

def save_run(run: dict, path: str) -> None:
    from livelayers.engine.atomic import atomic_path
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(run, indent=1, allow_nan=False) + "\n")


def run_file_problem(path: str) -> str | None:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return "no such file"
    except (OSError, ValueError) as e:
        return f"not readable as JSON ({type(e).__name__})"
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("rows"), list):
        return f"not a {FORMAT} file"
    return None


def load_run(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _num(x) -> str:
    return "-" if x is None else f"{x:.4g}"


def _ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _table(header: list[str], lines: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    fmt = [(str.rjust if i in right else str.ljust) for i in range(len(header))]
    out = []
    for r in [header, ["-" * w for w in widths], *lines]:
        out.append("  ".join(f(c, w) for f, c, w in zip(fmt, r, widths)).rstrip())
    return "\n".join(out)


def describe(run: dict) -> str:
    m = run.get("machine", {})
    load = m.get("load_average")
    return (f"size {run.get('size')}, {run.get('threads')} thread(s), {m.get('device', '?')}, "
            f"{m.get('cpu', '?')} x{m.get('cpu_count', '?')}, torch {m.get('torch', '?')}, "
            f"{run.get('date', '?')}" + (f", load {load[0]:.1f}" if load else ""))


def format_table(run: dict) -> str:
    """The run's rows as one aligned table (ratio = reference design / ours)."""
    lines = [[r["bench"], r["case"], r["unit"], _num(r["ours"]), _num(r["reference"]), _ratio(r["ratio"]),
              r["note"]] for r in run["rows"]]
    head = ["bench", "case", "unit", "ours", "reference design", "ratio", "note"]
    return (f"LiveLayers benchmarks: {describe(run)}\n"
            "ratio = reference design / ours (above 1: ours costs less)\n\n"
            + _table(head, lines, {3, 4, 5}))


def format_compare(old: dict, new: dict) -> str:
    """Per row (matched by bench, case and unit): ours before, after, after/before."""
    before = {(r["bench"], r["case"], r["unit"]): r for r in old["rows"]}
    lines, seen = [], set()
    for r in new["rows"]:
        key = (r["bench"], r["case"], r["unit"])
        seen.add(key)
        o = before.get(key)
        a, b = r["ours"], o["ours"] if o else None
        change = _ratio(a / b) if a is not None and b else ("not in before" if o is None else "-")
        lines.append([r["bench"], r["case"], r["unit"], _num(b), _num(a), change])
    for key, o in before.items():
        if key not in seen and o["bench"] in new.get("benches", ()):
            lines.append([*key, _num(o["ours"]), "-", "not in after"])
    head = ["bench", "case", "unit", "before", "after", "after/before"]
    notes = [f"before: {describe(old)}", f"after:  {describe(new)}"]
    if (old.get("size"), old.get("threads")) != (new.get("size"), new.get("threads")):
        notes.append("warning: the two runs differ in size or threads; their numbers do not compare")
    return ("\n".join(notes) + "\nafter/before = ours now / ours before (below 1: faster or smaller now)\n\n"
            + _table(head, lines, {3, 4, 5}))


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    sys.exit(child_main(sys.argv[2], int(sys.argv[3]), sys.argv[4:]))
