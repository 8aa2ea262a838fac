"""Atomic writes: all or nothing, readable by others like any saved file; a full disk or a
removed folder is one clear error that leaves the earlier file intact."""

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

from quicknets.base import storage
from quicknets.base.errors import QuicknetsError
from quicknets.base.interrupts import ctrl_c_deferred
from quicknets.base.storage import (
    WriteError,
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    html_path,
    json_text,
    output_path,
)


def test_write_replaces_whole_file_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    assert target.read_text().strip() == '{\n  "x": 1\n}'
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def explode(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_missing_folder_is_created_only_when_asked(tmp_path):
    run = tmp_path / "run"  # a run folder removed while its trainer writes
    for write in (
        lambda: atomic_write_json(run / "history.json", [], parents=False),
        lambda: atomic_torch_save({"x": torch.ones(2)}, run / "ckpt.pt", parents=False),
    ):
        with pytest.raises(
            QuicknetsError,
            match=f"cannot write {run}/.*: its folder {run} no "
            r"longer exists \(removed\?\)$",
        ):
            write()
        assert not run.exists()
    atomic_write_json(run / "cache.json", [])  # a cache: its folders are made
    assert (run / "cache.json").read_text() == "[]\n"


class FullDisk:
    """A file on a disk that fills up after `room` bytes."""

    def __init__(self, f, room, code=errno.ENOSPC):
        self.f, self.room, self.code = f, room, code

    def write(self, data):
        if len(data) > self.room:
            raise OSError(self.code, os.strerror(self.code))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize(
    "code, reason",
    [(errno.ENOSPC, "no space left on the device"), (errno.EDQUOT, "disk quota exceeded")],
)
def test_a_full_disk_is_one_line_and_the_old_file_stays(tmp_path, monkeypatch, code, reason):
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode), 1000, code))
    for name, write in [
        ("a.json", lambda p: atomic_write_json(p, list(range(1000)))),
        ("a.pt", lambda p: atomic_torch_save({"w": torch.zeros(1000)}, p)),
        ("a.bin", lambda p: atomic_write_bytes(p, b"x" * 5000, parents=False)),
    ]:
        target = tmp_path / name
        target.write_bytes(b"earlier")
        with pytest.raises(WriteError) as e:
            write(target)  # torch.save alone would say "unexpected pos 64 vs 0"
        assert (
            str(e.value) == f"cannot write {target}: {reason} (the file on disk, if any, "
            "is unchanged)"
        )
        assert isinstance(e.value, QuicknetsError) and isinstance(e.value, OSError)
        assert e.value.errno == code  # callers that tolerate a failed write (caches) still can
        assert target.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.json", "a.pt"]


def test_a_real_full_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True
    ).returncode:
        pytest.skip("mounting a tmpfs needs root (test_a_full_disk_is_one_line simulates it)")
    try:
        atomic_torch_save({"w": torch.ones(100)}, disk / "checkpoint.pt", parents=False)
        before = (disk / "checkpoint.pt").read_bytes()
        with pytest.raises(
            QuicknetsError, match=f"cannot write {disk}/checkpoint.pt: no space left on the device"
        ):
            atomic_torch_save({"w": torch.ones(100_000)}, disk / "checkpoint.pt", parents=False)
        with pytest.raises(QuicknetsError, match="no space left on the device"):
            atomic_write_json(disk / "history.json", list(range(100_000)), parents=False)
        assert (disk / "checkpoint.pt").read_bytes() == before
        assert torch.load(disk / "checkpoint.pt")["w"].sum() == 100
        assert [p.name for p in disk.iterdir()] == ["checkpoint.pt"]  # no temp file left
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_output_path_refuses_a_place_that_cannot_take_the_file(tmp_path):
    """Checked before the work whose result goes there; nothing is made either way."""
    (tmp_path / "afile").write_text("kept")
    (tmp_path / "adir.png").mkdir()
    refused = {
        (tmp_path / "adir.png", False): "adir.png: it is a folder; give a file name",
        (tmp_path / "afile", True): "into .*afile: it is a file, not a folder",
        (tmp_path / "afile" / "c.png", False): "afile is a file, not a folder",
        (tmp_path / "afile" / "x" / "y" / "c.png", False): "afile is a file, not a folder",
        (tmp_path / "afile" / "x", True): "afile is a file, not a folder",
    }
    for (path, folder), message in refused.items():
        with pytest.raises(QuicknetsError, match=message):
            output_path(path, folder=folder)
    with pytest.raises(QuicknetsError, match="the page is an HTML file"):
        html_path(tmp_path / "r.txt")
    with pytest.raises(QuicknetsError, match="afile is a file, not a folder"):
        html_path(tmp_path / "afile" / "r.html")
    for path, folder in [
        (tmp_path / "new" / "deeper" / "c.png", False),  # its folders are made by the write
        (tmp_path / "afile", False),  # replaced by the write
        (tmp_path / "adir.png", True),
        (tmp_path / "new", True),
    ]:
        assert output_path(str(path), folder=folder) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.png", "afile"]
    assert (tmp_path / "afile").read_text() == "kept" and not any((tmp_path / "adir.png").iterdir())


def test_output_path_in_a_read_only_folder(tmp_path):
    """Root passes every permission test (os.access), so a read-only mount is the real case."""
    disk = tmp_path / "ro"
    disk.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(disk)], capture_output=True
    ).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        for path, folder in [(disk / "c.png", False), (disk / "a" / "b", True), (disk, True)]:
            with pytest.raises(
                QuicknetsError, match=f"no file can be made in {disk} \\(Read-only file system"
            ):
                output_path(path, folder=folder)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _strict(text: str):
    """json.loads as a strict reader: NaN, Infinity and -Infinity are refused."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_is_strict_and_non_finite_numbers_are_null(tmp_path):
    target = tmp_path / "r.json"
    obj = {
        "a": float("nan"),
        "b": [1.5, float("inf"), (float("-inf"), 2)],
        "c": {"d": None},
        "e": "nan",
        "f": 3,
    }
    atomic_write_json(target, obj)
    assert _strict(target.read_text()) == {
        "a": None,
        "b": [1.5, None, [None, 2]],
        "c": {"d": None},
        "e": "nan",
        "f": 3,
    }
    assert obj["a"] != obj["a"]  # the caller's object is left as it was
    assert _strict(json_text([float("nan")], indent=None)) == [None]


@pytest.fixture
def ctrl_c_raises():
    """SIGINT handled as Python's default, KeyboardInterrupt (pytest may have its own)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def leftovers(folder) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_ctrl_c_during_a_write_raises_once_the_whole_file_is_there(tmp_path, ctrl_c_raises):
    path = tmp_path / "f.bin"

    def write(f):
        f.write(b"first half ")
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle
        f.write(b"second half")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write)
    assert path.read_bytes() == b"first half second half" and leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_ctrl_c_inside_torch_save_is_not_a_failed_write(tmp_path, ctrl_c_raises, monkeypatch):
    """Raised inside torch.save's writes, KeyboardInterrupt came out as a RuntimeError
    ("unexpected pos"), and a run whose checkpoint it was was marked failed."""
    write = storage._Recorder.write
    calls = []

    def pressed_during(self, data):
        calls.append(len(data))
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return write(self, data)

    monkeypatch.setattr(storage._Recorder, "write", pressed_during)
    weights = {"w": torch.arange(1000.0)}
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save(weights, tmp_path / "c.pt")
    assert len(calls) > 2  # the write went on after the Ctrl-C
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], weights["w"])
    assert leftovers(tmp_path) == []


def test_a_deferred_ctrl_c_acts_as_the_handler_before_it_would_have(tmp_path):
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            assert calls == []
        assert calls == [signal.SIGINT]  # a handler of its own: called once, after
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # ignored stays ignored
    finally:
        signal.signal(signal.SIGINT, previous)
    # the default action (SIG_DFL) ends the process, after the write
    script = textwrap.dedent(
        f"""
        import os, signal
        from quicknets.base.storage import atomic_write_bytes
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        def write(f):
            f.write(b"a")
            os.kill(os.getpid(), signal.SIGINT)
            f.write(b"b")
        from quicknets.base.storage import atomic_write
        atomic_write({str(tmp_path / "g.bin")!r}, write)
        print("not reached")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGINT and "not reached" not in proc.stdout
    assert (tmp_path / "g.bin").read_bytes() == b"ab"
