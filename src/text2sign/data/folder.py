"""Find NAME.<video> + NAME.txt pairs in a folder tree and say exactly why any pair is unusable.

Rules: folders and files whose name starts with "." are skipped (the default cache lives in
``<root>/.text2sign-cache``). The text is the .txt decoded as UTF-8 (a BOM is allowed) with
surrounding whitespace stripped. Stems must be unique within each sign language of the tree
(clips are named by stem in samples and reports; a corpus of several languages keeps each in
its OUT/<code>/ folder, where gsg/A.gif and ukl/A.gif are two letters): among otherwise usable
pairs with the same stem in one language the first by relative path is kept and every other one
is reported as a duplicate.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from text2sign.core.units import clip_language
from text2sign.data.video_io import VIDEO_SUFFIXES, VideoReadError, read_video, supported_suffixes

# Written in a corpus root by `data.fingerspelling`: its texts are spelled letter by letter.
FINGERSPELLING_MARKER = "fingerspelling.json"


def is_fingerspelling_corpus(path: str | Path) -> bool:
    """Whether ``path`` (a corpus folder) was written by `build_fingerspelling_corpus`."""
    return (Path(path) / FINGERSPELLING_MARKER).is_file()


@dataclass(frozen=True, slots=True)
class Pair:
    """A usable clip: its stem, its video's path and its text. The path is kept as a str: a
    scan holds one per clip, and a Path object costs several times its string (70,000 clips:
    ~140 MB of Paths against ~30 MB of strings)."""

    stem: str
    path: str
    text: str

    @property
    def video(self) -> Path:
        return Path(self.path)


@dataclass
class BadPair:
    path: Path
    reason: str


@dataclass
class ScanResult:
    root: Path
    good: list[Pair] = field(default_factory=list)
    bad: list[BadPair] = field(default_factory=list)

    def relative(self, path: Path) -> str:
        """The POSIX path relative to the scanned root: the stable name of a clip."""
        return path.relative_to(self.root).as_posix()


def read_text(path: Path) -> str:
    """The caption of a pair, or ValueError with a one-line reason."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"unreadable .txt ({err.strerror or err})") from err
    try:
        text = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError as err:
        raise ValueError(f"text is not UTF-8 (bad byte at offset {err.start}); "
                         "re-save the .txt as UTF-8") from err
    if not text:
        raise ValueError("empty .txt")
    return text


def _visible_files(root: Path) -> list[str]:
    """Every file under ``root`` whose relative path has no part starting with ".", as path
    strings sorted by that relative path (symlinked folders are not followed)."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files.extend(path for name in names if not name.startswith(".")
                     and os.path.isfile(path := os.path.join(folder, name)))
    prefix = len(os.path.join(str(root), ""))
    return sorted(files, key=lambda f: f[prefix:].replace(os.sep, "/"))


PARALLEL_FROM = 64  # decode in worker processes by default when at least this many clips


def default_workers(clips: int) -> int:
    """Decoding processes when none are asked for: up to 8 cores for >= PARALLEL_FROM clips."""
    return min(8, os.cpu_count() or 1) if clips >= PARALLEL_FROM else 1


def decode_error(path: str | Path) -> str | None:
    """Why a video cannot be decoded, or None; runs in worker processes."""
    try:
        read_video(Path(path))
    except VideoReadError as err:
        return str(err)
    return None


def scan_folder(root: str | Path, decode: bool = True, progress: bool = False,
                workers: int | None = None) -> ScanResult:
    """Pair every video with the .txt beside it; with ``decode`` also fully decode each video,
    in ``workers`` processes (default: `default_workers`), under a progress bar if asked."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"clip folder {str(root)!r} does not exist; pass a folder of "
                                "NAME.gif + NAME.txt pairs")
    if not root.is_dir():
        raise FileNotFoundError(f"{str(root)!r} is not a folder; pass a folder of "
                                "NAME.gif + NAME.txt pairs")
    files = _visible_files(root)  # path strings, not Paths: one a file, held at once
    readable = supported_suffixes()

    def suffix(path: str) -> str:
        return os.path.splitext(path)[1].lower()

    videos = [p for p in files if suffix(p) in VIDEO_SUFFIXES]
    texts = [p for p in files if suffix(p) == ".txt"]
    del files
    if not videos and not texts:
        raise ValueError(
            f"no NAME.gif + NAME.txt pairs found in {str(root)!r} (searched recursively); "
            "put clips there, or build a demo corpus with `text2sign data fingerspelling DIR`"
        )
    result = ScanResult(root=root)
    candidates: list[Pair] = []
    video_stems = {os.path.splitext(p)[0] for p in videos}
    for text_path in texts:
        if os.path.splitext(text_path)[0] not in video_stems:
            result.bad.append(BadPair(Path(text_path), f"no video for this text (expected "
                                      f"{Path(text_path).stem}.gif beside it)"))
    del video_stems, texts
    for video in videos:
        base, ext = os.path.splitext(video)
        text_path = base + ".txt"
        if ext.lower() not in readable:
            result.bad.append(BadPair(Path(video), f"{ext} needs PyAV: pip install av"))
            continue
        if not os.path.isfile(text_path):
            result.bad.append(BadPair(Path(video), f"missing .txt (expected "
                                      f"{os.path.basename(text_path)})"))
            continue
        try:
            text = read_text(Path(text_path))
        except ValueError as err:
            result.bad.append(BadPair(Path(text_path), str(err)))
            continue
        if os.stat(video).st_size == 0:
            result.bad.append(BadPair(Path(video), "empty file"))
            continue
        candidates.append(Pair(os.path.basename(base), video, text))
    if decode:
        candidates = _decodable(candidates, result, progress, workers)
    kept: dict[tuple[str, str], Pair] = {}
    for pair in candidates:
        first = kept.setdefault((clip_language(result.relative(pair.video)), pair.stem), pair)
        if first is not pair:
            result.bad.append(BadPair(pair.video, f"duplicate stem {pair.stem!r} "
                                      f"(kept {result.relative(first.video)})"))
        else:
            result.good.append(pair)
    result.bad.sort(key=lambda b: result.relative(b.path))
    return result


def _decodable(pairs: list[Pair], result: ScanResult, progress: bool,
               workers: int | None) -> list[Pair]:
    """The pairs whose video decodes fully; the others go to ``result.bad`` with the reason."""
    workers = default_workers(len(pairs)) if workers is None else workers
    if workers < 1:
        raise ValueError(f"--workers {workers}: must be at least 1")
    videos = [pair.path for pair in pairs]
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        errors = pool.imap(decode_error, videos, chunksize=4) if pool else map(decode_error,
                                                                              videos)
        good = []
        for pair, error in zip(pairs, tqdm(errors, total=len(pairs), desc="check", unit="clip",
                                           disable=not progress), strict=True):
            if error is None:
                good.append(pair)
            else:
                result.bad.append(BadPair(pair.video, error))
    finally:
        if pool is not None:
            pool.terminate()
    return good
