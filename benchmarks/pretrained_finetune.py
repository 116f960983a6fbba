"""Fine-tuning from pretrained weights: clips/s and peak memory, temporal-only vs everything.

    python benchmarks/pretrained_finetune.py --data data/asl-letters [--frames 8 --size 32
        --batch 4 --steps 6 --warmup 1 --rounds 2 --device cpu]

Builds random-weight pretrained files in a temporary folder (no download; speed and memory do
not depend on the weights' values): a Stable-Diffusion-layout folder (AutoencoderKL, factor 4;
UNet2DConditionModel; CLIP text encoder) and a DiT checkpoint of DiT-S width. The corpus is
encoded once by the frozen VAE (as a latent cache would), then unet-motion and dit3d, each with
``model.train_only=temporal`` and ``all``, are built, loaded and frozen exactly as
``text2sign train`` does (`training.init_training`: build_models, init_from_pretrained, AdamW
over the trainable parameters, EMA) and timed over training steps (`training.train_step`, the
loop's own: loss, backward, clipping, AdamW, EMA) on
batches of those latents, each in its own subprocess so its peak memory (CUDA max allocated, or
on CPU the process's peak RSS, model loading included) is its own. Temporal-only and full runs
alternate, ``--rounds`` times; each step is timed alone, and clips/s is reported for the median
step and for the fastest one (other jobs on a shared machine only ever slow a step down, so the
fastest is the least disturbed measurement).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import machine, peak_rss_mb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

RUNS = (("unet-motion", "temporal"), ("unet-motion", "all"), ("dit3d", "temporal"),
        ("dit3d", "all"))
TEXT_WIDTH = 128


def make_files(root: Path) -> tuple[Path, Path]:
    """The SD-layout folder and the DiT checkpoint (DiT-S width 384, 4 blocks, patch 2)."""
    from pretrained_folders import random_image_dit, write_sd_folder
    from safetensors.torch import save_file

    sd = write_sd_folder(root / "sd", text_width=TEXT_WIDTH, unet_widths=(64, 128, 128),
                         vae_widths=(32, 64, 64), text_layers=2)
    dit = random_image_dit(input_size=16, patch_size=2, in_channels=4, hidden_size=384,
                           depth=4, num_heads=6, num_classes=1000)
    path = root / "DiT-S-4blocks-2.safetensors"
    save_file({k: v.contiguous() for k, v in dit.state_dict().items()}, str(path))
    return sd, path


def config(args: argparse.Namespace, arch: str, train_only: str):
    from text2sign.model_folder.build import build_config

    sd = Path(args.sd)
    return build_config("small", overrides=[
        f"data.path={args.data}", f"data.frames={args.frames}", f"data.size={args.size}",
        f"train.batch_size={args.batch}", "latent.enabled=true", f"latent.autoencoder={sd}",
        f"text.encoder={sd / 'text_encoder'}", "diffusion.null_condition=empty",
        f"model.arch={arch}", f"model.train_only={train_only}",
        f"model.pretrained={sd if arch == 'unet-motion' else args.dit}"])


def encode_corpus(args: argparse.Namespace, out: Path) -> int:
    """Every clip through the frozen VAE once; latents + texts into ``out``. Returns the count."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from text2sign.data.dataset import open_clips
    from text2sign.model_folder.autoencoder_io import load_autoencoder

    cache = open_clips(args.data, args.frames, args.size, progress=False)
    ae = load_autoencoder(args.sd, None)
    clips = torch.from_numpy(np.stack([cache[i] for i in range(len(cache))]))  # (N, T, H, W, 3)
    videos = clips.permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # (N, 3, T, H, W)
    latents = torch.cat([ae.encode(v) for v in videos.split(8)])  # (N, 4, T, H/4, W/4)
    save_file({"latents": latents.contiguous()}, str(out / "latents.safetensors"))
    (out / "texts.json").write_text(json.dumps(list(cache.texts)))
    return len(cache)


def worker(args: argparse.Namespace) -> dict:
    import torch
    from safetensors.torch import load_file

    from text2sign.model_folder.pipeline import trainable_state
    from text2sign.training.loop import init_training, make_accelerator, train_step

    arch, train_only = args.worker.split(":")
    cfg = config(args, arch, train_only)
    latents = load_file(str(Path(args.out) / "latents.safetensors"))["latents"]
    texts = json.loads((Path(args.out) / "texts.json").read_text())
    cfg.train.seed = 0
    module, optimizer, ema, _, _ = init_training(cfg, None, None, device=torch.device(args.device))
    accelerator = make_accelerator(cfg.train, Path(args.out), args.device)
    module, optimizer = accelerator.prepare(module, optimizer)
    params = trainable_state(accelerator.unwrap_model(module))
    denoiser = accelerator.unwrap_model(module).denoiser
    order = torch.randperm(len(latents), generator=torch.Generator().manual_seed(0))
    times = []
    for step in range(args.warmup + args.steps):
        started = time.perf_counter()
        pick = order[(step * args.batch) % len(order):][:args.batch]
        if len(pick) < args.batch:
            pick = order[:args.batch]
        generator = torch.Generator().manual_seed(step)
        batch = [(latents[pick].to(args.device), [texts[i] for i in pick], None, generator)]
        train_step(module, optimizer, accelerator, batch, grad_clip=cfg.train.grad_clip,
                   ema=ema, live=params, ema_decay=cfg.train.ema_decay)  # syncs on the loss
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda"
            else peak_rss_mb())
    return {"arch": arch, "train_only": train_only,
            "step_seconds": times,
            "trained": sum(p.numel() for n, p in params.items() if n.startswith("denoiser.")),
            "total": sum(p.numel() for p in denoiser.parameters()), "peak_mb": peak,
            "optimizer_tensors": sum(len(s) for s in optimizer.optimizer.state.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a clip folder, e.g. the ASL letters")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=2, help="alternating repeats, best kept")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    for hidden in ("--worker", "--sd", "--dit", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    best: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sd, dit = make_files(Path(tmp))
        args.sd, args.dit = str(sd), str(dit)
        clips = encode_corpus(args, Path(tmp))
        for arch, train_only in [run for _ in range(args.rounds) for run in RUNS]:
            cmd = [sys.executable, __file__, "--worker", f"{arch}:{train_only}", "--sd", str(sd),
                   "--dit", str(dit), "--out", tmp, "--data", args.data,
                   "--frames", str(args.frames), "--size", str(args.size),
                   "--batch", str(args.batch), "--steps", str(args.steps),
                   "--warmup", str(args.warmup),
                   "--device", args.device]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{arch} {train_only} failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{arch} {train_only}: steps {row['step_seconds']} s", file=sys.stderr)
            kept = best.setdefault((arch, train_only), {**row, "step_seconds": []})
            kept["step_seconds"] += row["step_seconds"]
            kept["peak_mb"] = max(kept["peak_mb"], row["peak_mb"])
    rows = [best[run] for run in RUNS]
    for row in rows:
        steps = sorted(row["step_seconds"])
        row["median"] = args.batch / steps[len(steps) // 2]
        row["fastest"] = args.batch / steps[0]
    print("| denoiser | model.train_only | trained / total params | AdamW state tensors | "
          "clips/s, median step | clips/s, fastest step | fastest vs all | peak memory MB |")
    print("|---|---|---|---|---|---|---|---|")
    fastest_all = {r["arch"]: r["fastest"] for r in rows if r["train_only"] == "all"}
    for r in rows:
        print(f"| {r['arch']} | {r['train_only']} | {r['trained'] / 1e6:.2f} M / "
              f"{r['total'] / 1e6:.2f} M | {r['optimizer_tensors']} | {r['median']:.2f} | "
              f"{r['fastest']:.2f} | {r['fastest'] / fastest_all[r['arch']]:.2f}x | "
              f"{r['peak_mb']:.0f} |")
    print(f"\n{clips} clips of {args.frames} x {args.size} x {args.size} from {args.data}, "
          f"encoded once to {args.frames} x {args.size // 4} x {args.size // 4} x 4 latents; "
          f"batch {args.batch}; {args.steps} timed steps after {args.warmup} per run, "
          f"{args.rounds} alternating rounds. "
          f"Machine: {machine(args.device)}.")


if __name__ == "__main__":
    main()
