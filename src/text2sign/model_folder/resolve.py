"""One way to a model: what a user typed (nothing, a model folder, a run folder, ``shipped:NAME``
or a Hub id, plus the sampler settings asked) -> one `ModelFolder`, its config.json read and its
weights' checksums verified once. Every command and `Text2SignPipeline.from_pretrained` start here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from text2sign.core.config import Config, validate_student
from text2sign.core.files import load_tensors, verify_digests
from text2sign.core.hub import is_hub_id, offline
from text2sign.model_folder import shipped
from text2sign.model_folder.card import CARD_FILE
from text2sign.model_folder.folder_io import read_duration, read_training_texts
from text2sign.model_folder.model_info import RETRAIN, ModelInfo, read_info
from text2sign.models.duration import DurationModel

HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.md", "*.gif"]  # never a pickle


@dataclass(frozen=True)
class ModelFolder:
    """A model folder as read once: its config.json, its training texts, its duration model;
    the weights' checksums verified, the weights loaded when asked (`weights`)."""

    path: Path  # the folder holding config.json and the weights
    name: str  # what names it to people: shipped:NAME, a Hub id, or the folder's (run's) name
    info: ModelInfo  # config.json
    training_texts: list[str] | None  # texts.txt; None for a folder written before it
    duration: DurationModel | None  # duration.json, of a model trained at a frame rate
    languages: tuple[str, ...]  # the sign languages it signs (`ModelInfo.languages`)

    @property
    def config(self) -> Config:
        return self.info.config

    @property
    def card(self) -> Path | None:
        """The model card (README.md), if the folder has one."""
        card = self.path / CARD_FILE
        return card if card.is_file() else None

    def weights(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(denoiser state, text-conditioner state) from the folder's safetensors, whose
        checksums were verified when it was resolved."""
        return (load_tensors(self.path / "denoiser.safetensors", RETRAIN),
                load_tensors(self.path / "text.safetensors", RETRAIN))


def resolve_model(name: str | Path | None = None, *, sampler: str | None = None,
                  steps: int | None = None, guidance: float | None = None,
                  language: str | None = None) -> ModelFolder:
    """The model folder ``name`` means, read and verified once. ``name``: a model folder, a run
    folder holding ``model/``, ``shipped:NAME``, a Hugging Face Hub id ('owner/name', downloaded
    unless ``HF_HUB_OFFLINE`` is set), or None for the shipped default, which the sampler
    settings and the ``language`` asked choose (`shipped_choice`)."""
    if name is None:
        path, shown, info = shipped_choice(sampler, steps, guidance, language)
    else:
        path, shown = locate(name)
        info = read_info(path)
    verify_digests(path, info.files, RETRAIN)
    return ModelFolder(path, shown, info, read_training_texts(path), read_duration(path),
                       info.languages)


def shipped_choice(sampler: str | None, steps: int | None, guidance: float | None,
                   language: str | None = None) -> tuple[Path, str, ModelInfo]:
    """The shipped model a command samples with when none is named: the student (a few lcm
    steps) unless it would refuse the sampler settings asked (`validate_student`: another
    sampler, more steps than it was distilled for, a guidance scale it was not taught), or this
    install lacks it; then the demo model, its teacher. A ``language`` neither signs but the
    multilingual model does chooses the multilingual model."""
    other = shipped.multilingual_model()
    if language is not None and (other / "config.json").is_file():
        info, default = read_info(other), shipped.default_model()
        if (language in info.languages and default is not None
                and language not in read_info(default).languages):
            return other, f"{shipped.SHIPPED}multilingual", info
    student = shipped.student()
    if (student / "config.json").is_file():
        info = read_info(student)
        asked = {"sampler": sampler, "steps": steps, "guidance": guidance}
        try:
            validate_student(replace(info.config.sample,
                                     **{k: v for k, v in asked.items() if v is not None}),
                             info.config.distill)
            return student, f"{shipped.SHIPPED}student", info
        except ValueError:  # beyond the student (or not valid at all: the teacher says why)
            pass
    teacher = shipped.model()
    if not (teacher / "config.json").is_file():
        raise FileNotFoundError(
            f"no shipped model at {str(teacher)!r} (this text2sign was installed without it); "
            "train one with `text2sign demo --train --minutes 30`, or name a model folder with "
            "--model")
    return teacher, f"{shipped.SHIPPED}demo", read_info(teacher)


def locate(name: str | Path) -> tuple[Path, str]:
    """(the folder holding config.json and the weights, the name it goes by) for a model
    folder, a run folder (``runs/NAME`` holding ``model/``), ``shipped:NAME`` or a Hub id."""
    text = str(name)
    if text.startswith(shipped.SHIPPED):
        return find(shipped.model_path(text)), text
    if is_hub_id(text):
        return find(download_model(text)), text
    found = find(Path(name))
    where = found.resolve()
    return found, where.parent.name if where.name == "model" else where.name


def find(path: Path) -> Path:
    """``path`` if it is a model folder, else its ``model/`` subfolder (a run's)."""
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


def download_model(repo_id: str) -> Path:
    """A model folder from the Hugging Face Hub (or its local cache): ``huggingface_hub``
    downloads it unless ``HF_HUB_OFFLINE`` is set, when only the cache is read."""
    # huggingface_hub's download stack imports about as slowly as torch: only hub ids need it
    from huggingface_hub import snapshot_download

    local_only = offline()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES,
                                      local_files_only=local_only))
    except Exception as err:  # offline, no network, unknown or private repository: all one fix
        why = ("HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache" if local_only
               else f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        raise FileNotFoundError(
            f"model {repo_id!r} is not a local folder, and the Hugging Face Hub did not give it "
            f"({why}); pass a local model folder, or download it where the network allows "
            f"(huggingface-cli download {repo_id}) and unset HF_HUB_OFFLINE") from err
