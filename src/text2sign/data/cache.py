"""A decoded clip cache: append-only raw uint8 shards read through np.memmap, plus index.json.

Layout of a cache folder::

    index.json               format/version, frames, size, time_mode, fit, clips, bad pairs
    shard-GGGGGG-KKKK.u8     raw uint8 clips (n, T, S, S, 3), C order, written once, never edited

Each clip entry names its shard file and slot, so an incremental prepare keeps unchanged clips
where they are (no decoding, no copying) and appends changed or new clips to new shards of the
next generation. index.json is replaced atomically (write tmp, ``os.replace``) only after the
new shards are complete, so an interrupted prepare leaves the previous cache valid; shard files
no index references any more are deleted afterwards. When more than half of the stored clips
are dead, the next prepare rewrites the live ones into fresh shards (compaction).

Memmaps are opened lazily per process, so a ClipCache can be handed to DataLoader workers.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from text2sign.data.clips import FITS, TIME_MODES, shape_clip
from text2sign.data.folder import BadPair, default_workers, scan_folder
from text2sign.data.video_io import VideoReadError, read_video
from text2sign.files import DamagedFile, read_json, write_lock, write_text_atomic

FORMAT = "text2sign-clip-cache"
VERSION = 1
INDEX = "index.json"
LOCK = ".lock"  # held by the one process writing the cache; others wait, then reuse its work
SHARD_BYTES = 1 << 30  # ~1 GiB per shard file
_SHARD_RE = re.compile(r"^shard-\d{6}-\d{4}\.u8$")


def default_cache_dir(source: str | Path, frames: int, size: int, time_mode: str = "resample",
                      fit: str = "crop") -> Path:
    """Where `prepare_cache` puts a cache when no ``out`` is given: hidden inside the source."""
    return Path(source) / ".text2sign-cache" / f"f{frames}-s{size}-{time_mode}-{fit}"


def is_cache(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a clip cache index of this format."""
    index = Path(path) / INDEX
    if not index.is_file():
        return False
    try:
        return json.loads(index.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def split_fraction(relative_path: str) -> float:
    """A stable number in [0, 1) from a clip's relative path (sha1), for train/val splits."""
    digest = hashlib.sha1(relative_path.encode("utf-8")).hexdigest()
    return int(digest[:15], 16) / 16**15


def holdout_texts(texts: list[str] | set[str], fraction: float) -> set[str]:
    """The texts never trained on: those of 2+ characters whose stable hash is under
    ``fraction``. A text's fate depends on the text alone, so every clip of it, in any corpus,
    lands on the same side; single characters (the alphabet) always stay in training."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction {fraction} must be in [0, 1)")
    return {t for t in set(texts) if len(t.strip()) > 1 and split_fraction("text:" + t) < fraction}


class ClipCache:
    """Read-only view of a prepared cache: ``cache[i]`` is uint8 (T, S, S, 3) read from disk."""

    def __init__(self, path: str | Path, index: dict):
        self.path = Path(path)
        self.index = index
        self.frames: int = index["frames"]
        self.size: int = index["size"]
        self.time_mode: str = index["time_mode"]
        self.fit: str = index["fit"]
        clips = index["clips"]
        self.texts: list[str] = [c["text"] for c in clips]
        self.paths: list[str] = [c["path"] for c in clips]
        self.fps: list[float] = [c["fps"] for c in clips]
        self.bad: list[dict] = index.get("bad", [])
        self._where = [(c["shard"], c["slot"]) for c in clips]
        self._crc = [c.get("crc32") for c in clips]  # None in caches written before checksums
        self._maps: dict[str, np.memmap] = {}
        self._pid = os.getpid()

    @classmethod
    def open(cls, path: str | Path) -> ClipCache:
        path = Path(path)
        if not (path / INDEX).is_file():
            raise FileNotFoundError(f"{str(path)!r} is not a clip cache (no {INDEX}); build one "
                                    "with `text2sign data prepare DIR --frames T --size S`")
        index = read_json(path / INDEX, "rebuild it with `text2sign data prepare SOURCE_DIR "
                          "--out CACHE` (unchanged clips are re-decoded once)")
        if index.get("format") != FORMAT or index.get("version") != VERSION:
            raise ValueError(f"{str(path / INDEX)!r} is format {index.get('format')!r} version "
                             f"{index.get('version')!r}, expected {FORMAT!r} version {VERSION}; "
                             "rebuild it with `text2sign data prepare`")
        return cls(path, index)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        return (self.frames, self.size, self.size, 3)

    @property
    def fingerprint(self) -> str:
        """Hash of what the cache holds (settings, texts, sources), not of where it is stored."""
        content = {k: self.index[k] for k in ("version", "frames", "size", "time_mode", "fit")}
        content["clips"] = [[c["path"], c["text"], c["source_size"], c["source_mtime_ns"]]
                            for c in self.index["clips"]]
        blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha1(blob).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.texts)

    def _shard(self, name: str) -> np.memmap:
        if self._pid != os.getpid():  # forked worker: never share file handles across processes
            self._maps, self._pid = {}, os.getpid()
        if name not in self._maps:
            count = self.index["shards"][name]
            try:
                self._maps[name] = np.memmap(self.path / name, np.uint8, mode="r",
                                             shape=(count, *self.clip_shape))  # (n, T, S, S, 3)
            except (OSError, ValueError) as err:  # missing, or shorter than the index says
                raise DamagedFile(f"cache shard {str(self.path / name)!r} is missing or "
                                  f"truncated; {self.repair}") from err
        return self._maps[name]

    @property
    def repair(self) -> str:
        """The fix for damaged clips: prepare again, which re-decodes only those."""
        source = self.index.get("source", "SOURCE_DIR")
        return (f"run `text2sign data prepare {source} --frames {self.frames} --size "
                f"{self.size} --time-mode {self.time_mode} --fit {self.fit} --out {self.path}` "
                "to re-decode the damaged clips")

    def __getitem__(self, i: int) -> np.ndarray:
        shard, slot = self._where[i]
        clip = np.array(self._shard(shard)[slot])  # (T, S, S, 3), copied off the memmap
        if self._crc[i] is not None and zlib.crc32(clip) != self._crc[i]:
            raise DamagedFile(f"clip {self.paths[i]!r} in cache shard "
                              f"{str(self.path / shard)!r} is damaged (checksum mismatch); "
                              f"{self.repair}")
        return clip

    def damaged(self) -> list[str]:
        """One line per clip that cannot be read back as written (reads the whole cache)."""
        problems = []
        for i in range(len(self)):
            try:
                self[i]
            except DamagedFile as err:
                problems.append(str(err).split("; ")[0])
        return problems

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}

    def split(self, val_fraction: float) -> tuple[list[int], list[int]]:
        """Deterministic (train, val) indices by a hash of each relative path; at least one
        validation clip whenever ``val_fraction > 0`` and there are two or more clips."""
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
        keys = [split_fraction(p) for p in self.paths]
        val = [i for i, k in enumerate(keys) if k < val_fraction]
        if val_fraction > 0 and not val and len(keys) >= 2:
            val = [int(np.argmin(keys))]
        chosen = set(val)
        return [i for i in range(len(keys)) if i not in chosen], val

    def split_by_text(self, val_fraction: float, holdout: float
                      ) -> tuple[list[int], list[int], list[int]]:
        """(train, val, unseen) clip indices: ``split`` over the clips of training texts, and
        every clip of a held-out text (`holdout_texts`) apart, never in train or val."""
        unseen_texts = holdout_texts(self.texts, holdout)
        train, val = self.split(val_fraction)
        unseen = [i for i, t in enumerate(self.texts) if t in unseen_texts]
        return ([i for i in train if self.texts[i] not in unseen_texts],
                [i for i in val if self.texts[i] not in unseen_texts], unseen)


@dataclass
class _Writer:
    """Appends clips to the shard files of one generation."""

    root: Path
    generation: int
    per_shard: int
    shards: dict[str, int]
    _file = None
    _name = ""

    def add(self, clip: np.ndarray) -> tuple[str, int]:
        if self._file is None or self.shards[self._name] >= self.per_shard:
            self.close()
            self._name = f"shard-{self.generation:06d}-{len(self.shards):04d}.u8"
            self._file = open(self.root / self._name, "wb")  # noqa: SIM115
            self.shards[self._name] = 0
        self._file.write(np.ascontiguousarray(clip).tobytes())
        slot = self.shards[self._name]
        self.shards[self._name] += 1
        return self._name, slot

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def _load_previous(out: Path, settings: dict) -> dict | None:
    """The existing index if it was built with the same settings, else None."""
    if not is_cache(out):
        return None
    index = json.loads((out / INDEX).read_text())
    same = index.get("version") == VERSION and all(index.get(k) == v for k, v in settings.items())
    return index if same else None


def _decode(job: tuple) -> tuple[np.ndarray | None, float | str]:
    """(clip, fps) of one source, or (None, reason) when it cannot be read; runs in workers."""
    path, frames, size, time_mode, fit = job
    try:
        video, fps = read_video(path)
    except VideoReadError as err:
        return None, str(err)
    return shape_clip(video, frames, size, time_mode, fit), fps


def prepare_cache(source: str | Path, frames: int, size: int, out: str | Path | None = None,
                  time_mode: str = "resample", fit: str = "crop",
                  progress: bool = True, workers: int | None = None) -> ClipCache:
    """Decode and shape every good pair once; reuse clips whose source size and mtime match.

    ``workers`` processes decode in parallel (default: up to 8 CPU cores when there are
    >= 64 clips to decode, `default_workers`); the cache is the same whatever the number. Opening an
    unchanged cache writes nothing; writers take the cache's lock file one at a time, so several
    processes may open or prepare one cache at once.
    """
    if frames < 1 or size < 1:
        raise ValueError(f"frames={frames} and size={size} must be positive integers")
    if time_mode not in TIME_MODES:
        raise ValueError(f"time_mode={time_mode!r} is not one of {list(TIME_MODES)}")
    if fit not in FITS:
        raise ValueError(f"fit={fit!r} is not one of {list(FITS)}")
    source = Path(source)
    out = Path(out) if out is not None else default_cache_dir(source, frames, size, time_mode, fit)
    if out.exists() and not out.is_dir():
        raise ValueError(f"cache path {str(out)!r} is a file; pass a folder to --out")
    if (out.is_dir() and any(p.name != LOCK for p in out.iterdir()) and not is_cache(out)
            and not (out / INDEX).exists()):
        raise ValueError(f"cache path {str(out)!r} is a non-empty folder that is not a clip "
                         "cache; pass an empty or new folder to --out")
    settings = {"format": FORMAT, "frames": frames, "size": size, "time_mode": time_mode,
                "fit": fit}
    with write_lock(out / LOCK):  # a second process waits here, then finds nothing to do
        return _prepare(source, out, settings, progress, workers)


def _prepare(source: Path, out: Path, settings: dict, progress: bool,
             workers: int | None) -> ClipCache:
    """`prepare_cache` under the cache's write lock."""
    frames, size = settings["frames"], settings["size"]
    time_mode, fit = settings["time_mode"], settings["fit"]
    scan = scan_folder(source, decode=False)
    previous = _load_previous(out, settings)
    old = {c["path"]: c for c in previous["clips"]} if previous else {}
    old_shards: dict[str, int] = dict(previous["shards"]) if previous else {}
    generation = previous["generation"] + 1 if previous else 0

    stats = {}
    for pair in scan.good:
        st = pair.video.stat()
        stats[scan.relative(pair.video)] = (st.st_size, st.st_mtime_ns)
    reusable = {rel for rel, stat in stats.items()
                if rel in old and (old[rel]["source_size"], old[rel]["source_mtime_ns"]) == stat}
    old_cache = ClipCache(out, previous) if previous else None
    old_pos = {p: i for i, p in enumerate(old_cache.paths)} if old_cache else {}
    for rel in sorted(reusable):  # a stored clip is reused only if it reads back as written
        try:
            old_cache[old_pos[rel]]
        except DamagedFile as err:
            print(f"re-decoding {rel}: {str(err).split('; ')[0]}", file=sys.stderr)
            reusable.discard(rel)
    live = len(reusable)
    stored = sum(old_shards.values())
    compact = stored > 0 and live < stored / 2

    clip_bytes = int(np.prod((frames, size, size, 3)))
    shards = {} if compact else dict(old_shards)
    writer = _Writer(out, generation, max(1, SHARD_BYTES // clip_bytes), shards)
    entries, bad = [], [BadPair(b.path, b.reason) for b in scan.bad]
    decoded = 0
    todo = [(pair.video, frames, size, time_mode, fit) for pair in scan.good
            if scan.relative(pair.video) not in reusable]
    if workers is None:
        workers = default_workers(len(todo))
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    results = pool.imap(_decode, todo, chunksize=4) if pool else map(_decode, todo)
    try:
        for pair in tqdm(scan.good, desc="prepare", unit="clip", disable=not progress):
            rel = scan.relative(pair.video)
            size_b, mtime = stats[rel]
            if rel in reusable and not compact:
                entry = dict(old[rel], text=pair.text)
                if entry.get("crc32") is None:  # a cache written before checksums
                    entry["crc32"] = zlib.crc32(old_cache[old_pos[rel]])
            else:
                if rel in reusable:  # compaction: copy the stored clip, still no decoding
                    clip, fps = old_cache[old_pos[rel]], old[rel]["fps"]
                else:
                    clip, fps = next(results)  # `todo` is in this loop's order
                    if clip is None:
                        bad.append(BadPair(pair.video, fps))
                        continue
                    decoded += 1
                shard, slot = writer.add(clip)
                entry = {"path": rel, "text": pair.text, "fps": fps, "shard": shard,
                         "slot": slot, "source_size": size_b, "source_mtime_ns": mtime,
                         "crc32": zlib.crc32(np.ascontiguousarray(clip))}
            entries.append(entry)
    finally:
        writer.close()
        if pool is not None:
            pool.terminate()
    referenced = {e["shard"] for e in entries}
    shards = {k: v for k, v in shards.items() if k in referenced}
    bad.sort(key=lambda b: scan.relative(b.path))
    for b in bad:
        print(f"skipped {scan.relative(b.path)}: {b.reason}", file=sys.stderr)
    if not entries:
        raise ValueError(f"no usable clips in {str(source)!r}: {len(bad)} bad pairs (listed "
                         "above); fix them or run `text2sign data check DIR` for details")
    index = {**settings, "version": VERSION, "generation": generation,
             "source": str(source.resolve()), "shards": shards, "clips": entries,
             "bad": [{"path": scan.relative(b.path), "reason": b.reason} for b in bad],
             "decoded": decoded}
    unchanged = previous is not None and all(
        previous.get(k) == index[k] for k in ("source", "shards", "clips", "bad"))
    if unchanged:  # nothing to write: readers of this cache see no change at all
        return ClipCache(out, {**previous, "decoded": 0})
    write_text_atomic(out / INDEX, json.dumps(index, indent=1, ensure_ascii=False))  # commit
    for stale in out.iterdir():
        if _SHARD_RE.match(stale.name) and stale.name not in shards:
            stale.unlink()
    return ClipCache.open(out)
