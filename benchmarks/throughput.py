"""Training clips/s, tokens/s, MFU, peak memory and sampling s/clip of the denoisers.

    python benchmarks/throughput.py [--frames 16 --size 32 --batch 8 --steps 2 --warmup 1
                                     --sample-steps 10 --params-target 5.5e6 --device auto]
    python benchmarks/throughput.py --device cuda --preset large --frames 28 --size 128 \
        --latent-factor 8 --latent-channels 8 --batch 16 --steps 20 --warmup 5
    python benchmarks/throughput.py --device cpu --preset small --archs unet3d --frames 28 \
        --size 128 --latent-factor 8 --precision fp32 bf16 bf16-cl --steps 6 --warmup 2

Without --preset, each architecture keeps its `small` preset's structure and gets the width whose
parameter count is closest to the target (must land within 10%): a comparison at equal
parameters. With --preset, each runs that named preset as shipped. --latent-factor F trains on
the latents of an F x autoencoder (latent-channels x frames x size/F x size/F, as read from the
latent cache; the encoder is not timed). Each architecture runs in its own subprocess so its peak
memory (CUDA max allocated, or on CPU the process's peak RSS, which includes ~the baseline
printed below the table) is its own. A training step is forward + MSE + backward + AdamW (fused
on CUDA), in bf16 autocast with TF32 on CUDA, as `text2sign train` runs it. ``--precision``
picks one or more of fp32, bf16 (autocast) and bf16-cl (autocast, channels-last-3d memory
format); several are measured side by side, each in its own subprocess, with ratios to the first.

FLOPs of one training step (forward + backward) are counted by torch.utils.flop_counter
.FlopCounterMode (matmuls, convolutions and attention, a multiply-add is 2 FLOPs); MFU = FLOPs
per step x steps / seconds / the device's dense bf16 peak from PEAK_FLOPS (unknown device: n/a,
or give --peak-tflops). Tokens are latent (or pixel) positions, frames x height x width per clip.
Sampling is `text2sign.diffusion.process.sample` (DPM-Solver++, guidance 3, so the network sees a
CFG-doubled batch). Prints a markdown table and the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ARCHS = ("unet3d", "dit3d", "diffusers-unet3d")
BASELINE = "diffusers-unet3d"
TEXT_DIM = 128
TEXT_LEN = 16
# Dense bf16 tensor-core peaks (no sparsity), from the vendor data sheets; the first name found
# in torch.cuda.get_device_name() wins, so the specific H100 variants come before plain "H100".
PEAK_FLOPS = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12,  # H100 SXM
              "H200": 989e12, "GH200": 989e12, "A100": 312e12}
PRECISIONS = ("fp32", "bf16", "bf16-cl")
# The one width knob per architecture and the step its divisibility rules allow.
WIDTH = {"unet3d": ("channels", 8), "dit3d": ("hidden_size", 12),
         "diffusers-unet3d": ("channels", 8)}


def matched_params(arch: str, target: float, frames: int, size: int,
                   channels: int = 3) -> tuple[dict, int]:
    """The `small` preset of `arch` with the width whose parameter count is closest to target."""
    import torch

    from text2sign.models.registry import build_denoiser, count_parameters, preset_params

    key, step = WIDTH[arch]
    best: tuple[float, dict, int] | None = None
    for width in range(step, 40 * step + 1, step):
        params = {**preset_params(arch, "small"), key: width}
        try:
            with torch.device("meta"):  # structure only, no memory, milliseconds
                model = build_denoiser(arch, params, in_channels=channels, text_dim=TEXT_DIM)
            model.check_input_size(frames, size, size)
        except ValueError:
            continue
        n = count_parameters(model)
        if best is None or abs(n - target) < abs(best[2] - target):
            best = (abs(n - target), params, n)
    if best is None:
        raise ValueError(f"no width of {arch} fits {frames}x{size}x{size}")
    return best[1], best[2]


def device_peak(device_name: str) -> tuple[str, float] | None:
    """(name, dense bf16 FLOP/s) of a known GPU, else None."""
    return next(((name, flops) for name, flops in PEAK_FLOPS.items() if name in device_name),
                None)


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(args: argparse.Namespace) -> dict:
    """Measure one architecture in this process; returns the numbers as a dict."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from text2sign.core.cuda import (
        adamw,
        compile_module,
        describe_kernels,
        enable_tf32,
        recorded_attention_kernels,
    )
    from text2sign.models.registry import build_denoiser, count_parameters
    from text2sign.models.text import TextEmbedding

    device = torch.device(args.device)
    enable_tf32(device)
    baseline_mb = peak_rss_mb()
    params = json.loads(args.params)
    text_dim = text_dim_of(args.preset)
    channels, side = latent_shape(args)
    torch.manual_seed(0)
    model = build_denoiser(args.worker, params, in_channels=channels, text_dim=text_dim).to(device)
    model.check_input_size(args.frames, side, side)
    opt = adamw(model.parameters(), lr=1e-4)
    g = torch.Generator(device=device).manual_seed(0)
    bf16 = args.precision.startswith("bf16")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    layout = torch.channels_last_3d if args.precision.endswith("-cl") else torch.contiguous_format
    model = model.to(memory_format=layout)

    def text(batch: int) -> TextEmbedding:
        tokens = torch.randn(batch, TEXT_LEN, text_dim, generator=g, device=device)
        mask = torch.arange(TEXT_LEN, device=device)[None] < TEXT_LEN // 2  # (1, L) half padding
        return TextEmbedding(tokens, mask.expand(batch, -1), tokens.mean(1))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    shape = (args.batch, channels, args.frames, side, side)
    x0 = torch.rand(shape, generator=g, device=device) * 2 - 1  # (B, C, T, H, W)
    x0 = x0.contiguous(memory_format=layout)
    cond = text(args.batch)

    def train_step(optimize: bool = True) -> None:
        t = torch.randint(0, 1000, (args.batch,), generator=g, device=device)
        noise = torch.randn(shape, generator=g, device=device)
        with autocast:
            pred = model(x0 + noise, t, cond)
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if optimize:
            opt.step()

    model.train()
    with recorded_attention_kernels() as kernels, autocast, torch.no_grad():
        model(x0, torch.zeros(args.batch, dtype=torch.long, device=device), cond)
    counter = FlopCounterMode(display=False)
    with counter:  # eager, before any compile: the model's FLOPs, not the compiler's
        train_step(optimize=False)
    flops_per_step = counter.get_total_flops()
    if args.compile:
        compile_module(model)
    for _ in range(args.warmup):
        train_step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    sync()
    train_s = time.perf_counter() - start
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
               else peak_rss_mb())

    from text2sign.core.config import DiffusionConfig
    from text2sign.diffusion.process import sample

    model.eval()
    n = args.sample_batch
    sample_args = dict(uncond=text(n), sampler="dpm++", steps=args.sample_steps, guidance=3.0,
                       generator=torch.Generator(device=device).manual_seed(1), device=device)
    sample(model, text(n), (n, *shape[1:]), DiffusionConfig(),
           **{**sample_args, "steps": 1})  # warm-up
    sync()
    start = time.perf_counter()
    sample(model, text(n), (n, *shape[1:]), DiffusionConfig(), **sample_args)
    sync()
    sample_s = time.perf_counter() - start
    clips_per_s = args.batch * args.steps / train_s
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    if peak is None and device.type == "cuda":
        known = device_peak(torch.cuda.get_device_name())
        peak = known[1] if known else None
    return {"arch": args.worker, "precision": args.precision, "params": count_parameters(model),
            "clips_per_s": clips_per_s, "tokens_per_s": clips_per_s * args.frames * side * side,
            "tflop_per_step": flops_per_step / 1e12,
            "mfu": flops_per_step * args.steps / train_s / peak if peak else None,
            "attention": describe_kernels(kernels, device).split(": ", 1)[1],
            "peak_mb": peak_mb, "baseline_mb": baseline_mb, "sample_s_per_clip": sample_s / n,
            "config": params}


def latent_shape(args: argparse.Namespace) -> tuple[int, int]:
    """(channels, side) the denoiser sees: pixels, or an autoencoder's latents."""
    if args.latent_factor == 1:
        return 3, args.size
    if args.size % args.latent_factor:
        raise SystemExit(f"--size {args.size} is not divisible by --latent-factor "
                         f"{args.latent_factor}")
    return args.latent_channels, args.size // args.latent_factor


def text_dim_of(preset: str | None) -> int:
    """The text width the run preset of that name pairs with the denoiser (e.g. 512 for large)."""
    from text2sign.core.config import PRESETS

    return PRESETS.get(preset or "", {}).get("text", {}).get("dim", TEXT_DIM)


def machine(device: str) -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    line = (f"{cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), "
            f"torch {torch.__version__}, device {device}")
    if device == "cuda":
        name = torch.cuda.get_device_name()
        known = device_peak(name)
        line += f" ({name}; dense bf16 peak " + (
            f"{known[1] / 1e12:.0f} TFLOP/s as {known[0]})" if known else "unknown: MFU n/a)")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--sample-steps", type=int, default=10)
    parser.add_argument("--sample-batch", type=int, default=1)
    parser.add_argument("--params-target", type=float, default=5.5e6)
    parser.add_argument("--preset", choices=("tiny", "small", "base", "large"),
                        help="run each architecture's named preset instead of matching params")
    parser.add_argument("--latent-factor", type=int, default=1, choices=(1, 2, 4, 8),
                        help="train on latents of this autoencoder factor (1: pixels)")
    parser.add_argument("--latent-channels", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="torch.compile the denoiser")
    parser.add_argument("--peak-tflops", type=float,
                        help="dense bf16 peak for MFU on a device not in PEAK_FLOPS")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS,
                        help="default: bf16 on CUDA, fp32 on CPU; several are run side by side")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        args.precision = args.precision[0]
        print(json.dumps(worker(args)))
        return
    args.precision = args.precision or ["bf16" if args.device == "cuda" else "fp32"]

    rows = []
    channels, side = latent_shape(args)
    for arch in args.archs:
        if args.preset:
            from text2sign.models.registry import preset_params

            params = preset_params(arch, args.preset)
            print(f"{arch}: preset {args.preset} {params}", file=sys.stderr, flush=True)
        else:
            params, n = matched_params(arch, args.params_target, args.frames, side, channels)
            off = n / args.params_target - 1
            print(f"{arch}: {n / 1e6:.2f}M parameters ({off:+.1%} vs target) with {params}",
                  file=sys.stderr, flush=True)
            if abs(off) > 0.10:
                raise SystemExit(f"{arch} cannot be matched within 10% of {args.params_target:g}")
        for precision in args.precision:
            cmd = [sys.executable, __file__, "--worker", arch, "--params", json.dumps(params),
                   "--precision", precision]
            for name in ("frames", "size", "batch", "steps", "warmup", "sample_steps",
                         "sample_batch", "device", "latent_factor", "latent_channels", "preset",
                         "peak_tflops"):
                if getattr(args, name) is not None:
                    cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
            cmd += ["--compile"] if args.compile else []
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{arch} ({precision}) failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {precision}: {rows[-1]['clips_per_s']:.2f} train clips/s, "
                  f"{rows[-1]['sample_s_per_clip']:.2f} sample s/clip", file=sys.stderr,
                  flush=True)

    first = args.precision[0]
    base = next((r for r in rows if r["arch"] == BASELINE and r["precision"] == first), None)
    space = (f"in latent space ({channels}x{args.frames}x{side}x{side} latents of a "
             f"{args.latent_factor}x autoencoder)" if args.latent_factor > 1 else "in pixel space")
    precision = ", ".join(args.precision) + (" (+ TF32)" if args.device == "cuda" else "")
    print(f"\n{args.batch} x {args.frames}x{args.size}x{args.size} clips {space}, "
          f"{'preset ' + args.preset if args.preset else 'equal parameters'}, {precision}"
          f"{', torch.compile' if args.compile else ''}; {args.steps} timed training steps after "
          f"{args.warmup} warm-up; sampling {args.sample_steps} DPM++ steps with CFG, "
          f"{args.sample_batch} clips\n")
    memory = "peak CUDA MB" if args.device == "cuda" else "peak RSS MB"
    print(f"| model | precision | params | train clips/s | vs {BASELINE} | vs {first} | "
          f"tokens/s | TFLOP/step | MFU | {memory} | sample s/clip | attention kernels |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['clips_per_s'] / base['clips_per_s']:.2f}x" if base else "-"
        own = next(x for x in rows if x["arch"] == r["arch"] and x["precision"] == first)
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(f"| {r['arch']} | {r['precision']} | {r['params'] / 1e6:.2f}M | "
              f"{r['clips_per_s']:.2f} | {ratio} | {r['clips_per_s'] / own['clips_per_s']:.2f}x | "
              f"{r['tokens_per_s']:.0f} | {r['tflop_per_step']:.4g} | {mfu} | "
              f"{r['peak_mb']:.0f} | {r['sample_s_per_clip']:.2f} | {r['attention']} |")
    print(f"\nMachine: {machine(args.device)}")
    if args.device == "cpu":
        print(f"Peak RSS includes the process baseline after imports "
              f"(~{min(r['baseline_mb'] for r in rows):.0f} MB).")


if __name__ == "__main__":
    main()
