"""Model folders (config.json + safetensors) and resumable training state, all without pickle."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from text2sign.card import CARD_FILE, SAMPLE_FILE, model_card
from text2sign.config import RESUMABLE, Config, from_dict, load_config
from text2sign.files import (
    DamagedFile,
    atomic_dir,
    digests,
    load_tensors,
    read_json,
    verify_digests,
    write_text_atomic,
)
from text2sign.latent import write_autoencoder
from text2sign.model_info import RETRAIN, ModelInfo
from text2sign.models.duration import DurationModel
from text2sign.report import json_safe

TEXTS_FILE = "texts.txt"  # every training text, one per line: what the model has seen
DURATION_FILE = "duration.json"  # how many frames a text lasts (a model trained at a frame rate)
CHECKPOINT_PREFIX = "step-"


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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
        save_file(_contiguous(denoiser_state), str(tmp / "denoiser.safetensors"))
        save_file(_contiguous(text_state), str(tmp / "text.safetensors"))
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


def read_model_info(folder: str | Path) -> ModelInfo:
    """The config.json of a model folder (or of a run's, or a Hub id's: see find_model_folder)."""
    path = find_model_folder(folder) / "config.json"
    raw = read_json(path, RETRAIN)
    return ModelInfo.from_json(raw, str(path))


EVALUATION_KEYS = ("data", "texts", "clips", "per_text", "sampler", "steps", "guidance", "seed",
                   "top1", "top5", "ceiling_top1", "ceiling_top5", "ceiling_top1_autoencoded",
                   "chance_top1", "fd", "fd_floor", "seconds_per_clip", "device",
                   "back_translation")


def add_evaluation(folder: str | Path, report: dict[str, Any], command: str | None) -> Path:
    """Record an evaluation in a model folder: its numbers in config.json (so a re-written card
    keeps them), its compare.gif as sample.gif, and the card re-written with both."""
    folder = find_model_folder(folder)
    kept = {k: report[k] for k in EVALUATION_KEYS if k in report}
    info = replace(read_model_info(folder), evaluation=json_safe({**kept, "command": command}))
    # The rest of config.json is written back as it was (its config not normalized).
    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    raw["evaluation"] = info.evaluation
    if report.get("compare_gif"):
        shutil.copyfile(report["compare_gif"], folder / SAMPLE_FILE)
    # config.json keeps its recorded checksums: they cover the weights, which do not change.
    write_text_atomic(folder / "config.json", json.dumps(raw, indent=2))
    card = model_card(info, folder, read_training_texts(folder), (folder / SAMPLE_FILE).is_file())
    write_text_atomic(folder / CARD_FILE, card)
    return folder / CARD_FILE


def load_model_folder(folder: str | Path) -> tuple[Config, dict, dict, ModelInfo]:
    """Return (config, denoiser_state, text_state, info) read from safetensors + JSON, after
    checking the weights against the checksums recorded in config.json."""
    folder = find_model_folder(folder)
    info = read_model_info(folder)
    fix = RETRAIN
    verify_digests(folder, info.files, fix)
    cfg = info.config
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


# ----------------------------------------------------------------------------- resume


def resolve_resume(out: Path, resume: bool | str | Path) -> Path | None:
    """The checkpoint ``--resume`` names (None for a new run, which must not overwrite one)."""
    if resume is False or resume is None:
        existing = list_checkpoints(out)
        if existing:
            raise ValueError(
                f"{str(out)!r} already holds a run (checkpoint {existing[-1].name}); continue it "
                "with --resume, or pass another --out to start a new one"
            )
        return None
    if resume is True:
        found = list_checkpoints(out)
        if not found:  # killed before its first checkpoint: a preemptible job can always resume
            print(f"--resume: no checkpoint in {str(out / 'checkpoints')!r} yet; starting the "
                  "run from step 0", file=sys.stderr)
            return None
        return found[-1]
    return Path(resume)


def load_resume(out: Path, resume: bool | str | Path) -> tuple[Path | None, dict | None]:
    """The checkpoint to continue from and its state. Plain ``--resume`` falls back to the newest
    checkpoint that loads, saying which damaged ones it skipped; a named one must load."""
    checkpoint = resolve_resume(out, resume)
    if checkpoint is None:
        return None, None
    if resume is not True:
        return checkpoint, load_training_state(checkpoint)
    for candidate in reversed(list_checkpoints(out)):
        try:
            return candidate, load_training_state(candidate)
        except DamagedFile as err:
            print(f"skipping checkpoint {candidate.name}: {err}", file=sys.stderr)
    raise DamagedFile(f"no checkpoint in {str(out / 'checkpoints')!r} loads (each is listed "
                      "above); start the run again with another --out")


def _checkpoint_config(out: Path, resume: bool | str | Path) -> dict | None:
    """The config a run's checkpoint holds (its state.json only; the tensors are not read)."""
    candidates = reversed(list_checkpoints(out)) if resume is True else [Path(resume)]
    for folder in candidates:
        try:
            kept = read_json(folder / "state.json", "").get("config")
        except DamagedFile:
            continue
        if kept:
            return kept
    return None


def read_run_config(out: str | Path, resume: bool | str | Path) -> Config | None:
    """The config of the run in ``out``: its config.yaml, else its checkpoint's copy (None for
    a run that has neither yet)."""
    out = Path(out)
    saved = out / "config.yaml"
    kept = _checkpoint_config(out, resume)
    if saved.is_file():
        fix = ("delete it to resume with the copy the checkpoint holds" if kept else
               "restore it (a copy is in model/config.json, section config)")
        return load_config(saved, fix)
    return from_dict(kept) if kept else None


def _short(value: Any) -> str:
    """A setting's value for a one-line message (a whole ``model.params`` is too long)."""
    shown = repr(value)
    return shown if len(shown) <= 40 else "..."


def resume_config(cfg: Config, out: str | Path, resume: bool | str | Path,
                  data: str | Path | None = None) -> Config:
    """The config a run continues with, decided once: on resume the run's own config, with the
    settings of ``cfg`` that differ in `config.RESUMABLE` applied (and said); a difference in
    any other setting is refused. ``data``, a data path the user named, must be the run's own.
    A new run, or a run with no config yet, keeps ``cfg``."""
    out = Path(out)
    if not resume:
        return cfg
    base = read_run_config(out, resume)
    if base is None:
        return cfg
    if data is not None and Path(data).resolve() != Path(base.data.path).resolve():
        raise ValueError(
            f"--data {str(data)!r} differs from the data of the run in {str(out)!r} "
            f"({base.data.path!r}); --resume continues on the run's own data: drop --data, "
            "or start a new run with another --out")
    old, new = base.settings(), cfg.settings()
    changed = [k for k in new if new[k] != old[k] and k != "data.path"]  # data: checked above
    refused = [k for k in changed if k not in RESUMABLE]
    if refused:
        named = ", ".join(f"{k}={_short(new[k])} (run: {_short(old[k])})" for k in refused)
        raise ValueError(
            f"--resume continues the run in {str(out)!r} with its own model and data, but "
            f"{named} differ from it; drop them, or start a new run with another --out")
    if not changed:
        return base
    named = ", ".join(f"{k} {_short(old[k])} -> {_short(new[k])}" for k in changed)
    print(f"--resume: changed settings apply: {named}", file=sys.stderr)
    raw = base.to_dict()
    for key in changed:
        section, name = key.split(".")
        raw[section][name] = new[key]
    return from_dict(raw)


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


def load_checkpoint_weights(module: torch.nn.Module, state: dict, frozen: set[str],
                            where: Path) -> None:
    """Load a checkpoint's weights strictly: every trained tensor present, nothing extra."""
    what = f"checkpoint {str(where)!r} does not fit this run's model"
    fix = ("it was written with another config: resume with that run's config.yaml or start a "
           "new --out")
    model_state = module.state_dict()
    check_fit({k: v for k, v in model_state.items() if k not in frozen}, state["model"], what,
              fix)
    check_fit({k: p for k, p in module.named_parameters() if p.requires_grad}, state["ema"],
              what + " (its EMA weights)", fix)
    module.load_state_dict(state["model"], strict=False)
