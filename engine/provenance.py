"""Was this output file made by this job? (retries and wedges skip only what is current).

``LL_SaveEXR`` stores the API workflow that ran in the EXR header
(``livelayers/api_workflow``, JSON). A file on disk counts as done for a job only
when it is complete *and* that stored workflow is the job's own, so a frame
left by another prompt, seed or model is rendered again, never silently kept.

The ``frames`` inputs are left out of the comparison: the runner sets them to
the chunk it runs (``--frames 1-5``, then a retry of ``4-5``), and which chunk
wrote a frame does not change what is in it.

This is the one check the headless runner (``python -m livelayers run``) and
wedges (``wedge.py``) use.
"""
from __future__ import annotations

import json
import os
from typing import Any

PROVENANCE_KEY = "livelayers/api_workflow"

#: What ``output_state`` returns.
MISSING, INCOMPLETE, NO_PROVENANCE, STALE, CURRENT = (
    "missing", "incomplete", "no provenance", "stale", "current")


def job_fingerprint(workflow: dict, registry: dict[str, type] | None = None) -> Any:
    """``workflow`` as compared: JSON-canonical (as the header stores it, keys
    sorted), with every literal ``frames`` input of a node whose class declares
    one (per ``registry``; without it, any node's) blanked."""
    from .executor import _input_specs, is_link
    data = json.loads(json.dumps(workflow, sort_keys=True, default=str))
    for node in data.values():
        if not isinstance(node, dict):
            continue
        inputs = node.get("inputs")
        if not isinstance(inputs, dict) or "frames" not in inputs or is_link(inputs["frames"]):
            continue
        cls = (registry or {}).get(node.get("class_type"))
        if registry is None or (cls is not None and "frames" in _input_specs(cls)):
            inputs["frames"] = ""
    return data


def stored_workflow(path: str | os.PathLike) -> Any | None:
    """The workflow an EXR's header says made it (None when it says none)."""
    from .io import read_exr_header
    text = read_exr_header(path).get(PROVENANCE_KEY)
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def output_state(path: str | os.PathLike, workflow: dict,
                 registry: dict[str, type] | None = None) -> str:
    """``CURRENT`` when ``path`` is a complete image made by ``workflow`` (its
    header provenance matches ``job_fingerprint``); otherwise why not:
    ``MISSING``, ``INCOMPLETE`` (truncated/corrupt), ``NO_PROVENANCE`` (an EXR
    without the header), ``STALE`` (made by another workflow). Files that are
    not EXRs have no header: one that exists counts as ``CURRENT``."""
    from .io import exr_is_complete
    if not os.path.isfile(path):
        return MISSING
    if not os.fspath(path).lower().endswith(".exr"):
        return CURRENT
    if not exr_is_complete(path):
        return INCOMPLETE
    stored = stored_workflow(path)
    if stored is None:
        return NO_PROVENANCE
    if job_fingerprint(stored, registry) != job_fingerprint(workflow, registry):
        return STALE
    return CURRENT


def is_current(path: str | os.PathLike, workflow: dict,
               registry: dict[str, type] | None = None) -> bool:
    """``output_state(...) == CURRENT``."""
    return output_state(path, workflow, registry) == CURRENT
