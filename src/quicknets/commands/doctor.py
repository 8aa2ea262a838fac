"""quicknets doctor: check this setup in about ten seconds, one line per check (doctor.py).

    quicknets doctor                     # versions, data, cores, a tiny training, a run record
    quicknets doctor --runs-dir /scratch/runs

Exit status 0 when every required check passes (missing optional parts are warnings), 1 when
one fails; each line that is not ok says what to do.
"""

from quicknets.commands.common import add_runs_dir


def add_parser(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="check this setup: versions, data, cores, a tiny training, run records, extras",
        description=(
            "Check this setup in about ten seconds: versions, where each built-in dataset is, "
            "threads and CPU features, a tiny training on generated images, a run record "
            "written and read back in the runs folder (removed after), and which optional "
            "parts are installed. One line per check, with what to do when it is not ok."
        ),
    )
    add_runs_dir(p)
    p.add_argument(
        "--data-dir",
        default=None,
        help=(
            "folder to look for the datasets in (default: $QUICKNETS_DATA, the user cache, "
            "the Debian package's folder)"
        ),
    )
    p.set_defaults(handler=run)


def run(args) -> int:
    import time

    from quicknets.doctor import FAIL, WARN, run_checks

    start = time.perf_counter()
    counts = {}
    for check in run_checks(args.runs_dir, args.data_dir):
        counts[check.status] = counts.get(check.status, 0) + 1
        print(f"{check.status:<4}  {check.line}")
    seconds = time.perf_counter() - start
    failed, warned = counts.get(FAIL, 0), counts.get(WARN, 0)
    verdict = f"{failed} required check(s) failed" if failed else "every required check passed"
    print(f"doctor: {verdict}, {warned} warning(s), in {seconds:.1f} s")
    return 1 if failed else 0
