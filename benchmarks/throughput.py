"""Training clips/s, peak memory and sampling s/clip of the denoisers at equal parameter count.

    python benchmarks/throughput.py [--frames 16 --size 32 --batch 8 --steps 2 --warmup 1
                                     --sample-steps 10 --params-target 5.5e6 --device auto]

Each architecture keeps its `small` preset's structure and gets the width whose parameter count
is closest to the target (must land within 10%); each runs in its own subprocess so its peak
memory (CUDA max allocated, or on CPU the process's peak RSS, which includes ~the baseline
printed below the table) is its own. A training step is forward + MSE + backward + AdamW;
sampling is `text2sign.diffusion.sample` (DPM-Solver++, guidance 3, so the network sees a
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
# The one width knob per architecture and the step its divisibility rules allow.
WIDTH = {"unet3d": ("channels", 8), "dit3d": ("hidden_size", 12),
         "diffusers-unet3d": ("channels", 8)}


def matched_params(arch: str, target: float, frames: int, size: int) -> tuple[dict, int]:
    """The `small` preset of `arch` with the width whose parameter count is closest to target."""
    import torch

    from text2sign.models.registry import build_denoiser, count_parameters, preset_params

    key, step = WIDTH[arch]
    best: tuple[float, dict, int] | None = None
    for width in range(step, 40 * step + 1, step):
        params = {**preset_params(arch, "small"), key: width}
        try:
            with torch.device("meta"):  # structure only, no memory, milliseconds
                model = build_denoiser(arch, params, text_dim=TEXT_DIM)
            model.check_input_size(frames, size, size)
        except ValueError:
            continue
        n = count_parameters(model)
        if best is None or abs(n - target) < abs(best[2] - target):
            best = (abs(n - target), params, n)
    if best is None:
        raise ValueError(f"no width of {arch} fits {frames}x{size}x{size}")
    return best[1], best[2]


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(args: argparse.Namespace) -> dict:
    """Measure one architecture in this process; returns the numbers as a dict."""
    import torch

    from text2sign.models.registry import build_denoiser, count_parameters
    from text2sign.models.text import TextEmbedding

    device = torch.device(args.device)
    baseline_mb = peak_rss_mb()
    params = json.loads(args.params)
    torch.manual_seed(0)
    model = build_denoiser(args.worker, params, text_dim=TEXT_DIM).to(device)
    model.check_input_size(args.frames, args.size, args.size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(device=device).manual_seed(0)

    def text(batch: int) -> TextEmbedding:
        tokens = torch.randn(batch, TEXT_LEN, TEXT_DIM, generator=g, device=device)
        mask = torch.arange(TEXT_LEN, device=device)[None] < TEXT_LEN // 2  # (1, L) half padding
        return TextEmbedding(tokens, mask.expand(batch, -1), tokens.mean(1))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    shape = (args.batch, 3, args.frames, args.size, args.size)
    x0 = torch.rand(shape, generator=g, device=device) * 2 - 1  # (B, C, T, H, W)
    cond = text(args.batch)

    def train_step() -> None:
        t = torch.randint(0, 1000, (args.batch,), generator=g, device=device)
        noise = torch.randn(shape, generator=g, device=device)
        loss = torch.nn.functional.mse_loss(model(x0 + noise, t, cond), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
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

    from text2sign.config import DiffusionConfig
    from text2sign.diffusion import sample

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
    return {"arch": args.worker, "params": count_parameters(model),
            "clips_per_s": args.batch * args.steps / train_s, "peak_mb": peak_mb,
            "baseline_mb": baseline_mb, "sample_s_per_clip": sample_s / n,
            "config": params}


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
        line += f" ({torch.cuda.get_device_name()})"
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
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        print(json.dumps(worker(args)))
        return

    rows = []
    for arch in args.archs:
        params, n = matched_params(arch, args.params_target, args.frames, args.size)
        off = n / args.params_target - 1
        print(f"{arch}: {n / 1e6:.2f}M parameters ({off:+.1%} vs target) with {params}",
              file=sys.stderr, flush=True)
        if abs(off) > 0.10:
            raise SystemExit(f"{arch} cannot be matched within 10% of {args.params_target:g}")
        cmd = [sys.executable, __file__, "--worker", arch, "--params", json.dumps(params)]
        for name in ("frames", "size", "batch", "steps", "warmup", "sample_steps",
                     "sample_batch", "device"):
            cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"  {rows[-1]['clips_per_s']:.2f} train clips/s, "
              f"{rows[-1]['sample_s_per_clip']:.2f} sample s/clip", file=sys.stderr, flush=True)

    base = next((r for r in rows if r["arch"] == BASELINE), None)
    print(f"\n{args.batch} x {args.frames}x{args.size}x{args.size} clips, {args.steps} timed "
          f"training steps after {args.warmup} warm-up; sampling {args.sample_steps} DPM++ steps "
          f"with CFG, {args.sample_batch} clips\n")
    memory = "peak CUDA MB" if args.device == "cuda" else "peak RSS MB"
    print(f"| model | params | train clips/s | vs {BASELINE} | {memory} | sample s/clip |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['clips_per_s'] / base['clips_per_s']:.2f}x" if base else "-"
        print(f"| {r['arch']} | {r['params'] / 1e6:.2f}M | {r['clips_per_s']:.2f} | {ratio} | "
              f"{r['peak_mb']:.0f} | {r['sample_s_per_clip']:.2f} |")
    print(f"\nMachine: {machine(args.device)}")
    if args.device == "cpu":
        print(f"Peak RSS includes the process baseline after imports "
              f"(~{min(r['baseline_mb'] for r in rows):.0f} MB).")


if __name__ == "__main__":
    main()
