"""A decoded clip cache: append-only raw uint8 shards, read a clip at a time, plus index.json.

Layout of a cache folder::

    index.json               format/version, frames, size, time_mode, fit, clips, bad pairs
    shard-GGGGGG-KKKK.u8     raw uint8 clips (n, T, S, S, 3), C order, written once, never edited

In the "fps" time mode (version 2) each clip keeps its own length at the cache's frame rate:
a shard holds frames (F, S, S, 3), one clip after another, and each clip's entry names its
first frame (``offset``) and its length (``frames``); ``frames`` of the index is then the most
frames a clip may have (longer clips are squeezed to it, and the entry says so).

Each clip entry names its shard file and slot, so an incremental prepare keeps unchanged clips
where they are (no decoding, no copying) and appends changed or new clips to new shards of the
next generation. index.json is replaced atomically (write tmp, ``os.replace``) only after the
new shards are complete, so an interrupted prepare leaves the previous cache valid; shard files
no index references any more are deleted afterwards. When more than half of the stored clips
are dead, the next prepare rewrites the live ones into fresh shards (compaction). A long prepare
also commits the clips done so far every `SAVE_EVERY_S` seconds, so an interrupted one resumes
where it stopped.

Shards are opened lazily per process, so a ClipCache can be handed to DataLoader workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm.auto import tqdm

from text2sign.core.files import (
    TMP_MARK,
    DamagedFile,
    DiskFull,
    is_disk_full,
    read_json,
    write_lock,
    write_text_atomic,
)
from text2sign.core.units import clip_language
from text2sign.data.clips import FITS, TIME_MODES, fit_time, rate_length, shape_clip
from text2sign.data.folder import BadPair, default_workers, scan_folder
from text2sign.data.video_io import VideoReadError, read_video

FORMAT = "text2sign-clip-cache"
VERSION = 1  # fixed frame count per clip
RATE_VERSION = 2  # "fps": each clip its own length at a frame rate
SAVE_EVERY_S = 30.0  # a prepare commits the clips done so far this often (resumable)
INDEX = "index.json"
LOCK = ".lock"  # held by the one process writing the cache; others wait, then reuse its work
SHARD_BYTES = 1 << 30  # ~1 GiB per shard file
_SHARD_RE = re.compile(r"^shard-\d{6}-\d{4}\.u8$")


def default_cache_dir(source: str | Path, frames: int, size: int, time_mode: str = "resample",
                      fit: str = "crop", fps: float | None = None) -> Path:
    """Where `prepare_cache` puts a cache when no ``out`` is given: hidden inside the source.
    In the "fps" mode ``frames`` is the most frames a clip may have."""
    if time_mode == "fps":
        name = f"r{fps:g}-m{frames}-s{size}-fps-{fit}"
    else:
        name = f"f{frames}-s{size}-{time_mode}-{fit}"
    return Path(source) / ".text2sign-cache" / name


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
    """Read-only view of a prepared cache: ``cache[i]`` is uint8 (T, S, S, 3) read from disk;
    T is the same for every clip, or each clip's own (``variable``, the "fps" mode)."""

    def __init__(self, path: str | Path, index: dict):
        self.path = Path(path)
        self.index = index
        self.frames: int = index["frames"]
        self.size: int = index["size"]
        self.time_mode: str = index["time_mode"]
        self.fit: str = index["fit"]
        self.variable: bool = self.time_mode == "fps"
        self.data_fps: float | None = index.get("fps")  # the rate of a variable cache
        self.max_frames: int = self.frames
        clips = index["clips"]
        self.texts: list[str] = [c["text"] for c in clips]
        self.paths: list[str] = [c["path"] for c in clips]
        self.languages: list[str] = [clip_language(p) for p in self.paths]  # OUT/<code>/
        self.fps: list[float] = [c["fps"] for c in clips]  # each source's own frame rate
        self.lengths: list[int] = [c.get("frames", self.frames) for c in clips]
        self.squeezed: list[str] = [c["path"] for c in clips if c.get("squeezed")]
        self.bad: list[dict] = index.get("bad", [])
        self._where = [(c["shard"], c["offset"] if self.variable else c["slot"]) for c in clips]
        self._crc = [c.get("crc32") for c in clips]  # None in caches written before checksums
        self._files: dict[str, BinaryIO] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path) -> ClipCache:
        path = Path(path)
        if not (path / INDEX).is_file():
            raise FileNotFoundError(f"{str(path)!r} is not a clip cache (no {INDEX}); build one "
                                    "with `text2sign data prepare DIR --frames T --size S`")
        index = read_json(path / INDEX, "rebuild it with `text2sign data prepare SOURCE_DIR "
                          "--out CACHE` (unchanged clips are re-decoded once)")
        want = RATE_VERSION if index.get("time_mode") == "fps" else VERSION
        if index.get("format") != FORMAT or index.get("version") != want:
            raise ValueError(f"{str(path / INDEX)!r} is format {index.get('format')!r} version "
                             f"{index.get('version')!r}, expected {FORMAT!r} version {want}; "
                             "rebuild it with `text2sign data prepare`")
        return cls(path, index)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """(T, S, S, 3) of every clip; a variable cache has no one shape (see ``lengths``)."""
        if self.variable:
            raise ValueError(f"the clips of cache {str(self.path)!r} keep their own lengths "
                             f"(time_mode='fps', {self.data_fps:g} fps); use cache.lengths[i] "
                             "or cache.frame_shape")
        return (self.frames, self.size, self.size, 3)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(S, S, 3): one frame, in every time mode."""
        return (self.size, self.size, 3)

    @property
    def fingerprint(self) -> str:
        """Hash of what the cache holds (settings, texts, sources), not of where it is stored."""
        content = {k: self.index[k] for k in ("version", "frames", "size", "time_mode", "fit")}
        if self.variable:
            content["fps"] = self.index["fps"]
        content["clips"] = [[c["path"], c["text"], c["source_size"], c["source_mtime_ns"]]
                            for c in self.index["clips"]]
        blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha1(blob).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.texts)

    def _shard(self, name: str) -> BinaryIO:
        """Shard ``name`` opened for reading in this process, checked to hold what the index
        says it holds."""
        if self._pid != os.getpid():  # forked worker: never share file handles across processes
            self._files, self._pid = {}, os.getpid()
            self._lock = threading.Lock()  # a copy made while another thread held it stays held
        if name not in self._files:
            count = self.index["shards"][name]  # clips, or frames in a variable cache
            unit = np.prod(self.frame_shape if self.variable else self.clip_shape)
            try:
                file = open(self.path / name, "rb", buffering=0)  # noqa: SIM115 (kept open)
            except OSError as err:
                raise DamagedFile(f"cache shard {str(self.path / name)!r} is missing; "
                                  f"{self.repair}") from err
            if os.fstat(file.fileno()).st_size < count * unit:
                file.close()
                raise DamagedFile(f"cache shard {str(self.path / name)!r} is truncated; "
                                  f"{self.repair}")
            self._files[name] = file
        return self._files[name]

    @property
    def repair(self) -> str:
        """The fix for damaged clips: prepare again, which re-decodes only those."""
        source = self.index.get("source", "SOURCE_DIR")
        timing = (f"--fps {self.data_fps:g} --max-frames {self.frames}" if self.variable
                  else f"--frames {self.frames} --time-mode {self.time_mode}")
        return (f"run `text2sign data prepare {source} {timing} --size {self.size} "
                f"--fit {self.fit} --out {self.path}` to re-decode the damaged clips")

    def __getitem__(self, i: int) -> np.ndarray:
        shard, slot = self._where[i]
        if self.variable:  # slot is the clip's first frame in the shard
            shape = (self.lengths[i], *self.frame_shape)  # (T_i, S, S, 3)
        else:
            shape = self.clip_shape  # (T, S, S, 3)
        unit = np.prod(shape[1:]) if self.variable else np.prod(shape)
        # Read (not memory-mapped): a map would count every page ever read in the process's
        # resident memory, up to the whole cache (7 GB for the phrases corpus) over an epoch.
        clip = np.empty(shape, np.uint8)
        file = self._shard(shard)
        with self._lock:  # one file position per shard, shared by this process's threads
            file.seek(int(slot * unit))
            got = file.readinto(memoryview(clip).cast("B"))
        if got != clip.nbytes:
            raise DamagedFile(f"clip {self.paths[i]!r} in cache shard "
                              f"{str(self.path / shard)!r} is cut short; {self.repair}")
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
        return {**self.__dict__, "_files": {}, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

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
    per_shard: int  # clips a shard holds, or frames in a variable cache
    shards: dict[str, int]
    variable: bool = False  # count frames (each clip its own length), not clips
    _file = None
    _name = ""

    def add(self, clip: np.ndarray) -> tuple[str, int]:
        """Append a clip; returns (shard, slot), the slot being its first frame if variable."""
        size = len(clip) if self.variable else 1
        if self._file is None or (self.shards[self._name] + size > self.per_shard
                                  and self.shards[self._name] > 0):
            self.close()
            self._name = f"shard-{self.generation:06d}-{len(self.shards):04d}.u8"
            self._file = open(self.root / self._name, "wb")  # noqa: SIM115
            self.shards[self._name] = 0
        self._file.write(np.ascontiguousarray(clip).tobytes())
        slot = self.shards[self._name]
        self.shards[self._name] += size
        return self._name, slot

    def sync(self) -> None:
        """Make what was written so far durable (before an index refers to it)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Sync and close the open shard; a second call (after a failed one) does nothing."""
        if self._file is not None:
            file, self._file = self._file, None
            with file:
                file.flush()
                os.fsync(file.fileno())


def _load_previous(out: Path, settings: dict) -> dict | None:
    """The existing index if it was built with the same settings, else None."""
    if not is_cache(out):
        return None
    index = json.loads((out / INDEX).read_text())
    version = RATE_VERSION if settings["time_mode"] == "fps" else VERSION
    same = index.get("version") == version and all(index.get(k) == v
                                                   for k, v in settings.items())
    return index if same else None


def _decode(job: tuple) -> tuple[np.ndarray | None, float | str, bool]:
    """(clip, source fps, squeezed) of one source, or (None, reason, False) when it cannot be
    read; runs in workers."""
    path, frames, size, time_mode, fit, rate = job
    try:
        video, fps = read_video(Path(path))
    except VideoReadError as err:
        return None, str(err), False
    squeezed = time_mode == "fps" and rate_length(len(video) / fps, rate) > frames
    return (shape_clip(video, frames, size, time_mode, fit, source_fps=fps, fps=rate), fps,
            squeezed)


def prepare_cache(source: str | Path, frames: int, size: int, out: str | Path | None = None,
                  time_mode: str = "resample", fit: str = "crop",
                  progress: bool = True, workers: int | None = None,
                  fps: float | None = None, verify: bool = True) -> ClipCache:
    """Decode and shape every good pair once; reuse clips whose source size and mtime match.

    In the "fps" ``time_mode`` each clip is resampled to ``fps`` frames a second and keeps its
    own length, up to ``frames`` (longer clips are squeezed to ``frames`` and reported).
    ``workers`` processes decode in parallel (default: up to 8 CPU cores when there are
    >= 64 clips to decode, `default_workers`); the cache is the same whatever the number. Opening an
    unchanged cache writes nothing; writers take the cache's lock file one at a time, so several
    processes may open or prepare one cache at once. With ``verify`` (`data prepare`) every
    stored clip is read back against its checksum and a damaged one decoded again; without it
    (a run opening its data) only the shards' presence and lengths are checked, so opening costs
    the index, not the corpus's bytes (each clip's checksum is still checked when it is read).
    The clips done so far are committed every `SAVE_EVERY_S` seconds: an interrupted prepare
    resumes from there.
    """
    if frames < 1 or size < 1:
        raise ValueError(f"frames={frames} and size={size} must be positive integers")
    if time_mode not in TIME_MODES:
        raise ValueError(f"time_mode={time_mode!r} is not one of {list(TIME_MODES)}")
    if fit not in FITS:
        raise ValueError(f"fit={fit!r} is not one of {list(FITS)}")
    if time_mode == "fps" and not (fps is not None and 0 < fps <= 120):
        raise ValueError(f"fps={fps!r}: time_mode='fps' needs a frame rate in (0, 120], e.g. "
                         "--fps 6.25")
    source = Path(source)
    out = (Path(out) if out is not None
           else default_cache_dir(source, frames, size, time_mode, fit, fps))
    if out.exists() and not out.is_dir():
        raise ValueError(f"cache path {str(out)!r} is a file; pass a folder to --out")
    settings = {"format": FORMAT, "frames": frames, "size": size, "time_mode": time_mode,
                "fit": fit}
    if time_mode == "fps":
        settings["fps"] = fps
    # A second process waits here, then finds nothing to do. The folder is looked at only under
    # the lock: before it, another process's first build is a folder of shards without an index.
    with write_lock(out / LOCK, waiting=f"waiting for another process building the clip cache "
                    f"{str(out)!r}"):
        # Shards (and a temporary index) without an index are a first prepare that stopped
        # before its first commit (killed, disk full): its own leftovers, written over.
        if (any(not _leftover(p.name) for p in out.iterdir()) and not is_cache(out)
                and not (out / INDEX).exists()):
            raise ValueError(f"cache path {str(out)!r} is a non-empty folder that is not a clip "
                             "cache; pass an empty or new folder to --out")
        return _prepare(source, out, settings, progress, workers, verify)


def _leftover(name: str) -> bool:
    """Whether a file in a cache folder is the lock, a shard or a temporary index."""
    return name == LOCK or bool(_SHARD_RE.match(name)) or name.startswith(f".{INDEX}{TMP_MARK}")


def _commit(out: Path, index: dict) -> None:
    """Publish an index: readers see the old one or this one, never a mix."""
    write_text_atomic(out / INDEX, _index_json(index))


def _index_json(index: dict, per_piece: int = 2048):
    """``index`` as JSON text, in pieces of ``per_piece`` clips: at 70,000 clips the whole text
    is 14 MB, and json builds it from its parts (twice that, held at each commit). One line, no
    indent: with one, json encodes in Python, a small string a token (~1.8 KB a clip)."""
    clips = index["clips"]
    head = json.dumps({k: v for k, v in index.items() if k != "clips"}, ensure_ascii=False)
    yield head[:-1] + (", " if len(head) > 2 else "") + '"clips": ['
    for start in range(0, len(clips), per_piece):
        yield (", " if start else "") + json.dumps(clips[start:start + per_piece],
                                                   ensure_ascii=False)[1:-1]
    yield "]}"


def _prepare(source: Path, out: Path, settings: dict, progress: bool,
             workers: int | None, verify: bool) -> ClipCache:
    """`prepare_cache` under the cache's write lock."""
    frames, size = settings["frames"], settings["size"]
    time_mode, fit, rate = settings["time_mode"], settings["fit"], settings.get("fps")
    variable = time_mode == "fps"
    version = RATE_VERSION if variable else VERSION
    scan = scan_folder(source, decode=False)
    previous = _load_previous(out, settings)
    old = {c["path"]: c for c in previous["clips"]} if previous else {}
    old_shards: dict[str, int] = dict(previous["shards"]) if previous else {}
    generation = previous["generation"] + 1 if previous else 0

    # Per clip, in scan order: its relative path (one string, shared by the index entry) and
    # its source's (size, mtime), as an array: at 70,000 clips a dict of tuples held ~17 MB.
    rels = [scan.relative(pair.video) for pair in scan.good]
    stats = np.array([(st.st_size, st.st_mtime_ns) for st in map(os.stat, (
        pair.path for pair in scan.good))], dtype=np.int64).reshape(-1, 2)
    reusable = {rel for rel, (size_b, mtime) in zip(rels, stats.tolist(), strict=True)
                if rel in old and (old[rel]["source_size"], old[rel]["source_mtime_ns"])
                == (size_b, mtime)}
    old_cache = ClipCache(out, previous) if previous else None
    old_pos = {p: i for i, p in enumerate(old_cache.paths)} if old_cache else {}
    if verify:  # a stored clip is reused only if it reads back as written
        for rel in sorted(reusable):
            try:
                old_cache[old_pos[rel]]
            except DamagedFile as err:
                print(f"re-decoding {rel}: {str(err).split('; ')[0]}", file=sys.stderr)
                reusable.discard(rel)
    elif old_cache is not None:  # only if its shard is there and as long as the index says
        for name in sorted({old[rel]["shard"] for rel in reusable}):
            try:
                old_cache._shard(name)
            except DamagedFile as err:
                lost = {rel for rel in reusable if old[rel]["shard"] == name}
                print(f"re-decoding {len(lost)} clips: {str(err).split('; ')[0]}",
                      file=sys.stderr)
                reusable -= lost
    live = sum(old[rel].get("frames", 1) if variable else 1 for rel in reusable)
    stored = sum(old_shards.values())
    compact = stored > 0 and live < stored / 2

    frame_bytes = size * size * 3
    per_shard = SHARD_BYTES // frame_bytes if variable else SHARD_BYTES // (frames * frame_bytes)
    shards = {} if compact else dict(old_shards)
    writer = _Writer(out, generation, max(1, per_shard), shards, variable)
    entries, bad = [], [BadPair(b.path, b.reason) for b in scan.bad]
    decoded = 0
    # The clips to decode, handed out as the pool asks (a list held a tuple a clip).
    todo = ((pair.path, frames, size, time_mode, fit, rate)
            for pair, rel in zip(scan.good, rels, strict=True) if rel not in reusable)
    if workers is None:
        workers = default_workers(sum(rel not in reusable for rel in rels))
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    results = pool.imap(_decode, todo, chunksize=4) if pool else map(_decode, todo)

    def index_of(done: list[dict], rest: list[dict]) -> dict:
        kept = done + rest
        referenced = {e["shard"] for e in kept}
        return {**settings, "version": version, "generation": generation,
                "source": str(source.resolve()),
                "shards": {k: v for k, v in shards.items() if k in referenced},
                "clips": kept,
                "bad": [{"path": scan.relative(b.path), "reason": b.reason}
                        for b in sorted(bad, key=lambda b: scan.relative(b.path))],
                "decoded": decoded}

    last_save = time.monotonic()
    committed = len(previous["clips"]) if previous else 0  # clips the index on disk holds

    def full(err: BaseException) -> DiskFull:
        state = (f"its index.json holds the {committed} clips committed before (of "
                 f"{len(scan.good)}) and is usable" if committed
                 else "no clips were committed, nothing is usable yet")
        return DiskFull(f"disk full while writing the clip cache {str(out)!r}; {state}: free "
                        "space, then run the same prepare again to resume from there")

    try:
        for n, pair in enumerate(tqdm(scan.good, desc="prepare", unit="clip",
                                      disable=not progress)):
            rel = rels[n]
            size_b, mtime = int(stats[n, 0]), int(stats[n, 1])
            if rel in reusable and not compact:
                entry = dict(old[rel], text=pair.text)
                if entry.get("crc32") is None:  # a cache written before checksums
                    entry["crc32"] = zlib.crc32(old_cache[old_pos[rel]])
            else:
                squeezed = False
                if rel in reusable:  # compaction: copy the stored clip, still no decoding
                    clip, fps = old_cache[old_pos[rel]], old[rel]["fps"]
                    squeezed = bool(old[rel].get("squeezed"))
                else:
                    clip, fps, squeezed = next(results)  # `todo` is in this loop's order
                    if clip is None:
                        bad.append(BadPair(pair.video, fps))
                        continue
                    decoded += 1
                shard, slot = writer.add(clip)
                entry = {"path": rel, "text": pair.text, "fps": fps, "shard": shard,
                         "source_size": size_b, "source_mtime_ns": mtime,
                         "crc32": zlib.crc32(np.ascontiguousarray(clip))}
                if variable:
                    entry.update(offset=slot, frames=len(clip))
                    if squeezed:
                        entry["squeezed"] = True
                else:
                    entry["slot"] = slot
            entries.append(entry)
            if time.monotonic() - last_save >= SAVE_EVERY_S and n + 1 < len(scan.good):
                # Resumable: the clips done so far, and the stored ones not reached yet.
                writer.sync()
                rest = [] if compact else [old[r] for r in rels[n + 1:] if r in reusable]
                _commit(out, index_of(entries, rest))
                committed = len(entries) + len(rest)
                last_save = time.monotonic()
        writer.close()  # flushed and synced: may fail for lack of space too
    except OSError as err:
        with contextlib.suppress(OSError):  # the uncommitted tail is dropped either way
            writer.close()
        if is_disk_full(err):
            raise full(err) from err
        raise
    finally:
        writer.close()
        if pool is not None:
            pool.terminate()
    bad.sort(key=lambda b: scan.relative(b.path))
    for b in bad:
        print(f"skipped {scan.relative(b.path)}: {b.reason}", file=sys.stderr)
    if not entries:
        raise ValueError(f"no usable clips in {str(source)!r}: {len(bad)} bad pairs (listed "
                         "above); fix them or run `text2sign data check DIR` for details")
    index = index_of(entries, [])
    shards = index["shards"]
    unchanged = previous is not None and all(
        previous.get(k) == index[k] for k in ("source", "shards", "clips", "bad"))
    if unchanged:  # nothing to write: readers of this cache see no change at all
        return ClipCache(out, {**previous, "decoded": 0})
    try:
        _commit(out, index)
    except OSError as err:
        if is_disk_full(err):
            raise full(err) from err
        raise
    for stale in out.iterdir():
        if _SHARD_RE.match(stale.name) and stale.name not in shards:
            stale.unlink()
    squeezed = [e["path"] for e in entries if e.get("squeezed")]
    if squeezed:
        print(f"{len(squeezed)} clips are longer than {frames} frames at {rate:g} fps and were "
              f"squeezed to {frames} (e.g. {squeezed[0]}); raise --max-frames (data.max_frames) "
              "to keep their pace", file=sys.stderr)
    # The index just committed is the cache: reading it back would hold it twice, beside the
    # scan and the previous index (at 70,000 clips ~50 MB each).
    del rels, stats, old, old_cache, old_pos, previous, entries, todo, reusable, results
    scan = None  # read by the closures above, which are done
    return ClipCache(out, index)


class FixedCountView:
    """A clip cache seen at one frame count: ``view[i]`` is clip i resampled uniformly to
    ``frames`` frames (uint8 (frames, S, S, 3)); everything else is the cache's. For readers
    built for one clip shape (the classifier) over a cache whose clips keep their lengths."""

    variable = False  # every clip is ``frames`` long, whatever the cache's clips are

    def __init__(self, cache: ClipCache, frames: int):
        self.cache, self.frames = cache, int(frames)
        self.lengths = [self.frames] * len(cache)

    def __getattr__(self, name: str):
        return getattr(self.cache, name)

    def __len__(self) -> int:
        return len(self.cache)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        return (self.frames, *self.cache.frame_shape)

    def __getitem__(self, i: int) -> np.ndarray:
        return fit_time(self.cache[i], self.frames)  # (frames, S, S, 3)
