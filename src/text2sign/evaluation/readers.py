"""The readers, by name: train one on a corpus, load any reader folder, pick the shipped ones,
check a reader fits a corpus, and measure how often two readers agree.

Two architectures read spelled text back: ``conv-gru`` (Conv3d blocks at 32 x 32, a BiGRU, CTC:
`sequence.py`) and ``transformer`` (a per-frame 2D CNN at 64 x 64, a transformer encoder, CTC
and an attention decoder: `transformer_reader.py`). A group of generated clips is only counted
as read well when both readers say so, each against its own real-clip ceiling.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from text2sign.core.config import VAL_FRACTION
from text2sign.core.device import pick_device
from text2sign.core.files import ASSETS
from text2sign.core.report import MET_SHARE
from text2sign.core.units import DEFAULT_LANGUAGE, fold
from text2sign.evaluation.metrics import LONG_WORD, error_rate, exact_accuracy, text_units
from text2sign.evaluation.sequence import (
    SequenceConfig,
    SequenceRecognizer,
    SequenceTrainSettings,
    clip_languages,
    corpus_units,
    load_or_train_sequence_recognizer,
    read_clips,
    train_sequence_recognizer,
)
from text2sign.evaluation.transformer_reader import (
    TransformerReader,
    TransformerReaderConfig,
    TransformerReaderSettings,
)
from text2sign.model_folder import shipped

# name -> (class, config class, settings class): the order is the order reports list them.
ARCHS: dict[str, tuple[type[SequenceRecognizer], type, type]] = {
    "conv-gru": (SequenceRecognizer, SequenceConfig, SequenceTrainSettings),
    "transformer": (TransformerReader, TransformerReaderConfig, TransformerReaderSettings),
}
# The shipped readers of the shipped corpus (package assets), by architecture.
SHIPPED = {"conv-gru": "recognizer", "transformer": "reader-transformer"}


def arch_of(reader: SequenceRecognizer) -> str:
    """The architecture name of a loaded reader."""
    for name, (cls, _, _) in ARCHS.items():
        if type(reader) is cls:
            return name
    raise ValueError(f"{type(reader).__name__} is not a reader of {list(ARCHS)}")


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise ValueError(f"reader architecture {arch!r} is not one of {list(ARCHS)}")
    return arch


def is_reader_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return any((folder / cls.config_name).is_file() for cls, _, _ in ARCHS.values())


def load_reader(folder: str | Path, device: str | torch.device = "cpu") -> SequenceRecognizer:
    """Any reader folder: its json says which architecture it is."""
    folder = Path(folder)
    for cls, _, _ in ARCHS.values():
        if (folder / cls.config_name).is_file():
            return cls.load(folder, device)
    names = " or ".join(cls.config_name for cls, _, _ in ARCHS.values())
    raise FileNotFoundError(
        f"{str(folder)!r} is not a reader folder (needs {names} beside its weights); train one "
        "with `text2sign reader train DATA --out FOLDER`, or name `shipped`")


def shipped_reader_folders() -> dict[str, Path]:
    """The shipped readers that are installed, by architecture."""
    found = {}
    for arch, name in SHIPPED.items():
        folder = ASSETS / name
        if folder.is_dir() and is_reader_folder(folder):
            found[arch] = folder
    return found


def resolve_readers(names: Sequence[str | Path]) -> list[Path]:
    """Reader folders from what a user typed: folders, or `shipped` for every shipped reader."""
    folders: list[Path] = []
    for name in names:
        if str(name) == "shipped":
            installed = shipped_reader_folders()
            if not installed:
                raise FileNotFoundError("no shipped reader is installed; name a reader folder")
            folders += list(installed.values())
        else:
            folders.append(Path(name))
    return list({f.resolve(): f for f in folders}.values())  # one reader per folder


def reader_name(reader: SequenceRecognizer, names: set[str] | None = None) -> str:
    """A reader's name in reports: its architecture, numbered when two share one."""
    name = arch_of(reader)
    if names is None or name not in names:
        return name
    k = 2
    while f"{name}-{k}" in names:
        k += 1
    return f"{name}-{k}"


def check_fits(reader: SequenceRecognizer, texts: Sequence[str], units: str,
               where: str = "the corpus", languages: Sequence[str] | None = None) -> None:
    """Refuse, in one line naming the difference, a reader made for another corpus: other
    units, sign languages it does not read, or texts (each in its language: ``languages``, ASL
    by default) with units it has no output for."""
    if reader.units != units:
        raise ValueError(f"the {reader.kind} reads {reader.units} but {where} is scored in "
                         f"{units}: train a reader on it (`text2sign reader train`)")
    codes = list(languages) if languages is not None else [DEFAULT_LANGUAGE] * len(texts)
    reader.allowed(sorted(set(codes)))  # a reader of several languages names those it reads
    known = set(reader.vocab)
    missing = sorted({u for t, c in zip(texts, codes, strict=True)
                      for u in text_units(t, units, c)} - known)
    if missing:
        shown = " ".join(repr(u) for u in missing[:10])
        raise ValueError(
            f"the {reader.kind} has no output for {len(missing)} unit(s) of {where} ({shown}"
            f"{' ...' if len(missing) > 10 else ''}): it was trained on another corpus; train "
            "one on this corpus (`text2sign reader train`)")


def agreement(readings: dict[str, Sequence[str]], texts: Sequence[str]) -> dict[str, Any]:
    """How often the readers read a clip the same, and the same and right: {clips, same,
    same_right} as shares of the clips (NaN for none)."""
    names = list(readings)
    n = len(texts)
    if n == 0 or len(names) < 2:
        return {"clips": n, "same": float("nan"), "same_right": float("nan")}
    norm = {k: [" ".join(r.split()) for r in v] for k, v in readings.items()}
    truth = [" ".join(fold(t).split()) for t in texts]
    same = [len({norm[k][i] for k in names}) == 1 for i in range(n)]
    right = [s and norm[names[0]][i] == truth[i] for i, s in enumerate(same)]
    return {"clips": n, "same": float(np.mean(same)), "same_right": float(np.mean(right))}


def train_reader(cache: Any, train_idx: list[int], arch: str = "transformer", **kwargs: Any
                 ) -> SequenceRecognizer:
    """A reader of architecture ``arch`` trained on clips ``train_idx`` of a cache
    (`train_sequence_recognizer`'s keywords: config, settings, device, progress)."""
    return train_sequence_recognizer(cache, train_idx, reader_class=ARCHS[check_arch(arch)][0],
                                     **kwargs)


def load_or_train_reader(cache: Any, arch: str = "transformer", *args: Any, **kwargs: Any
                         ) -> SequenceRecognizer:
    """The corpus's reader of architecture ``arch``, trained once and cached beside the clip
    cache (`load_or_train_sequence_recognizer`'s arguments)."""
    return load_or_train_sequence_recognizer(cache, *args,
                                             reader_class=ARCHS[check_arch(arch)][0], **kwargs)


# Groups of real held-out clips a reader is scored on: lone letters (held-out clips of the
# letters), and texts no reader or model trained on: short words, long words, phrases.
REAL_GROUPS = ("letters", "unseen", "unseen-long", "unseen-phrases")


def real_groups(cache: Any, val_fraction: float, holdout: float,
                max_clips: int | None = None, every: bool = False) -> dict[str, list[int]]:
    """Clip indices of each of REAL_GROUPS: held-out clips of one-character texts, and the
    clips of held-out texts by kind (the split `load_or_train_reader` trains on); with
    ``every``, all the corpus's clips by kind (a test corpus no reader trained on)."""
    if every:
        val, unseen = [], list(range(len(cache.texts)))
    else:
        _, val, unseen = cache.split_by_text(val_fraction, holdout)
    groups: dict[str, list[int]] = {g: [] for g in REAL_GROUPS}
    for i in val:
        if len(cache.texts[i].strip()) == 1:
            groups["letters"].append(i)
    for i in unseen:
        text = cache.texts[i].strip()
        if len(text) == 1:
            groups["letters"].append(i)
        elif " " in text:
            groups["unseen-phrases"].append(i)
        else:
            groups["unseen-long" if len(text) >= LONG_WORD else "unseen"].append(i)
    if max_clips is not None:
        groups = {g: v[:max_clips] for g, v in groups.items()}
    return {g: sorted(v) for g, v in groups.items() if v}


def score_readings(texts: Sequence[str], readings: dict[str, Sequence[str]], units: str,
                   languages: Sequence[str] | None = None) -> dict[str, Any]:
    """Per reader {texts, clips, cer, exact} of readings of clips whose texts are ``texts``
    (each in its sign language, ``languages``), and the readers' agreement on them."""
    out: dict[str, Any] = {"readers": {}, "agreement": agreement(readings, texts)}
    for name, hyps in readings.items():
        out["readers"][name] = {"texts": len(set(texts)), "clips": len(texts),
                                "cer": error_rate(list(texts), list(hyps), units, languages),
                                "exact": exact_accuracy(list(texts), list(hyps), units,
                                                        languages)}
    return out


def read_real(readers: dict[str, SequenceRecognizer], cache: Any,
              groups: dict[str, list[int]], batch_size: int = 32,
              by_language: bool = False) -> dict[str, Any]:
    """Every reader on the real clips of each group, side by side: {group: score_readings};
    with ``by_language``, also {"languages": {code: score_readings}} over the clips of every
    group but the lone letters (texts no reader trained on), a sign language at a time."""
    codes = clip_languages(cache)
    units = next(iter(readers.values())).units
    out: dict[str, Any] = {}
    read: dict[int, dict[str, str]] = {}  # clip -> reader -> reading, each clip read once
    for group, idx in groups.items():
        texts = [cache.texts[i] for i in idx]
        readings = {name: read_clips(r, cache, idx, batch_size) for name, r in readers.items()}
        for k, i in enumerate(idx):
            read[i] = {name: readings[name][k] for name in readers}
        out[group] = score_readings(texts, readings, units, [codes[i] for i in idx])
    if by_language:
        unseen = sorted(i for g, idx in groups.items() if g != "letters" for i in idx)
        out = {"groups": out, "languages": {}}
        for code in sorted({codes[i] for i in unseen}):
            idx = [i for i in unseen if codes[i] == code]
            out["languages"][code] = score_readings(
                [cache.texts[i] for i in idx], {n: [read[i][n] for i in idx] for n in readers},
                units, [code] * len(idx))
    return out


def better_reader(per_reader: dict[str, dict[str, Any]]) -> str:
    """The reader whose ceilings (exact, on real clips) are higher on average over its groups:
    the one whose table `back_translation.groups` keeps for older scripts."""
    def mean_ceiling(name: str) -> float:
        values = [g["ceiling_exact"] for g in per_reader[name]["groups"].values()
                  if g.get("ceiling_exact") is not None and not np.isnan(g["ceiling_exact"])]
        return float(np.mean(values)) if values else -1.0

    return max(per_reader, key=mean_ceiling)  # the first of equals: ARCHS order


def combine(per_reader: dict[str, dict[str, Any]], agreements: dict[str, dict[str, Any]],
            share: float = MET_SHARE) -> dict[str, Any]:
    """report.json's back_translation from each reader's {units, groups[, languages]}: `groups`
    and `languages` (the better reader's), `reader` (its name), `readers` ({name: {groups[,
    languages]}}), `agreement` (per group) and
    `met` (per group: every reader reads >= ``share`` of its ceiling's exact accuracy; None
    where a ceiling is missing)."""
    best = better_reader(per_reader)
    met: dict[str, bool | None] = {}
    for group in per_reader[best]["groups"]:
        verdicts = []
        for r in per_reader.values():
            g = r["groups"].get(group)
            ceiling = None if g is None else g.get("ceiling_exact")
            if ceiling is None or np.isnan(ceiling):
                verdicts.append(None)
            else:
                verdicts.append(bool(g["exact"] >= share * ceiling))
        met[group] = None if None in verdicts else all(verdicts)
    out = {"units": per_reader[best]["units"], "groups": per_reader[best]["groups"],
           "reader": best,
           "readers": {k: {key: v[key] for key in ("groups", "languages") if key in v}
                       for k, v in per_reader.items()},
           "met": met}
    if "languages" in per_reader[best]:  # a corpus of several sign languages
        out["languages"] = per_reader[best]["languages"]
    if len(per_reader) > 1:
        out["agreement"] = agreements
    return out


MODEL_READERS = ("recognizer", "reader-transformer")  # a model folder's own readers


def find_reader_folders(model_folder: Path, corpus_cache: Path | None) -> list[Path]:
    """The readers that belong to a model: its own (``MODEL/recognizer/``, either
    architecture, and ``MODEL/reader-transformer/``); else the shipped readers, for the
    shipped model; else those `evaluate` and `demo` trained beside the corpus's clip cache,
    the newest of each architecture; else none."""
    model_folder = Path(model_folder)
    own = [model_folder / name for name in MODEL_READERS
           if is_reader_folder(model_folder / name)]
    if own:
        return own
    if shipped.is_shipped(model_folder):
        found = list(shipped_reader_folders().values())
        if found:
            return found
    if corpus_cache is None or not Path(corpus_cache).is_dir():
        return []
    newest = []
    for cls, _, _ in ARCHS.values():
        kind = [p for p in Path(corpus_cache).glob(f"{cls.cache_prefix}-*")
                if p.is_dir() and is_reader_folder(p)]
        newest += sorted(kind, key=lambda p: p.stat().st_mtime, reverse=True)[:1]
    return newest


def pick_readers(names: Sequence[str | Path] | None, cache: Any, *,
                 model_folder: Path | None = None,
                 val_fraction: float = VAL_FRACTION, holdout: float = 0.0,
                 device: str | torch.device | None = None, progress: bool = True
                 ) -> dict[str, SequenceRecognizer]:
    """The readers of a back-translation, by name, for `evaluate` and `demo` (`serve` finds
    its own with `find_reader_folders`): the folders named (`shipped`: the shipped readers);
    none named, those of ``model_folder`` (`find_reader_folders`); each checked against the
    corpus's texts; else one of each architecture trained on the corpus (once, cached beside
    it; a unit only its held-out clips show is one they never output)."""
    readers: dict[str, SequenceRecognizer] = {}
    if not names and model_folder is not None:
        names = find_reader_folders(model_folder, Path(cache.path))
    if not names:
        return {arch: load_or_train_reader(cache, arch, val_fraction, holdout, device=device,
                                           progress=progress) for arch in ARCHS}
    units = corpus_units(cache)
    pairs = list(dict.fromkeys(zip(cache.texts, clip_languages(cache), strict=True)))
    texts, codes = [t for t, _ in pairs], [c for _, c in pairs]
    for folder in resolve_readers(names):
        reader = load_reader(folder, pick_device(device))
        check_fits(reader, texts, units, f"the corpus {cache.path}", codes)
        readers[reader_name(reader, set(readers))] = reader
    return readers

