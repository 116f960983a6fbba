"""The command line around runs: `info RUN` and `--modules`, `--quiet` on every command, the
shipped model as everyone's default, `data check` with workers."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import pytest
from test_demo import tiny_settings

from text2sign.cli import build_parser, main
from text2sign.model_folder.shipped import model as shipped_teacher
from text2sign.model_folder.shipped import student as shipped_model

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["--preset", "tiny", "--device", "cpu", "--set", "data.val_fraction=0",
         "--set", "train.sample_every=0", "--set", "train.checkpoint_every=2",
         "--set", "train.log_every=1"]


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), "--quiet", *TRAIN,
                 "--set", "train.max_steps=4"]) == 0
    return out


def test_info_run_lists_its_checkpoints_and_latent_shape(run, capsys):
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert "diffusion space  pixels, (C, T, H, W) = (3, 4, 16, 16)" in out
    lines = out.split("checkpoints in ")[1].splitlines()
    assert lines[1].split() == ["checkpoint", "step", "minutes", "last", "loss", "size"]
    rows = [line.split() for line in lines[2:]]
    assert [r[:2] for r in rows] == [["step-000002", "2"], ["step-000004", "4"]]
    logged = [line for line in (run / "log.jsonl").read_text().splitlines()]
    import json

    loss_at = {json.loads(x)["step"]: json.loads(x)["train/loss"] for x in logged}
    assert [float(r[3]) for r in rows] == pytest.approx([loss_at[2], loss_at[4]], abs=1e-4)
    assert all(r[-1] == "MB" for r in rows)


def test_info_modules_counts_parameters_per_block_and_part(run, capsys):
    capsys.readouterr()
    assert main(["info", str(run / "model"), "--modules"]) == 0
    out = capsys.readouterr().out
    from text2sign.model_folder.pipeline import Text2SignPipeline

    pipe = Text2SignPipeline.from_pretrained(run, device="cpu")
    total = sum(p.numel() for p in pipe.denoiser.parameters())
    assert f"denoiser  UNet3D  {total:,}" in out
    assert "\n  down  ModuleList  " in out and "text encoder  TextConditioner" in out
    assert "autoencoder" not in out.split("modules and their parameters:")[1]  # pixel model


def test_info_sample_and_evaluate_default_to_the_shipped_model(tmp_path, capsys, monkeypatch):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"model folder     {shipped_model()}" in out
    assert "latent, (C, T, h, w) = (8, 28, 16, 16)" in out
    reads = counted_reads(monkeypatch)
    assert main(["sample", "A", "--steps", "1", "--out", str(tmp_path), "--device", "cpu"]) == 0
    # one sample reads its model folder's config.json once and hashes each weight file once
    assert reads == {"config.json": 1, "autoencoder.safetensors": 1, "denoiser.safetensors": 1,
                     "text.safetensors": 1}
    monkeypatch.undo()
    assert capsys.readouterr().out.startswith(f"model: {shipped_model()}\n")  # the student
    assert main(["sample", "A", "--steps", "25", "--out", str(tmp_path), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith(f"model: {shipped_teacher()}\n")  # the full sampler
    parser = build_parser()
    for command in ("sample", "evaluate", "serve", "info"):
        args = parser.parse_args([command, *(["A"] if command == "sample" else []),
                                  *(["--data", "x"] if command == "evaluate" else [])])
        assert args.model is None  # none required: the shipped one


def counted_reads(monkeypatch) -> Counter:
    """From now on, by file name: how often a config.json is read and a file hashed."""
    from text2sign.core import files

    counts: Counter = Counter()
    read_text, sha256 = Path.read_text, files.sha256

    def counted_read_text(path, *args, **kwargs):
        if path.name == "config.json":
            counts[path.name] += 1
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted_read_text)
    monkeypatch.setattr(files, "sha256", lambda path: counts.update([Path(path).name])
                        or sha256(path))
    return counts


def test_evaluate_and_serve_find_their_model_folder_once(corpus, run, tmp_path, capsys,
                                                          monkeypatch):
    import text2sign.evaluation.evaluate as evaluation

    monkeypatch.setattr(evaluation, "evaluate", lambda pipe, cache, out, **kwargs: {})
    monkeypatch.setattr(evaluation, "print_report", lambda report: None)
    reads = counted_reads(monkeypatch)
    once = {"config.json": 1, "denoiser.safetensors": 1, "text.safetensors": 1}
    assert main(["evaluate", "--model", str(run), "--data", str(corpus), "--device", "cpu",
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    assert reads == once
    pytest.importorskip("starlette")  # the [serve] extra
    from text2sign.cli.serve import load_service

    reads.clear()
    args = build_parser().parse_args(["serve", "--model", str(run), "--device", "cpu",
                                      "--no-recognizer", "--data", str(corpus)])
    service = load_service(args)
    service.store.close()  # the worker starts with the app, which is not started here
    assert reads == once and service.model_name == run.name  # the run's name, not a path
    reads.clear()
    assert main(["info", str(run), "--modules", "--quiet"]) == 0
    assert reads == once


def leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser that runs a command (``data check``, ``train``, ...), depth first."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        return [parser]
    return [leaf for group in groups for sub in dict.fromkeys(group.choices.values())
            for leaf in leaf_parsers(sub)]


def test_every_command_takes_quiet():
    names = []
    for parser in leaf_parsers(build_parser()):
        names.append(parser.prog.removeprefix("text2sign "))
        assert "--quiet" in parser.format_help(), parser.prog
    assert {"data check", "data prepare", "data fingerspelling", "train", "sample", "info",
            "config", "evaluate", "demo", "serve"} <= set(names)


def quiet_commands(corpus, run, tmp):
    return {
        "data check": ["data", "check", str(corpus)],
        "data prepare": ["data", "prepare", str(corpus), "--frames", "4", "--size", "16",
                         "--out", str(tmp / "cache")],
        "data fingerspelling": ["data", "fingerspelling", str(tmp / "letters"), "--frames", "2",
                                "--size", "16"],
        "train": ["train", "--data", str(corpus), "--out", str(tmp / "run"), *TRAIN,
                  "--set", "train.max_steps=2"],
        "sample": ["sample", "--model", str(run), "A", "--steps", "2", "--out", str(tmp / "s"),
                   "--device", "cpu"],
        "info": ["info", str(run)],
        "config": ["config", "--preset", "tiny"],
        "evaluate": ["evaluate", "--model", str(run), "--data", str(corpus), "--per-text", "1",
                     "--steps", "2", "--device", "cpu", "--out", str(tmp / "eval")],
    }


@pytest.mark.parametrize("command", ["data check", "data prepare", "data fingerspelling",
                                     "train", "sample", "info", "config", "evaluate"])
def test_quiet_silences_every_command(command, corpus, run, tmp_path, capsys, monkeypatch):
    """On a terminal, --quiet leaves no bar and no note: stderr stays empty and stdout holds
    only results (paths, tables)."""
    tiny_settings(monkeypatch)  # evaluate's recognizers at toy sizes
    argv = quiet_commands(corpus, run, tmp_path)[command]
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([*argv, "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "model: " not in out and "watch:" not in out  # notes, not results
    if command == "sample":
        assert out.splitlines()[0].endswith(".gif")


def test_without_quiet_a_terminal_gets_bars(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["data", "check", str(corpus)]) == 0
    assert "check: 100%" in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # a log file: no bars
    assert main(["data", "check", str(corpus)]) == 0
    assert capsys.readouterr().err == ""


def test_data_check_in_worker_processes_finds_the_same(corpus, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in (f for f in corpus.iterdir() if f.is_file()):
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "A-0.gif").write_bytes(b"GIF89a broken")
    assert main(["data", "check", str(bad), "--workers", "1"]) == 1
    one = capsys.readouterr().out
    assert main(["data", "check", str(bad), "--workers", "2"]) == 1
    assert capsys.readouterr().out == one and "A-0.gif:" in one and "5 good pairs" in one
    assert main(["data", "check", str(bad), "--workers", "0"]) == 2
    assert "--workers 0: must be at least 1" in capsys.readouterr().err
