"""Where the files shipped inside the package live: the demo model, its recognizer, word lists."""

from __future__ import annotations

from pathlib import Path

from text2sign.checkpoint import find_model_folder

ASSETS = Path(__file__).resolve().parent / "assets"


def model() -> Path:
    """The demo model (letters, latent unet3d) inside the installed package."""
    return ASSETS / "demo-model"


def recognizer() -> Path:
    """The sequence recognizer shipped beside it, trained on the ASL words corpus."""
    return ASSETS / "recognizer"


def word_list(name: str) -> Path:
    """A built-in word list (``words-<name>.txt``)."""
    return ASSETS / f"words-{name}.txt"


def model_or_shipped(name: str | Path | None) -> Path:
    """The model folder a command was given, or the shipped one when none was: one default
    for sample, evaluate, info and serve."""
    return find_model_folder(model() if name is None else name)
