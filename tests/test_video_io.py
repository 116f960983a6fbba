"""GIF/MP4 reading and writing on clips made in code."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageSequence

from text2sign.data.video_io import write_gif


def _palette_clip(t: int = 6, h: int = 20, w: int = 30, colors: int = 50) -> np.ndarray:
    rng = np.random.default_rng(0)
    table = rng.integers(0, 256, (colors, 3), dtype=np.uint8)
    return table[rng.integers(0, colors, (t, h, w))]  # (T, H, W, 3)


def test_write_gif_exact_frames_durations_and_loop(tmp_path):
    clip = _palette_clip()
    clip[4] = clip[3]  # identical consecutive frames must stay separate frames
    path = write_gif(tmp_path / "sub" / "a.gif", clip, fps=25)
    with Image.open(path) as im:
        assert im.info["loop"] == 0
        frames = [
            (np.array(f.convert("RGB")), f.info["duration"]) for f in ImageSequence.Iterator(im)
        ]
    assert len(frames) == len(clip)
    assert [d for _, d in frames] == [40] * len(clip)
    for (got, _), want in zip(frames, clip, strict=True):
        np.testing.assert_array_equal(got, want)  # <= 256 colours: lossless, no dithering


def test_write_gif_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="fps"):
        write_gif(tmp_path / "a.gif", _palette_clip(), fps=60)
    with pytest.raises(ValueError, match="uint8"):
        write_gif(tmp_path / "a.gif", np.zeros((2, 4, 4, 3), np.float32), fps=10)
