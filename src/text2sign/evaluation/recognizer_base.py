"""What the two recognizers share: clip preparation and augmentation, one wrapper (device,
save/load, the training loop, train-once caching); `recognizer.py` and `sequence.py` add a head.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from text2sign.core.device import release_freed_memory
from text2sign.core.files import atomic_dir
from text2sign.core.lr_schedule import warmup_cosine
from text2sign.data.dataset import to_uint8, to_unit


class Geometry(Protocol):
    frames: int | None  # clips are resampled to frames (None: kept) x size x size
    size: int


class FitSettings(Protocol):
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int


def conv_block(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    """Conv3d + GroupNorm + SiLU, the block both recognizers stack (stride: time, height, width)."""
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(8, cout),
        nn.SiLU(),
    )


def frame_indices(num_in: int, num_out: int) -> torch.Tensor:
    """Uniformly spaced source frame indices (nearest), the same rule as the clip cache."""
    return torch.linspace(0, num_in - 1, num_out).round().long()


def _resize_space(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, T, H, W) float -> (B, C, T, size, size): area averaging down, bilinear up."""
    b, c, t, h, w = x.shape
    if (h, w) == (size, size):
        return x
    flat = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W)
    if h >= size and w >= size:
        flat = F.interpolate(flat, size=(size, size), mode="area")
    else:
        flat = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
    return flat.reshape(b, t, c, size, size).transpose(1, 2)  # (B, C, T, size, size)


def _to_float(videos: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, T, H, W, 3) pixels or float (N, 3, T, H, W) in [-1, 1] -> float on device."""
    if isinstance(videos, np.ndarray):
        videos = torch.from_numpy(np.ascontiguousarray(videos))
    if videos.dtype == torch.uint8:
        if videos.ndim != 5 or videos.shape[-1] != 3:
            raise ValueError(
                f"uint8 videos must be (N, T, H, W, 3); got shape {tuple(videos.shape)}"
            )
        return to_unit(videos.to(device).permute(0, 4, 1, 2, 3))  # (N, 3, T, H, W)
    if videos.is_floating_point():
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise ValueError(
                "float videos must be (N, 3, T, H, W) in [-1, 1] (the model convention); got "
                f"shape {tuple(videos.shape)}; pass uint8 (N, T, H, W, 3) for pixel arrays"
            )
        return videos.to(device).float()
    raise ValueError(f"videos must be uint8 or float; got dtype {videos.dtype}")


def prepare_clips(videos: np.ndarray | torch.Tensor, frames: int | None, size: int,
                  device: torch.device) -> torch.Tensor:
    """Clips of any geometry -> float (N, 3, frames, size, size) on ``device``: frames picked
    uniformly (all of them when ``frames`` is None), space area-averaged (both recognizers'
    input)."""
    x = _to_float(videos, device)  # (N, 3, T, H, W)
    if frames is not None:
        x = x[:, :, frame_indices(x.shape[2], frames).to(x.device)]
    return _resize_space(x, size)  # (N, 3, frames, size, size)


def clip_length(video: np.ndarray | torch.Tensor) -> int:
    """Frames of one clip: uint8 (T, H, W, 3) or float (3, T, H, W)."""
    is_uint8 = video.dtype == np.uint8 or video.dtype == torch.uint8
    return int(video.shape[0] if is_uint8 else video.shape[1])


def stack_clips(videos: Sequence[np.ndarray | torch.Tensor]) -> np.ndarray | torch.Tensor:
    """Clips of one length as one batch (N, ...), numpy or torch as given."""
    if isinstance(videos[0], torch.Tensor):
        return torch.stack(list(videos))
    return np.stack([np.asarray(v) for v in videos])


def length_groups(videos: Any) -> list[list[int]]:
    """Indices of the clips of each length, in order of first appearance: a batch (N, T, ...)
    is one group, a list of clips of different lengths several."""
    if isinstance(videos, (np.ndarray, torch.Tensor)):
        return [list(range(len(videos)))]
    groups: dict[int, list[int]] = {}
    for i, video in enumerate(videos):
        groups.setdefault(clip_length(video), []).append(i)
    return list(groups.values())


KEEP_SHRUNK_BYTES = 256 * 2**20  # a corpus whose shrunk clips fit is shrunk once, then kept


class ClipSource:
    """Training clips of a cache, read and shrunk in space when a batch asks for them: memory
    is a batch, not the corpus (70,000 clips at 28 x 96 x 96 would be 54 GB held). A corpus
    whose shrunk clips take at most ``keep_bytes`` (the demo's 464 clips at 32 x 32: 28 MB) keeps
    each clip once shrunk: a recognizer's 300 steps of 32 clips then read and shrink every clip
    once instead of ~20 times (the demo's classifier trained in 55 s, 35 of them doing that).

    ``source[i]`` is clip ``indices[i]`` as uint8 (T, S, S, 3); ``source[tensor]`` stacks clips
    of one length (B, T, S, S, 3); ``lengths`` come from the cache's index, no clip read.
    """

    def __init__(self, cache: Any, indices: Sequence[int], size: int,
                 keep_bytes: int = KEEP_SHRUNK_BYTES):
        self.cache, self.indices, self.size = cache, [int(i) for i in indices], size
        if getattr(cache, "variable", False):
            self.lengths = [int(cache.lengths[i]) for i in self.indices]
        elif hasattr(cache, "clip_shape"):
            self.lengths = [int(cache.clip_shape[0])] * len(self.indices)
        else:  # anything with cache[i] (a list of clips): read each once for its length
            self.lengths = [len(cache[i]) for i in self.indices]
        self.length_tensor = torch.tensor(self.lengths, dtype=torch.long)  # (N,): once, not a step
        shrunk_bytes = sum(self.lengths) * size * size * 3
        self.kept: dict[int, torch.Tensor] | None = {} if shrunk_bytes <= keep_bytes else None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def uniform(self) -> bool:
        """Whether every clip has one length (then a batch is a plain slice of frames)."""
        return len(set(self.lengths)) <= 1

    def clip(self, i: int) -> torch.Tensor:
        if self.kept is not None and i in self.kept:
            return self.kept[i]
        x = _to_float(np.asarray(self.cache[self.indices[i]])[None], torch.device("cpu"))
        clip = to_uint8(_resize_space(x, self.size))[0].permute(1, 2, 3, 0)  # (T, S, S, 3)
        if self.kept is not None:
            self.kept[i] = clip
        return clip

    def __getitem__(self, i: int | torch.Tensor) -> torch.Tensor:
        if isinstance(i, torch.Tensor) and i.ndim == 1:
            return torch.stack([self.clip(int(k)) for k in i])  # (B, T, S, S, 3)
        return self.clip(int(i))


def clip_lengths(clips: ClipSource | torch.Tensor | Sequence[torch.Tensor]) -> list[int]:
    """Frames of every training clip, without reading a ClipSource's clips."""
    if isinstance(clips, ClipSource):
        return clips.lengths
    return [len(c) for c in clips]


def length_tensor(clips: ClipSource | torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """`clip_lengths` as a tensor (N,); a ClipSource's is made once, not at every step."""
    if isinstance(clips, ClipSource):
        return clips.length_tensor
    return torch.tensor(clip_lengths(clips), dtype=torch.long)


def load_clips(cache: Any, indices: list[int], size: int, progress: bool = False) -> ClipSource:
    """Training clips ``indices`` of a cache, read lazily at ``size`` x ``size`` (``progress``
    is kept for callers; nothing is loaded up front)."""
    return ClipSource(cache, indices, size)


def augment(clips: torch.Tensor, frames: int, generator: torch.Generator,
            strength: float = 1.0, time_jitter: float = 0.2) -> torch.Tensor:
    """Jitter that keeps handedness: time crop/speed, shift, scale, brightness, contrast.

    Never flips horizontally: a mirrored clip swaps the dominant hand and is another sign.
    clips: uint8 (B, T, S, S, 3) -> float (B, 3, frames, S, S) in [-1, 1].
    """
    b, t, s = clips.shape[0], clips.shape[1], clips.shape[2]

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=generator)

    # Temporal jitter: a window of 80-100% of the clip at a random start, resampled to `frames`.
    length = uniform(1.0 - time_jitter * strength, 1.0, b) * (t - 1)  # (B,)
    start = uniform(0.0, 1.0, b) * (t - 1 - length)  # (B,)
    ramp = torch.linspace(0.0, 1.0, frames)  # (frames,)
    idx = (start[:, None] + length[:, None] * ramp).round().long().clamp(0, t - 1)  # (B, frames)
    x = clips[torch.arange(b)[:, None], idx]  # (B, frames, S, S, 3)
    x = to_unit(x.permute(0, 4, 1, 2, 3))  # (B, 3, frames, S, S)

    # One affine per clip (same for every frame): scale +-10%, shift up to 6% of the side.
    scale = uniform(1.0 - 0.1 * strength, 1.0 + 0.1 * strength, b)
    shift = uniform(-0.12 * strength, 0.12 * strength, b, 2)  # grid units: [-1, 1] spans the frame
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = shift
    flat = x.reshape(b, 3 * frames, s, s)  # (B, 3*frames, S, S): frames share the warp
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    flat = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = flat.reshape(b, 3, frames, s, s)  # (B, 3, frames, S, S)

    contrast = uniform(1.0 - 0.2 * strength, 1.0 + 0.2 * strength, b, 1, 1, 1, 1)
    brightness = uniform(-0.1 * strength, 0.1 * strength, b, 1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
    return ((x - mean) * contrast + mean + brightness).clamp(-1.0, 1.0)


R = TypeVar("R", bound="TrainedRecognizer")


class TrainedRecognizer:
    """A trained network, its output labels (class names or units), input geometry, held-out
    scores and the settings it was trained with. Heads define the class attributes, `meta`
    (their labels in the saved json) and `loss`."""

    kind: ClassVar[str]  # in messages: "recognizer", "sequence recognizer"
    weights_name: ClassVar[str]
    config_name: ClassVar[str]
    labels_key: ClassVar[str]  # the saved json's key for the labels: "classes", "vocab"
    how_to_train: ClassVar[str]  # the fix named when a folder is not one
    config_class: ClassVar[Callable[..., Any]]
    net_class: ClassVar[Callable[[int, Any], nn.Module]]  # (number of labels, config) -> net
    max_grad_norm: ClassVar[float | None] = None

    def __init__(self, net: nn.Module, labels: list[str], config: Any,
                 metrics: dict[str, Any] | None = None, settings: dict[str, Any] | None = None):
        self.net = net.eval()
        self.config = config
        self.metrics = dict(metrics or {})  # e.g. val_top1, train_clips, device
        self.settings = dict(settings or {})  # what it was trained with: the cache key

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self: R, device: str | torch.device) -> R:
        self.net.to(device)
        return self

    def prepare(self, videos: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Any clip geometry -> the network's (N, 3, frames, size, size) float input."""
        return prepare_clips(videos, self.config.frames, self.config.size, self.device)

    def sample_batch(self, clips: ClipSource | torch.Tensor, targets: Sequence[Any],
                     batch_size: int, generator: torch.Generator, time_jitter: float
                     ) -> tuple[list[Any], torch.Tensor]:
        """(targets, augmented float batch (B, 3, frames, S, S)) of random training clips;
        clips of different lengths are first picked to ``frames`` uniformly."""
        batch = torch.randint(len(clips), (batch_size,), generator=generator)
        if isinstance(clips, ClipSource) and not clips.uniform:
            frames = self.config.frames
            chosen = torch.stack([clips[int(i)][frame_indices(clips.lengths[int(i)], frames)]
                                  for i in batch])  # (B, frames, S, S, 3)
        else:
            chosen = clips[batch]  # (B, T, S, S, 3)
        x = augment(chosen, self.config.frames, generator, time_jitter=time_jitter)
        return [targets[int(i)] for i in batch], x

    def meta(self) -> dict[str, Any]:
        """The head's part of the saved json: a format tag and the labels, written first."""
        raise NotImplementedError

    def loss(self, x: torch.Tensor, targets: list[Any]) -> torch.Tensor:
        """Training loss of a batch x (B, 3, frames, S, S) with one target per clip."""
        raise NotImplementedError

    @classmethod
    def check_meta(cls, meta: dict[str, Any], path: Path) -> None:
        """Raise if a saved json is not this head's format."""

    def restore(self, meta: dict[str, Any]) -> None:
        """Take what `meta` saved beyond the labels (a head's extras); nothing by default."""

    def save(self, folder: str | Path) -> Path:
        """Weights (safetensors, no pickle) + json, written atomically."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        meta = {**self.meta(), "config": dataclasses.asdict(self.config),
                "metrics": self.metrics, "settings": self.settings}

        def write(tmp: Path) -> None:
            save_file(state, str(tmp / self.weights_name))
            (tmp / self.config_name).write_text(json.dumps(meta, indent=2, ensure_ascii=False))

        return atomic_dir(Path(folder), write)

    @classmethod
    def load(cls: type[R], folder: str | Path, device: str | torch.device = "cpu") -> R:
        folder = Path(folder)
        if not (folder / cls.config_name).is_file() or not (folder / cls.weights_name).is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} is not a {cls.kind} folder (needs {cls.config_name} and "
                f"{cls.weights_name}); {cls.how_to_train}")
        meta = json.loads((folder / cls.config_name).read_text())
        cls.check_meta(meta, folder / cls.config_name)
        config = cls.config_class(**meta["config"])
        labels = meta[cls.labels_key]
        net = cls.net_class(len(labels), config)
        net.load_state_dict(load_file(str(folder / cls.weights_name)))
        recognizer = cls(net, labels, config, meta.get("metrics"), meta.get("settings"))
        recognizer.restore(meta)
        return recognizer.to(device)

    @classmethod
    def train_new(cls: type[R], labels: list[str], config: Any,
                  clips: ClipSource | torch.Tensor,
                  targets: Sequence[Any], settings: FitSettings, device: torch.device,
                  progress: bool, time_jitter: float) -> R:
        """A fresh net trained on uint8 clips (N, T, S, S, 3) or a ClipSource,
        deterministic for a seed and device. Init and dropout draw from the global RNG: it is
        forked, so training repeats and leaves the caller's random state alone."""
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(settings.seed)
            recognizer = cls(cls.net_class(len(labels), config).to(device), labels, config,
                             settings=dataclasses.asdict(settings))
            recognizer._fit(clips, targets, settings, progress, time_jitter)
        return recognizer

    def _fit(self, clips: ClipSource | torch.Tensor, targets: Sequence[Any],
             settings: FitSettings,
             progress: bool, time_jitter: float) -> None:
        """AdamW with linear warmup then cosine decay, on augmented batches (no flips)."""
        net, device = self.net, self.device
        net.train()
        generator = torch.Generator().manual_seed(settings.seed)
        optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr,
                                      weight_decay=settings.weight_decay)
        warmup = max(1, settings.steps // 20)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, settings.steps))
        bar = tqdm(range(settings.steps), desc=f"{self.kind}: training", disable=not progress,
                   leave=False)
        for step in bar:
            if step % 100 == 0:
                release_freed_memory()  # each batch's clips, read and shrunk, leave heap behind
            batch_targets, x = self.sample_batch(clips, targets, settings.batch_size, generator,
                                                 time_jitter)
            x = x.to(device)  # (B, 3, T, S, S)
            loss = self.loss(x, batch_targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), self.max_grad_norm)
            optimizer.step()
            scheduler.step()
            if progress:
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)  # sync point, cheap here
        net.eval()

    @classmethod
    def load_or_train(cls: type[R], folder: Path, wanted: dict[str, Any], device: torch.device,
                      progress: bool, train: Callable[[], tuple[R, dict[str, Any]]]) -> R:
        """The one saved in `folder` if it was trained with the `wanted` settings; else
        `train()`'s (a recognizer and its metrics), saved there with those settings."""
        if (folder / cls.config_name).is_file():
            recognizer = cls.load(folder, device)
            if recognizer.settings == wanted:
                return recognizer
            if progress:
                print(f"{cls.kind} at {folder} was trained with other settings; retraining")
        recognizer, metrics = train()
        recognizer.metrics = metrics
        recognizer.settings = wanted
        recognizer.save(folder)
        return recognizer
