"""Turn a clip folder or a prepared cache into a torch Dataset of float clips in [-1, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from text2sign.core.config import DataConfig
from text2sign.data.cache import ClipCache, is_cache, prepare_cache


def open_clips(path: str | Path, frames: int, size: int, time_mode: str = "resample",
               fit: str = "crop", cache: str | Path | None = None,
               progress: bool = True, fps: float | None = None) -> ClipCache:
    """A raw folder is prepared (or its cache reused, its shards checked but no clip read: the
    cost of opening grows with the index, not the corpus's bytes); a cache folder is opened and
    checked.
    In the "fps" ``time_mode``, ``frames`` is the most frames a clip may have."""
    path = Path(path)
    if is_cache(path):
        clips = ClipCache.open(path)
        asked = {"frames": frames, "size": size, "time_mode": time_mode, "fit": fit}
        have = {k: getattr(clips, k) for k in asked}
        if time_mode == "fps":
            asked["fps"], have["fps"] = fps, clips.data_fps
        names = {"frames": "max_frames" if time_mode == "fps" else "frames"}
        if have != asked:
            diff = ", ".join(f"{names.get(k, k)}={have[k]!r} (asked {asked[k]!r})"
                             for k in asked if have[k] != asked[k])
            raise ValueError(
                f"cache {str(path)!r} was prepared with {diff}; set data.frames/max_frames/fps/"
                f"size/time_mode/fit to match, or point data.path at the source folder "
                f"({clips.index.get('source', 'the clip folder')}) to prepare a matching cache"
            )
        return clips
    if not path.exists():
        raise FileNotFoundError(f"data path {str(path)!r} does not exist; pass a folder of "
                                "NAME.gif + NAME.txt pairs or a prepared cache")
    return prepare_cache(path, frames, size, out=cache, time_mode=time_mode, fit=fit,
                         progress=progress, fps=fps, verify=False)


def open_data(dc: DataConfig, progress: bool = True, path: str | Path | None = None
              ) -> ClipCache:
    """The clips a data config names (or ``path``, opened with its settings: a model's data
    settings applied to another corpus): `open_clips` with its settings."""
    fps = dc.time_mode == "fps"
    return open_clips(dc.path if path is None else path, dc.max_frames if fps else dc.frames,
                      dc.size, dc.time_mode, dc.fit, cache=dc.cache if path is None else None,
                      progress=progress, fps=dc.fps if fps else None)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels [0, 255] -> float [-1, 1], any layout: the models' value range."""
    return x.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 pixels, any layout; values outside the range are clipped."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class ClipDataset(torch.utils.data.Dataset):
    """Items ``{"video": float32 (3, T, H, W) in [-1, 1], "text": str, "language": str (the sign
    language, from the clip's OUT/<code>/ folder), "index": int}``."""

    def __init__(self, cache: ClipCache, indices: list[int]):
        self.cache = cache
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        clip = torch.from_numpy(np.ascontiguousarray(self.cache[index]))  # (T, H, W, 3) uint8
        video = to_unit(rearrange(clip, "t h w c -> c t h w"))  # (3, T, H, W)
        return {"video": video, "text": self.cache.texts[index],
                "language": self.cache.languages[index], "index": index}
