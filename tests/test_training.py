"""Training, checkpoints and the pipeline, end to end on a tiny corpus made here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import killed_after, losses, same_tensors, tiny_config
from safetensors.torch import load_file

from text2sign.core.config import load_config
from text2sign.model_folder.build import build_config, build_models
from text2sign.model_folder.pipeline import Text2SignPipeline
from text2sign.training.loop import StepBatchSampler, TrainingDiverged, lr_at, train


def test_config_yaml_round_trip(tmp_path):
    cfg = build_config("small", overrides=["train.lr=1e-4", "model.params.channels=48"])
    path = tmp_path / "run.yaml"
    cfg.save(path)
    assert load_config(path) == cfg
    assert build_config("tiny", config_file=path) == cfg  # the file wins over the preset
    assert cfg.model.params["channels"] == 48 and cfg.train.lr == 1e-4
    with pytest.raises(ValueError, match="unknown config key 'train.lrr'"):
        build_config("small", overrides=["train.lrr=1"])
    with pytest.raises(ValueError, match="sample.sampler"):
        build_config("small", overrides=["sample.sampler=euler"])


def test_lr_warmup_then_cosine():
    cfg = build_config("small", overrides=["train.warmup_steps=10", "train.max_steps=110"]).train
    assert lr_at(0, cfg) == pytest.approx(cfg.lr / 10)
    assert lr_at(9, cfg) == pytest.approx(cfg.lr)
    assert lr_at(60, cfg) == pytest.approx(cfg.lr / 2)
    assert lr_at(110, cfg) == pytest.approx(0.0)


def test_lr_anneals_by_a_minutes_budget():
    sets = ["train.warmup_steps=10", "train.max_steps=1010"]
    cfg = build_config("small", overrides=sets + ["train.max_minutes=30"]).train
    by_steps = build_config("small", overrides=sets).train
    assert lr_at(20, cfg, minutes=0.0) == pytest.approx(lr_at(20, by_steps))
    assert lr_at(20, cfg, minutes=15.0) == pytest.approx(cfg.lr / 2)  # half the budget spent
    assert lr_at(20, cfg, minutes=30.0) == pytest.approx(0.0)
    assert lr_at(510, cfg, minutes=1.0) == pytest.approx(cfg.lr / 2)  # the steps come first


def test_batch_sampler_resumes_mid_epoch_and_shards():
    full = StepBatchSampler(10, 3, world=1, rank=0, seed=1, start=0)
    it = iter(full)
    seq = [next(it) for _ in range(8)]
    resumed = iter(StepBatchSampler(10, 3, world=1, rank=0, seed=1, start=5))
    assert [next(resumed) for _ in range(3)] == seq[5:8]
    assert sorted(sum(seq[:3], [])) == sorted(set(sum(seq[:3], [])))  # no repeats in an epoch
    r0 = next(iter(StepBatchSampler(10, 2, world=2, rank=0, seed=1, start=0)))
    r1 = next(iter(StepBatchSampler(10, 2, world=2, rank=1, seed=1, start=0)))
    assert not set(r0) & set(r1)
    tiny = next(iter(StepBatchSampler(2, 4, world=1, rank=0, seed=0, start=0)))
    assert len(tiny) == 4  # a corpus smaller than the batch is tiled


def test_train_save_load_sample(corpus, tmp_path):
    cfg = tiny_config(corpus, max_steps=3, checkpoint_every=0)
    model = train(cfg, tmp_path / "run", progress=False, device="cpu")
    assert (model / "config.json").is_file() and (model / "denoiser.safetensors").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents*"))
    pipe = Text2SignPipeline.from_pretrained(tmp_path / "run", device="cpu")
    videos = pipe(["A", "B"], steps=2, seed=3)
    assert videos.shape == (2, 4, 16, 16, 3) and videos.dtype == np.uint8
    assert np.array_equal(videos, pipe(["A", "B"], steps=2, seed=3))
    info = json.loads((model / "config.json").read_text())
    assert info["step"] == 3 and info["data"]["texts"] == 3


def test_fresh_run_refuses_to_overwrite_a_run(corpus, tmp_path):
    cfg = tiny_config(corpus, max_steps=2, checkpoint_every=2)
    train(cfg, tmp_path / "run", progress=False, device="cpu")
    with pytest.raises(ValueError, match="already holds a run.*--resume"):
        train(cfg, tmp_path / "run", progress=False, device="cpu")
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-000002"]


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_resume_continues_exactly(corpus, tmp_path, grad_accum):
    cfg = tiny_config(corpus, max_steps=6, checkpoint_every=2, keep_checkpoints=5,
                      grad_accum=grad_accum)
    full = tmp_path / "full"
    train(cfg, full, progress=False, device="cpu")
    part = killed_after(full, 2, tmp_path / "part")
    train(cfg, part, resume=True, progress=False, device="cpu")
    assert losses(part) == losses(full)[2:]
    ema = Path("checkpoints") / "step-000006" / "ema.safetensors"
    assert same_tensors(full / ema, part / ema)


def test_ema_moves_and_lags(corpus, tmp_path):
    cfg = tiny_config(corpus, max_steps=4, checkpoint_every=4)
    train(cfg, tmp_path / "run", progress=False, device="cpu")
    state = load_file(tmp_path / "run" / "checkpoints" / "step-000004" / "ema.safetensors")
    raw = load_file(tmp_path / "run" / "checkpoints" / "step-000004" / "model.safetensors")
    torch.manual_seed(cfg.train.seed)
    denoiser, _ = build_models(cfg)
    init = {f"denoiser.{k}": v for k, v in denoiser.state_dict().items()}
    moved = sum(not torch.equal(state[k], init[k]) for k in state if k in init)
    lags = sum(not torch.equal(state[k], raw[k]) for k in state if k in raw)
    assert moved > 0 and lags > 0


def test_non_finite_loss_stops_with_last_checkpoint(corpus, tmp_path, monkeypatch):
    import text2sign.diffusion.process as diffusion

    real = diffusion.training_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(diffusion, "training_loss", flaky)
    cfg = tiny_config(corpus, max_steps=6, checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match="step 3.*step-000002"):
        train(cfg, tmp_path / "run", progress=False, device="cpu")
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-000002"]


def test_cli_train_sample_info(corpus, tmp_path, capsys):
    from text2sign.cli import main

    run = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--preset", "tiny", "--out", str(run),
                 "--device", "cpu", "--no-progress", "--set", "data.val_fraction=0",
                 "--set", "train.sample_every=2"]) == 0
    assert list((run / "samples" / "step-000002").glob("*.gif"))
    assert main(["sample", "--model", str(run), "CAB", "A", "--num", "2", "--steps", "2",
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert len(list((tmp_path / "out").glob("*.gif"))) == 4
    assert (tmp_path / "out" / "contact.png").is_file()
    assert main(["info", str(run)]) == 0
    assert "step 4" in capsys.readouterr().out
    assert main(["sample", "--model", str(tmp_path / "nope"), "A"]) == 2


def test_two_process_accelerate_launch(corpus, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "text2sign", "train", "--data", str(corpus), "--preset", "tiny",
           "--out", str(run), "--no-progress", "--set", "data.val_fraction=0",
           "--set", "train.max_steps=2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((run / "model" / "config.json").read_text())
    assert info["step"] == 2
    assert len(losses(run)) == 2


def test_small_preset_is_latent_and_pixel_space_is_one_flag_away():
    latent, pixel = build_config("small"), build_config("small-pixel")
    assert latent.latent.enabled and latent.model.params["stem"] == 1
    assert latent.data.size // latent.latent.factor == 16  # the demo model's latent grid
    assert not pixel.latent.enabled and pixel.model.params["stem"] == 4


def test_sample_refuses_unseen_characters_and_warns_about_long_texts(corpus, tmp_path, capsys):
    from text2sign.cli import main

    run = tmp_path / "run"
    train(tiny_config(corpus, max_steps=1), run, progress=False, device="cpu")
    assert (run / "model" / "texts.txt").read_text().split() == ["A", "B", "C"]
    pipe = Text2SignPipeline.from_pretrained(run, device="cpu")
    assert pipe.text_warnings(["A", "B"]) == []
    with pytest.raises(ValueError, match=r"'AZ' has characters the model never saw.*'Z'"):
        pipe.check_texts(["A", "AZ"])
    for bad in ("", "  ", "A\u0000\u0007B"):
        with pytest.raises(ValueError, match="empty|control characters"):
            pipe.check_texts([bad])
    [long] = pipe.text_warnings(["AB"])  # known letters, longer than any training text
    assert "more than any training text" in long
    assert main(["sample", "--model", str(run), "AZ", "A", "--steps", "1", "--out",
                 str(tmp_path / "out"), "--device", "cpu"]) != 0
    err = capsys.readouterr().err
    assert "'Z'" in err and len(err.strip().splitlines()) == 1  # one line, nothing generated
    assert not (tmp_path / "out").exists()
    assert main(["sample", "--model", str(run), "AB", "A", "--steps", "1", "--out",
                 str(tmp_path / "out"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "'AB'" in warnings[0]  # one line, and the run goes on
    assert (tmp_path / "out" / "A-00.gif").is_file()
    assert main(["info", str(run)]) == 0
    assert "texts.txt" in capsys.readouterr().out


def test_prompts_must_be_texts_yaml_booleans_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sample:\n  prompts:\n  - hello\n  - yes\n")  # YAML reads yes as True
    with pytest.raises(ValueError, match="not texts; quote them"):
        build_config("tiny", path)
    path.write_text('sample:\n  prompts:\n  - hello\n  - "yes"\n')
    assert build_config("tiny", path).sample.prompts == ["hello", "yes"]


def test_a_failing_sample_at_the_end_does_not_lose_the_checkpoint(corpus, tmp_path, monkeypatch):
    from text2sign.training import loop as training

    def broken(*args, **kwargs):
        raise RuntimeError("sampling failed")

    monkeypatch.setattr(training, "sample_and_log", broken)
    cfg = tiny_config(corpus, max_steps=3, checkpoint_every=0, sample_every=100)
    with pytest.raises(RuntimeError, match="sampling failed"):
        train(cfg, tmp_path / "run", progress=False, device="cpu")
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-000003"]


def test_train_step_is_one_optimizer_step_with_ema(corpus):
    """The loop's step, shared by the benchmarks: weights move, the EMA follows, NaN stops."""
    from accelerate import Accelerator

    from text2sign.model_folder.pipeline import trainable_state
    from text2sign.training.loop import init_training, train_step

    cfg = tiny_config(corpus)
    module, optimizer, ema, _, _ = init_training(cfg, None, None)
    live = trainable_state(module)
    before = {k: v.detach().clone() for k, v in live.items()}
    ema_before = {k: v.clone() for k, v in ema.items()}
    videos = torch.zeros(2, 3, 4, 16, 16)  # (B, C, T, H, W)
    batch = [(videos, ["A", "B"], ["ase", "ase"], torch.Generator().manual_seed(0))]
    result = train_step(module, optimizer, Accelerator(cpu=True), batch, grad_clip=1.0,
                        ema=ema, live=live, ema_decay=0.5)
    assert math.isfinite(result.loss) and result.grad_norm > 0
    assert any(not torch.equal(before[k], live[k]) for k in live)
    assert any(not torch.equal(ema_before[k], ema[k]) for k in ema)
    with pytest.raises(TrainingDiverged, match="loss is nan"):
        train_step(module, optimizer, Accelerator(cpu=True),
                   [(videos * float("nan"), ["A", "B"], None, torch.Generator().manual_seed(0))],
                   grad_clip=1.0)
