"""Demo corpus from real signers: render the fingerspelling recordings of `spoken-to-signed`.

The PyPI package `spoken-to-signed` ships ~600 MediaPipe Holistic recordings of the letters
of ~20 sign languages (`assets/fingerspelling_lexicon/index.csv` + `.pose` files, read with
`pose-format`). This module draws them as skeleton clips in the user's folder format
(`NAME.gif` + `NAME.txt`): letters by default, or words fingerspelled with the package's
`FingerspellingPoseLookup`. A text with spaces (a phrase) is spelled word by word, the last letter
of each word held while the hand drops and moves on: the pause signers make at a word boundary.

Framing: at 64x64 a full-body frame leaves the hand ~8 px wide, so each clip is framed on the
signing hand(s): a square of `zoom` shoulder widths centred on the median hand position over
the clip. Hands are drawn bold with one colour per finger (nearest segments last), the arms
and face outline faintly. Everything is drawn at 4x and box-filtered down (anti-aliasing).
Clips are never mirrored: that would swap the dominant hand.

Time: a clip has either a fixed number of frames spread over the recording (`frames`), or one
frame every 1/`fps` seconds of it (`fps`), so a long word lasts longer than a short one.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import multiprocessing
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import spoken_to_signed

from text2sign.core import units
from text2sign.core.files import ASSETS, DamagedFile, read_json
from text2sign.data.folder import FINGERSPELLING_MARKER, read_text
from text2sign.data.video_io import read_video, write_contact_sheet, write_gif

SUPERSAMPLE = 4  # draw at 4x, then box-filter down: cheap anti-aliasing
DEFAULT_ZOOM = 0.8  # crop side in shoulder widths: a hand is 0.25-0.6 shoulder widths long
SHEET_FRAMES = 8  # frame columns of a contact sheet
MAX_GAP = 3  # fill landmark dropouts of at most this many frames by interpolation
# Fingerspellers mark a word boundary by a pause of a few tenths of a second, the hand dropping
# or moving on, rather than by a sign for "space" (Wilcox 1992, "The Phonetics of
# Fingerspelling"; Keane 2014): without it "thank you" and "thankyou" look the same.
# "move": the last letter's hand shape is kept while the hand dips down and out and comes back
# (a letter held in place reads as a doubled letter); "hold": that frame held still.
WORD_BOUNDARY_SECONDS = 0.5
BOUNDARIES = ("move", "hold")
# How far the hand dips at a boundary, in shoulder widths (a hand is 0.25-0.6 long).
BOUNDARY_DROP = 0.25
BOUNDARY_OUT = 0.1

# Landmark subsets drawn, by MediaPipe names (pose-format keeps them as point names).
BODY_POINTS = ("LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW",
               "LEFT_WRIST", "RIGHT_WRIST")
# MediaPipe Face Mesh contours (FACEMESH_FACE_OVAL, eyes, outer lips) as closed loops.
FACE_LOOPS = (
    (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
     152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109),
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466),
    (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185),
)
FACE_POINTS = tuple(i for loop in FACE_LOOPS for i in loop)
HAND_POINTS = 21  # MediaPipe Hands: wrist, then 4 joints per finger (thumb .. pinky)
FINGERS = tuple(tuple(range(1 + 4 * f, 5 + 4 * f)) for f in range(5))  # joint ids per finger
PALM = ((0, 5), (5, 9), (9, 13), (13, 17), (0, 17))  # the thumb chain starts at the wrist

# Point layout of a Skeleton: body, face, left hand, right hand.
_B0 = 0
_F0 = _B0 + len(BODY_POINTS)
_L0 = _F0 + len(FACE_POINTS)
_R0 = _L0 + HAND_POINTS
NUM_POINTS = _R0 + HAND_POINTS

FINGER_COLORS = ((255, 64, 64), (255, 204, 0), (64, 224, 64), (0, 200, 255), (208, 96, 255))
PALM_COLOR = (176, 176, 176)  # dimmer than the fingers, which carry the hand shape
BODY_COLOR = (96, 96, 110)
FACE_COLOR = (80, 80, 90)
PALETTE_LEVELS = 31  # shades of each colour over black: 1 + 8 * 31 = 249 <= 256 GIF colours


@dataclass
class Skeleton:
    """The landmarks we draw, as plain arrays: cheap to resample and to build in tests."""

    xyz: np.ndarray  # (N, P, 3) float32 image coordinates, z = depth (smaller is nearer)
    valid: np.ndarray  # (N, P) bool: False where the tracker lost the point
    fps: float

    def __post_init__(self) -> None:
        assert self.xyz.shape[1:] == (NUM_POINTS, 3), self.xyz.shape
        assert self.valid.shape == self.xyz.shape[:2], self.valid.shape


@dataclass(frozen=True)
class Jitter:
    """Per-variant augmentation: crop scale, crop shift (fraction of the side), time window."""

    scale: float = 1.0  # >1 zooms out
    shift_x: float = 0.0
    shift_y: float = 0.0
    speed: float = 1.0  # >1 shows a shorter window of the recording (plays faster)

    @classmethod
    def sample(cls, rng: np.random.Generator, strength: float = 1.0) -> Jitter:
        """Small random jitter: +-12% scale, +-8% shift, +-15% window length."""
        u = rng.uniform(-1.0, 1.0, size=4) * strength
        return cls(scale=1.0 + 0.12 * u[0], shift_x=0.08 * u[1], shift_y=0.08 * u[2],
                   speed=1.0 + 0.15 * u[3])


# --------------------------------------------------------------------------- the lexicon

def lexicon_dir() -> Path:
    """The fingerspelling lexicon folder shipped inside the `spoken-to-signed` package."""
    folder = Path(spoken_to_signed.__file__).parent / "assets" / "fingerspelling_lexicon"
    if not (folder / "index.csv").is_file():
        raise FileNotFoundError(
            f"no fingerspelling lexicon at {folder}; reinstall it with "
            "`pip install --force-reinstall spoken-to-signed`"
        )
    return folder


def read_index() -> dict[str, dict[str, dict[str, Any]]]:
    """Signed language -> letter -> best index row (lowest priority value wins), without the
    `BROKEN_LETTERS`."""
    with open(lexicon_dir() / "index.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    index: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row["words"] in BROKEN_LETTERS.get(row["signed_language"], ()):
            continue
        letters = index.setdefault(row["signed_language"], {})
        best = letters.get(row["words"])
        if best is None or int(row["priority"]) < int(best["priority"]):
            letters[row["words"]] = row
    return index


# `fsl` in the lexicon is the ASL recordings relabelled (its rows point at the ase/ files: the
# package's create_index.py copies ASL "for French"), not French Sign Language.
ALIASES = {"fsl": "ase"}
# The Greek (gss) recordings were squeezed in time before they were shipped: a letter lasts 6-10
# frames (median 0.32 s; two letters 105 and 258 frames) where every other signer takes a median
# 0.96-1.16 s, and the Greek hand moves ~4x faster (90th-percentile speed of the hand centre 28
# shoulder widths/s, the others 3.5-11.7, median 6.9), while the original Greek recordings were
# as long as the others' (3.5-5.8 s, index.csv `end`). Resampled 3.1x slower, a Greek letter lasts
# the others' median 1.0 s and its hand moves at ~9 shoulder widths/s, inside their range.
PACE_REPAIR = {"gss": 3.1}
# Recordings that hold no readable letter: the Greek Ο (258 frames) and Φ (105) are long takes
# where the hand drops out of view and comes back, its tracking lost (a flat hand, stray arms).
BROKEN_LETTERS = {"gss": ("Ο", "Φ")}
# What the recordings show beyond their letters (measured: a hand counts in a frame when >= half
# its points are tracked; two-handed = both hands in >= 30% of a letter's frames).
LANGUAGE_NOTES = {
    "cse": "two-handed: both hands in 27 of 34 letters",
    "csq": "two-handed: both hands in 22 of 34 letters",
    "tsm": "two-handed: both hands in 22 of 29 letters; I is the dotless ı, İ the dotted i",
    "ise": "signed with the left hand",
    "gss": f"recordings squeezed to ~0.3 s a letter: resampled {PACE_REPAIR['gss']}x slower, "
           "to the other signers' pace; Ο and Φ left out: their recordings are long takes with "
           "the tracking lost, so words with ο or φ are skipped",
    "fsl": "not French Sign Language: the ASL (ase) recordings relabelled; not built (use ase)",
}


def list_languages() -> dict[str, list[str]]:
    """Signed language code -> its letters, in lexicon order."""
    return {lang: list(letters) for lang, letters in sorted(read_index().items())}


def alphabet(language: str, index: dict[str, Any] | None = None) -> dict[str, str]:
    """A language's letters as text units (`units.fold`: "Ä" stored decomposed is "ä") -> the
    lexicon's letter."""
    index = read_index() if index is None else index
    return {units.fold(letter, language): letter for letter in index[language]}


def check_languages(languages: Sequence[str], index: dict[str, Any]) -> list[str]:
    languages = [lang.strip() for lang in languages if lang.strip()]
    aliased = [lang for lang in languages if lang in ALIASES]
    if aliased:
        raise ValueError(f"{aliased[0]}: {LANGUAGE_NOTES[aliased[0]]}")
    unknown = [lang for lang in languages if lang not in index]
    if unknown or not languages:
        raise ValueError(
            f"unknown fingerspelling language(s) {unknown or languages!r}; available: "
            f"{', '.join(sorted(set(index) - set(ALIASES)))} (ISO 639-3 sign language codes, "
            "e.g. ase = ASL)"
        )
    return languages


def spell(word: str, letters: Sequence[str], language: str = units.DEFAULT_LANGUAGE) -> list[str]:
    """The letters (text units) a word or phrase is spelled with, the spaces of a phrase left
    out (they are word boundaries, not letters); a unit the alphabet ``letters`` lacks is an
    error naming it."""
    have = {units.fold(letter, language) for letter in letters}
    lacking = units.missing(word, have, language)
    if lacking:
        raise ValueError(
            f"cannot fingerspell {word!r} in {language}: no recording for "
            f"{', '.join(map(repr, lacking))}; its letters are {' '.join(letters)} (digits and "
            "punctuation are not letters; a phrase is words separated by spaces)"
        )
    out = [u for u in units.split(word, "chars", language) if u != " "]
    if not out:
        raise ValueError(f"cannot fingerspell an empty word in {language}")
    return out


def spellable(words: Sequence[str], language: str, index: dict[str, Any] | None = None
              ) -> tuple[list[str], dict[str, list[str]]]:
    """(the words the alphabet of ``language`` spells, {skipped word: the letters it lacks}):
    a word is never spelled with a letter it does not have."""
    have = set(alphabet(language, index))
    kept, skipped = [], {}
    for word in words:
        lacking = units.missing(word, have, language) if word.strip() else [" "]
        if lacking:
            skipped[word] = lacking
        else:
            kept.append(word)
    return kept, skipped


# --------------------------------------------------------------------------- poses

def _point_names(header) -> dict[tuple[str, str], int]:
    names, offset = {}, 0
    for component in header.components:
        for i, point in enumerate(component.points):
            names[(component.name, point)] = offset + i
        offset += len(component.points)
    return names


def pose_to_skeleton(pose) -> Skeleton:
    """Pick the drawn landmarks out of a pose-format `Pose` (Holistic, full or reduced)."""
    names = _point_names(pose.header)
    wanted = [("POSE_LANDMARKS", p) for p in BODY_POINTS]
    wanted += [("FACE_LANDMARKS", str(p)) for p in FACE_POINTS]
    for hand in ("LEFT", "RIGHT"):
        component = next((c for c in pose.header.components
                          if c.name == f"{hand}_HAND_LANDMARKS"), None)
        points = component.points if component is not None else [None] * HAND_POINTS
        wanted += [(f"{hand}_HAND_LANDMARKS", p) for p in points[:HAND_POINTS]]
    idx = np.array([names.get(key, -1) for key in wanted])  # (P,) -1 where absent
    data = np.ma.getdata(pose.body.data)[:, 0].astype(np.float32)  # (N, K, D) first person
    mask = np.ma.getmaskarray(pose.body.data)[:, 0].any(-1)  # (N, K)
    conf = np.asarray(pose.body.confidence)[:, 0]  # (N, K)
    if data.shape[-1] == 2:
        data = np.concatenate([data, np.zeros_like(data[..., :1])], -1)  # (N, K, 3)
    present = idx >= 0
    xyz = np.zeros((data.shape[0], NUM_POINTS, 3), np.float32)  # (N, P, 3)
    xyz[:, present] = data[:, idx[present], :3]
    valid = np.zeros((data.shape[0], NUM_POINTS), bool)  # (N, P)
    valid[:, present] = (conf[:, idx[present]] > 0) & ~mask[:, idx[present]]
    valid &= np.isfinite(xyz).all(-1)
    return Skeleton(xyz=np.nan_to_num(xyz), valid=valid, fps=float(pose.body.fps))


def load_recording(path: str | Path) -> Skeleton:
    """Read one `.pose` file of the lexicon."""
    from pose_format import Pose  # not at `text2sign --help`, which loads this module

    return pose_to_skeleton(Pose.read(Path(path).read_bytes()))


def lookup_word(text: str, spoken_language: str, signed_language: str,
                boundary: str = "move", seconds: float = WORD_BOUNDARY_SECONDS) -> Skeleton:
    """A fingerspelled word, or a phrase spelled word by word with a ``seconds`` pause after
    every word but the last at its last letter's stillest frame: the hand moving on
    (``boundary="move"``) or held still (``"hold"``)."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary={boundary!r} is not one of {list(BOUNDARIES)}")
    skeleton, word_ends = _spell_words(text.split(), spoken_language, signed_language)
    count = round(seconds * skeleton.fps)
    if boundary == "hold":
        return hold_frames(skeleton, word_ends[:-1], count)
    return move_on(skeleton, word_ends[:-1], count)


def _spell_words(words: Sequence[str], spoken_language: str, signed_language: str
                 ) -> tuple[Skeleton, list[int]]:
    """The letters of all words concatenated and smoothed as `FingerspellingPoseLookup.lookup`
    does for one word (the same frames), and the stillest frame of each word's last letter."""
    # ~0.5 s to import: not at `text2sign --help`, which loads this module
    from pose_format.utils.generic import correct_wrists, normalize_pose_size, reduce_holistic
    from spoken_to_signed.gloss_to_pose.concatenate import (
        hide_lowered_hands,
        normalize_pose,
        process_sign,
    )
    from spoken_to_signed.gloss_to_pose.smoothing import smooth_concatenate_poses

    lookup = _fingerspelling_lookup()
    letters_of = alphabet(signed_language)
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints progress lines
        letters, last_letters = [], []
        for word in words:
            letters += [letter_pose(letters_of[unit], spoken_language, signed_language)
                        for unit in spell(word, list(letters_of.values()), signed_language)]
            last_letters.append(len(letters) - 1)
        if not letters:
            raise ValueError(f"cannot fingerspell an empty text in {signed_language}")
        letters[-1] = lookup.stretch_pose(letters[-1], 2)  # the package holds the last letter
        # `concatenate_poses` step by step: smoothing trims every letter's pose in place, so
        # afterwards their lengths say where each letter lies in the concatenated pose.
        letters = [normalize_pose(reduce_holistic(p)) for p in letters]
        letters = [process_sign(p, keep_onset=i == 0, keep_offset=i == len(letters) - 1,
                                max_sign_seconds=0.8) for i, p in enumerate(letters)]
        pose = smooth_concatenate_poses(letters)
        edges = np.cumsum([0] + [len(p.body.data) for p in letters])  # (L + 1,) frame spans
        pose = correct_wrists(pose)
        normalize_pose_size(pose)
        pose = hide_lowered_hands(pose)
    skeleton = pose_to_skeleton(pose)
    speed = _hand_speed(skeleton)  # (N,)
    ends = []
    for i in last_letters:
        start, end = int(edges[i]), int(edges[i + 1])
        window = speed[start:end]
        still = int(np.argmin(window)) if np.isfinite(window).any() else (end - start) // 2
        ends.append(start + still)
    return skeleton, ends


def letter_pose(letter: str, spoken_language: str, signed_language: str):
    """The pose-format `Pose` of one lexicon letter (as the package's lookup reads it), at the
    signer's pace (`PACE_REPAIR`)."""
    lookup = _fingerspelling_lookup()
    # the package keys its index by str.lower() of the lexicon's letter
    row = lookup.words_index[spoken_language][signed_language][letter.lower()][0]
    pose, _ = lookup.get_pose(row)
    if signed_language in PACE_REPAIR:
        pose = lookup.stretch_pose(pose, PACE_REPAIR[signed_language])
    return pose


def at_pace(skeleton: Skeleton, signed_language: str) -> Skeleton:
    """A letter's recording resampled to its signer's pace (`PACE_REPAIR`; others unchanged)."""
    factor = PACE_REPAIR.get(signed_language)
    if factor is None:
        return skeleton
    n = len(skeleton.xyz)
    times = np.linspace(0, n - 1, round((n - 1) * factor) + 1)  # (N',) source frame times
    xyz, valid = resample(skeleton, times)
    return Skeleton(xyz=xyz, valid=valid, fps=skeleton.fps)


def _hand_speed(skeleton: Skeleton) -> np.ndarray:
    """(N,) mean image-plane speed of the hand points seen in a frame and the one before
    (inf where none is, and at frame 0)."""
    xy, ok = skeleton.xyz[:, _L0:, :2], skeleton.valid[:, _L0:]  # (N, 42, 2), (N, 42)
    both = ok[1:] & ok[:-1]  # (N - 1, 42)
    step = np.linalg.norm(np.diff(xy, axis=0), axis=-1)  # (N - 1, 42)
    speed = np.full(len(xy), np.inf)
    seen = both.any(1)
    speed[1:][seen] = (step * both).sum(1)[seen] / both.sum(1)[seen]
    return speed


def hold_frames(skeleton: Skeleton, at: Sequence[int], count: int) -> Skeleton:
    """The skeleton with frame ``at[k]`` shown ``count`` more times for each k (a still hold)."""
    if not len(at) or count <= 0:
        return skeleton
    order = np.arange(len(skeleton.xyz))
    repeats = np.ones(len(order), int)
    repeats[np.asarray(at, int)] += count
    order = np.repeat(order, repeats)  # (N + len(at) * count,) source frame of each frame
    return Skeleton(xyz=skeleton.xyz[order], valid=skeleton.valid[order], fps=skeleton.fps)


def move_on(skeleton: Skeleton, at: Sequence[int], count: int) -> Skeleton:
    """The skeleton with ``count`` frames inserted after frame ``at[k]`` for each k, showing
    that frame's hand shape while the hands (wrists, and elbows half as far) dip down and out
    and come back, a half sine: a word boundary that no letter of the alphabet looks like."""
    if not len(at) or count <= 0:
        return skeleton
    sw = _shoulder_width(skeleton)
    bump = np.sin(np.pi * np.arange(1, count + 1) / (count + 1))  # (count,) 0 -> 1 -> 0
    left_sh, right_sh = (_B0 + BODY_POINTS.index(n) for n in ("LEFT_SHOULDER", "RIGHT_SHOULDER"))
    parts, valid, start = [], [], 0
    for frame in sorted(int(a) for a in at):
        parts.append(skeleton.xyz[start:frame + 1])
        valid.append(skeleton.valid[start:frame + 1])
        pose, ok = skeleton.xyz[frame], skeleton.valid[frame]  # (P, 3), (P,)
        mid = (pose[left_sh, 0] + pose[right_sh, 0]) / 2 if ok[[left_sh, right_sh]].all() else None
        moved = np.repeat(pose[None], count, axis=0)  # (count, P, 3)
        for side, hand0 in (("LEFT", _L0), ("RIGHT", _R0)):
            hand = slice(hand0, hand0 + HAND_POINTS)
            seen = ok[hand]
            wrist = _B0 + BODY_POINTS.index(f"{side}_WRIST")
            elbow = _B0 + BODY_POINTS.index(f"{side}_ELBOW")
            x = pose[hand][seen, 0].mean() if seen.any() else pose[wrist, 0]
            out = np.sign(x - mid) if mid is not None else 0.0  # away from the body's middle
            shift = sw * np.stack([BOUNDARY_OUT * out * bump, BOUNDARY_DROP * bump], -1)  # (c, 2)
            moved[:, hand, :2] += shift[:, None]
            moved[:, wrist, :2] += shift
            moved[:, elbow, :2] += shift / 2
        parts.append(moved)
        valid.append(np.repeat(ok[None], count, axis=0))
        start = frame + 1
    parts.append(skeleton.xyz[start:])
    valid.append(skeleton.valid[start:])
    return Skeleton(xyz=np.concatenate(parts).astype(np.float32), valid=np.concatenate(valid),
                    fps=skeleton.fps)


@functools.cache
def _fingerspelling_lookup():
    """One lookup per process: it indexes the lexicon and caches the poses it reads."""
    # ~0.5 s to import: not at `text2sign --help`, which loads this module
    from pose_format.utils.generic import reduce_holistic
    from spoken_to_signed.gloss_to_pose.lookup.fingerspelling_lookup import (
        FingerspellingPoseLookup,
    )

    class ReducedLookup(FingerspellingPoseLookup):
        """Reads each recording already reduced to the points `concatenate_poses` keeps
        (`reduce_holistic`): the same words, 1.5x faster (no interpolation of 400 unused
        face points when the last letter is stretched)."""

        def read_pose(self, pose_path):
            return reduce_holistic(super().read_pose(pose_path))

    return ReducedLookup()


# --------------------------------------------------------------------------- rendering

def resample(skeleton: Skeleton, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks at fractional frame times; short dropouts interpolated, long ones stay invalid."""
    n = skeleton.xyz.shape[0]
    frame = np.arange(n)[:, None]  # (N, 1)
    prev = np.maximum.accumulate(np.where(skeleton.valid, frame, -1), axis=0)  # (N, P)
    nxt = np.minimum.accumulate(np.where(skeleton.valid, frame, n)[::-1], axis=0)[::-1]  # (N, P)
    times = np.clip(np.asarray(times, np.float64), 0, n - 1)
    lo = prev[np.floor(times).astype(int)]  # (T, P) last valid frame at or before t
    hi = nxt[np.ceil(times).astype(int)]  # (T, P) first valid frame at or after t
    ok = (lo >= 0) & (hi < n) & (hi - lo <= MAX_GAP + 1)
    lo_c, hi_c = np.clip(lo, 0, n - 1), np.clip(hi, 0, n - 1)
    w = np.where(hi_c > lo_c, (times[:, None] - lo_c) / np.maximum(hi_c - lo_c, 1), 0.0)  # (T, P)
    points = np.arange(skeleton.xyz.shape[1])[None]  # (1, P)
    a, b = skeleton.xyz[lo_c, points], skeleton.xyz[hi_c, points]  # (T, P, 3)
    return (a + (b - a) * w[..., None]).astype(np.float32), ok


def time_window(skeleton: Skeleton, speed: float = 1.0) -> tuple[float, float]:
    """The [start, end] frame span shown: the whole recording, shortened or lengthened by speed."""
    n = skeleton.xyz.shape[0]
    length = min(n - 1, (n - 1) / speed)
    start = ((n - 1) - length) / 2
    return start, start + length


def check_rate(fps: float) -> float:
    """A frame rate whose GIF frame duration 100 / fps is a whole number (>= 2) of centiseconds,
    so a clip of T frames lasts exactly T / fps seconds."""
    ticks = 100.0 / fps if fps > 0 else 0.0
    if not (fps > 0 and ticks >= 2 - 1e-9 and abs(ticks - round(ticks)) < 1e-6):
        raise ValueError(
            f"--fps {fps:g} gives GIF frames of {ticks:.3g} centiseconds; GIF delays are whole "
            "centiseconds (at least 2), so choose 100/k for a whole k >= 2: 50, 25, 20, 12.5, "
            "10, 6.25, 5, 4, ..."
        )
    return float(fps)


def frame_times(skeleton: Skeleton, frames: int | None = None, fps: float | None = None,
                speed: float = 1.0) -> np.ndarray:
    """Source frame times of a clip: ``frames`` spread over the window, or one every 1/``fps``
    seconds of it (the clip then lasts as long as the window, to within one frame)."""
    start, end = time_window(skeleton, speed)
    if fps is None:
        return np.linspace(start, end, frames)
    step = skeleton.fps / fps  # source frames per clip frame
    count = int(np.floor((end - start) / step + 1e-6)) + 1
    return start + step * np.arange(count)


def _shoulder_width(skeleton: Skeleton) -> float:
    left, right = _B0 + BODY_POINTS.index("LEFT_SHOULDER"), _B0 + BODY_POINTS.index(
        "RIGHT_SHOULDER")
    both = skeleton.valid[:, left] & skeleton.valid[:, right]
    if both.any():
        d = np.linalg.norm(skeleton.xyz[both, left, :2] - skeleton.xyz[both, right, :2], axis=-1)
        if np.median(d) > 0:
            return float(np.median(d))
    hands = skeleton.valid[:, _L0:]
    if hands.any():  # no shoulders: a hand is ~0.35 shoulder widths long
        pts = skeleton.xyz[:, _L0:, :2][hands]
        return float(np.ptp(pts, axis=0).max() / 0.6 + 1e-6)
    raise ValueError("recording has neither shoulders nor hands to frame")


def frame_box(skeleton: Skeleton, zoom: float = DEFAULT_ZOOM) -> tuple[float, float, float]:
    """(centre x, centre y, side): a square on the hands' median box, >= `zoom` shoulder widths.

    The median over frames ignores the hand rising into and leaving the signing space; the side
    grows beyond `zoom` only when the hands' box is wider (two-handed alphabets such as cse).
    """
    side = zoom * _shoulder_width(skeleton)
    valid = skeleton.valid[:, _L0:]  # (N, 42) both hands
    framed = valid.sum(1) >= 5  # frames with a hand in view
    if framed.any():
        xy = skeleton.xyz[framed, _L0:, :2]  # (n, 42, 2)
        ok = valid[framed][..., None]  # (n, 42, 1)
        lo = np.median(np.where(ok, xy, np.inf).min(1), axis=0)  # (2,)
        hi = np.median(np.where(ok, xy, -np.inf).max(1), axis=0)  # (2,)
        (cx, cy), side = (lo + hi) / 2, max(side, 1.2 * float(np.max(hi - lo)))
    else:  # no hand at all: frame the upper body
        body = skeleton.xyz[:, _B0:_F0, :2][skeleton.valid[:, _B0:_F0]]
        cx, cy = np.median(body, axis=0) if len(body) else (0.0, 0.0)
    return float(cx), float(cy), float(side)


def _hand_segments(xy: np.ndarray, z: np.ndarray, ok: np.ndarray, width: float):
    """(depth, colour, width, a, b) line segments of one hand, for painter's ordering."""
    out = []
    for i, j in PALM:
        if ok[i] and ok[j]:
            out.append(((z[i] + z[j]) / 2, PALM_COLOR, width * 0.8, xy[i], xy[j]))
    for finger, color in zip(FINGERS, FINGER_COLORS, strict=True):
        chain = (0, *finger) if finger[0] == 1 else finger
        for i, j in zip(chain, chain[1:], strict=False):
            if ok[i] and ok[j]:
                out.append(((z[i] + z[j]) / 2, color, width, xy[i], xy[j]))
    return out


def _draw_frame(draw, xy: np.ndarray, z: np.ndarray, ok: np.ndarray, unit: float) -> None:
    """Draw one frame: faint face and arms, then both hands far-to-near."""

    def line(a, b, color, width):
        draw.line([tuple(a), tuple(b)], fill=color, width=max(1, round(width)))

    def dot(p, color, radius):
        draw.ellipse([p[0] - radius, p[1] - radius, p[0] + radius, p[1] + radius], fill=color)

    offset = _F0
    for loop in FACE_LOOPS:
        ids = list(range(offset, offset + len(loop))) + [offset]
        for i, j in zip(ids, ids[1:], strict=False):
            if ok[i] and ok[j]:
                line(xy[i], xy[j], FACE_COLOR, unit * 0.8)
        offset += len(loop)
    b = {name: _B0 + k for k, name in enumerate(BODY_POINTS)}
    arms = [(b["LEFT_SHOULDER"], b["RIGHT_SHOULDER"])]
    for side, hand0 in (("LEFT", _L0), ("RIGHT", _R0)):
        shoulder, elbow, wrist = b[f"{side}_SHOULDER"], b[f"{side}_ELBOW"], b[f"{side}_WRIST"]
        arms += [(shoulder, elbow), (elbow, hand0 if ok[hand0] else wrist)]
    for i, j in arms:
        if ok[i] and ok[j]:
            line(xy[i], xy[j], BODY_COLOR, unit * 2.5)
    segments = []
    for hand0 in (_L0, _R0):
        sl = slice(hand0, hand0 + HAND_POINTS)
        segments += _hand_segments(xy[sl], z[sl], ok[sl], unit * 1.6)
    for _, color, width, a, b_ in sorted(segments, key=lambda s: -s[0]):  # far first
        line(a, b_, color, width)
        dot(b_, color, width * 0.6)


def _time_mode(frames: int | None, fps: float | None) -> tuple[int | None, float | None]:
    """(frames, fps) with exactly one set: a frame count (default 16) or a checked rate."""
    if frames is not None and fps is not None:
        raise ValueError(f"give frames ({frames}) or fps ({fps}), not both: a fixed frame count "
                         "or a frame rate over the recording's own duration")
    if fps is not None:
        return None, check_rate(fps)
    frames = 16 if frames is None else frames
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    return frames, None


def render_clip(
    skeleton: Skeleton | Any,
    frames: int | None = None,
    size: int = 64,
    jitter: Jitter | None = None,
    zoom: float = DEFAULT_ZOOM,
    fps: float | None = None,
) -> np.ndarray:
    """Draw a recording as a uint8 (T, size, size, 3) clip framed on the signing hands: T is
    ``frames`` (default 16), or the recording's duration times ``fps``."""
    from PIL import Image, ImageDraw  # not at `text2sign --help`, which loads this module

    if not isinstance(skeleton, Skeleton):
        skeleton = pose_to_skeleton(skeleton)
    frames, fps = _time_mode(frames, fps)
    if size < 8:
        raise ValueError(f"render_clip needs size >= 8, got {size}")
    jitter = jitter or Jitter()
    times = frame_times(skeleton, frames, fps, jitter.speed)  # (T,)
    frames = len(times)
    xyz, ok = resample(skeleton, times)  # (T, P, 3), (T, P)
    cx, cy, side = frame_box(skeleton, zoom)
    side *= jitter.scale
    cx, cy = cx + jitter.shift_x * side, cy + jitter.shift_y * side
    canvas = size * SUPERSAMPLE
    xy = (xyz[..., :2] - [cx - side / 2, cy - side / 2]) * (canvas / side)  # (T, P, 2) pixels
    unit = SUPERSAMPLE * size / 64  # one output pixel at 64x64, scaled with the size
    out = np.empty((frames, size, size, 3), np.uint8)  # (T, H, W, 3)
    for t in range(frames):
        image = Image.new("RGB", (canvas, canvas))
        _draw_frame(ImageDraw.Draw(image), xy[t], xyz[t, :, 2], ok[t], unit)
        small = image.reduce(SUPERSAMPLE)
        # Snap anti-aliased pixels to a fixed <= 256-colour palette so GIFs store them exactly:
        # a median-cut palette would tint the black background differently in every clip.
        out[t] = np.asarray(small.quantize(palette=_palette(), dither=Image.Dither.NONE)
                            .convert("RGB"))
    return out


_PALETTE: list[Any] = []


def _palette():
    """A P-mode image holding black and PALETTE_LEVELS shades of every drawing colour."""
    from PIL import Image  # not at `text2sign --help`, which loads this module

    if not _PALETTE:
        colors = [(0, 0, 0)]
        for base in (*FINGER_COLORS, PALM_COLOR, BODY_COLOR, FACE_COLOR):
            colors += [tuple(round(c * k / PALETTE_LEVELS) for c in base)
                       for k in range(1, PALETTE_LEVELS + 1)]
        image = Image.new("P", (1, 1))
        image.putpalette([c for color in colors for c in color])
        _PALETTE.append(image)
    return _PALETTE[0]


def clip_fps(skeleton: Skeleton, frames: int, speed: float = 1.0) -> float:
    """Playback rate that keeps the signer's real speed (frames over the window's duration);
    a clip rendered at a rate plays at that rate."""
    start, end = time_window(skeleton, speed)
    seconds = max(end - start, 1.0) / skeleton.fps
    return float(min(50.0, max(1.0, frames / seconds)))


# --------------------------------------------------------------------------- the corpus

def _file_name(text: str, taken: set[str]) -> str:
    """A file name for a text: the text itself when safe, unique case-insensitively."""
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "_"
    stem, k = name, 2
    while name.casefold() in taken:
        name, k = f"{stem}-{k}", k + 1
    taken.add(name.casefold())
    return name


def clip_paths(text: str, variants: int, language: str = "ase") -> list[str]:
    """The relative paths (as a clip cache keys them) of the clips of ``text`` in a corpus
    `build_fingerspelling_corpus` writes, when no other text takes its file name first."""
    name = _file_name(text, set())
    return [f"{language}/{name if variants == 1 else f'{name}-v{v:02d}'}.gif"
            for v in range(variants)]


def _rng(seed: int, language: str, text: str, variant: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{language}/{text}".encode()), variant])


# built-in lists, ASSETS/words-NAME.txt: en, en-long, en-phrases, CODE, CODE-long, CODE-names
WORD_LISTS = tuple(sorted(p.name[len("words-"):-len(".txt")]
                         for p in ASSETS.glob("words-*.txt")))
# Each language's own built-in list, by kind: ASL's are the English lists.
OWN_LISTS = {"words": "", "long": "-long", "names": "-names"}


def own_list(kind: str, language: str) -> str | None:
    """The built-in list of ``kind`` (words, long, names) of ``language``; None if it has none
    (wordfreq has no Estonian words)."""
    base = "en" if language == "ase" and kind != "names" else language
    name = f"{base}{OWN_LISTS[kind]}"
    return name if name in WORD_LISTS else None


def builtin_words(name: str = "en") -> list[str]:
    """A word list shipped with text2sign (`en`: 2,400 frequent English words of 2-8 letters;
    `en-long`: 300 of 9-14 letters; `en-phrases`: 309 phrases of 2-3 words; per sign language
    `CODE`: 600 frequent words of 2-8 letters, `CODE-long`: 100 of 9-14, `CODE-names`: 150
    names, all spelled by the language's alphabet; scripts/make_word_lists.py made them)."""
    if name not in WORD_LISTS:
        raise ValueError(f"unknown built-in word list {name!r}; available: "
                         f"{', '.join(sorted(OWN_LISTS))} (each language's own), "
                         f"{', '.join(WORD_LISTS)} (or pass a file with one word or phrase per "
                         "line)")
    return read_words(ASSETS / f"words-{name}.txt")


def read_words(path: str | Path) -> list[str]:
    """One word or phrase per line (runs of spaces read as one); blank lines and `#` comments
    skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--words file {path} not found; give one word or phrase per "
                                f"line, or built-in lists: {', '.join(sorted(OWN_LISTS))} (each "
                                f"language's own), {', '.join(WORD_LISTS)}")
    words = [" ".join(w.split()) for w in path.read_text(encoding="utf-8").splitlines()]
    words = [w for w in words if w and not w.startswith("#")]
    if not words:
        raise ValueError(f"--words file {path} has no words; give one word or phrase per line")
    return words


def words_from(spec: str, language: str = "ase", per_list: int | None = None) -> list[str]:
    """Texts of a comma-separated list of built-in list names and/or files, in order, each
    text once (``en,en-long,my-names.txt``; ``words``, ``long`` and ``names`` are
    ``language``'s own lists, where it has them). ``per_list`` keeps the first N texts of each
    list that ``language``'s alphabet can spell (the lists are ordered by frequency)."""
    if per_list is not None and per_list < 1:
        raise ValueError(f"per_list={per_list} must be >= 1 (texts taken from each list)")
    items = [spec] if Path(spec).is_file() else [p.strip() for p in spec.split(",") if p.strip()]
    texts = []
    for item in items:
        if Path(item).is_file():
            found = read_words(item)
        elif item in OWN_LISTS:
            name = own_list(item, language)
            found = builtin_words(name) if name is not None else []
        else:
            found = builtin_words(item) if item in WORD_LISTS else read_words(item)
        if per_list is not None:
            found = spellable(found, language)[0][:per_list]
        texts += found
    return list(dict.fromkeys(texts))


def skipped_line(language: str, texts: int, skipped: dict[str, list[str]]) -> str:
    """One line: how many texts ``language``'s alphabet cannot spell, and the letters why."""
    lacking: dict[str, int] = {}
    for letters in skipped.values():
        for letter in letters:
            lacking[letter] = lacking.get(letter, 0) + 1
    common = sorted(lacking, key=lambda u: -lacking[u])[:8]
    return (f"{language}: skipped {len(skipped)} of {texts} texts with letters its alphabet "
            f"lacks ({', '.join(f'{u!r} {lacking[u]}' for u in common)}; e.g. "
            f"{', '.join(map(repr, list(skipped)[:3]))})")


def _render_job(job: tuple) -> list[tuple[str, Path]]:
    """Render every variant of one text; runs in a worker process. Returns (warning, path)s."""
    out, lang, text, name, source, spoken, frames, fps, size, variants, seed, boundary, reuse = job
    paths = [Path(out) / lang / f"{name if variants == 1 else f'{name}-v{v:02d}'}.gif"
             for v in range(variants)]
    if reuse and all(p.is_file() and _says(p, text) for p in paths):
        return [("", p) for p in paths]  # written by an earlier build with the same settings
    try:
        if source is not None:
            skeleton = at_pace(load_recording(lexicon_dir() / source), lang)
        else:
            skeleton = lookup_word(text, spoken, lang, boundary)
    except Exception as err:  # a broken recording must not stop the corpus
        return [(f"skipped {lang} {text!r}: {type(err).__name__}: {err}", None)]
    written = []
    for v, path in enumerate(paths):
        jitter = Jitter() if v == 0 else Jitter.sample(_rng(seed, lang, text, v))
        clip = render_clip(skeleton, frames, size, jitter, fps=fps)
        write_gif(path, clip, fps or clip_fps(skeleton, frames, jitter.speed))
        path.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")  # last: the commit
        written.append(("", path))
    return written


def _says(gif: Path, text: str) -> bool:
    """Whether a written clip's .txt (the last file its write makes) reads as ``text``."""
    try:
        return read_text(gif.with_suffix(".txt")) == text
    except ValueError:
        return False


def _read_marker(marker: Path) -> dict | None:
    """A corpus folder's `fingerspelling.json`, or None where there is none or it is unreadable
    (then nothing in the folder is reused: every clip is written again)."""
    try:
        found = read_json(marker, "")
    except (DamagedFile, OSError):
        return None
    return found if isinstance(found.get("languages"), list) else None


def _same_clip_settings(previous: dict, settings: dict) -> bool:
    """Whether clips written under ``previous`` are the clips ``settings`` would write: the same
    settings but for the languages, and the same word boundary where both spelled phrases."""
    def clip_settings(s: dict) -> dict:
        return {k: v for k, v in s.items() if k not in ("languages", "word_boundary")}

    boundaries = previous.get("word_boundary"), settings.get("word_boundary")
    return (clip_settings(previous) == clip_settings(settings)
            and (None in boundaries or boundaries[0] == boundaries[1]))


def build_fingerspelling_corpus(
    out: str | Path,
    languages: Sequence[str] = ("ase",),
    words: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    frames: int | None = None,
    size: int = 64,
    variants: int = 1,
    seed: int = 0,
    progress: bool = True,
    letters: bool | Sequence[str] | None = None,
    workers: int = 1,
    fps: float | None = None,
    boundary: str = "move",
) -> list[Path]:
    """Write OUT/<lang>/<name>.gif + .txt for every letter and/or word; returns the GIF paths.

    ``letters`` defaults to "only when no words are given"; a list names the languages whose
    letters are written. ``words`` is one list for every
    language or a list per language; a word may be a phrase (words separated by spaces). A word
    with a letter the language's alphabet lacks is skipped (a warning counts them). Clips have
    ``frames`` frames (default 16) or, with ``fps``, one frame every 1/fps seconds of the
    recording. ``workers`` > 1 renders texts in that many processes (the output is the same). A
    phrase pauses at each word boundary, the hand moving on (``boundary="move"``) or held still
    (``"hold"``). A ``fingerspelling.json`` in OUT tells the evaluation that the texts are
    spelled letter by letter.
    """
    from tqdm.auto import tqdm  # not at `text2sign --help`, which loads this module

    frames, fps = _time_mode(frames, fps)
    if variants < 1 or size < 8 or workers < 1:
        raise ValueError(
            f"need variants >= 1, size >= 8 and workers >= 1, got {variants}, {size}, {workers}"
        )
    letters = words is None if letters is None else letters
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary={boundary!r} is not one of {list(BOUNDARIES)}")
    index = read_index()
    languages = check_languages(languages, index)
    jobs, texts_given = [], 0
    for lang in languages:
        rows = index[lang]
        taken: set[str] = set()
        spoken = next(iter(rows.values()))["spoken_language"]
        if letters is True or (not isinstance(letters, bool) and lang in letters):
            jobs += [(out, lang, letter, _file_name(letter, taken), row["path"], spoken)
                     for letter, row in rows.items()]
        texts = (words.get(lang, ()) if isinstance(words, Mapping) else words) or ()
        kept, skipped = spellable(texts, lang, index)
        if skipped:
            warnings.warn(skipped_line(lang, len(texts), skipped), stacklevel=2)
        texts_given += len(texts)
        jobs += [(out, lang, word, _file_name(word, taken), None, spoken) for word in kept]
    if not jobs:
        raise ValueError(f"none of the {texts_given} texts can be fingerspelled in "
                         f"{', '.join(languages)}; give words of these alphabets "
                         "(`text2sign data fingerspelling --list-languages`)")
    settings = {"kind": "fingerspelling", "languages": list(languages),
                **({"frames": frames} if fps is None else {"fps": fps}),
                "size": size, "variants": variants, "seed": seed}
    if any(len(job[2].split()) > 1 for job in jobs):
        settings["word_boundary"] = {"style": boundary, "seconds": WORD_BOUNDARY_SECONDS}
    marker = Path(out) / FINGERSPELLING_MARKER
    # A clip depends on its language, text and variant and on these settings, not on which other
    # languages or texts the folder holds: clips written with the same settings (an interrupted
    # build, or a corpus grown by more words or languages) are kept, each checked against its text.
    previous = _read_marker(marker)
    reuse = previous is not None and _same_clip_settings(previous, settings)
    if reuse:
        settings["languages"] += [c for c in previous["languages"] if c not in languages]
        if "word_boundary" in previous:  # its phrases' clips are still in the folder
            settings.setdefault("word_boundary", previous["word_boundary"])
    jobs = [(*job, frames, fps, size, variants, seed, boundary, reuse) for job in jobs]
    Path(out).mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(settings, indent=1))
    written: list[Path] = []
    bar = tqdm(total=len(jobs), desc="fingerspelling", unit="text", disable=not progress)
    if workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap(_render_job, jobs, chunksize=8)
    else:
        pool, results = None, map(_render_job, jobs)
    try:
        for result in results:
            for warning, path in result:
                if path is None:
                    warnings.warn(warning, stacklevel=2)
                else:
                    written.append(path)
            bar.update(1)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        bar.close()
    return written


# --------------------------------------------------------------------------- contact sheet

def write_sheet_from_corpus(path: str | Path, gifs: Sequence[Path]) -> Path:
    """Contact sheet of the first variant of every text in a freshly written corpus."""
    videos, labels, seen = [], [], set()
    for gif in gifs:
        text = gif.with_suffix(".txt").read_text(encoding="utf-8").strip()
        key = (gif.parent.name, text)
        if key in seen:
            continue
        seen.add(key)
        videos.append(read_video(gif)[0])
        multi = len({g.parent.name for g in gifs}) > 1
        labels.append(f"{gif.parent.name} {text}" if multi else text)
    if not videos:
        raise ValueError(f"no clips to put on the contact sheet {path}")
    return write_contact_sheet(path, videos, labels, max_frames=SHEET_FRAMES)
