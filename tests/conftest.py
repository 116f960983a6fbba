"""Shared test fixtures and helpers: a tiny corpus made in code, the tiny run config, a run's
logged losses, the resume recipe (a run as a kill left it, continued), and the stand-in clip
cache of toy corpora."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from text2sign.data.cache import holdout_texts
from text2sign.data.video_io import write_gif
from text2sign.model_folder.build import build_config


@pytest.fixture(scope="module")
def one_thread():
    """Toy tensors gain nothing from threads, and on a busy 2-core machine OpenMP spinning
    made a 2 s training take 40 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_corpus(root: Path, size: int = 16, frames: int = 4) -> Path:
    """Three texts, each a differently coloured square moving its own way, two clips each."""
    moves = {"A": (1, 0), "B": (0, 1), "C": (1, 1)}
    colours = {"A": (255, 0, 0), "B": (0, 255, 0), "C": (0, 0, 255)}
    for text, (dx, dy) in moves.items():
        for k in range(2):
            video = np.zeros((frames, size, size, 3), np.uint8)
            for t in range(frames):
                x, y = 2 + k + dx * t * 2, 2 + dy * t * 2
                video[t, y:y + 5, x:x + 5] = colours[text]
            write_gif(root / f"{text}-{k}.gif", video, fps=8)
            (root / f"{text}-{k}.txt").write_text(text)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def tiny_config(data: Path, **train):
    sets = [f"data.path={data}", "data.val_fraction=0", "train.sample_every=0"]
    sets += [f"train.{k}={v}" for k, v in train.items()]
    return build_config("tiny", overrides=sets)


def losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["train/loss"]) for r in rows]


def killed_after(run: Path, step: int, part: Path, *keep: str) -> Path:
    """``part``: the run in ``run`` as a kill right after ``step`` would have left it, its
    checkpoint of that step, config.yaml and the folders ``keep`` names (e.g. "autoencoder");
    continue it with ``resume=True`` and compare with `same_tensors`."""
    name = f"step-{step:06d}"
    shutil.copytree(run / "checkpoints" / name, part / "checkpoints" / name)
    for folder in keep:
        shutil.copytree(run / folder, part / folder)
    shutil.copy(run / "config.yaml", part / "config.yaml")
    return part


def same_tensors(a: Path, b: Path) -> bool:
    """Whether two safetensors files hold the same names and bit-identical tensors."""
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


class ListCache:
    """Stand-in for data.cache.ClipCache over clips made in code: indexable uint8 clips, their
    texts, the split (every fourth clip for validation), the split by text, a fingerprint."""

    def __init__(self, path, texts: list[str], clips: list[np.ndarray], fingerprint: str):
        self.path, self.texts, self.clips, self.fingerprint = path, texts, clips, fingerprint

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.clips[i]

    def split(self, val_fraction: float) -> tuple[list[int], list[int]]:
        val = [i for i in range(len(self)) if i % 4 == 0] if val_fraction > 0 else []
        return [i for i in range(len(self)) if i not in val], val

    def split_by_text(self, val_fraction, holdout):
        held = holdout_texts(self.texts, holdout)
        train, val = self.split(val_fraction)
        return ([i for i in train if self.texts[i] not in held],
                [i for i in val if self.texts[i] not in held],
                [i for i, t in enumerate(self.texts) if t in held])
