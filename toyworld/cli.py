"""The command-line options every toy-model training script shares (one home
for them: ``--out --steps --batch --lr --seed --threads`` and, for the scripts
that checkpoint, ``--run-dir``)."""
from __future__ import annotations

import argparse
from pathlib import Path


def training_parser(doc: str, *, out: str, steps: int, batch: int, lr: float | None = None,
                    threads: int | None = None, run_dir: bool = True) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc`` (the script's module
    docstring) with the shared options and these defaults; each script adds
    its own after.

    >>> p = training_parser("Train X.\\n\\nMore.", out="tests/assets/x", steps=10, batch=4, lr=1e-3)
    >>> a = p.parse_args(["--steps", "3"])
    >>> (a.out, a.steps, a.batch, a.lr, a.seed, a.threads, a.run_dir)
    (PosixPath('tests/assets/x'), 3, 4, 0.001, 0, None, None)
    """
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(out))
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch", type=int, default=batch)
    if lr is not None:
        ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=threads, help="torch intra-op threads")
    if run_dir:
        ap.add_argument("--run-dir", type=Path, default=None,
                        help="keep a resumable checkpoint here (rerun the same command to continue)")
    return ap
