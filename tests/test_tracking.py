"""Trackers on tiny runs (TensorBoard, W&B offline with the real package, both), what they
log, the purge of repeated steps on resume, and the progress bar's total under --minutes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_config
from test_latent import latent_config

from text2sign.model_folder.build import build_config
from text2sign.training import loop as training
from text2sign.training.loop import expected_last_step, train

pytestmark = pytest.mark.usefixtures("one_thread")


def events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def fake_evaluate(pipe, cache, folder, **kwargs):
    """evaluate's report shape, without training recognizers: what the trackers receive."""
    groups = {"letters": {"cer": 0.25, "exact": 0.5}, "unseen": {"cer": 0.75, "exact": 0.0}}
    return {"top1": 0.5, "top5": 1.0, "fd": 3.0, "fd_floor": 2.0,
            "back_translation": {"units": "chars", "groups": groups}}


def test_tracker_tensorboard_logs_autoencoder_samples_eval_and_memory(corpus, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(training.evaluation, "evaluate", fake_evaluate)
    cfg = latent_config(corpus, "latent.steps=11", "train.max_steps=2", "train.log_every=1",
                        "train.sample_every=2", "train.eval_every=2", "train.report_to=tensorboard")
    train(cfg, tmp_path / "run", progress=False, device="cpu")
    main = events(tmp_path / "run" / "tensorboard")
    tags = main.Tags()
    assert [e.step for e in main.Scalars("train/loss")] == [1, 2]
    assert all(e.value > 10 for e in main.Scalars("train/peak_memory_mb"))  # MB held by now
    assert {"eval/top1", "eval/letters_cer", "eval/unseen_exact"} <= set(tags["scalars"])
    assert main.Scalars("eval/letters_cer")[0].value == pytest.approx(0.25)
    assert tags["images"] == ["samples/A | B"]  # the tiny preset's prompts
    phase = events(tmp_path / "run" / "tensorboard" / "autoencoder")  # before the denoiser
    assert [e.step for e in phase.Scalars("autoencoder/l1")] == [0, 10]
    assert not (tmp_path / "run" / "wandb").exists()


def wandb_run(out: Path) -> Path:
    [run] = (out / "wandb").glob("offline-run-*")
    return run


@pytest.mark.parametrize("report_to", ["wandb", "all"])
def test_tracker_wandb_offline_with_the_real_package(report_to, corpus, tmp_path):
    """The real W&B package, offline (no account, no network), in its own process: W&B keeps
    process-wide state (a service process, handlers) that must not leak into other tests."""
    pytest.importorskip("wandb")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "text2sign", "train", "--data", str(corpus), "--out", str(out),
         "--preset", "tiny", "--device", "cpu", "--quiet", "--set", "data.val_fraction=0",
         "--set", "train.max_steps=2", "--set", "train.log_every=1",
         "--set", "train.sample_every=2", "--set", "train.checkpoint_every=0",
         "--set", f"train.report_to={report_to}"],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = wandb_run(out)
    data = next(run.glob("run-*.wandb")).read_bytes()
    for key in (b"train/loss", b"train/step", b"train/peak_memory_mb", b"samples/0"):
        assert key in data
    gifs = list((run / "files" / "media" / "videos").rglob("*.gif"))
    assert len(gifs) == 2  # one wandb.Video per prompt of the tiny preset: A, B
    assert (out / "tensorboard").exists() == (report_to == "all")


def test_tracker_resume_purges_the_steps_it_repeats(corpus, tmp_path):
    cfg = tiny_config(corpus, max_steps=4, log_every=1, checkpoint_every=2, keep_checkpoints=5)
    run = tmp_path / "run"
    train(cfg, run, progress=False, device="cpu")
    shutil.rmtree(run / "checkpoints" / "step-000004")  # as if killed after step 4's logs
    train(cfg, run, resume=True, progress=False, device="cpu")  # steps 3 and 4 again
    assert len(list((run / "tensorboard").glob("events.out.tfevents*"))) == 2
    assert [e.step for e in events(run / "tensorboard").Scalars("train/loss")] == [1, 2, 3, 4]


def test_report_to_names_the_choices():
    with pytest.raises(ValueError, match=r"train.report_to='mlflow' is not one of \['tensorbo"):
        build_config("tiny", overrides=["train.report_to=mlflow"])


def test_minutes_bound_progress_total(corpus, tmp_path, capsys):
    tc = build_config("tiny", overrides=["train.max_steps=20000", "train.max_minutes=8"]).train
    assert expected_last_step(10, tc, minutes=1.0, steps_per_minute=50) == 360  # 7 min left
    assert expected_last_step(10, tc, minutes=8.5, steps_per_minute=50) == 10  # out of time
    steps_only = build_config("tiny", overrides=["train.max_steps=200"]).train
    assert expected_last_step(10, steps_only, minutes=1.0, steps_per_minute=50) == 200
    fast = build_config("tiny", overrides=["train.max_steps=200", "train.max_minutes=8"]).train
    assert expected_last_step(10, fast, minutes=1.0, steps_per_minute=500) == 200  # steps bind
    # A run that the minutes stop shows a full bar at the step it stopped, not 1/20000.
    cfg = tiny_config(corpus, max_steps=20000, checkpoint_every=0, max_minutes=1e-9)
    train(cfg, tmp_path / "run", progress=True, device="cpu")
    bar = capsys.readouterr().err.split("\r")[-1]
    assert re.search(r"100%.*\b1/1\b", bar) and "20000" not in bar, bar
