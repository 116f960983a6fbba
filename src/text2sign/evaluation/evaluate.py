"""Generate clips for every text of a corpus and score them against its real clips.

Scores: recognition top-1 / top-5 of the generated clips by the corpus's recognizer, next to
its accuracy on held-out real clips (the ceiling); the Frechet distance between generated and
real clips in the recognizer's feature space, next to the same distance between two halves of
the real clips (the floor); per-text accuracy; seconds per generated clip on a named device.
On a corpus of several sign languages (OUT/<code>/ folders) each clip is generated, timed and
read in its language, and back-translation and duration are also reported per language over
its held-out texts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from text2sign.core.device import describe_device, release_freed_memory
from text2sign.core.report import (
    agreement_rows,
    back_translation_rows,
    classifier_note,
    duration_rows,
    fmt_number,
    format_table,
    group_top1_rows,
    json_safe,
    language_rows,
    markdown_table,
    summary_rows,
)
from text2sign.core.units import DEFAULT_LANGUAGE
from text2sign.data.cache import ClipCache, FixedCountView, split_fraction
from text2sign.data.clips import fit_time
from text2sign.data.dataset import to_unit
from text2sign.data.video_io import (
    safe_names,
    write_animated_sheet,
    write_contact_sheet,
    write_gif,
)
from text2sign.evaluation.metrics import LONG_WORD, frechet_distance, topk_hits
from text2sign.evaluation.readers import agreement, combine, pick_readers, reader_name
from text2sign.evaluation.recognizer import Recognizer, load_or_train_recognizer
from text2sign.evaluation.sequence import (
    SequenceRecognizer,
    clip_languages,
    error_rate,
    exact_accuracy,
    read_clips,
    text_units,
)
from text2sign.model_folder.folder_io import TrainingTexts, training_texts
from text2sign.model_folder.pipeline import Text2SignPipeline, videos_to_uint8
from text2sign.models.autoencoder import FrameAutoencoder

SHEET_FRAMES = 8  # frames shown per clip on the contact sheet
# The classifier sees every clip at one frame count (it resamples to its own 16 inside): clips
# that keep their lengths are first resampled to this many, which leaves room for its jitter.
CLASSIFIER_FRAMES = 32
GROUPS = ("letters", "seen", "unseen", "unseen-long", "unseen-phrases")
REAL_BORDER = (40, 200, 40)  # the real clip on each contact-sheet row is framed in green
COMPARE_ROWS = 12  # texts in compare.gif (real beside generated, animated), spread evenly
COMPARE_CLIPS = 3  # generated clips of each of them
# Texts on contact.png, spread evenly, one row each: a row of every text of a 3,000-text corpus
# would be a 384,000-pixel-tall sheet (~6 GB of frames at 128 x 128).
CONTACT_ROWS = 48


def _stratified_halves(texts: list[str], rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Split clip indices in two halves holding each text's clips alternately.

    Texts with a single clip alternate between the halves so both stay the same size.
    """
    by_text: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        by_text.setdefault(text, []).append(i)
    halves: tuple[list[int], list[int]] = ([], [])
    turn = 0
    for text in sorted(by_text):
        for i in rng.permutation(by_text[text]):
            halves[turn].append(int(i))
            turn = 1 - turn
    return halves


def _fd_scores(gen_feats: np.ndarray, real_feats: np.ndarray, real_texts: list[str],
               seed: int) -> dict[str, Any]:
    """FD(generated, real half B) and its floor FD(real half A, real half B) at equal sizes.

    FD is biased upward for small sets, so both sides use the same number of clips n: the
    first n generated clips (they cycle through the texts) and n clips of half A, each
    against all of half B.
    """
    rng = np.random.default_rng(seed)
    half_a, half_b = _stratified_halves(real_texts, rng)
    half_a = [half_a[i] for i in rng.permutation(len(half_a))]
    n = min(len(gen_feats), len(half_a))
    if n < 2 or len(half_b) < 2:
        return {"fd": float("nan"), "fd_floor": float("nan"), "fd_clips": n,
                "fd_reference_clips": len(half_b)}
    reference = real_feats[half_b]
    return {
        "fd": frechet_distance(gen_feats[:n], reference),
        "fd_floor": frechet_distance(real_feats[half_a[:n]], reference),
        "fd_clips": n,
        "fd_reference_clips": len(half_b),
    }


def _frame(video: np.ndarray, color: tuple[int, int, int], width: int = 2) -> np.ndarray:
    out = video.copy()
    out[:, :width], out[:, -width:] = color, color
    out[:, :, :width], out[:, :, -width:] = color, color
    return out


def write_comparison(path: str | Path, texts: list[str], real: list[np.ndarray],
                     generated: list[list[np.ndarray]], fps: float = 8.0) -> Path:
    """An animated GIF, one row per text: its real clip framed in green, then the clips
    generated from it, all uint8 (T, H, W, 3), playing together."""
    rows = [[_frame(r, REAL_BORDER), *g] for r, g in zip(real, generated, strict=True)]
    return write_animated_sheet(path, rows, labels=texts, fps=fps)


def _pick_frames(video: np.ndarray, count: int) -> np.ndarray:
    return video[np.linspace(0, len(video) - 1, count).round().astype(int)]  # (count, H, W, 3)


def format_summary(report: dict[str, Any]) -> str:
    """The headline numbers as aligned lines for a terminal."""
    rows = summary_rows(report)
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def print_report(report: dict[str, Any]) -> None:
    """The headline numbers and where the report, GIFs and contact sheet were written."""
    print(format_summary(report))
    note = classifier_note(report)
    if note:
        print(note)
    for rows in (group_top1_rows(report), back_translation_rows(report), agreement_rows(report),
                 duration_rows(report), language_rows(report)):
        if rows:
            print()
            print(format_table(rows))
    print()
    print(f"report:        {report['report_md']}")
    print(f"GIFs:          {report['gifs']}")
    print(f"contact sheet: {report['contact_sheet']}")
    if report.get("compare_gif"):
        print(f"animated:      {report['compare_gif']}")


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: the headline table, how it was measured, and per-text accuracy."""
    rows = summary_rows(report)
    lines = [
        f"# Evaluation of {report['model']}",
        "",
        *markdown_table([[name for name, _ in rows], [value for _, value in rows]]),
        "",
        f"{report['per_text']} clips per text, sampler {report['sampler']}, {report['steps']} "
        f"steps, guidance {report['guidance']}, seed {report['seed']}, on {report['data']}.",
        f"Ceiling: the recognizer's accuracy on {report['ceiling_clips']} held-out real clips. "
        f"FD: {report['fd_clips']} generated clips vs {report['fd_reference_clips']} real clips "
        f"(half B); floor: {report['fd_clips']} real clips of half A vs the same half B "
        "(equal sizes, since FD is biased upward for small sets). Lower FD is better.",
        "",
    ]
    note = classifier_note(report)
    if note:
        text = note.removeprefix("note: ")
        lines += [text[0].upper() + text[1:] + ".", ""]
    by_group = group_top1_rows(report)
    if by_group:
        lines += [
            "## Top-1 by group",
            "",
            *markdown_table(by_group),
            "",
            "Ceiling: the same classifier on the held-out real clips of the group's texts.",
            "",
        ]
    bt = back_translation_rows(report)
    if bt:
        decoded = ("; decoded: the same real clips after a round trip through the model's "
                   "autoencoder, the most its clips can read" if "decoded exact" in bt[0]
                   else "")
        lines += [
            "## Back-translation",
            "",
            *markdown_table(bt),
            "",
            f"Readers ({report['back_translation']['units']}) trained on the corpus's real "
            "training clips read every generated clip back into text. Ceiling: the same reader "
            "on real clips of the same texts that it never trained on (held-out clips of seen "
            f"texts, every clip of unseen texts){decoded}. Unseen texts were never in the "
            "model's training set.",
            "",
        ]
        agree = agreement_rows(report)
        if agree:
            lines += [*markdown_table(agree), "",
                      "Readers agree: the share of generated clips every reader reads the same, "
                      "and the same and right; met: every reader reads the group at >= 70% of "
                      "its ceiling's exact accuracy.", ""]
    durations = duration_rows(report)
    if durations:
        lines += [
            "## Duration",
            "",
            *markdown_table(durations),
            "",
            "Each text's generated length (the model's duration model) over the mean length of "
            "its real clips at the data rate, averaged over the group's texts, and the mean "
            "absolute difference in frames.",
            "",
        ]
    by_language = language_rows(report)
    if by_language:
        lines += [
            "## By sign language",
            "",
            *markdown_table(by_language),
            "",
            "Each sign language's held-out texts (never in the model's training set; unseen "
            "words, long words and phrases), generated and read in that language: CER and exact "
            "beside the same reader on the real clips of the same texts (the ceiling)"
            + (" and on those clips through the model's autoencoder (decoded)"
               if "decoded exact" in by_language[0] else "")
            + ", and the generated / real duration.",
            "",
        ]
    shown = report.get("contact_sheet_texts")
    if shown is not None and shown < report["texts"]:
        lines += [f"contact.png and compare.gif show {shown} and {COMPARE_ROWS} or fewer of the "
                  f"{report['texts']} texts, spread evenly; every clip is in gifs/.", ""]
    per_text = [[text, row["group"], fmt_number(row["top1"], 2), row["predicted"], row["read"]]
                for text, row in report["per_text_accuracy"].items()]
    lines += ["## Per text", "", *markdown_table(
        [["text", "group", "top-1", "most often recognized as", "read back as"], *per_text])]
    return "\n".join(lines) + "\n"


def autoencoded_ceiling(autoencoder: FrameAutoencoder, recognizer: Recognizer, cache: ClipCache,
                        indices: list[int], device: torch.device, batch_size: int = 4
                        ) -> float:
    """Recognizer top-1 on held-out real clips after an encode-decode round trip: the best a
    latent model can score, since every clip it makes goes through the same decoder.
    Clips go through the decoder ``batch_size`` at a time (4 clips of 28 frames at 128 x 128
    already hold about a gigabyte of decoder activations)."""

    keep = [int(i) for i in indices if cache.texts[int(i)] in recognizer.index]
    if not keep:
        return float("nan")
    if getattr(cache, "variable", False):
        cache = FixedCountView(cache, CLASSIFIER_FRAMES)
    hits = []  # scored a batch at a time: the decoded clips are never held together
    for s in range(0, len(keep), batch_size):
        chunk = keep[s:s + batch_size]
        clips = np.stack([cache[i] for i in chunk])  # (B, T, H, W, 3) uint8
        x = to_unit(torch.from_numpy(clips).to(device).permute(0, 4, 1, 2, 3))  # (B,3,T,H,W)
        with torch.no_grad():
            recon = videos_to_uint8(autoencoder.decode(autoencoder.encode(x)))
        logits = recognizer.predict_logits(recon)
        hits.append(topk_hits(logits, recognizer.labels([cache.texts[i] for i in chunk]), 1))
        release_freed_memory()
    return float(np.concatenate(hits).mean())


@dataclass
class Items:
    """What evaluate generates: every distinct text of the corpus in every sign language it has
    clips of. An item's key is its text, or on a corpus of several languages "code/text" (one
    text is another sign in each language); reports name items by key."""

    text: dict[str, str]  # key -> the text the model is asked for
    language: dict[str, str]  # key -> its sign language
    clip_keys: list[str]  # each clip's key, in the cache's order

    @classmethod
    def of(cls, cache: ClipCache) -> Items:
        codes = clip_languages(cache)
        several = len(set(codes)) > 1
        keys = [f"{c}/{t}" if several else t for t, c in zip(cache.texts, codes, strict=True)]
        return cls(dict(zip(keys, cache.texts, strict=True)),
                   dict(zip(keys, codes, strict=True)), keys)

    @property
    def languages(self) -> list[str]:
        return sorted(set(self.language.values()))

    @property
    def several(self) -> bool:
        """A corpus of several sign languages: reports add a table per language."""
        return len(self.languages) > 1

    def pipe_languages(self, keys: list[str]) -> list[str] | None:
        """The language of each key for the pipeline; None (its default) for ASL alone."""
        codes = [self.language[k] for k in keys]
        return None if set(codes) <= {DEFAULT_LANGUAGE} else codes


def text_groups(texts: list[str], trained: TrainingTexts,
                max_texts: int | None = None, items: Items | None = None
                ) -> dict[str, list[str]]:
    """Split texts into letters (one character), seen and unseen (never trained on, as
    ``trained`` tells: `model_folder.folder.training_texts`); unseen texts with a space are
    "unseen-phrases", unseen words of `LONG_WORD` or more characters "unseen-long".
    ``max_texts`` keeps at most that many texts of each group, picked by a stable hash of the
    text (the same picks on every machine). With ``items``, ``texts`` are item keys: a letter is
    one unit of its language (Spanish "ll" too), and ``max_texts`` applies per language.
    """
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    for key in sorted(set(texts)):
        text = items.text[key] if items else key
        if items:
            letter = len(text_units(text, "chars", items.language[key])) == 1
        else:
            letter = len(text.strip()) == 1
        if letter:
            group = "letters"
        elif trained.seen(text):
            group = "seen"
        elif " " in text.strip():
            group = "unseen-phrases"
        else:
            group = "unseen-long" if len(text.strip()) >= LONG_WORD else "unseen"
        groups[group].append(key)
    if max_texts is not None:
        def pick(keys: list[str]) -> list[str]:
            return sorted(keys, key=lambda t: split_fraction("pick:" + t))[:max_texts]

        if items:
            groups = {g: sorted(k for code in items.languages
                                for k in pick([k for k in v if items.language[k] == code]))
                      for g, v in groups.items()}
        else:
            groups = {g: sorted(pick(v)) for g, v in groups.items()}
    return {k: v for k, v in groups.items() if v}


def round_trip(autoencoder: torch.nn.Module, clip: np.ndarray) -> np.ndarray:
    """A uint8 clip (T, H, W, 3) encoded and decoded by a latent model's autoencoder: what the
    model would draw of it at best."""
    device = next(autoencoder.parameters()).device
    x = to_unit(torch.from_numpy(np.asarray(clip)).to(device).permute(3, 0, 1, 2))
    with torch.no_grad():
        return videos_to_uint8(autoencoder.decode(autoencoder.encode(x[None])))[0]


class DecodedClips:
    """A clip cache whose clips come out through a latent model's autoencoder (`round_trip`),
    its texts, languages and lengths those of the cache: readers read it as they read the real
    clips (`text2sign reader score --decoded-by`)."""

    def __init__(self, cache: Any, autoencoder: torch.nn.Module):
        self.cache, self.autoencoder = cache, autoencoder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cache, name)

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> np.ndarray:
        return round_trip(self.autoencoder, self.cache[i])


def decoded_readings(readers: dict[str, SequenceRecognizer], cache: ClipCache,
                     indices: list[int], autoencoder: torch.nn.Module, batch_size: int = 16
                     ) -> dict[str, dict[int, str]]:
    """{reader: {clip: reading}} of real clips ``indices`` after an encode-decode round trip
    through a latent model's autoencoder, each clip in its sign language: the most the model's
    own clips can read, since every clip it makes is drawn by that decoder. Each clip goes
    through the autoencoder once, whatever the number of readers."""
    codes = clip_languages(cache)
    out: dict[str, dict[int, str]] = {name: {} for name in readers}
    for s in range(0, len(indices), batch_size):
        chunk = [int(i) for i in indices[s:s + batch_size]]
        # lengths differ: a clip at a time (the decoder chunks its frames)
        decoded = [round_trip(autoencoder, cache[i]) for i in chunk]
        for name, reader in readers.items():
            read = reader.read(decoded, batch_size, [codes[i] for i in chunk])
            out[name].update(zip(chunk, (text for text, _ in read), strict=True))
        del decoded
        release_freed_memory()
    return out


def _read_scores(refs: list[str], hyps: list[str], codes: list[str], real_refs: list[str],
                 real_hyps: list[str], real_codes: list[str], units: str,
                 decoded_hyps: list[str] | None = None) -> dict[str, Any]:
    """CER and exact of readings, beside the same of real clips' readings (the ceiling) and,
    for a latent model, of the same real clips' readings through its autoencoder."""
    out = {"cer": error_rate(refs, hyps, units, codes),
           "exact": exact_accuracy(refs, hyps, units, codes),
           "ceiling_clips": len(real_refs),
           "ceiling_cer": (error_rate(real_refs, real_hyps, units, real_codes) if real_refs
                           else float("nan")),
           "ceiling_exact": exact_accuracy(real_refs, real_hyps, units, real_codes)}
    if decoded_hyps is not None:
        out["ceiling_decoded_cer"] = (error_rate(real_refs, decoded_hyps, units, real_codes)
                                      if real_refs else float("nan"))
        out["ceiling_decoded_exact"] = exact_accuracy(real_refs, decoded_hyps, units, real_codes)
    return out


def back_translation(readings: list[str], prompts: list[str], sequence: SequenceRecognizer,
                     cache: ClipCache,
                     groups: dict[str, list[str]], ceiling_idx: dict[str, list[int]],
                     items: Items | None = None, decoded: dict[int, str] | None = None
                     ) -> dict[str, Any]:
    """CER and exact-text accuracy of the generated clips' readings per group, each next to the
    same recognizer reading real clips of the same texts (the ceiling) and, given ``decoded``
    (`decoded_readings` of those clips), reading them through the model's autoencoder (the
    decoded ceiling). ``prompts`` and ``groups`` hold item keys (`Items`; the texts themselves
    without ``items``); on a corpus of several languages also per language over its held-out
    texts (the groups "unseen*")."""
    items = items or Items.of(cache)
    units = sequence.units
    codes = clip_languages(cache)
    out: dict[str, Any] = {"units": units, "groups": {}}
    real_read: dict[int, str] = {}  # each real clip read once, for its group and its language
    for group, keys in groups.items():
        chosen = set(keys)
        rows = [i for i, p in enumerate(prompts) if p in chosen]
        refs, hyps = [items.text[prompts[i]] for i in rows], [readings[i] for i in rows]
        real = ceiling_idx.get(group, [])
        real_read.update(zip(real, read_clips(sequence, cache, real) if real else [],
                             strict=True))
        out["groups"][group] = {
            "texts": len(keys), "clips": len(rows),
            **_read_scores(refs, hyps, [items.language[prompts[i]] for i in rows],
                           [cache.texts[i] for i in real], [real_read[i] for i in real],
                           [codes[i] for i in real], units,
                           None if decoded is None else [decoded[i] for i in real]),
            "examples": [[r, h] for r, h in list(zip(refs, hyps, strict=True))[:12]],
        }
    if items.several:
        out["languages"] = {}
        held_out = {k for g, keys in groups.items() if g.startswith("unseen") for k in keys}
        real_held = sorted(i for g, idx in ceiling_idx.items() if g.startswith("unseen")
                           for i in idx)
        for code in items.languages:
            keys = {k for k in held_out if items.language[k] == code}
            if not keys:
                continue
            rows = [i for i, p in enumerate(prompts) if p in keys]
            real = [i for i in real_held if codes[i] == code]
            out["languages"][code] = {
                "texts": len(keys), "clips": len(rows),
                **_read_scores([items.text[prompts[i]] for i in rows],
                               [readings[i] for i in rows], [code] * len(rows),
                               [cache.texts[i] for i in real], [real_read[i] for i in real],
                               [code] * len(real), units,
                               None if decoded is None else [decoded[i] for i in real])}
    return out


@dataclass
class Generation:
    """How `generate` made per_text clips of each text, in k-major order (the first len(texts)
    clips hold one of each text, and so on). The clips themselves are not kept: each batch is
    scored (`ClipScores`) and written (`ClipWriter`) as it is made."""

    texts: list[str]  # item keys (`Items`): the texts, or "code/text" on several languages
    groups: dict[str, list[str]]  # letters, seen, unseen... (`text_groups`)
    prompts: list[str]
    lengths: list[int]  # frames of each generated clip: one length, or each text its own
    seconds: float  # generation time, synced
    per_text: int
    sampler: str
    steps: int
    guidance: float
    seed: int
    fps: float = 8.0  # the rate the clips play at
    items: Items | None = None  # each key's text and language (None: keys are ASL texts)

    @property
    def variable(self) -> bool:
        return len(set(self.lengths)) > 1


@dataclass
class Report:
    """The scores of a Generation; `as_dict` is report.json's content (before file paths)."""

    model: str
    data: str
    texts: int
    clips: int
    per_text: int
    sampler: str
    steps: int
    guidance: float
    seed: int
    top1: float
    top5: float
    ceiling_top1: float
    ceiling_top5: float
    ceiling_clips: int
    ceiling_top1_autoencoded: float | None  # latent models only
    back_translation: dict[str, Any] | None  # `back_translation`, when asked for
    duration: dict[str, Any] | None  # `duration_scores`, for a model timed by its text
    chance_top1: float
    groups: dict[str, int]
    group_top1: dict[str, dict[str, Any]]  # per group: top-1 and its ceiling (held-out clips)
    fd: float
    fd_floor: float
    fd_clips: int
    fd_reference_clips: int
    seconds_per_clip: float
    seconds_total: float
    device: str
    per_text_accuracy: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        optional = ("ceiling_top1_autoencoded", "back_translation", "duration")
        return {k: v for k, v in dataclasses.asdict(self).items()
                if not (k in optional and v is None)}


def _as_batch(videos: list[np.ndarray], frames: int | None) -> np.ndarray:
    """Clips as one uint8 (N, T, H, W, 3) batch: as they are (``frames`` None, one length), or
    each resampled uniformly to ``frames`` (for the classifier, which resamples anyway)."""
    if frames is None:
        return np.stack(videos)
    return np.stack([fit_time(v, frames) for v in videos])


class ClipScores:
    """What scoring keeps of each generated clip, taken a batch at a time as the clips are made:
    the classifier's pooled features (for the FD), its prediction and top-1 / top-5 hits, and
    each reader's text. A few hundred bytes a clip; the clips themselves are never held."""

    def __init__(self, recognizer: Recognizer, readers: dict[str, SequenceRecognizer] | None,
                 prompts: list[str], frames: int | None, languages: list[str] | None = None):
        self.recognizer, self.prompts = recognizer, prompts  # the texts of the clips
        self.languages = languages  # each clip's sign language, read in it (None: ASL)
        self.readers = dict(readers or {})
        self.frames = frames  # every clip resampled to this count for the classifier, or kept
        self.features: list[np.ndarray] = []  # (B, D) per batch
        self.predicted: list[np.ndarray] = []  # (B,) class indices
        self.top1: list[np.ndarray] = []  # (B,) bool
        self.top5: list[np.ndarray] = []
        # each reader's text of each clip, by reader name
        self.readings: dict[str, list[str]] = {name: [] for name in self.readers}
        self.lengths: list[int] = []

    def add(self, start: int, videos: list[np.ndarray]) -> None:
        """Score clips ``start`` .. ``start + len(videos)`` of the prompts, uint8 (T_i, H, W, 3)."""
        assert start == len(self.lengths), "clips must be added in order"
        labels = self.recognizer.labels(self.prompts[start:start + len(videos)])
        feats, logits = self.recognizer.features_and_logits(_as_batch(videos, self.frames))
        self.features.append(feats)
        self.predicted.append(np.argmax(logits, axis=1))
        self.top1.append(topk_hits(logits, labels, 1))
        self.top5.append(topk_hits(logits, labels, 5))
        codes = (None if self.languages is None
                 else self.languages[start:start + len(videos)])
        for name, reader in self.readers.items():  # a list: lengths that differ read apart
            self.readings[name] += [text for text, _ in reader.read(list(videos),
                                                                    languages=codes)]
        self.lengths += [len(v) for v in videos]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(features (N, D), predicted (N,), top-1 hits (N,), top-5 hits (N,)) of every clip."""
        if not self.features:
            raise ValueError("no generated clips were scored")
        return (np.concatenate(self.features), np.concatenate(self.predicted),
                np.concatenate(self.top1), np.concatenate(self.top5))


def _spread(texts: list[str], rows: int) -> list[str]:
    """At most about ``rows`` texts, spread evenly over ``texts``."""
    return texts[:: max(1, math.ceil(len(texts) / rows))]


class ClipWriter:
    """Writes each generated clip to gifs/<text>-<k>.gif as it is made and keeps only what the
    sheets show: `SHEET_FRAMES` frames of each clip of the contact sheet's texts (at most
    `CONTACT_ROWS`) and the first clips of compare.gif's (`COMPARE_ROWS`)."""

    def __init__(self, out_dir: str | Path, texts: list[str], fps: float):
        self.out_dir, self.texts, self.fps = Path(out_dir), texts, fps
        self.gif_dir = self.out_dir / "gifs"
        self.gif_dir.mkdir(parents=True, exist_ok=True)
        self.names = safe_names(texts)
        self.sheet: dict[str, list[np.ndarray]] = {t: [] for t in _spread(texts, CONTACT_ROWS)}
        self.compare: dict[str, list[np.ndarray]] = {t: [] for t in _spread(texts, COMPARE_ROWS)}

    def add(self, start: int, videos: list[np.ndarray]) -> None:
        for i, clip in enumerate(videos, start):
            k, j = divmod(i, len(self.texts))  # prompts are k-major
            text = self.texts[j]
            write_gif(self.gif_dir / f"{self.names[text]}-{k}.gif", clip, self.fps)
            if text in self.sheet:
                self.sheet[text].append(_pick_frames(clip, SHEET_FRAMES))  # (8, H, W, 3)
            if text in self.compare and k < COMPARE_CLIPS:
                self.compare[text].append(clip)


def generate(pipe: Text2SignPipeline, texts: list[str], groups: dict[str, list[str]],
             per_text: int, sampler: str, steps: int, guidance: float, seed: int,
             batch_size: int, progress: bool,
             consumers: list[Callable[[int, list[np.ndarray]], None]],
             items: Items | None = None) -> Generation:
    """per_text clips of each text (item keys, each made in its language, with ``items``),
    timed on the pipe's device; each batch is handed to every consumer (``consumer(start,
    clips)``, e.g. `ClipScores.add`, `ClipWriter.add`) and dropped."""
    device = pipe.device
    prompts = [text for _ in range(per_text) for text in texts]  # k-major
    lengths: list[int] = []
    seconds = 0.0
    bar = tqdm(total=len(prompts), desc="evaluate: generating", unit="clip",
               disable=not progress)
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        tick = time.perf_counter()
        # seed + start: the same clips as one pipe(prompts, seed=seed, batch_size=...) call.
        codes = items.pipe_languages(chunk) if items else None
        asked = [items.text[k] for k in chunk] if items else chunk
        languages = {} if codes is None else {"language": codes}  # ASL: the pipe's default
        videos = list(pipe(asked, steps=steps, sampler=sampler, guidance=guidance,
                           seed=seed + start, batch_size=batch_size, **languages))
        seconds += time.perf_counter() - tick  # the pipe returns numpy: already synced
        for consume in consumers:
            consume(start, videos)
        lengths += [len(v) for v in videos]
        del videos
        release_freed_memory()  # else the heap keeps what the batch's temporaries took
        bar.update(len(chunk))
    bar.close()
    return Generation(texts, groups, prompts, lengths, seconds, per_text, sampler, steps,
                      guidance, seed, pipe.gif_fps, items)


def duration_scores(gen: Generation, cache: ClipCache) -> dict[str, Any] | None:
    """Per group: mean over texts of generated / real length (real: the mean of the text's
    real clips, in its language, at the data rate) and the mean absolute frame error; on a
    corpus of several sign languages also per language over its held-out texts; None unless
    the clips keep their own lengths."""
    if not getattr(cache, "variable", False):
        return None
    items = gen.items or Items.of(cache)
    real: dict[str, list[int]] = {}
    for key, length in zip(items.clip_keys, cache.lengths, strict=True):
        real.setdefault(key, []).append(length)
    made = dict(zip(gen.prompts, gen.lengths, strict=True))

    def scores(keys: list[str]) -> dict[str, Any] | None:
        pairs = [(made[k], float(np.mean(real[k]))) for k in keys if k in real]
        if not pairs:
            return None
        return {"texts": len(pairs), "ratio": float(np.mean([m / r for m, r in pairs])),
                "frame_error": float(np.mean([abs(m - r) for m, r in pairs])),
                "real_frames": float(np.mean([r for _, r in pairs]))}

    out: dict[str, Any] = {"fps": cache.data_fps, "groups": {}}
    for group, keys in gen.groups.items():
        if (g := scores(keys)) is not None:
            out["groups"][group] = g
    if items.several:
        held_out = [k for g, keys in gen.groups.items() if g.startswith("unseen") for k in keys]
        out["languages"] = {code: g for code in items.languages
                            if (g := scores([k for k in held_out
                                             if items.language[k] == code])) is not None}
    return out


def _real_scores(recognizer: Recognizer, cache: ClipCache, indices: list[int],
                 batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(features (M, D), top-1 hits (M,)) of real clips ``indices``, read a batch at a time."""
    fixed = FixedCountView(cache, CLASSIFIER_FRAMES) if getattr(cache, "variable", False) else cache
    feats, hits = [np.zeros((0, recognizer.config.feature_dim), np.float32)], [np.zeros(0, bool)]
    for s in range(0, len(indices), batch_size):
        chunk = indices[s:s + batch_size]
        f, logits = recognizer.features_and_logits(np.stack([fixed[i] for i in chunk]))
        feats.append(f)
        hits.append(topk_hits(logits, recognizer.labels([cache.texts[i] for i in chunk]), 1))
        release_freed_memory()
    return np.concatenate(feats), np.concatenate(hits)


def score(gen: Generation, clips: ClipScores, cache: ClipCache, recognizer: Recognizer,
          val_idx: list[int], ceiling_autoencoded: float | None, name: str, device: str,
          autoencoder: torch.nn.Module | None = None) -> Report:
    """Recognition, Frechet distance and (with readers) back-translation of the
    generated clips (what `ClipScores` kept of them) against the corpus's real clips of the same
    texts, read a batch at a time (and, for a latent model, through its ``autoencoder``);
    writes nothing."""
    texts, prompts, groups = gen.texts, gen.prompts, gen.groups
    items = gen.items or Items.of(cache)
    keys = items.clip_keys
    chosen = set(texts)
    real_idx = [i for i, k in enumerate(keys) if k in chosen]
    real_texts = [keys[i] for i in real_idx]
    gen_feats, predicted, top1_hits, top5_hits = clips.arrays()
    real_feats, real_hits = _real_scores(recognizer, cache, real_idx)
    fd = _fd_scores(gen_feats, real_feats, real_texts, gen.seed)
    bt = None
    held_out = set(val_idx)
    readings = [""] * len(prompts)
    if clips.readers:
        group_of = {t: g for g, group in groups.items() for t in group}
        ceiling_idx = {g: [i for i in real_idx if group_of[keys[i]] == g
                           and (g.startswith("unseen") or i in held_out)] for g in groups}
        decoded = {}
        if autoencoder is not None:
            decoded = decoded_readings(clips.readers, cache,
                                       sorted({i for v in ceiling_idx.values() for i in v}),
                                       autoencoder)
        per_reader = {rname: back_translation(clips.readings[rname], prompts, reader, cache,
                                              groups, ceiling_idx, items, decoded.get(rname))
                      for rname, reader in clips.readers.items()}
        agreements = {}
        for group, members in groups.items():
            chosen_g = set(members)
            rows = [i for i, p in enumerate(prompts) if p in chosen_g]
            agreements[group] = agreement({r: [clips.readings[r][i] for i in rows]
                                           for r in clips.readers},
                                          [items.text[prompts[i]] for i in rows])
        bt = combine(per_reader, agreements)
        readings = clips.readings[bt["reader"]]

    group_top1 = {}
    for group, members in groups.items():
        chosen_g = set(members)
        rows = [i for i, p in enumerate(prompts) if p in chosen_g]
        real_rows = [j for j, i in enumerate(real_idx) if keys[i] in chosen_g and i in held_out]
        group_top1[group] = {
            "texts": len(members), "clips": len(rows),
            "top1": float(top1_hits[rows].mean()) if rows else float("nan"),
            "ceiling_top1": float(real_hits[real_rows].mean()) if real_rows else float("nan"),
            "ceiling_clips": len(real_rows),
        }
    per_text_accuracy = {}
    for j, text in enumerate(texts):
        rows = np.arange(j, len(prompts), len(texts))
        most, _ = Counter(predicted[rows].tolist()).most_common(1)[0]
        read, _ = Counter(readings[r] for r in rows).most_common(1)[0]
        per_text_accuracy[text] = {"top1": float(top1_hits[rows].mean()),
                                   "predicted": recognizer.classes[most], "read": read,
                                   "group": next(g for g, v in groups.items() if text in v)}
    return Report(
        model=name, data=str(cache.path), texts=len(texts), clips=len(prompts),
        per_text=gen.per_text, sampler=gen.sampler, steps=gen.steps, guidance=gen.guidance,
        seed=gen.seed, top1=float(top1_hits.mean()), top5=float(top5_hits.mean()),
        ceiling_top1=recognizer.metrics.get("val_top1", float("nan")),
        ceiling_top5=recognizer.metrics.get("val_top5", float("nan")),
        ceiling_clips=recognizer.metrics.get("val_clips", 0),
        ceiling_top1_autoencoded=ceiling_autoencoded, back_translation=bt,
        duration=duration_scores(gen, cache),
        chance_top1=1.0 / len(recognizer.classes),
        groups={g: len(v) for g, v in groups.items()}, group_top1=group_top1,
        fd=fd["fd"], fd_floor=fd["fd_floor"], fd_clips=fd["fd_clips"],
        fd_reference_clips=fd["fd_reference_clips"],
        seconds_per_clip=gen.seconds / len(prompts), seconds_total=gen.seconds,
        device=device, per_text_accuracy=per_text_accuracy,
    )


def write_report(report: Report, gen: Generation, written: ClipWriter, cache: ClipCache,
                 out_dir: str | Path) -> dict[str, Any]:
    """report.json, report.md, contact.png and compare.gif (real beside generated clips,
    animated) under `out_dir`, beside the gifs/ `written` wrote as the clips were made; returns
    report.json's content (the report with where its files are)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = set(written.sheet) | set(written.compare)
    first_real: dict[str, int] = {}
    for i, key in enumerate((gen.items or Items.of(cache)).clip_keys):
        if key in shown:
            first_real.setdefault(key, i)
    accuracy = report.per_text_accuracy
    sheet_texts = list(written.sheet)
    rows = [np.concatenate([_frame(_pick_frames(np.asarray(cache[first_real[t]]), SHEET_FRAMES),
                                   REAL_BORDER), *written.sheet[t]])
            for t in sheet_texts]  # each (SHEET_FRAMES * (1 + per_text), H, W, 3)
    sheet = write_contact_sheet(out_dir / "contact.png", rows,
                                labels=[f"{text} ({fmt_number(accuracy[text]['top1'], 2)})"
                                        for text in sheet_texts])
    compare_texts = list(written.compare)
    compare = write_comparison(out_dir / "compare.gif", compare_texts,
                               [np.asarray(cache[first_real[t]]) for t in compare_texts],
                               [written.compare[t] for t in compare_texts], gen.fps)
    out = report.as_dict()
    out["gifs"] = str(written.gif_dir)
    out["contact_sheet"] = str(sheet)
    out["contact_sheet_texts"] = len(sheet_texts)
    out["compare_gif"] = str(compare)
    out["report_md"] = str(out_dir / "report.md")
    (out_dir / "report.json").write_text(json.dumps(json_safe(out), indent=2,
                                                    ensure_ascii=False))
    (out_dir / "report.md").write_text(render_markdown(out))
    return out


def evaluate(pipe: Text2SignPipeline, cache: ClipCache, out_dir: str | Path, *,
             per_text: int = 4, sampler: str | None = None, steps: int | None = None,
             guidance: float | None = None, seed: int = 0, batch_size: int = 16,
             recognizer: Recognizer | None = None,
             readers: dict[str, SequenceRecognizer] | None = None,
             sequence_recognizer: SequenceRecognizer | None = None,
             back_translate: bool = True, max_texts: int | None = None,
             only: list[str] | None = None,
             progress: bool = True, name: str = "model",
             write_files: bool = True, decoded_ceiling: bool = True) -> dict[str, Any]:
    """Generate `per_text` clips per distinct text of `cache`, score them, write the reports.

    Sampler, steps and guidance default to the model's config. The recognizer defaults to
    the corpus's cached one (trained on first use), and so do the ``readers`` of the
    back-translation (``back_translate``; one of each architecture, `readers.pick_readers`),
    which read every generated clip back into text (``sequence_recognizer``: one reader).
    ``max_texts`` evaluates at most that many texts of each group (letters, seen, unseen,
    unseen-long, unseen-phrases; `text_groups`), ``only`` just the groups it names. Writes
    report.json, report.md, contact.png and gifs/<text>-<k>.gif under `out_dir` (only the
    numbers when `write_files` is False, e.g. during training); returns report.json's content.
    ``decoded_ceiling`` (a latent model): every reader also reads the real clips through the
    model's autoencoder (`decoded_readings`; each clip encoded and decoded once, which costs
    about what generating it does; the demo leaves it out to stay quick).

    Memory is bounded by the batch, not the corpus: each batch of generated clips is scored
    and written as it is made, and real clips are read ``batch_size``-ish at a time.
    """
    if per_text < 1:
        raise ValueError(f"per_text={per_text} must be >= 1 (clips generated per text)")
    check_clips_fit(pipe, cache)
    items = Items.of(cache)
    check_languages(pipe, items, cache)  # before anything is trained or generated
    sc, dc = pipe.config.sample, pipe.config.data
    device = torch.device(pipe.device)
    if recognizer is None:
        fixed = (FixedCountView(cache, CLASSIFIER_FRAMES) if getattr(cache, "variable", False)
                 else cache)
        recognizer, _, _ = load_or_train_recognizer(fixed, dc.val_fraction, device=device,
                                                    progress=progress)
    recognizer.to(device)
    val_idx = cache.split(dc.val_fraction)[1]
    ceiling_autoencoded = None
    if pipe.autoencoder is not None:
        ceiling_autoencoded = autoencoded_ceiling(pipe.autoencoder, recognizer, cache, val_idx,
                                                  device)
    trained = training_texts(pipe.info, pipe.training_texts, cache.texts,
                             f"the corpus {cache.path}")
    groups = text_groups(list(items.clip_keys), trained, max_texts, items)
    if only is not None:
        unknown = sorted(set(only) - set(GROUPS))
        if unknown:
            raise ValueError(f"groups {unknown} are not among {list(GROUPS)}")
        groups = {g: v for g, v in groups.items() if g in only}
        if not groups:
            raise ValueError(f"the corpus has no texts in the groups {only}")
    texts = sorted(t for group in groups.values() for t in group)
    if not back_translate:
        readers = {}
    elif sequence_recognizer is not None:
        readers = {reader_name(sequence_recognizer): sequence_recognizer}
    elif readers is None:
        readers = pick_readers(None, cache, val_fraction=dc.val_fraction,
                               holdout=dc.holdout_texts, device=device, progress=progress)
    readers = {name: reader.to(device) for name, reader in readers.items()}
    prompts = [text for _ in range(per_text) for text in texts]  # generate's order
    # A model timed by its text makes clips of many lengths: the classifier sees each at one
    # count, whatever batch it came in, so scores do not depend on how the clips were batched.
    clips = ClipScores(recognizer, readers, [items.text[k] for k in prompts],
                       CLASSIFIER_FRAMES if pipe.fps is not None else None,
                       None if items.pipe_languages(prompts) is None
                       else [items.language[k] for k in prompts])
    writer = ClipWriter(out_dir, texts, pipe.gif_fps) if write_files else None
    gen = generate(pipe, texts, groups, per_text, sampler or sc.sampler, int(steps or sc.steps),
                   float(guidance if guidance is not None else sc.guidance), seed, batch_size,
                   progress, [clips.add] + ([writer.add] if writer else []), items)
    report = score(gen, clips, cache, recognizer, val_idx, ceiling_autoencoded, name,
                   describe_device(device), pipe.autoencoder if decoded_ceiling else None)
    if writer is None:
        return report.as_dict()
    return write_report(report, gen, writer, cache, out_dir)


def check_languages(pipe: Text2SignPipeline, items: Items, cache: ClipCache) -> None:
    """The model signs every sign language of the corpus; else one line naming them."""
    signs = list(getattr(pipe, "languages", None) or [DEFAULT_LANGUAGE])
    missing = [code for code in items.languages if code not in signs]
    if missing:
        raise ValueError(f"the corpus {cache.path} holds clips of {', '.join(missing)}, which "
                         f"the model does not sign (it signs {', '.join(signs)}); evaluate it on "
                         "a corpus of its languages")


def check_clips_fit(pipe: Text2SignPipeline, cache: ClipCache) -> None:
    """The corpus's clips are what the model makes: one frame count, or one frame rate, and
    one size; else one line saying how to open the data."""
    if getattr(cache, "variable", False) or pipe.fps is not None:
        have = (cache.data_fps if getattr(cache, "variable", False) else None, cache.size)
        if have != (pipe.fps, pipe.size):
            raise ValueError(
                f"the clips are at {have[0] or 'a fixed count, not a rate'} fps and "
                f"{cache.size}px but the model makes clips at {pipe.fps or 'a fixed count'} "
                f"fps and {pipe.size}px; open the data with the model's data settings (the "
                "evaluate command does this)")
        return
    if (cache.frames, cache.size) != (pipe.frames, pipe.size):
        raise ValueError(
            f"the clips are {cache.frames} frames at {cache.size}px but the model makes "
            f"{pipe.frames} frames at {pipe.size}px; open the data with frames={pipe.frames}, "
            f"size={pipe.size} (the evaluate command does this)"
        )


def tensorboard_scalars(report: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """The few numbers worth a curve during training: top-1, top-5, FD, FD floor, and the
    back-translation's CER and exact rate per group (letters, seen, unseen)."""
    keys = ("top1", "top5", "fd", "fd_floor")
    out = {f"{prefix}/{k}": float(report[k]) for k in keys
           if report.get(k) is not None and not math.isnan(float(report[k]))}
    for group, g in (report.get("back_translation") or {}).get("groups", {}).items():
        for key in ("cer", "exact"):
            if g.get(key) is not None and not math.isnan(float(g[key])):
                out[f"{prefix}/{group}_{key}"] = float(g[key])
    for group, g in (report.get("duration") or {}).get("groups", {}).items():
        out[f"{prefix}/{group}_duration_ratio"] = float(g["ratio"])
    return out
