"""CLI commands for models: train, sample, info, config."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from text2sign.config import SAMPLERS


def _preset_names() -> list[str]:
    from text2sign.config import PRESETS

    return list(PRESETS)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="small", choices=_preset_names(),
                   help="named starting point (default: small, for CPUs and laptops)")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML config (see `text2sign config`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set train.lr=1e-4 (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a text-conditioned video diffusion model",
                       description="Train on a folder of NAME.gif + NAME.txt pairs (or a cache "
                       "made by `text2sign data prepare`). Watch it: tensorboard --logdir OUT.")
    p.add_argument("--data", help="clip folder or cache (overrides data.path)")
    _config_args(p)
    p.add_argument("--out", default=None, help="run folder (default: runs/<arch>-<preset>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue the run in --out from its latest checkpoint (or the one given)")
    p.add_argument("--minutes", type=float, help="stop and save after this many minutes")
    p.add_argument("--init-from", metavar="MODEL",
                   help="start from a text2sign model folder: every weight that fits, and its "
                   "latent space (sets model.init_from)")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda or mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    p = sub.add_parser("sample", help="generate clips from text with a trained model")
    p.add_argument("texts", nargs="+", metavar="TEXT", help='what to sign, e.g. "hello" A B')
    p.add_argument("--model", required=True, help="model folder (or run folder with model/)")
    p.add_argument("--num", type=int, default=1, help="clips per text (default 1)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's config)")
    p.add_argument("--sampler", choices=SAMPLERS, help="default: the model's config (dpm++)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--eta", type=float, help="DDIM eta (0 = deterministic)")
    p.add_argument("--frames", type=int, help="frames per clip (default: as trained)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of the written clips")
    p.add_argument("--out", default="samples", help="output folder (default: samples)")
    p.add_argument("--mp4", action="store_true", help="also write MP4 files (needs PyAV)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=run_sample)

    p = sub.add_parser("info", help="describe a model folder: architecture, size, training")
    p.add_argument("model", help="model folder (or run folder with model/)")
    p.set_defaults(func=run_info)

    p = sub.add_parser("config", help="print a full YAML config that --config accepts back")
    _config_args(p)
    p.set_defaults(func=run_config)


def _build(args: argparse.Namespace):
    from text2sign.build import build_config

    return build_config(args.preset, args.config, args.overrides)


def run_config(args: argparse.Namespace) -> int:
    sys.stdout.write(_build(args).to_yaml())
    return 0


def run_train(args: argparse.Namespace) -> int:
    from text2sign.checkpoint import resume_config
    from text2sign.config import validate
    from text2sign.training import train

    cfg = _build(args)
    if args.data:  # set as data, never re-parsed: a folder named 2024 or yes stays a path
        cfg = replace(cfg, data=replace(cfg.data, path=str(args.data)))
    if args.minutes is not None:
        cfg = replace(cfg, train=replace(cfg.train, max_minutes=args.minutes))
    if args.init_from:
        cfg = replace(cfg, model=replace(cfg.model, init_from=args.init_from))
    validate(cfg)
    out = Path(args.out or f"runs/{cfg.model.arch}-{cfg.model.preset}")
    cfg = resume_config(cfg, out, args.resume, data=args.data)
    if not Path(cfg.data.path).exists():
        raise FileNotFoundError(
            f"data {cfg.data.path!r} does not exist; pass --data DIR (a folder of NAME.gif + "
            "NAME.txt), or build the demo corpus: text2sign data fingerspelling data/asl-letters"
        )
    model = train(cfg, out, resume=args.resume, progress=not args.no_progress,
                  device=args.device)
    print(f"model: {model}\nsample: text2sign sample --model {model} \"A\"\n"
          f"watch:  tensorboard --logdir {out}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from text2sign.data.video_io import safe_names, write_contact_sheet, write_gif, write_mp4
    from text2sign.pipeline import Text2SignPipeline

    if args.num < 1:
        raise ValueError(f"--num {args.num}: must be at least 1")
    pipe = Text2SignPipeline.from_pretrained(args.model, device=args.device)
    for warning in pipe.text_warnings(args.texts):
        print(f"warning: {warning}", file=sys.stderr)
    texts = [t for t in args.texts for _ in range(args.num)]
    videos = pipe(texts, num_frames=args.frames, steps=args.steps, sampler=args.sampler,
                  guidance=args.guidance, eta=args.eta, seed=args.seed,
                  batch_size=args.batch_size, progress=True)
    out = Path(args.out)
    labels = []
    stems = safe_names(list(dict.fromkeys(args.texts)))
    for i, (text, video) in enumerate(zip(texts, videos, strict=True)):
        name = f"{stems[text]}-{i % args.num:02d}"
        write_gif(out / f"{name}.gif", video, fps=args.fps)
        if args.mp4:
            write_mp4(out / f"{name}.mp4", video, fps=args.fps)
        labels.append(text)
        print(out / f"{name}.gif")
    sheet = write_contact_sheet(out / "contact.png", list(videos), labels)
    print(f"contact sheet: {sheet}")
    return 0


def preset_label(model: dict) -> str:
    """'preset small', or 'custom (preset small with stem=1)' when the parameters differ."""
    from text2sign.models.registry import preset_params

    base = preset_params(model["arch"], model["preset"])
    changed = [f"{k}={v}" for k, v in model["params"].items() if base.get(k) != v]
    if not changed:
        return f"preset {model['preset']}"
    return f"custom (preset {model['preset']} with {', '.join(changed)})"


def run_info(args: argparse.Namespace) -> int:
    from text2sign.checkpoint import (
        TEXTS_FILE,
        find_model_folder,
        read_model_info,
        read_training_texts,
    )
    from text2sign.files import verify_digests

    folder = find_model_folder(args.model)
    info = read_model_info(folder)
    verify_digests(folder, info.get("files", {}), "copy the model folder again or retrain it")
    cfg = info["config"]
    data = info.get("data", {})
    size_mb = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 2**20
    params = info.get("parameters", {}).get("denoiser")
    rows = [
        ("model folder", f"{folder} ({size_mb:.1f} MB)"),
        ("denoiser", f"{cfg['model']['arch']} {preset_label(cfg['model'])}"
                     + (f", {params / 1e6:.2f} M parameters" if params else "")),
        ("architecture", ", ".join(f"{k}={v}" for k, v in cfg["model"]["params"].items()
                                   if k != "unet")),  # an image UNet's config is long
        ("text encoder", f"{cfg['text']['encoder']} (dim {cfg['text']['dim']})"
         if cfg["text"]["encoder"] == "bytes" else cfg["text"]["encoder"]),
        ("clips", f"{cfg['data']['frames']} frames x {cfg['data']['size']}x{cfg['data']['size']}"),
        ("diffusion", f"{cfg['diffusion']['prediction_type']}, {cfg['diffusion']['beta_schedule']} "
                      f"betas, cfg dropout {cfg['diffusion']['cfg_dropout']}"),
        ("sampling", f"{cfg['sample']['sampler']} {cfg['sample']['steps']} steps, guidance "
                     f"{cfg['sample']['guidance']}"),
        ("training", f"step {info.get('step', '?')}, {info.get('minutes', '?')} minutes"),
        ("data", f"{data.get('path', '?')}: {data.get('clips', '?')} clips, "
                 f"{data.get('texts', '?')} distinct texts"),
    ]
    texts = read_training_texts(folder)
    if texts is not None:
        held = data.get("held_out_texts")
        rows.append(("training texts", f"{len(texts)} in {folder / TEXTS_FILE}"
                     + (f"; {held} more held out, never trained on" if held else "")))
    for part, ref in info.get("pretrained", {}).items():
        rows.append((f"pretrained {part}", f"{ref['path']} (referenced, sha256-checked)"))
    if cfg["model"].get("pretrained"):
        rows.append(("trained", f"model.train_only={cfg['model']['train_only']}"))
    if data.get("examples"):
        rows.append(("texts seen", ", ".join(map(repr, data["examples"][:20]))))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
