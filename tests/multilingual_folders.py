"""A tiny model of two sign languages, made in code: a corpus of OUT/ase/ and OUT/gsg/ clips
(coloured squares; the German one also spells "Ä", a letter ASL lacks) and the tiny preset
trained on it for a few steps, so `text.languages` comes from the corpus's folders.

Shared by the tests of the surfaces that take a language (sample, serve, info).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from text2sign.data.video_io import write_gif
from text2sign.model_folder.build import build_config

# language -> text -> (its move, its colour)
TEXTS = {
    "ase": {"A": ((1, 0), (255, 0, 0)), "B": ((0, 1), (0, 255, 0)), "C": ((1, 1), (0, 0, 255))},
    "gsg": {"A": ((0, 1), (255, 0, 0)), "B": ((1, 0), (0, 255, 0)), "Ä": ((1, 1), (255, 255, 0))},
}
LANGUAGES = ["ase", "gsg"]


def make_two_language_corpus(root: Path, size: int = 16, frames: int = 4) -> Path:
    """root/<code>/NAME.gif + NAME.txt, two clips of each text of each language."""
    for code, texts in TEXTS.items():
        for text, ((dx, dy), colour) in texts.items():
            for k in range(2):
                video = np.zeros((frames, size, size, 3), np.uint8)
                for t in range(frames):
                    x, y = 2 + k + dx * t * 2, 2 + dy * t * 2
                    video[t, y:y + 5, x:x + 5] = colour
                write_gif(root / code / f"{text}-{k}.gif", video, fps=8)
                (root / code / f"{text}-{k}.txt").write_text(text, encoding="utf-8")
    return root


def train_two_language_model(root: Path, steps: int = 2) -> Path:
    """The tiny preset trained ``steps`` steps on `make_two_language_corpus`; its model folder."""
    from text2sign.training.loop import train  # torch, accelerate: only when a test trains

    corpus = make_two_language_corpus(root / "corpus")
    cfg = build_config("tiny", overrides=[f"data.path={corpus}", "data.val_fraction=0",
                                          "train.sample_every=0", f"train.max_steps={steps}",
                                          "train.checkpoint_every=0"])
    return train(cfg, root / "run", progress=False, device="cpu")
