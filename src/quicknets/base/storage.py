"""Atomic writes and the user cache folder.

    atomic_write_json(run / "history.json", history, parents=False)   # the run folder must exist
    atomic_torch_save(tensors, cache_dir() / "decoded" / "x.pt")      # folders made as needed

Everything quicknets saves goes to a temporary file in the same folder, then `os.replace`, so a
crash or a full disk mid-write leaves the old file or none, never half of one; a Ctrl-C waits
for the write to end (interrupts.ctrl_c_deferred). A failed write is
a WriteError: one line for the user ("cannot write X: no space left on the device"), and still an
OSError for callers that can do without the file (the decoded-data cache). Files inside a run
folder are written with parents=False: a run removed while it trains stays removed, and the
trainer gets a clear error instead of recreating a broken folder. JSON is written strict
(json_text): a NaN or infinity, which JSON has no word for, is written as null.
"""

import errno
import json
import math
import os
import tempfile
from pathlib import Path

from quicknets.base.errors import QuicknetsError
from quicknets.base.interrupts import ctrl_c_deferred


class WriteError(QuicknetsError, OSError):
    """A file that could not be written; `strerror` is the reason alone."""

    def __init__(self, path, code: int | None, reason: str):
        super().__init__(code, reason, str(path))

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def write_error(path, e: OSError) -> WriteError:
    if isinstance(e, WriteError):
        return e
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        full = "no space left on the device" if e.errno == errno.ENOSPC else "disk quota exceeded"
        return WriteError(path, e.errno, f"{full} (the file on disk, if any, is unchanged)")
    return WriteError(path, e.errno, e.strerror or str(e))


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/quicknets, or ~/.cache/quicknets."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "quicknets"


def output_path(path, folder: bool = False) -> Path:
    """`path` as a Path, checked before the work whose result goes there, so a place that cannot
    take it is one error at once, not after the work and its printed table: not a folder (with
    `folder`: not a file), below no file, under a folder in which this process can make a file
    (tried with a nameless temporary file; no folder is made). Raises QuicknetsError ("cannot
    write PATH: WHY")."""
    path = Path(path)
    cannot = f"cannot write into {path}" if folder else f"cannot write {path}"
    if folder and path.exists() and not path.is_dir():
        raise QuicknetsError(f"{cannot}: it is a file, not a folder")
    if not folder and path.is_dir():
        raise QuicknetsError(f"{cannot}: it is a folder; give a file name")
    start = path if folder else path.parent  # where the files are made
    above = next((p for p in (start, *start.parents) if p.exists()), Path("."))
    if not above.is_dir():
        raise QuicknetsError(f"{cannot}: {above} is a file, not a folder")
    try:  # a nameless file (O_TMPFILE), as the write will make one; os.access misses read-only
        with tempfile.TemporaryFile(dir=above):  # mounts, and root passes every permission test
            pass
    except OSError as e:
        raise QuicknetsError(f"{cannot}: no file can be made in {above} ({e.strerror})") from None
    return path


def html_path(path, what: str = "the page") -> Path:
    """`path` as a Path; raises QuicknetsError unless it names an HTML file (.html, .htm), so a
    page is never written under another kind's name (`--out r.txt`, `--out r.png`), in a place
    that can take it (output_path)."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise QuicknetsError(f"{what} is an HTML file: give a name ending in .html, not {path}")
    return output_path(path)


def atomic_write(path, write, parents: bool = True) -> None:
    """Call `write(f)` on a temporary binary file beside `path`, then rename it onto `path`.
    With parents=False a missing folder is an error rather than created."""
    path = Path(path)
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except FileNotFoundError as e:
        if parents:
            raise write_error(path, e) from None
        raise WriteError(
            path, errno.ENOENT, f"its folder {path.parent} no longer exists (removed?)"
        ) from None
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with ctrl_c_deferred():
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; saved files are for sharing
            os.replace(tmp, path)
    except OSError as e:  # a full disk, a quota, a folder removed meanwhile
        Path(tmp).unlink(missing_ok=True)
        if not parents and not path.parent.is_dir():
            raise WriteError(
                path, errno.ENOENT, f"its folder {path.parent} no longer exists (removed?)"
            ) from None
        raise write_error(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes, parents: bool = True) -> None:
    atomic_write(path, lambda f: f.write(data), parents)


def json_text(obj, indent: int | None = 2) -> str:
    """Strict JSON, as every reader takes it: NaN and infinity, which JSON lacks (Python would
    write a bare NaN that strict readers reject), become null, and anything else that is not
    JSON is written as its str()."""
    return json.dumps(_finite(obj), indent=indent, default=str, allow_nan=False)


def _finite(obj):
    """`obj` with every non-finite float replaced by None (a copy where one is found)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def atomic_write_json(path, obj, parents: bool = True) -> None:
    """`obj` as strict JSON (json_text) in `path`, atomically."""
    atomic_write_bytes(path, (json_text(obj) + "\n").encode(), parents)


class _Recorder:
    """A file that remembers the OSError of a failed write: torch.save reports a full disk as
    "unexpected pos N vs M" and drops the cause."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        return self.f.flush()


def load_refusal(e: Exception) -> str:
    """One line saying why torch.load(..., weights_only=True) did not load a file, in place of
    torch's own message, whose advice (load it again with weights_only=False) would run any code
    the file holds: a corrupt file, a foreign one, or one holding objects other than tensors."""
    text = str(e).strip()
    if "Unsupported global" in text:  # a pickled object the weights-only loader refuses
        return "it holds objects other than weights (refused: loading it could run code)"
    if "Weights only load failed" in text:  # "Unsupported operand": garbage or a raw pickle
        return "it is corrupt or not a file of plain tensors (not loaded: it could run code)"
    return text.splitlines()[0] if text else type(e).__name__


def atomic_torch_save(obj, path, parents: bool = True) -> None:
    import torch  # here, so that importing storage stays light

    def save(f):
        sink = _Recorder(f)
        try:
            torch.save(obj, sink)
        except Exception:
            if sink.error is not None:
                raise sink.error from None  # atomic_write turns it into one line
            raise

    atomic_write(path, save, parents)
