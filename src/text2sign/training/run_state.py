"""A run's training state: checkpoints (weights, EMA, optimizer, step, config; safetensors +
state.json, never a pickle), listing and pruning them, and what ``--resume`` continues from."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from text2sign.core.config import RESUMABLE, Config, from_dict, load_config
from text2sign.core.files import (
    DamagedFile,
    atomic_dir,
    digests,
    load_tensors,
    read_json,
    verify_digests,
)
from text2sign.model_folder.folder_io import check_fit, cpu_contiguous

CHECKPOINT_PREFIX = "step-"


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
        save_file(cpu_contiguous(model_state), str(tmp / "model.safetensors"))
        save_file(cpu_contiguous(ema_state), str(tmp / "ema.safetensors"))
        save_file(cpu_contiguous(opt_tensors), str(tmp / "optimizer.safetensors"))
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


UNSET = object()  # a key one side of a difference does not have


def differences(key: str, new: Any, old: Any) -> list[tuple[str, Any, Any]]:
    """(dotted key, new value, old value) of each leaf where ``new`` and ``old`` differ: inside
    a dict-valued setting (``model.params``), each entry that differs, by its own name."""
    if new == old:
        return []
    if isinstance(new, dict) and isinstance(old, dict):
        return [d for name in sorted(set(new) | set(old), key=str)
                for d in differences(f"{key}.{name}", new.get(name, UNSET),
                                     old.get(name, UNSET))]
    return [(key, new, old)]


def _shown(value: Any) -> str:
    return "unset" if value is UNSET else repr(value)


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
    if new.get("text.languages") is None:  # unset: the run filled it from its corpus
        new["text.languages"] = old.get("text.languages")
    changed = [k for k in new if new[k] != old[k] and k != "data.path"]  # data: checked above
    refused = [k for k in changed if k not in RESUMABLE]
    if refused:
        named = ", ".join(f"{name}={_shown(now)} (run: {_shown(was)})" for k in refused
                          for name, now, was in differences(k, new[k], old[k]))
        raise ValueError(
            f"--resume continues the run in {str(out)!r} with its own model and data, but "
            f"{named} differ from it; drop them, or start a new run with another --out")
    if not changed:
        return base
    named = ", ".join(f"{name} {_shown(was)} -> {_shown(now)}" for k in changed
                      for name, now, was in differences(k, new[k], old[k]))
    print(f"--resume: changed settings apply: {named}", file=sys.stderr)
    raw = base.to_dict()
    for key in changed:
        section, name = key.split(".")
        raw[section][name] = new[key]
    return from_dict(raw)


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
