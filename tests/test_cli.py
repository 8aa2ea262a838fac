"""Every CLI command end to end in a temporary folder, errors included."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import HANG_S, need, wait_until
from quicknets.cli import build_parser, main
from quicknets.config.presets import PRESETS
from quicknets.data.images import load_image
from quicknets.data.loading import load_dataset
from quicknets.records.runs import load_trained


def run_cli(*args, cwd=None):
    """`python -m quicknets ARGS` in a subprocess: (exit code, stdout, stderr)."""
    p = subprocess.run(
        [sys.executable, "-m", "quicknets", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    return p.returncode, p.stdout, p.stderr


def test_help_lists_commands():
    code, out, _ = run_cli("--help")
    assert code == 0
    for command in ("train", "evaluate", "classify"):
        assert command in out


def test_help_does_not_import_torch():
    code = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom quicknets.cli import "
            "build_parser\nbuild_parser()\nassert 'torch' not in sys.modules",
        ],
        capture_output=True,
        text=True,
    ).returncode
    assert code == 0


def test_train_evaluate_classify_end_to_end(tiny_dir, tmp_path):
    runs = tmp_path / "runs"
    code, out, err = run_cli(
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        tiny_dir,
        "--no-verify",
        "--epochs",
        "2",
        "--runs-dir",
        runs,
        "--quiet",
    )
    assert code == 0, err
    saved = [line for line in out.splitlines() if line.startswith("saved: ")]
    assert len(saved) == 1
    run_dir = saved[0].removeprefix("saved: ")
    assert "test accuracy:" in out
    code, out, err = run_cli("evaluate", run_dir, "--data-dir", tiny_dir)
    assert code == 0, err
    assert "test accuracy:" in out
    code, out, err = run_cli("classify", run_dir, "--index", "0", "--data-dir", tiny_dir)
    assert code == 0, err
    assert out.count("#" * 40) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--lr", "-1"], "--lr must be at least"),
        (["train", "--epochs", "abc"], "--epochs must be int"),
        (["train", "--optimizer", "lbfgs"], "--optimizer must be one of"),
        (["train", "--layers", "100-10"], "first size must be the input size 784"),
        (["train", "--layers", "784-0-10"], "must be positive"),
        (["train", "--layers", "784"], "at least two sizes"),
        (
            ["train", "--layers", "784-64-10", "--activation", "swish"],
            "--activation must be one of",
        ),
        (["train", "--model", "conv32-pool"], "unknown layer 'pool'"),
        (["evaluate", "no-such-run"], "no run 'no-such-run'"),
        (["classify", "no-such-run", "--index", "0"], "no run 'no-such-run'"),
        (["classify", "no-such-run"], "IMAGE files after RUN, or --index N"),
        (["train", "--class-weights", "Shirt"], "--class-weights must be none, auto, or NAME="),
        (["train", "--class-weights", "Boot=2", "--epochs", "1"], "the classes are: T-shirt"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, tmp_path, capsys):
    code = main([*args, "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def _train_tiny(tiny_dir, runs):
    code, out, err = run_cli(
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        tiny_dir,
        "--no-verify",
        "--epochs",
        "1",
        "--layers",
        "784-16-10",
        "--runs-dir",
        runs,
    )
    assert code == 0, err
    return [line for line in out.splitlines() if line.startswith("saved: ")][0][7:]


def test_saved_run_reproduces_its_test_metrics(tiny_dir, tmp_path):
    import json
    from pathlib import Path

    run_dir = Path(_train_tiny(tiny_dir, tmp_path / "runs"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["threads"] >= 1 and config["train"]["device"] in ("cpu", "cuda")
    saved = json.loads((run_dir / "results.json").read_text())
    code, out, _ = run_cli(
        "evaluate", run_dir.name, "--runs-dir", tmp_path / "runs", "--data-dir", tiny_dir
    )
    assert code == 0
    assert f"test accuracy: {saved['accuracy']:.4f}" in out


def test_model_file_never_runs_code(tiny_dir, tmp_path):
    """A model.pt holding a pickle that would run a command is refused; the command never runs."""
    import os
    import pickle
    from pathlib import Path

    run_dir = Path(_train_tiny(tiny_dir, tmp_path / "runs"))
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (run_dir / "model.pt").write_bytes(pickle.dumps(Exploit()))
    code, out, err = run_cli("classify", run_dir, "--index", "0", "--data-dir", tiny_dir)
    assert code == 1 and err.startswith("error: cannot load") and "Traceback" not in err
    assert not marker.exists()


def test_run_without_model_file(tiny_dir, tmp_path):
    from pathlib import Path

    run_dir = Path(_train_tiny(tiny_dir, tmp_path / "runs"))
    (run_dir / "model.pt").unlink()
    code, _, err = run_cli("evaluate", run_dir, "--data-dir", tiny_dir)
    assert code == 1 and "has no saved model" in err


def test_classify_image_file_and_unreadable_one(tiny_dir, tmp_path):
    from PIL import Image

    run_dir = _train_tiny(tiny_dir, tmp_path / "runs")
    Image.new("RGB", (64, 40), (255, 255, 255)).save(tmp_path / "white.png")
    code, out, err = run_cli("classify", run_dir, tmp_path / "white.png", "--top", "2")
    assert code == 0, err
    # a white image may be unlike the bars: a line of familiarity under the banner, then
    lines = [line for line in out.strip().splitlines() if "does not look like" not in line]
    assert out.count("#" * 40) == 2 and len(lines) == 1 + 3 + 2
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    code, _, err = run_cli("classify", run_dir, tmp_path / "broken.jpg")
    assert code == 1 and "cannot read" in err and "Traceback" not in err


def _tiny_run(tiny_dir, runs_dir, capsys) -> str:
    """Train a small run in-process on the generated data; return its folder."""
    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            str(tiny_dir),
            "--no-verify",
            "--layers",
            "784-32-10",
            "--epochs",
            "2",
            "--threads",
            "1",
            "--runs-dir",
            str(runs_dir),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    return next(line for line in out.splitlines() if line.startswith("saved: "))[7:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["classify"], "the following arguments are required: RUN\n"),
        (["classify", "--index", "3"], "the following arguments are required: RUN\n"),
        (["compare", "--where"], "argument --where: expected one argument\n"),
    ],
)
def test_a_list_of_positionals_is_not_called_required(args, message, capsys):
    """argparse calls a `nargs="*"` positional without a default required: `classify` alone
    said "required: RUN, IMAGE", though --index replaces IMAGE."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2 and capsys.readouterr().err.endswith(message)


def test_files_and_runs_may_follow_an_option(tiny_dir, tmp_path, capsys):
    """argparse fills a list of positionals from their first run only: `classify RUN --top 2
    shoe.png` said "unrecognized arguments: shoe.png"."""
    from PIL import Image

    run_dir = _tiny_run(tiny_dir, tmp_path / "runs", capsys)
    Image.new("L", (28, 28), 0).save(tmp_path / "a.png")
    assert main(["classify", run_dir, "--top", "2", str(tmp_path / "a.png")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path / 'a.png'}\n") and out.count("#" * 40) == 2
    assert (
        main(
            [
                "classify",
                run_dir,
                str(tmp_path / "a.png"),
                "--index",
                "1",
                str(tmp_path / "a.png"),
                "--data-dir",
                str(tiny_dir),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.count("#" * 40) == 2 * 3
    assert main(["compare", run_dir, "--runs-dir", str(tmp_path / "runs"), run_dir]) == 0
    assert "(same settings)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # an unknown option after them is still refused
        main(["classify", run_dir, "--top", "2", str(tmp_path / "a.png"), "--bogus"])
    assert e.value.code == 2
    assert "error: unrecognized arguments: a.png --bogus" in capsys.readouterr().err.replace(
        str(tmp_path / "a.png"), "a.png"
    )
    with pytest.raises(SystemExit) as e:  # and a stray word where no list is taken
        main(["evaluate", run_dir, "extra"])
    assert e.value.code == 2 and "error: unrecognized arguments: extra" in capsys.readouterr().err


def test_evaluate_val_of_a_run_without_one(tiny_dir, tmp_path, capsys):
    run_dir = _tiny_run(tiny_dir, tmp_path / "runs", capsys)
    assert main(["evaluate", run_dir, "--split", "val", "--data-dir", str(tiny_dir)]) == 1
    assert capsys.readouterr().err == (  # was "set val_split to make one": not for a record
        f"error: {run_dir} was trained without a validation set (--val-split), so it has no "
        "val split; --split test or train\n"
    )
    assert main(["evaluate", run_dir, "--split", "train", "--data-dir", str(tiny_dir)]) == 0
    assert "train accuracy: " in capsys.readouterr().out


def test_show_and_report_write_next_to_the_record(tiny_dir, tmp_path, capsys):
    from pathlib import Path

    run_dir = Path(_tiny_run(tiny_dir, tmp_path / "runs", capsys))
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    names = ["confusion.png", "curves.png", "predictions.png", "reliability.png", "top_losses.png"]
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == names
    assert out.count("wrote: ") == 5
    assert main(["report", run_dir.name, "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert f"wrote: {run_dir / 'report.html'}" in out
    # the run's 4 figures, and reliability, familiarity, attribution of "Can you trust it?"
    assert (run_dir / "report.html").read_text().count("data:image/png;base64,") == 7


def test_help_lists_show_and_report():
    code, out, _ = run_cli("--help")
    assert code == 0 and "show" in out and "report" in out


@pytest.mark.parametrize("command", ["train", "lr-find"])
def test_preset_help_offers_todays_names_and_reads_the_old_one(command, capsys):
    """One name per concept: `cnn` is a network; `--preset cnn` is read as `accurate`, but
    neither the help nor an error offers it."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--preset {" + ",".join(PRESETS) + "}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main([command, "--preset", "fastest"])
    err = capsys.readouterr().err
    choices = ", ".join(f"'{name}'" for name in PRESETS)  # fast, accurate, ..., best
    assert e.value.code == 2 and f"(choose from {choices})" in err and "'cnn'" not in err
    args = build_parser().parse_args([command, "--preset", "cnn"])
    assert args.preset == "accurate"


def test_help_names_things_as_the_readme_does():
    def words(*args):  # the help text, its line breaks as spaces
        return " ".join(run_cli(*args, "--help")[1].split())

    assert "Fashion-MNIST, the MNIST family or your own images" in words()
    runs = words("runs")
    assert "(lr, optimizer, network, seed, ...)" in runs and "model" not in runs
    assert "any other format PIL reads" in words("classify")


def test_classify_plot_writes_the_view_classify_figure(tiny_dir, tmp_path, capsys):
    from PIL import Image

    run_dir = _tiny_run(tiny_dir, tmp_path / "runs", capsys)
    shoe = tmp_path / "shoe.png"
    Image.new("L", (60, 40), 255).save(shoe)  # a light photo: inverted, cropped, scaled
    assert main(["classify", run_dir, str(shoe), "--plot", str(tmp_path / "out.png")]) == 0
    assert f"wrote: {tmp_path / 'out.png'}" in capsys.readouterr().out
    with Image.open(tmp_path / "out.png") as img:
        assert img.format == "PNG" and img.width > img.height
    assert (
        main(
            [
                "classify",
                run_dir,
                "--index",
                "0",
                "--index",
                "1",
                "--plot",
                str(tmp_path / "idx.svg"),
            ]
        )
        == 0
    )
    assert (tmp_path / "idx-0.svg").is_file() and (tmp_path / "idx-1.svg").is_file()


def test_classify_explain_names_the_method_and_draws_the_map(tiny_dir, tmp_path, capsys):
    from PIL import Image

    need("captum")
    run_dir = _tiny_run(tiny_dir, tmp_path / "runs", capsys)
    assert main(["classify", run_dir, "--index", "0", "--explain"]) == 0
    out = capsys.readouterr().out
    top = out.splitlines()[4].split("  ")[0].strip()  # the first class under the banner
    assert out.endswith(
        f"explanation: Integrated Gradients for {top} (--plot PATH draws it over the image)\n"
    )
    shoe = tmp_path / "shoe.png"
    Image.new("L", (60, 40), 255).save(shoe)
    for method, title in [
        ("occlusion", "Occlusion"),
        ("Integrated-Gradients", "Integrated Gradients"),
    ]:
        plot = tmp_path / f"{method}.png"
        assert main(["classify", run_dir, str(shoe), "--explain", method, "--plot", str(plot)]) == 0
        out = capsys.readouterr().out
        assert f"explanation: {title} for " in out and out.endswith(f"wrote: {plot}\n")
    assert main(["classify", run_dir, str(shoe), "--plot", str(tmp_path / "plain.png")]) == 0
    with Image.open(tmp_path / "plain.png") as plain, Image.open(plot) as explained:
        assert explained.width > 1.3 * plain.width  # a third panel: the map over the image
    # an image file right after a bare --explain is an image, explained by the default method
    assert main(["classify", run_dir, "--explain", str(shoe)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{shoe}\n") and "explanation: Integrated Gradients for " in out


NO_CONV = (
    "Grad-CAM needs a convolutional network, and this one has no conv layer; for it choose "
    "from integrated_gradients, occlusion, saliency"
)
CHOICES = "choose from integrated_gradients, occlusion, saliency, grad_cam"


def test_classify_explain_a_method_it_cannot_use_is_one_line(tiny_dir, tmp_path, capsys):
    need("captum")
    run_dir = _tiny_run(tiny_dir, tmp_path / "runs", capsys)  # an MLP
    plot = tmp_path / "a.png"
    cases = [
        ("gradcam", NO_CONV),
        ("Grad-CAM", NO_CONV),
        ("grad_cam", NO_CONV),
        ("lime", f"unknown attribution method 'lime'; {CHOICES}"),
        ("missing.png", f"unknown attribution method 'missing.png'; {CHOICES}"),
        ("", f"unknown attribution method ''; {CHOICES}"),
    ]
    for method, message in cases:
        args = ["classify", run_dir, "--index", "0", "--explain", method, "--plot", str(plot)]
        assert main(args) == 1, method
        out, err = capsys.readouterr()
        assert out == "" and err == f"error: {message}\n"  # nothing classified or drawn
        assert not plot.exists()


def test_classify_explain_without_captum_says_how_to_install_it(
    tiny_dir, tmp_path, capsys, monkeypatch
):
    run_dir = _tiny_run(tiny_dir, tmp_path / "runs", capsys)
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # import captum.attr fails
    assert (
        main(["classify", run_dir, "--index", "0", "--explain", "--plot", str(tmp_path / "a.png")])
        == 1
    )
    out, err = capsys.readouterr()
    assert out == "" and err == (
        "error: attribution maps need Captum, an optional extra: pip install 'quicknets[explain]'\n"
    )
    assert not (tmp_path / "a.png").exists()


def test_see_it_bad_input_is_one_clear_line(tiny_dir, tmp_path, capsys):
    from pathlib import Path

    run_dir = Path(_tiny_run(tiny_dir, tmp_path / "runs", capsys))
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    cases = [
        (
            ["classify", str(run_dir), str(garbage), "--plot", str(tmp_path / "a.png")],
            f"cannot read {garbage} as an image",
        ),
        (
            ["classify", str(run_dir), "--index", "0", "--plot", str(tmp_path / "a.txt")],
            "give a file name ending in .png",
        ),
    ]
    cases += [  # a page under another kind's name: refused before any work (it wrote HTML)
        (["report", str(run_dir), "--out", str(tmp_path / name)], "the report is an HTML file")
        for name in ("r.txt", "r.png", "r")
    ]
    cases += [
        (["report", "--sweep", "s", "--out", str(tmp_path / "s.pdf")], "the report is an HTML")
    ]
    cases += [([command, str(run_dir)], "has no saved model") for command in ("show", "report")]
    for args, message in cases:
        if args[0] != "classify" and "--out" not in args:
            (run_dir / "model.pt").unlink(missing_ok=True)
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "a.txt").exists()
    assert not (run_dir / "figures").exists() and not (run_dir / "report.html").exists()
    assert not any((tmp_path / name).exists() for name in ("r.txt", "r.png", "r", "s.pdf"))


def test_output_into_a_closed_pipe_is_no_traceback(tmp_path):
    """`quicknets runs | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    p = subprocess.Popen(
        [sys.executable, "-m", "quicknets", "runs", "--runs-dir", tmp_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdout.close()  # before the command prints anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=HANG_S) != 0 and "Traceback" not in err and "Exception ignored" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--resume", ""],  # was read as no --resume: a new 7-epoch run started
        ["train", "--config", "", "--print-config"],  # was read as no --config
        ["lr-find", "--config", ""],
        ["lr-find", "--plot", ""],
        ["sweep", "--name", ""],  # was replaced by sweep-DATE-ID
        ["sweep", "--config", ""],
        ["sweep", "--resume-sweep", " "],
        ["sweep", "--storage", ""],
        ["classify", "RUN", "--index", "0", "--plot", ""],  # was read as no --plot
        ["compare", "RUN", "--plot", ""],
        ["compare", "--sweep", ""],
        ["show", "RUN", "--out", ""],
        ["report", "RUN", "--out", ""],
        ["export", "RUN", "--out", ""],
        ["runs", "--sweep", ""],  # was read as no --sweep: every run listed
        ["runs", "--sort", ""],
        ["runs", "rm", "RUN", "--runs-dir", ""],
        ["evaluate", "RUN", "--runs-dir", ""],
    ],
)
def test_an_empty_name_or_path_is_a_usage_error(args, tmp_path, capsys, monkeypatch):
    """`--resume "$RUN"` with RUN unset must not quietly mean "no --resume"."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "expected a name or path, got an empty value" in err
    assert list(tmp_path.iterdir()) == []  # nothing trained, written or made


def test_compare_refuses_a_bad_plot_suffix_before_printing(tmp_path, capsys):
    assert (
        main(
            [
                "compare",
                "no-such-run",
                "--plot",
                str(tmp_path / "c.txt"),
                "--runs-dir",
                str(tmp_path),
            ]
        )
        == 1
    )
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: cannot save a figure as")


NO_DATA = ["--dataset", "mnist", "--data-dir", "no-data", "--no-verify"]  # an error if read


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "no-such-run", "--plot", "afile/c.png"], "afile is a file"),
        (["compare", "--sweep", "s", "--plot", "adir.png"], "adir.png: it is a folder"),
        (["classify", "no-such-run", "--index", "0", "--plot", "afile/c.png"], "afile is a"),
        (["classify", "nope", "--index", "0", "--index", "1", "--plot", "a.png"], "a-0.png: it"),
        (["show", "no-such-run", "--out", "afile"], "into afile: it is a file"),
        (["report", "no-such-run", "--out", "afile/r.html"], "afile is a file"),
        (["report", "--sweep", "s", "--out", "r.html"], "r.html: it is a folder"),
        (["export", "no-such-run", "--out", "m.txt"], "onnx exports are .onnx files"),
        (["export", "no-such-run", "--out", "m.png", "--format", "torchscript"], ".torchscript"),
        (["export", "no-such-run", "--out", "afile/m.onnx"], "afile is a file"),
        (["lr-find", *NO_DATA, "--plot", "afile/l.png"], "afile is a file"),
        (["lr-find", *NO_DATA, "--plot", "l.png"], "cannot write l.json: it is a folder"),
        (["train", *NO_DATA, "--runs-dir", "afile/runs"], "into afile/runs: afile is a file"),
        (["train", *NO_DATA, "--seeds", "2", "--runs-dir", "afile"], "into afile: it is a"),
        (["sweep", *NO_DATA, "--lr", "0.1,0.2", "--runs-dir", "afile"], "into afile: it is"),
        (["audit", "mnist", "--data-dir", "no-data", "--out", "afile/a.html"], "afile is a"),
        (["audit", "mnist", "--data-dir", "no-data", "--out", "a.html"], "a.json: it is a "),
        (["audit", "mnist", "--data-dir", "no-data", "--runs-dir", "afile"], "afile/audits"),
    ],
)
def test_an_output_place_is_checked_before_any_work(args, message, tmp_path, capsys, monkeypatch):
    """An output that cannot be written (a folder or a file in the way; a wrong suffix) is one
    error line before any work or output: the run, the sweep or the data named are not even
    looked for (each would be an error of its own), and nothing is written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("kept")
    for folder in ("adir.png", "a-0.png", "r.html", "l.json", "a.json"):
        (tmp_path / folder).mkdir()
    before = sorted(tmp_path.rglob("*"))
    if "--runs-dir" not in args:
        args = [*args, "--runs-dir", "runs"]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: "), err
    assert err.count("\n") == 1 and message in err, err
    assert sorted(tmp_path.rglob("*")) == before and (tmp_path / "afile").read_text() == "kept"


def test_a_damaged_results_json_is_one_note_where_the_model_is_all_that_is_used(
    tiny_dir, tmp_path, capsys
):
    """evaluate, classify and export need the model and config, not results.json: garbage,
    truncated JSON or a JSON list is one `note:` line on stderr and the same output (they were
    errors); `runs` and `compare` still say the run is unreadable; no file at all is an
    unfinished run for every command."""
    runs = tmp_path / "runs"
    run_dir = Path(_tiny_run(tiny_dir, runs, capsys))
    data = ["--data-dir", str(tiny_dir), "--runs-dir", str(runs)]
    uses = {
        "evaluate": ["evaluate", str(run_dir), *data],
        "classify": ["classify", str(run_dir), "--index", "0", "--index", "7", *data],
    }
    intact = {}
    for name, args in uses.items():
        assert main(args) == 0
        intact[name] = capsys.readouterr()
        assert intact[name].err == ""
    results = (run_dir / "results.json").read_bytes()
    damage = {
        "garbage": b"\x00\xff\x13garbage",
        "truncated": results[: len(results) // 2],
        "a JSON list": b"[0.7, 0.2]",
    }
    for kind, content in damage.items():
        (run_dir / "results.json").write_bytes(content)
        for name, args in uses.items():
            assert main(args) == 0, kind
            out, err = capsys.readouterr()
            assert out == intact[name].out, (kind, name)
            assert err.startswith("note: ") and err.count("\n") == 1, (kind, name, err)
        export = tmp_path / f"{kind.replace(' ', '-')}.onnx"
        assert main(["export", str(run_dir), "--out", str(export), *data]) == 0, kind
        out, err = capsys.readouterr()
        assert f"wrote: {export}" in out and err.startswith("note: ") and err.count("\n") == 1
        assert main(["runs", "--status", "all", "--runs-dir", str(runs)]) == 0
        listed = capsys.readouterr().out
        assert main(["compare", str(run_dir), "--runs-dir", str(runs)]) == 1
        refused = capsys.readouterr().err
        assert f"unreadable: {run_dir.name}: {run_dir / 'results.json'} is corrupt" in listed
        assert refused.startswith(f"error: {run_dir / 'results.json'} is corrupt")
        assert (run_dir / "results.json").read_bytes() == content  # left as it was
    (run_dir / "results.json").unlink()  # killed before the record closed: unfinished
    for args in [*uses.values(), ["export", str(run_dir), "--out", str(tmp_path / "m.onnx")]]:
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "stopped" in err and err.count("\n") == 1, err
    assert not (tmp_path / "m.onnx").exists() and not (run_dir / "results.json").exists()
    (run_dir / "results.json").write_bytes(damage["garbage"])
    assert main([*uses["evaluate"], "--robustness"]) == 0  # measured, and not recorded
    out, err = capsys.readouterr()
    assert f"not recorded: run {run_dir.name}'s results.json cannot be read (see the note)" in out
    assert err.count("\n") == 1 and (run_dir / "results.json").read_bytes() == damage["garbage"]


def test_a_damaged_results_json_of_a_run_on_your_own_data(tiny, tmp_path, capsys):
    """Your own data's class names are in meta.json too: without results.json's, load_model
    looked them up as a built-in dataset's name and failed ('unknown dataset')."""
    own = tmp_path / "own.npz"
    np.savez(
        own,
        **{f"{k}_{s}": getattr(tiny, f"{s}_{n}").numpy()
           for s in ("train", "test") for k, n in (("x", "images"), ("y", "labels"))},
    )  # fmt: skip
    runs = ["--runs-dir", str(tmp_path / "runs")]
    train = ["train", "--dataset", str(own), "--layers", "784-16-10", "--epochs", "1", "--quiet"]
    assert main([*train, "--threads", "1", *runs]) == 0
    run_dir = Path(capsys.readouterr().out.split("saved: ")[1].strip())
    uses = (["evaluate", str(run_dir), *runs], ["classify", str(run_dir), "--index", "3", *runs])
    intact = []
    for args in uses:
        assert main(args) == 0
        intact.append(capsys.readouterr().out)
    (run_dir / "results.json").write_text("[]")
    for args, out in zip(uses, intact):
        assert main(args) == 0
        assert capsys.readouterr() == (out, f"{load_trained(run_dir)[1]}\n")


def test_training_into_a_closed_pipe_stops_resumable_and_says_so(tiny_dir, tmp_path):
    """`quicknets train | head`: the run stopped without a word and was listed as failed."""
    runs = tmp_path / "runs"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quicknets",
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            tiny_dir,
            "--no-verify",
            "--layers",
            "784-16-10",
            "--epochs",
            "500",
            "--threads",
            "1",
            "--runs-dir",
            runs,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not p.stdout.readline().startswith("epoch: "):
        pass
    p.stdout.close()  # the reader leaves while it trains, after a checkpoint
    err = p.stderr.read()
    assert p.wait(timeout=HANG_S) == 1 and "Traceback" not in err and "Exception ignored" not in err
    name = next(runs.glob("*mlp-16_*")).name
    assert (
        err.startswith(
            f"error: the output was closed, so training stopped; run {name} is "
            f"not finished (interrupted after epoch "
        )
        and err.count("\n") == 1
    )
    assert err.endswith(f"continue it with `quicknets train --resume {name}`\n")
    code, out, err = run_cli("runs", "--status", "interrupted", "--runs-dir", runs)
    assert code == 0 and name in out


# --- option names are never abbreviated ---


@pytest.mark.parametrize(
    "args, flag",
    [
        (["sweep", "--seed", "3", "--epochs", "0"], "--seed 3"),  # was read as --seeds 3
        (["train", "--l", "0.1"], "--l 0.1"),  # --lr, --layers, --log-to ...
        (["train", "--epoch", "0"], "--epoch 0"),  # was read as --epochs 0
        (["runs", "--stat=all"], "--stat=all"),
        (["runs", "rm", "no-such-run", "--for"], "--for"),  # was read as --force
    ],
)
def test_option_names_are_never_abbreviated(args, flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([*args, "--runs-dir", str(tmp_path / "runs")])
    assert e.value.code == 2
    assert f"error: unrecognized arguments: {flag}" in capsys.readouterr().err


def test_every_parser_refuses_abbreviations():
    import argparse

    from quicknets.cli import build_parser

    def parsers(p):
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    from quicknets.commands import COMMANDS

    found = list(parsers(build_parser()))
    assert len(found) == 1 + len(COMMANDS) + 1  # quicknets, its commands, and `runs rm`
    assert [p.prog for p in found if p.allow_abbrev] == []


# --- output a stream cannot encode, and output redirected to a file ---


def _ascii_cli(*args):
    import os

    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    p = subprocess.run(
        [sys.executable, "-m", "quicknets", *map(str, args)],
        env=env,
        capture_output=True,
        timeout=HANG_S,
    )
    return p.returncode, p.stdout.decode("ascii"), p.stderr.decode("ascii")


def test_plus_minus_on_an_ascii_stream_is_written_as_ascii():
    code, out, err = _ascii_cli("sweep", "--help")  # its description says "mean ± std"
    assert code == 0 and err == ""
    assert "print them ranked, mean +/- std over seeds" in " ".join(out.split())


def test_an_error_with_other_characters_on_an_ascii_stream(tmp_path):
    code, out, err = _ascii_cli("evaluate", "café→±", "--runs-dir", tmp_path)
    assert code == 1 and out == ""
    assert err.startswith("error: no run 'cafe->+/-'") and "Traceback" not in err


def test_the_run_line_reaches_a_redirected_file_before_a_kill(tmp_path):
    """`train > log` then kill -9: the log still names the run, so it can be resumed."""
    import io
    import os
    from pathlib import Path

    from conftest import make_idx_dataset

    data = make_idx_dataset(tmp_path / "data", n_train=10000, n_test=10)  # epochs of ~0.2 s
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quicknets",
                "train",
                "--dataset",
                "mnist",
                "--data-dir",
                data,
                "--no-verify",
                "--layers",
                "784-8-10",
                "--epochs",
                "100000",
                "--threads",
                "1",
                "--runs-dir",
                tmp_path / "runs",
            ],
            stdout=f,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    seen = []  # the file as it was when the run line came
    try:
        wait_until(
            lambda: seen.append(log.read_text()) or "run: " in seen[-1], p, "run line in the file"
        )
    finally:
        p.kill()  # SIGKILL: no flush at exit
        p.wait()
    seen = seen[-1]
    assert p.returncode == -9
    # block-buffered, the line would only come with the first full 8 KB block, ~80 epochs later
    assert len(seen.encode()) < io.DEFAULT_BUFFER_SIZE // 2, len(seen.encode())
    lines = [line for line in log.read_text().splitlines() if line.startswith("run: ")]
    assert len(lines) == 1 and Path(lines[0][5:]).parent == tmp_path / "runs"
    assert Path(lines[0][5:]).is_dir()


# --- data errors through the command line: one line each ---


def test_data_dir_holding_no_images_is_one_line(tmp_path, capsys):
    from conftest import make_idx_dataset

    data = make_idx_dataset(tmp_path / "data", n_train=0)
    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            str(data),
            "--no-verify",
            "--epochs",
            "1",
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err == f"error: {data / 'train-images-idx3-ubyte'} holds no images\n"


def test_existing_data_dir_without_the_files_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QUICKNETS_MIRROR", f"file://{tmp_path}/no-mirror")
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "train",
            "--data-dir",
            str(tmp_path / "empty"),
            "--epochs",
            "1",
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path / 'empty'} does not hold the fashion-mnist files")


def test_runs_table_json_and_csv_agree(tiny_dir, tmp_path, capsys):
    import csv
    import io
    import json
    from pathlib import Path

    runs = str(tmp_path / "runs")
    run_dir = Path(_tiny_run(tiny_dir, tmp_path / "runs", capsys))
    results = json.loads((run_dir / "results.json").read_text())
    assert main(["runs", "--runs-dir", runs, "--format", "json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["name"] == run_dir.name and record["status"] == "done"
    assert record["epochs_done"] == 2 and record["test_accuracy"] == results["accuracy"]
    assert record["settings"]["network"] == "784-32-10" and record["settings"]["epochs"] == 2
    assert main(["runs", "--runs-dir", runs, "--format", "csv"]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["name"] == run_dir.name and float(row["test_accuracy"]) == results["accuracy"]
    assert row["network"] == "784-32-10" and row["lr"] == "0.003" and row["sweep"] == ""
    assert main(["runs", "--runs-dir", runs]) == 0
    table = capsys.readouterr().out
    assert table.startswith("run ") and f"{results['accuracy']:.4f}" in table


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o"), ("zsh", "#compdef quicknets")])
def test_completion_script_knows_every_command(shell, marker, capsys, tmp_path):
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert marker in script
    for word in ("lr-find", "--print-config", "--patience", "--format", "completion"):
        assert word in script
    if shell == "bash":  # it parses
        (tmp_path / "q.sh").write_text(script)
        assert subprocess.run(["bash", "-n", str(tmp_path / "q.sh")]).returncode == 0


def test_evaluate_robustness_prints_the_table_and_records_it(tiny_dir, tiny, tmp_path, capsys):
    import json
    import re
    from pathlib import Path

    from quicknets.evaluation.metrics import evaluate
    from quicknets.evaluation.robustness import CORRUPTIONS
    from quicknets.records.runs import load_model, load_run

    run_dir = Path(_tiny_run(tiny_dir, tmp_path / "runs", capsys))
    before = (run_dir / "results.json").read_bytes()
    args = ["evaluate", str(run_dir), "--data-dir", str(tiny_dir)]
    assert main(args) == 0
    plain = capsys.readouterr().out
    assert main([*args, "--robustness"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(plain)  # evaluate's own lines, then the table
    lines = out[len(plain) :].splitlines()
    assert lines[0] == ""
    assert lines[1].split() == ["corruption", "s0", "s1", "s2", "s3", "s4", "s5"]
    rows = [line.split() for line in lines[2:12]]
    assert [row[0] for row in rows] == list(CORRUPTIONS)
    accuracy = plain.splitlines()[1].split()[2]  # `test accuracy: A  test loss: ...`
    assert all(len(row) == 7 and row[1] == accuracy for row in rows)  # s0 is the clean one
    assert re.fullmatch(r"mean corruption accuracy: 0\.\d{4}", lines[12])
    assert lines[13] == f"recorded: {run_dir / 'results.json'}" and len(lines) == 14

    results = load_run(run_dir).results
    assert {k: v for k, v in results.items() if k in json.loads(before)} == json.loads(before)
    recorded = results["robustness"]
    # severity 0 is evaluate's accuracy, bit for bit (computed here, on this machine)
    clean = evaluate(load_model(run_dir), tiny)["accuracy"]
    assert recorded["clean_accuracy"] == clean
    assert all(row[0] == clean for row in recorded["accuracy"].values())
    corrupted = [a for row in recorded["accuracy"].values() for a in row[1:]]
    assert results["mean_corruption_accuracy"] == recorded["mean_corruption_accuracy"]
    assert recorded["mean_corruption_accuracy"] == pytest.approx(sum(corrupted) / 50, abs=1e-12)
    assert lines[12] == f"mean corruption accuracy: {results['mean_corruption_accuracy']:.4f}"
    printed = {row[0]: [float(a) for a in row[1:]] for row in rows}
    assert printed == {k: [round(a, 4) for a in v] for k, v in recorded["accuracy"].items()}

    # another split is printed, not recorded: the record keeps the test set's
    written = (run_dir / "results.json").read_bytes()
    assert main([*args, "--robustness", "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "not recorded: the record keeps the test split's (this is train)" in out
    assert (run_dir / "results.json").read_bytes() == written


def test_evaluate_robustness_of_an_export_is_printed_only(tiny_dir, tmp_path, capsys):
    from pathlib import Path

    run_dir = Path(_tiny_run(tiny_dir, tmp_path / "runs", capsys))
    file = tmp_path / "model.safetensors"
    assert main(["export", str(run_dir), "--out", str(file), "--data-dir", str(tiny_dir)]) == 0
    capsys.readouterr()
    written = (run_dir / "results.json").read_bytes()
    assert main(["evaluate", str(file), "--robustness", "--data-dir", str(tiny_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("mean corruption accuracy: ")
    assert out[-1] == "not recorded: an exported model has no run record"
    assert (run_dir / "results.json").read_bytes() == written
    assert not list(tmp_path.glob("*.json"))


# -- familiarity: classify's words, evaluate --ood, bad outside images ---------------------------

OOD_LINE = re.compile(r"^ood auroc: (\d\.\d{4})  fpr95: (\d\.\d{4})$", re.M)


def _noise_pngs(folder, n=20, shape=(28, 28), seed=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def _files(run_dir) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in Path(run_dir).iterdir()}


def test_classify_says_when_an_image_does_not_look_like_the_data(tiny_dir, tmp_path, capsys):
    from quicknets.evaluation.familiarity import familiarity_scores
    from quicknets.records.runs import load_model, load_run

    runs = tmp_path / "runs"
    run_dir = _tiny_run(tiny_dir, runs, capsys)
    record = load_run(run_dir)
    assert record.results["familiarity"]["threshold_split"] == "train"  # no val split
    assert (Path(run_dir) / "familiarity.pt").is_file()
    model = load_model(record)
    fitted = model.familiarity
    noise = _noise_pngs(tmp_path / "noise", n=1) / "000.png"
    assert main(["classify", run_dir, str(noise)]) == 0
    out = capsys.readouterr().out
    value = familiarity_scores(model, load_image(noise, (1, 28, 28), "digits")[None], fitted)
    assert value.item() < fitted.threshold  # the oracle: noise is unlike bars
    assert (
        f"does not look like MNIST (familiarity {value.item():.4g} < threshold "
        f"{fitted.threshold:.4g})" in out
    )
    # the most familiar test image (computed here) gets no such words
    data = load_dataset("mnist", tiny_dir, verify=False)
    best = int(familiarity_scores(model, data.test_images, fitted).argmax())
    assert main(["classify", run_dir, "--index", str(best), "--data-dir", str(tiny_dir)]) == 0
    assert "does not look like" not in capsys.readouterr().out


def test_evaluate_ood_line_and_bad_outside_images(tiny_dir, tmp_path, capsys):
    from quicknets.evaluation.familiarity import familiarity_scores, load_outside, ood_metrics
    from quicknets.records.runs import load_model

    run_dir = _tiny_run(tiny_dir, tmp_path / "runs", capsys)
    (Path(run_dir) / "familiarity.pt").unlink()  # as a run trained before runs kept one
    before = _files(run_dir)
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    np.savez(arrays / "big.npz", x_test=np.zeros((5, 32, 32), np.uint8))
    np.savez(arrays / "rgb.npz", x_test=np.zeros((5, 28, 28, 3), np.uint8))
    broken = _noise_pngs(tmp_path / "broken", n=3)
    (broken / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for path, message in [
        (tmp_path / "missing", "no file or folder"),
        (arrays / "big.npz", r"holds images of shape \(1, 32, 32\); the model takes \(1, 28, 28\)"),
        (arrays / "rgb.npz", r"holds images of shape \(3, 28, 28\)"),
        (broken, "cannot read .*001.png"),
        (arrays, "is not a folder of images|cannot read"),  # .npz files are no images
    ]:
        code = main(["evaluate", run_dir, "--ood", str(path), "--data-dir", str(tiny_dir)])
        out, err = capsys.readouterr()
        assert code == 1 and re.fullmatch(f"error: .*({message}).*\n", err), err
        assert "Traceback" not in err and "ood auroc" not in out
        assert _files(run_dir) == before  # nothing written, nothing fitted
    noise = _noise_pngs(tmp_path / "noise")
    assert main(["evaluate", run_dir, "--ood", str(noise), "--data-dir", str(tiny_dir)]) == 0
    line = OOD_LINE.search(capsys.readouterr().out)
    assert (Path(run_dir) / "familiarity.pt").is_file()  # fitted at this first use, kept
    model = load_model(run_dir)  # the oracle: the library's scores of the same images
    data = load_dataset("mnist", tiny_dir, verify=False)
    inside = familiarity_scores(model, data.test_images, model.familiarity)
    outside = familiarity_scores(model, load_outside(noise, model.preprocessing), model.familiarity)
    want = ood_metrics(inside, outside)
    assert line.groups() == (f"{want['auroc']:.4f}", f"{want['fpr95']:.4f}")
    assert want["auroc"] > 0.9  # bars against noise: easy
    npz = tmp_path / "noise.npz"
    np.savez(npz, x_test=load_outside(noise, model.preprocessing).numpy()[:, 0])
    assert main(["evaluate", run_dir, "--ood", str(npz), "--data-dir", str(tiny_dir)]) == 0
    assert OOD_LINE.search(capsys.readouterr().out).groups() == line.groups()


@pytest.mark.parametrize("name", ["kmnist", "emnist-digits"])  # fetched; never fetched
def test_evaluate_ood_of_a_builtin_dataset_not_here_is_one_error_line(
    name, tiny_dir, tmp_path, capsys, monkeypatch
):
    run_dir = _tiny_run(tiny_dir, tmp_path / "runs", capsys)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing cached there
    monkeypatch.setattr(
        "quicknets.data.builtin.fetch_files", lambda info, target: ({}, "no network here")
    )
    before = _files(run_dir)
    code = main(["evaluate", run_dir, "--ood", name])  # the run's data: where it was found
    out, err = capsys.readouterr()
    assert code == 1 and "ood auroc" not in out and "Traceback" not in err
    assert err.startswith(f"error: {name} not found") and err.count("\n") == 1, err
    assert str(tmp_path / "cache" / "quicknets" / name) in err  # where it was looked for
    assert _files(run_dir) == before


def test_evaluate_ood_folder_of_other_sized_images_is_one_error_line(tiny_dir, tmp_path, capsys):
    run_dir = _tiny_run(tiny_dir, tmp_path / "runs", capsys)
    before = _files(run_dir)
    for shape, described in [((32, 32), "32x32 grey"), ((28, 28, 3), "28x28 RGB")]:
        folder = _noise_pngs(tmp_path / described.replace(" ", "-"), n=3, shape=shape)
        args = ["evaluate", run_dir, "--ood", str(folder), "--data-dir", str(tiny_dir)]
        assert main(args) == 1
        out, err = capsys.readouterr()
        assert err == (
            f"error: {folder / '000.png'} is {described}; the model takes 28x28 grey images: "
            "bring the outside images to that size and channels first\n"
        )
        assert "ood auroc" not in out and _files(run_dir) == before


def test_exports_carry_familiarity_or_say_they_do_not(tiny_dir, tmp_path, capsys):
    run_dir = _tiny_run(tiny_dir, tmp_path / "runs", capsys)
    noise = _noise_pngs(tmp_path / "noise")
    args = ["--ood", str(noise), "--data-dir", str(tiny_dir)]
    assert main(["evaluate", run_dir, *args]) == 0
    want = OOD_LINE.search(capsys.readouterr().out).groups()
    for format in ("safetensors", "torchscript"):
        out = tmp_path / f"tiny.{format}"
        assert main(["export", run_dir, "--out", str(out), "--data-dir", str(tiny_dir)]) == 0
        capsys.readouterr()
        code = main(["evaluate", str(out), *args])
        printed, err = capsys.readouterr()
        if format == "safetensors":
            assert code == 0 and OOD_LINE.search(printed).groups() == want
        else:
            assert code == 1 and "carries no familiarity statistics" in err


def test_train_seeds_stacked_and_apart(tiny_dir, tmp_path, capsys):
    """`train --seeds 2`: a run record per seed, trained in one step (meta.json says so), the
    same test accuracy as --no-stack within 0.003, and the mean ± std line; wrong companions
    are one error line."""
    import json

    from quicknets.records.runs import list_runs

    data = ["--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify", "--threads", "1"]
    found = {}
    for stack in ([], ["--no-stack"]):
        runs = tmp_path / ("apart" if stack else "stacked")
        argv = ["train", *data, "--epochs", "2", "--seeds", "0,3", "--quiet", *stack]
        assert main([*argv, "--runs-dir", str(runs)]) == 0
        out = capsys.readouterr().out
        assert "test accuracy over 2 seed(s): " in out and "(sample std)" in out
        records = list_runs(runs)
        assert sorted(r.config.train.seed for r in records) == [0, 3]
        assert all(("stacked" in r.meta) == (not stack) for r in records)
        for r in records:
            assert json.loads((r.path / "history.json").read_text())[-1]["epoch"] == 2
            found[r.config.train.seed, bool(stack)] = r.results["accuracy"]
            # a record as the run alone's: its familiarity statistics fitted, stacked or not
            assert (r.path / "familiarity.pt").is_file() and "familiarity" in r.results
    for seed in (0, 3):
        assert found[seed, False] == pytest.approx(found[seed, True], abs=0.003)
    assert main(["train", "--seeds", "2", "--seed", "1"]) == 1
    assert "error: --seeds trains one run per seed; drop --seed\n" in capsys.readouterr().err
    # each clashing flag is named alone, not as a list of every flag that could clash
    for flags, named in (
        (["--print-config"], "--print-config"),
        (["--resume", "x"], "--resume"),
        (["--log-to", "tensorboard"], "--log-to"),
        (["--seed", "1", "--print-config"], "--seed, --print-config"),
    ):
        assert main(["train", "--seeds", "2", *flags]) == 1
        assert f"error: --seeds trains one run per seed; drop {named}\n" in capsys.readouterr().err
    assert main(["train", "--no-stack"]) == 1
    assert "error: --no-stack is for --seeds" in capsys.readouterr().err


@pytest.mark.parametrize("seeds", ["100000000000", "10001", ",".join(map(str, range(10_001)))])
def test_too_many_seeds_is_one_error_before_any_list(seeds, tmp_path, capsys):
    """--seeds past MAX_SEEDS (each seed a run with its own folder): one error line, at once
    (not a MemoryError from building the list), nothing written; sweep and train alike."""
    for command in ("train", "sweep"):
        assert main([command, "--seeds", seeds, "--runs-dir", str(tmp_path / "runs")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "too many: at most 10,000" in err and "folder of its own" in err
    assert not (tmp_path / "runs").exists()


def untimed(histories: dict) -> dict:
    """{seed: history} without each epoch's wall time."""
    return {
        s: [{k: v for k, v in row.items() if k != "seconds"} for row in h]
        for s, h in histories.items()
    }


@pytest.mark.parametrize("split", [[], ["--val-split", "0.2", "--mean", "auto"]])
def test_train_seeds_load_the_data_once(tiny_dir, tmp_path, capsys, monkeypatch, split):
    """`train --seeds 0,3` loads its dataset once for both seeds (it was once per seed), also
    with a validation split, which each seed picks (split in memory), and each seed's run ends
    as the same run trained alone (same test accuracy and history bits)."""
    from quicknets.data import loading
    from quicknets.records.runs import list_runs

    data = ["--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify", "--threads", "1"]
    common = ["train", *data, *split, "--epochs", "1", "--quiet"]
    alone, history = {}, {}
    for seed in (0, 3):
        runs = tmp_path / f"alone{seed}"
        assert main([*common, "--seed", str(seed), "--runs-dir", str(runs)]) == 0
        alone[seed] = list_runs(runs)[0].results["accuracy"]
        history[seed] = list_runs(runs)[0].history
    loads = []
    real = loading.load_recorded
    monkeypatch.setattr(loading, "load_recorded", lambda *a, **k: loads.append(1) or real(*a, **k))
    for stack in ([], ["--no-stack"]):
        runs = tmp_path / f"seeds{len(stack)}"
        assert main([*common, "--seeds", "0,3", *stack, "--runs-dir", str(runs)]) == 0
        assert len(loads) == 1, loads
        loads.clear()
        found = {r.config.train.seed: r.results["accuracy"] for r in list_runs(runs)}
        if stack:  # apart: each exactly the run alone
            assert found == alone
            kept = {r.config.train.seed: r.history for r in list_runs(runs)}
            assert untimed(kept) == untimed(history)  # val_loss too, with a split
        else:  # stacked: within the stacked-vs-apart tolerance of test_train_seeds_stacked...
            assert found == pytest.approx(alone, abs=0.003)
    capsys.readouterr()


def test_train_seeds_find_one_lr(tiny_dir, tmp_path, capsys):
    """`train --seeds 0,3 --lr auto`: the seeds are one variant, so the LR finder runs once,
    with seed 0 (finding the lr seed 0 alone finds), and both seeds train with that lr, each
    record saying it was found (lr_find); seed 3 trains as a run given that lr by hand."""
    from quicknets.records.runs import list_runs

    data = ["--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify", "--threads", "1"]
    common = ["train", *data, "--epochs", "1", "--quiet", "--lr", "auto"]
    assert main([*common, "--seed", "0", "--runs-dir", str(tmp_path / "alone")]) == 0
    alone = list_runs(tmp_path / "alone")[0].config
    runs = tmp_path / "seeds"
    assert main([*common, "--seeds", "0,3", "--no-stack", "--runs-dir", str(runs)]) == 0
    records = {r.config.train.seed: r for r in list_runs(runs)}
    for seed in (0, 3):
        assert records[seed].config.train.lr == alone.train.lr
        assert records[seed].config.lr_find == alone.lr_find is not None
    given = ["train", *data, "--epochs", "1", "--quiet", "--lr", str(alone.train.lr)]
    assert main([*given, "--seed", "3", "--runs-dir", str(tmp_path / "by_hand")]) == 0
    by_hand = list_runs(tmp_path / "by_hand")[0].results["accuracy"]
    assert records[3].results["accuracy"] == by_hand
    capsys.readouterr()


def test_ctrl_c_inside_torch_s_import_is_neither_lost_nor_a_crash(tiny_dir, tmp_path):
    """Pressed while torch imports numpy, Ctrl-C was cleared by torch (which then runs without
    numpy) and the training went on to its end, exit 0 (5 of 60 tries at random moments of
    `import torch`); pressed a little later it aborted the process (pybind11's terminate, 1 of
    60). torch is imported first, whole; then the Ctrl-C acts."""
    script = (
        "import os, signal, sys\n"
        "def pressed_in_numpy(frame, event, arg):\n"
        "    if event == 'call' and frame.f_code.co_filename.endswith("
        "os.path.join('numpy', '__init__.py')):\n"
        "        sys.setprofile(None)\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.setprofile(pressed_in_numpy)\n"
        "from quicknets.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    runs = tmp_path / "runs"
    argv = ["train", "--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify"]
    argv += ["--epochs", "2", "--runs-dir", str(runs), "--quiet"]
    p = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=HANG_S
    )
    assert (p.returncode, p.stderr) == (130, "interrupted\n")
    assert not runs.exists()  # stopped before anything was made


def test_the_commands_said_to_run_without_torch_do():
    from quicknets.commands import WITHOUT_TORCH

    for argv in (["runs", "--runs-dir", "x"], ["compare", "--help"], ["completion", "bash"]):
        assert argv[0] in WITHOUT_TORCH
        code = (
            "import sys\nfrom quicknets.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, sys.argv"
        )
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
