"""Where the files shipped inside the package live: the demo model, its recognizer, word and
phrase lists."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"


SHIPPED = "shipped:"  # a model named shipped:NAME is one of these, wherever text2sign is installed


def model() -> Path:
    """The demo model (ASL letters and words, 28 frames at 128x128, latent unet3d with text
    order aligned to time) inside the installed package."""
    return ASSETS / "demo-model"


def letters_model() -> Path:
    """The letters model (16 frames at 64x64) the words model started from
    (configs/asl-words.yaml: model.init_from: shipped:letters)."""
    return ASSETS / "letters-model"


MODELS = {"demo": model, "words": model, "letters": letters_model}


def model_path(name: str | Path) -> Path:
    """A model path as given, or ``shipped:demo`` / ``shipped:words`` / ``shipped:letters``."""
    text = str(name)
    if not text.startswith(SHIPPED):
        return Path(name)
    key = text[len(SHIPPED):]
    if key not in MODELS:
        raise ValueError(f"{text!r} is not a shipped model; choose one of "
                         f"{[SHIPPED + k for k in MODELS]}, or give a model folder's path")
    return MODELS[key]()


def recognizer() -> Path:
    """The sequence recognizer shipped beside it: trained on the ASL phrases corpus (letters,
    words, long words, phrases) at 6.25 fps, reading each clip at its own length."""
    return ASSETS / "recognizer"


def fixed_recognizer() -> Path:
    """The sequence recognizer of models made at 28 frames: trained on the ASL words corpus,
    reading every clip resampled to 28 frames."""
    return ASSETS / "recognizer-28f"


def word_list(name: str) -> Path:
    """A built-in word list (``words-<name>.txt``: en, en-long, en-phrases)."""
    return ASSETS / f"words-{name}.txt"
