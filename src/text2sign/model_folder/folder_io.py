"""Model folders (config.json + safetensors, never a pickle): write, find (a folder, a run's
model/ or a Hub id), read, verify, and record an evaluation."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from text2sign.core.config import Config, validate_student
from text2sign.core.files import (
    atomic_dir,
    digests,
    load_tensors,
    read_json,
    verify_digests,
    write_text_atomic,
)
from text2sign.core.report import json_safe
from text2sign.core.units import fold
from text2sign.data.cache import holdout_texts
from text2sign.model_folder import shipped
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


HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.md", "*.gif"]  # never a pickle


def download_model(repo_id: str) -> Path:
    """A model folder from the Hugging Face Hub (or its local cache): ``huggingface_hub``
    downloads it unless ``HF_HUB_OFFLINE`` is set, when only the cache is read."""
    # huggingface_hub's download stack imports about as slowly as torch: only hub ids need it
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES,
                                      local_files_only=offline))
    except Exception as err:  # offline, no network, unknown or private repository: all one fix
        why = ("HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache" if offline
               else f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        raise FileNotFoundError(
            f"model {repo_id!r} is not a local folder, and the Hugging Face Hub did not give it "
            f"({why}); pass a local model folder, or download it where the network allows "
            f"(huggingface-cli download {repo_id}) and unset HF_HUB_OFFLINE") from err


def is_hub_id(name: str) -> bool:
    """'owner/name' with no path syntax: what the Hub calls a repository id."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name) is not None and ".." not in name


def find_model_folder(path: str | Path) -> Path:
    """Accept a model folder, a run folder (``runs/NAME`` holding ``model/``) or a Hugging Face
    Hub id ('owner/name', when no folder ``owner`` exists here)."""
    # "runs/mnie" is a typo of a local path when runs/ exists here, not a Hub id to look up
    if is_hub_id(str(path)) and not Path(str(path).split("/")[0]).exists():
        path = download_model(str(path))
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / "config.json").is_file() and (candidate / "denoiser.safetensors").is_file():
            return candidate
    if not path.exists():
        raise FileNotFoundError(f"model folder {str(path)!r} does not exist")
    hidden = sorted(path.glob(".model.old-*"))
    if hidden and not (path / "model").exists():
        raise FileNotFoundError(
            f"the model write in {str(path)!r} was interrupted; the previous model is in "
            f"{str(hidden[-1])!r}: rename it to model, or continue the run with --resume, "
            "which restores it")
    raise FileNotFoundError(
        f"{str(path)!r} is not a text2sign model folder: expected config.json and "
        "denoiser.safetensors in it or in its model/ subfolder (train one with `text2sign train`)"
    )


def shipped_default(sampler: str | None = None, steps: int | None = None,
                    guidance: float | None = None) -> Path:
    """The shipped folder a command samples with when no model is named: the student (a few
    lcm steps) unless it would refuse the sampler settings asked (`validate_student`: another
    sampler, more steps than it was distilled for, a guidance scale it was not taught): then
    the demo model, its teacher."""
    student = shipped.default_model()
    cfg = _read_info(student).config
    asked = {"sampler": sampler, "steps": steps, "guidance": guidance}
    try:
        validate_student(replace(cfg.sample, **{k: v for k, v in asked.items() if v is not None}),
                         cfg.distill)
    except ValueError:  # beyond the student (or not valid at all: the teacher says why)
        return shipped.model()
    return student


def model_or_shipped(name: str | Path | None) -> Path:
    """The model folder a command was given, or the shipped default when none was: one default
    for sample, evaluate, info and serve."""
    return find_model_folder(shipped_default() if name is None else shipped.model_path(name))


def read_model_info(folder: str | Path) -> ModelInfo:
    """The config.json of a model folder (or of a run's, or a Hub id's: see find_model_folder)."""
    return _read_info(find_model_folder(folder))


def _read_info(found: Path) -> ModelInfo:
    path = found / "config.json"
    return ModelInfo.from_json(read_json(path, RETRAIN), str(path))


EVALUATION_KEYS = ("data", "texts", "clips", "per_text", "sampler", "steps", "guidance", "seed",
                   "top1", "top5", "ceiling_top1", "ceiling_top5", "ceiling_top1_autoencoded",
                   "chance_top1", "fd", "fd_floor", "seconds_per_clip", "device",
                   "back_translation", "group_top1", "duration")


def add_evaluation(folder: str | Path, report: dict[str, Any], command: str | None) -> Path:
    """Record an evaluation in a model folder: its numbers in config.json (so a re-written card
    keeps them), its compare.gif as sample.gif, and the card re-written with both."""
    folder = find_model_folder(folder)
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


def load_model_folder(name: str | Path | None) -> tuple[Path, Config, dict, dict, ModelInfo]:
    """Return (folder, config, denoiser_state, text_state, info) read from safetensors + JSON,
    after checking the weights against the checksums recorded in config.json. ``name`` is what
    `model_or_shipped` takes: the folder is found once, here."""
    folder = model_or_shipped(name)
    info = _read_info(folder)
    fix = RETRAIN
    verify_digests(folder, info.files, fix)
    return (folder, info.config, load_tensors(folder / "denoiser.safetensors", fix),
            load_tensors(folder / "text.safetensors", fix), info)


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
