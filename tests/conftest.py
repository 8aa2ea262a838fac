"""Shared fixtures: real Fashion-MNIST (from the Debian package) and small generated IDX sets.

The user cache is redirected to a temporary folder for the whole session, so tests neither read
nor leave anything in ~/.cache, and runs go to per-test temporary folders.
"""

import importlib
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

_CACHE = tempfile.mkdtemp(prefix="quicknets-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE  # before quicknets reads it; subprocesses inherit it
os.environ.pop("QUICKNETS_DATA", None)
os.environ.pop("QUICKNETS_RUNS", None)
os.environ.pop("QUICKNETS_MIRROR", None)
# The tests run in the math mode of every quicknets process, MKL's strict one, chosen before
# anything multiplies (as the CLI's entry does), whatever test runs first; a test of another
# mode starts a child process (test_machine.py).
from quicknets.base.machine import use_strict_math  # noqa: E402

use_strict_math()
os.environ["PYTHONFAULTHANDLER"] = "1"  # a child ended by SIGABRT prints its threads' stacks

# Tests wait on events (a file, a line, a process's exit), never on a time. HANG_S only tells a
# hang from a slow machine: a full suite on busy shared cores can stretch an event to minutes.
HANG_S = 900


def hung(proc: subprocess.Popen, what: str):
    """Fail the test: `proc` (and its process group, if it leads one) hung waiting for `what`;
    SIGABRT makes each Python process in it print where it was (PYTHONFAULTHANDLER)."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGABRT)
        else:
            proc.send_signal(signal.SIGABRT)
    except ProcessLookupError:
        pass
    out, err = proc.communicate()
    pytest.fail(f"no {what} after {HANG_S} s: hung? stderr:\n{(err or '')[-6000:]}", pytrace=False)


def finish(proc: subprocess.Popen) -> tuple:
    """(stdout, stderr) of `proc` once it exits, however long a busy machine takes."""
    try:
        return proc.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        hung(proc, "exit")


def wait_until(ready, proc: subprocess.Popen | None = None, what: str = "event") -> None:
    """Poll `ready()` every 20 ms until it holds; fail at once if `proc` exits first."""
    deadline = time.monotonic() + HANG_S
    while not ready():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(
                f"the process ended ({proc.returncode}) before the {what}:\n{out}\n{err}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            hung(proc, what) if proc is not None else pytest.fail(f"no {what} after {HANG_S} s")
        time.sleep(0.02)


def read_line(proc: subprocess.Popen, what: str = "line") -> str:
    """The next line of `proc`'s stdout (text mode), for a child that prints one line and then
    waits to be answered (so no second line sits unseen in the pipe's buffer)."""
    ready, _, _ = select.select([proc.stdout], [], [], HANG_S)
    if not ready:
        hung(proc, what)
    return proc.stdout.readline()


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def make_idx_dataset(
    folder: Path, n_train=300, n_test=100, classes=10, seed=0, compress=False
) -> Path:
    """Write four small, learnable IDX files: class c is a bright bar in row band c."""
    from quicknets.data.idx import write_idx

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % classes).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 220
        suffix = ".gz" if compress else ""
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, compress)
    return folder


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST, loaded once per session."""
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(
            "Fashion-MNIST is missing: apt-get install dataset-fashion-mnist "
            "(scripts/setup.sh does it)"
        )
    from quicknets.data.loading import load_dataset

    return load_dataset("fashion-mnist")


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    """A folder of small generated IDX files (raw)."""
    return make_idx_dataset(tmp_path / "tiny")


@pytest.fixture
def tiny(tiny_dir):
    """A small generated dataset, loaded as MNIST without digest checks."""
    from quicknets.data.loading import load_dataset

    return load_dataset("mnist", tiny_dir, verify=False, download=False)


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return tmp_path / "runs"


def need(module: str):
    """An optional package the test extra installs: its absence is a broken setup, not a skip."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(
            f"{module} is missing: pip install -e '.[test]' (scripts/setup.sh test does it)",
            pytrace=False,
        )


# A child's first lines for start_together: it says it is ready, then waits for the word.
READY_THEN_GO = "import sys; print('ready', flush=True); sys.stdin.readline()\n"


def start_together(procs: list) -> None:
    """Let children that begin with READY_THEN_GO (started with stdin and stdout as text pipes)
    go at once, each past its imports, however slowly the machine started them."""
    for proc in procs:
        assert read_line(proc, "ready line") == "ready\n", finish(proc)
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()


# --- a PostgreSQL server on loopback (tests/sweeps: test_optuna_search, test_study) ---


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.fail(
            "PostgreSQL is missing: apt-get install postgresql (scripts/setup.sh test does it)"
        )
    return found[-1].parent


@pytest.fixture
def postgres():
    """A private PostgreSQL server on 127.0.0.1 (a free port), stopped and deleted after."""
    bin_dir = pg_bin()
    home = Path(tempfile.mkdtemp(prefix="quicknets-pg-"))
    as_pg = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(home, "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*cmd):
        return subprocess.run(
            as_pg + [str(c) for c in cmd],
            check=True,
            capture_output=True,
            text=True,
            timeout=HANG_S,
        )

    run(bin_dir / "initdb", "-D", home / "data", "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(
        bin_dir / "pg_ctl",
        "-D",
        home / "data",
        "-l",
        home / "log",
        "-w",
        "-o",
        f"-p {port} -k {home} -c listen_addresses=127.0.0.1",
        "start",
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(bin_dir / "pg_ctl", "-D", home / "data", "-m", "fast", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


# --- a huge PNG that costs nothing on disk (tests/data/test_images, tests/outputs/test_demo) ---


def write_blank_png(path, width: int, height: int):
    """A valid all-black 1-bit PNG written row by row: 20000x20000 is about 50 KB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    row = bytes(1 + (width + 7) // 8)  # filter type 0, then the packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def denormals_flushed() -> bool:
    """Whether this thread now flushes denormals: a denormal input (DAZ) and a product that
    underflows into the denormal range (FTZ) both come out 0."""
    import torch

    tiny = torch.finfo(torch.float32).tiny  # the smallest normal float32, 1.2e-38
    denormal = torch.tensor([tiny / 4])
    return (denormal * 1.0).item() == 0.0 and (torch.tensor([tiny]) * 0.25).item() == 0.0
