"""Back-translation: a sequence recognizer reads a clip back into text (CTC, Graves et al. 2006).

Sign language production is scored by translating generated clips back into text and comparing
with the input (Saunders et al. 2020; SLRTP 2025 reports back-translation next to the score of
real clips, the ceiling). Here a small video network emits one distribution over units per frame
and is trained with CTC on the corpus's real training clips: characters where texts are spelled
letter by letter (fingerspelling), whitespace-separated glosses otherwise. Greedy decoding gives
the text; the character (or gloss) error rate and exact-text accuracy score it.
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

from text2sign.config import VAL_FRACTION
from text2sign.data.fingerspelling import is_fingerspelling_corpus
from text2sign.device import pick_device
from text2sign.evaluation.base import TrainedRecognizer, conv_block, load_clips
from text2sign.evaluation.metrics import (  # noqa: F401  (also imported from here)
    edit_distance,
    error_rate,
    exact_accuracy,
    join_units,
    text_units,
)

UNITS = ("chars", "glosses")
WEIGHTS_NAME = "sequence.safetensors"
CONFIG_NAME = "sequence.json"
FORMAT = "text2sign-sequence-recognizer"


@dataclass
class SequenceConfig:
    frames: int = 28  # clips are resampled to this many frames: the CTC time steps
    size: int = 32  # and to size x size pixels (clips are framed on the hands)
    width: int = 16  # channels of the first block; doubled twice
    hidden: int = 96  # GRU width per direction
    units: str = "chars"  # "chars" (spelled texts) or "glosses" (whitespace-separated)


@dataclass
class SequenceTrainSettings:
    steps: int = 1500
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    time_jitter: float = 0.05  # fraction of the clip a time crop may cut: no letter lost
    seed: int = 0


class SequenceNet(nn.Module):
    """Conv3d blocks that halve space and keep time, spatial pooling, a BiGRU, a CTC head."""

    def __init__(self, vocab_size: int, config: SequenceConfig):
        super().__init__()
        w = config.width
        space = (1, 2, 2)  # halve space, keep time: one step per frame for CTC
        self.blocks = nn.Sequential(conv_block(3, w, space), conv_block(w, 2 * w, space),
                                    conv_block(2 * w, 4 * w, space),
                                    conv_block(4 * w, 4 * w, space))
        self.rnn = nn.GRU(4 * w, config.hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * config.hidden, vocab_size + 1)  # index 0 is the CTC blank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, S, S) in [-1, 1] -> log-probabilities (B, T, vocab + 1)."""
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        std = x.std(dim=(1, 2, 3, 4), keepdim=True)
        x = (x - mean) / (std + 1e-2)  # standardized: thin strokes on black are a small signal
        h = self.blocks(x).mean(dim=(3, 4)).transpose(1, 2)  # (B, C, T, s, s) -> (B, T, C)
        h, _ = self.rnn(h)  # (B, T, 2 * hidden)
        return self.head(h).float().log_softmax(-1)  # (B, T, V + 1)


class SequenceRecognizer(TrainedRecognizer):
    """A trained SequenceNet, its unit vocabulary and geometry: reads clips back into text."""

    kind = "sequence recognizer"
    weights_name = WEIGHTS_NAME
    config_name = CONFIG_NAME
    labels_key = "vocab"
    how_to_train = "leave --recognizer out to train one on the corpus"
    config_class = SequenceConfig
    net_class = SequenceNet
    max_grad_norm = 1.0

    def __init__(self, net: SequenceNet, vocab: list[str], config: SequenceConfig,
                 metrics: dict[str, Any] | None = None, settings: dict[str, Any] | None = None):
        if config.units not in UNITS:
            raise ValueError(f"units={config.units!r} is not one of {list(UNITS)}")
        super().__init__(net, vocab, config, metrics, settings)
        self.vocab = list(vocab)
        self.index = {u: i + 1 for i, u in enumerate(self.vocab)}  # 0 is the CTC blank

    @property
    def units(self) -> str:
        return self.config.units

    def meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "vocab": self.vocab}

    @classmethod
    def check_meta(cls, meta: dict[str, Any], path: Path) -> None:
        if meta.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a {FORMAT} file")

    def loss(self, x: torch.Tensor, targets: list[str]) -> torch.Tensor:
        """CTC loss of the texts (zero_infinity: a text longer than the frames is skipped)."""
        ids, lengths = self.encode_targets(targets)
        log_probs = self.net(x).transpose(0, 1)  # (T, B, V + 1)
        input_lengths = torch.full((len(targets),), self.config.frames, dtype=torch.long)
        return F.ctc_loss(log_probs, ids.to(x.device), input_lengths, lengths,
                          zero_infinity=True)

    def encode_targets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenated unit ids and lengths for CTC; a unit outside the vocabulary is an error."""
        ids, lengths = [], []
        for text in texts:
            units = text_units(text, self.units)
            missing = [u for u in units if u not in self.index]
            if missing:
                raise ValueError(f"text {text!r} has units {missing} the recognizer has no "
                                 "output for")
            ids += [self.index[u] for u in units]
            lengths.append(len(units))
        return torch.tensor(ids, dtype=torch.long), torch.tensor(lengths, dtype=torch.long)

    def decode(self, log_probs: torch.Tensor) -> list[tuple[str, float]]:
        """Greedy CTC decoding: best unit per frame, repeats merged, blanks dropped. The
        confidence is the mean over frames of the best unit's probability."""
        best = log_probs.argmax(-1).cpu().numpy()  # (B, T)
        conf = log_probs.max(-1).values.exp().mean(-1).cpu().numpy()  # (B,)
        out = []
        for row, c in zip(best, conf, strict=True):
            units, prev = [], 0
            for k in row.tolist():
                if k != prev and k != 0:
                    units.append(self.vocab[k - 1])
                prev = k
            out.append((join_units(units, self.units), float(c)))
        return out

    @torch.no_grad()
    def read(self, videos: np.ndarray | torch.Tensor, batch_size: int = 32
             ) -> list[tuple[str, float]]:
        """(text, confidence) for each clip, uint8 (N, T, H, W, 3) or float (N, 3, T, H, W)."""
        self.net.eval()
        out = []
        for start in range(0, len(videos), batch_size):
            out += self.decode(self.net(self.prepare(videos[start:start + batch_size])))
        return out


def train_sequence_recognizer(cache: Any, train_idx: list[int], *,
                              config: SequenceConfig | None = None,
                              settings: SequenceTrainSettings | None = None,
                              device: str | torch.device | None = None,
                              progress: bool = True) -> SequenceRecognizer:
    """Train on clips ``train_idx`` of a clip cache (anything with ``cache[i]`` and ``.texts``);
    the vocabulary is every unit of those texts. Deterministic for a seed and device."""
    config = config or SequenceConfig()
    settings = settings or SequenceTrainSettings()
    if config.units not in UNITS:
        raise ValueError(f"units={config.units!r} is not one of {list(UNITS)}")
    device = pick_device(device)
    train_idx = [int(i) for i in train_idx]
    if not train_idx:
        raise ValueError("train_sequence_recognizer got no training clips (train_idx is empty)")
    texts = [cache.texts[i] for i in train_idx]
    vocab = sorted({u for t in texts for u in text_units(t, config.units)})
    if not vocab:
        raise ValueError("the training texts are all empty: nothing to recognize")
    clips = load_clips(cache, train_idx, config.size, progress)  # (N, T, S, S, 3) uint8
    return SequenceRecognizer.train_new(vocab, config, clips, texts, settings, device, progress,
                                        time_jitter=settings.time_jitter)


def read_clips(recognizer: SequenceRecognizer, cache: Any, indices: list[int],
               batch_size: int = 32) -> list[str]:
    """The recognizer's reading of real clips ``indices`` of a cache."""
    out: list[str] = []
    for start in range(0, len(indices), batch_size):
        chunk = np.stack([cache[int(i)] for i in indices[start:start + batch_size]])
        out += [text for text, _ in recognizer.read(chunk, batch_size)]
    return out


def default_units(data_path: str | Path) -> str:
    """Characters for a corpus written by `data fingerspelling`, glosses otherwise."""
    path = Path(data_path)
    for candidate in (path, *path.parents):
        if is_fingerspelling_corpus(candidate):
            return "chars"
        if (candidate / "index.json").is_file() and candidate != path:
            break
    return "glosses"


def load_or_train_sequence_recognizer(
    cache: Any, val_fraction: float = VAL_FRACTION, holdout: float = 0.0, *,
    units: str | None = None, frames: int | None = None,
    settings: SequenceTrainSettings | None = None, device: str | torch.device | None = None,
    folder: str | Path | None = None, progress: bool = True,
) -> SequenceRecognizer:
    """The corpus's sequence recognizer, trained once on the training clips of its training
    texts (the clips the generator learns from) and cached beside the clip cache."""
    settings = settings or SequenceTrainSettings()
    if units is None:
        source = cache.index.get("source", cache.path) if hasattr(cache, "index") else cache.path
        units = default_units(source)
    config = SequenceConfig(frames=frames or cache.clip_shape[0], units=units)
    device = pick_device(device)
    wanted = {**dataclasses.asdict(settings), "config": dataclasses.asdict(config),
              "val_fraction": val_fraction, "holdout": holdout,
              "fingerprint": cache.fingerprint}
    folder = (Path(folder) if folder is not None
              else Path(cache.path) / f"sequence-{cache.fingerprint[:12]}")

    def train() -> tuple[SequenceRecognizer, dict[str, Any]]:
        train_idx, _, _ = cache.split_by_text(val_fraction, holdout)
        start = time.perf_counter()
        recognizer = train_sequence_recognizer(cache, train_idx, config=config,
                                               settings=settings, device=device,
                                               progress=progress)
        return recognizer, {"train_clips": len(train_idx),
                            "train_seconds": round(time.perf_counter() - start, 1),
                            "device": str(device)}

    return SequenceRecognizer.load_or_train(folder, wanted, device, progress, train)
