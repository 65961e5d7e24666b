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
TOY_MODELS = ("toy-clip", "toy-ddpm", "toy-sd", "toy-dino")


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


def _catalogue():
    """The pack's catalogue module, imported from this folder whatever it is named
    (ComfyUI-Manager clones it under any name, so ``import livelayers`` may not work)."""
    import importlib
    import importlib.util
    importlib.invalidate_caches()  # see packages pip just installed
    if "livelayers" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "livelayers", HERE / "__init__.py", submodule_search_locations=[str(HERE)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["livelayers"] = module
        spec.loader.exec_module(module)
    return importlib.import_module("livelayers.engine.models.catalogue")


def models(ids: list[str], dry_run: bool) -> int:
    """Verify the bundled toy models (``toy``) or fetch catalogue models one by one."""
    wanted = list(TOY_MODELS) if ids == ["toy"] else ids
    print(f"livelayers install: {'verify' if ids == ['toy'] else 'fetch'} {' '.join(wanted)}")
    if dry_run:
        return 0
    catalogue = _catalogue()
    if ids == ["toy"]:
        report = catalogue.verify_models(wanted)
        print(report.format())
        return report.exit_code
    from livelayers.engine.errors import CorruptFileError, ModelNotFoundError
    for model_id in wanted:
        try:
            print(f"{model_id}: {catalogue.fetch_model(model_id)}")
        except (ModelNotFoundError, CorruptFileError, ValueError) as e:  # incl. DownloadError
            print(f"livelayers install: {model_id}: {e}", file=sys.stderr)
            return 1
    return 0


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
