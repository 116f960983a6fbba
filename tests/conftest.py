"""Shared test fixtures and helpers: a tiny corpus made in code, the tiny run config, a run's
logged losses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

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
