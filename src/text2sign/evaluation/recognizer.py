"""A small video classifier trained on a corpus's real clips: it scores whether a clip shows a sign.

Classes are the corpus's distinct texts. Its accuracy on held-out real clips is the ceiling that
generated clips are compared against, and its pooled features are the space in which the Frechet
distance between generated and real clips is measured (the role Inception plays in FID).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from text2sign.build import pick_device
from text2sign.config import VAL_FRACTION
from text2sign.data.dataset import to_uint8, to_unit
from text2sign.files import atomic_dir
from text2sign.lr_schedule import warmup_cosine

FORMAT_VERSION = 1
WEIGHTS_NAME = "recognizer.safetensors"
CONFIG_NAME = "recognizer.json"


@dataclass
class RecognizerConfig:
    frames: int = 16  # clips are resampled to frames x size x size inside the network
    size: int = 32
    width: int = 16  # channels of the first block; doubled at each downsampling
    feature_dim: int = 64  # pooled feature vector: the space of the Frechet distance


@dataclass
class TrainSettings:
    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    seed: int = 0


def _block(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(8, cout),
        nn.SiLU(),
    )


class RecognizerNet(nn.Module):
    """Four Conv3d+GroupNorm+SiLU blocks, global average pooling, a linear classifier."""

    def __init__(self, num_classes: int, config: RecognizerConfig):
        super().__init__()
        w = config.width
        self.blocks = nn.Sequential(
            _block(3, w, (1, 2, 2)),  # space first: hand shapes need spatial detail early
            _block(w, 2 * w, (2, 2, 2)),
            _block(2 * w, 4 * w, (2, 2, 2)),
            _block(4 * w, config.feature_dim, (1, 1, 1)),
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(config.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # Standardize each clip: thin strokes on a black page are otherwise a tiny signal that
        # training took hundreds of steps to find (or never did, with augmentation).
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        std = x.std(dim=(1, 2, 3, 4), keepdim=True)
        x = (x - mean) / (std + 1e-2)
        return self.blocks(x).mean(dim=(2, 3, 4))  # (B, C, T, H, W) -> (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))  # (B, num_classes)


def _frame_indices(num_in: int, num_out: int) -> torch.Tensor:
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


def prepare_clips(videos: np.ndarray | torch.Tensor, frames: int, size: int,
                  device: torch.device) -> torch.Tensor:
    """Clips of any geometry -> float (N, 3, frames, size, size) on ``device``: frames picked
    uniformly, space area-averaged (both recognizers' input)."""
    x = _to_float(videos, device)  # (N, 3, T, H, W)
    x = x[:, :, _frame_indices(x.shape[2], frames).to(x.device)]
    return _resize_space(x, size)  # (N, 3, frames, size, size)


class Recognizer:
    """A trained RecognizerNet plus its class names, input geometry and held-out scores."""

    def __init__(self, net: RecognizerNet, classes: list[str], config: RecognizerConfig,
                 metrics: dict[str, Any] | None = None, settings: dict[str, Any] | None = None):
        self.net = net.eval()
        self.classes = list(classes)
        self.config = config
        self.metrics = dict(metrics or {})  # e.g. val_top1, val_top5, val_clips
        self.settings = dict(settings or {})  # what it was trained with: the cache key
        self.index = {text: i for i, text in enumerate(self.classes)}

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> Recognizer:
        self.net.to(device)
        return self

    def prepare(self, videos: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Any clip geometry -> the network's (N, 3, frames, size, size) float input."""
        return prepare_clips(videos, self.config.frames, self.config.size, self.device)

    @torch.no_grad()
    def _run(self, videos: np.ndarray | torch.Tensor, batch_size: int) -> tuple[np.ndarray, ...]:
        self.net.eval()
        feats, logits = [], []
        for start in range(0, len(videos), batch_size):
            f = self.net.features(self.prepare(videos[start:start + batch_size]))  # (B, D)
            feats.append(f.float().cpu().numpy())
            logits.append(self.net.head(f).float().cpu().numpy())
        if not feats:
            d, k = self.config.feature_dim, len(self.classes)
            return np.zeros((0, d), np.float32), np.zeros((0, k), np.float32)
        return np.concatenate(feats), np.concatenate(logits)

    def features(self, videos: np.ndarray | torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """Pooled features (N, feature_dim): the space of the Frechet distance."""
        return self._run(videos, batch_size)[0]

    def predict_logits(self, videos: np.ndarray | torch.Tensor,
                       batch_size: int = 64) -> np.ndarray:
        """Class logits (N, len(classes)) for uint8 (N, T, H, W, 3) or float (N, 3, T, H, W)."""
        return self._run(videos, batch_size)[1]

    def features_and_logits(self, videos: np.ndarray | torch.Tensor,
                            batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Both at the cost of one forward pass."""
        return self._run(videos, batch_size)

    def labels(self, texts: list[str]) -> np.ndarray:
        """Class indices of texts; -1 for a text the recognizer has no class for."""
        return np.array([self.index.get(t, -1) for t in texts], dtype=np.int64)

    def save(self, folder: str | Path) -> Path:
        """Write recognizer.safetensors + recognizer.json (no pickle) atomically."""
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        meta = {
            "format_version": FORMAT_VERSION,
            "classes": self.classes,
            "config": dataclasses.asdict(self.config),
            "metrics": self.metrics,
            "settings": self.settings,
        }

        def write(tmp: Path) -> None:
            save_file(state, str(tmp / WEIGHTS_NAME))
            (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2, ensure_ascii=False))

        return atomic_dir(Path(folder), write)

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> Recognizer:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} is not a recognizer folder (needs {CONFIG_NAME} and "
                f"{WEIGHTS_NAME}); train one with load_or_train_recognizer"
            )
        meta = json.loads((folder / CONFIG_NAME).read_text())
        config = RecognizerConfig(**meta["config"])
        net = RecognizerNet(len(meta["classes"]), config)
        net.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
        return cls(net, meta["classes"], config, meta.get("metrics"),
                   meta.get("settings")).to(device)


def _load_clips(cache: Any, indices: list[int], config: RecognizerConfig,
                progress: bool) -> torch.Tensor:
    """Training clips downsampled in space (time kept for jitter): uint8 (N, T, S, S, 3).

    Held in memory: N * T * S * S * 3 bytes (208 clips at 16x32x32: 10 MB).
    """
    from tqdm.auto import tqdm

    out = []
    for i in tqdm(indices, desc="recognizer: loading clips", disable=not progress, leave=False):
        x = _to_float(np.asarray(cache[int(i)])[None], torch.device("cpu"))  # (1, 3, T, H, W)
        x = _resize_space(x, config.size)  # (1, 3, T, S, S)
        x = to_uint8(x)
        out.append(x[0].permute(1, 2, 3, 0))  # (T, S, S, 3)
    return torch.stack(out)  # (N, T, S, S, 3)


def _augment(clips: torch.Tensor, frames: int, generator: torch.Generator,
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


def _fit(net: RecognizerNet, clips: torch.Tensor, labels: torch.Tensor,
         config: RecognizerConfig, settings: TrainSettings, progress: bool) -> RecognizerNet:
    """AdamW with linear warmup then cosine decay, label smoothing, augmented batches."""
    from tqdm.auto import tqdm

    device = next(net.parameters()).device
    net.train()
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    warmup = max(1, settings.steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup, settings.steps))
    bar = tqdm(range(settings.steps), desc="recognizer: training", disable=not progress,
               leave=False)
    for _ in bar:
        batch = torch.randint(len(clips), (settings.batch_size,), generator=generator)
        x = _augment(clips[batch], config.frames, generator).to(device)  # (B, 3, T, S, S)
        loss = F.cross_entropy(net(x), labels[batch].to(device),
                               label_smoothing=settings.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)  # sync point, cheap here
    return net.eval()


def train_recognizer(cache: Any, train_idx: list[int] | np.ndarray, *,
                     classes: list[str] | None = None,
                     config: RecognizerConfig | None = None,
                     settings: TrainSettings | None = None,
                     device: str | torch.device | None = None,
                     progress: bool = True) -> Recognizer:
    """Train on the clips `train_idx` of a clip cache (anything with `cache[i]` and `.texts`).

    Classes default to every distinct text of the cache, so each text has a label even when
    all its clips were held out (such a class is simply never predicted well). AdamW, linear
    warmup then cosine decay, label smoothing; deterministic for a given seed and device.
    """
    config = config or RecognizerConfig()
    settings = settings or TrainSettings()
    device = pick_device(device)
    texts = list(cache.texts)
    classes = sorted(set(texts)) if classes is None else list(classes)
    index = {text: i for i, text in enumerate(classes)}
    train_idx = [int(i) for i in train_idx]
    if not train_idx:
        raise ValueError("train_recognizer got no training clips (train_idx is empty)")
    unknown = sorted({texts[i] for i in train_idx} - set(index))
    if unknown:
        raise ValueError(f"training texts {unknown[:5]} are not among the classes given")

    clips = _load_clips(cache, train_idx, config, progress)  # (N, T, S, S, 3) uint8, CPU
    labels = torch.tensor([index[texts[i]] for i in train_idx])  # (N,)

    # Init and dropout draw from the global RNG: fork it so training repeats and leaves the
    # caller's random state alone.
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(settings.seed)
        net = _fit(RecognizerNet(len(classes), config).to(device), clips, labels, config,
                   settings, progress)
    return Recognizer(net.eval(), classes, config, settings=dataclasses.asdict(settings))


def score_clips(recognizer: Recognizer, cache: Any, indices: list[int] | np.ndarray,
                batch_size: int = 64) -> dict[str, Any]:
    """Top-1 / top-5 of the recognizer on real clips `indices` whose text has a class."""
    from text2sign.evaluation.metrics import topk_accuracy

    texts = list(cache.texts)
    keep = [int(i) for i in indices if texts[int(i)] in recognizer.index]
    if not keep:
        return {"top1": float("nan"), "top5": float("nan"), "clips": 0}
    logits = np.concatenate([
        recognizer.predict_logits(np.stack([cache[i] for i in keep[s:s + batch_size]]))
        for s in range(0, len(keep), batch_size)
    ])  # (N, classes)
    labels = recognizer.labels([texts[i] for i in keep])
    return {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5),
            "clips": len(keep)}


def recognizer_folder(cache: Any) -> Path:
    """Where a corpus's recognizer is cached: next to its clip cache, keyed by its index hash."""
    return Path(cache.path) / f"recognizer-{cache.fingerprint[:12]}"


def load_or_train_recognizer(cache: Any, val_fraction: float = VAL_FRACTION, *,
                             config: RecognizerConfig | None = None,
                             settings: TrainSettings | None = None,
                             device: str | torch.device | None = None,
                             folder: str | Path | None = None,
                             progress: bool = True) -> tuple[Recognizer, float, float]:
    """The corpus's recognizer, trained once and cached; returns (recognizer, top-1, top-5).

    Top-1 / top-5 are measured on the held-out split `cache.split(val_fraction)`: the ceiling
    for generated clips. Held-out clips whose text has no training clip still count (they
    are what an unseen text scores); if the split holds nothing out, the ceiling is NaN. A
    cached recognizer trained with other settings (val_fraction, steps, size, seed) is retrained.
    """
    config = config or RecognizerConfig()
    settings = settings or TrainSettings()
    device = pick_device(device)
    folder = Path(folder) if folder is not None else recognizer_folder(cache)
    wanted = {**dataclasses.asdict(settings), "config": dataclasses.asdict(config),
              "val_fraction": val_fraction, "fingerprint": cache.fingerprint}
    if (folder / CONFIG_NAME).is_file():
        recognizer = Recognizer.load(folder, device)
        if recognizer.settings == wanted:
            return recognizer, recognizer.metrics["val_top1"], recognizer.metrics["val_top5"]
        if progress:
            print(f"recognizer at {folder} was trained with other settings; retraining")

    train_idx, val_idx = cache.split(val_fraction)
    start = time.perf_counter()
    recognizer = train_recognizer(cache, train_idx, config=config, settings=settings,
                                  device=device, progress=progress)
    seconds = time.perf_counter() - start
    val = score_clips(recognizer, cache, val_idx)
    recognizer.metrics = {"val_top1": val["top1"], "val_top5": val["top5"],
                          "val_clips": val["clips"], "train_clips": len(train_idx),
                          "train_seconds": round(seconds, 1), "device": str(device)}
    recognizer.settings = wanted
    recognizer.save(folder)
    return recognizer, val["top1"], val["top5"]
