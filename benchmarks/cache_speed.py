"""Decode-every-GIF epoch vs cached epoch, on a synthetic folder of realistic GIFs.

    python benchmarks/cache_speed.py [--clips 48 --frames 28 --height 180 --width 320 --size 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from text2sign.data.cache import prepare_cache
from text2sign.data.clips import shape_clip
from text2sign.data.folder import scan_folder
from text2sign.data.video_io import read_video, write_gif


def synthetic_clip(rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
    """A textured background with a moving disc and a moving bar (like an upper body and hand)."""
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 255 // width, yy * 255 // height,
                           np.full_like(xx, rng.integers(0, 255))], -1)  # (H, W, 3)
    background = background + rng.integers(0, 24, (height, width, 3))  # sensor-like noise
    out = np.empty((frames, height, width, 3), np.uint8)  # (T, H, W, 3)
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    for t in range(frames):
        phase = 2 * np.pi * t / frames
        frame = background.copy()
        disc = (yy - cy - 20 * np.sin(phase)) ** 2 + (xx - cx - 40 * np.cos(phase)) ** 2
        frame[disc < (height / 6) ** 2] = (230, 190, 160)
        bar = slice(int(10 + 60 * (1 + np.sin(phase))) % (width - 20), None)
        frame[height // 2 : height // 2 + 15, bar][:, :20] = (40, 40, 200)
        out[t] = np.clip(frame, 0, 255)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--frames", type=int, default=28)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "clips"
        for i in range(args.clips):
            write_gif(root / f"clip{i:04d}.gif",
                      synthetic_clip(rng, args.frames, args.height, args.width), fps=25)
            (root / f"clip{i:04d}.txt").write_text(f"clip {i}")
        pairs = scan_folder(root, decode=False).good

        start = time.perf_counter()
        for pair in pairs:
            frames, _ = read_video(pair.video)
            shape_clip(frames, args.frames, args.size)
        decode_s = time.perf_counter() - start

        start = time.perf_counter()
        cache = prepare_cache(root, args.frames, args.size, progress=False)
        prepare_s = time.perf_counter() - start

        start = time.perf_counter()
        total = 0
        for i in range(len(cache)):
            total += int(cache[i][0, 0, 0, 0])  # touch the data
        cached_s = time.perf_counter() - start

    n = len(pairs)
    print(f"{n} clips, {args.frames}x{args.height}x{args.width} GIFs -> "
          f"{args.frames}x{args.size}x{args.size} uint8\n")
    print("| epoch | seconds | clips/s |")
    print("|---|---|---|")
    print(f"| decode + shape every GIF | {decode_s:.3f} | {n / decode_s:.1f} |")
    print(f"| read cached clips (memmap) | {cached_s:.4f} | {n / cached_s:.0f} |")
    print(f"| (one-off prepare) | {prepare_s:.3f} | {n / prepare_s:.1f} |")
    print(f"\ncached epoch is {decode_s / cached_s:.0f}x faster than decoding")


if __name__ == "__main__":
    main()
