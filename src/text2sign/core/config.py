"""Run configuration: nested dataclasses, named presets, YAML round trip and dotted overrides."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin, get_type_hints

import yaml

from text2sign.core.files import DamagedFile, write_text_atomic

# "lcm": the few-step sampler of a distilled student (text2sign distill), one evaluation a step
Sampler = Literal["ddpm", "ddim", "dpm++", "lcm"]
SAMPLERS = get_args(Sampler)
VAL_FRACTION = 0.1  # held-out clips per corpus: training, recognizers and evaluation agree
MAX_FRAMES = 1024
# What one clip may ask of a sampler or a training step: frames x side x side pixels.
MAX_CLIP_PIXELS = 256 * 1024 * 1024


def limits(low: float | None, high: float | None, what: str, open_end: str | None = None
           ) -> dict[str, Any]:
    """A numeric field's inclusive bounds (None: unbounded), as field metadata; ``open_end``
    "low" or "high" excludes that bound (a learning rate of 0 trains nothing, decay 1 freezes).
    The upper bounds cap what a config (also a downloaded model folder's config.json) may ask a
    machine for: generous for training, far below sizes that would allocate terabytes."""
    return {"limits": (low, high, what, open_end)}


class Section:
    """Base of the config sections: each field is checked against its type (a ``Literal`` names
    the allowed values) and its ``limits``, once, when the section is made."""

    name: ClassVar[str]

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            key = f"{self.name}.{f.name}"
            value = _coerce(key, getattr(self, f.name), hints[f.name], f.type)
            object.__setattr__(self, f.name, value)
            if "limits" in f.metadata:
                check_range(value, f.metadata["limits"], key)


def _coerce(key: str, value: Any, kind: Any, written: str) -> Any:
    """Check a value against its field's type; YAML reads `1e-4` as a string, so numbers written
    that way are converted rather than silently kept as text."""
    args = get_args(kind)
    if get_origin(kind) is Literal:
        if value not in args or isinstance(value, bool) != isinstance(args[0], bool):
            raise ValueError(f"{key}={value!r} is not one of {list(args)}")
        return args[args.index(value)]  # YAML's 4.0 is the choice 4
    if type(None) in args:  # X | None
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
    try:
        if kind is float and not isinstance(value, bool):
            return float(value)
        if kind is int and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
    except (TypeError, ValueError, OverflowError):
        pass
    if get_origin(kind) is list and isinstance(value, list):
        wrong = [v for v in value if not isinstance(v, str)]
        if wrong:  # YAML reads yes/no/on/off as booleans and 1 as a number
            raise ValueError(f"config {key} holds {wrong!r}, which are not texts; quote them in "
                             f"YAML (e.g. - \"{str(wrong[0]).lower()}\")")
        return value
    if isinstance(value, get_origin(kind) or kind) and kind not in (int, float):
        return value
    raise ValueError(f"config {key}={value!r} should be of type {written}")


def check_range(value: Any, bounds: tuple, name: str) -> None:
    """``value`` within ``bounds`` (see `limits`), else a ValueError naming both."""
    low, high, what, open_end = bounds
    if value is None:
        return
    bad = not math.isfinite(value)
    bad = bad or (low is not None and (value < low or (open_end == "low" and value == low)))
    bad = bad or (high is not None and (value > high or (open_end == "high" and value == high)))
    if bad:
        shown = f"{'>' if open_end == 'low' else '>='} {low:g}" if low is not None else ""
        if high is not None:
            shown += f"{' and ' if shown else ''}{'<' if open_end == 'high' else '<='} {high:g}"
        raise ValueError(f"{name}={value!r} is out of range: expected {what} ({shown})")


@dataclass
class DataConfig(Section):
    name: ClassVar[str] = "data"
    path: str = "data/asl-letters"  # a folder of NAME.gif + NAME.txt, or a prepared cache
    frames: int = field(default=16, metadata=limits(1, MAX_FRAMES, "a positive frame count"))
    size: int = field(default=64, metadata=limits(1, 2048, "a positive frame side in pixels"))
    # "resample" uniformly over the clip, or "truncate" (pad by repeat), to `frames` frames; or
    # "fps": every clip keeps its own length at `fps` frames a second, up to `max_frames`
    time_mode: Literal["resample", "truncate", "fps"] = "resample"
    # The frame rate of the "fps" mode. 6.25 fps gives the demo corpus's signers (~1.5 letters
    # a second) about 4 frames a letter: "go" 10 frames, "christopher" 44.
    fps: float = field(default=6.25, metadata=limits(0.1, 120, "frames per second"))
    # The most frames a clip gets in the "fps" mode (longer clips are squeezed to it) and the
    # most a model may be asked to sample from its duration model.
    max_frames: int = field(default=96, metadata=limits(1, MAX_FRAMES, "a positive frame count"))
    fit: Literal["crop", "letterbox"] = "crop"  # crop: resize short side, center-crop
    val_fraction: float = field(default=VAL_FRACTION, metadata=limits(
        0, 1, "a fraction of the clips", "high"))
    # Fraction of the distinct texts of 2+ characters never trained on (chosen by a stable hash
    # of the text): the unseen texts that evaluation reports apart. Single characters are the
    # alphabet every other text is spelled with, so they are never held out.
    holdout_texts: float = field(default=0.0, metadata=limits(
        0, 1, "the fraction of distinct texts never trained on", "high"))
    cache: str | None = None  # where the prepared cache lives; default: next to the data
    num_workers: int = field(default=0, metadata=limits(
        0, 256, "0 (load in the main process) or more workers"))
    # batches each loader worker prepares ahead (num_workers > 0)
    prefetch_factor: int = field(default=2, metadata=limits(1, None, "1 or more batches"))


@dataclass
class TextConfig(Section):
    name: ClassVar[str] = "text"
    encoder: str = "bytes"  # "bytes" (trained from scratch) or a Hugging Face name / local folder
    dim: int = field(default=128, metadata=limits(1, 16384, "a positive width"))
    layers: int = field(default=2, metadata=limits(0, 256, "0 or more layers"))
    heads: int = field(default=4, metadata=limits(1, 1024, "1 or more heads"))
    max_length: int = field(default=32, metadata=limits(1, 8192, "a positive token count"))
    lowercase: bool = False  # case-fold texts before encoding (fingerspelling has no case)
    # The sign languages a model signs (codes, e.g. [ase, gsg, ukl]): each clip's language is
    # an input beside the timestep. None: one language. Training fills it from the corpus's
    # OUT/<code>/ folders.
    languages: list[str] | None = None


@dataclass
class ModelConfig(Section):
    name: ClassVar[str] = "model"
    arch: str = "unet3d"
    preset: str = "small"
    params: dict[str, Any] = field(default_factory=dict)  # the architecture's full config
    # Start from pretrained weights: a diffusers UNet2DConditionModel folder (unet-motion) or a
    # DiT checkpoint (dit3d); "temporal" trains only what the file does not provide.
    pretrained: str | None = None
    train_only: Literal["all", "temporal"] = "all"
    # Start from a text2sign model folder: every denoiser / text tensor whose name and shape fit
    # (fine-tuning on new clips; a words model from a letters model), and its latent space.
    init_from: str | None = None


@dataclass
class LatentConfig(Section):
    """Diffuse in the latent space of a per-frame autoencoder (Rombach et al. 2022)."""

    name: ClassVar[str] = "latent"
    enabled: bool = False
    autoencoder: str | None = None  # reuse a trained one (a latent model or run folder)
    channels: int = field(default=4, metadata=limits(1, 1024, "1 or more latent channels"))
    factor: Literal[2, 4, 8] = 4  # spatial downsampling
    width: int = field(default=64, metadata=limits(1, 4096, "1 or more autoencoder channels"))
    # 2: frames are average-pooled 2x before the encoder, so a run at twice the frame size of
    # model.init_from shares its latent space (its encoder, a decoder fine-tuned at full size)
    prescale: int = 1
    # autoencoder training steps, before the denoiser's
    steps: int = field(default=1500, metadata=limits(1, None, "1 or more steps"))
    batch_size: int = field(default=32, metadata=limits(1, None, "1 or more frames"))  # frames
    lr: float = field(default=1e-3, metadata=limits(0, None, "a positive learning rate", "low"))
    kl_weight: float = field(default=1e-5, metadata=limits(0, None, "0 or a positive weight"))
    cache: bool = True  # encode every clip once (latents-*.f16 beside the clip cache)


@dataclass
class DiffusionConfig(Section):
    name: ClassVar[str] = "diffusion"
    num_train_timesteps: int = field(default=1000, metadata=limits(
        2, 100000, "2 to 100000 timesteps"))
    # Stable Diffusion's betas are "scaled_linear"
    beta_schedule: Literal["linear", "cosine", "scaled_linear"] = "cosine"
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"
    # min-SNR-gamma (Hang et al. 2023); off by default: with v-prediction its weight
    # min(SNR, gamma) / (SNR + 1) vanishes at high noise, where sampling starts.
    min_snr_gamma: float | None = field(default=None, metadata=limits(
        0, None, "null (off) or a positive gamma", "low"))
    # probability of training on the null condition
    cfg_dropout: float = field(default=0.1, metadata=limits(
        0, 1, "a probability", "high"))
    null_condition: Literal["learned", "empty"] = "learned"  # empty: the encoding of ""


@dataclass
class SampleConfig(Section):
    name: ClassVar[str] = "sample"
    sampler: Sampler = "dpm++"
    steps: int = field(default=25, metadata=limits(1, 10000, "1 or more sampler steps"))
    guidance: float = field(default=3.0, metadata=limits(
        0, 100, "a guidance scale in [0, 100] (1 = no guidance)"))
    eta: float = field(default=0.0, metadata=limits(0, 1, "a DDIM eta in [0, 1]"))
    prompts: list[str] = field(default_factory=lambda: ["A", "B", "L", "Y"])


DISTILL_STEPS = (1, 2, 4)  # the few-step counts a student may be distilled for


@dataclass
class DistillConfig(Section):
    """A student distilled from a teacher model folder (text2sign distill): latent consistency
    distillation with guidance folded in (Luo et al. 2023, LCM; Meng et al. 2023)."""

    name: ClassVar[str] = "distill"
    # the student's sampler steps (1, 2 or 4); null: an ordinary model, not a student
    steps: int | None = None
    teacher: str | None = None  # the teacher model folder
    # a student to start from instead of the teacher's weights (a student of an earlier
    # teacher that this teacher was trained on from: a warm start); null: the teacher's weights
    student_from: str | None = None
    method: Literal["lcm"] = "lcm"
    # the classifier-free guidance scales the student learns, drawn uniformly per clip
    guidance_min: float = field(default=1.0, metadata=limits(0, 100, "a guidance scale"))
    guidance_max: float = field(default=6.0, metadata=limits(0, 100, "a guidance scale"))
    # the teacher's ODE solver step: "ddim" (Song et al. 2021), as the LCM paper
    solver: Literal["ddim"] = "ddim"
    # LCM's skipping-step grid: the student learns on this many timesteps N // grid apart (50:
    # k = 20 of 1000, the paper's); fewer, longer teacher steps propagate in fewer steps
    grid: int = field(default=50, metadata=limits(1, 1000, "1 to 1000 timesteps"))


def _every(default: int, what: str) -> Any:
    return field(default=default, metadata=limits(0, None, what))


@dataclass
class TrainConfig(Section):
    name: ClassVar[str] = "train"
    batch_size: int = field(default=8, metadata=limits(1, None, "1 or more clips"))
    lr: float = field(default=3e-4, metadata=limits(0, None, "a positive learning rate", "low"))
    weight_decay: float = field(default=0.01, metadata=limits(
        0, None, "0 or a positive weight decay"))
    warmup_steps: int = field(default=200, metadata=limits(0, None, "0 or more steps"))
    max_steps: int = field(default=20000, metadata=limits(1, None, "1 or more steps"))
    # stop (and save) after this much wall-clock time
    max_minutes: float | None = field(default=None, metadata=limits(
        0, None, "null (no limit) or a positive number of minutes", "low"))
    grad_clip: float = field(default=1.0, metadata=limits(
        0, None, "a positive gradient norm", "low"))
    grad_accum: int = field(default=1, metadata=limits(1, None, "1 or more micro-batches"))
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    ema_decay: float = field(default=0.999, metadata=limits(
        0, 1, "an EMA decay in [0, 1), e.g. 0.999", "high"))
    gradient_checkpointing: bool = False
    compile: bool = False  # torch.compile the denoiser (pays off on a GPU after the first steps)
    seed: int = 0
    log_every: int = _every(10, "0 (off) or a step interval")
    sample_every: int = _every(1000, "0 (off) or a step interval")
    checkpoint_every: int = _every(500, "0 (only at the end) or a step interval")
    keep_checkpoints: int = _every(3, "0 (keep all) or a number of checkpoints")
    eval_every: int = _every(0, "0 (off) or a step interval")
    eval_per_text: int = field(default=2, metadata=limits(1, None, "1 or more clips per text"))
    # A corpus of several sign languages: each language's share of an epoch's clips is
    # proportional to (its clips) ** language_alpha. null: as the corpus holds them; 0.5: a small
    # alphabet drawn more often (its clips repeated), a large one less (each epoch a new subset);
    # 0: every language alike.
    language_alpha: float | None = field(default=None, metadata=limits(
        0, 1, "null or an exponent in [0, 1], e.g. 0.5"))
    # trackers: "tensorboard", "wandb", "all" or "none"
    report_to: Literal["tensorboard", "wandb", "all", "none"] = "tensorboard"


# What `--resume` may change: settings that touch neither the model nor the data it trains on
# (limits, trackers and logging, checkpoint and evaluation cadence, how previews are sampled).
RESUMABLE = (
    "train.max_steps", "train.max_minutes", "train.report_to", "train.log_every",
    "train.sample_every", "train.checkpoint_every", "train.keep_checkpoints", "train.eval_every",
    "train.eval_per_text", "sample.sampler", "sample.steps", "sample.guidance", "sample.eta",
    "sample.prompts",
)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self) -> None:
        validate(self)  # also for copies made by dataclasses.replace

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, self.to_yaml())

    def settings(self) -> dict[str, Any]:
        """Every setting by its dotted name (``train.lr``; ``model.params`` as one value)."""
        return {f"{section}.{key}": value for section, fields in self.to_dict().items()
                for key, value in fields.items()}


# Whole-run presets: each names a denoiser preset and adjusts sizes and training defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {  # tests: seconds on a CPU
        "data": {"frames": 4, "size": 16},
        "text": {"dim": 32, "layers": 1, "heads": 2, "max_length": 16},
        "model": {"preset": "tiny"},
        "train": {"batch_size": 2, "max_steps": 4, "warmup_steps": 1, "log_every": 1,
                  "sample_every": 0, "checkpoint_every": 2, "ema_decay": 0.9},
        "sample": {"steps": 2, "prompts": ["A", "B"]},
    },
    # CPU / laptop: latent diffusion, the recipe of the letters demo model (top-1 0.942 after
    # 65 CPU minutes, against 0.288 for the same denoiser in pixel space after 70).
    "small": {
        "latent": {"enabled": True, "channels": 8, "factor": 4, "width": 32, "steps": 800},
        "model": {"params": {"stem": 1}},  # the latents are already 16x16
        "train": {"lr": 4e-4, "warmup_steps": 100, "ema_decay": 0.995},
    },
    "small-pixel": {},  # the same denoiser in pixel space, behind its 4x space-to-depth stem
    "base": {  # one GPU
        "data": {"frames": 16, "size": 64},
        "text": {"dim": 256, "layers": 4, "heads": 4, "max_length": 64},
        "model": {"preset": "base"},
        "train": {"batch_size": 32, "lr": 2e-4, "max_steps": 100000, "ema_decay": 0.9999,
                  "sample_every": 2000, "checkpoint_every": 2000},
    },
    "large": {  # several GPUs
        "data": {"frames": 28, "size": 128},
        "text": {"dim": 512, "layers": 6, "heads": 8, "max_length": 64},
        "model": {"preset": "large"},
        "train": {"batch_size": 16, "lr": 1e-4, "max_steps": 300000, "ema_decay": 0.9999,
                  "gradient_checkpointing": True, "sample_every": 5000,
                  "checkpoint_every": 5000},
    },
}


def _merge(base: dict[str, Any], update: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base``; unknown keys are errors, not silent."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{where}{key}"
        if key not in out:
            raise ValueError(
                f"unknown config key {path!r}; known keys here: {sorted(out)}"
            )
        if isinstance(out[key], dict) and isinstance(value, dict) and key != "params":
            out[key] = _merge(out[key], value, where=f"{path}.")
        elif key == "params" and isinstance(value, dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def from_dict(raw: dict[str, Any]) -> Config:
    """Build a Config from plain data (YAML), rejecting unknown keys with the allowed ones."""
    merged = _merge(Config().to_dict(), raw or {})
    sections = {
        "data": DataConfig, "text": TextConfig, "model": ModelConfig,
        "latent": LatentConfig, "diffusion": DiffusionConfig, "sample": SampleConfig,
        "train": TrainConfig, "distill": DistillConfig,
    }
    return Config(**{name: cls(**merged[name]) for name, cls in sections.items()})


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value the way YAML would (numbers, booleans, null, lists)."""
    return yaml.safe_load(text)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings (``model.params.channels=64`` reaches arch params)."""
    raw = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value; e.g. --set train.lr=1e-4")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node: dict[str, Any] = {}
        update = node
        for part in parts[:-1]:
            node[part] = {}
            node = node[part]
        parsed = parse_value(value)
        current: Any = raw
        for part in parts:
            current = current.get(part) if isinstance(current, dict) else None
        if isinstance(current, str) and isinstance(parsed, bool | int | float):
            parsed = value.strip()  # a text setting keeps the text: mixed_precision=no, path=2024
        node[parts[-1]] = parsed
        raw = _merge(raw, update)
    return from_dict(raw)


def compose(preset: str | None = "small", config_file: str | Path | None = None,
            overrides: list[str] | None = None, base: Config | None = None) -> Config:
    """Preset, then YAML file, then ``--set`` overrides, validated; `build.resolve_config` (which
    `build.build_config` applies) then fills in the architecture's parameters. ``base``, a run's
    own config, is what they change on ``--resume`` (no preset: None)."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    raw = (base or Config()).to_dict()
    if preset is not None:
        raw = _merge(raw, PRESETS[preset])
    if config_file is not None:
        loaded = read_yaml(config_file, "fix it, or write a full one with "
                                        "`text2sign config > FILE.yaml`")
        raw = _merge(raw, loaded)
    cfg = from_dict(raw)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg


def read_yaml(path: str | Path, fix: str) -> dict[str, Any]:
    """The mapping of sections a config file holds; a damaged or empty file names itself."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DamagedFile(f"config file {str(path)!r} is not valid YAML ({first}); {fix}") from err
    if not isinstance(loaded, dict) or not loaded:
        what = "is empty" if not loaded else "does not hold a mapping of sections"
        raise DamagedFile(f"config file {str(path)!r} {what}; {fix}")
    return loaded


def load_config(path: str | Path,
                fix: str = "fix it, or write a full one with `text2sign config > FILE.yaml`"
                ) -> Config:
    return from_dict(read_yaml(path, fix))


def check_clip(frames: int, size: int, what: str = "data.frames") -> None:
    """A clip length and side within the caps (sampling may ask for other frames than trained)."""
    check_range(frames, _limits(DataConfig, "frames"), what)
    if frames * size ** 2 > MAX_CLIP_PIXELS:
        raise ValueError(f"{what}={frames} x data.size={size}^2 asks for more than "
                         f"{MAX_CLIP_PIXELS} pixels per clip; use fewer frames or a smaller size")


def _limits(section: type, key: str) -> tuple:
    return next(f for f in dataclasses.fields(section) if f.name == key).metadata["limits"]


# Caps on a denoiser's parameters (per-architecture checks live in the models): building a
# module of 10^4 blocks takes minutes even on the meta device, so counts are capped by name.
_PARAM_COUNT_CAPS = {"num_res_blocks": 64, "depth": 256, "layers_per_block": 64}
_PARAM_INT_CAP, _PARAM_LIST_CAP = 65536, 16


def _check_model_params(params: dict[str, Any]) -> None:
    for key, value in params.items():
        name = f"model.params.{key}"
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and len(value) > _PARAM_LIST_CAP:
            raise ValueError(f"{name} has {len(value)} entries; at most {_PARAM_LIST_CAP}")
        cap = _PARAM_COUNT_CAPS.get(key, _PARAM_INT_CAP)
        for v in values:
            if isinstance(v, int | float) and not isinstance(v, bool) and not (
                    math.isfinite(v) and -cap <= v <= cap):
                raise ValueError(f"{name}={value!r} is out of range: at most {cap}")


def validate_sample(sc: SampleConfig) -> None:
    """The rule between sampling settings (also for per-call choices of a pipeline); each value
    alone was checked when ``sc`` was made."""
    if sc.eta != 0 and sc.sampler != "ddim":
        raise ValueError(f"sample.eta={sc.eta} only applies to the DDIM sampler, this one is "
                         f"{sc.sampler!r}; set sample.sampler=ddim or sample.eta=0")


def validate_student(sc: SampleConfig, dc: DistillConfig) -> None:
    """A student samples with "lcm" in at most the steps it was distilled for; a model that is no
    student cannot use "lcm"."""
    if dc.steps is None:
        if sc.sampler == "lcm":
            raise ValueError("sampler 'lcm' samples a distilled student; this model is not one: "
                             "use ddpm, ddim or dpm++, or distil it with `text2sign distill`")
        return
    if sc.sampler != "lcm":
        raise ValueError(f"sampler {sc.sampler!r} does not fit a student distilled for 'lcm' "
                         f"sampling; use sampler lcm, or sample its teacher {dc.teacher!r}")
    if sc.steps > dc.steps:
        raise ValueError(f"steps={sc.steps}: this student was distilled for {dc.steps} step(s); "
                         f"use 1 to {dc.steps}, or sample its teacher {dc.teacher!r} for more")
    if not dc.guidance_min <= sc.guidance <= dc.guidance_max:
        raise ValueError(f"guidance={sc.guidance:g}: this student was taught guidance "
                         f"{dc.guidance_min:g} to {dc.guidance_max:g}; choose a scale in that "
                         f"range, or sample its teacher {dc.teacher!r}")


def validate(cfg: Config) -> None:
    """The settings that depend on each other, checked whenever a `Config` is made (each field
    alone was checked when its section was made): a bad value fails here, not mid-run."""
    validate_sample(cfg.sample)
    validate_student(cfg.sample, cfg.distill)
    dc = cfg.distill
    if dc.steps is not None and dc.steps not in DISTILL_STEPS:
        raise ValueError(f"distill.steps={dc.steps} is not one of {list(DISTILL_STEPS)}")
    if dc.steps is not None and dc.steps > dc.grid:
        raise ValueError(f"distill.steps={dc.steps} needs distill.grid >= {dc.steps} (now "
                         f"{dc.grid}); raise the grid")
    if dc.guidance_min > dc.guidance_max:
        raise ValueError(f"distill.guidance_min={dc.guidance_min} is above distill.guidance_max="
                         f"{dc.guidance_max}; swap them")
    check_clip(cfg.data.frames, cfg.data.size)
    if cfg.data.time_mode == "fps":
        check_clip(cfg.data.max_frames, cfg.data.size, "data.max_frames")
    _check_model_params(cfg.model.params)
    if cfg.text.encoder == "bytes" and cfg.text.dim % cfg.text.heads:
        raise ValueError(f"text.dim={cfg.text.dim} is not divisible by text.heads="
                         f"{cfg.text.heads}; choose heads that divide the width")
    lc = cfg.latent
    if lc.enabled and cfg.data.size % lc.factor:
        raise ValueError(f"data.size={cfg.data.size} is not divisible by latent.factor="
                         f"{lc.factor}; use a size that is a multiple of {lc.factor}")
