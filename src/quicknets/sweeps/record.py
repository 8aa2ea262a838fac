"""A sweep's name and its record: runs/sweeps/NAME.json holds the sweep's Search (what to
try), so `quicknets sweep --resume-sweep NAME` can continue it. A name is used once.

    check_name("fashion12"); refuse_used_name("fashion12", runs_dir)
    save_record(name, search, runs_dir, storage); load_record(name, runs_dir)
"""

import json
import re
import time

from quicknets.base.errors import QuicknetsError

RECORDS = "sweeps"  # runs/sweeps/NAME.json: each sweep's Search, for --resume-sweep


def check_name(name) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise QuicknetsError(
            f"a sweep name is letters, digits, '.', '_' and '-', starting with "
            f"a letter or digit; got {name!r}"
        )
    return name


def new_name() -> str:
    import os

    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"


def record_path(name: str, runs_dir=None):
    from quicknets.records.runs import runs_root

    return runs_root(runs_dir) / RECORDS / f"{name}.json"


def refuse_used_name(name: str, runs_dir=None) -> None:
    """A sweep's name is used once: runs of an earlier sweep of that name would be ranked as
    extra seeds of this one."""
    from quicknets.records import index
    from quicknets.records.runs import runs_root

    root = runs_root(runs_dir)
    runs = index.query(root, status="all", sweep=name)
    if runs or record_path(name, runs_dir).is_file():
        hint = (
            f", or continue it with `quicknets sweep --resume-sweep {name}`"
            if record_path(name, runs_dir).is_file()
            else ""
        )
        raise QuicknetsError(
            f"the sweep name {name!r} is already used in {root} "
            f"({len(runs)} run(s)); choose another --name, look at it with "
            f"`quicknets compare --sweep {name}`{hint}"
        )


def release_name(name: str, runs_dir, url: str | None) -> None:
    """Forget a sweep that made no run: its record, and its study if it holds no trial."""
    from quicknets.records import index
    from quicknets.records.runs import runs_root

    if index.query(runs_root(runs_dir), status="all", sweep=name):
        return
    record_path(name, runs_dir).unlink(missing_ok=True)
    if url:
        from quicknets.sweeps.study import delete_if_unused

        delete_if_unused(url, name)


def save_record(name: str, spec, runs_dir, storage) -> None:
    """Keep the sweep's Search (`spec`) as runs/sweeps/NAME.json."""
    from quicknets.base.storage import atomic_write_json

    atomic_write_json(
        record_path(name, runs_dir),
        {
            "name": name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "storage": bool(storage),
            "search": spec.to_dict(),
        },
    )


def load_record(name: str, runs_dir=None) -> dict | None:
    path = record_path(name, runs_dir)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise QuicknetsError(f"{path} is unreadable ({e})") from None


def continue_command(name: str, runs_dir, storage=None) -> str:
    return (
        f"quicknets sweep --resume-sweep {name}"
        + (f" --runs-dir {runs_dir}" if runs_dir else "")
        + (" --storage URL" if storage else "")
    )
