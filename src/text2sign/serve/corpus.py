"""The model's corpus, when at hand: real clips beside generated ones, and its texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from text2sign.core.units import DEFAULT_LANGUAGE, clip_language
from text2sign.data.cache import ClipCache, default_cache_dir, is_cache
from text2sign.data.clips import shape_clip
from text2sign.data.folder import scan_folder
from text2sign.data.video_io import VideoReadError, read_video


class Corpus:
    """Texts and clips of a clip folder (NAME.gif + NAME.txt) or a prepared clip cache, each
    clip in its sign language (its OUT/<code>/ folder, else ASL: `units.clip_language`).

    Only the .txt files are read up front; a real clip is decoded when it is asked for.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._cache = ClipCache.open(self.path) if is_cache(self.path) else None
        # (text, language) -> cache indices or video paths
        self._clips: dict[tuple[str, str], list[Any]] = {}
        if self._cache is not None:
            for i, (text, code) in enumerate(zip(self._cache.texts, self._cache.languages,
                                                 strict=True)):
                self._clips.setdefault((text, code), []).append(i)
        else:
            scan = scan_folder(self.path, decode=False)
            for pair in scan.good:
                code = clip_language(scan.relative(pair.video))
                self._clips.setdefault((pair.text, code), []).append(pair.video)

    @property
    def texts(self) -> set[str]:
        """The texts of every language."""
        return {text for text, _ in self._clips}

    def __len__(self) -> int:
        return sum(len(v) for v in self._clips.values())

    def cache_dir(self, frames: int, size: int, time_mode: str, fit: str,
                  fps: float | None = None) -> Path:
        """Where the clip cache of these settings lives (readers may be cached there); in the
        "fps" ``time_mode``, ``frames`` is the most frames a clip may have."""
        if self._cache is not None:
            return self.path
        return default_cache_dir(self.path, frames, size, time_mode, fit, fps)

    def has(self, text: str, language: str = DEFAULT_LANGUAGE) -> bool:
        """Whether the corpus has a clip of ``text`` in ``language``."""
        return (text, language) in self._clips

    def real_clip(self, text: str, frames: int, size: int, time_mode: str = "resample",
                  fit: str = "crop", fps: float | None = None,
                  language: str = DEFAULT_LANGUAGE) -> np.ndarray | None:
        """The first real clip of ``text`` in ``language`` shaped like the model's clips (uint8
        (T, S, S, 3)), or None when the corpus has no clip of it or it no longer decodes."""
        for where in self._clips.get((text, language), []):
            try:
                if self._cache is not None:
                    clip, source_fps = self._cache[where], self._cache.data_fps or 25.0
                else:
                    clip, source_fps = read_video(where)
            except (OSError, VideoReadError):
                continue  # the file changed since the scan: try the next clip of this text
            return shape_clip(clip, frames, size, time_mode, fit, source_fps=source_fps, fps=fps)
        return None

