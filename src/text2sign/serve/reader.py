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


def load_reader(folder: str | Path, device: str = "cpu") -> Reader:
    """A reader from a recognizer folder (recognizer.json + recognizer.safetensors)."""
    from text2sign.evaluation.recognizer import Recognizer

    return classifier_reader(Recognizer.load(folder, device))


def is_reader_folder(folder: Path) -> bool:
    from text2sign.evaluation.recognizer import CONFIG_NAME, WEIGHTS_NAME

    return (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()


def find_reader_folder(model_folder: Path, corpus_cache: Path | None) -> Path | None:
    """A recognizer that belongs to the model: ``MODEL/recognizer/``, else the one `evaluate`
    and `demo` trained next to the corpus's clip cache (newest first), else None."""
    candidates = [model_folder / "recognizer"]
    if corpus_cache is not None and corpus_cache.is_dir():
        found = [p for p in corpus_cache.glob("recognizer-*") if p.is_dir()]
        candidates += sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
    return next((c for c in candidates if is_reader_folder(c)), None)
