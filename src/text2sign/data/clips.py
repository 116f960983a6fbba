"""Shape uint8 (T, H, W, 3) clips to a frame count or a frame rate and a size, never mirroring or
distorting."""

from __future__ import annotations

import numpy as np
from PIL import Image

TIME_MODES = ("resample", "truncate", "fps")
COUNT_MODES = ("resample", "truncate")  # every clip gets one frame count; "fps" keeps its length
FITS = ("crop", "letterbox")


def _check_clip(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not frames.shape[0]:
        raise ValueError(f"expected uint8 frames of shape (T, H, W, 3) with T >= 1, got "
                         f"{frames.dtype} {tuple(frames.shape)}")
    return frames


def fit_time(frames: np.ndarray, num_frames: int, mode: str = "resample") -> np.ndarray:
    """Make exactly ``num_frames`` frames: pick them uniformly over the whole clip (first and
    last frame included), or keep the first ones and pad by repeating the last (never black)."""
    frames = _check_clip(frames)
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames={num_frames!r} must be a positive integer")
    if mode not in COUNT_MODES:
        raise ValueError(f"time mode {mode!r} is not one of {list(COUNT_MODES)}")
    t = len(frames)
    if mode == "resample":
        index = np.linspace(0, t - 1, num_frames).round().astype(np.int64)  # (num_frames,)
    else:
        index = np.minimum(np.arange(num_frames), t - 1)  # (num_frames,) last frame repeated
    return frames[index]  # (num_frames, H, W, 3)


def rate_length(seconds: float, fps: float) -> int:
    """Frames a clip of ``seconds`` gets at ``fps``: at least one."""
    return max(1, round(seconds * fps))


def fit_rate(frames: np.ndarray, source_fps: float, fps: float, max_frames: int
             ) -> tuple[np.ndarray, bool]:
    """Resample to ``fps`` frames a second, keeping the clip's duration: frame k shows the
    source frame at the middle of its 1/fps interval. A clip longer than ``max_frames`` at
    that rate is resampled uniformly to ``max_frames`` instead; the flag says it was squeezed."""
    frames = _check_clip(frames)
    if not source_fps > 0 or not fps > 0:
        raise ValueError(f"source fps {source_fps!r} and fps {fps!r} must be positive")
    t = len(frames)
    count = rate_length(t / source_fps, fps)
    if count > max_frames:
        return fit_time(frames, max_frames, "resample"), True
    times = (np.arange(count) + 0.5) / fps  # (count,) seconds, centre of each output frame
    index = np.minimum((times * source_fps).astype(np.int64), t - 1)  # (count,)
    return frames[index], False  # (count, H, W, 3)


def _target(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if height < 1 or width < 1:
        raise ValueError(f"size={size!r} must be a positive int or a (height, width) pair")
    return int(height), int(width)


def fit_space(frames: np.ndarray, size: int | tuple[int, int], fit: str = "crop") -> np.ndarray:
    """Resize to (H, W) keeping the aspect ratio: "crop" fills and center-crops the overflow,
    "letterbox" fits inside and pads with black bars. Antialiased (Pillow bicubic)."""
    frames = _check_clip(frames)
    if fit not in FITS:
        raise ValueError(f"fit {fit!r} is not one of {list(FITS)}")
    height, width = _target(size)
    t, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return frames
    resample = Image.Resampling.BICUBIC
    if fit == "crop":
        # the largest centered source box with the target aspect ratio, resized in one pass
        scale = min(w / width, h / height)
        bw, bh = width * scale, height * scale
        box = ((w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2)
        out = [np.asarray(Image.fromarray(f).resize((width, height), resample, box=box))
               for f in frames]
        return np.stack(out)  # (T, height, width, 3)
    scale = min(width / w, height / h)
    rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
    top, left = (height - rh) // 2, (width - rw) // 2
    out = np.zeros((t, height, width, 3), np.uint8)  # (T, height, width, 3) black bars
    for i, f in enumerate(frames):
        out[i, top : top + rh, left : left + rw] = np.asarray(
            Image.fromarray(f).resize((rw, rh), resample))
    return out


def shape_clip(frames: np.ndarray, num_frames: int, size: int | tuple[int, int],
               time_mode: str = "resample", fit: str = "crop", *, source_fps: float = 25.0,
               fps: float | None = None) -> np.ndarray:
    """Time first (fewer frames to resize), then space: uint8 (T, H, W, 3). In the "fps" mode
    ``num_frames`` is the most frames a clip may have and ``fps`` the rate (`fit_rate`)."""
    if time_mode == "fps":
        if fps is None:
            raise ValueError('time_mode="fps" needs fps, the frame rate clips are resampled to')
        timed, _ = fit_rate(frames, source_fps, fps, num_frames)
    else:
        timed = fit_time(frames, num_frames, time_mode)
    return fit_space(timed, size, fit)
