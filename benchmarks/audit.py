"""The data audit on a CSV with planted problems: does it find them, and how fast (run by hand).

    PYTHONPATH=src python benchmarks/audit.py [--rows 10000] [--threads 2] [--folds 4] ...

Builds planted_train.csv and planted_test.csv (Kaggle's layout: a header, then the label and
784 pixels per row) from the first --rows Fashion-MNIST test images: 80% train, 20% test, then
--flips training labels changed to another class, --duplicates training rows copied once more
into train, --overlaps training rows copied into the test file (the three sets of rows apart,
each copy at a random place). It then runs `quicknets audit planted_train.csv --json` as a
user would, in a fresh process, and prints what it found against what was planted and the
seconds of the whole command, with the CPU, threads and load average.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def plant(
    images: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    flips: int = 100,
    duplicates: int = 20,
    overlaps: int = 10,
    test_share: float = 0.2,
) -> dict:
    """Train and test splits of uint8 `images` (N, 28, 28) with planted problems, and the truth:
    {"train": (images, labels), "test": (...), "flipped": [train index], "duplicates":
    [[first, copy]], "train_test": [[train index, test index]]}, indices as in the splits."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    n_test = round(len(labels) * test_share)
    train_rows, test_rows = order[n_test:], order[:n_test]
    chosen = rng.choice(len(train_rows), flips + duplicates + overlaps, replace=False)
    flipped, copied, leaked = np.split(chosen, [flips, flips + duplicates])
    y = labels[train_rows].copy()
    y[flipped] = (y[flipped] + rng.integers(1, 10, flips)) % 10  # always another class
    # train: each row by its position in train_rows, copies after; then all shuffled
    train_src = np.concatenate([np.arange(len(train_rows)), copied])
    train_perm = rng.permutation(len(train_src))  # new position p holds train_src[train_perm[p]]
    where = np.empty(len(train_src), np.int64)
    where[train_perm] = np.arange(len(train_src))  # where[k]: new position of the k-th entry
    test_src = np.concatenate([-1 - np.arange(len(test_rows)), leaked])  # <0: a test row
    test_perm = rng.permutation(len(test_src))
    test_where = np.empty(len(test_src), np.int64)
    test_where[test_perm] = np.arange(len(test_src))

    def rows(src):
        own = src >= 0
        imgs = np.empty((len(src), *images.shape[1:]), np.uint8)
        labs = np.empty(len(src), np.int64)
        imgs[own], labs[own] = images[train_rows[src[own]]], y[src[own]]
        rest = test_rows[-1 - src[~own]]
        imgs[~own], labs[~own] = images[rest], labels[rest]
        return imgs, labs

    n = len(train_rows)
    return {
        "train": rows(train_src[train_perm]),
        "test": rows(test_src[test_perm]),
        "flipped": sorted(where[flipped].tolist()),
        "duplicates": sorted(
            sorted([int(where[r]), int(where[n + k])]) for k, r in enumerate(copied)
        ),
        "train_test": sorted(
            [int(where[r]), int(test_where[len(test_rows) + k])] for k, r in enumerate(leaked)
        ),
    }


def write_csv(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Kaggle's Fashion-MNIST CSV layout: `label,pixel1,...,pixelP`, then one row per image."""
    flat = images.reshape(len(images), -1)
    header = "label," + ",".join(f"pixel{i + 1}" for i in range(flat.shape[1]))
    body = np.concatenate([labels[:, None], flat], axis=1)
    np.savetxt(path, body, fmt="%d", delimiter=",", header=header, comments="")


def write_planted(folder: Path, rows: int = 10000, seed: int = 0, **counts) -> tuple:
    """(train CSV path, truth) for the first `rows` Fashion-MNIST test images (plant())."""
    from quicknets.data.loading import load_dataset

    data = load_dataset("fashion-mnist")
    truth = plant(data.test_images[:rows].numpy(), data.test_labels[:rows].numpy(), seed, **counts)
    write_csv(folder / "planted_train.csv", *truth["train"])
    write_csv(folder / "planted_test.csv", *truth["test"])
    return folder / "planted_train.csv", truth


def score(found: dict, truth: dict, top: int = 200) -> dict:
    """What the audit's JSON found of the planted truth."""
    suspects = {issue["index"] for issue in found["label_issues"][:top]}
    as_set = lambda pairs: {tuple(p[:2]) for p in pairs}  # noqa: E731
    return {
        "flipped_in_top": len(suspects & set(truth["flipped"])),
        "label_issues": len(found["label_issues"]),
        "duplicates": len(found["duplicates"]["train"]),
        "duplicates_right": as_set(found["duplicates"]["train"]) == as_set(truth["duplicates"]),
        "test_duplicates": len(found["duplicates"]["test"]),
        "train_test": len(found["duplicates"]["train_test"]),
        "train_test_right": as_set(found["duplicates"]["train_test"])
        == as_set(truth["train_test"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="of the planting")
    parser.add_argument("--keep", default=None, help="folder to keep the CSVs and page in")
    parser.add_argument("options", nargs="*", help="more `quicknets audit` options, after --")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="quicknets-audit-"))
    folder.mkdir(parents=True, exist_ok=True)
    path, truth = write_planted(folder, args.rows, args.seed)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    command = [
        sys.executable,
        "-m",
        "quicknets",
        "audit",
        str(path),
        "--json",
        "--out",
        str(folder / "audit.html"),
        *args.options,
    ]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"the audit failed:\n{done.stderr}")
    found = json.loads(done.stdout)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    print(
        f"cpu: {cpu}; {args.threads} threads; load average before {load:.2f}, after "
        f"{os.getloadavg()[0]:.2f}"
    )
    print(f"method: {json.dumps(found['method'])}")
    print(
        f"planted: {len(truth['flipped'])} flipped labels, {len(truth['duplicates'])} "
        f"duplicates in train, {len(truth['train_test'])} train rows in test"
    )
    print(f"found: {json.dumps(score(found, truth))}")
    print(f"steps: {json.dumps(found['seconds'])}")
    print(f"seconds: {seconds:.1f} (the whole `quicknets audit` process)")


if __name__ == "__main__":
    main()
