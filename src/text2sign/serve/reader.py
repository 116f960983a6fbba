"""Reading a clip back into text: the page shows what a recognizer sees in each generated clip.

A reader is any callable ``read(clip) -> (text, confidence)`` taking one uint8 clip
(T, H, W, 3), confidence in [0, 1]. The server knows nothing else about it, so a sequence
recognizer (one that spells out words) plugs in by adding one branch to :func:`load_reader`
for its folder format.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from text2sign.evaluation.recognizer import Recognizer
from text2sign.evaluation.sequence import SequenceRecognizer
from text2sign.model_folder import shipped


class Reading(NamedTuple):
    text: str
    confidence: float  # in [0, 1]


Reader = Callable[[np.ndarray], "tuple[str, float]"]  # a Reading or any (text, confidence)


def classifier_reader(recognizer: Any) -> Reader:
    """Top-1 class of the project's clip classifier and its softmax probability."""

    def read(clip: np.ndarray) -> Reading:
        logits = recognizer.predict_logits(clip[None])[0]  # (classes,)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(probs.argmax())
        return Reading(recognizer.classes[best], float(probs[best]))

    return read


def sequence_reader(recognizer: Any) -> Reader:
    """The CTC sequence recognizer's greedy reading (any text, spelled) and its confidence."""

    def read(clip: np.ndarray) -> Reading:
        text, confidence = recognizer.read(clip[None])[0]
        return Reading(text, confidence)

    return read


def load_reader(folder: str | Path, device: str = "cpu") -> Reader:
    """A reader from a sequence recognizer folder (sequence.json + .safetensors) or a
    classifier folder (recognizer.json + recognizer.safetensors)."""
    if (Path(folder) / SequenceRecognizer.config_name).is_file():
        return sequence_reader(SequenceRecognizer.load(folder, device))
    return classifier_reader(Recognizer.load(folder, device))


def is_reader_folder(folder: Path) -> bool:
    return any((folder / kind.config_name).is_file() and (folder / kind.weights_name).is_file()
               for kind in (SequenceRecognizer, Recognizer))


def find_reader_folder(model_folder: Path, corpus_cache: Path | None) -> Path | None:
    """A recognizer that belongs to the model: ``MODEL/recognizer/``, the one shipped beside
    the shipped model, else one `evaluate` and `demo` trained next to the corpus's clip cache
    (sequence recognizers first, newest first), else None."""
    candidates = [model_folder / "recognizer"]
    if shipped.is_shipped(model_folder):
        candidates += [shipped.recognizer(), shipped.fixed_recognizer()]
    if corpus_cache is not None and corpus_cache.is_dir():
        for pattern in ("sequence-*", "recognizer-*"):
            found = [p for p in corpus_cache.glob(pattern) if p.is_dir()]
            candidates += sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
    return next((c for c in candidates if is_reader_folder(c)), None)
