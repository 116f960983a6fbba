"""The model's corpus, when at hand: real clips beside generated ones, and its texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from text2sign.data.cache import ClipCache, default_cache_dir, is_cache
from text2sign.data.clips import shape_clip
from text2sign.data.folder import scan_folder
from text2sign.data.video_io import VideoReadError, read_video


class Corpus:
    """Texts and clips of a clip folder (NAME.gif + NAME.txt) or a prepared clip cache.

    Only the .txt files are read up front; a real clip is decoded when it is asked for.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._cache = ClipCache.open(self.path) if is_cache(self.path) else None
        self._clips: dict[str, list[Any]] = {}  # text -> cache indices or video paths
        if self._cache is not None:
            for i, text in enumerate(self._cache.texts):
                self._clips.setdefault(text, []).append(i)
        else:
            for pair in scan_folder(self.path, decode=False).good:
                self._clips.setdefault(pair.text, []).append(pair.video)

    @property
    def texts(self) -> set[str]:
        return set(self._clips)

    def __len__(self) -> int:
        return sum(len(v) for v in self._clips.values())

    def cache_dir(self, frames: int, size: int, time_mode: str, fit: str,
                  fps: float | None = None) -> Path:
        """Where the clip cache of these settings lives (readers may be cached there); in the
        "fps" ``time_mode``, ``frames`` is the most frames a clip may have."""
        if self._cache is not None:
            return self.path
        return default_cache_dir(self.path, frames, size, time_mode, fit, fps)

    def real_clip(self, text: str, frames: int, size: int, time_mode: str = "resample",
                  fit: str = "crop", fps: float | None = None) -> np.ndarray | None:
        """The first real clip of ``text`` shaped like the model's clips (uint8 (T, S, S, 3)),
        or None when the corpus has no clip of it or it no longer decodes."""
        for where in self._clips.get(text, []):
            try:
                if self._cache is not None:
                    clip, source_fps = self._cache[where], self._cache.data_fps or 25.0
                else:
                    clip, source_fps = read_video(where)
            except (OSError, VideoReadError):
                continue  # the file changed since the scan: try the next clip of this text
            return shape_clip(clip, frames, size, time_mode, fit, source_fps=source_fps, fps=fps)
        return None

