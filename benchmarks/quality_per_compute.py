"""Quality per compute: each denoiser at (nearly) equal parameter count, trained for the same
wall-clock minutes on the same machine, one after another, then scored by `evaluate`.

    python benchmarks/quality_per_compute.py --data DIR --minutes M [--config FILE.yaml]
        [--preset small] [--archs unet3d dit3d diffusers-unet3d] [--per-text 2]
        [--out runs/quality-per-compute] [--device auto] [--set KEY=VALUE ...]
        [--arch-set ARCH.KEY=VALUE ...]

The parameter target is the denoiser of the base config (--preset / --config); an architecture
other than the base one keeps its own preset's structure and gets the width (one knob) whose
parameter count is closest. Training runs with sampling, checkpoints and evaluation turned off
so the budget goes to optimisation steps only; it stops at the budget or at the config's
train.max_steps, whichever comes first (same LR schedule for all). Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ARCHS = ("unet3d", "dit3d", "diffusers-unet3d")
# The one width knob per architecture and the step its divisibility rules allow.
WIDTH = {"unet3d": ("channels", 8), "dit3d": ("hidden_size", 12),
         "diffusers-unet3d": ("channels", 8)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="clip folder or prepared cache")
    p.add_argument("--minutes", type=float, required=True, help="training budget per model")
    p.add_argument("--preset", default="small", help="base run preset (default small)")
    p.add_argument("--config", help="base YAML config, e.g. configs/asl-demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument("--arch-set", action="append", default=[], metavar="ARCH.KEY=VALUE",
                   help="change one structural parameter of one architecture's preset, e.g. "
                   "dit3d.patch_size=2 for 16x16 latents")
    p.add_argument("--params-target", type=float, help="default: the base config's denoiser")
    p.add_argument("--per-text", type=int, default=2, help="clips per text for evaluate")
    p.add_argument("--out", default="runs/quality-per-compute")
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def count(arch: str, params: dict, text_dim: int, frames: int, size: int,
          channels: int = 3) -> int | None:
    """Parameters of a denoiser built on the meta device (no memory), None if it cannot run."""
    import torch

    from text2sign.models.registry import build_denoiser, count_parameters

    try:
        with torch.device("meta"):
            model = build_denoiser(arch, params, in_channels=channels, text_dim=text_dim)
        model.check_input_size(frames, size, size)
    except ValueError:
        return None
    return count_parameters(model)


def matched_params(arch: str, preset: str, target: float, text_dim: int, frames: int,
                   size: int, channels: int = 3, changes: dict | None = None) -> tuple[dict, int]:
    """`arch`'s preset (with `changes`) at the width whose parameter count is closest to
    `target`."""
    from text2sign.models.registry import preset_params

    key, step = WIDTH[arch]
    best = None
    for width in range(step, 64 * step + 1, step):
        params = {**preset_params(arch, preset), **(changes or {}), key: width}
        n = count(arch, params, text_dim, frames, size, channels)
        if n is not None and (best is None or abs(n - target) < abs(best[1] - target)):
            best = (params, n)
    if best is None:
        raise ValueError(f"no width of {arch} ({preset}) fits {frames}x{size}x{size}")
    return best


def main(argv: list[str] | None = None) -> int:
    from text2sign.core.config import from_dict, parse_value
    from text2sign.data.dataset import open_clips
    from text2sign.evaluation.evaluate import evaluate, fmt_number
    from text2sign.evaluation.recognizer import load_or_train_recognizer
    from text2sign.model_folder.build import build_config, resolve_config
    from text2sign.model_folder.pipeline import Text2SignPipeline
    from text2sign.training.loop import train

    args = parse_args(argv)
    arch_sets: dict[str, dict] = {}
    for item in args.arch_set:
        key, _, value = item.partition("=")
        arch, _, name = key.partition(".")
        if arch not in ARCHS or not name or not value:
            raise ValueError(f"--arch-set {item!r}: expected ARCH.KEY=VALUE with ARCH in {ARCHS}")
        arch_sets.setdefault(arch, {})[name] = parse_value(value)
    base = build_config(args.preset, args.config, args.overrides)
    from text2sign.model_folder.build import diffusion_space

    channels, side = diffusion_space(base)  # pixels, or the latents of a latent config
    frames, size, text_dim = base.data.frames, base.data.size, base.text.dim
    target = args.params_target or count(base.model.arch, base.model.params, text_dim, frames,
                                         side, channels)
    progress = sys.stderr.isatty()
    cache = open_clips(args.data, frames, size, base.data.time_mode, base.data.fit,
                       progress=progress)
    rows = []
    for arch in args.archs:
        if arch == base.model.arch and not args.params_target:
            params, n = base.model.params, int(target)
        else:
            params, n = matched_params(arch, base.model.preset, target, text_dim, frames, side,
                                       channels, arch_sets.get(arch))
        raw = base.to_dict()
        raw["model"] = {"arch": arch, "preset": base.model.preset, "params": params}
        raw["data"]["path"] = str(args.data)
        raw["train"].update(max_minutes=args.minutes, sample_every=0, checkpoint_every=0,
                            eval_every=0)
        cfg = resolve_config(from_dict(raw))
        out = Path(args.out) / arch
        print(f"{arch}: {n / 1e6:.2f} M parameters, training {args.minutes:g} min in {out}",
              file=sys.stderr)
        folder = train(cfg, out, progress=progress, device=args.device)
        pipe = Text2SignPipeline.from_pretrained(folder, device=args.device)
        recognizer, _, _ = load_or_train_recognizer(cache, cfg.data.val_fraction,
                                                    device=pipe.device, progress=progress)
        report = evaluate(pipe, cache, out / "eval", per_text=args.per_text,
                          recognizer=recognizer, progress=progress, name=arch)
        rows.append((arch, n, pipe.info.step, report))

    lines = ["| model | params | steps reached | top-1 | top-5 | FD | s/clip |",
             "|---|---|---|---|---|---|---|"]
    for arch, n, steps, r in rows:
        cells = [arch, f"{n / 1e6:.2f} M", str(steps), fmt_number(r["top1"]),
                 fmt_number(r["top5"]), fmt_number(r["fd"], 2),
                 fmt_number(r["seconds_per_clip"])]
        lines.append("| " + " | ".join(cells) + " |")
    r = rows[-1][3]
    lines += ["", f"{args.minutes:g} min of training each on {r['device']}; {r['texts']} texts x "
              f"{args.per_text} clips, {r['sampler']} {r['steps']} steps, guidance "
              f"{r['guidance']}. Ceiling top-1 {fmt_number(r['ceiling_top1'])}, FD floor "
              f"{fmt_number(r['fd_floor'], 2)}; chance top-1 {fmt_number(r['chance_top1'])}."]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
