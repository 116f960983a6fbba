"""Where the files shipped inside the package live: the demo model, its recognizer, word lists."""

from __future__ import annotations

from pathlib import Path

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
