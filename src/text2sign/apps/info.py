"""`text2sign info`: what a model folder is, a run's checkpoints, the module tree."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from text2sign.core.config import Config
from text2sign.core.report import format_table
from text2sign.model_folder.card import or_unknown, preset_label, student_line
from text2sign.model_folder.folder_io import TEXTS_FILE
from text2sign.model_folder.pipeline import Text2SignPipeline
from text2sign.model_folder.resolve import ModelFolder, resolve_model
from text2sign.training.run_state import list_checkpoints


def describe(name: str | Path | None, modules: bool = False) -> list[str]:
    """The lines `text2sign info` prints for a model or run folder (default: the shipped
    model)."""
    model = resolve_model(name)  # read and its weights verified once, for every line below
    rows = model_rows(model)
    folder = model.path
    run = folder.parent if folder.name == "model" else None
    lines = table(rows)
    if run is not None and (run / "checkpoints").is_dir():
        lines += ["", f"checkpoints in {run / 'checkpoints'}:", format_table(checkpoint_rows(run))]
    if modules:
        pipe = Text2SignPipeline.from_pretrained(model, device="cpu")
        parts = {"denoiser": pipe.denoiser, "text encoder": pipe.conditioner,
                 "autoencoder": pipe.autoencoder}
        lines += ["", "modules and their parameters:"]
        for part, module in parts.items():
            if module is not None:
                lines += module_tree(module, part)
    return lines


def table(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in rows)
    return [f"{key:<{width}}  {value}" for key, value in rows]


def space(cfg: Config) -> str:
    """Pixels or latents, with the shape the denoiser sees, (C, T, H, W)."""
    frames, size = cfg.data.frames, cfg.data.size
    latent = cfg.latent
    if not latent.enabled:
        return f"pixels, (C, T, H, W) = (3, {frames}, {size}, {size})"
    side = size // latent.factor
    source = latent.autoencoder or "trained with the run"
    return (f"latent, (C, T, h, w) = ({latent.channels}, {frames}, {side}, {side}): a "
            f"per-frame autoencoder, {latent.factor}x smaller per side ({source})")


def decoder_line(refit: dict) -> str:
    """What `text2sign refit-decoder` did to a model's decoder, from config.json."""
    taken = f", taken from {refit['taken_from']}" if "taken_from" in refit else ""
    return (f"refitted on {refit.get('data', '?')} ({refit.get('steps', '?')} steps of "
            f"{refit.get('batch_size', '?')} frames{taken}; encoder and latent space kept)")


def checkpoint_rows(run: Path) -> list[list[str]]:
    """Header + one row per checkpoint: step, minutes, the last loss logged by then, size."""
    logged = {}
    log = run / "log.jsonl"
    for line in log.read_text(encoding="utf-8").splitlines() if log.is_file() else []:
        try:
            row = json.loads(line)
            logged[int(row["step"])] = float(row["train/loss"])
        except (ValueError, KeyError, TypeError):  # a cut line, or one of another kind
            continue
    rows = [["checkpoint", "step", "minutes", "last loss", "size"]]
    for folder in list_checkpoints(run):
        try:
            meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            rows.append([folder.name, "?", "?", "?", "damaged state.json"])
            continue
        step = meta.get("step", 0)
        before = [s for s in logged if s <= step]
        loss = f"{logged[max(before)]:.4f}" if before else "n/a"
        minutes = meta.get("minutes")
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 2**20
        rows.append([folder.name, str(step), f"{minutes:.1f}" if minutes is not None else "?",
                     loss, f"{size:.1f} MB"])
    return rows


def _count(module: nn.Module, trainable: bool) -> str:
    total = sum(p.numel() for p in module.parameters())
    if not trainable:
        return f"{total:,}"
    train = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return f"{total:,}" + ("" if train == total else " (frozen)" if train == 0
                           else f" ({train:,} trainable)")


def module_tree(module: nn.Module, name: str, depth: int = 3) -> list[str]:
    """``name`` and its submodules down to ``depth`` levels, each with its parameter count;
    modules without parameters (activations, empty lists) are left out."""
    lines = []
    for path, sub in module.named_modules():
        level = path.count(".") + 1 if path else 0
        if level > depth or (path and not any(True for _ in sub.parameters())):
            continue
        label = f"{name}.{path}" if path else name
        lines.append(f"{'  ' * level}{label.rsplit('.', 1)[-1] if path else label}  "
                     f"{type(sub).__name__}  {_count(sub, trainable=not path)}")
    return lines


def model_rows(model: ModelFolder) -> list[tuple[str, str]]:
    """What a model folder is: architecture, sizes, diffusion space, training, data."""
    folder, info = model.path, model.info
    cfg, data = info.config, info.data
    size_mb = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 2**20
    params = info.parameters.get("denoiser")
    rows = [
        ("model folder", f"{folder} ({size_mb:.1f} MB)"),
        ("denoiser", f"{cfg.model.arch} {preset_label(cfg.model)}"
                     + (f", {params / 1e6:.2f} M parameters" if params else "")),
        ("architecture", ", ".join(f"{k}={v}" for k, v in cfg.model.params.items()
                                   if k != "unet")),  # an image UNet's config is long
        ("text encoder", f"{cfg.text.encoder} (dim {cfg.text.dim})"
         if cfg.text.encoder == "bytes" else cfg.text.encoder),
        ("languages", ", ".join(model.languages) + (
            f" ({len(model.languages)}; sample one with --language CODE)"
            if len(model.languages) > 1 else "")),
        ("clips", f"{cfg.data.frames} frames x {cfg.data.size}x{cfg.data.size}"),
        ("diffusion space", space(cfg)),
        *([("decoder", decoder_line(info.autoencoder["decoder_refit"]))]
          if (info.autoencoder or {}).get("decoder_refit") else []),
        ("diffusion", f"{cfg.diffusion.prediction_type}, {cfg.diffusion.beta_schedule} "
                      f"betas, cfg dropout {cfg.diffusion.cfg_dropout}"),
        ("sampling", f"{cfg.sample.sampler} {cfg.sample.steps} steps, guidance "
                     f"{cfg.sample.guidance}"),
        ("training", f"step {or_unknown(info.step)}, {or_unknown(info.minutes)} minutes"),
        *([("teacher", student_line(cfg))] if cfg.distill.steps is not None else []),
        ("data", f"{data.get('path', '?')}: {data.get('clips', '?')} clips, "
                 f"{data.get('texts', '?')} distinct texts"),
    ]
    texts = model.training_texts
    if texts is not None:
        held = data.get("held_out_texts")
        rows.append(("training texts", f"{len(texts)} in {folder / TEXTS_FILE}"
                     + (f"; {held} more held out, never trained on" if held else "")))
    for part, ref in info.pretrained.items():
        rows.append((f"pretrained {part}", f"{ref['path']} (referenced, sha256-checked)"))
    if cfg.model.pretrained:
        rows.append(("trained", f"model.train_only={cfg.model.train_only}"))
    if data.get("examples"):
        rows.append(("texts seen", ", ".join(map(repr, data["examples"][:20]))))
    return rows
