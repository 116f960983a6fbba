"""Read and write clips as uint8 (T, H, W, 3) arrays: GIF (Pillow), MP4/WebM (PyAV), PNG sheets.

GIF writing goes frame by frame through Pillow's GIF encoder primitives instead of
``Image.save(save_all=True)``: the latter merges identical consecutive frames (a padded clip
would lose frames) and re-quantizes every frame with its own palette (colour flicker).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

GIF_MAX_FPS = 50.0  # GIF delays are centiseconds; browsers show delays <= 10 ms as 100 ms


def _check_frames(frames: np.ndarray, what: str) -> np.ndarray:
    """Validate a uint8 (T, H, W, 3) clip, the on-disk convention."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not frames.shape[0]:
        raise ValueError(
            f"{what} needs uint8 frames of shape (T, H, W, 3) with T >= 1, got "
            f"{frames.dtype} {tuple(frames.shape)}; convert with "
            "((x.clamp(-1, 1) + 1) * 127.5).round().byte() and put channels last"
        )
    return frames


def _gif_palette(frames: np.ndarray):
    """One palette for the whole clip: exact when it has <= 256 colours, median cut otherwise."""
    from PIL import Image

    flat = frames.reshape(-1, 3)  # (T*H*W, 3)
    step = max(1, flat.shape[0] // 2_000_000)  # bound the cost of the colour census
    colors = np.unique(flat[::step], axis=0)  # (K, 3)
    if colors.shape[0] <= 256 and step == 1:
        table = colors
    else:
        sample = Image.fromarray(flat[::step][None])  # (1, N, 3) image of sampled pixels
        quant = sample.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        used = len(quant.getcolors(256) or []) or 256
        table = np.asarray(quant.getpalette()[: 3 * used], np.uint8).reshape(-1, 3)  # (K, 3)
    palette = Image.new("P", (1, 1))
    palette.putpalette(table.reshape(-1).tolist())
    return palette


def _gif_delays_cs(num_frames: int, fps: float) -> list[int]:
    """Per-frame delays in centiseconds whose running sum tracks i / fps (no drift)."""
    ticks = [round(i * 100.0 / fps) for i in range(num_frames + 1)]
    return [max(2, b - a) for a, b in zip(ticks, ticks[1:], strict=False)]


def write_gif(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write an endlessly looping GIF with one shared palette, no dithering, exact frame count."""
    from PIL import GifImagePlugin, Image

    frames = _check_frames(frames, "write_gif")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= GIF_MAX_FPS):
        raise ValueError(
            f"write_gif fps={fps!r} must be in (0, {GIF_MAX_FPS:g}]: GIF delays are whole "
            "centiseconds and browsers slow delays under 20 ms down to 100 ms; "
            "write an .mp4 for higher frame rates"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    palette = _gif_palette(frames)
    delays = _gif_delays_cs(len(frames), float(fps))
    indexed = [
        Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE)
        for frame in frames
    ]
    header, _ = GifImagePlugin.getheader(indexed[0], info={"loop": 0, "duration": 1})
    chunks = list(header)
    for image, delay in zip(indexed, delays, strict=True):
        # disposal 1 (keep): every frame covers the whole canvas, so nothing shows through
        chunks += GifImagePlugin.getdata(image, duration=delay * 10, disposal=1)
    chunks.append(b";")  # GIF trailer
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(b"".join(chunks))
    tmp.replace(path)
    return path
