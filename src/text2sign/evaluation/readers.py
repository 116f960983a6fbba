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

from text2sign.data.units import fold
from text2sign.evaluation.metrics import text_units
from text2sign.evaluation.sequence import (
    SequenceConfig,
    SequenceRecognizer,
    SequenceTrainSettings,
    load_or_train_sequence_recognizer,
    train_sequence_recognizer,
)
from text2sign.evaluation.transformer_reader import (
    TransformerReader,
    TransformerReaderConfig,
    TransformerReaderSettings,
)

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
    from text2sign import shipped

    found = {}
    for arch, name in SHIPPED.items():
        folder = shipped.asset(name)
        if folder.is_dir() and is_reader_folder(folder):
            found[arch] = folder
    return found


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
               where: str = "the corpus") -> None:
    """Refuse, in one line naming the difference, a reader made for another corpus: other
    units, or texts with units it has no output for."""
    if reader.units != units:
        raise ValueError(f"the {reader.kind} reads {reader.units} but {where} is scored in "
                         f"{units}: train a reader on it (`text2sign reader train`)")
    known = set(reader.vocab)
    missing = sorted({u for t in texts for u in text_units(t, units)} - known)
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
