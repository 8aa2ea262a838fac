"""The runs index: one SQLite file (runs/index.sqlite) with a row per run, for listing and queries.

    record(root, name, status="running", settings={...}, created="...")   # insert or update a row
    rows = query(root, where=["optimizer=adam", "lr<0.01"], sort="-test_accuracy")

The run folders are the truth and the index is a cache of them: `query` first adds folders it
has not seen (copied in, or written by an older quicknets) and drops rows whose folder is gone.
The file uses write-ahead logging and a long busy timeout, and every write is one short
transaction, so parallel writers (sweep workers) wait for each other instead of losing rows.
WAL needs a local file system: on NFS give each machine its own runs folder.
"""
import json
import os
import socket
import sqlite3
import time
from pathlib import Path

from quicknets.errors import QuicknetsError

INDEX_FILE = "index.sqlite"
COLUMNS = ("name", "status", "created", "sweep", "host", "pid", "epochs_done",
           "test_accuracy", "test_loss", "settings")
SCHEMA = """CREATE TABLE IF NOT EXISTS runs (
    name TEXT PRIMARY KEY, status TEXT NOT NULL, created TEXT, sweep TEXT, host TEXT,
    pid INTEGER, epochs_done INTEGER, test_accuracy REAL, test_loss REAL, settings TEXT)"""
BUSY_MS = 120_000  # how long a writer waits for another one before giving up


def connect(root: Path) -> sqlite3.Connection:
    root.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + BUSY_MS / 1000
    while True:
        conn = None
        try:
            conn = sqlite3.connect(root / INDEX_FILE, timeout=BUSY_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            # Switching a new file to WAL answers "locked" at once, without the busy handler,
            # while another process does the same: such a start is retried, not fatal.
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                conn.execute(SCHEMA)
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise QuicknetsError(f"the runs index {root / INDEX_FILE} is unusable ({e}); "
                                     "delete it and it is rebuilt from the run folders") from None
            if conn is not None:
                conn.close()
            time.sleep(0.05)
        except sqlite3.DatabaseError as e:
            raise QuicknetsError(f"the runs index {root / INDEX_FILE} is unusable ({e}); delete "
                                 "it and it is rebuilt from the run folders") from None
    conn.row_factory = sqlite3.Row
    return conn


def flat_settings(config: dict) -> dict:
    """A recorded config (any layout) → one flat dict of settings (the field names are unique);
    {} for a config that cannot be read."""
    from quicknets.config import RunConfig
    from quicknets.errors import QuicknetsError
    try:
        return RunConfig.from_dict(config).flat()
    except QuicknetsError:
        return {}


def record(root: Path, name: str, **values) -> None:
    """Insert the run's row or update the given columns (settings: a dict, stored as JSON)."""
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown index columns {sorted(unknown)}")
    if "settings" in values:
        values["settings"] = json.dumps(values["settings"], sort_keys=True, default=str)
    conn = connect(root)
    try:
        with conn:  # one transaction
            conn.execute("INSERT OR IGNORE INTO runs (name, status) VALUES (?, 'running')",
                         (name,))
            if values:
                sets = ", ".join(f"{k} = ?" for k in values)
                conn.execute(f"UPDATE runs SET {sets} WHERE name = ?", (*values.values(), name))
    finally:
        conn.close()


def forget(root: Path, name: str) -> None:
    conn = connect(root)
    try:
        with conn:
            conn.execute("DELETE FROM runs WHERE name = ?", (name,))
    finally:
        conn.close()


def _row_from_folder(path: Path) -> dict:
    """An index row rebuilt from a run folder (for folders the index has not seen)."""
    def read(file):
        try:
            return json.loads((path / file).read_text())
        except (OSError, ValueError):
            return None
    config, meta, results = read("config.json") or {}, read("meta.json") or {}, read("results.json")
    history = read("history.json") or []
    return {"status": "done" if results else "stopped", "created": meta.get("created"),
            "sweep": meta.get("sweep"), "epochs_done": len(history) if results else None,
            "test_accuracy": (results or {}).get("accuracy"),
            "test_loss": (results or {}).get("loss"), "settings": flat_settings(config)}


def sync(root: Path) -> None:
    """Add run folders missing from the index; drop rows whose folder was deleted."""
    conn = connect(root)
    try:
        known = {r["name"] for r in conn.execute("SELECT name FROM runs")}
    finally:
        conn.close()
    on_disk = {p.name for p in root.iterdir()
               if not p.name.startswith(".") and (p / "config.json").is_file()}
    for name in sorted(on_disk - known):
        record(root, name, **_row_from_folder(root / name))
    for name in sorted(known - on_disk):
        forget(root, name)


def alive(host: str | None, pid: int | None) -> bool:
    """Whether a process on this machine is still running (unknown elsewhere: assume so)."""
    if not pid or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


OPERATORS = ("<=", ">=", "!=", "=", "<", ">")  # longest first, so "<=" is not read as "<"


def parse_filter(text: str) -> tuple:
    """'lr<0.01' → ('lr', '<', 0.01); values that look like numbers compare as numbers."""
    for op in OPERATORS:
        key, sep, value = text.partition(op)
        if sep and key.strip():
            key, value = key.strip(), value.strip()
            key = check_key(key)
            try:
                value = float(value) if value.lower() not in ("nan", "inf", "-inf") else value
            except ValueError:
                pass
            if value in ("true", "false"):
                value = 1 if value == "true" else 0  # JSON booleans come back as 1/0
            return key, op, value
    raise QuicknetsError(f"bad filter {text!r}: use KEY=VALUE, KEY<VALUE, KEY>=VALUE, ...")


def check_key(key: str) -> str:
    """The column or setting a key names (old names accepted): only index columns and config
    fields may be filtered or sorted on (and go into SQL)."""
    from quicknets.config import ALIASES, FIELDS
    from quicknets.metrics import OLD_NAMES
    key = ALIASES.get(key, OLD_NAMES.get(key, key))
    known = set(COLUMNS) | set(FIELDS)
    if key not in known:
        raise QuicknetsError(f"unknown key {key!r}: use a setting ({', '.join(sorted(known))})")
    return key


def _column(key: str) -> str:
    """A column name, or the JSON path of a setting inside `settings`."""
    return key if key in COLUMNS else f"json_extract(settings, '$.{key}')"


def query(root: Path, where=(), sort: str | None = None, status: str | None = None,
          sweep: str | None = None) -> list:
    """Rows (dicts, `settings` decoded) matching every filter, sorted by a column or setting
    (`-key` for descending; default: creation time)."""
    if not root.is_dir():
        return []
    sync(root)
    clauses, params = [], []
    for text in where:
        key, op, value = parse_filter(text)
        clauses.append(f"{_column(key)} {op} ?")
        params.append(value)
    if sweep:
        clauses.append("sweep = ?")
        params.append(sweep)
    order = "created, name"
    if sort:
        desc = sort.startswith("-")
        key = check_key(sort.lstrip("-"))
        order = f"{_column(key)} {'DESC' if desc else 'ASC'} NULLS LAST, name"
    sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
    conn = connect(root)
    try:
        rows = [dict(r) for r in conn.execute(f"{sql} ORDER BY {order}", params)]
    except sqlite3.OperationalError as e:
        raise QuicknetsError(f"bad query: {e}") from None
    finally:
        conn.close()
    for row in rows:
        row["settings"] = json.loads(row["settings"] or "{}")
        if row["status"] == "running" and not alive(row["host"], row["pid"]):
            row["status"] = "stopped"  # killed: resumable with quicknets train --resume
    if status and status != "all":
        rows = [r for r in rows if r["status"] == status]
    return rows
