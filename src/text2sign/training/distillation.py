"""text2sign distill: a few-step student with guidance folded in, from any text2sign model folder.

Latent consistency distillation (Luo et al. 2023, LCM) of a guided teacher (Meng et al. 2023):
the student is the teacher's denoiser plus a zero-initialised guidance-scale embedding, so at
step 0 it is the teacher. It trains on the teacher's data in the training loop's pieces
(accelerate, checkpoints, ``--resume`` bit-exact, Ctrl-C, ``--minutes``, trackers); its EMA is
both the consistency target network and the saved model, an ordinary model folder that samples
with the "lcm" sampler in ``distill.steps`` steps, one denoiser evaluation a step.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from text2sign.core.config import DISTILL_STEPS, Config, DistillConfig, apply_overrides
from text2sign.core.cuda import adamw
from text2sign.core.device import describe_device
from text2sign.diffusion import process as diffusion
from text2sign.model_folder.build import build_denoiser
from text2sign.model_folder.folder_io import check_fit, save_model_folder
from text2sign.model_folder.model_info import ModelInfo
from text2sign.model_folder.pipeline import Text2SignPipeline, trainable_state
from text2sign.model_folder.resolve import ModelFolder, resolve_model
from text2sign.training.init_from import folder_reference
from text2sign.training.loop import (
    Job,
    begin_run,
    run_loop,
    split_state,
    started_run,
    training_batches,
)
from text2sign.training.run_state import (
    CHECKPOINT_PREFIX,
    optimizer_from_tensors,
    prune_checkpoints,
    save_training_state,
)

DISTILLABLE = ("unet3d", "dit3d")  # denoisers with a timestep signal a guidance embedding joins
# What a student's run changes in its teacher's training settings (LCM trains its target
# network as an EMA of decay 0.95; a few thousand steps, not the teacher's tens of thousands).
STUDENT_TRAIN = {"lr": 1e-4, "warmup_steps": 0, "max_steps": 2000, "ema_decay": 0.95,
                 "sample_every": 0, "eval_every": 0, "checkpoint_every": 500}


def check_teacher(cfg: Config, info: ModelInfo, where: str) -> None:
    """Refuse, naming the reason, a model folder this method cannot distil."""
    if cfg.distill.steps is not None:
        raise ValueError(f"{where!r} is already a student (distilled from "
                         f"{cfg.distill.teacher!r}); distil its teacher instead")
    if cfg.model.arch not in DISTILLABLE:
        raise ValueError(f"{where!r} has denoiser {cfg.model.arch!r}; text2sign distill takes "
                         f"{' or '.join(DISTILLABLE)} teachers")
    if cfg.model.pretrained or info.pretrained.get("denoiser"):
        raise ValueError(f"{where!r} keeps frozen pretrained denoiser weights "
                         f"({cfg.model.pretrained!r}); text2sign distill takes a teacher whose "
                         "weights are all in its folder")


def student_config(teacher: Config, teacher_folder: str | Path, steps: int,
                   overrides: list[str] | None = None, data: str | Path | None = None) -> Config:
    """The teacher's config made a student's: the guidance embedding in the denoiser, the "lcm"
    sampler at ``steps`` steps, `STUDENT_TRAIN`, the guidance range widened to take the
    teacher's own scale, then the ``--set`` overrides."""
    if steps not in DISTILL_STEPS:
        raise ValueError(f"--steps {steps}: the lcm student samples in "
                         f"{', '.join(map(str, DISTILL_STEPS))} steps; choose one of them")
    model = replace(teacher.model, params={**teacher.model.params, "guidance_embed": True},
                    init_from=None)
    cfg = replace(
        teacher, model=model,
        data=replace(teacher.data, path=str(data)) if data is not None else teacher.data,
        sample=replace(teacher.sample, sampler="lcm", steps=steps, eta=0.0),
        train=replace(teacher.train, **STUDENT_TRAIN, max_minutes=None),
        distill=DistillConfig(
            steps=steps, teacher=str(teacher_folder),
            guidance_min=min(DistillConfig.guidance_min, teacher.sample.guidance),
            guidance_max=max(DistillConfig.guidance_max, teacher.sample.guidance)))
    return apply_overrides(cfg, overrides) if overrides else cfg


class DistillTrainer(nn.Module):
    """The student (trainable), the frozen teacher, the target network (the student's EMA) and
    the frozen text conditioner; forward is the consistency distillation loss, so
    `training.train_step` drives it as it drives the denoising loss."""

    def __init__(self, student: nn.Module, teacher: nn.Module, conditioner: nn.Module,
                 cfg: Config):
        super().__init__()
        self.denoiser = student
        self.teacher = teacher.requires_grad_(False)
        self.target = copy.deepcopy(student).requires_grad_(False)
        self.conditioner = conditioner.requires_grad_(False)
        self.diffusion = cfg.diffusion
        self.guidance = (cfg.distill.guidance_min, cfg.distill.guidance_max)
        self.grid = cfg.distill.grid
        self.scheduler = diffusion.make_scheduler(cfg.diffusion, "lcm", self.grid)

    def train(self, mode: bool = True) -> DistillTrainer:
        super().train(mode)
        for frozen in (self.teacher, self.target, self.conditioner):
            frozen.eval()
        return self

    def forward(self, videos: torch.Tensor, texts: list[str], languages: list[str],
                generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            cond = self.conditioner(texts, languages=languages)
            uncond = self.conditioner.null(len(texts), languages)
        return diffusion.consistency_distillation_loss(
            self.denoiser, self.teacher, self.target, videos, cond, uncond, self.diffusion,
            self.guidance, generator, self.scheduler, self.grid)


@torch.no_grad()
def sync_target(raw: DistillTrainer, ema: dict[str, torch.Tensor]) -> None:
    """The target network takes the EMA weights (LCM's theta^- <- EMA of theta)."""
    for name, p in raw.target.named_parameters():
        p.copy_(ema[f"denoiser.{name}"])


def load_teacher(folder: ModelFolder) -> tuple[Text2SignPipeline, dict[str, torch.Tensor]]:
    """The teacher's pipeline on the CPU and its text weights as its folder holds them."""
    pipe = Text2SignPipeline.from_pretrained(folder, device="cpu")
    check_teacher(pipe.config, pipe.info, str(pipe.folder))
    text_state = {k: v.detach().clone() for k, v in trainable_state(pipe.conditioner).items()}
    return pipe, text_state


def make_student(cfg: Config, teacher: Text2SignPipeline, start: ModelFolder | None = None
                 ) -> nn.Module:
    """The student: the teacher's weights in a denoiser with a guidance embedding (seeded), or
    with ``start`` (the folder ``distill.student_from`` names) the weights of that student."""
    torch.manual_seed(cfg.train.seed)
    student = build_denoiser(cfg, teacher.conditioner.dim)
    if start is not None:
        student.load_state_dict(student_start(student, start))
        return student
    missing, unexpected = student.load_state_dict(teacher.denoiser.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("guidance_embed.") for k in missing), missing
    return student


def student_start(student: nn.Module, start: ModelFolder) -> dict[str, torch.Tensor]:
    """The denoiser weights of ``start``, refused unless it is a student (guidance embedding
    and all) of this student's architecture and size."""
    where = str(start.path)
    if start.config.distill.steps is None:
        raise ValueError(f"distill.student_from={where!r} is not a student (it was not made by "
                         "text2sign distill); name a student folder, or leave it unset to "
                         "start from the teacher")
    state = start.weights()[0]
    check_fit(student.state_dict(), state,
              f"distill.student_from={where!r} does not fit this student",
              "it was distilled from a teacher of another architecture or size; start from "
              "the teacher (leave distill.student_from unset)")
    return state


def student_pipeline(raw: DistillTrainer, ema: dict[str, torch.Tensor], cfg: Config,
                     teacher: Text2SignPipeline) -> Text2SignPipeline:
    """A pipeline over a copy of the student carrying the EMA weights (previews, evaluation)."""
    student = copy.deepcopy(raw.denoiser)
    student.load_state_dict(split_state(ema, "denoiser."))
    device = next(iter(ema.values())).device
    pipe = Text2SignPipeline(student, raw.conditioner, cfg, device,
                             autoencoder=teacher.autoencoder)
    pipe.duration = teacher.duration
    return pipe


def save_student(out: Path, cfg: Config, raw: DistillTrainer, ema: dict[str, torch.Tensor],
                 optimizer: torch.optim.Optimizer, step: int, minutes: float, info: ModelInfo,
                 teacher: Text2SignPipeline, text_state: dict[str, torch.Tensor]) -> Path:
    """Training state for --resume plus the EMA student as an ordinary model folder."""
    folder = out / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:06d}"
    model_state = {f"denoiser.{k}": v for k, v in raw.denoiser.state_dict().items()}
    save_training_state(folder, model_state=model_state, ema_state=ema, optimizer=optimizer,
                        meta={"step": step, "minutes": minutes,
                              "teacher_files": teacher.info.files,
                              "init_from": info.init_from},
                        config=cfg)
    student = copy.deepcopy(raw.denoiser)
    student.load_state_dict(split_state(ema, "denoiser."))
    save_model_folder(out / "model", replace(info, step=step, minutes=round(minutes, 2)),
                      student.state_dict(), text_state, autoencoder=teacher.autoencoder,
                      texts=teacher.training_texts, duration=teacher.duration)
    prune_checkpoints(out, cfg.train.keep_checkpoints)
    return folder


def resume_student(raw: DistillTrainer, state: dict, checkpoint: Path,
                   teacher: Text2SignPipeline) -> dict[str, torch.Tensor]:
    """The checkpoint's student and EMA weights, refused if the teacher's files changed."""
    if state["meta"].get("teacher_files") != teacher.info.files:
        raise ValueError(f"the teacher {str(teacher.folder)!r} changed since {checkpoint.name} "
                         "(its weights' sha256 differ); restore it to resume, or start a new "
                         "run with another --out")
    what = f"checkpoint {str(checkpoint)!r} does not fit this student"
    fix = "it was written with another config: start a new --out"
    check_fit({f"denoiser.{k}": v for k, v in raw.denoiser.state_dict().items()}, state["model"],
              what, fix)
    check_fit(trainable_state(raw), state["ema"], what + " (its EMA weights)", fix)
    raw.load_state_dict(state["model"], strict=False)
    return {k: v.float() for k, v in state["ema"].items()}


def distill(cfg: Config, out: str | Path, resume: bool | str | Path = False,
            progress: bool = True, device: str | None = None, quiet: bool | None = None,
            command: str | None = None, teacher: ModelFolder | None = None) -> Path:
    """Distil ``cfg.distill.teacher`` (``teacher``, when the caller resolved it already) into a
    student (``cfg`` from `student_config`, or the run's own on resume); returns the model
    folder ``out/model``."""
    out = Path(out)
    quiet = not progress if quiet is None else quiet
    teacher, text_state = load_teacher(teacher or resolve_model(cfg.distill.teacher))
    with started_run(cfg, out, resume, device) as (accelerator, checkpoint, state):
        return _distill(cfg, out, accelerator, checkpoint, state, teacher, text_state, progress,
                        quiet, command)


def _distill(cfg: Config, out: Path, accelerator: Any, checkpoint: Path | None,
             state: dict | None, teacher: Text2SignPipeline,
             text_state: dict[str, torch.Tensor], progress: bool, quiet: bool,
             command: str | None) -> Path:
    tc = cfg.train
    cfg, cache, (train_idx, _, _), train_texts, trackers = begin_run(cfg, out, accelerator,
                                                                      progress)
    autoencoder = teacher.autoencoder
    if autoencoder is not None:
        autoencoder = autoencoder.to(accelerator.device)

    # --- student, teacher, target: the teacher's weights (or distill.student_from's), or the
    # checkpoint's
    start = (resolve_model(cfg.distill.student_from)
             if cfg.distill.student_from and checkpoint is None else None)
    raw = DistillTrainer(make_student(cfg, teacher, start), teacher.denoiser,
                         teacher.conditioner, cfg)
    raw = raw.to(accelerator.device)
    live = trainable_state(raw)
    optimizer = adamw(live.values(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.99))
    ema = {k: v.detach().float().clone() for k, v in live.items()}
    if checkpoint is not None:
        ema = resume_student(raw, state, checkpoint, teacher)
    module, optimizer = accelerator.prepare(raw, optimizer)
    if checkpoint is not None:
        optimizer_from_tensors(optimizer, state["optimizer"], state["meta"]["optimizer"])
    ema = {k: v.to(accelerator.device) for k, v in ema.items()}
    step, minutes_before = (0, 0.0) if state is None else (
        state["meta"]["step"], state["meta"].get("minutes", 0.0))
    batches, encode, _ = training_batches(cfg, cache, train_idx, step, state, autoencoder,
                                          accelerator, progress)
    info = replace(teacher.info, config=cfg, step=None, minutes=None, command=command,
                   device=describe_device(accelerator.device), evaluation=None, files={},
                   init_from=folder_reference(cfg.distill.student_from, start)
                   if start is not None else (
                       state or {}).get("meta", {}).get("init_from"),
                   parameters={"denoiser": sum(
                       p.numel() for p in raw.denoiser.parameters())})

    def save(step: int, minutes: float) -> Path:
        return save_student(out, cfg, raw, ema, optimizer.optimizer, step, minutes, info,
                            teacher, text_state)

    job = Job(module, optimizer, ema, live, batches, encode, save,
              pipeline=lambda: student_pipeline(raw, ema, cfg, teacher), step=step,
              minutes_before=minutes_before, checkpoint=checkpoint,
              before_step=lambda: sync_target(raw, ema), name="distill")
    return run_loop(job, cfg, out, accelerator, trackers, cache, train_texts, progress, quiet)
