"""Model folders (config.json + safetensors, never a pickle): write them, read their training
texts and duration model, record an evaluation, check weights against a model. Finding and
reading a folder as a whole is `resolve.resolve_model`'s."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from text2sign.core.files import (
    atomic_dir,
    digests,
    read_json,
    write_text_atomic,
)
from text2sign.core.report import json_safe
from text2sign.core.units import fold
from text2sign.data.cache import holdout_texts
from text2sign.model_folder.autoencoder_io import write_autoencoder
from text2sign.model_folder.card import CARD_FILE, SAMPLE_FILE, model_card
from text2sign.model_folder.model_info import RETRAIN, ModelInfo
from text2sign.models.duration import DurationModel

TEXTS_FILE = "texts.txt"  # every training text, one per line: what the model has seen
DURATION_FILE = "duration.json"  # how many frames a text lasts (a model trained at a frame rate)


def cpu_contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensors as safetensors writes them: detached, on the CPU, contiguous."""
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


# ----------------------------------------------------------------------------- model folders


def save_model_folder(folder: str | Path, info: ModelInfo,
                      denoiser_state: dict[str, torch.Tensor],
                      text_state: dict[str, torch.Tensor], autoencoder: Any = None,
                      texts: list[str] | None = None, sample: Path | None = None,
                      duration: Any = None) -> Path:
    """A self-describing model: config.json (``info``, with the files' checksums) +
    denoiser.safetensors + text.safetensors, the frame autoencoder (autoencoder.safetensors +
    .json) of a latent model, texts.txt, the duration model (duration.json) of a model trained
    at a frame rate, the model card README.md and, if given, ``sample`` (an animated GIF) as
    sample.gif."""
    cfg = info.config

    def write(tmp: Path) -> None:
        save_file(cpu_contiguous(denoiser_state), str(tmp / "denoiser.safetensors"))
        save_file(cpu_contiguous(text_state), str(tmp / "text.safetensors"))
        if texts is not None:
            (tmp / TEXTS_FILE).write_text("".join(t.replace("\n", " ") + "\n" for t in texts),
                                          encoding="utf-8")
        if autoencoder is not None:
            write_autoencoder(tmp, autoencoder, cfg.latent)
        if duration is not None:
            (tmp / DURATION_FILE).write_text(duration.to_json(), encoding="utf-8")
        if sample is not None:
            shutil.copyfile(sample, tmp / SAMPLE_FILE)
        (tmp / CARD_FILE).write_text(model_card(info, folder, texts, sample is not None),
                                     encoding="utf-8")
        # Written last, with the weights' checksums that loading verifies.
        written = replace(info, files=digests(tmp))
        (tmp / "config.json").write_text(json.dumps(written.to_json(), indent=2))

    return atomic_dir(Path(folder), write)


def read_training_texts(folder: str | Path) -> list[str] | None:
    """The texts a model folder was trained on (texts.txt), or None for an older folder."""
    path = Path(folder) / TEXTS_FILE
    if not path.is_file():
        return None
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


@dataclass(frozen=True)
class TrainingTexts:
    """Which texts a model trained on and how that is known: the one answer to "seen or
    unseen?" for evaluation, the demo and the web page. Case-insensitive ("A" is "a")."""

    texts: frozenset[str] | None  # folded (`units.fold`); None: nothing at hand tells
    source: str  # where the answer comes from, for a reader

    def seen(self, text: str) -> bool | None:
        """Whether the model trained on ``text``; None when nothing tells."""
        return None if self.texts is None else fold(text) in self.texts


def training_texts(info: ModelInfo, listed: list[str] | None,
                   corpus_texts: Iterable[str] | None = None,
                   corpus: str = "the corpus") -> TrainingTexts:
    """The texts the model of ``info`` trained on: its texts.txt (``listed``, as
    `read_training_texts` gives it).

    Older folders have no texts.txt. Their config.json lists up to 50 training texts: all of
    them when the model had at most 50. Past that only the training corpus can tell
    (``corpus_texts``, named ``corpus``): its texts less those ``data.holdout_texts`` held out.
    """
    if listed is not None:
        return TrainingTexts(frozenset(fold(t) for t in listed),
                             "the model's list of training texts (texts.txt)")
    examples, count = info.data.get("examples"), info.data.get("texts")
    if examples is not None and count is not None and len(examples) >= count:
        return TrainingTexts(frozenset(fold(t) for t in examples),
                             "the model's list of training texts")
    if corpus_texts is not None:
        texts = set(corpus_texts)
        held = holdout_texts(texts, info.config.data.holdout_texts)
        return TrainingTexts(frozenset(fold(t) for t in texts - held),
                             f"the texts of {corpus} not held out")
    return TrainingTexts(None, f"unknown: the model lists {len(examples or [])} of its "
                               f"{count or '?'} training texts; pass --data CORPUS to tell")


def read_duration(folder: str | Path) -> DurationModel | None:
    """The duration model of a model folder, or None (a model trained at a frame count)."""
    path = Path(folder) / DURATION_FILE
    if not path.is_file():
        return None
    return DurationModel.from_json(path.read_text(encoding="utf-8"), str(path))


EVALUATION_KEYS = ("data", "texts", "clips", "per_text", "sampler", "steps", "guidance", "seed",
                   "top1", "top5", "ceiling_top1", "ceiling_top5", "ceiling_top1_autoencoded",
                   "chance_top1", "fd", "fd_floor", "seconds_per_clip", "device",
                   "back_translation", "group_top1", "duration")


def add_evaluation(folder: str | Path, report: dict[str, Any], command: str | None) -> Path:
    """Record an evaluation in a model folder (one `resolve_model` found): its numbers in
    config.json (so a re-written card keeps them), its compare.gif as sample.gif, and the card
    re-written with both."""
    folder = Path(folder)
    path = folder / "config.json"
    raw = read_json(path, RETRAIN)  # read once: checked as ModelInfo, written back as it was
    kept = {k: report[k] for k in EVALUATION_KEYS if k in report}
    info = replace(ModelInfo.from_json(raw, str(path)),
                   evaluation=json_safe({**kept, "command": command}))
    raw["evaluation"] = info.evaluation  # the rest of config.json as it was (not normalized)
    if report.get("compare_gif"):
        shutil.copyfile(report["compare_gif"], folder / SAMPLE_FILE)
    # config.json keeps its recorded checksums: they cover the weights, which do not change.
    write_text_atomic(path, json.dumps(raw, indent=2))
    card = model_card(info, folder, read_training_texts(folder), (folder / SAMPLE_FILE).is_file())
    write_text_atomic(folder / CARD_FILE, card)
    return folder / CARD_FILE


def check_fit(expected: dict[str, Any], state: dict[str, torch.Tensor], what: str, fix: str,
              may_lack: set[str] = frozenset()) -> None:
    """The one check of weights against a model: exactly its names (``may_lack``: names the
    weights may leave out, e.g. frozen pretrained ones) with its shapes. ``expected`` maps names
    to tensors or shapes; a model built on the meta device gives them without allocating."""
    want = {k: tuple(v.shape) if hasattr(v, "shape") else tuple(v) for k, v in expected.items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(want) - set(have) - set(may_lack))
    unexpected = sorted(set(have) - set(want))
    shapes = [f"{k}: {have[k]} vs {want[k]}" for k in sorted(set(want) & set(have))
              if want[k] != have[k]]
    if missing or unexpected or shapes:
        raise ValueError(f"{what} (missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
                         f"{f', size mismatch file vs model {shapes[:3]}' if shapes else ''}); "
                         f"{fix}")
