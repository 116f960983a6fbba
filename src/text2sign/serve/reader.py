"""Reading a clip back into text: the page shows what each reader sees in each generated clip.

A reader is any callable ``read(clip, language) -> (text, confidence)`` taking one uint8 clip
(T, H, W, 3), confidence in [0, 1]. The server holds an ordered ``{name: reader}`` and knows
nothing else about them: the readers of `evaluation.readers` (either architecture) and the
project's clip classifier plug in through :func:`load_readers`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from text2sign.core.units import DEFAULT_LANGUAGE
from text2sign.evaluation import readers
from text2sign.evaluation.metrics import text_units
from text2sign.evaluation.recognizer import Recognizer


class Reading(NamedTuple):
    text: str
    confidence: float  # in [0, 1]


# (clip, its sign language) -> a Reading or any (text, confidence)
Reader = Callable[[np.ndarray, str], "tuple[str, float]"]

def classifier_reader(recognizer: Any) -> Reader:
    """Top-1 class of the project's clip classifier and its softmax probability."""

    def read(clip: np.ndarray, language: str = DEFAULT_LANGUAGE) -> Reading:
        logits = recognizer.predict_logits(clip[None])[0]  # (classes,)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(probs.argmax())
        return Reading(recognizer.classes[best], float(probs[best]))

    return read


def sequence_reader(recognizer: Any) -> Reader:
    """A reader's reading of one clip (any text, spelled or glossed) and its confidence; a reader
    of several sign languages reads it in the letters of the clip's language only."""

    def read(clip: np.ndarray, language: str = DEFAULT_LANGUAGE) -> Reading:
        text, confidence = recognizer.read(clip[None], languages=language)[0]
        return Reading(text, confidence)

    return read


def same_text(a: str, b: str) -> bool:
    """Whether two texts read the same, case and runs of spaces aside (as `exact` scores)."""
    return text_units(a, "chars") == text_units(b, "chars")


def is_reader_folder(folder: Path) -> bool:
    """A folder of either reader architecture, or of the clip classifier."""
    classifier = ((folder / Recognizer.config_name).is_file()
                  and (folder / Recognizer.weights_name).is_file())
    return readers.is_reader_folder(folder) or classifier


def load_readers(folders: Sequence[Path], device: str = "cpu",
                 texts: Sequence[str] | None = None) -> tuple[dict[str, Reader], dict[str, str]]:
    """The readers of ``folders`` by name (the architecture, numbered when two share one;
    ``classifier`` for the clip classifier), in order, and the folder of each. With ``texts``
    (the corpus's), a reader with no output for some of their units is refused."""
    loaded: dict[str, Reader] = {}
    where: dict[str, str] = {}
    for folder in folders:
        if readers.is_reader_folder(folder):
            recognizer = readers.load_reader(folder, device)
            if texts is not None:
                try:
                    readers.check_fits(recognizer, list(texts), recognizer.units)
                except ValueError as err:
                    raise ValueError(f"reader {str(folder)!r}: {err}; or serve without it "
                                     "(--recognizer DIR, --no-recognizer)") from None
            name = readers.reader_name(recognizer, set(loaded))
            loaded[name] = sequence_reader(recognizer)
        else:
            name = "classifier" if "classifier" not in loaded else f"classifier-{len(loaded) + 1}"
            loaded[name] = classifier_reader(Recognizer.load(folder, device))
        where[name] = str(folder)
    return loaded, where


def find_reader_folders(model_folder: Path, corpus_cache: Path | None) -> list[Path]:
    """The readers that belong to a model (`evaluation.readers.find_reader_folders`: its own,
    the shipped ones for the shipped model, else the newest of each architecture beside the
    corpus's clip cache); else a clip classifier the model keeps, or the newest one beside the
    cache; else none."""
    found = readers.find_reader_folders(model_folder, corpus_cache)
    own = [Path(model_folder) / name for name in readers.MODEL_READERS
           if is_reader_folder(Path(model_folder) / name)]  # a classifier the model keeps
    if found or own or corpus_cache is None or not corpus_cache.is_dir():
        return found or own
    classifiers = [p for p in corpus_cache.glob("recognizer-*") if is_reader_folder(p)]
    return sorted(classifiers, key=lambda p: p.stat().st_mtime, reverse=True)[:1]
