"""sweeps/__init__.py and `quicknets sweep`: grid and random sweeps end to end, the ranked table
with failed trials, names used once, --resume-sweep, and every wrong TOML value as one line."""

import os
import sys

import pytest

from quicknets import sweep as exported_sweep
from quicknets.base.errors import QuicknetsError
from quicknets.cli import main
from quicknets.records.index import query
from quicknets.records.runs import list_runs
from quicknets.sweeps import format_ranking, load_sweep, resume_sweep, sweep

CORES = len(os.sched_getaffinity(0))


def base(tiny_dir):
    return {
        "dataset": "mnist",
        "data_dir": str(tiny_dir),
        "verify": False,
        "epochs": 2,
        "batch_size": 32,
    }


def test_grid_sweep_in_python(tiny_dir, runs_dir):
    assert exported_sweep is sweep
    lines = []
    groups = sweep(
        base(tiny_dir),
        grid={"layers": ["784-16-10", "784-64-10"], "lr": [0.001, 0.01]},
        seeds=2,
        workers=1,
        threads=1,
        runs_dir=runs_dir,
        name="s1",
        log=lines.append,
    )
    assert len(groups) == 4 and all(g["n"] == 2 and g["seeds"] == [0, 1] for g in groups)
    means = [g["test_accuracy"][0] for g in groups]
    assert means == sorted(means, reverse=True)  # ranked
    runs = list_runs(runs_dir, sweep="s1")
    assert len(runs) == 8 and all(r.meta["sweep"] == "s1" for r in runs)
    assert {(r.config.network.network, r.config.train.lr, r.config.train.seed) for r in runs} == {
        (m, lr, s) for m in ("784-16-10", "784-64-10") for lr in (0.001, 0.01) for s in (0, 1)
    }
    assert lines[0] == (
        "sweep s1: 4 variants x 2 seed(s) = 8 runs; stacked: 8 runs in 2 stack(s) of 4+4 "
        "(one step for each stack's variants; --no-stack trains them apart); "
        "1 worker(s) x 1 thread(s)"
    )
    trials = [line for line in lines if line.startswith("trial ")]
    assert len(trials) == 8 and trials[0].startswith("trial 1/8 (")
    assert "  network=784-16-10 lr=0.001 seed=0  test_accuracy 0." in trials[0]
    with pytest.raises(QuicknetsError, match="not as a setting"):
        sweep(base(tiny_dir), grid={"seed": [1, 2]}, runs_dir=runs_dir)


def test_a_name_is_used_once(tiny_dir, runs_dir):
    sweep(
        base(tiny_dir),
        grid={"lr": [0.001]},
        workers=1,
        runs_dir=runs_dir,
        name="once",
        log=lambda *a: None,
    )
    with pytest.raises(QuicknetsError) as e:  # its runs would count as extra seeds
        sweep(
            base(tiny_dir),
            grid={"lr": [0.001]},
            workers=1,
            runs_dir=runs_dir,
            name="once",
            log=lambda *a: None,
        )
    assert str(e.value) == (
        f"the sweep name 'once' is already used in {runs_dir} (1 run(s)); "
        f"choose another --name, look at it with `quicknets compare "
        f"--sweep once`, or continue it with `quicknets sweep "
        f"--resume-sweep once`"
    )
    assert len(list_runs(runs_dir, sweep="once")) == 1
    for name in ("a/b", "", ".hidden", 3):
        with pytest.raises(QuicknetsError, match="a sweep name is"):
            sweep(base(tiny_dir), grid={"lr": [0.001]}, runs_dir=runs_dir, name=name)
    with pytest.raises(QuicknetsError, match="oversubscribe"):  # fails before any run ...
        sweep(
            base(tiny_dir),
            grid={"lr": [0.001]},
            workers=999,
            runs_dir=runs_dir,
            name="free",
            log=lambda *a: None,
        )
    assert not (runs_dir / "sweeps" / "free.json").exists()  # ... so the name stays free


def test_one_failing_variant_does_not_stop_the_sweep(tiny_dir, runs_dir):
    deep = "784-64-64-64-64-64-64-10"
    lines = []
    groups = sweep(
        {**base(tiny_dir), "epochs": 1, "optimizer": "sgd", "momentum": 0.99},
        grid={"network": [deep, "784-16-11"], "lr": [0.001, 100.0]},
        workers=1,
        runs_dir=runs_dir,
        name="f",
        log=lines.append,
    )
    assert [g.get("state", "COMPLETE") for g in groups] == ["COMPLETE"] + ["FAILED"] * 3
    assert groups[0]["settings"]["lr"] == 0.001 and groups[0]["settings"]["network"] == deep
    why = {(g["settings"]["network"], g["settings"]["lr"]): g["message"] for g in groups[1:]}
    assert why[(deep, 100.0)].startswith("training diverged in epoch 1")
    assert why[("784-16-11", 0.001)].endswith("got 784-16-11: give --network 784-16-10")
    assert sum("  failed: " in line for line in lines) == 3
    assert lines[-1].endswith(", 3 failed")
    statuses = sorted(r["status"] for r in query(runs_dir, status="all"))
    assert statuses == ["done", "failed"]  # the diverged run's record is marked failed
    table = format_ranking(groups, "test_accuracy").splitlines()
    assert len(table) == 1 + 4 + 3 + 1 and table[2].endswith("failed")
    assert any(line.strip().startswith("2  failed: training diverged") for line in table[5:8])
    assert table[8].endswith("settings equal in every run not shown (--all-settings shows them)")


def test_resume_sweep_trains_only_what_is_not_finished(tiny_dir, runs_dir):
    from quicknets.config.configs import RunConfig
    from quicknets.records.experiment import run
    from quicknets.records.runs import remove_run

    quiet = lambda *a: None  # noqa: E731
    sweep(
        base(tiny_dir),
        grid={"lr": [0.001, 0.01, 0.03]},
        workers=1,
        runs_dir=runs_dir,
        name="r",
        log=quiet,
    )
    by_lr = {r.config.train.lr: r.name for r in list_runs(runs_dir, sweep="r")}
    remove_run(by_lr[0.01], runs_dir)  # never trained, as far as the sweep can tell
    remove_run(by_lr[0.03], runs_dir)  # stopped after its first epoch, as Ctrl-C leaves it

    def ctrl_c(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(
            RunConfig.build(**base(tiny_dir), lr=0.03, seed=0, threads=1),
            runs_dir,
            quiet=True,
            sweep="r",
            on_epoch=ctrl_c,
        )
    lines = []
    groups = resume_sweep("r", workers=1, threads=1, runs_dir=runs_dir, log=lines.append)
    assert lines[0] == (
        "sweep r: 1 of 3 runs finished; continuing 2 (1 from their "
        "checkpoints); stacked: none; 2 apart (it continues a stopped run; no other variant "
        "of its shape); 1 worker(s) x 1 thread(s)"
    )
    assert len(groups) == 3 and all(g["n"] == 1 for g in groups)  # no run counted twice
    rows = query(runs_dir, status="all")
    assert len(rows) == 3 and {r["status"] for r in rows} == {"done"}
    assert all(r["epochs_done"] == 2 for r in rows)
    assert resume_sweep("r", workers=1, threads=1, runs_dir=runs_dir, log=lines.append) == groups
    assert lines[-2].startswith("sweep r: 3 of 3 runs finished; continuing 0")
    with pytest.raises(QuicknetsError, match="no sweep named 'nothing'"):
        resume_sweep("nothing", runs_dir=runs_dir)
    assert not (runs_dir / "optuna.sqlite3").exists()  # looking did not make a study file


def test_sweep_command_with_toml_and_workers(tiny_dir, runs_dir, tmp_path, capsys):
    workers = min(2, CORES)
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        f'seeds = 2\nworkers = {workers}\nthreads = 1\nname = "t1"\n'
        f'[base]\ndataset = "mnist"\ndata_dir = "{tiny_dir}"\nverify = false\n'
        f'epochs = 1\n[vary]\nlayers = ["784-16-10", "784-32-10"]\n'
        f"lr = [0.1, 0.2]\n"
    )
    assert (
        main(["sweep", "--config", str(toml), "--lr", "0.003,0.03", "--runs-dir", str(runs_dir)])
        == 0
    )  # the flag replaces the file's lr
    out = capsys.readouterr().out
    stacks = "4+4" if workers == 1 else "2+2+2+2"  # each shape's stack cut in one per worker
    assert (
        f"4 variants x 2 seed(s) = 8 runs; stacked: 8 runs in {8 // int(stacks[0])} stack(s) "
        f"of {stacks} (one step for each stack's variants; --no-stack trains them apart); "
        f"{workers} worker(s) x 1 thread(s)"
    ) in out
    assert out.count("\ntrial ") == 8  # a line per trial, from the worker processes
    assert "ranked by test_accuracy" in out and out.count(" ± ") >= 8
    assert "best: " in out and "quicknets compare --sweep t1" in out
    assert len(list_runs(runs_dir, sweep="t1")) == 8
    assert main(["compare", "--sweep", "t1", "--runs-dir", str(runs_dir)]) == 0
    assert "differing settings: lr, network, seed" in capsys.readouterr().out
    assert main(["sweep", "--resume-sweep", "t1", "--lr", "0.1", "--runs-dir", str(runs_dir)]) == 1
    assert "it takes only --workers" in capsys.readouterr().err
    toml.write_text("seeds = [\n")
    assert main(["sweep", "--config", str(toml)]) == 1
    assert "not valid TOML" in capsys.readouterr().err


@pytest.mark.parametrize(
    "toml, message",
    [
        ("seeds = 2.5", "seeds must be a number of seeds"),
        ("base = 5", "base must be a table of settings"),
        ("vary = [1]", "vary must be a table of settings"),
        ('trials = "ten"', "trials must be a whole number of at least 1, got 'ten'"),
        ("workers = -1", "workers must be a whole number of at least 1 (0: choose for me), got -1"),
        ("threads = 1.5", "threads must be a whole number"),
        ("search = 3", "search must be a string"),
        ('prune = "no"', "prune must be true or false"),
        ('name = "a b"', "a sweep name is"),
        ('metric = "val_accuracy"', "needs a validation split"),
        ("colour = 1", "unknown key(s) colour"),
        ("[vary]\nlr = {low = 0.001}", "lr: a range is {low = ..., high = ..., log = true|false}"),
        ("[vary]\nbatchnorm = true", "batchnorm: give a list of values to try"),
        ("[vary]\nlr = {low = 0.001, high = 0.1, log = {x = 1}}", "log must be true or false"),
        ("[vary]\nlr = {low = 0.001, high = 0.1, step = {x = 1}}", "lr: a range is"),
        ("[vary]\ncolour = [1]", "unknown setting 'colour'"),
        ('[base]\nepochs = "two"', "--epochs must be int"),
        ("[base]\nmomentum = 0.9", "--momentum 0.9 is for sgd and rmsprop; adam has no momentum"),
        (
            '[base]\nmomentum = 0.5\n[vary]\noptimizer = ["sgd", "nadam"]',
            "--momentum 0.5 is for sgd and rmsprop; nadam has no momentum",
        ),
        (
            '[base]\nwarmup = 0.3\n[vary]\nschedule = ["onecycle", "linear"]',
            "--warmup 0.3 is for --schedule onecycle; --schedule linear has none",
        ),
        (
            '[base]\nmonitor = "val_accuracy"\nval_split = 0.1\n[vary]\nlr = [0.1]',
            "--monitor val_accuracy is for early stopping, which is off",
        ),
        (
            'search = "optuna"\n[base]\nmin_delta = 0.01\nval_split = 0.1\n'
            "[vary]\npatience = {low = 0, high = 3}",
            "--min-delta 0.01 is for early stopping, which is off",
        ),
    ],
)
def test_a_wrong_toml_value_is_one_error_line(tmp_path, runs_dir, capsys, toml, message):
    path = tmp_path / "sweep.toml"
    path.write_text(
        toml
        + ("\n[vary]\nlr = [0.1, 0.2]\n" if "[vary]" not in toml and "vary =" not in toml else "\n")
    )
    assert main(["sweep", "--config", str(path), "--runs-dir", str(runs_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not list(runs_dir.glob("*/config.json"))  # nothing trained


@pytest.mark.parametrize("seeds", [",", "", "1,,2", "-1", "0", "2.5", "x"])
def test_bad_seeds_flag_is_one_error_line(runs_dir, capsys, seeds):
    assert main(["sweep", "--lr", "0.1,0.2", "--seeds", seeds, "--runs-dir", str(runs_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "seed" in err, err


def test_random_sweep_in_python(tiny_dir, runs_dir):
    groups = sweep(
        base(tiny_dir),
        grid={"lr": "log:0.001:0.03", "batch_size": [16, 64]},
        search="random",
        trials=3,
        workers=1,
        runs_dir=runs_dir,
        name="r1",
        log=lambda *a: None,
    )
    runs = list_runs(runs_dir, sweep="r1")
    assert len(groups) == len(runs) == 3
    assert all(0.001 <= r.config.train.lr <= 0.03 for r in runs)
    assert {g["settings"]["lr"] for g in groups} == {r.config.train.lr for r in runs}


def test_metric_names_in_help():
    from quicknets.cli import build_parser

    sub = [a for a in build_parser()._actions if a.dest == "command"][0].choices["sweep"]
    text = sub.format_help()
    assert "val_accuracy" in text and "val_acc," not in text


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--batchnorm"], "true"),
        (["--no-batchnorm"], "false"),
        (["--batchnorm", "true,false"], "true,false"),
    ],
)
def test_booleans_are_spelled_as_in_train(flags, expected):
    from quicknets.cli import build_parser

    args = build_parser().parse_args(["sweep", *flags, "--lr", "0.1"])
    assert args.set_batchnorm == expected and args.set_lr == "0.1"


def test_an_optuna_sweep_without_optuna_is_one_error_line(tiny_dir, runs_dir, capsys, monkeypatch):
    """Optuna is an optional extra (quicknets[sweep]); without it, no ModuleNotFoundError."""
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` fails as if absent
    assert (
        main(
            [
                "sweep",
                "--search",
                "optuna",
                "--trials",
                "2",
                "--lr",
                "log:1e-3:1e-2",
                "--dataset",
                "mnist",
                "--data-dir",
                str(tiny_dir),
                "--no-verify",
                "--epochs",
                "1",
                "--name",
                "o1",
                "--runs-dir",
                str(runs_dir),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err == (
        "error: an Optuna sweep needs Optuna, an optional extra: pip install 'quicknets[sweep]'\n"
    )
    assert not (runs_dir / "sweeps" / "o1.json").exists()


def test_early_stopped_runs_are_ranked_by_the_epoch_they_kept(tiny_dir, runs_dir, capsys):
    """The ranking, `sweep --show`, compare(), the index and `runs --sort` read the last,
    discarded epoch's validation numbers, not those of the best epoch that was restored and
    tested. min_delta 10 makes epoch 1 the best for sure; patience 1 stops after epoch 2."""
    from quicknets.records.comparison import compare, fmt_mean_std, metrics
    from quicknets.sweeps import load_sweep
    from quicknets.sweeps.pool import score

    assert (
        main(
            [
                "sweep",
                "--dataset",
                "mnist",
                "--data-dir",
                str(tiny_dir),
                "--no-verify",
                "--layers",
                "784-16-10",
                "--lr",
                "0.003,0.03",
                "--epochs",
                "4",
                "--val-split",
                "0.2",
                "--patience",
                "1",
                "--min-delta",
                "10",
                "--metric",
                "val_loss",
                "--workers",
                "1",
                "--threads",
                "1",
                "--name",
                "es",
                "--runs-dir",
                str(runs_dir),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    runs = list_runs(runs_dir, sweep="es")
    assert len(runs) == 2
    kept = {r.name: r.history[0] for r in runs}  # the epoch whose weights were tested
    for r in runs:
        assert [row["epoch"] for row in r.history] == [1, 2]
        assert r.history[-1]["best_epoch"] == 1
        assert r.history[-1]["val_loss"] != kept[r.name]["val_loss"]  # the test can fail
        m = metrics(r)
        assert (m["val_loss"], m["val_accuracy"], m["kept_epoch"], m["epochs"]) == (
            kept[r.name]["val_loss"],
            kept[r.name]["val_accuracy"],
            1,
            2,
        )
        assert score(r.history, r.results, "val_loss") == kept[r.name]["val_loss"]  # Optuna's
    best_first = sorted(runs, key=lambda r: kept[r.name]["val_loss"])
    view = load_sweep("es", runs_dir)
    assert [g["names"] for g in view.groups] == [[r.name] for r in best_first]
    assert [g["val_loss"][0] for g in view.groups] == [kept[r.name]["val_loss"] for r in best_first]
    table = compare([r.name for r in runs], runs_dir)
    assert [g["val_accuracy"] for g in table["groups"]] == [
        (kept[r.name]["val_accuracy"], None) for r in runs
    ]
    for r in best_first:  # the printed table, after the run and with --show
        assert fmt_mean_std((kept[r.name]["val_accuracy"], None), n=1).strip() in out
    assert main(["sweep", "--show", "es", "--runs-dir", str(runs_dir)]) == 0
    shown = capsys.readouterr().out
    lines = [line for line in shown.splitlines() if line.lstrip()[:1] in ("1", "2")]
    for line, r in zip(lines, best_first):
        assert f"{kept[r.name]['val_accuracy']:.4f}" in line
    rows = query(runs_dir, ["val_loss>0"], sort="val_loss")  # the index holds them too
    assert [(row["name"], row["val_loss"]) for row in rows] == [
        (r.name, kept[r.name]["val_loss"]) for r in best_first
    ]
    assert main(["runs", "--sort=-val_loss", "--runs-dir", str(runs_dir)]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:3]]
    assert listed == [r.name for r in reversed(best_first)]


def test_show_says_which_settings_matter(tiny_dir, runs_dir, capsys, monkeypatch):
    """`sweep --show` prints `importance:` (fANOVA over the finished variants, the seed left
    out): on a grid over lr and dropout, lr first, with the shares param_importance gives for
    the runs' own records; without scikit-learn, why there is none."""
    import re

    from quicknets.sweeps.importance import param_importance

    argv = ["sweep", "--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify"]
    argv += ["--layers", "784-32-10", "--lr", "0.0001,0.003,0.03", "--dropout", "0,0.05"]
    argv += ["--epochs", "1", "--seeds", "1", "--workers", "1", "--threads", "1"]
    assert main([*argv, "--name", "imp", "--runs-dir", str(runs_dir), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sweep", "--show", "imp", "--runs-dir", str(runs_dir)]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("importance:")]
    shares = re.findall(r"(\w+) (\d\.\d\d)", line.split("(")[0])
    assert [name for name, _ in shares] == ["lr", "dropout"], line
    assert "(fANOVA over 6 trials)" in line
    # the forest's fit depends on the order of the trials: the ranking's, best first
    runs = sorted(
        list_runs(runs_dir, sweep="imp"), key=lambda r: (-r.results["accuracy"], r.results["loss"])
    )
    trials = [
        ({"lr": r.config.train.lr, "dropout": r.config.network.dropout}, r.results["accuracy"])
        for r in runs
    ]
    reference = param_importance(trials).shares
    assert [(k, f"{v:.2f}") for k, v in reference] == shares
    monkeypatch.setitem(sys.modules, "sklearn", None)  # an install without it
    assert main(["sweep", "--show", "imp", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "importance: not given: parameter importance needs optuna and scikit-learn" in out


def test_variants_that_differ_trivially_are_not_marked_different(tiny_dir, runs_dir, capsys):
    """The issue's check: lr 0.003 and 0.0030001, each over 3 seeds, are not marked as
    different (neither is `worse`), while lr 0.0001 is, in `sweep --show`, `compare --sweep`
    and the sweep page alike; each says the test (paired: the variants share their seeds).
    The tables show only lr, say how many equal settings they hid, and --all-settings shows
    them all. Tiny generated data, 1 epoch per run."""
    import re

    argv = ["sweep", "--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify"]
    argv += ["--layers", "784-32-10", "--lr", "0.003,0.0030001,0.0001", "--epochs", "1"]
    argv += ["--seeds", "3", "--workers", "1", "--threads", "1", "--runs-dir", str(runs_dir)]
    assert main([*argv, "--name", "same", "--quiet"]) == 0
    capsys.readouterr()
    show = ["sweep", "--show", "same", "--runs-dir", str(runs_dir)]
    compare = ["compare", "--sweep", "same", "--runs-dir", str(runs_dir)]
    for command in (show, compare):
        assert main(command) == 0
        out = capsys.readouterr().out
        ranked = {
            found[1]: found[2].strip()
            for found in re.finditer(r"^ +\d+  lr=(\S+) +3 .*\]  (.*)$", out, re.M)
        }
        assert set(ranked) == {"0.003", "0.0030001", "0.0001"}, out
        assert ranked["0.0001"].startswith("worse (p="), out
        trivial = sorted(ranked[lr].split(" ")[0] for lr in ("0.003", "0.0030001"))
        assert trivial == ["best", "~best"], out
        assert "by a two-sided paired t-test over the seeds they share" in out
        assert re.search(r"^\d+ settings equal in every run not shown", out, re.M), out
    assert main([*show, "--all-settings"]) == 0
    out = capsys.readouterr().out
    assert "not shown" not in out and "optimizer=adam" in out and "epochs=1" in out
    assert main(["report", "--sweep", "same", "--runs-dir", str(runs_dir)]) == 0
    page = (runs_dir / "sweeps" / "same.html").read_text()
    marks = re.findall(r"<td>(best|~best \(p=[^<]*\)|worse \(p=[^<]*\))</td>", page)
    assert [m.split(" ")[0] for m in marks][2] == "worse" and len(marks) == 3
    assert "<th>95% CI of test_accuracy</th>" in page and "<th>optimizer</th>" not in page
    assert "importance: lr 1.00 (fANOVA over 3 trials)" in page
    assert 'alt="parallel"' in page
    assert main(["report", "--sweep", "same", "--all-settings", "--runs-dir", str(runs_dir)]) == 0
    assert "<th>optimizer</th>" in (runs_dir / "sweeps" / "same.html").read_text()
    run = list_runs(runs_dir, sweep="same")[0].name
    assert main(["report", run, "--all-settings", "--runs-dir", str(runs_dir)]) == 1
    assert "error: --all-settings goes with --sweep NAME" in capsys.readouterr().err


def test_class_weights_are_swept_and_fixed_from_the_command_line(
    tiny_dir, runs_dir, tmp_path, capsys
):
    """--class-weights in a sweep: ';' between variants (explicit weights hold commas), one
    value fixes it; each trial records its setting and the numbers it gave."""
    data = ["--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify", "--epochs", "1"]
    common = [*data, "--workers", "1", "--threads", "1", "--runs-dir", str(runs_dir)]
    varied = ["--class-weights", "none;2=3,7=0.5", "--metric", "test_balanced_accuracy"]
    assert main(["sweep", *common, *varied, "--name", "cw"]) == 0
    assert "ranked by test_balanced_accuracy" in capsys.readouterr().out
    runs = list_runs(runs_dir, sweep="cw")
    assert sorted(r.config.train.class_weights for r in runs) == ["2=3,7=0.5", "none"]
    weighted = next(r for r in runs if r.config.train.class_weights != "none")
    assert weighted.meta["class_weights"]["2"] == 3.0 and weighted.meta["class_weights"]["0"] == 1
    groups = load_sweep("cw", runs_dir).groups
    assert sorted(g["test_balanced_accuracy"][0] for g in groups) == sorted(
        r.results["balanced_accuracy"] for r in runs
    )
    journal = str(tmp_path / "cw.log")  # through a study: its trials carry the numbers too
    fixed = ["--class-weights", "auto", "--lr", "0.001,0.003", "--storage", journal]
    assert main(["sweep", *common, *fixed, "--name", "fixed"]) == 0
    runs = list_runs(runs_dir, sweep="fixed")
    assert len(runs) == 2 and {r.config.train.class_weights for r in runs} == {"auto"}
    groups = load_sweep("fixed", runs_dir, journal).groups
    assert sorted(g["test_balanced_accuracy"][0] for g in groups) == sorted(
        r.results["balanced_accuracy"] for r in runs
    )


def test_a_stacked_sweep_gives_each_variant_its_own_record(tiny_dir, runs_dir):
    """Stacked (the default) and apart (stack=False): the same runs, each a complete record
    that load_run, compare and the table read; meta.json says which stack it trained in."""
    from quicknets.records.comparison import compare_runs
    from quicknets.records.runs import load_run

    grid = {"lr": [0.001, 0.01], "weight_decay": [0.0, 1e-3], "dropout": [0.0, 0.2]}
    results, files = {}, {True: [], False: []}
    for stack in (True, False):
        lines = []
        name = "on" if stack else "off"
        sweep(
            base(tiny_dir),
            grid,
            1,
            workers=1,
            runs_dir=runs_dir,
            name=name,
            log=lines.append,
            stack=stack,
        )
        assert ("stacked: 8 runs in 1 stack(s) of 8" in lines[0]) == stack
        assert ("stacked: no (--no-stack)" in lines[0]) == (not stack)
        runs = list_runs(runs_dir, sweep=name)
        assert len(runs) == 8
        groups = {r.meta.get("stacked", {}).get("group") for r in runs}
        assert len(groups) == 1 and (None in groups) != stack
        for r in runs:
            loaded = load_run(r.path)
            assert len(loaded.history) == 2 and loaded.results["n"] == 100
            # the same files as a run alone (a sweep's trial fits familiarity.pt at first use,
            # on main: not compared here)
            files[stack].append(sorted({p.name for p in r.path.iterdir()} - {"familiarity.pt"}))
            key = (r.config.train.lr, r.config.train.weight_decay, r.config.network.dropout)
            results[key, stack] = (loaded.results["accuracy"], loaded.history[-1]["train_loss"])
        assert len(compare_runs(runs)["groups"]) == 8
    assert files[True] == files[False]
    for key, stack in list(results):
        if stack:
            (acc, loss), (acc_apart, loss_apart) = results[key, True], results[key, False]
            # the same bits as apart (both computed here): weights, and the reported loss by
            # alone's own kernel, so that a stacked run resumed alone continues it exactly
            assert (acc, loss) == (acc_apart, loss_apart)


def test_what_does_not_stack_trains_apart_and_says_why(tiny_dir, runs_dir):
    lines = []
    grid = {"network": ["784-16-10", "conv4-fc8"], "lr": [0.001, 0.01]}
    sweep(base(tiny_dir), grid, 1, workers=1, runs_dir=runs_dir, name="mix", log=lines.append)
    assert "stacked: 2 runs in 1 stack(s) of 2" in lines[0]
    assert "2 apart (stacking covers MLPs (layer sizes), not conv4-fc8)" in lines[0]
    assert len(list_runs(runs_dir, sweep="mix")) == 4


@pytest.mark.parametrize(
    "edited_file, said",
    [
        ("config.json", "batch_size 16 in config.json, 32 in meta.json"),
        ("meta.json", "lr 0.003 in config.json, 0.002 in meta.json"),
    ],
)
def test_a_stacked_sweep_resumed_after_a_record_was_edited(tiny_dir, runs_dir, edited_file, said):
    """Interrupted after the first epoch, every variant is resumable alone; one whose
    config.json or meta.json (its trained_with) was edited is left out in one line saying
    why, naming both files (either may be the edited one; it said config.json was changed
    when only meta.json was), and its trial trains again."""
    import json

    from quicknets.base.errors import Interrupted
    from quicknets.config.configs import RunConfig
    from quicknets.records.experiment import setup, train_stacked_recorded

    configs, models, datas = [], [], []
    for lr in (0.001, 0.003, 0.01):
        config, model, data = setup(RunConfig.build(**base(tiny_dir), lr=lr, threads=1))
        configs.append(config), models.append(model), datas.append(data)
    with pytest.raises(Interrupted):
        train_stacked_recorded(
            configs, models, datas, runs_dir, sweep="st", should_stop=lambda: True
        )
    rows = query(runs_dir, status="all")
    assert {r["status"] for r in rows} == {"interrupted"} and len(rows) == 3
    from quicknets.sweeps.record import save_record
    from quicknets.sweeps.space import Search

    save_record("st", Search.build(base(tiny_dir), {"lr": [0.001, 0.003, 0.01]}), runs_dir, None)
    edited = next(r["name"] for r in rows if r["settings"]["lr"] == 0.003)
    edit = runs_dir / edited / edited_file
    record = json.loads(edit.read_text())
    if edited_file == "config.json":
        record["train"]["momentum"] = None
        record["train"]["batch_size"] = 16
    else:
        record["trained_with"]["train"]["lr"] = 0.002
    edit.write_text(json.dumps(record))
    lines = []
    resume_sweep("st", workers=1, threads=1, runs_dir=runs_dir, log=lines.append)
    skipped = [line for line in lines if line.startswith("skipped")]
    assert len(skipped) == 1 and edited in skipped[0]  # one line says which and why
    assert (
        f"config.json and meta.json disagree on the settings it was trained with: {said}"
        in (skipped[0])
    )
    assert "put back the one edited" in skipped[0]
    assert "2 from their checkpoints" in lines[0]  # the others continue alone
    done = [r for r in query(runs_dir, status="all") if r["status"] == "done"]
    assert len(done) == 3 and all(r["epochs_done"] == 2 for r in done)  # its trial again
    assert edited not in {r["name"] for r in done}


# A sweep's own process, from its plan to its table, then runs, compare and --show; it ends by
# saying whether torch was imported. Its workers import torch, each in its own process.
PARENT = """
import sys
from quicknets.cli import main
from quicknets.sweeps.pool import Job, plan_stacks
from quicknets.sweeps.space import Range, Search

tiny, runs = sys.argv[1:3]
data = {"dataset": "mnist", "data_dir": tiny, "verify": False, "epochs": 1}
plans = [  # a member of each kind of plan: seeds, a grid, apart, shapes, random, a device
    ({}, {}, 5, "grid"),
    ({}, {"lr": [0.001, 0.003, 0.01, 0.03], "weight_decay": [0, 1e-4, 1e-3, 1e-2]}, 1, "grid"),
    ({"class_weights": "auto"}, {"bf16": [True, False]}, 2, "grid"),
    ({}, {"network": ["cnn", "mlp", "784-32-10"], "batchnorm": [True, False]}, 1, "grid"),
    ({"device": "cpu"}, {"lr": Range(1e-4, 1e-2, log=True)}, 2, "random"),
]
for base, vary, seeds, kind in plans:
    spec = Search.build({**data, **base}, vary, seeds, kind, 3, 0, "auto", True)
    plan_stacks([Job(spec.base, o, "plan", spec.metric) for o in spec.plan()], 2)
flags = ["--dataset", "mnist", "--data-dir", tiny, "--no-verify", "--runs-dir", runs]
sweep = ["sweep", "--seeds", "2", "--lr", "0.01,0.03", "--epochs", "1", "--name", "s"]
assert main([*sweep, "--workers", "2", "--threads", "1", "--quiet", *flags]) == 0
for command in (["runs"], ["compare", "--sweep", "s"], ["sweep", "--show", "s"]):
    assert main([*command, "--runs-dir", runs]) == 0
print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.skipif(CORES < 2, reason="one worker trains in the sweep's own process")
def test_a_sweeps_own_process_does_not_import_torch(tiny_dir, runs_dir):
    """Only the workers train, so only they import torch (~2 s); the sweep's process plans,
    waits and ranks without it, and so do runs, compare and sweep --show."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", PARENT, str(tiny_dir), str(runs_dir)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("torch imported: False\n"), done.stdout + done.stderr
    assert len(list_runs(runs_dir, sweep="s")) == 4  # the workers trained every run


def test_a_bad_flag_of_a_sweep_writes_nothing(runs_dir, capsys):
    """--class-weights naming no class, an empty list item, stack="no": one error line (or
    error) before any trial, and no sweep record or run folder."""
    for args in (["--class-weights", "foo=2"], ["--lr", "0.001,"], ["--lr", ",0.001"]):
        assert main(["sweep", *args, "--runs-dir", str(runs_dir)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: --") and err.count("\n") == 1, err
    with pytest.raises(QuicknetsError, match="stack must be true or false, got 'no'"):
        sweep(grid={"lr": [0.001]}, stack="no", runs_dir=runs_dir)
    with pytest.raises(QuicknetsError, match="stack must be true or false, got 'no'"):
        resume_sweep("any", stack="no", runs_dir=runs_dir)
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
