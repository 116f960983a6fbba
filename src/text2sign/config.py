"""Run configuration: nested dataclasses, named presets, YAML round trip and dotted overrides."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from text2sign.files import DamagedFile, write_text_atomic

SAMPLERS = ("ddpm", "ddim", "dpm++")
VAL_FRACTION = 0.1  # held-out clips per corpus: training, recognizers and evaluation agree


@dataclass
class DataConfig:
    path: str = "data/asl-letters"  # a folder of NAME.gif + NAME.txt, or a prepared cache
    frames: int = 16
    size: int = 64
    time_mode: str = "resample"  # "resample" uniformly over the clip, or "truncate" (pad by repeat)
    fit: str = "crop"  # "crop" (resize short side, center-crop) or "letterbox"
    val_fraction: float = VAL_FRACTION
    # Fraction of the distinct texts of 2+ characters never trained on (chosen by a stable hash
    # of the text): the unseen texts that evaluation reports apart. Single characters are the
    # alphabet every other text is spelled with, so they are never held out.
    holdout_texts: float = 0.0
    cache: str | None = None  # where the prepared cache lives; default: next to the data
    num_workers: int = 0
    prefetch_factor: int = 2  # batches each loader worker prepares ahead (num_workers > 0)


@dataclass
class TextConfig:
    encoder: str = "bytes"  # "bytes" (trained from scratch) or a Hugging Face name / local folder
    dim: int = 128
    layers: int = 2
    heads: int = 4
    max_length: int = 32
    lowercase: bool = False  # case-fold texts before encoding (fingerspelling has no case)


@dataclass
class ModelConfig:
    arch: str = "unet3d"
    preset: str = "small"
    params: dict[str, Any] = field(default_factory=dict)  # the architecture's full config
    # Start from pretrained weights: a diffusers UNet2DConditionModel folder (unet-motion) or a
    # DiT checkpoint (dit3d); "temporal" trains only what the file does not provide.
    pretrained: str | None = None
    train_only: str = "all"  # "all" or "temporal"
    # Start from a text2sign model folder: every denoiser / text tensor whose name and shape fit
    # (fine-tuning on new clips; a words model from a letters model), and its latent space.
    init_from: str | None = None


@dataclass
class LatentConfig:
    """Diffuse in the latent space of a per-frame autoencoder (Rombach et al. 2022)."""

    enabled: bool = False
    autoencoder: str | None = None  # reuse a trained one (a latent model or run folder)
    channels: int = 4  # latent channels
    factor: int = 4  # spatial downsampling: 2, 4 or 8
    width: int = 64  # autoencoder channels
    # 2: frames are average-pooled 2x before the encoder, so a run at twice the frame size of
    # model.init_from shares its latent space (its encoder, a decoder fine-tuned at full size)
    prescale: int = 1
    steps: int = 1500  # autoencoder training steps, before the denoiser's
    batch_size: int = 32  # frames per autoencoder step
    lr: float = 1e-3
    kl_weight: float = 1e-5
    cache: bool = True  # encode every clip once (latents-*.f16 beside the clip cache)


@dataclass
class DiffusionConfig:
    num_train_timesteps: int = 1000
    beta_schedule: str = "cosine"  # "linear", "cosine" or "scaled_linear" (Stable Diffusion's)
    prediction_type: str = "v_prediction"  # "epsilon" or "v_prediction"
    # min-SNR-gamma (Hang et al. 2023); off by default: with v-prediction its weight
    # min(SNR, gamma) / (SNR + 1) vanishes at high noise, where sampling starts.
    min_snr_gamma: float | None = None
    cfg_dropout: float = 0.1  # probability of training on the null condition
    null_condition: str = "learned"  # "learned" or "empty" (the encoding of "")


@dataclass
class SampleConfig:
    sampler: str = "dpm++"  # "ddpm", "ddim" or "dpm++"
    steps: int = 25
    guidance: float = 3.0
    eta: float = 0.0
    prompts: list[str] = field(default_factory=lambda: ["A", "B", "L", "Y"])


@dataclass
class TrainConfig:
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    max_steps: int = 20000
    max_minutes: float | None = None  # stop (and save) after this much wall-clock time
    grad_clip: float = 1.0
    grad_accum: int = 1
    mixed_precision: str = "auto"  # "auto", "no", "fp16" or "bf16"
    ema_decay: float = 0.999
    gradient_checkpointing: bool = False
    compile: bool = False  # torch.compile the denoiser (pays off on a GPU after the first steps)
    seed: int = 0
    log_every: int = 10
    sample_every: int = 1000
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    eval_every: int = 0  # 0 disables evaluation during training
    eval_per_text: int = 2
    report_to: str = "tensorboard"  # trackers: "tensorboard", "wandb", "all" or "none"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, self.to_yaml())


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
        "train": TrainConfig,
    }
    built = {}
    for name, cls in sections.items():
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        values = merged[name].items()
        built[name] = cls(**{k: _coerce(f"{name}.{k}", v, kinds[k]) for k, v in values})
    cfg = Config(**built)
    validate(cfg)
    return cfg


def _coerce(key: str, value: Any, kind: str) -> Any:
    """Check a value against its field's type; YAML reads `1e-4` as a string, so numbers written
    that way are converted rather than silently kept as text."""
    if value is None and "None" in kind:
        return None
    base = kind.replace(" | None", "")
    try:
        if base == "float" and not isinstance(value, bool):
            return float(value)
        if base == "int" and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
    except (TypeError, ValueError):
        pass
    if base == "list[str]" and isinstance(value, list):
        wrong = [v for v in value if not isinstance(v, str)]
        if wrong:  # YAML reads yes/no/on/off as booleans and 1 as a number
            raise ValueError(f"config {key} holds {wrong!r}, which are not texts; quote them in "
                             f"YAML (e.g. - \"{str(wrong[0]).lower()}\")")
        return value
    checks = {"str": str, "bool": bool, "dict[str, Any]": dict}
    if base in checks and isinstance(value, checks[base]):
        return value
    raise ValueError(f"config {key}={value!r} should be of type {kind}")


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
        node[parts[-1]] = parse_value(value)
        raw = _merge(raw, update)
    return from_dict(raw)


def compose(preset: str = "small", config_file: str | Path | None = None,
            overrides: list[str] | None = None) -> Config:
    """Preset, then YAML file, then ``--set`` overrides, validated; `build.resolve` (which
    `build.build_config` applies) then fills in the architecture's parameters."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    raw = _merge(Config().to_dict(), PRESETS[preset])
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


_CHOICES = {
    ("data", "time_mode"): ("resample", "truncate"),
    ("data", "fit"): ("crop", "letterbox"),
    ("model", "train_only"): ("all", "temporal"),
    ("diffusion", "beta_schedule"): ("linear", "cosine", "scaled_linear"),
    ("diffusion", "prediction_type"): ("epsilon", "v_prediction"),
    ("diffusion", "null_condition"): ("learned", "empty"),
    ("sample", "sampler"): SAMPLERS,
    ("train", "mixed_precision"): ("auto", "no", "fp16", "bf16"),
    ("train", "report_to"): ("tensorboard", "wandb", "all", "none"),
}


MAX_FRAMES = 1024
# What one clip may ask of a sampler or a training step: frames x side x side pixels.
MAX_CLIP_PIXELS = 256 * 1024 * 1024

# Inclusive numeric bounds (None: unbounded) for every numeric setting. The upper bounds are
# caps on what a config (also a downloaded model folder's config.json) may ask a machine for:
# generous for training, but far below sizes that would allocate terabytes.
_RANGES: dict[tuple[str, str], tuple[float | None, float | None, str]] = {
    ("data", "frames"): (1, MAX_FRAMES, "a positive frame count"),
    ("data", "size"): (1, 2048, "a positive frame side in pixels"),
    ("data", "num_workers"): (0, 256, "0 (load in the main process) or more workers"),
    ("text", "dim"): (1, 16384, "a positive width"),
    ("text", "layers"): (0, 256, "0 or more layers"),
    ("text", "heads"): (1, 1024, "1 or more heads"),
    ("text", "max_length"): (1, 8192, "a positive token count"),
    ("latent", "channels"): (1, 1024, "1 or more latent channels"),
    ("latent", "width"): (1, 4096, "1 or more autoencoder channels"),
    ("latent", "steps"): (1, None, "1 or more steps"),
    ("latent", "batch_size"): (1, None, "1 or more frames"),
    ("latent", "lr"): (0, None, "a positive learning rate"),
    ("latent", "kl_weight"): (0, None, "0 or a positive weight"),
    ("diffusion", "num_train_timesteps"): (2, 100000, "2 to 100000 timesteps"),
    ("diffusion", "min_snr_gamma"): (0, None, "null (off) or a positive gamma"),
    ("sample", "steps"): (1, 10000, "1 or more sampler steps"),
    ("sample", "guidance"): (0, 100, "a guidance scale in [0, 100] (1 = no guidance)"),
    ("sample", "eta"): (0, 1, "a DDIM eta in [0, 1]"),
    ("train", "batch_size"): (1, None, "1 or more clips"),
    ("train", "lr"): (0, None, "a positive learning rate"),
    ("train", "weight_decay"): (0, None, "0 or a positive weight decay"),
    ("train", "warmup_steps"): (0, None, "0 or more steps"),
    ("train", "max_steps"): (1, None, "1 or more steps"),
    ("train", "max_minutes"): (0, None, "null (no limit) or a positive number of minutes"),
    ("train", "grad_clip"): (0, None, "a positive gradient norm"),
    ("train", "grad_accum"): (1, None, "1 or more micro-batches"),
    ("train", "ema_decay"): (0, 1, "an EMA decay in [0, 1), e.g. 0.999"),
    ("train", "log_every"): (0, None, "0 (off) or a step interval"),
    ("train", "sample_every"): (0, None, "0 (off) or a step interval"),
    ("train", "checkpoint_every"): (0, None, "0 (only at the end) or a step interval"),
    ("train", "keep_checkpoints"): (0, None, "0 (keep all) or a number of checkpoints"),
    ("train", "eval_every"): (0, None, "0 (off) or a step interval"),
    ("train", "eval_per_text"): (1, None, "1 or more clips per text"),
}
# Bounds that exclude the limit itself (a learning rate of 0 trains nothing, decay 1 freezes).
_OPEN = {("latent", "lr"): "low", ("train", "lr"): "low", ("train", "max_minutes"): "low",
         ("train", "grad_clip"): "low", ("diffusion", "min_snr_gamma"): "low",
         ("train", "ema_decay"): "high"}


def check_clip(frames: int, size: int, what: str = "data.frames") -> None:
    """A clip length and side within the caps (sampling may ask for other frames than trained)."""
    _check_range(("data", "frames"), frames, what)
    if frames * size ** 2 > MAX_CLIP_PIXELS:
        raise ValueError(f"{what}={frames} x data.size={size}^2 asks for more than "
                         f"{MAX_CLIP_PIXELS} pixels per clip; use fewer frames or a smaller size")


def _check_range(key: tuple[str, str], value: Any, name: str | None = None) -> None:
    low, high, what = _RANGES[key]
    if value is None:
        return
    name = name or ".".join(key)
    open_end = _OPEN.get(key)
    bad = not math.isfinite(value)
    bad = bad or (low is not None and (value < low or (open_end == "low" and value == low)))
    bad = bad or (high is not None and (value > high or (open_end == "high" and value == high)))
    if bad:
        limits = f"{'>' if open_end == 'low' else '>='} {low:g}" if low is not None else ""
        if high is not None:
            limits += f"{' and ' if limits else ''}{'<' if open_end == 'high' else '<='} {high:g}"
        raise ValueError(f"{name}={value!r} is out of range: expected {what} ({limits})")


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
    """The sampling settings alone (also for per-call choices of a pipeline)."""
    if sc.sampler not in SAMPLERS:
        raise ValueError(f"sample.sampler={sc.sampler!r} is not one of {list(SAMPLERS)}")
    for key in ("steps", "guidance", "eta"):
        _check_range(("sample", key), getattr(sc, key))
    if sc.eta != 0 and sc.sampler != "ddim":
        raise ValueError(f"sample.eta={sc.eta} only applies to the DDIM sampler, this one is "
                         f"{sc.sampler!r}; set sample.sampler=ddim or sample.eta=0")


def validate(cfg: Config) -> None:
    """Every setting, once, before any work starts: a bad value fails here, not mid-run."""
    for (section, key), allowed in _CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise ValueError(f"{section}.{key}={value!r} is not one of {list(allowed)}")
    for key in _RANGES:
        _check_range(key, getattr(getattr(cfg, key[0]), key[1]))
    validate_sample(cfg.sample)
    check_clip(cfg.data.frames, cfg.data.size)
    _check_model_params(cfg.model.params)
    if not 0.0 <= cfg.diffusion.cfg_dropout < 1.0:
        raise ValueError(f"diffusion.cfg_dropout={cfg.diffusion.cfg_dropout} must be in [0, 1)")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise ValueError(f"data.val_fraction={cfg.data.val_fraction} must be in [0, 1)")
    if not 0.0 <= cfg.data.holdout_texts < 1.0:
        raise ValueError(f"data.holdout_texts={cfg.data.holdout_texts} must be in [0, 1): the "
                         "fraction of distinct texts never trained on")
    if cfg.text.encoder == "bytes" and cfg.text.dim % cfg.text.heads:
        raise ValueError(f"text.dim={cfg.text.dim} is not divisible by text.heads="
                         f"{cfg.text.heads}; choose heads that divide the width")
    if cfg.data.num_workers < 0 or cfg.data.prefetch_factor < 1:
        raise ValueError(f"data.num_workers={cfg.data.num_workers} must be >= 0 and "
                         f"data.prefetch_factor={cfg.data.prefetch_factor} >= 1")
    lc = cfg.latent
    if lc.factor not in (2, 4, 8):
        raise ValueError(f"latent.factor={lc.factor} is not one of [2, 4, 8]")
    if lc.enabled and cfg.data.size % lc.factor:
        raise ValueError(f"data.size={cfg.data.size} is not divisible by latent.factor="
                         f"{lc.factor}; use a size that is a multiple of {lc.factor}")
