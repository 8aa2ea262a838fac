"""A quicknets command's CPU split between its own process and the processes it starts.

    PYTHONPATH=src python benchmarks/rusage.py sweep --seeds 5 --epochs 1 --quiet --workers 2

Runs the command line in this process (as `python -m quicknets ...`), then prints to stderr its
wall time in seconds, this process's CPU seconds (user + system), its children's (a sweep's
workers, once they have ended) and whether this process imported torch.
"""

import resource
import sys
import time

if __name__ == "__main__":
    start = time.perf_counter()
    from quicknets.cli import main

    code = main(sys.argv[1:])
    wall = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"wall {wall:.2f} s, own CPU {own.ru_utime + own.ru_stime:.2f} s, children's CPU "
        f"{children.ru_utime + children.ru_stime:.2f} s, torch imported: {'torch' in sys.modules}",
        file=sys.stderr,
    )
    sys.exit(code)
