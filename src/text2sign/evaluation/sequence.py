"""Back-translation: a sequence recognizer reads a clip back into text (CTC, Graves et al. 2006).

Sign language production is scored by translating generated clips back into text and comparing
with the input (Saunders et al. 2020; SLRTP 2025 reports back-translation next to the score of
real clips, the ceiling). Here a small video network emits one distribution over units per frame
and is trained with CTC on the corpus's real training clips: characters where texts are spelled
letter by letter (fingerspelling), whitespace-separated glosses otherwise; for characters the
space between the words of a phrase is a unit too, so a lost word boundary is an error. Greedy
decoding gives the text; the character (or gloss) error rate and exact-text accuracy score it.

Languages: on a corpus of several sign languages (OUT/<code>/ folders) the units are the union
of every language's letters (a multi-character letter such as Spanish LL one unit), and a reader
reads a clip in the language it is given: its output is masked to the units of that language's
texts (and the space and the blank), kept in the reader's folder.

Time: a recognizer either resamples every clip to `frames` (the fixed-count corpora) or, with
`frames = None`, reads each clip at its own length, one CTC step per frame.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from text2sign.core.config import VAL_FRACTION
from text2sign.core.device import pick_device, release_freed_memory
from text2sign.core.units import DEFAULT_LANGUAGE
from text2sign.data.folder import is_fingerspelling_corpus
from text2sign.evaluation.metrics import (  # noqa: F401  (also imported from here)
    edit_distance,
    error_rate,
    exact_accuracy,
    join_units,
    text_units,
)
from text2sign.evaluation.recognizer_base import (
    ClipSource,
    TrainedRecognizer,
    augment,
    clip_length,
    conv_block,
    frame_indices,
    length_groups,
    length_tensor,
    load_clips,
    stack_clips,
)

UNITS = ("chars", "glosses")
WEIGHTS_NAME = "sequence.safetensors"
CONFIG_NAME = "sequence.json"
FORMAT = "text2sign-sequence-recognizer"
# A training batch holds clips within this fraction of one length, each stretched to that length
# (a pace augmentation of at most 10%, next to the 5% time crop).
BUCKET_TOLERANCE = 0.1


@dataclass
class SequenceConfig:
    frames: int | None = 28  # clips are resampled to this many frames, the CTC time steps;
    # None: each clip keeps its own length (one CTC step per frame)
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
    settings_class = SequenceTrainSettings
    net_class = SequenceNet
    max_grad_norm = 1.0
    cache_prefix = "sequence"  # its folder beside a clip cache: sequence-<fingerprint>

    def __init__(self, net: SequenceNet, vocab: list[str], config: SequenceConfig,
                 metrics: dict[str, Any] | None = None, settings: dict[str, Any] | None = None):
        if config.units not in UNITS:
            raise ValueError(f"units={config.units!r} is not one of {list(UNITS)}")
        if config.frames is not None and config.frames < 1:
            raise ValueError(f"frames={config.frames} must be >= 1, or None for each clip's "
                             "own length")
        super().__init__(net, vocab, config, metrics, settings)
        self.vocab = list(vocab)
        self.index = {u: i + 1 for i, u in enumerate(self.vocab)}  # 0 is the CTC blank
        # Each sign language's units (`language_units`), or None: every unit read in any clip.
        self.languages: dict[str, list[str]] | None = None

    @property
    def units(self) -> str:
        return self.config.units

    def meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "vocab": self.vocab, **self.language_meta()}

    def language_meta(self) -> dict[str, Any]:
        return {} if self.languages is None else {"languages": self.languages}

    def restore(self, meta: dict[str, Any]) -> None:
        self.languages = meta.get("languages")  # None in readers of one language

    @classmethod
    def check_meta(cls, meta: dict[str, Any], path: Path) -> None:
        if meta.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a {FORMAT} file")

    def allowed(self, languages: Sequence[str] | None) -> torch.Tensor | None:
        """(B, V + 1) bool: the outputs a clip of each language may read (its language's units,
        the space and the CTC blank or end of text at 0), or None where every unit may."""
        if languages is None or self.languages is None:
            return None
        unknown = sorted(set(languages) - set(self.languages))
        if unknown:
            raise ValueError(f"the {self.kind} reads {', '.join(self.languages)}, not "
                             f"{', '.join(unknown)}: train one on a corpus of those "
                             "(`text2sign reader train`)")
        masks = {}
        for code, units in self.languages.items():
            mask = torch.zeros(len(self.vocab) + 1, dtype=torch.bool)
            mask[[0, *(self.index[u] for u in [*units, " "] if u in self.index)]] = True
            masks[code] = mask
        return torch.stack([masks[code] for code in languages])  # (B, V + 1)

    def unit_ids(self, text: str | Sequence[str]) -> list[int]:
        """Unit ids of a text (split in ASL) or of its units already split; a unit outside the
        vocabulary is an error."""
        units = text_units(text, self.units) if isinstance(text, str) else list(text)
        missing = [u for u in units if u not in self.index]
        if missing:
            raise ValueError(f"text {text!r} has units {missing} the recognizer has no "
                             "output for")
        return [self.index[u] for u in units]

    @property
    def own_length(self) -> bool:
        """Whether clips are read at their own length (one CTC step per frame)."""
        return self.config.frames is None

    def loss(self, x: torch.Tensor, targets: list[str]) -> torch.Tensor:
        """CTC loss of the texts (zero_infinity: a text longer than the frames is skipped)."""
        ids, lengths = self.encode_targets(targets)
        log_probs = self.net(x).transpose(0, 1)  # (T, B, V + 1)
        input_lengths = torch.full((len(targets),), x.shape[2], dtype=torch.long)
        return F.ctc_loss(log_probs, ids.to(x.device), input_lengths, lengths,
                          zero_infinity=True)

    def encode_targets(self, texts: Sequence[str | Sequence[str]]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenated unit ids and lengths for CTC (texts, or their units already split in
        their languages); a unit outside the vocabulary is an error."""
        ids, lengths = [], []
        for text in texts:
            units = self.unit_ids(text)
            ids += units
            lengths.append(len(units))
        return torch.tensor(ids, dtype=torch.long), torch.tensor(lengths, dtype=torch.long)

    def decode(self, log_probs: torch.Tensor, allowed: torch.Tensor | None = None
               ) -> list[tuple[str, float]]:
        """Greedy CTC decoding: best unit per frame, repeats merged, blanks dropped; only the
        ``allowed`` outputs (B, V + 1) of each clip, when given. The confidence is the mean over
        frames of the best unit's probability."""
        if allowed is not None:
            log_probs = log_probs.masked_fill(~allowed.to(log_probs.device)[:, None], -torch.inf)
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

    def sample_batch(self, clips: ClipSource | torch.Tensor, targets: Sequence[Any],
                     batch_size: int, generator: torch.Generator, time_jitter: float
                     ) -> tuple[list[Any], torch.Tensor]:
        """A batch of clips of about one length, read at that length (own-length mode).

        Buckets rather than padding: the temporal convolutions, the bidirectional GRU and the
        per-clip standardization would all see padded frames, so a padded clip would train on
        an input `read` never gives it; in a bucket every CTC input length is the batch's T.
        """
        if not self.own_length:
            return super().sample_batch(clips, targets, batch_size, generator, time_jitter)
        lengths = length_tensor(clips)  # (N,)
        anchor = int(torch.randint(len(clips), (1,), generator=generator))
        t = int(lengths[anchor])
        near = torch.nonzero((lengths - t).abs() <= BUCKET_TOLERANCE * t).flatten()  # (M,)
        batch = near[torch.randint(len(near), (batch_size,), generator=generator)]
        chosen = torch.stack([clips[int(i)][frame_indices(int(lengths[int(i)]), t)]
                              for i in batch])  # (B, t, S, S, 3)
        x = augment(chosen, t, generator, time_jitter=time_jitter)
        return [targets[int(i)] for i in batch], x

    @torch.no_grad()
    def read(self, videos: np.ndarray | torch.Tensor | list, batch_size: int = 32,
             languages: str | Sequence[str] | None = None) -> list[tuple[str, float]]:
        """(text, confidence) for each clip: uint8 (N, T, H, W, 3), float (N, 3, T, H, W), or a
        list of clips whose lengths differ (read in batches of one length, never padded); each
        clip in its sign language (``languages``: one per clip or one for all), read in that
        language's units when the reader knows several."""
        self.net.eval()
        if isinstance(languages, str):
            languages = [languages] * len(videos)
        if languages is not None and len(languages) != len(videos):
            raise ValueError(f"{len(languages)} languages for {len(videos)} clips; give one "
                             "per clip")
        out: list[tuple[str, float] | None] = [None] * len(videos)
        for group in length_groups(videos):
            for start in range(0, len(group), batch_size):
                chunk = group[start:start + batch_size]
                if isinstance(videos, (np.ndarray, torch.Tensor)):
                    x = videos[chunk[0]:chunk[-1] + 1]  # the same slices as one batch
                else:
                    x = stack_clips([videos[i] for i in chunk])
                if clip_length(x[0]) == 0:  # nothing to read: an empty reading, not a crash
                    readings = [("", 0.0)] * len(chunk)
                else:
                    readings = self.read_batch(self.prepare(x), self.allowed(
                        None if languages is None else [languages[i] for i in chunk]))
                for i, reading in zip(chunk, readings, strict=True):
                    out[i] = reading
        return out

    def read_batch(self, x: torch.Tensor, allowed: torch.Tensor | None = None
                   ) -> list[tuple[str, float]]:
        """Readings of a prepared batch (B, 3, T, S, S) of one length, each in its ``allowed``
        outputs (B, V + 1) when given."""
        return self.decode(self.net(x), allowed)


def train_sequence_recognizer(cache: Any, train_idx: list[int], *,
                              config: Any = None, settings: Any = None,
                              device: str | torch.device | None = None,
                              progress: bool = True,
                              reader_class: type[SequenceRecognizer] | None = None
                              ) -> SequenceRecognizer:
    """Train a reader (``reader_class``, this module's by default) on clips ``train_idx`` of a
    clip cache (anything with ``cache[i]`` and ``.texts``), read a batch at a time; the
    vocabulary is every unit of the cache's texts (" " too when they hold phrases). Deterministic
    for a seed and device. With ``config.frames = None`` the clips may differ in length."""
    cls = reader_class or SequenceRecognizer
    config = config or cls.config_class()
    settings = settings or cls.settings_class()
    if config.units not in UNITS:
        raise ValueError(f"units={config.units!r} is not one of {list(UNITS)}")
    device = pick_device(device)
    train_idx = [int(i) for i in train_idx]
    if not train_idx:
        raise ValueError("train_sequence_recognizer got no training clips (train_idx is empty)")
    codes = clip_languages(cache)
    texts = [cache.texts[i] for i in train_idx]
    # Each clip's text in its language's units (Spanish "llave": ll, a, v, e).
    targets = [tuple(text_units(cache.texts[i], config.units, codes[i])) for i in train_idx]
    # Every unit of the corpus has an output, also one only held-out clips show (never
    # trained, so rarely read): the reader then fits the corpus it was made for.
    per_language = language_units(cache.texts, codes, config.units)
    vocab = sorted({u for units in per_language.values() for u in units})
    if not vocab:
        raise ValueError("the training texts are all empty: nothing to recognize")
    clips = load_clips(cache, train_idx, config.size)  # read a batch at a time
    if config.frames is None:
        short = [t for t, units, n in zip(texts, targets, clips.lengths, strict=True)
                 if n < len(units)]
        if short:  # CTC needs a step per unit: these would train on nothing
            raise ValueError(f"{len(short)} training clips have fewer frames than their text has "
                             f"units (e.g. {short[0]!r}); use a higher frame rate")
    reader = cls.train_new(vocab, config, clips, targets, settings, device, progress,
                           time_jitter=settings.time_jitter)
    if set(per_language) != {DEFAULT_LANGUAGE}:  # a reader of ASL alone reads as it always has
        reader.languages = per_language
    return reader


def clip_languages(cache: Any) -> list[str]:
    """Each clip's sign language (`ClipCache.languages`, from its OUT/<code>/ folder); ASL for
    a cache that names none."""
    return list(getattr(cache, "languages", None) or [DEFAULT_LANGUAGE] * len(cache.texts))


def language_units(texts: Sequence[str], languages: Sequence[str], units: str = "chars"
                   ) -> dict[str, list[str]]:
    """The units of each sign language's texts, sorted, languages in sorted order: the outputs
    a reader may read in a clip of that language (the space, when a text holds one)."""
    out: dict[str, set[str]] = {}
    for text, code in zip(texts, languages, strict=True):
        out.setdefault(code, set()).update(text_units(text, units, code))
    return {code: sorted(out[code]) for code in sorted(out)}


def read_clips(recognizer: SequenceRecognizer, cache: Any, indices: list[int],
               batch_size: int = 32) -> list[str]:
    """The recognizer's reading of real clips ``indices`` of a cache, each in its language."""
    codes = clip_languages(cache)
    out: list[str] = []
    for start in range(0, len(indices), batch_size):
        part = [int(i) for i in indices[start:start + batch_size]]
        chunk = [cache[i] for i in part]  # lengths may differ
        out += [text for text, _ in recognizer.read(chunk, batch_size, [codes[i] for i in part])]
        release_freed_memory()  # the batch's temporaries, not kept by the heap (a text a clip is)
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


def corpus_units(cache: Any) -> str:
    """The units a cache's texts are read in: `default_units` of the folder it was made from."""
    source = cache.index.get("source", cache.path) if hasattr(cache, "index") else cache.path
    return default_units(source)


def load_or_train_sequence_recognizer(
    cache: Any, val_fraction: float = VAL_FRACTION, holdout: float = 0.0, *,
    units: str | None = None, frames: int | None = None,
    settings: Any = None, device: str | torch.device | None = None,
    folder: str | Path | None = None, progress: bool = True,
    reader_class: type[SequenceRecognizer] | None = None,
) -> SequenceRecognizer:
    """The corpus's reader (``reader_class``, this module's by default), trained once on the
    training clips of its training texts (the clips the generator learns from) and cached
    beside the clip cache. A cache of clips of their own lengths (``cache.variable``) gets one
    that reads every clip at its own length, unless ``frames`` says otherwise."""
    cls = reader_class or SequenceRecognizer
    settings = settings or cls.settings_class()
    units = units or corpus_units(cache)
    variable = getattr(cache, "variable", False)
    config = cls.config_class(frames=frames or (None if variable else cache.clip_shape[0]),
                              units=units)
    device = pick_device(device)
    wanted = {**dataclasses.asdict(settings), "config": dataclasses.asdict(config),
              "val_fraction": val_fraction, "holdout": holdout,
              "fingerprint": cache.fingerprint}
    languages = sorted(set(clip_languages(cache)))
    if len(languages) > 1:  # read per language: a reader cached before that is retrained
        wanted["languages"] = languages
    folder = (Path(folder) if folder is not None
              else Path(cache.path) / f"{cls.cache_prefix}-{cache.fingerprint[:12]}")

    def train() -> tuple[SequenceRecognizer, dict[str, Any]]:
        train_idx, _, _ = cache.split_by_text(val_fraction, holdout)
        start, cpu = time.perf_counter(), time.process_time()
        recognizer = train_sequence_recognizer(cache, train_idx, config=config,
                                               settings=settings, device=device,
                                               progress=progress, reader_class=cls)
        metrics = {"train_clips": len(train_idx),
                   "train_seconds": round(time.perf_counter() - start, 1), "device": str(device),
                   "threads": torch.get_num_threads(),
                   "cpu_seconds": round(time.process_time() - cpu, 1)}  # all threads
        if variable:
            lengths = [cache.lengths[i] for i in train_idx]
            metrics["train_frames"] = {"min": min(lengths), "median": float(np.median(lengths)),
                                       "max": max(lengths)}
        return recognizer, metrics

    return cls.load_or_train(folder, wanted, device, progress, train)
