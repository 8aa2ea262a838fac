"""A run end to end through experiment.setup/run/resume: a saved model carries its own
preprocessing, seeds control everything (two processes and the CLI against Python), and records
made by the earlier format still list, compare, evaluate and resume."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import HANG_S
from quicknets.base.errors import QuicknetsError
from quicknets.cli import main
from quicknets.config.configs import RunConfig
from quicknets.evaluation.metrics import evaluate
from quicknets.records.experiment import resume, run, setup
from quicknets.records.runs import load_model, load_run

FIXTURES = Path(__file__).parents[1] / "fixtures" / "runs-v1"
FINISHED, STOPPED = "mlp-32_adam_lr0.003_s0-12117d", "mlp-32_adam_lr0.003_s0-cceadb"


def test_a_model_with_its_own_normalisation_scores_its_record_on_default_data(
    fashion, tmp_path, capsys
):
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "--mean",
                "0.2860",
                "--std",
                "0.3530",
                "--layers",
                "784-32-10",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--runs-dir",
                str(runs),
                "--quiet",
            ]
        )
        == 0
    )
    name = capsys.readouterr().out.split("saved: ")[1].strip().split("/")[-1]
    recorded = load_run(name, runs).results["accuracy"]
    for ref in (name, name[:20], runs / name, load_run(name, runs)):  # name, prefix, folder, run
        model = load_model(ref, runs)
        assert model.preprocessing.mean == (0.286,) and model.preprocessing.std == (0.353,)
    assert round(evaluate(model, fashion)["accuracy"], 4) == round(recorded, 4)  # default 0.5/0.5
    assert fashion.mean == 0.5


def test_a_model_file_of_another_network_is_refused(tiny_dir, tmp_path):
    config = RunConfig.build(
        dataset="mnist",
        data_dir=str(tiny_dir),
        verify=False,
        network="784-32-10",
        epochs=1,
        threads=1,
    )
    path, _ = run(config, tmp_path / "runs", quiet=True)
    other, _ = run(config.replace(network="784-16-10"), tmp_path / "runs", quiet=True)
    shutil.copy(other / "model.pt", path / "model.pt")
    with pytest.raises(QuicknetsError, match="holds another network.*784-16-10"):
        load_model(path)


def test_setup_seeds_the_network_and_shapes_it_from_the_data(tiny_dir):
    config = RunConfig.build(
        dataset="mnist", data_dir=str(tiny_dir), verify=False, network="conv4-fc8", seed=3
    )
    resolved, model, data = setup(config)
    assert resolved.train.threads >= 1 and resolved.train.device in ("cpu", "cuda")
    assert config.train.threads == 0  # the caller's config is not changed
    _, again, _ = setup(config)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    assert model.config["input_shape"] == [1, 28, 28] and model.config["num_classes"] == 10


def test_seeds_with_a_validation_split_read_the_data_once_and_split_it_per_seed(
    tiny_dir, monkeypatch
):
    """setup_sharing reads a dataset once for every seed (it loaded it per seed when a
    validation split made the seed matter) and gives each seed the data, split and network
    that setting it up alone gives: the same bits."""
    import dataclasses

    from quicknets.data import loading
    from quicknets.records.experiment import setup_sharing

    base = dict(dataset="mnist", data_dir=str(tiny_dir), verify=False, network="784-16-10")
    configs = [
        RunConfig.build(**base, val_split=0.2, mean="auto", std="auto", seed=s) for s in (0, 3, 5)
    ]
    configs.append(RunConfig.build(**base, val_split=0.1, seed=3))  # another split, same read
    alone = [setup(c) for c in configs]
    reads = []
    real = loading.read_builtin
    monkeypatch.setattr(loading, "read_builtin", lambda *a, **k: reads.append(a) or real(*a, **k))
    shared = setup_sharing(configs)
    assert len(reads) == 1
    for (config, model, data), (config_a, model_a, data_a) in zip(shared, alone):
        assert config == config_a
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model_a.parameters()))
        for field in dataclasses.fields(data):
            got, want = getattr(data, field.name), getattr(data_a, field.name)
            if isinstance(want, torch.Tensor):
                assert torch.equal(got, want), field.name
            else:
                assert got == want, field.name
    seeds = [d.seed for _, _, d in shared]
    assert seeds == [0, 3, 5, 3] and len({len(d.val_labels) for _, _, d in shared}) == 2


STORY = """
import json, sys
from quicknets import load_dataset, network, train, evaluate, classify
data = load_dataset("fashion-mnist")
model = network("784-256-128-64-10")
history = train(model, data, optimizer="adam", lr=0.003, epochs=1, threads=1, quiet=True)
results = evaluate(model, data)
top = classify(model, 0, data, top=3)
json.dump({"history": [{k: v for k, v in h.items() if k != "seconds"} for h in history],
           "accuracy": results["accuracy"], "loss": results["loss"], "top": top}, sys.stdout)
"""


def test_the_python_story_repeats_in_two_processes_and_matches_the_command_line(fashion, tmp_path):
    def story():
        out = subprocess.run(
            [sys.executable, "-c", STORY],
            capture_output=True,
            text=True,
            check=True,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin", **_keep_env()},
            timeout=HANG_S,
        )
        return json.loads(out.stdout)

    first, second = story(), story()
    assert first == second
    runs = tmp_path / "runs"
    assert (
        main(["train", "--epochs", "1", "--threads", "1", "--runs-dir", str(runs), "--quiet"]) == 0
    )
    (path,) = [p for p in runs.iterdir() if p.is_dir()]
    history = json.loads((path / "history.json").read_text())
    results = json.loads((path / "results.json").read_text())
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in history] == first["history"]
    assert results["accuracy"] == first["accuracy"] and results["loss"] == first["loss"]


TINY_STORY = """
import json, sys
from quicknets import load_dataset, network, train, evaluate
data = load_dataset("mnist", sys.argv[1], verify=False, download=False)
model = network("784-32-10")
history = train(model, data, epochs=2, threads=1, quiet=True)
results = evaluate(model, data)
json.dump({"history": [{k: v for k, v in h.items() if k != "seconds"} for h in history],
           "accuracy": results["accuracy"], "loss": results["loss"]}, sys.stdout)
"""


@pytest.mark.parametrize(
    "kernels",
    [{}, {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}],
    ids=["native", "avx2"],
)
def test_the_python_story_gives_the_command_line_s_bits(tiny_dir, tmp_path, kernels):
    """A fresh Python process and `quicknets train`, same settings and threads, both run here:
    the same bits, as they share one math mode (machine.use_strict_math). The data and network
    are ones whose test loss changes in the last bits with MKL's mode on this Xeon
    (1.189703140258789 strict, 1.1897032165527344 in MKL's usual mode)."""
    env = {**{k: v for k, v in os.environ.items() if k != "MKL_CBWR"}, **kernels}  # fresh
    story = subprocess.run(
        [sys.executable, "-c", TINY_STORY, str(tiny_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=HANG_S,
    )
    python = json.loads(story.stdout)
    runs = tmp_path / "runs"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "quicknets",
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            str(tiny_dir),
            "--no-verify",
            "--network",
            "784-32-10",
            "--epochs",
            "2",
            "--threads",
            "1",
            "--runs-dir",
            str(runs),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert cli.returncode == 0, cli.stderr
    (path,) = [p for p in runs.iterdir() if p.is_dir()]
    history = json.loads((path / "history.json").read_text())
    results = json.loads((path / "results.json").read_text())
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in history] == python["history"]
    assert (results["accuracy"], results["loss"]) == (python["accuracy"], python["loss"])
    meta = json.loads((path / "meta.json").read_text())
    assert meta["math_mode"] == (
        "MKL_CBWR=AUTO,STRICT" if torch.backends.mkl.is_available() else "no MKL"
    )


def _keep_env() -> dict:
    return {
        k: os.environ[k]
        for k in (
            "XDG_CACHE_HOME",
            "PYTHONPATH",
            "HOME",
            "MKL_ENABLE_INSTRUCTIONS",
            "ATEN_CPU_CAPABILITY",
        )
        if k in os.environ
    }  # the kernels the test process (the CLI's side) runs


# The fixtures were recorded on another CPU (an AMD EPYC): what is computed here from their
# weights (evaluated, or trained on from the checkpoint) runs other kernels (MKL's branch for
# this CPU, other vector widths), which round differently. Measured on an Intel Xeon (Sapphire
# Rapids), natively and with MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2: epoch 2's
# train_loss_sum 368.60608 against the record's 368.60605 (relative 8e-8), test loss and
# accuracy equal. Training can grow such differences (the default network: 0.25% in one
# epoch's train_loss_sum between those two kernel sets), so this small run's floats are held
# to a relative 1e-4 and its test accuracy to 5 of its 10000 images.
ACROSS_CPUS = {"rel": 1e-4}
ACCURACY_ACROSS_CPUS = 5 / 10000


@pytest.fixture
def old_runs(tmp_path):
    """Two records written by the format before RunConfig: a finished run and the same run
    interrupted after epoch 1 (settings: 784-32-10, dropout 0.1, val_split 0.1, mean 0.286,
    std 0.353, 2 epochs, 1 thread)."""
    runs = tmp_path / "runs"
    shutil.copytree(FIXTURES, runs)
    return runs


def test_old_records_list_compare_and_evaluate(old_runs, fashion, capsys):
    assert (
        main(
            ["runs", "--runs-dir", str(old_runs), "--where", "network=784-32-10", "--status", "all"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert FINISHED in out and STOPPED in out
    old = load_run(FINISHED, old_runs)
    assert old.config.network.network == "784-32-10" and old.config.data.mean == 0.286
    assert "train_accuracy" in old.history[0] and "val_accuracy" in old.history[0]
    model = load_model(old)
    assert model.preprocessing.mean == (0.286,) and model.preprocessing.classes[0] == "T-shirt/top"
    assert evaluate(model, fashion)["accuracy"] == pytest.approx(  # on default data
        old.results["accuracy"], abs=ACCURACY_ACROSS_CPUS
    )
    assert main(["evaluate", FINISHED, "--runs-dir", str(old_runs)]) == 0
    shown = capsys.readouterr().out.split("test accuracy: ")[1].split()[0]
    assert float(shown) == pytest.approx(old.results["accuracy"], abs=ACCURACY_ACROSS_CPUS)


def test_an_old_record_without_familiarity_or_robustness_reports_and_shows(
    old_runs, fashion, capsys
):
    folder = old_runs / FINISHED
    assert not (folder / "familiarity.pt").exists()  # nor robustness in its results.json
    assert main(["report", FINISHED, "--runs-dir", str(old_runs)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith(f"wrote: {folder / 'report.html'}\n")
    html = (folder / "report.html").read_text()
    notes = re.findall(r"<p>(.*?)</p>", html[html.index("<h2>Can you trust it?</h2>") :])
    assert any(f"quicknets evaluate {FINISHED} --robustness" in n for n in notes)
    assert 'alt="familiarity"' in html  # fitted once, kept for classify and the demo
    assert load_model(load_run(FINISHED, old_runs)).familiarity is not None
    assert main(["show", FINISHED, "--runs-dir", str(old_runs)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.count("wrote: ") >= 4
    assert all((folder / "figures" / f"{name}.png").is_file() for name in ("curves", "confusion"))


def test_an_old_interrupted_record_resumes_to_the_numbers_of_the_finished_one(old_runs):
    path, results = resume(STOPPED, old_runs, quiet=True)
    finished = load_run(FINISHED, old_runs)
    assert results["accuracy"] == pytest.approx(
        finished.results["accuracy"], abs=ACCURACY_ACROSS_CPUS
    )
    assert results["loss"] == pytest.approx(finished.results["loss"], **ACROSS_CPUS)
    resumed = load_run(STOPPED, old_runs)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.history[:1]) == strip(finished.history[:1])  # both read, not trained
    for row, ref in zip(resumed.history[1:], finished.history[1:], strict=True):  # trained here
        assert row.keys() == ref.keys()
        for key in row.keys() - {"seconds"}:
            assert row[key] == pytest.approx(ref[key], **ACROSS_CPUS), key
    assert main(["compare", FINISHED, STOPPED, "--runs-dir", str(old_runs)]) == 0


def interrupted_run(tiny_dir, runs_dir, **settings) -> Path:
    """A run of 3 epochs stopped (as by Ctrl-C) after its first: a checkpoint to resume."""
    from quicknets.base.errors import Interrupted

    def stop(epoch, row):
        raise KeyboardInterrupt

    config = RunConfig.build(
        dataset="mnist",
        data_dir=str(tiny_dir),
        verify=False,
        network="784-16-10",
        epochs=3,
        threads=1,
        batch_size=32,
        **settings,
    )
    with pytest.raises(Interrupted):
        run(config, runs_dir, quiet=True, on_epoch=stop)
    (path,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return path


def edit_config(path: Path, **settings) -> None:
    config = RunConfig.from_dict(json.loads((path / "config.json").read_text()))
    (path / "config.json").write_text(json.dumps(config.replace(**settings).to_dict()))


@pytest.mark.parametrize(
    "edit",
    [
        {"lr": 0.1},
        {"dropout": 0.5},
        {"epochs": 4},
        {"seed": 7},
        {"optimizer": "sgd"},
        {"val_split": 0.2},
        {"class_weights": "auto"},
    ],
)
def test_resume_refuses_a_config_edited_after_the_run_started(tiny_dir, runs_dir, capsys, edit):
    """`--resume` trusted an edited config.json: the record then claimed settings it was not
    trained with (dropout, lr, seed: silently; epochs: trained longer than it began)."""
    path = interrupted_run(tiny_dir, runs_dir)
    before = json.loads((path / "config.json").read_text())
    ((key, value),) = edit.items()
    edit_config(path, **edit)
    trained = RunConfig.from_dict(before).flat()[key]
    assert main(["train", "--resume", path.name, "--runs-dir", str(runs_dir)]) == 1
    err = capsys.readouterr().err
    also = ", momentum 0.9 in config.json, None in checkpoint.pt" if key == "optimizer" else ""
    assert err == (
        f"error: run {path.name}'s config.json and checkpoint.pt disagree on the settings it "
        f"was trained with: {key} {value!r} in config.json, {trained!r} in checkpoint.pt{also}; "
        "put config.json back to resume (a "
        f"record must hold the settings it was trained with), or train a new run\n"
    )
    assert (path / "checkpoint.pt").is_file() and not (path / "results.json").exists()


def test_resume_may_change_where_it_runs_and_a_copy_of_it_counts_once(tiny_dir, runs_dir):
    """threads, device, data_dir may change on resume (twice, the checkpoint then holding the
    new thread count); a `cp -r` copy of the stopped run, resumed too, is the same run."""
    from quicknets.records.comparison import compare

    path = interrupted_run(tiny_dir, runs_dir)
    copy = shutil.copytree(path, runs_dir / f"{path.name}-copy")
    moved = shutil.copytree(tiny_dir, tiny_dir.parent / "moved")
    from quicknets.base.errors import Interrupted

    def stop(epoch, row):
        raise KeyboardInterrupt

    from quicknets.records import experiment

    # resumed with 2 threads, stopped after epoch 2
    with pytest.raises(Interrupted), pytest.MonkeyPatch.context() as mp:
        saver = experiment.epoch_saver
        mp.setattr(
            experiment,
            "epoch_saver",
            lambda p, loggers, on_epoch, config: saver(p, loggers, stop, config),
        )
        resume(path.name, runs_dir, threads=2, quiet=True)
    resume(path.name, runs_dir, data_dir=str(moved), quiet=True)
    resume(copy.name, runs_dir, quiet=True)
    table = compare([path.name, copy.name], runs_dir)
    assert [r["name"] for r in table["runs"]] == [path.name]
    assert table["groups"][0]["n"] == 1 and table["skipped"][0].startswith(f"{copy}: a copy")


def test_a_class_weighted_run_records_its_weights_and_resumes_to_the_same_numbers(
    tiny_dir, runs_dir
):
    """--class-weights: config.json keeps the setting, meta.json the numbers it gave; a run
    stopped after its first epoch and resumed ends with the bits of one never stopped."""
    weights = "2=3,7=0.5"
    path = interrupted_run(tiny_dir, runs_dir, class_weights=weights)
    _, resumed = resume(path.name, runs_dir, quiet=True)
    config = RunConfig.build(
        dataset="mnist",
        data_dir=str(tiny_dir),
        verify=False,
        network="784-16-10",
        epochs=3,
        threads=1,
        batch_size=32,
        class_weights=weights,
    )
    whole, results = run(config, runs_dir / "whole", quiet=True)
    assert resumed == results
    for record in (load_run(path), load_run(whole)):
        assert record.config.train.class_weights == weights
        assert record.meta["class_weights"] == {
            str(c): {2: 3.0, 7: 0.5}.get(c, 1.0) for c in range(10)
        }
    plain, _ = run(config.replace(class_weights="none"), runs_dir / "plain", quiet=True)
    assert "class_weights" not in load_run(plain).meta
    assert load_run(plain).history[0]["train_loss"] != load_run(whole).history[0]["train_loss"]


def test_a_class_the_data_lacks_is_refused_before_the_run_folder(tiny_dir, runs_dir, capsys):
    args = ["train", "--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify"]
    code = main([*args, "--class-weights", "Shirt=2", "--runs-dir", str(runs_dir)])
    err = capsys.readouterr().err
    assert code == 1 and err == (
        "error: --class-weights names 'Shirt', which is not a class of the data; the "
        "classes are: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9\n"
    )
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_a_sweep_trial_fits_its_familiarity_at_first_use_not_after_training(tiny_dir, tmp_path):
    from quicknets.evaluation.familiarity import fit_familiarity
    from quicknets.records.runs import run_familiarity

    config = RunConfig.build(
        dataset="mnist", data_dir=str(tiny_dir), verify=False, network="784-16-10", epochs=1
    )
    runs = tmp_path / "runs"
    alone, alone_results = run(config, runs, quiet=True)
    trial, trial_results = run(config, runs, quiet=True, sweep="s")
    assert (alone / "familiarity.pt").is_file() and "familiarity" in alone_results
    assert not (trial / "familiarity.pt").exists() and "familiarity" not in trial_results
    record = load_run(trial)
    model = load_model(record)
    assert model.familiarity is None
    fitted = run_familiarity(record, model)  # classify, the demo, evaluate --ood, report
    assert (trial / "familiarity.pt").is_file()
    assert load_model(record).familiarity.threshold == fitted.threshold
    # the same fit the trial would have had after training: same network, same data
    _, _, data = setup(config)
    assert fitted.threshold == fit_familiarity(model, data).threshold
    assert fitted.threshold == load_model(load_run(alone)).familiarity.threshold


@pytest.mark.parametrize("network", ["784-16-10", "conv4-fc8"])
def test_a_run_tests_itself_and_fits_its_familiarity_in_its_own_threads(
    tiny_dir, tmp_path, monkeypatch, network
):
    """After the epochs, the test pass and the familiarity fit run in the run's thread count
    (not the caller's: torch's default, every core), and the caller's count is back after.
    The recorded numbers are those of the saved model tested at the caller's count, here."""
    import quicknets.evaluation.familiarity as familiarity
    import quicknets.evaluation.metrics as metrics

    threads_seen = []

    def seen(f):
        def wrapped(*args, **kwargs):
            threads_seen.append((f.__name__, torch.get_num_threads()))
            return f(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(metrics, "evaluate", seen(metrics.evaluate))
    monkeypatch.setattr(familiarity, "fit_familiarity", seen(familiarity.fit_familiarity))
    config = RunConfig.build(
        dataset="mnist", data_dir=str(tiny_dir), verify=False, network=network, epochs=1, threads=1
    )
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        path, results = run(config, tmp_path / "runs", quiet=True)
        assert torch.get_num_threads() == 2
        assert threads_seen == [("evaluate", 1), ("fit_familiarity", 1)]
        model = load_model(load_run(path))
        _, _, data = setup(config)
        again = metrics.evaluate(model, data)  # at 2 threads
        fitted = familiarity.fit_familiarity(model, data)
    finally:
        torch.set_num_threads(caller)
    assert (results["loss"], results["accuracy"]) == (again["loss"], again["accuracy"])
    assert results["familiarity"]["threshold"] == fitted.threshold


def test_a_stack_tests_its_variants_in_its_own_threads(tiny_dir, tmp_path, monkeypatch):
    """As a run alone: each stacked variant's test pass and familiarity fit run in the stack's
    thread count, and the caller's count is back after."""
    import quicknets.evaluation.familiarity as familiarity
    import quicknets.evaluation.metrics as metrics
    from quicknets.records.experiment import train_stacked_recorded

    threads_seen = []

    def seen(f):
        def wrapped(*args, **kwargs):
            threads_seen.append(torch.get_num_threads())
            return f(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(metrics, "evaluate", seen(metrics.evaluate))
    monkeypatch.setattr(familiarity, "fit_familiarity", seen(familiarity.fit_familiarity))
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        configs, models, datas = [], [], []
        for lr in (0.001, 0.01):
            config, model, data = setup(
                RunConfig.build(
                    dataset="mnist",
                    data_dir=str(tiny_dir),
                    verify=False,
                    network="784-16-10",
                    epochs=1,
                    lr=lr,
                    threads=1,
                )
            )
            configs.append(config), models.append(model), datas.append(data)
        done = train_stacked_recorded(configs, models, datas, tmp_path / "runs")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(caller)
    assert all("familiarity" in results for _, results in done) and len(done) == 2
    assert threads_seen == [1, 1, 1, 1]  # evaluate and fit_familiarity, per variant


def ctrl_c_inside(module, name: str, when=lambda *a, **k: True):
    """A stand-in for module.name that presses Ctrl-C (SIGINT to this process) when `when`
    holds for its arguments, then does what the original does (inside an atomic write, the
    press waits for the write's end)."""
    original = getattr(module, name)

    def pressed(*args, **kwargs):
        if when(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    return pressed


def tiny_config(tiny_dir, **settings) -> RunConfig:
    return RunConfig.build(
        dataset="mnist",
        data_dir=str(tiny_dir),
        verify=False,
        network="784-16-10",
        threads=1,
        batch_size=32,
        **settings,
    )


def leftovers(runs_dir) -> list:
    return sorted(p.name for p in runs_dir.rglob("*") if re.search(r"\.(tmp|partial)$", p.name))


@pytest.mark.parametrize(
    "stage", ["making its folder", "saving an epoch", "testing it", "closing its record"]
)
def test_ctrl_c_at_any_stage_of_a_run_leaves_it_interrupted_or_done_never_half(
    tiny_dir, runs_dir, monkeypatch, stage
):
    """Ctrl-C while the run folder was made left a .partial folder; between an epoch's
    checkpoint and its history, a record that said epoch 0 beside a checkpoint of epoch 1;
    while testing, a run neither marked interrupted nor finished (shown as stopped)."""
    from quicknets.base.errors import Interrupted
    from quicknets.base.interrupts import watch_ctrl_c
    from quicknets.evaluation import metrics
    from quicknets.networks import models
    from quicknets.records import index, runs

    patched = {
        "making its folder": (runs, "atomic_write_json", lambda p, *a, **k: p.name == "meta.json"),
        "saving an epoch": (torch, "save", lambda s, *a, **k: s.get("epoch") == 2),
        "testing it": (metrics, "evaluate", lambda *a, **k: True),
        "closing its record": (models, "save_model", lambda *a, **k: True),
    }[stage]
    monkeypatch.setattr(patched[0], patched[1], ctrl_c_inside(*patched))
    with watch_ctrl_c(), pytest.raises(KeyboardInterrupt) as raised:
        run(tiny_config(tiny_dir, epochs=3), runs_dir, quiet=True)
    monkeypatch.undo()
    (row,) = index.query(runs_dir, status="all")
    assert leftovers(runs_dir) == []
    path = runs_dir / row["name"]
    if stage == "closing its record":  # it closed whole, then the Ctrl-C acted
        assert row["status"] == "done" and raised.type is not Interrupted
        assert sorted(p.name for p in path.iterdir() if p.name != ".lock") == sorted(
            ["config.json", "meta.json", "history.json", "results.json", "model.pt"]
            + ["familiarity.pt"]
        )
        return
    assert raised.type is Interrupted and row["status"] == "interrupted"
    if stage == "making its folder":  # before its first epoch: nothing to resume
        assert "no checkpoint to resume" in str(raised.value)
        return
    kept = torch.load(path / "checkpoint.pt", weights_only=True)["epoch"]
    assert kept == len(json.loads((path / "history.json").read_text())) == row["epochs_done"]
    assert f"after epoch {kept} of 3" in str(raised.value)
    resumed, results = resume(row["name"], runs_dir, quiet=True)
    assert resumed == path and index.query(runs_dir, status="all")[0]["status"] == "done"


def test_an_error_that_a_ctrl_c_came_out_as_marks_the_run_interrupted(tiny_dir, runs_dir):
    """A library that turns KeyboardInterrupt into its own error (torch.save: RuntimeError
    "unexpected pos") had the run marked failed, and the command printed that error."""
    from quicknets.base.errors import Interrupted
    from quicknets.base.interrupts import watch_ctrl_c
    from quicknets.evaluation import metrics
    from quicknets.records import index

    def evaluate_turning_ctrl_c_into_an_error(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(3):
                pass
        except KeyboardInterrupt:
            raise RuntimeError("unexpected pos 704 vs 598") from None

    with pytest.MonkeyPatch.context() as mp, watch_ctrl_c(), pytest.raises(Interrupted):
        mp.setattr(metrics, "evaluate", evaluate_turning_ctrl_c_into_an_error)
        run(tiny_config(tiny_dir, epochs=2), runs_dir, quiet=True)
    assert [r["status"] for r in index.query(runs_dir, status="all")] == ["interrupted"]
    with pytest.MonkeyPatch.context() as mp, pytest.raises(RuntimeError):  # not watched:
        mp.setattr(metrics, "evaluate", evaluate_turning_ctrl_c_into_an_error)  # a library
        run(tiny_config(tiny_dir, epochs=2, seed=1), runs_dir, quiet=True)  # caller's own
    statuses = {r["settings"]["seed"]: r["status"] for r in index.query(runs_dir, status="all")}
    assert statuses == {0: "interrupted", 1: "failed"}


def test_a_ctrl_c_swallowed_on_its_way_still_stops_the_training(tiny_dir, runs_dir, monkeypatch):
    """A Ctrl-C raised inside a finalizer is printed as "Exception ignored" and dropped (seen in
    SQLAlchemy's InstanceState._cleanup), or cleared by a library (torch's first import of
    numpy): the training went on to its last epoch. It stops at its next step."""
    from quicknets.base.errors import Interrupted
    from quicknets.base.interrupts import watch_ctrl_c
    from quicknets.records import index

    class PressedInItsFinalizer:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(3):
                pass

    ignored = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: ignored.append(u.exc_type))
    with watch_ctrl_c(), pytest.raises(Interrupted):
        run(
            tiny_config(tiny_dir, epochs=5),
            runs_dir,
            quiet=True,
            on_epoch=lambda epoch, row: PressedInItsFinalizer() if epoch == 2 else None,
        )
    assert ignored == [KeyboardInterrupt]
    (row,) = index.query(runs_dir, status="all")
    assert row["status"] == "interrupted" and row["epochs_done"] == 2


def test_ctrl_c_loading_a_checkpoint_is_an_interruption_not_a_corrupt_file(
    tiny_dir, runs_dir, capsys
):
    """A Ctrl-C inside torch.load, as torch turns it into an error, was reported as
    `error: checkpoint ... is corrupt or foreign`."""
    from quicknets.training import checkpoint

    path = interrupted_run(tiny_dir, runs_dir)

    def load_turning_ctrl_c_into_an_error(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(3):
                pass
        except KeyboardInterrupt:
            raise RuntimeError("PytorchStreamReader failed reading zip archive") from None

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint.torch, "load", load_turning_ctrl_c_into_an_error)
        code = main(["train", "--resume", path.name, "--runs-dir", str(runs_dir)])
    assert (code, capsys.readouterr().err) == (130, "interrupted\n")
    assert main(["train", "--resume", path.name, "--runs-dir", str(runs_dir), "--quiet"]) == 0
