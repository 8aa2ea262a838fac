"""Comparison: pure aggregation against references, and `quicknets compare` end to end."""

import os
import statistics
from pathlib import Path

import pytest

from quicknets.base.errors import QuicknetsError
from quicknets.cli import main
from quicknets.networks.models import network
from quicknets.plots.figures import save_figure
from quicknets.records.comparison import (
    compare,
    differing,
    fmt_mean_std,
    format_compare,
    format_groups,
    group_by_seed,
    mean_std,
    plot_curves,
    rank,
    shown_keys,
)
from quicknets.records.runs import save_run, start_run


def test_mean_std_matches_statistics():
    xs = [0.81, 0.86, 0.84, 0.9]
    mean, std = mean_std(xs)
    assert mean == pytest.approx(statistics.mean(xs)) and std == pytest.approx(statistics.stdev(xs))
    assert mean_std([None, None]) == (None, None)
    assert mean_std([1, None, 3]) == (2.0, pytest.approx(2**0.5))


def test_one_seed_has_no_std_and_a_nan_is_said_and_ranked_last():
    """compare() gave a std of 0.0 for one seed; a NaN printed as `nan ± nan` and ranked first."""
    import math

    assert mean_std([0.5]) == (0.5, None) and mean_std([None, 0.5]) == (0.5, None)
    mean, std = mean_std([0.8, float("nan"), 0.9])
    assert math.isnan(mean) and std is None
    assert mean_std([0.4, float("inf")]) == (float("inf"), None)
    assert fmt_mean_std((0.5, None), n=1).strip() == "0.5000"
    assert fmt_mean_std((0.5, None), n=2).strip() == "0.5000"  # no std: never `± 0`
    assert fmt_mean_std((float("nan"), None), n=3) == "nan (diverged)"
    assert fmt_mean_std((float("inf"), None), n=1) == "inf (diverged)"
    rows = [
        row("nan", 0, 0.1, float("nan")),
        row("good", 0, 0.01, 0.80),
        row("better", 0, 0.001, 0.85),
        row("inf-loss", 0, 1.0, 0.2),
    ]
    rows[3]["metrics"]["test_loss"] = float("inf")
    groups = group_by_seed(rows)
    for metric in ("test_accuracy", "test_loss"):  # both directions: numbers first
        ranked = [g["names"][0] for g in rank(groups, metric)]
        assert ranked[:2] == ["better", "good"], metric
        assert (
            set(ranked[2:]) == {"nan", "inf-loss"}
            if metric == "test_loss"
            else ranked[2:] == ["inf-loss", "nan"]
        )
    text = format_groups(rank(groups, "test_accuracy"), ["lr"])
    assert "nan (diverged)" in text and "± nan" not in text and "nan ±" not in text


def test_differing_settings():
    rows = [
        {"lr": 0.1, "opt": "adam", "seed": 0},
        {"lr": 0.1, "opt": "sgd", "seed": 1},
        {"lr": 0.1, "opt": "adam"},
    ]
    assert differing(rows) == ["opt", "seed"]
    assert differing([{"a": 1}]) == []


def test_shown_keys_of_one_variant_are_those_set_away_from_the_defaults():
    """A sweep over seeds only ranked one row labelled with all thirty-odd settings."""
    from quicknets.config.configs import RunConfig

    one = {**RunConfig().flat(), "network": "784-16-10", "epochs": 1}
    one.pop("seed"), one.pop("threads"), one.pop("device")
    assert shown_keys([one, dict(one)]) == ["network", "epochs"]
    assert shown_keys([one, {**one, "lr": 0.01}]) == ["lr"]  # variants: what tells them apart
    assert shown_keys([RunConfig().flat()]) == [] and shown_keys([]) == []
    group = {
        "settings": one,
        "n": 2,
        "test_accuracy": (0.8, 0.01),
        "test_loss": (0.5, 0.02),
        "val_accuracy": (None, None),
    }
    from quicknets.sweeps import format_ranking

    assert format_ranking([group], "test_accuracy").splitlines()[1].split()[:3] == [
        "1",
        "network=784-16-10",
        "epochs=1",
    ]


def row(name, seed, lr, acc):
    return {
        "name": name,
        "settings": {"lr": lr, "seed": seed},
        "metrics": {"test_accuracy": acc, "test_loss": 1 - acc},
    }


def test_groups_over_seeds_and_ranking():
    rows = [
        row("a0", 0, 0.1, 0.80),
        row("b0", 0, 0.01, 0.90),
        row("a1", 1, 0.1, 0.84),
        row("b1", 1, 0.01, 0.86),
    ]
    groups = group_by_seed(rows)
    assert [g["names"] for g in groups] == [["a0", "a1"], ["b0", "b1"]]
    assert groups[0]["settings"] == {"lr": 0.1} and groups[0]["seeds"] == [0, 1]
    assert groups[0]["test_accuracy"][0] == pytest.approx(0.82)
    assert groups[0]["test_accuracy"][1] == pytest.approx(statistics.stdev([0.80, 0.84]))
    assert [g["settings"]["lr"] for g in rank(groups, "test_accuracy")] == [0.01, 0.1]
    assert [g["settings"]["lr"] for g in rank(groups, "test_loss")] == [0.01, 0.1]


def save(runs_dir, lr, seed, acc, epochs=3):
    cfg = {
        "data": {"dataset": "mnist", "data_dir": f"/somewhere/{seed}"},
        "model": {"model": "784-10", "spec": "784-10"},
        "train": {"optimizer": "adam", "lr": lr, "seed": seed, "threads": seed + 1},
    }
    hist = [
        {
            "epoch": e,
            "epochs": epochs,
            "train_loss": 1 / e,
            "train_accuracy": acc * e / epochs,
            "seconds": 0.5,
        }
        for e in range(1, epochs + 1)
    ]
    return save_run(network("784-10"), cfg, hist, {"accuracy": acc, "loss": 1 - acc}, {}, runs_dir)


def test_compare_records(runs_dir, tmp_path):
    paths = [save(runs_dir, 0.1, 0, 0.8), save(runs_dir, 0.1, 1, 0.9), save(runs_dir, 0.01, 0, 0.7)]
    table = compare([p.name for p in paths], runs_dir)
    # data_dir and threads differ too, but say nothing about what was trained
    assert table["differing"] == ["lr", "seed"]
    assert [g["n"] for g in table["groups"]] == [2, 1]
    assert table["groups"][0]["test_accuracy"][0] == pytest.approx(0.85)
    assert table["runs"][0]["metrics"]["seconds"] == pytest.approx(1.5)
    text = format_compare(table)
    assert "differing settings: lr, seed" in text and "0.8500 ± 0.0707" in text
    assert "0.7000 ± 0.0000" not in text and "0.7000" in text  # one run: no std to show
    fig = plot_curves(table)
    ax_loss, ax_acc = fig.axes
    assert len(ax_loss.lines) == 3  # one line per run
    colours = [line.get_color() for line in ax_loss.lines]
    assert colours[0] == colours[1] != colours[2]  # the two seeds of lr=0.1 share a colour
    labels = [t.get_text() for t in ax_loss.get_legend().get_texts()]
    assert labels == ["lr=0.1 train", "lr=0.01 train"]  # one legend entry per variant
    png = save_figure(fig, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    with pytest.raises(QuicknetsError, match="cannot save a figure"):
        save_figure(fig, tmp_path / "curves.txt")


def test_a_run_named_twice_counts_once(runs_dir):
    """`compare RUN RUN` (or a run by name and by folder) was 2 seeds with a std of 0."""
    a, b = save(runs_dir, 0.1, 0, 0.8), save(runs_dir, 0.1, 1, 0.9)
    table = compare([a.name, str(a), a.name[:-2], b.name], runs_dir)
    assert [r["name"] for r in table["runs"]] == [a.name, b.name]
    assert table["groups"][0]["n"] == 2 and table["groups"][0]["seeds"] == [0, 1]
    assert compare([a.name, a.name], runs_dir)["groups"][0]["n"] == 1


def test_compare_command(runs_dir, tmp_path, capsys):
    a, b = save(runs_dir, 0.1, 0, 0.8), save(runs_dir, 0.01, 0, 0.9)
    png = tmp_path / "c.png"
    assert main(["compare", a.name, b.name, "--runs-dir", str(runs_dir), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "differing settings: lr" in out and a.name in out and f"wrote: {png}" in out
    assert f"A = {a.name}, B = {b.name}" in out  # their data is not here: no test, and why
    assert "mcnemar: not given: /somewhere/0 does not exist" in out
    assert png.is_file()
    assert main(["compare", "--where", "lr<0.05", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert b.name in out and a.name not in out
    unfinished = start_run(
        {
            "data": {"dataset": "mnist"},
            "model": {"model": "784-10", "spec": "784-10"},
            "train": {"optimizer": "adam", "lr": 1.0, "seed": 0},
        },
        {},
        runs_dir,
    )
    assert main(["compare", a.name, unfinished.name, "--runs-dir", str(runs_dir)]) == 1
    assert "not finished" in capsys.readouterr().err
    assert main(["compare", "--runs-dir", str(runs_dir)]) == 1
    assert "nothing to compare" in capsys.readouterr().err
    assert main(["compare", "--sweep", "no-such-sweep", "--runs-dir", str(runs_dir)]) == 1
    assert "no finished run matches --sweep no-such-sweep" in capsys.readouterr().err


def test_compare_of_a_runs_folder_glob_leaves_out_its_own_files(runs_dir, capsys):
    """`quicknets compare runs/*` took runs/index.sqlite for a run and stopped; so would the
    folder's Optuna study, sweeps/ and audits/ records. They are left out; a run is not."""
    a, b = save(runs_dir, 0.1, 0, 0.8), save(runs_dir, 0.01, 0, 0.9)
    for name in ("index.sqlite", "optuna.sqlite3", "index.sqlite-journal"):
        (runs_dir / name).write_bytes(b"")
    for name in ("sweeps", "audits"):
        (runs_dir / name).mkdir()
    entries = sorted(str(p) for p in runs_dir.iterdir())
    assert str(runs_dir / "index.sqlite") in entries and len(entries) == 7
    assert main(["compare", *entries, "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert a.name in out and b.name in out and "differing settings: lr" in out
    # a path of that name that is not in a runs folder's form is still an error, not skipped
    assert main(["compare", a.name, str(runs_dir / "missing" / "sweeps")]) == 1
    assert "no run" in capsys.readouterr().err


def test_a_copy_of_a_run_is_not_another_seed(runs_dir, tmp_path, capsys):
    """A `cp -r` backup inside the runs folder gave n=2 with ± 0.0000. Other members: a renamed
    folder, the same run in two runs folders given together, a record from before run ids."""
    import json
    import shutil

    a, b = save(runs_dir, 0.1, 0, 0.80), save(runs_dir, 0.1, 1, 0.90)
    backup = shutil.copytree(a, runs_dir / (a.name + "-backup"))
    moved = tmp_path / "elsewhere" / b.name
    shutil.copytree(b, moved)
    table = compare([backup.name, a.name, b.name, str(moved)], runs_dir)
    assert [r["name"] for r in table["runs"]] == [a.name, b.name]  # the originals are kept
    (group,) = table["groups"]
    assert group["n"] == 2 and group["seeds"] == [0, 1]
    assert group["test_accuracy"][1] == pytest.approx(statistics.stdev([0.8, 0.9]))
    assert table["skipped"] == [
        f"{backup}: a copy of run {a} (the same run id); counted once",
        f"{moved}: a copy of run {runs_dir / b.name} (the same run id); counted once",
    ]
    assert main(["compare", "--where", "lr=0.1", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "0.8500 ± 0.0707" in out and f"skipped {backup}: a copy of run {a}" in out
    os.rename(a, runs_dir / "renamed")  # renamed, and only the copy and the renamed left
    assert compare(["renamed", backup.name], runs_dir)["groups"][0]["n"] == 1
    old = save(runs_dir, 0.1, 2, 0.7)  # made before run ids: its name and time tell
    meta = json.loads((old / "meta.json").read_text())
    del meta["run_id"]
    (old / "meta.json").write_text(json.dumps(meta))
    old_copy = shutil.copytree(old, runs_dir / "old-copy")
    table = compare([old.name, old_copy.name], runs_dir)
    assert [r["name"] for r in table["runs"]] == [old.name] and len(table["skipped"]) == 1


def test_a_seed_counts_once(runs_dir, capsys):
    """Two runs of the same settings and seed (the same command twice) are no second seed: on
    one machine they give the same numbers, and n=2 ± 0 would claim a spread that was never
    measured. Every run is still listed."""
    a, again, other = (
        save(runs_dir, 0.1, 0, 0.8),
        save(runs_dir, 0.1, 0, 0.8),
        save(runs_dir, 0.1, 1, 0.9),
    )
    table = compare([a.name, again.name, other.name], runs_dir)
    assert [r["name"] for r in table["runs"]] == [a.name, again.name, other.name]
    (group,) = table["groups"]
    assert group["n"] == 2 and group["names"] == [a.name, other.name]
    assert table["skipped"] == [
        f"{again}: the same settings and seed (0) as run {a}, so no new seed; counted once"
    ]
    one = compare([a.name, again.name], runs_dir)["groups"][0]
    assert one["n"] == 1 and one["test_accuracy"] == (0.8, None)


def test_compare_of_one_seed_has_no_std(runs_dir, capsys):
    """Python compare() gave a std of 0.0 for a single seed; the CLI showed the mean alone."""
    a = save(runs_dir, 0.1, 0, 0.8)
    (group,) = compare([a.name], runs_dir)["groups"]
    assert group["n"] == 1 and group["test_accuracy"] == (0.8, None)
    assert group["test_loss"] == (pytest.approx(0.2), None)
    assert group["val_accuracy"] == (None, None)  # no validation split: nothing to show


def tiny_run(data_dir, runs_dir, capsys, lr, epochs):
    """Train a small network on generated data with the CLI; its run folder."""
    argv = ["train", "--dataset", "mnist", "--data-dir", str(data_dir), "--no-verify"]
    argv += ["--layers", "784-32-10", "--lr", str(lr), "--epochs", str(epochs)]
    assert main([*argv, "--threads", "1", "--runs-dir", str(runs_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    return next(line for line in out.splitlines() if line.startswith("saved: "))[7:]


def mcnemar_counts(out: str) -> tuple:
    """(only A right, only B right, p) parsed from compare's `mcnemar:` line."""
    import re

    (line,) = [line for line in out.splitlines() if line.startswith("mcnemar:")]
    found = re.match(r"mcnemar: only A right (\d+), only B right (\d+), p=(\S+) ", line)
    assert found, line
    return int(found[1]), int(found[2]), float(found[3])


def test_compare_of_two_runs_tests_them_on_their_test_set(tiny_dir, tiny, runs_dir, capsys):
    """`compare A B` gives McNemar's exact test from the runs' saved models: the disagreement
    counts are those of the two models' predictions, counted image by image here."""
    from scipy import stats

    from quicknets.evaluation.classification import predict
    from quicknets.records.runs import load_model

    slow = tiny_run(tiny_dir, runs_dir, capsys, 0.0001, 1)
    fast = tiny_run(tiny_dir, runs_dir, capsys, 0.003, 2)
    assert main(["compare", slow, fast, "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    only_a, only_b, p = mcnemar_counts(out)
    pred_a, pred_b = (predict(load_model(run), tiny.test_images).tolist() for run in (slow, fast))
    labels = tiny.test_labels.tolist()
    brute_a = sum(a == y != b for a, b, y in zip(pred_a, pred_b, labels))
    brute_b = sum(b == y != a for a, b, y in zip(pred_a, pred_b, labels))
    assert (only_a, only_b) == (brute_a, brute_b) and only_a + only_b > 0
    exact = stats.binomtest(min(brute_a, brute_b), brute_a + brute_b).pvalue
    assert p == pytest.approx(exact, rel=1e-2)  # printed to 3 significant digits
    assert out.index("A = ") < out.index("mcnemar:")
    assert main(["compare", fast, slow, "--runs-dir", str(runs_dir)]) == 0  # B and A swapped
    assert mcnemar_counts(capsys.readouterr().out)[:2] == (only_b, only_a)
    third = tiny_run(tiny_dir, runs_dir, capsys, 0.001, 1)
    assert main(["compare", slow, fast, third, "--runs-dir", str(runs_dir)]) == 0
    assert "mcnemar" not in capsys.readouterr().out  # more than two runs: no pair to test


def test_compare_of_runs_on_different_test_sets_is_one_error_line(
    tiny_dir, runs_dir, tmp_path, capsys
):
    """McNemar's test needs one test set: fewer test images, other labels, or other images of
    the same labels are each refused with one line, nothing printed before it."""
    import shutil

    from conftest import make_idx_dataset
    from quicknets.data.idx import read_idx, write_idx

    base = tiny_run(tiny_dir, runs_dir, capsys, 0.003, 1)
    fewer = make_idx_dataset(tmp_path / "fewer", n_test=60)
    relabelled = make_idx_dataset(tmp_path / "relabelled", seed=1)
    repainted = shutil.copytree(tiny_dir, tmp_path / "repainted")
    images = read_idx(repainted / "t10k-images-idx3-ubyte")[0].copy()
    images[:7, 0, 0] ^= 1  # seven test images one grey level apart
    write_idx(repainted / "t10k-images-idx3-ubyte", images)
    cases = {
        fewer: "100 images against 60",
        relabelled: "their labels differ at",
        repainted: "their test images differ at 7 of 100 images",
    }
    for folder, message in cases.items():
        other = tiny_run(folder, runs_dir, capsys, 0.003, 1)
        assert main(["compare", base, other, "--runs-dir", str(runs_dir)]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, err
        assert err.startswith("error: the runs were tested on different test sets: ")
        assert message in err, err


def seeded_rows(lr_values: dict) -> list:
    """Rows of variants over seeds: {lr: [test accuracy of seed 0, 1, ...]}."""
    return [
        row(f"lr{lr}_s{seed}", seed, lr, acc)
        for lr, accs in lr_values.items()
        for seed, acc in enumerate(accs)
    ]


def test_variants_over_seeds_get_an_interval_and_a_mark_against_the_best():
    """The ranking's 95% CI and `vs best` cells are significance's, for the values of each
    variant paired by seed; the lines under the table say which test and the correction."""
    from quicknets.evaluation.significance import format_mark, not_worse_than_best, summarize

    values = {0.003: [0.80, 0.83, 0.81], 0.0030001: [0.80, 0.832, 0.812], 0.0001: [0.6, 0.64, 0.6]}
    groups = rank(group_by_seed(seeded_rows(values)), "test_accuracy")
    assert [g["settings"]["lr"] for g in groups] == [0.0030001, 0.003, 0.0001]
    marks = not_worse_than_best(
        [values[g["settings"]["lr"]] for g in groups], "test_accuracy", seeds=[[0, 1, 2]] * 3
    )
    assert [m.test for m in marks] == [None, "paired", "paired"]
    assert marks[1].not_worse and marks[2].not_worse is False  # the reference: ~best, worse
    text = format_groups(groups, ["lr"], "test_accuracy")
    lines = text.splitlines()
    assert lines[0].split()[-4:] == ["95%", "CI", "vs", "best"]
    for line, g, mark in zip(lines[1:4], groups, marks):
        s = summarize(values[g["settings"]["lr"]])
        assert f"lr={g['settings']['lr']} " in line  # 0.003 and 0.0030001 told apart
        assert line.endswith(f"[{s.low:.4f}, {s.high:.4f}]  {format_mark(mark)}")
    assert "paired t-test over the seeds they share" in text
    assert "Holm-corrected over 2 comparisons" in text


def test_welch_when_variants_ran_other_seeds_and_why_a_variant_has_no_mark():
    rows = seeded_rows({0.003: [0.80, 0.83, 0.81], 0.1: [0.5]})  # one seed: no mark
    rows += [row(f"x{s}", s, 0.01, acc) for s, acc in ((7, 0.7), (8, 0.72), (9, 0.69))]
    text = format_groups(rank(group_by_seed(rows), "test_accuracy"), ["lr"])
    assert "by a two-sided Welch's t-test against the best, Holm-corrected over 1 comparison\n" in (
        text + "\n"
    )
    assert "? = no test: no interval can be given with one seed" in text
    line = next(x for x in text.splitlines() if "lr=0.1 " in x)
    assert line.endswith(" -  ?")  # no interval, no mark


@pytest.mark.parametrize(
    "values",
    [
        {0.003: [0.8], 0.0001: [0.6]},  # two single runs, far apart
        {0.003: [0.8], 0.0030001: [0.8], 0.0001: [0.1]},  # and equal ones
    ],
)
def test_one_run_per_variant_is_one_line_and_never_a_mark(values):
    """Ranking single runs: no interval, no mark, whatever the gap; one line says why."""
    groups = rank(group_by_seed(seeded_rows(values)), "test_accuracy")
    text = format_groups(groups, ["lr"])
    said = [x for x in text.splitlines() if "no interval can be given" in x]
    assert said == [
        "one run per variant: no interval can be given with one seed, so no variant is "
        "marked better or worse (run each variant over seeds for that)"
    ]
    assert not any(word in text for word in ("~best", "worse (p=", "95% CI", "vs best"))


def test_only_differing_settings_unless_all_are_asked_for(runs_dir, capsys):
    """compare shows the settings that differ and says how many equal ones it hid;
    --all-settings shows every one (the seed too) and hides none."""
    from quicknets.records.comparison import settings_columns

    a, b = save(runs_dir, 0.1, 0, 0.8), save(runs_dir, 0.01, 1, 0.9)
    table = compare([a.name, b.name], runs_dir)
    every = sorted(table["runs"][0]["settings"])
    assert settings_columns([r["settings"] for r in table["runs"]], seed=True) == (
        ["lr", "seed"],
        len(every) - 2,
    )
    assert main(["compare", a.name, b.name, "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{len(every) - 2} settings equal in every run not shown (--all-settings" in out
    assert "optimizer=" not in out
    assert main(["compare", a.name, b.name, "--all-settings", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "equal in every run not shown" not in out
    line = next(x for x in out.splitlines() if x.startswith(a.name))
    assert all(f"{k}=" in line for k in every) and "optimizer=adam" in line


def fashion_subset(folder, n_train: int):
    """The first n_train Fashion-MNIST training images and the whole test set, as IDX files."""
    from conftest import FASHION_DIR
    from quicknets.data.idx import read_idx, write_idx

    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST is missing: apt-get install dataset-fashion-mnist")
    folder.mkdir()
    for split, n in (("train", n_train), ("t10k", None)):
        for kind in ("images-idx3", "labels-idx1"):
            array = read_idx(FASHION_DIR / f"{split}-{kind}-ubyte.gz")[0]
            write_idx(folder / f"{split}-{kind}-ubyte", array[:n])
    return folder


def test_a_clearly_better_run_is_significant_on_fashion_mnist(runs_dir, tmp_path, capsys):
    """The issue's check, on 6,000 Fashion-MNIST training images (a tenth, to keep the suite
    fast) and the whole 10,000-image test set: 1 epoch at lr 0.0001 against 7 epochs at lr
    0.003; compare's McNemar test calls the difference significant, p < 0.001."""
    data = fashion_subset(tmp_path / "fashion-6000", 6000)
    names = []
    for lr, epochs in ((0.0001, 1), (0.003, 7)):
        argv = ["train", "--dataset", "fashion-mnist", "--data-dir", str(data), "--no-verify"]
        argv += ["--lr", str(lr), "--epochs", str(epochs), "--threads", "1"]
        assert main([*argv, "--runs-dir", str(runs_dir), "--quiet"]) == 0
        out = capsys.readouterr().out
        names.append(next(x for x in out.splitlines() if x.startswith("saved: "))[7:])
    assert main(["compare", *names, "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    only_a, only_b, p = mcnemar_counts(out)
    assert only_b > only_a and p < 0.001, out
    assert "B is better at the 5% level" in out


def test_an_interval_past_the_metrics_range_is_clipped_and_said_so():
    """Accuracies near 1 over 3 seeds: t's interval reached past 1 (and the loss's below 0), in
    compare, `sweep --show` (both format_groups) and the sweep page (report._ranking)."""
    from types import SimpleNamespace

    from quicknets.evaluation.significance import summarize
    from quicknets.outputs.report import _ranking

    values = {0.003: [0.999, 0.98, 0.995], 0.01: [0.97, 0.96, 0.99]}
    groups = rank(group_by_seed(seeded_rows(values)), "test_accuracy")
    free = summarize(values[0.003])  # the unclipped interval, for the reference
    assert free.high > 1.0
    for metric, cell in (
        ("test_accuracy", f"[{free.low:.4f}, 1.0000]"),
        ("test_loss", f"[0.0000, {1 - free.low:.4f}]"),  # test_loss = 1 - accuracy here
    ):
        text = format_groups(rank(groups, metric), ["lr"], metric)
        lines = text.splitlines()
        assert cell in lines[1], text
        clipped = "clipped to its range [0, 1]" if metric == "test_accuracy" else "clipped at 0"
        assert lines[3] == (
            f"95% CI: the confidence interval of the mean {metric} over seeds (Student t), "
            f"{clipped}{', its least value' * (metric == 'test_loss')}"
        )
        page = _ranking(SimpleNamespace(groups=groups, metric=metric), Path("."), Path("."))
        assert cell in page and clipped in page
    inside = group_by_seed(seeded_rows({0.003: [0.80, 0.83, 0.81], 0.01: [0.7, 0.72, 0.74]}))
    assert "clipped" not in format_groups(inside, ["lr"])  # said only where it happened


def test_one_variant_over_seeds_has_an_interval_and_no_mark():
    from quicknets.evaluation.significance import summarize

    groups = group_by_seed(seeded_rows({0.003: [0.80, 0.83, 0.81]}))
    text = format_groups(groups, ["lr"])
    s = summarize([0.80, 0.83, 0.81])
    head, line, why = text.splitlines()
    assert head.endswith("95% CI") and "vs best" not in text
    assert line.endswith(f"[{s.low:.4f}, {s.high:.4f}]") and "best" not in line
    assert why.startswith("95% CI: the confidence interval of the mean test_accuracy")


def test_compare_sorts_by_the_trust_metrics_without_them_last(runs_dir, capsys):
    from quicknets.records.runs import update_results

    a, b, c = save(runs_dir, 0.1, 0, 0.8), save(runs_dir, 0.1, 1, 0.9), save(runs_dir, 0.01, 0, 0.7)
    update_results(a, {"ece": 0.06, "mean_corruption_accuracy": 0.5})
    update_results(b, {"ece": 0.02, "mean_corruption_accuracy": 0.7})
    table = compare([a.name, b.name, c.name], runs_dir)  # c: measured neither

    def lines(text):  # the per-run lines: name -> the cells after the settings
        return {
            line.split()[0]: line.split()[-4:]
            for line in text.splitlines()
            if line.split() and line.split()[0] in (a.name, b.name, c.name)
        }

    text = format_compare(table, sort="test_ece")
    head = text.splitlines()[1].split()
    assert head[-4:] == ["test_accuracy", "test_loss", "test_ece", "mean_corruption_accuracy"]
    assert list(lines(text)) == [b.name, a.name, c.name]  # lowest ECE first, unknown last
    assert lines(text)[c.name][2:] == ["-", "-"] and lines(text)[a.name][2:] == ["0.0600", "0.5000"]
    # the seed groups: lr=0.1 (two seeds, both measured) before lr=0.01 (none)
    groups = text.split("best test ece first:\n")[1].splitlines()
    assert "0.0400 ± 0.0283" in groups[1] and "lr=0.01" in groups[2]
    assert list(lines(format_compare(table, sort="mean_corruption_accuracy"))) == [
        b.name,
        a.name,
        c.name,
    ]
    assert list(lines(format_compare(table))) == [a.name, b.name, c.name]  # as given
    plain = compare([c.name], runs_dir)  # nothing measured: no such columns
    assert "test_ece" not in format_compare(plain)
    assert "test_ece" in format_compare(plain, sort="test_ece")  # asked for: shown, as "-"

    args = ["compare", a.name, b.name, c.name, "--runs-dir", str(runs_dir)]
    assert main([*args, "--sort", "mean_corruption_accuracy"]) == 0
    assert list(lines(capsys.readouterr().out)) == [b.name, a.name, c.name]
    assert main([*args, "--sort", "lr"]) == 1
    assert "unknown metric 'lr'" in capsys.readouterr().err
    assert main(["compare", "--sweep", "s", "--storage", "x.db", "--sort", "test_ece"]) == 1
    assert "--sort does not apply with --storage" in capsys.readouterr().err
