"""Atomic, durable file writes: a reader (or a crashed job) never sees half a file.

``os.replace`` alone is atomic but not durable: after a power loss or a kill of
the machine the rename may reach the disk before the file's data does, leaving
a complete-looking name over a truncated file. So the data is fsynced before
the rename and the folder after it (the rename itself lives in the folder).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(path: str | os.PathLike) -> None:
    """Flush a folder's entries (renames, new names) to the disk; a no-op where
    folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename still happened
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (a staged folder), deepest first."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fsync_file(Path(folder) / name)
        fsync_folder(folder)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the same folder as ``final``; on success it
    is fsynced, moved over ``final`` with ``os.replace`` (atomic on one
    filesystem) and the folder is fsynced; on any error or interruption the
    temporary file is deleted and ``final`` is untouched.

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
        fsync_file(tmp_path)
        os.replace(tmp_path, final)
        fsync_folder(final.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def replace_folder(staged: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move a fully written folder ``staged`` to ``final``, replacing any old
    one, so that ``final`` is always either the old or the new folder whole
    (its files are fsynced before the move, the parent folder after it)."""
    import shutil

    staged, final = Path(staged), Path(final)
    _fsync_tree(staged)
    if not final.exists():
        os.replace(staged, final)
        fsync_folder(final.parent)
        return
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(final, old)
    os.replace(staged, final)
    fsync_folder(final.parent)
    shutil.rmtree(old, ignore_errors=True)
