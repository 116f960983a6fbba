"""A small video classifier trained on a corpus's real clips: it scores whether a clip shows a sign.

Classes are the corpus's distinct texts. Its accuracy on held-out real clips is the ceiling that
generated clips are compared against, and its pooled features are the space in which the Frechet
distance between generated and real clips is measured (the role Inception plays in FID).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from text2sign.core.config import VAL_FRACTION
from text2sign.core.device import pick_device
from text2sign.evaluation.metrics import topk_hits
from text2sign.evaluation.recognizer_base import TrainedRecognizer, conv_block, load_clips

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


class RecognizerNet(nn.Module):
    """Four Conv3d+GroupNorm+SiLU blocks, global average pooling, a linear classifier."""

    def __init__(self, num_classes: int, config: RecognizerConfig):
        super().__init__()
        w = config.width
        self.blocks = nn.Sequential(
            conv_block(3, w, (1, 2, 2)),  # space first: hand shapes need spatial detail early
            conv_block(w, 2 * w, (2, 2, 2)),
            conv_block(2 * w, 4 * w, (2, 2, 2)),
            conv_block(4 * w, config.feature_dim, (1, 1, 1)),
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


class Recognizer(TrainedRecognizer):
    """A trained RecognizerNet plus its class names, input geometry and held-out scores."""

    kind = "recognizer"
    weights_name = WEIGHTS_NAME
    config_name = CONFIG_NAME
    labels_key = "classes"
    how_to_train = "train one with load_or_train_recognizer"
    config_class = RecognizerConfig
    net_class = RecognizerNet

    def __init__(self, net: RecognizerNet, classes: list[str], config: RecognizerConfig,
                 metrics: dict[str, Any] | None = None, settings: dict[str, Any] | None = None):
        super().__init__(net, classes, config, metrics, settings)
        self.classes = list(classes)
        self.index = {text: i for i, text in enumerate(self.classes)}

    def meta(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "classes": self.classes}

    def loss(self, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
        """Cross-entropy with label smoothing against class indices."""
        return F.cross_entropy(self.net(x), torch.tensor(targets, device=x.device),
                               label_smoothing=self.settings["label_smoothing"])

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

    clips = load_clips(cache, train_idx, config.size, progress)  # (N, T, S, S, 3) uint8, CPU
    labels = [index[texts[i]] for i in train_idx]
    return Recognizer.train_new(classes, config, clips, labels, settings, device, progress,
                                time_jitter=0.2)


def score_clips(recognizer: Recognizer, cache: Any, indices: list[int] | np.ndarray,
                batch_size: int = 64) -> dict[str, Any]:
    """Top-1 / top-5 of the recognizer on real clips `indices` whose text has a class, a batch
    at a time: only each clip's two hits are kept, never the (clips, classes) logits, which
    grow as the square of the corpus (70,000 clips of 17,500 texts: 2.4 GB held)."""
    texts = list(cache.texts)
    keep = [int(i) for i in indices if texts[int(i)] in recognizer.index]
    if not keep:
        return {"top1": float("nan"), "top5": float("nan"), "clips": 0}
    top1, top5 = [], []
    for s in range(0, len(keep), batch_size):
        chunk = keep[s:s + batch_size]
        logits = recognizer.predict_logits(np.stack([cache[i] for i in chunk]))  # (B, classes)
        labels = recognizer.labels([texts[i] for i in chunk])
        top1.append(topk_hits(logits, labels, 1))
        top5.append(topk_hits(logits, labels, 5))
    return {"top1": float(np.concatenate(top1).mean()), "top5": float(np.concatenate(top5).mean()),
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

    def train() -> tuple[Recognizer, dict[str, Any]]:
        train_idx, val_idx = cache.split(val_fraction)
        start = time.perf_counter()
        recognizer = train_recognizer(cache, train_idx, config=config, settings=settings,
                                      device=device, progress=progress)
        seconds = time.perf_counter() - start
        val = score_clips(recognizer, cache, val_idx)
        return recognizer, {"val_top1": val["top1"], "val_top5": val["top5"],
                            "val_clips": val["clips"], "train_clips": len(train_idx),
                            "train_seconds": round(seconds, 1), "device": str(device)}

    recognizer = Recognizer.load_or_train(folder, wanted, device, progress, train)
    return recognizer, recognizer.metrics["val_top1"], recognizer.metrics["val_top5"]
