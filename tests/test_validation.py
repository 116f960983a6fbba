"""Every bad setting is refused before work starts, with a message naming it and the fix."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import pytest
import torch
from conftest import make_corpus, tiny_config

from text2sign.cli import main
from text2sign.model_folder.build import build_config


@pytest.mark.parametrize("setting, message", [
    ("train.log_every=-1", "train.log_every=-1"),
    ("train.max_steps=0", "train.max_steps=0"),
    ("train.max_steps=-3", "train.max_steps=-3"),
    ("train.checkpoint_every=-1", "train.checkpoint_every=-1"),
    ("train.sample_every=-5", "train.sample_every=-5"),
    ("train.eval_every=-1", "train.eval_every=-1"),
    ("train.max_minutes=-1", "train.max_minutes=-1"),
    ("train.max_minutes=0", "train.max_minutes=0"),
    ("train.ema_decay=2", "train.ema_decay=2"),
    ("train.ema_decay=1", "train.ema_decay=1"),
    ("train.lr=0", "train.lr=0"),
    ("train.lr=.nan", "train.lr=nan"),
    ("train.keep_checkpoints=-1", "train.keep_checkpoints=-1"),
    ("train.warmup_steps=-1", "train.warmup_steps=-1"),
    ("sample.eta=-5", "sample.eta=-5"),
    ("sample.guidance=.nan", "sample.guidance=nan"),
    ("sample.guidance=-1", "sample.guidance=-1"),
    ("sample.steps=0", "sample.steps=0"),
    ("sample.eta=0.5", "only applies to the DDIM sampler"),
    ("data.num_workers=-1", "data.num_workers=-1"),
    ("text.heads=3", "not divisible by text.heads=3"),
    ("diffusion.num_train_timesteps=1000000000", "diffusion.num_train_timesteps"),
    ("data.size=100000", "data.size=100000"),
    ("data.frames=5000", "data.frames=5000"),
    ("text.max_length=10000000", "text.max_length"),
])
def test_bad_settings_are_refused(setting, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_config("tiny", overrides=[setting])


@pytest.mark.parametrize("section, change, message", [
    ("text", {"heads": 3}, "not divisible by text.heads=3"),
    ("sample", {"eta": 0.5}, "only applies to the DDIM sampler"),
    ("data", {"size": 18}, "not divisible by latent.factor=4"),
])
def test_replace_checks_the_copy(section, change, message):
    cfg = build_config("small")
    with pytest.raises(ValueError, match=re.escape(message)):
        replace(cfg, **{section: replace(getattr(cfg, section), **change)})


def test_good_edge_settings_pass():
    cfg = build_config("tiny", overrides=["train.log_every=0", "train.checkpoint_every=0",
                                          "sample.sampler=ddim", "sample.eta=1",
                                          "train.ema_decay=0"])
    assert cfg.train.log_every == 0 and cfg.sample.eta == 1


def test_log_every_zero_trains(corpus, tmp_path):
    from text2sign.training.loop import train

    cfg = tiny_config(corpus, max_steps=3, log_every=0, checkpoint_every=0)
    model = train(cfg, tmp_path / "run", progress=False, device="cpu")
    assert (model / "config.json").is_file()
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"step": 3' in lines[0]  # only the last step is logged


def cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("flags, message", [
    (["--minutes", "-1"], "train.max_minutes=-1"),
    (["--set", "train.max_steps=0"], "train.max_steps=0"),
    (["--set", "train.batch_size=0"], "train.batch_size=0"),
    (["--set", "train.log_every=-1"], "train.log_every=-1"),
    (["--set", "train.checkpoint_every=-1"], "train.checkpoint_every=-1"),
    (["--set", "train.ema_decay=2"], "train.ema_decay=2"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_cli_train_refuses_bad_settings_in_one_line(corpus, tmp_path, capsys, flags, message):
    code, err = cli(capsys, "train", "--data", str(corpus), "--preset", "tiny", "--out",
                    str(tmp_path / "run"), "--no-progress", *flags)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_an_absent_device_fails(corpus, tmp_path, capsys):
    code, err = cli(capsys, "train", "--data", str(corpus), "--preset", "tiny", "--out",
                    str(tmp_path / "run"), "--no-progress", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_device_is_passed_to_accelerate(tmp_path):
    from text2sign.training.loop import make_accelerator

    tc = build_config("tiny").train
    assert make_accelerator(tc, tmp_path, "cpu").device.type == "cpu"


@pytest.fixture(scope="module")
def model(corpus, tmp_path_factory):
    from text2sign.training.loop import train

    run = tmp_path_factory.mktemp("run") / "run"
    train(tiny_config(corpus, max_steps=2), run, progress=False, device="cpu")
    return run


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], "sample.steps=0"),
    (["--frames", "0"], "frames=0"),
    (["--frames", "100000"], "frames=100000"),
    (["--eta", "-5", "--sampler", "ddim"], "sample.eta=-5"),
    (["--eta", "0.5"], "only applies to the DDIM sampler"),
    (["--guidance", "nan"], "sample.guidance=nan"),
    (["--batch-size", "0"], "batch_size=0"),
    (["--device", "cuda:7"], "device 'cuda:7'"),
])
def test_cli_sample_refuses_bad_flags(model, tmp_path, capsys, flags, message):
    if "cuda:7" in flags and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a GPU 7")
    code, err = cli(capsys, "sample", "--model", str(model), "A", "--out", str(tmp_path / "o"),
                    *flags)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_sample_flags_are_used_not_replaced_by_defaults(model):
    from text2sign.model_folder.pipeline import Text2SignPipeline

    pipe = Text2SignPipeline.from_pretrained(model, device="cpu")
    assert pipe(["A"], num_frames=2, steps=1).shape[1] == 2


def test_resume_refuses_other_data(corpus, model, tmp_path, capsys):
    other = make_corpus(tmp_path / "other")
    code, err = cli(capsys, "train", "--data", str(other), "--out", str(model), "--resume",
                    "--no-progress", "--device", "cpu", "--preset", "tiny")
    assert code == 2 and "differs from the data of the run" in err


def test_resume_without_data_uses_the_runs_data(corpus, model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default data.path does not exist here
    code, err = cli(capsys, "train", "--out", str(model), "--resume", "--no-progress",
                    "--device", "cpu", "--preset", "tiny", "--set", "train.max_steps=3")
    assert code == 0, err


def test_eval_every_runs_without_sampling(corpus, tmp_path, monkeypatch):
    import text2sign.evaluation.evaluate as evaluation
    from text2sign.training.loop import train

    calls = []

    def fake_evaluate(pipe, cache, out, **kwargs):
        calls.append(out.name)
        return {"top1": 0.5, "top5": 1.0, "fd": 1.0}

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    cfg = tiny_config(corpus, max_steps=4, eval_every=2, sample_every=0, checkpoint_every=0)
    train(cfg, tmp_path / "run", progress=False, device="cpu")
    assert calls == ["step-000002", "step-000004"]


def test_prepare_has_no_val_fraction_knob(corpus, capsys):
    with pytest.raises(SystemExit):
        main(["data", "prepare", str(corpus), "--frames", "4", "--size", "16",
              "--val-fraction", "0.5"])


def test_info_says_custom_when_params_leave_the_preset(corpus, tmp_path, capsys):
    from text2sign.training.loop import train

    cfg = build_config("tiny", overrides=[f"data.path={corpus}", "data.val_fraction=0",
                                          "train.max_steps=1", "model.params.stem=1"])
    train(cfg, tmp_path / "run", progress=False, device="cpu")
    capsys.readouterr()
    assert main(["info", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "unet3d custom (preset tiny with stem=1)" in out


def test_info_names_the_preset_when_params_match(model, capsys):
    assert main(["info", str(model)]) == 0
    assert "unet3d preset tiny," in capsys.readouterr().out


@pytest.mark.parametrize("name", ["2024", "yes", "clips: new"])
def test_cli_train_takes_any_data_folder_name(corpus, tmp_path, capsys, monkeypatch, name):
    """--data is set as a path, never re-parsed as YAML (a number, a boolean, a mapping)."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(corpus, name, ignore=shutil.ignore_patterns(".text2sign-cache"))
    run = tmp_path / "run"
    code, err = cli(capsys, "train", "--data", name, "--out", str(run), "--no-progress",
                    "--device", "cpu", "--preset", "tiny", "--set", "train.max_steps=1",
                    "--set", "data.val_fraction=0")
    assert code == 0, err
    assert json.loads((run / "model" / "config.json").read_text())["config"]["data"]["path"] \
        == name


def test_set_keeps_text_settings_as_text():
    """YAML reads no, yes and 2024 as a boolean and a number; a --set of a text setting keeps
    the text (the error message itself suggests train.mixed_precision=no)."""
    from text2sign.model_folder.build import build_config

    cfg = build_config("tiny", overrides=["train.mixed_precision=no", "data.path=2024",
                                          "sample.sampler=ddim"])
    assert cfg.train.mixed_precision == "no" and cfg.data.path == "2024"
    assert build_config("tiny", overrides=["train.lr=0.5"]).train.lr == 0.5
