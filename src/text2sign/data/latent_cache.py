"""The latent cache: every clip of a clip cache encoded once by a frozen frame autoencoder, and
the Dataset that trains a denoiser on it.

A run with ``latent.enabled`` encodes its clips once (under a lock, published atomically) into
a float16 memory map named by the autoencoder's weights, so runs sharing one reuse it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from text2sign.core.device import release_freed_memory
from text2sign.core.files import TMP_MARK, DiskFull, is_disk_full, write_lock, write_text_atomic
from text2sign.core.units import DEFAULT_LANGUAGE
from text2sign.data.dataset import to_unit
from text2sign.models.autoencoder import FrameAutoencoder

LATENT_CACHE_FORMAT = "text2sign-latent-cache"


def autoencoder_hash(ae: torch.nn.Module) -> str:
    """Hash of an autoencoder's weights and normalisation: the latent cache's key."""
    digest = hashlib.sha1()
    for name, tensor in sorted(ae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class LatentCache:
    """Every clip of a clip cache encoded once: float16 (N, C, T, h, w) in a memory-mapped file,
    or, for clips of their own lengths, frames (sum T_i, C, h, w) one clip after another.

    Stored next to the clip cache as ``latents-<key>.f16`` + ``.json``, keyed by the clip
    cache's fingerprint and the autoencoder's weights, so a changed corpus or autoencoder gets
    a new file and training never re-encodes a clip at every step.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], lengths: list[int] | None = None):
        self.path, self.shape = path, tuple(shape)
        self.lengths = lengths  # each clip's frames, when they differ
        self._starts = np.concatenate([[0], np.cumsum(lengths)]) if lengths is not None else None
        self._map: np.memmap | None = None

    def __len__(self) -> int:
        return self.shape[0] if self.lengths is None else len(self.lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._map is None:  # opened lazily, so DataLoader workers each open their own
            self._map = np.memmap(self.path, np.float16, mode="r", shape=self.shape)
        if self.lengths is None:
            return np.array(self._map[i])  # (C, T, h, w) float16
        frames = self._map[self._starts[i]:self._starts[i + 1]]  # (T_i, C, h, w)
        return np.ascontiguousarray(frames.transpose(1, 0, 2, 3))  # (C, T_i, h, w) float16

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}


def latent_cache(ae: FrameAutoencoder, cache: Any, *, device: torch.device,
                 batch_size: int = 8, progress: bool = True) -> LatentCache:
    """The clip cache's latents under ``ae``: read if encoded before, else encoded now. Several
    processes may ask at once: one encodes (under a lock file), the others wait and reuse it."""
    key = f"{cache.fingerprint[:12]}-{autoencoder_hash(ae)[:12]}"
    path = Path(cache.path) / f"latents-{key}.f16"
    side = ae.latent_size(cache.size)
    lengths = list(cache.lengths) if getattr(cache, "variable", False) else None
    if lengths is None:
        shape = (len(cache), ae.latent_channels, cache.clip_shape[0], side, side)
    else:
        shape = (sum(lengths), ae.latent_channels, side, side)
    if _finished(path, shape):  # published whole: no lock needed to read it
        return LatentCache(path, shape, lengths)
    with write_lock(path.with_name(f".{path.name}.lock"), waiting="waiting for another process "
                    f"encoding the latent cache {str(path)!r}"):
        if _finished(path, shape):  # another process encoded it while this one waited
            return LatentCache(path, shape, lengths)
        _encode_all(ae, cache, path, shape, device=device, batch_size=batch_size,
                    progress=progress)
    return LatentCache(path, shape, lengths)


def _finished(path: Path, shape: tuple[int, ...]) -> bool:
    """Whether the latents at ``path`` were published: their .json is written last."""
    info_path = path.with_suffix(".json")
    if not (info_path.is_file() and path.is_file()):
        return False
    info = json.loads(info_path.read_text())
    return info.get("format") == LATENT_CACHE_FORMAT and tuple(info["shape"]) == shape


def _encode_all(ae: FrameAutoencoder, cache: Any, path: Path, shape: tuple[int, ...], *,
                device: torch.device, batch_size: int, progress: bool) -> None:
    """Encode every clip into a temporary file of this process, then publish it: the data by
    one rename, then its .json (atomically), so a reader sees both or neither."""
    tmp = path.with_name(f".{path.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")
    nbytes = int(np.prod(shape)) * 2  # float16
    try:
        _reserve(tmp, nbytes)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if not is_disk_full(err):
            raise
        raise DiskFull(f"disk full: the latent cache {str(path)!r} needs {nbytes / 1e9:.2f} GB; "
                       "nothing was written and the clip cache is unchanged: free space, then "
                       "start again (the latents are encoded then)") from err
    try:
        # Written through a file, not a memory map: the pages written would stay in this
        # process's resident memory (the whole file, 8 GB at 70,000 clips of 128 x 128).
        ae = ae.to(device).eval()
        started = time.time()
        variable = getattr(cache, "variable", False)
        with open(tmp, "r+b") as out, torch.no_grad():
            for start in tqdm(range(0, len(cache), batch_size), desc="latent cache",
                              unit="batch", disable=not progress):
                stop = min(start + batch_size, len(cache))
                if variable:  # the autoencoder is per frame: the clips' frames in one row
                    clips = torch.from_numpy(np.concatenate([cache[i]
                                                             for i in range(start, stop)]))
                    x = to_unit(clips.to(device).permute(3, 0, 1, 2)[None])  # (1, 3, F, H, W)
                    z = ae.encode(x)[0].permute(1, 0, 2, 3)  # (F, C, h, w)
                else:
                    clips = torch.from_numpy(np.stack([cache[i] for i in range(start, stop)]))
                    x = to_unit(clips.to(device).permute(0, 4, 1, 2, 3))  # (B, 3, T, H, W)
                    z = ae.encode(x)  # (B, C, T, h, w)
                out.write(np.ascontiguousarray(z.half().cpu().numpy()).tobytes())  # in order
                del clips, x, z
                release_freed_memory()  # batches of other lengths would keep the heap's holes
            if out.tell() != nbytes:
                raise RuntimeError(f"the latent cache {str(path)!r} got {out.tell()} bytes of "
                                   f"{nbytes}: the clip cache changed while it was encoded")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_text_atomic(path.with_suffix(".json"), json.dumps({
        "format": LATENT_CACHE_FORMAT, "shape": list(shape), "clips": len(cache),
        **({"lengths": list(cache.lengths)} if getattr(cache, "variable", False) else {}),
        "seconds": round(time.time() - started, 1)}))


def _reserve(path: Path, nbytes: int) -> None:
    """Create ``path`` with ``nbytes`` of disk allocated now: a memory map written on a full
    disk dies of SIGBUS at some page, with no message, where this raises ENOSPC up front."""
    with open(path, "wb") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, max(nbytes, 1))
        except (AttributeError, OSError) as err:  # no fallocate here (macOS, some filesystems)
            if isinstance(err, OSError) and err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            f.truncate(nbytes)


class LatentDataset(torch.utils.data.Dataset):
    """Items ``{"video": float32 latents (C, T, h, w), "text": str, "language": str, "index":
    int}``: the `ClipDataset` contract, already in the denoiser's space."""

    def __init__(self, latents: LatentCache, texts: list[str], indices: list[int],
                 languages: list[str] | None = None):
        self.latents, self.texts, self.indices = latents, texts, list(indices)
        self.languages = languages if languages is not None else [DEFAULT_LANGUAGE] * len(texts)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        return {"video": torch.from_numpy(self.latents[index]).float(),
                "text": self.texts[index], "language": self.languages[index], "index": index}
