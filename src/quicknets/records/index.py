"""The runs index: one SQLite file (runs/index.sqlite) with a row per run, for listing and queries.

    rows = query(root, where=["optimizer=adam", "lr<0.01"], sort="-test_accuracy")
    record(root, name, status="done", ...)      # insert or update a row by hand

The run folders are the truth and the index is a cache of them: before each query, `sync` reads
again every folder whose files changed since (a stamp of their inodes, times and sizes), adds
folders it has not seen, drops rows whose folder is gone, and asks the folders whose run is not
finished for their live state (runfolder.py). So a row holds everything its folder holds, even
when the index was deleted mid-training. A runs folder that cannot be written is indexed in
memory. The file uses write-ahead logging and a long busy timeout, and every write is one short
transaction, so parallel writers (sweep workers) wait for each other instead of losing rows.
WAL needs a local file system: on NFS give each machine its own runs folder.
"""

import json
import os
import sqlite3
import time
from dataclasses import fields
from pathlib import Path

from quicknets.base.errors import QuicknetsError
from quicknets.config.configs import FORMAT
from quicknets.evaluation.metric_names import OLD_NAMES
from quicknets.records.runfolder import INDEXED_METRICS, describe, run_state, stamp

INDEX_FILE = "index.sqlite"
COLUMNS = (
    "name",
    "status",
    "created",
    "sweep",
    "host",
    "pid",
    "epochs_done",
    *INDEXED_METRICS,  # runfolder.final_metrics, validation of the kept epoch
    "settings",
    "problem",
    "stamp",
)
SCHEMA = """CREATE TABLE IF NOT EXISTS runs (
    name TEXT PRIMARY KEY, status TEXT NOT NULL, created TEXT, sweep TEXT, host TEXT,
    pid INTEGER, epochs_done INTEGER, test_accuracy REAL, test_loss REAL, val_accuracy REAL,
    val_loss REAL, test_ece REAL, mean_corruption_accuracy REAL, settings TEXT, problem TEXT,
    stamp TEXT)"""
ADDED = {
    "problem": "TEXT",
    "stamp": "TEXT",
    "val_accuracy": "REAL",
    "val_loss": "REAL",
    "test_ece": "REAL",
    "mean_corruption_accuracy": "REAL",
}  # columns an index made by an older quicknets lacks
BUSY_MS = 120_000  # how long a writer waits for another one before giving up
LIVE = ("running", "stopped", "interrupted", "pruned", "failed")  # may change without a write


def _unusable(root: Path, e) -> QuicknetsError:
    return QuicknetsError(
        f"the runs index {root / INDEX_FILE} is unusable ({e}); delete it and "
        "it is rebuilt from the run folders"
    )


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
                have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
                for column, kind in ADDED.items():
                    if column not in have:
                        conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
                # a row's settings are read as configs.FORMAT reads them (upgrade): another
                # format, or a column added, and every folder is read again
                read_as = conn.execute("PRAGMA user_version").fetchone()[0]
                if not have >= set(ADDED) or read_as != FORMAT:
                    conn.execute("UPDATE runs SET stamp = NULL")  # read every folder again
                    conn.execute(f"PRAGMA user_version = {FORMAT}")
            break
        except sqlite3.OperationalError as e:
            if conn is not None:
                conn.close()
            if "duplicate column" in str(e):  # another process added it first
                continue
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise _unusable(root, e) from None
            time.sleep(0.05)
        except sqlite3.DatabaseError as e:
            raise _unusable(root, e) from None
    conn.row_factory = sqlite3.Row
    return conn


def _in_memory() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(SCHEMA)
    conn.row_factory = sqlite3.Row
    return conn


def writable(root: Path) -> bool:
    """Whether the index file can be written (a read-only runs folder is listed from memory)."""
    file = root / INDEX_FILE
    return os.access(root, os.W_OK) and (not file.exists() or os.access(file, os.W_OK))


def _write(conn, name: str, values: dict) -> None:
    if "settings" in values:
        values = {**values, "settings": json.dumps(values["settings"], sort_keys=True, default=str)}
    conn.execute("INSERT OR IGNORE INTO runs (name, status) VALUES (?, 'running')", (name,))
    if values:
        sets = ", ".join(f"{k} = ?" for k in values)
        conn.execute(f"UPDATE runs SET {sets} WHERE name = ?", (*values.values(), name))


def record(root: Path, name: str, **values) -> None:
    """Insert the run's row or update the given columns (settings: a dict, stored as JSON)."""
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown index columns {sorted(unknown)}")
    conn = connect(root)
    try:
        with conn:  # one transaction
            _write(conn, name, values)
    finally:
        conn.close()


def run_folders(root: Path) -> list:
    try:
        return sorted(
            p.name
            for p in root.iterdir()
            if not p.name.startswith(".") and (p / "config.json").is_file()
        )
    except OSError as e:
        raise QuicknetsError(f"cannot read the runs folder {root}: {e.strerror}") from None


def sync(root: Path, conn: sqlite3.Connection | None = None) -> None:
    """Bring the index up to the folders: read changed and new ones again, drop rows whose
    folder was deleted, refresh the state of unfinished runs."""
    own = conn is None
    conn = connect(root) if own else conn
    try:
        cached = {
            r["name"]: (r["stamp"], r["status"], r["pid"])
            for r in conn.execute("SELECT name, stamp, status, pid FROM runs")
        }
        with conn:  # one transaction, written only if something changed
            on_disk = run_folders(root)
            for name in on_disk:
                path, was = root / name, cached.get(name)
                now = stamp(path)  # before reading: a file written meanwhile is read next time
                if was is None or was[0] != now:
                    _write(conn, name, {**describe(path), "stamp": now})
                elif was[1] in LIVE:
                    state = run_state(path)
                    if (state["status"], state["pid"]) != was[1:]:
                        _write(conn, name, state)
            for name in set(cached) - set(on_disk):
                conn.execute("DELETE FROM runs WHERE name = ?", (name,))
    except sqlite3.DatabaseError as e:
        raise _unusable(root, e) from None
    finally:
        if own:
            conn.close()


OPERATORS = ("<=", ">=", "!=", "=", "<", ">")  # longest first, so "<=" is not read as "<"
NUMERIC_COLUMNS = ("pid", "epochs_done", *INDEXED_METRICS)


def parse_filter(text: str) -> tuple:
    """'lr<0.01' → ('lr', '<', 0.01); values that look like numbers compare as numbers, and a
    numeric setting or metric compares only with a number."""
    for op in OPERATORS:
        key, sep, value = text.partition(op)
        if sep and key.strip():
            key, value = check_key(key.strip()), value.strip()
            try:
                value = float(value) if value.lower() not in ("nan", "inf", "-inf") else value
            except ValueError:
                if key in numeric_keys():  # "lr<abc" would compare a number with text
                    raise QuicknetsError(
                        f"bad filter {text!r}: {key} is a number, and {value!r} is not"
                    ) from None
            if value in ("true", "false"):
                value = 1 if value == "true" else 0  # JSON booleans come back as 1/0
            return key, op, value
    raise QuicknetsError(f"bad filter {text!r}: use KEY=VALUE, KEY<VALUE, KEY>=VALUE, ...")


def _config_fields() -> list:
    from quicknets.config.configs import SECTIONS

    return [f for c in SECTIONS.values() for f in fields(c)]


def numeric_keys() -> set:
    """The metrics and the settings that hold numbers (int or float, not bool)."""
    return set(NUMERIC_COLUMNS) | {
        f.name for f in _config_fields() if f.type in (int, float, "int", "float")
    }


def check_key(key: str) -> str:
    """The column or setting a key names (old names accepted: layers, model, test_acc, ...):
    only index columns and config fields may be filtered or sorted on (and go into SQL)."""
    from quicknets.config.configs import ALIASES

    key = ALIASES.get(key, OLD_NAMES.get(key, key))
    known = set(COLUMNS) - {"stamp"} | {f.name for f in _config_fields()}
    if key not in known:
        raise QuicknetsError(f"unknown key {key!r}: use a setting ({', '.join(sorted(known))})")
    return key


def _column(key: str) -> str:
    """A column name, or the JSON path of a setting inside `settings`."""
    return key if key in COLUMNS else f"json_extract(settings, '$.{key}')"


def query(
    root: Path,
    where=(),
    sort: str | None = None,
    status: str | None = None,
    sweep: str | None = None,
    unknown_matches: bool = False,
) -> list:
    """Rows (dicts, `settings` decoded) matching every filter, sorted by a column or setting
    (`-key` for descending; default: creation time). `status`: done, running, stopped,
    interrupted, pruned, failed, unreadable, or all (also None). `unknown_matches`: a value the
    folder could not tell (an unreadable file) matches every filter: the runs that may match."""
    clauses, params = [], []
    unknown = " OR {} IS NULL" if unknown_matches else ""
    for text in where:
        key, op, value = parse_filter(text)
        clauses.append(f"({_column(key)} {op} ?{unknown.format(_column(key))})")
        params.append(value)
    if sweep:
        clauses.append(
            "(sweep = ?"
            + (" OR sweep IS NULL AND problem LIKE '%meta.json%'" if unknown_matches else "")
            + ")"
        )
        params.append(sweep)
    if status and status != "all":
        clauses.append("status = ?")
        params.append(status)
    order = "created, name"
    if sort:
        desc = sort.startswith("-")
        key = check_key(sort.lstrip("-"))
        order = f"{_column(key)} {'DESC' if desc else 'ASC'} NULLS LAST, name"
    if not root.is_dir():
        return []
    conn = connect(root) if writable(root) else _in_memory()
    try:
        sync(root, conn)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        rows = [dict(r) for r in conn.execute(f"{sql} ORDER BY {order}", params)]
    except sqlite3.OperationalError as e:
        raise QuicknetsError(f"bad query: {e}") from None
    finally:
        conn.close()
    for row in rows:
        row["settings"] = json.loads(row["settings"] or "{}")
        del row["stamp"]
    return rows
