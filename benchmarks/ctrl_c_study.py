"""How often a Ctrl-C leaves an Optuna study's SQLite file locked, or is lost: a child process
loops over a pruning check's writes (trial.report, trial.should_prune), SIGINT arrives at a
random moment (0.05-0.5 s), and the child then asks whether another connection can take the
write lock at once (BEGIN EXCLUSIVE). A child still looping 30 s after its Ctrl-C lost it (a
KeyboardInterrupt raised inside a SQLAlchemy finalizer is printed and dropped).

    PYTHONPATH=src python benchmarks/ctrl_c_study.py [--tries 100] [--undeferred]

With --undeferred the writes run without base/interrupts.ctrl_c_deferred, as before it was
used (measured 2026-12-06 on the Intel Xeon, load 1-3: 3 of 100 tries locked or lost without
it, 0 of 100 with it).
"""

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import nullcontext


def lock_is_free(path: str) -> bool:
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def child(path: str, undeferred: bool) -> None:
    import optuna

    from quicknets.base.interrupts import ctrl_c_deferred
    from quicknets.sweeps.study import quiet_optuna, storage_of

    with quiet_optuna():
        study = optuna.load_study(study_name="probe", storage=storage_of(f"sqlite:///{path}", 10))
        trial = study.ask()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("ready", flush=True)
        step = 0
        try:
            while True:
                step += 1
                with nullcontext() if undeferred else ctrl_c_deferred():
                    trial.report(0.5, step)
                    trial.should_prune()
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("free" if lock_is_free(path) else "LOCKED", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=100)
    parser.add_argument("--undeferred", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.undeferred)
    import optuna

    from quicknets.sweeps.study import quiet_optuna, storage_of

    path = os.path.join(tempfile.mkdtemp(), "probe.sqlite3")
    with quiet_optuna():
        optuna.create_study(storage=storage_of(f"sqlite:///{path}"), study_name="probe")
    bad = 0
    for k in range(args.tries):
        argv = [sys.executable, __file__, "--child", path]
        proc = subprocess.Popen(
            argv + (["--undeferred"] if args.undeferred else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        proc.stdout.readline()  # ready
        subprocess.run(["sleep", f"{random.uniform(0.05, 0.5):.3f}"])
        proc.send_signal(signal.SIGINT)
        try:
            said = proc.communicate(timeout=30)[0].strip()
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            said = "LOST (still looping 30 s after Ctrl-C)"
        if said != "free":
            bad += 1
            print(f"try {k + 1}: {said}", flush=True)
    how = "without" if args.undeferred else "with"
    print(f"{bad} of {args.tries} tries locked or lost ({how} ctrl_c_deferred)")


if __name__ == "__main__":
    main()
