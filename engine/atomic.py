"""Atomic file writes: a reader (or a crashed job) never sees half a file."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the same folder as ``final``; on success it
    is moved over ``final`` with ``os.replace`` (atomic on one filesystem), on
    any error or interruption it is deleted and ``final`` is untouched.

    ``suffix`` defaults to the final file's own, so writers that pick the
    format from the extension (OpenImageIO) still see ``.exr``.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=suffix or final.suffix,
                               dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 files; give the result the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def replace_folder(staged: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move a fully written folder ``staged`` to ``final``, replacing any old
    one, so that ``final`` is always either the old or the new folder whole."""
    import shutil

    staged, final = Path(staged), Path(final)
    if not final.exists():
        os.replace(staged, final)
        return
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(final, old)
    os.replace(staged, final)
    shutil.rmtree(old, ignore_errors=True)
