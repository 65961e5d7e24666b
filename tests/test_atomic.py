"""engine/atomic.py: writes appear whole or not at all, and are fsynced before the rename.

A real power loss cannot be simulated cheaply, so durability is checked by
counting ``os.fsync`` calls and their order against ``os.replace``."""
from __future__ import annotations

import os

import pytest

from livelayers.engine import atomic


@pytest.fixture
def journal(monkeypatch):
    """Record fsync (of a file or a folder) and replace calls, in order."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
        events.append(("fsync", kind))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.path.basename(os.fspath(b))))
        return real_replace(a, b)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    return events


def test_atomic_path_writes_the_whole_file_fsynced_before_and_after_the_rename(tmp_path, journal):
    final = tmp_path / "sub" / "frame.0001.exr"
    payload = os.urandom(1 << 20)
    with atomic.atomic_path(final) as tmp:
        assert tmp.suffix == ".exr" and tmp.parent == final.parent
        tmp.write_bytes(payload)
    assert final.read_bytes() == payload
    assert journal == [("fsync", "file"), ("replace", "frame.0001.exr"), ("fsync", "dir")]
    assert [p.name for p in final.parent.iterdir()] == ["frame.0001.exr"]  # no temp left


def test_an_exception_leaves_no_temp_file_and_the_old_file_untouched(tmp_path, journal):
    final = tmp_path / "plate.exr"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(final) as tmp:
            tmp.write_bytes(b"half a fi")
            raise RuntimeError("killed mid-write")
    assert final.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plate.exr"]
    assert ("replace", "plate.exr") not in journal


def test_replace_folder_fsyncs_every_file_then_moves_it_whole(tmp_path, journal):
    final = tmp_path / "model"
    final.mkdir()
    (final / "weights.bin").write_bytes(b"old")
    staged = tmp_path / ".model.staged"
    (staged / "sub").mkdir(parents=True)
    (staged / "weights.bin").write_bytes(b"new weights")
    (staged / "sub" / "config.json").write_text("{}")
    atomic.replace_folder(staged, final)
    assert (final / "weights.bin").read_bytes() == b"new weights"
    assert (final / "sub" / "config.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # neither staged nor .old left
    first_replace = next(i for i, e in enumerate(journal) if e[0] == "replace")
    before = journal[:first_replace]
    assert before.count(("fsync", "file")) == 2 and before.count(("fsync", "dir")) == 2
    assert journal[-1] == ("fsync", "dir")  # the parent, after the move
