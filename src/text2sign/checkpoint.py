"""Model folders (config.json + safetensors) and resumable training state, all without pickle."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from text2sign.card import CARD_FILE, SAMPLE_FILE, model_card
from text2sign.config import Config, from_dict
from text2sign.files import (
    DamagedFile,
    atomic_dir,
    digests,
    load_tensors,
    read_json,
    verify_digests,
)
from text2sign.latent import write_autoencoder

MODEL_FORMAT = "text2sign-model"
TEXTS_FILE = "texts.txt"  # every training text, one per line: what the model has seen
MODEL_VERSION = 1
CHECKPOINT_PREFIX = "step-"


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


# ----------------------------------------------------------------------------- model folders


def save_model_folder(folder: str | Path, cfg: Config, denoiser_state: dict[str, torch.Tensor],
                      text_state: dict[str, torch.Tensor], meta: dict[str, Any],
                      autoencoder: Any = None, texts: list[str] | None = None,
                      sample: Path | None = None) -> Path:
    """A self-describing model: config.json + denoiser.safetensors + text.safetensors, the
    frame autoencoder (autoencoder.safetensors + .json) of a latent model, texts.txt, the
    model card README.md and, if given, ``sample`` (an animated GIF) as sample.gif."""
    info = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "config": cfg.to_dict(),
        **meta,
    }

    def write(tmp: Path) -> None:
        save_file(_contiguous(denoiser_state), str(tmp / "denoiser.safetensors"))
        save_file(_contiguous(text_state), str(tmp / "text.safetensors"))
        if texts is not None:
            (tmp / TEXTS_FILE).write_text("".join(t.replace("\n", " ") + "\n" for t in texts),
                                          encoding="utf-8")
        if autoencoder is not None:
            write_autoencoder(tmp, autoencoder, cfg.latent)
        if sample is not None:
            shutil.copyfile(sample, tmp / SAMPLE_FILE)
        (tmp / CARD_FILE).write_text(model_card(info, folder, texts, sample is not None),
                                     encoding="utf-8")
        # Written last, with the weights' checksums that loading verifies.
        (tmp / "config.json").write_text(json.dumps({**info, "files": digests(tmp)}, indent=2))

    return atomic_dir(Path(folder), write)


def read_training_texts(folder: str | Path) -> list[str] | None:
    """The texts a model folder was trained on (texts.txt), or None for an older folder."""
    path = Path(folder) / TEXTS_FILE
    if not path.is_file():
        return None
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.md", "*.gif"]  # never a pickle


def download_model(repo_id: str) -> Path:
    """A model folder from the Hugging Face Hub (or its local cache): ``huggingface_hub``
    downloads it unless ``HF_HUB_OFFLINE`` is set, when only the cache is read."""
    import os

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
    """Accept a model folder, a run folder (``runs/NAME`` holding ``model/``) or, when no such
    local path exists, a Hugging Face Hub id ('owner/name')."""
    if not Path(path).exists() and is_hub_id(str(path)):
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


def read_model_info(folder: str | Path) -> dict[str, Any]:
    folder = find_model_folder(folder)
    path = folder / "config.json"
    info = read_json(path, f"copy the model folder again or retrain it ({_RETRAIN})")
    if info.get("format") != MODEL_FORMAT:
        raise ValueError(
            f"{str(path)!r} has format {info.get('format')!r}, expected {MODEL_FORMAT!r}"
        )
    if not isinstance(info.get("version"), int) or info["version"] > MODEL_VERSION:
        raise ValueError(
            f"model folder version {info.get('version')!r} in {str(path)!r} is not one this "
            f"text2sign reads ({MODEL_VERSION} or older); upgrade text2sign"
        )
    config = info.get("config")
    missing = [k for k in Config().to_dict() if not isinstance(config, dict) or k not in config]
    if missing:
        raise DamagedFile(f"{str(path)!r} has no {missing} section(s) in its config; copy the "
                          f"model folder again or retrain it ({_RETRAIN})")
    try:
        info["config"] = from_dict(config).to_dict()
    except ValueError as err:
        raise ValueError(f"{str(path)!r}: {err}") from err
    return info


_RETRAIN = "text2sign train writes one into runs/NAME/model"


def load_model_folder(folder: str | Path) -> tuple[Config, dict, dict, dict[str, Any]]:
    """Return (config, denoiser_state, text_state, info) read from safetensors + JSON, after
    checking the weights against the checksums recorded in config.json."""
    folder = find_model_folder(folder)
    info = read_model_info(folder)
    fix = f"copy the model folder again or retrain it ({_RETRAIN})"
    verify_digests(folder, info.get("files", {}), fix)
    cfg = from_dict(info["config"])
    return (cfg, load_tensors(folder / "denoiser.safetensors", fix),
            load_tensors(folder / "text.safetensors", fix), info)


# ----------------------------------------------------------------------------- training state


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (safetensors) and plain data (JSON)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for pid, pstate in sd["state"].items():
        plain_state[str(pid)] = {}
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value
            else:
                plain_state[str(pid)][key] = value
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain_state}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           plain: dict) -> None:
    state: dict[int, dict[str, Any]] = {
        int(pid): dict(v) for pid, v in plain["plain_state"].items()
    }
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": plain["param_groups"]})


def save_training_state(folder: str | Path, *, model_state: dict, ema_state: dict,
                        optimizer: torch.optim.Optimizer, meta: dict[str, Any],
                        config: Config | None = None) -> Path:
    """Everything `--resume` needs: weights, EMA, optimizer, step, the run's config; atomic, with
    checksums. (Randomness is derived from the seed and step, so no RNG state is stored.)"""
    opt_tensors, opt_plain = optimizer_to_tensors(optimizer)

    def write(tmp: Path) -> None:
        save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
        save_file(_contiguous(ema_state), str(tmp / "ema.safetensors"))
        save_file(_contiguous(opt_tensors), str(tmp / "optimizer.safetensors"))
        state = {**meta, "optimizer": opt_plain, "files": digests(tmp)}
        if config is not None:
            state["config"] = config.to_dict()
        (tmp / "state.json").write_text(json.dumps(state, indent=1))

    return atomic_dir(Path(folder), write)


def load_training_state(folder: str | Path) -> dict[str, Any]:
    """A checkpoint's tensors and meta data, verified; `DamagedFile` names what is wrong."""
    folder = Path(folder)
    if not (folder / "state.json").is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} is not a training checkpoint (no state.json); pass a "
            "runs/NAME/checkpoints/step-NNNNNN folder or use --resume with the run's --out"
        )
    fix = (f"delete {str(folder)!r} and --resume from the checkpoint before it "
           "(plain --resume does that by itself)")
    meta = read_json(folder / "state.json", fix)
    verify_digests(folder, meta.get("files", {}), fix)
    if not isinstance(meta.get("step"), int) or "optimizer" not in meta:
        raise DamagedFile(f"{str(folder / 'state.json')!r} lacks the step or optimizer; {fix}")
    return {
        "meta": meta,
        "model": load_tensors(folder / "model.safetensors", fix),
        "ema": load_tensors(folder / "ema.safetensors", fix),
        "optimizer": load_tensors(folder / "optimizer.safetensors", fix),
    }


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are never listed)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
             and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
