"""Training: small documented helpers above one accelerate loop you can read top to bottom.

Randomness is derived from (seed, step, micro-batch, rank) at every step and the data order from
(seed, epoch), so `--resume` needs no RNG state to continue exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from torch import nn
from tqdm.auto import tqdm

from text2sign.core.config import Config, TrainConfig
from text2sign.core.cuda import (
    adamw,
    check_distribution,
    compile_module,
    describe_kernels,
    enable_tf32,
    recorded_attention_kernels,
)
from text2sign.core.device import cpu_has_bf16, describe_device, peak_memory_mb, pick_device
from text2sign.core.files import append_line, clean_leftovers, keep_log
from text2sign.core.lr_schedule import warmup_cosine
from text2sign.core.run_control import DiskFull, RunStopped, StopRequest, is_disk_full, run_lock
from text2sign.core.units import DEFAULT_LANGUAGE
from text2sign.data.dataset import ClipDataset, open_data
from text2sign.data.folder import is_fingerspelling_corpus
from text2sign.data.latent_cache import LatentDataset, latent_cache
from text2sign.data.video_io import safe_names, write_gif
from text2sign.diffusion import process as diffusion
from text2sign.evaluation import evaluate as evaluation
from text2sign.model_folder.autoencoder_io import (
    AUTOENCODER_INFO,
    load_autoencoder,
    save_autoencoder,
)
from text2sign.model_folder.build import build_autoencoder, build_models, diffusion_space
from text2sign.model_folder.folder_io import save_model_folder
from text2sign.model_folder.model_info import ModelInfo
from text2sign.model_folder.pipeline import Text2SignPipeline, trainable_state
from text2sign.model_folder.resolve import ModelFolder, resolve_model
from text2sign.models.duration import DurationModel
from text2sign.models.pretrained import init_from_pretrained, reference
from text2sign.training.autoencoder_training import train_autoencoder
from text2sign.training.init_from import init_from_model, source_autoencoder
from text2sign.training.run_state import (
    CHECKPOINT_PREFIX,
    list_checkpoints,
    load_checkpoint_weights,
    load_resume,
    optimizer_from_tensors,
    prune_checkpoints,
    save_training_state,
)
from text2sign.training.tracking import Trackers, accelerate_trackers, tracker_names


class TrainingDiverged(RunStopped):
    """The loss became NaN or infinite; the run stopped without saving the bad state."""


def lr_at(step: int, cfg: TrainConfig, minutes: float = 0.0) -> float:
    """Linear warmup, then cosine decay to zero at ``max_steps`` or, with a ``max_minutes``
    budget, at whichever of the two limits comes first (so a time-boxed run ends annealed)."""
    spent = minutes / cfg.max_minutes if cfg.max_minutes else 0.0
    return cfg.lr * warmup_cosine(step, cfg.warmup_steps, cfg.max_steps, spent)


def expected_last_step(step: int, tc: TrainConfig, minutes: float,
                       steps_per_minute: float) -> int:
    """The step a run will stop at: ``max_steps``, or sooner where ``max_minutes`` binds at
    the pace measured so far (the progress bar's total, so its ETA is the real one)."""
    if tc.max_minutes is None or steps_per_minute <= 0:
        return tc.max_steps
    left = max(0.0, tc.max_minutes - minutes)
    return min(tc.max_steps, step + math.ceil(left * steps_per_minute))


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (no correlation between neighbouring steps)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, dtype=np.uint64)[0] >> 1)


def mixed_precision_for(requested: str, device_type: str) -> str:
    """``auto``: bf16 on CUDA GPUs that have it (else fp16), fp32 elsewhere. On a CPU, bf16
    autocast is a choice (``bf16``), not the default: on an AVX512-BF16 CPU it trained the words
    config 1.2x faster than fp32, but a small denoiser (the unet3d preset at 4x4 latents) ran
    2.5x slower (docs/benchmarks.md), so it pays only for large enough convolutions."""
    if requested != "auto":
        if requested == "fp16" and device_type != "cuda" or requested == "bf16" and \
                device_type not in ("cuda", "cpu"):
            raise ValueError(
                f"train.mixed_precision={requested!r} is not available on {device_type}; use "
                "train.mixed_precision=no or auto"
            )
        if requested == "bf16" and device_type == "cpu" and not cpu_has_bf16():
            print("note: this CPU has no native bf16 (AVX512-BF16 / AMX); bf16 autocast will "
                  "be slow here, train.mixed_precision=no is faster", file=sys.stderr)
        return requested
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


class LanguageDraw:
    """An epoch's clips, in shuffled order, with each language's share of them proportional to
    (its clips) ** ``alpha`` (temperature sampling of multilingual corpora, as XLM draws its
    languages): a language whose share is above its clips repeats them (whole shuffled passes,
    then a random part of one), one below takes a new random subset each epoch. The epoch keeps
    the corpus's size. ``alpha`` None or a corpus of one language: a permutation of the clips.
    """

    def __init__(self, languages: list[str] | None, alpha: float | None):
        self.alpha = alpha
        self.groups: list[np.ndarray] = []
        if languages is None or alpha is None:
            return
        found = sorted(set(languages))
        if len(found) < 2:
            return
        codes = np.array(languages)
        self.groups = [np.flatnonzero(codes == code) for code in found]
        weights = np.array([len(g) for g in self.groups], dtype=float) ** alpha
        quotas = weights / weights.sum() * len(languages)
        self.quotas = np.floor(quotas).astype(int)
        rest = len(languages) - int(self.quotas.sum())  # largest remainders get one more
        self.quotas[np.argsort(-(quotas - self.quotas), kind="stable")[:rest]] += 1

    def __call__(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The positions (into the clip list of length ``n``) of one epoch, shuffled."""
        if not self.groups:
            return rng.permutation(n)
        picks = []
        for group, quota in zip(self.groups, self.quotas, strict=True):
            whole, part = divmod(int(quota), len(group))
            picks += [group[rng.permutation(len(group))] for _ in range(whole)]
            picks.append(group[rng.permutation(len(group))[:part]])
        drawn = np.concatenate(picks)
        return drawn[rng.permutation(len(drawn))]

    def state(self) -> dict[str, Any]:
        """What a resumed run's draw must match (nothing when it is a plain permutation)."""
        if not self.groups:
            return {}
        return {"language_alpha": self.alpha, "language_quotas": self.quotas.tolist()}


class StepBatchSampler:
    """This rank's index lists, micro-batch after micro-batch, starting at any micro-batch.

    Epoch ``e`` is a permutation drawn from (seed, e) (or, with a `LanguageDraw`, each
    language's share of the clips); a corpus smaller than the global batch is tiled. Every rank
    computes the same global batch and takes its own slice.
    """

    def __init__(self, n: int, batch_size: int, world: int, rank: int, seed: int, start: int,
                 draw: LanguageDraw | None = None):
        if n == 0:
            raise ValueError("no training clips: the data folder holds no usable pairs")
        self.n, self.batch_size, self.world, self.rank = n, batch_size, world, rank
        self.seed, self.start = seed, start
        self.draw = draw or LanguageDraw(None, None)
        global_batch = batch_size * world
        self.reps = max(1, math.ceil(global_batch / n))
        self.per_epoch = (n * self.reps) // global_batch

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.start
        global_batch = self.batch_size * self.world
        plan_epoch, order = -1, None
        while True:
            epoch, pos = divmod(micro, self.per_epoch)
            if epoch != plan_epoch:  # an epoch's order is drawn once, not every micro-batch
                rng = np.random.default_rng([self.seed, epoch])
                plan_epoch = epoch
                order = np.concatenate([self.draw(self.n, rng) for _ in range(self.reps)])
            chunk = order[pos * global_batch:(pos + 1) * global_batch]
            yield chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size].tolist()
            micro += 1


class LengthBucketSampler:
    """Micro-batches of clips of one length, for a corpus whose clips keep their own lengths.

    Epoch ``e`` shuffles the clips with (seed, e), groups them by length (exact: a clip is never
    cropped or padded, so a spelled word keeps every letter) and cuts each group into global
    batches; a group's last, partial batch is filled with other clips of the same group, drawn
    from the same generator. The batches of all groups are then shuffled. Every clip is seen at
    least once an epoch; the plan is a function of (seed, epoch, lengths), so a resumed run
    continues the same sequence from micro-batch ``start`` (its ``state`` is checked on resume).
    """

    def __init__(self, lengths: list[int], batch_size: int, world: int, rank: int, seed: int,
                 start: int, draw: LanguageDraw | None = None):
        if not lengths:
            raise ValueError("no training clips: the data folder holds no usable pairs")
        self.lengths = [int(n) for n in lengths]
        self.batch_size, self.world, self.rank = batch_size, world, rank
        self.seed, self.start = seed, start
        self.draw = draw or LanguageDraw(None, None)
        global_batch = batch_size * world
        counts: dict[int, int] = {}
        for n in self.lengths:
            counts[n] = counts.get(n, 0) + 1
        # A drawn epoch's length groups (so its partial batches) change from epoch to epoch; it
        # has at least len / global_batch batches and takes that many, a random part of its plan.
        self.per_epoch = max(1, len(self.lengths) // global_batch) if self.draw.groups else \
            sum(math.ceil(c / global_batch) for c in counts.values())

    def epoch(self, epoch: int) -> list[list[int]]:
        """Epoch ``epoch``'s global batches (lists of positions into ``lengths``)."""
        global_batch = self.batch_size * self.world
        rng = np.random.default_rng([self.seed, epoch, 0x1E])
        groups: dict[int, list[int]] = {}
        for i in self.draw(len(self.lengths), rng).tolist():
            groups.setdefault(self.lengths[i], []).append(i)
        batches = []
        for length in sorted(groups):
            group = groups[length]
            for start in range(0, len(group), global_batch):
                batch = group[start:start + global_batch]
                if len(batch) < global_batch:  # fill from the same length, never padded
                    batch += rng.choice(group, global_batch - len(batch)).tolist()
                batches.append(batch)
        order = rng.permutation(len(batches))
        return [batches[k] for k in order]

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.start
        plan_epoch, plan = -1, []
        while True:
            epoch, pos = divmod(micro, self.per_epoch)
            if epoch != plan_epoch:
                plan_epoch, plan = epoch, self.epoch(epoch)
            chunk = plan[pos]
            yield chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
            micro += 1

    def state(self) -> dict[str, Any]:
        """What a resumed run must find again to continue this sequence."""
        digest = hashlib.sha1(json.dumps(self.lengths).encode()).hexdigest()[:16]
        return {"sampler": "length-buckets", "clips": len(self.lengths), "lengths": digest,
                "batch_size": self.batch_size, "world": self.world, **self.draw.state()}

    def check_state(self, saved: dict[str, Any] | None) -> None:
        """Refuse to resume a run whose clips, lengths or batch layout changed."""
        if saved is None:
            return  # a checkpoint written before length buckets: nothing to compare
        if saved != self.state():
            raise ValueError(
                f"the run's data order cannot continue: the checkpoint was written with "
                f"{saved}, this run has {self.state()} (the corpus, its clip lengths or the "
                "batch layout changed); restore them, or start a new run with --out")


class DiffusionTrainer(nn.Module):
    """Conditioning + denoising loss in one forward, so DDP syncs both text and video weights."""

    def __init__(self, denoiser: nn.Module, conditioner: nn.Module, cfg: Config):
        super().__init__()
        self.denoiser = denoiser
        self.conditioner = conditioner
        self.diffusion = cfg.diffusion
        self.scheduler = diffusion.make_scheduler(cfg.diffusion, "ddpm")

    def forward(self, videos: torch.Tensor, texts: list[str], languages: list[str],
                generator: torch.Generator) -> torch.Tensor:
        cond = self.conditioner(texts, drop_prob=self.diffusion.cfg_dropout, generator=generator,
                                languages=languages)
        return diffusion.training_loss(self.denoiser, videos, cond, self.diffusion,
                                       generator=generator, scheduler=self.scheduler)


@torch.no_grad()
def update_ema(ema: dict[str, torch.Tensor], params: dict[str, torch.Tensor], decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * params, kept in fp32."""
    keys = list(ema)
    torch._foreach_lerp_([ema[k] for k in keys], [params[k].detach().float() for k in keys],
                         1.0 - decay)


def ema_decay_at(step: int, target: float) -> float:
    """Warm the EMA up so early weights do not linger (the 'EMA warmup' of Karras et al.)."""
    return min(target, (1 + step) / (10 + step))


def split_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def ema_models(module: DiffusionTrainer, ema: dict[str, torch.Tensor]) -> tuple[nn.Module, ...]:
    """Copies of the denoiser and conditioner carrying the EMA weights, for sampling and saving."""
    denoiser = copy.deepcopy(module.denoiser)
    conditioner = copy.deepcopy(module.conditioner)
    denoiser.load_state_dict(split_state(ema, "denoiser."), strict=False)
    conditioner.load_state_dict(split_state(ema, "conditioner."), strict=False)
    return denoiser, conditioner


def micro_batches(batches: Iterator[dict], tc: TrainConfig, step: int, rank: int,
                  accelerator: Any, encode: Any = None) -> Iterator[tuple]:
    """The ``grad_accum`` micro-batches of one step as (videos, texts, languages, generator), each
    with its
    own seed from (seed, step, micro-batch, rank); ``encode`` maps clips to latents."""
    for micro in range(tc.grad_accum):
        batch = next(batches)
        videos = batch["video"].to(accelerator.device, non_blocking=True)  # (B, C, T, H, W)
        if encode is not None:
            with torch.no_grad(), accelerator.autocast():
                videos = encode(videos).float()  # (B, C', T, H/f, W/f)
        seed = derive_seed(tc.seed, step, micro, rank)
        torch.manual_seed(seed)  # anything drawing from the global RNG (dropout)
        yield videos, batch["text"], batch["language"], torch.Generator().manual_seed(seed)


@dataclass
class StepResult:
    loss: float  # mean over the micro-batches (and processes)
    grad_norm: float  # before clipping; 0.0 when the step did not sync gradients


def train_step(module: nn.Module, optimizer: torch.optim.Optimizer, accelerator: Any,
               micro_batches: Iterable[tuple[torch.Tensor, list[str], list[str],
                                             torch.Generator]], *,
               grad_clip: float, ema: dict[str, torch.Tensor] | None = None,
               live: dict[str, torch.Tensor] | None = None, ema_decay: float = 0.0
               ) -> StepResult:
    """One optimizer step: forward + loss, backward, clip, AdamW per micro-batch under
    accelerate's accumulation, then the EMA. ``micro_batches`` yields (videos (B, C, T, H, W),
    texts, languages, generator); a non-finite loss raises `TrainingDiverged` before its
    backward."""
    total, grad_norm, count = 0.0, torch.zeros(()), 0
    for videos, texts, languages, generator in micro_batches:
        with accelerator.accumulate(module):
            with accelerator.autocast():
                loss = module(videos, texts, languages, generator)
            value = accelerator.reduce(loss.detach(), "mean").item()  # sync point
            if not math.isfinite(value):
                raise TrainingDiverged(f"loss is {value}")
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                grad_norm = accelerator.clip_grad_norm_(module.parameters(), grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        total, count = total + value, count + 1
    if ema is not None:
        update_ema(ema, live, ema_decay)
    return StepResult(total / max(count, 1), float(grad_norm))


def flat_hparams(cfg: Config) -> dict[str, Any]:
    """TensorBoard hparams accept scalars and strings only."""
    out: dict[str, Any] = {}
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    scalar = isinstance(v, int | float | str)
                    out[f"{section}.{key}.{sub}"] = v if scalar else str(v)
            else:
                out[f"{section}.{key}"] = (value if isinstance(value, int | float | str | bool)
                                           else str(value))
    return out


def model_facts(raw: DiffusionTrainer, cache: Any, train_idx: list[int], val_idx: list[int],
                unseen_idx: list[int], cfg: Config, ae_meta: dict) -> ModelInfo:
    """What a model folder's config.json says about its training, besides step and minutes."""
    texts = sorted(set(cache.texts[i] for i in train_idx))
    return ModelInfo(
        config=cfg,
        parameters={"denoiser": sum(p.numel() for p in raw.denoiser.parameters())},
        data={"path": str(cfg.data.path), "clips": len(train_idx), "val_clips": len(val_idx),
              "texts": len(texts), "examples": texts[:50],
              "held_out_texts": len({cache.texts[i] for i in unseen_idx}),
              "held_out_clips": len(unseen_idx), "fingerprint": cache.fingerprint,
              "fingerspelling": is_fingerspelling_corpus(cache.index.get("source", ""))
              or is_fingerspelling_corpus(cfg.data.path)},
        autoencoder=ae_meta["facts"] if ae_meta else None,
    )


def save_checkpoint(out: Path, cfg: Config, raw: DiffusionTrainer, ema: dict[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, step: int, minutes: float,
                    facts: ModelInfo, autoencoder: nn.Module | None,
                    texts: list[str] | None = None, data_order: dict | None = None,
                    duration: DurationModel | None = None) -> Path:
    """Training state for --resume plus the EMA model folder (with ``texts``, every training
    text, as texts.txt, and the ``duration`` model); main process only. ``data_order`` is the
    length-bucket sampler's state, checked when the run resumes."""
    folder = out / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:06d}"
    frozen = {name for name, p in raw.named_parameters() if not p.requires_grad}
    model_state = {k: v for k, v in raw.state_dict().items() if k not in frozen}
    save_training_state(folder, model_state=model_state, ema_state=ema, optimizer=optimizer,
                        meta={"step": step, "minutes": minutes,
                              "pretrained": facts.pretrained,
                              "init_from": facts.init_from,
                              **({"data_order": data_order} if data_order else {})},
                        config=cfg)
    ema_denoiser, ema_conditioner = ema_models(raw, ema)
    # Frozen pretrained weights stay in their files: the folder references them.
    denoiser_state = {k: v for k, v in ema_denoiser.state_dict().items()
                      if f"denoiser.{k}" not in frozen}
    info = replace(facts, config=cfg, step=step, minutes=round(minutes, 2))
    save_model_folder(out / "model", info, denoiser_state, trainable_state(ema_conditioner),
                      autoencoder=autoencoder, texts=texts, duration=duration)
    prune_checkpoints(out, cfg.train.keep_checkpoints)
    return folder


def ema_pipeline(raw: DiffusionTrainer, ema: dict[str, torch.Tensor], cfg: Config,
                 autoencoder: nn.Module | None, duration: DurationModel | None = None
                 ) -> Text2SignPipeline:
    """A pipeline over copies of the models carrying the EMA weights, on the training device."""
    ema_denoiser, ema_conditioner = ema_models(raw, ema)
    device = next(iter(ema.values())).device
    pipe = Text2SignPipeline(ema_denoiser, ema_conditioner, cfg, device, autoencoder=autoencoder)
    pipe.duration = duration
    return pipe


def sample_and_log(pipe: Text2SignPipeline, out: Path, step: int, trackers: Trackers) -> None:
    """The config's prompts as GIFs under ``out/samples`` and in every tracker."""
    prompts = pipe.config.sample.prompts
    videos = pipe(prompts, seed=pipe.config.train.seed)
    folder = out / "samples" / f"{CHECKPOINT_PREFIX}{step:06d}"
    names = safe_names(prompts)
    for prompt, video in zip(prompts, videos, strict=True):
        write_gif(folder / f"{names[prompt]}.gif", video, fps=pipe.gif_fps)
    trackers.videos("samples", videos, prompts, step, fps=pipe.gif_fps)


def make_sampler(cache: Any, train_idx: list[int], tc: TrainConfig, world: int, rank: int,
                 start: int, saved: dict[str, Any] | None = None
                 ) -> StepBatchSampler | LengthBucketSampler:
    """Batches of the training clips: length buckets when clips keep their own lengths (checked
    against the ``saved`` data order of the checkpoint resumed from)."""
    draw = LanguageDraw([cache.languages[i] for i in train_idx], tc.language_alpha)
    if getattr(cache, "variable", False):
        sampler = LengthBucketSampler([cache.lengths[i] for i in train_idx], tc.batch_size,
                                      world, rank, tc.seed, start, draw)
        if saved is not None:
            sampler.check_state(saved)
    else:
        sampler = StepBatchSampler(len(train_idx), tc.batch_size, world, rank, tc.seed, start,
                                   draw)
    return sampler


def check_lengths(denoiser: nn.Module, cache: Any, train_idx: list[int], cfg: Config) -> None:
    """Every clip length the run will train on fits the denoiser (e.g. a DiT's tubelet)."""
    if not getattr(cache, "variable", False):
        return
    side = diffusion_space(cfg)[1]
    for length in sorted({cache.lengths[i] for i in train_idx}):
        try:
            denoiser.check_input_size(length, side, side)
        except ValueError as err:
            raise ValueError(f"the corpus has clips of {length} frames at {cfg.data.fps:g} fps "
                             f"that this denoiser cannot take: {err}") from None


def fit_duration(cache: Any, train_idx: list[int], cfg: Config) -> DurationModel | None:
    """The duration model of a run whose clips keep their own lengths: fitted on the training
    clips' lengths (the held-out texts never seen)."""
    if not getattr(cache, "variable", False):
        return None
    units = "chars" if cfg.text.encoder == "bytes" or cfg.text.lowercase else "words"
    texts = [cache.texts[i] for i in train_idx]  # the model folds letters (`units.split`)
    languages = None if not cfg.text.languages else [cache.languages[i] for i in train_idx]
    return DurationModel.fit(texts, [cache.lengths[i] for i in train_idx], units=units,
                             fps=cfg.data.fps, max_frames=cfg.data.max_frames,
                             languages=languages)


def evaluate_and_log(pipe: Text2SignPipeline, cache: Any, out: Path, step: int,
                     trackers: Trackers) -> None:
    """`text2sign evaluate` on the EMA model into ``out/eval``; top-1, top-5, FD and the
    back-translation's CER and exact rate per group to the trackers."""
    tc = pipe.config.train
    folder = out / "eval" / f"{CHECKPOINT_PREFIX}{step:06d}"
    report = evaluation.evaluate(pipe, cache, folder, per_text=tc.eval_per_text, seed=tc.seed,
                                 progress=False)
    trackers.scalars(evaluation.tensorboard_scalars(report), step)


def init_training(cfg: Config, checkpoint: Path | None, state: dict | None,
                  autoencoder: nn.Module | None = None, device: torch.device | None = None,
                  log=None, source: Callable[[], ModelFolder] | None = None
                  ) -> tuple[DiffusionTrainer, torch.optim.Optimizer, dict[str, torch.Tensor],
                             dict[str, Any], dict[str, Any] | None]:
    """Models (from ``model.pretrained`` / ``model.init_from`` where set), AdamW and fp32 EMA
    weights: identical on every rank from the seed, then the checkpoint's weights when resuming
    (the optimizer state is loaded after accelerate wraps it). Also returns the pretrained
    files' references and the ``model.init_from`` folder's (None without one). ``source`` gives
    the ``model.init_from`` folder (`init_source`: resolved once, when first asked)."""
    tc = cfg.train
    torch.manual_seed(tc.seed)
    denoiser, conditioner = build_models(cfg)
    references = pretrained_references(cfg, autoencoder)
    if cfg.model.pretrained:
        references["denoiser"] = init_from_pretrained(denoiser, cfg.model.arch,
                                                      cfg.model.pretrained,
                                                      cfg.model.train_only, log=log)
    module = DiffusionTrainer(denoiser, conditioner, cfg)
    init_ref = None
    if cfg.model.init_from and checkpoint is None:  # a resumed run has it in its checkpoint
        init_ref = init_from_model(module, cfg, (source or init_source(cfg))(), log=log)
    denoiser.set_gradient_checkpointing(tc.gradient_checkpointing)
    if tc.compile:
        compile_module(denoiser)
    # On the device before the optimizer is built, so a CUDA run gets fused AdamW.
    module = module.to(device or "cpu")
    params = trainable_state(module)
    optimizer = adamw(params.values(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.99))
    ema = {k: v.detach().float().clone() for k, v in params.items()}
    if checkpoint is not None:
        if state["meta"].get("pretrained", references) != references:
            raise ValueError(f"the pretrained weights of the run in "
                             f"{str(checkpoint.parent.parent)!r} changed since "
                             f"{checkpoint.name} (paths or sha256 differ: now {references}); "
                             "restore them to resume, or start a new run")
        frozen = {name for name, p in module.named_parameters() if not p.requires_grad}
        load_checkpoint_weights(module, state, frozen, checkpoint)
        ema = {k: v.float() for k, v in state["ema"].items()}
        init_ref = state["meta"].get("init_from")
    return module, optimizer, ema, references, init_ref


def make_accelerator(tc: TrainConfig, out: Path, device: str | None, resume_step: int = 0):
    """One Accelerator on the device asked for (an absent device fails here, not silently),
    with the trackers ``train.report_to`` names."""
    wanted = pick_device(device)
    accelerator = Accelerator(
        cpu=wanted.type == "cpu",
        mixed_precision=mixed_precision_for(tc.mixed_precision, wanted.type),
        gradient_accumulation_steps=tc.grad_accum,
        log_with=accelerate_trackers(tc.report_to, out, resume_step),
        project_dir=str(out),
        # The learned null condition is unused in steps where no text is dropped.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    if device not in (None, "auto") and accelerator.device.type != wanted.type:
        raise ValueError(f"--device {device!r} asked for, but accelerate runs on "
                         f"{accelerator.device}; use --device auto or "
                         f"{accelerator.device.type}")
    if wanted.index is not None and accelerator.num_processes == 1 and wanted.index != (
            accelerator.device.index or 0):
        raise ValueError(f"--device {device!r}: pick a GPU with CUDA_VISIBLE_DEVICES={wanted.index}"
                         " and --device cuda")
    return accelerator


def pretrained_references(cfg: Config, autoencoder: nn.Module | None) -> dict[str, Any]:
    """Path + sha256 of the frozen pretrained files a run uses outside its model folder (a
    local text encoder folder, a diffusers VAE); the denoiser's is added when it loads."""
    refs: dict[str, Any] = {}
    if cfg.text.encoder != "bytes" and Path(cfg.text.encoder).expanduser().is_dir():
        refs["text_encoder"] = reference(cfg.text.encoder)
    if getattr(autoencoder, "reference", None) is not None:
        refs["autoencoder"] = autoencoder.reference
    return refs


def init_source(cfg: Config) -> Callable[[], ModelFolder]:
    """The ``model.init_from`` folder of a run, resolved (read and verified) the first time it
    is asked for: the denoiser and, in a latent run, the autoencoder start from one reading."""
    return functools.cache(lambda: resolve_model(cfg.model.init_from))


def prepare_autoencoder(cfg: Config, out: Path, cache: Any, train_idx: list[int],
                        device: torch.device, progress: bool, quiet: bool = True,
                        log=None, source: Callable[[], ModelFolder] | None = None
                        ) -> tuple[nn.Module, dict]:
    """The run's frozen autoencoder: ``latent.autoencoder`` if named, else ``out/autoencoder``
    from an earlier start of this run, else trained now (counted in the run's minutes)."""
    lc, folder = cfg.latent, out / "autoencoder"
    if lc.autoencoder is not None:
        ae = load_autoencoder(lc.autoencoder, lc)
        return ae.to(device), {"facts": {"from": str(lc.autoencoder)}}
    if (folder / AUTOENCODER_INFO).is_file():
        facts = json.loads((folder / AUTOENCODER_INFO).read_text())
        return load_autoencoder(folder, lc).to(device), {"facts": facts}
    torch.manual_seed(cfg.train.seed)
    ae, decoder_only = build_autoencoder(lc), False
    if cfg.model.init_from:  # the latent space the loaded denoiser learned in
        model = (source or init_source(cfg))()
        ae, decoder_only = source_autoencoder(cfg, model)
        if not decoder_only:
            facts = {"from": str(cfg.model.init_from)}
            refit = (model.info.autoencoder or {}).get("decoder_refit")
            if refit:  # its decoder was refitted (text2sign refit-decoder): the record goes along
                facts["decoder_refit"] = refit
            return ae.to(device), {"facts": facts}
    budget = cfg.train.max_minutes
    facts = train_autoencoder(ae, cache, train_idx, lc, device=device, seed=cfg.train.seed,
                              max_seconds=None if budget is None else budget * 30,  # half of it
                              progress=progress, decoder_only=decoder_only, log=log)
    if decoder_only:
        facts["inflated_from"] = str(cfg.model.init_from)
    save_autoencoder(folder, ae, lc, facts)
    if not quiet:
        print(f"autoencoder: {facts['steps']} steps in {facts['seconds']:.0f} s, "
              f"L1 {facts['l1']:.4f}; saved to {folder}")
    return ae.eval(), {"facts": facts, "minutes_this_run": facts["seconds"] / 60}


@contextlib.contextmanager
def started_run(cfg: Config, out: Path, resume: bool | str | Path, device: str | None
                ) -> Iterator[tuple[Any, Path | None, dict | None]]:
    """(accelerator, checkpoint, state) of a run starting or resuming in ``out`` (training and
    distillation), with the run folder locked, what a killed run left half-written cleaned, and
    a full disk said with the last good checkpoint."""
    checkpoint, state = load_resume(out, resume)
    tracker_names(cfg.train.report_to)  # a missing W&B fails before any work
    accelerator = make_accelerator(cfg.train, out, device,
                                   resume_step=state["meta"]["step"] if state else 0)
    main = accelerator.is_main_process
    with run_lock(out) if main else contextlib.nullcontext():
        if main:
            for line in clean_leftovers(out) + clean_leftovers(out / "checkpoints"):
                print(line, file=sys.stderr)
        try:
            yield accelerator, checkpoint, state
        except Exception as err:
            if not is_disk_full(err):
                raise
            found = list_checkpoints(out)
            raise DiskFull(
                f"disk full while writing into {str(out)!r}; the last good checkpoint is "
                f"{str(found[-1]) if found else 'none'}: free space, then rerun with --resume"
            ) from err


def train(cfg: Config, out: str | Path, resume: bool | str | Path = False, progress: bool = True,
          device: str | None = None, quiet: bool | None = None,
          command: str | None = None) -> Path:
    """Train a text-conditioned video diffusion model; returns the model folder ``out/model``.

    ``progress`` shows bars; ``quiet`` (default: ``not progress``) drops the notes (the
    autoencoder's summary, attention kernels, what init-from loaded); why the run stopped is
    always said. ``command``, the command
    line, goes into the model card.

    ``cfg`` is used as given: on resume, decide it with `run_state.resume_config` first (the
    CLI does). The run folder is locked for the run; what a killed run left half-written is
    cleaned first.
    """
    out = Path(out)
    quiet = not progress if quiet is None else quiet
    with started_run(cfg, out, resume, device) as (accelerator, checkpoint, state):
        return _train(cfg, out, accelerator, checkpoint, state, progress, quiet, command)


def latent_autoencoder(cfg: Config, out: Path, cache: Any, train_idx: list[int],
                       accelerator: Any, progress: bool, quiet: bool, log=None,
                       source: Callable[[], ModelFolder] | None = None
                       ) -> tuple[nn.Module | None, dict]:
    """`prepare_autoencoder` on the main process first (the others then load what it saved);
    (None, {}) for a run in pixel space."""
    if not cfg.latent.enabled:
        return None, {}
    main = accelerator.is_main_process
    with accelerator.main_process_first():
        return prepare_autoencoder(cfg, out, cache, train_idx, accelerator.device,
                                   progress=progress and main, quiet=quiet or not main, log=log,
                                   source=source)


def prepare_models(cfg: Config, checkpoint: Path | None, state: dict | None,
                   autoencoder: nn.Module | None, accelerator: Any, quiet: bool,
                   source: Callable[[], ModelFolder] | None = None
                   ) -> tuple[nn.Module, torch.optim.Optimizer, dict[str, torch.Tensor],
                              dict[str, Any], dict[str, Any] | None]:
    """`init_training` placed by ``accelerator``: the checkpoint's optimizer state restored after
    `prepare`, the EMA on the training device."""
    module, optimizer, ema, references, init_ref = init_training(
        cfg, checkpoint, state, autoencoder, device=accelerator.device,
        log=print if accelerator.is_main_process and not quiet else None, source=source)
    module, optimizer = accelerator.prepare(module, optimizer)
    if checkpoint is not None:
        optimizer_from_tensors(optimizer, state["optimizer"], state["meta"]["optimizer"])
    ema = {k: v.to(accelerator.device) for k, v in ema.items()}
    return module, optimizer, ema, references, init_ref


def open_training_data(cfg: Config, accelerator: Any, progress: bool
                       ) -> tuple[Any, tuple[list[int], list[int], list[int]]]:
    """The run's clips and their (train, val, unseen) split; only the main process decodes, the
    others wait and open the cache."""
    with accelerator.main_process_first():
        cache = open_data(cfg.data, progress=progress and accelerator.is_main_process)
    split = cache.split_by_text(cfg.data.val_fraction, cfg.data.holdout_texts)
    if not split[0]:
        raise ValueError(f"data.val_fraction={cfg.data.val_fraction} and data.holdout_texts="
                         f"{cfg.data.holdout_texts} leave no training clips out of {len(cache)}; "
                         "lower them")
    return cache, split


def make_batches(cfg: Config, cache: Any, train_idx: list[int], sampler: Any,
                 autoencoder: nn.Module | None, accelerator: Any, progress: bool
                 ) -> tuple[Iterator[dict], Any]:
    """The training batches, and the encoder to apply to each (None: they are latents already,
    or the run is in pixel space)."""
    dataset = ClipDataset(cache, train_idx)
    if autoencoder is not None and cfg.latent.cache:  # each clip encoded once, not every step
        with accelerator.main_process_first():
            latents = latent_cache(autoencoder, cache, device=accelerator.device,
                                   progress=progress and accelerator.is_main_process)
        dataset = LatentDataset(latents, cache.texts, train_idx, cache.languages)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
        pin_memory=accelerator.device.type == "cuda", persistent_workers=cfg.data.num_workers > 0,
        prefetch_factor=cfg.data.prefetch_factor if cfg.data.num_workers > 0 else None,
    )
    encode = None  # without the latent cache, every batch is encoded on the fly
    if autoencoder is not None and not isinstance(dataset, LatentDataset):
        encode = autoencoder.encode
    return iter(loader), encode


def diverged(err: TrainingDiverged, step: int, last_saved: Path | None, tc: TrainConfig
             ) -> TrainingDiverged:
    """A diverged step, said with where the run stands and the fix."""
    return TrainingDiverged(
        f"{err} at step {step}; stopped without saving. Last good checkpoint: "
        f"{last_saved or 'none'}. Lower train.lr (now {tc.lr}) or use "
        "train.mixed_precision=no, then --resume.")


class LossWindow:
    """The steps since the last log line: their mean loss and throughput."""

    def __init__(self, global_batch: int, device: torch.device):
        self.global_batch, self.device = global_batch, device
        self.loss, self.steps, self.start = 0.0, 0, time.time()

    def add(self, loss: float) -> None:
        self.loss += loss
        self.steps += 1

    def close(self, lr: float, grad_norm: float) -> dict[str, float]:
        """The window's scalars; the next window starts now."""
        elapsed = time.time() - self.start
        scalars = {
            "train/loss": self.loss / self.steps, "train/lr": lr, "train/grad_norm": grad_norm,
            "train/clips_per_s": self.global_batch * self.steps / max(elapsed, 1e-9),
            "train/peak_memory_mb": peak_memory_mb(self.device),
        }
        self.loss, self.steps, self.start = 0.0, 0, time.time()
        return scalars


def log_scalars(scalars: dict[str, float], step: int, trackers: Trackers, pbar: Any,
                log_path: Path | None) -> None:
    """One logging interval's numbers: trackers, the progress bar and (main process) log.jsonl."""
    trackers.scalars(scalars, step)
    pbar.set_postfix(loss=f"{scalars['train/loss']:.4f}",
                     clips_s=f"{scalars['train/clips_per_s']:.1f}")
    if log_path is not None:
        append_line(log_path, json.dumps({"step": step, **scalars}))


def sample_and_evaluate(ema_pipe: Callable[[], Text2SignPipeline], tc: TrainConfig, cache: Any,
                        out: Path, step: int, finishing: bool, trackers: Trackers,
                        train_texts: list[str]) -> None:
    """The previews and the evaluation due at ``step`` (main process), each on its own pipeline
    over the EMA weights, built by ``ema_pipe`` only when due."""
    if tc.sample_every and (step % tc.sample_every == 0 or finishing):
        sample_and_log(ema_pipe(), out, step, trackers)
    if tc.eval_every and step % tc.eval_every == 0:
        pipe = ema_pipe()
        pipe.training_texts = train_texts  # seen vs unseen in the back-translation
        evaluate_and_log(pipe, cache, out, step, trackers)


def corpus_languages(cfg: Config, cache: Any) -> Config:
    """``cfg`` with ``text.languages`` from the corpus's OUT/<code>/ folders when unset (left
    unset for a corpus of ASL alone: a model of one language); a corpus with a language the
    set list lacks is refused."""
    found = sorted(set(cache.languages))
    have = cfg.text.languages
    if have is None:
        if found == [DEFAULT_LANGUAGE]:
            return cfg
        return replace(cfg, text=replace(cfg.text, languages=found))
    extra = [code for code in found if code not in have]
    if extra:
        raise ValueError(f"the corpus {cfg.data.path} has clips in {', '.join(extra)}, which "
                         f"text.languages={have} lacks; a model's languages are fixed when it is "
                         "made: train a new model (--out) on this corpus, or leave those folders "
                         "out")
    return cfg


def begin_run(cfg: Config, out: Path, accelerator: Any, progress: bool
              ) -> tuple[Config, Any, tuple[list[int], list[int], list[int]], list[str],
                         Trackers]:
    """What every run does first: the CUDA settings, its clips and their (train, val, unseen)
    split, its languages (`corpus_languages`), the training texts, config.yaml and the
    trackers."""
    check_distribution(accelerator.distributed_type)
    enable_tf32(accelerator.device)
    cache, split = open_training_data(cfg, accelerator, progress)
    cfg = corpus_languages(cfg, cache)
    train_texts = sorted({cache.texts[i] for i in split[0]})
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.yaml")
    accelerator.init_trackers("text2sign", config=flat_hparams(cfg))
    return (cfg, cache, split, train_texts,
            Trackers(accelerator, tracker_names(cfg.train.report_to), out))


def training_batches(cfg: Config, cache: Any, train_idx: list[int], step: int,
                     state: dict | None, autoencoder: nn.Module | None, accelerator: Any,
                     progress: bool) -> tuple[Iterator[dict], Any, dict | None]:
    """The batches from ``step`` on (continuing the checkpoint's data order, which is checked),
    the encoder to apply to each (see `make_batches`), and the data order a checkpoint records
    (length buckets only)."""
    tc = cfg.train
    sampler = make_sampler(cache, train_idx, tc, accelerator.num_processes,
                           accelerator.process_index, start=step * tc.grad_accum,
                           saved=state["meta"].get("data_order") if state else None)
    batches, encode = make_batches(cfg, cache, train_idx, sampler, autoencoder, accelerator,
                                   progress)
    return batches, encode, sampler.state() if isinstance(sampler, LengthBucketSampler) else None


@dataclass
class Job:
    """What `run_loop` drives, set up by `train` (the denoising loss) or `distill` (the
    consistency loss): the same steps, checkpoints, logs, previews, evaluations and stops."""

    module: nn.Module  # prepared by accelerate; its forward is the loss
    optimizer: Any  # accelerate's wrapper (``.optimizer``: the torch one)
    ema: dict[str, torch.Tensor]  # fp32 EMA of ``live``, on the training device
    live: dict[str, torch.Tensor]  # the trainable parameters the EMA follows
    batches: Iterator[dict]
    encode: Any  # clips -> latents on the fly, or None
    save: Callable[[int, float], Path]  # (step, minutes) -> the checkpoint written (main only)
    pipeline: Callable[[], Text2SignPipeline]  # over the EMA weights: previews and evaluation
    step: int = 0  # the step to start from (a resumed run's)
    minutes_before: float = 0.0  # minutes spent before this start (a resumed run's, the AE's)
    checkpoint: Path | None = None  # the checkpoint resumed from
    before_step: Callable[[], None] | None = None  # distillation: the target takes the EMA
    probe_attention: bool = False  # say which attention kernels the first step ran
    name: str | None = None  # the progress bar's label


def run_loop(job: Job, cfg: Config, out: Path, accelerator: Any, trackers: Trackers,
             cache: Any, train_texts: list[str], progress: bool, quiet: bool) -> Path:
    """The training loop of every run, read top to bottom: the LR, one step, the logs, the
    checkpoint, the previews and evaluation, and the stops (max_steps, max_minutes, Ctrl-C);
    returns the model folder ``out/model``."""
    tc = cfg.train
    main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    step, minutes_before = job.step, job.minutes_before
    last_saved, log_path = job.checkpoint, out / "log.jsonl"
    if main:
        keep_log(log_path, step if job.checkpoint is not None else 0)
    pbar = tqdm(total=tc.max_steps, initial=step, disable=not (progress and main),
                unit="step", dynamic_ncols=True, desc=job.name)
    started, first_step = time.time(), step
    window = LossWindow(tc.batch_size * world * tc.grad_accum, accelerator.device)
    probe_attention = job.probe_attention
    with StopRequest() as stop:
        while step < tc.max_steps:
            lr = lr_at(step, tc, minutes_before + (time.time() - started) / 60)
            for group in job.optimizer.param_groups:
                group["lr"] = lr
            if job.before_step is not None:
                job.before_step()

            probe = recorded_attention_kernels() if probe_attention else nullcontext()
            try:
                with probe as kernels:
                    batch_iter = micro_batches(job.batches, tc, step, rank, accelerator,
                                               job.encode)
                    result = train_step(job.module, job.optimizer, accelerator, batch_iter,
                                        grad_clip=tc.grad_clip, ema=job.ema, live=job.live,
                                        ema_decay=ema_decay_at(step, tc.ema_decay))
            except TrainingDiverged as err:
                pbar.close()
                raise diverged(err, step, last_saved, tc) from None
            if probe_attention and main and not quiet:
                pbar.write(describe_kernels(kernels, accelerator.device))
            probe_attention = False
            window.add(result.loss)
            step += 1
            minutes = minutes_before + (time.time() - started) / 60
            pbar.total = expected_last_step(step, tc, minutes,
                                            (step - first_step) / max(minutes - minutes_before,
                                                                      1e-9))
            pbar.update(1)
            if (tc.log_every and step % tc.log_every == 0) or step == tc.max_steps:
                log_scalars(window.close(lr, result.grad_norm), step, trackers, pbar,
                            log_path if main else None)
            out_of_time = tc.max_minutes is not None and minutes >= tc.max_minutes
            finishing = step == tc.max_steps or out_of_time or stop.requested
            # Save before sampling: a sampling or evaluation failure must not lose the step.
            if (tc.checkpoint_every and step % tc.checkpoint_every == 0) or finishing:
                if main:
                    last_saved = job.save(step, minutes)
                accelerator.wait_for_everyone()
            if main:
                sample_and_evaluate(job.pipeline, tc, cache, out, step, finishing, trackers,
                                    train_texts)
            if out_of_time or stop.requested:
                reason = "time budget reached" if out_of_time else "stopped by Ctrl-C"
                if main:
                    print(f"{reason} at step {step}; resume with --resume (saved {last_saved})")
                break
    pbar.total = step  # where it stopped: a full bar
    pbar.refresh()
    pbar.close()
    trackers.close()
    accelerator.end_training()
    return out / "model"


def _train(cfg: Config, out: Path, accelerator: Any, checkpoint: Path | None,
           state: dict | None, progress: bool, quiet: bool, command: str | None) -> Path:
    cfg, cache, (train_idx, val_idx, unseen_idx), train_texts, trackers = begin_run(
        cfg, out, accelerator, progress)
    duration = fit_duration(cache, train_idx, cfg)

    # --- the frame autoencoder of a latent run: trained once by the main process, then frozen
    source = init_source(cfg)  # the model.init_from folder, read once if either start needs it
    autoencoder, ae_meta = latent_autoencoder(cfg, out, cache, train_idx, accelerator, progress,
                                              quiet, log=trackers.scalars, source=source)

    # --- models, optimizer, EMA: fresh, or the checkpoint's
    module, optimizer, ema, references, init_ref = prepare_models(
        cfg, checkpoint, state, autoencoder, accelerator, quiet, source)
    raw = accelerator.unwrap_model(module)
    step, minutes_before = (0, ae_meta.get("minutes_this_run", 0.0)) if state is None else (
        state["meta"]["step"], state["meta"].get("minutes", 0.0))
    check_lengths(raw.denoiser, cache, train_idx, cfg)
    batches, encode, data_order = training_batches(cfg, cache, train_idx, step, state,
                                                   autoencoder, accelerator, progress)
    facts = model_facts(raw, cache, train_idx, val_idx, unseen_idx, cfg, ae_meta)
    facts = replace(facts, command=command, device=describe_device(accelerator.device),
                    pretrained=references or {}, init_from=init_ref or None)

    def save(step: int, minutes: float) -> Path:
        return save_checkpoint(out, cfg, raw, ema, optimizer.optimizer, step, minutes, facts,
                               autoencoder, train_texts, data_order=data_order,
                               duration=duration)

    job = Job(module, optimizer, ema, trainable_state(raw), batches, encode, save,
              pipeline=lambda: ema_pipeline(raw, ema, cfg, autoencoder, duration), step=step,
              minutes_before=minutes_before, checkpoint=checkpoint,
              probe_attention=not cfg.train.compile)  # dynamo would trace the probe
    return run_loop(job, cfg, out, accelerator, trackers, cache, train_texts, progress, quiet)
