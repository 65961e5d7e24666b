"""ComfyUI-Manager-compatible installer.

ComfyUI-Manager runs this file in the pack folder with the interpreter that
runs ComfyUI, after installing requirements.txt. It installs what is missing
into that interpreter and never replaces an installed torch/torchvision (a
constraints file pins the versions already there). Models are fetched only
on request:

    python install.py                 # dependencies
    python install.py --models toy    # also verify the bundled toy models
    python install.py --models ID …   # also fetch catalogue models (needs network)
    python install.py --dry-run       # print what would run
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PINNED = ("torch", "torchvision", "torchaudio")


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def constraints() -> list[str]:
    """``torch==<installed>`` etc. for every torch package already installed."""
    return [f"{d}=={v}" for d in PINNED if (v := installed_version(d))]


def pip_command(reqs: list[str], constraints_file: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "install"]
    if constraints_file:
        cmd += ["-c", constraints_file]
    return cmd + reqs


def install(dry_run: bool = False) -> int:
    pins = constraints()
    with tempfile.TemporaryDirectory() as tmp:
        cfile = None
        if pins:
            cfile = os.path.join(tmp, "constraints.txt")
            Path(cfile).write_text("\n".join(pins) + "\n")
        cmd = pip_command(requirements(), cfile)
        print("livelayers install:", " ".join(cmd), f"(keeping {', '.join(pins) or 'no torch'})")
        if dry_run:
            return 0
        return subprocess.call(cmd)


def models(ids: list[str], dry_run: bool) -> int:
    cmd = [sys.executable, "-m", "livelayers", "models"]
    cmd += ["verify"] if ids == ["toy"] else ["fetch", *ids]
    print("livelayers install:", " ".join(cmd))
    if dry_run:
        return 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.call(cmd, env=env, cwd=HERE)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Install LiveLayers' dependencies into this Python.")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    ap.add_argument("--models", nargs="*", default=None, metavar="ID",
                    help="'toy' to verify the bundled toy models, or catalogue ids to fetch")
    args = ap.parse_args(argv)
    code = install(args.dry_run)
    if code == 0 and args.models:
        code = models(args.models, args.dry_run)
    return code


if __name__ == "__main__":
    sys.exit(main())
