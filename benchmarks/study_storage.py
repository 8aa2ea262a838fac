"""How a shared study on PostgreSQL scales with workers: trials/s and time in storage calls.

    python study_storage.py postgresql+psycopg://postgres@127.0.0.1:55432/postgres [stub|tiny]

stub: the worker loop of quicknets.sweeps.study with training replaced by a no-op (the study is
the only work: the ceiling the storage allows). tiny: real 1-epoch trials on generated data.
Each worker process counts its SQL statements and the time spent in them (SQLAlchemy events).
"""

import multiprocessing as mp
import os
import sys
import threading
import time

URL = sys.argv[1]
MODE = sys.argv[2] if len(sys.argv) > 2 else "stub"
TINY = "/tmp/qs/tiny"  # made on the first run (tiny mode): 300 + 100 generated 28x28 images


def make_tiny() -> None:
    """Write a small learnable IDX set (class c: a bright bar in row band c) into TINY."""
    import numpy as np

    from quicknets.data.idx import write_idx

    os.makedirs(TINY, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("t10k", 100)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 220
        write_idx(f"{TINY}/{split}-images-idx3-ubyte", images)
        write_idx(f"{TINY}/{split}-labels-idx1-ubyte", labels)


def child(work, out, start_evt):
    os.environ["OMP_NUM_THREADS"] = "1"
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    stats = {"queries": 0, "db_s": 0.0}
    lock = threading.Lock()

    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn, cursor, statement, params, context, executemany):
        conn.info.setdefault("t", []).append(time.perf_counter())

    @event.listens_for(Engine, "after_cursor_execute")
    def after(conn, cursor, statement, params, context, executemany):
        dt = time.perf_counter() - conn.info["t"].pop()
        with lock:
            stats["queries"] += 1
            stats["db_s"] += dt

    import quicknets.sweeps.worker as study
    from quicknets.sweeps.pool import Outcome

    if MODE == "stub":

        def fake_train(job, stop, on_epoch=None, on_start=None):
            on_start(type("P", (), {"name": f"fake-{os.getpid()}-{time.perf_counter_ns()}"})())
            return Outcome(
                job.overrides,
                "done",
                0.0,
                [f"fake-{os.getpid()}"],
                0.5,
                history=[{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "seconds": 0.01}],
                test={"accuracy": 0.5, "loss": 1.0},
            )

        study.train_job = fake_train
    import torch  # noqa: F401  (as a real worker: imported before the clock starts)

    told = []
    start_evt.wait()
    t0 = time.perf_counter()
    study.study_worker(work, told.append, threading.Event())
    out.put({"pid": os.getpid(), "trials": len(told), "wall": time.perf_counter() - t0, **stats})


def run(n_workers, n_trials, name):
    from quicknets.sweeps.pool import Job
    from quicknets.sweeps.space import Search
    from quicknets.sweeps.study import create_study
    from quicknets.sweeps.worker import StudyWork

    base = {
        "dataset": "mnist",
        "data_dir": TINY,
        "verify": False,
        "epochs": 1,
        "network": "784-8-10",
    }
    search = Search.build(base, {"lr": [round(1e-4 * (i + 1), 6) for i in range(n_trials)]})
    create_study(URL, name, search, heartbeat=10)
    job = Job(base, {}, name, search.metric, 1, f"/tmp/bench/runs-{name}")
    ctx = mp.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=child, args=(StudyWork(URL, name, search, job, i, 10), out, go))
        for i in range(n_workers)
    ]
    for p in procs:
        p.start()
    time.sleep(8)  # imports done
    conns = []
    import sqlalchemy

    eng = sqlalchemy.create_engine(URL)

    def sample():
        with eng.connect() as c:
            conns.append(
                c.execute(
                    sqlalchemy.text(
                        "select count(*) from pg_stat_activity where backend_type='client backend'"
                    )
                ).scalar()
                - 1
            )

    t0 = time.perf_counter()
    go.set()
    results = []
    while len(results) < n_workers:
        try:
            results.append(out.get(timeout=0.5))
        except Exception:
            sample()
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    eng.dispose()
    done = sum(r["trials"] for r in results)
    q = sum(r["queries"] for r in results)
    db = sum(r["db_s"] for r in results)
    busy = sum(r["wall"] for r in results)
    print(
        f"{MODE} workers={n_workers} trials={done} wall={wall:.1f}s "
        f"trials/s={done / wall:.1f} queries/trial={q / done:.1f} "
        f"storage ms/trial={1000 * db / done:.1f} storage share={db / busy:.0%} "
        f"pg connections max={max(conns) if conns else '?'}"
    )


if __name__ == "__main__":
    if MODE == "tiny" and not os.path.isdir(TINY):
        make_tiny()
    counts = [int(x) for x in (sys.argv[3] if len(sys.argv) > 3 else "1,2,4").split(",")]
    trials = 200 if MODE == "stub" else 40
    for n in counts:
        run(n, trials, f"bench-{MODE}-{n}-{os.getpid()}")
