"""Training clips/s of a latent run with and without the latent cache, at 28 x 128 x 128.

    python benchmarks/latent_cache.py [--config configs/asl-words.yaml --clips 64 --batch 8
                                       --steps 6 --warmup 2 --device auto]

Without the cache every training step reads uint8 clips, converts them and encodes them with the
frozen frame autoencoder before the denoiser's forward and backward; with it, `latent_cache`
encodes each clip once (its one-off time is printed) and steps read float16 latents. Both use
the config's autoencoder and denoiser (a synthetic corpus of moving coloured strokes stands in
for the clips: speed does not depend on content) and the same training step (forward + loss +
backward + clipping + AdamW + EMA: `training.train_step`, as `text2sign train` runs it). Prints
a markdown table and the machine it ran on.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_corpus(folder: Path, clips: int, frames: int, size: int):
    """A clip cache of `clips` random stroke clips (written as a cache, not as GIFs)."""
    from text2sign.data.cache import prepare_cache
    from text2sign.data.video_io import write_gif

    rng = np.random.default_rng(0)
    for i in range(clips):
        video = np.zeros((frames, size, size, 3), np.uint8)
        x, y = rng.integers(8, size - 24, 2)
        for t in range(frames):
            video[t, y + t % 8:y + t % 8 + 12, x:x + 3] = rng.integers(64, 255, 3)
        write_gif(folder / f"c{i:04d}.gif", video, fps=10)
        (folder / f"c{i:04d}.txt").write_text(f"w{i % 17}")
    return prepare_cache(folder, frames, size, progress=False)


def time_steps(module, optimizer, ema, accelerator, batches, encode, steps: int, warmup: int,
               grad_clip: float) -> float:
    """Seconds per training step (`train_step`, the loop's own), after `warmup` untimed steps."""
    import torch

    from text2sign.model_folder.pipeline import trainable_state
    from text2sign.training.loop import train_step

    device = accelerator.device
    live = trainable_state(accelerator.unwrap_model(module))
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = next(batches)
        videos = batch["video"].to(device)
        if encode is not None:
            with torch.no_grad():
                videos = encode(videos)
        generator = torch.Generator().manual_seed(step)
        micro = [(videos, batch["text"], batch["language"], generator)]
        train_step(module, optimizer, accelerator, micro, grad_clip=grad_clip, ema=ema, live=live,
                   ema_decay=0.999)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    import torch

    from text2sign.core.device import describe_device, pick_device
    from text2sign.data.dataset import ClipDataset
    from text2sign.data.latent_cache import LatentDataset, latent_cache
    from text2sign.model_folder.build import build_autoencoder, build_config
    from text2sign.training.loop import init_training, make_accelerator

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/asl-words.yaml")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    cfg = build_config("small", args.config)
    device = pick_device(args.device)
    frames, size = cfg.data.frames, cfg.data.size
    with tempfile.TemporaryDirectory() as tmp:
        cache = synthetic_corpus(Path(tmp), args.clips, frames, size)
        torch.manual_seed(0)
        ae = build_autoencoder(cfg.latent).to(device).eval().requires_grad_(False)
        start = time.perf_counter()
        latents = latent_cache(ae, cache, device=device, progress=False)
        encode_once = time.perf_counter() - start
        indices = list(range(len(cache)))
        rows = []
        for name, dataset, encode in (
            ("encode every step", ClipDataset(cache, indices), ae.encode),
            ("latent cache", LatentDataset(latents, cache.texts, indices), None),
        ):
            module, optimizer, ema, _, _ = init_training(cfg, None, None, device=device)
            accelerator = make_accelerator(cfg.train, Path(tmp), args.device)
            module, optimizer = accelerator.prepare(module, optimizer)
            loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                                 drop_last=True)

            def forever(loader=loader):
                while True:
                    yield from loader

            seconds = time_steps(module, optimizer, ema, accelerator, forever(), encode,
                                 args.steps, args.warmup, cfg.train.grad_clip)
            rows.append((name, args.batch / seconds))
    base = rows[0][1]
    print(f"\n{frames} x {size} x {size} clips -> latents {cfg.latent.channels} x {frames} x "
          f"{size // cfg.latent.factor} x {size // cfg.latent.factor}, batch {args.batch}, "
          f"{args.steps} timed steps after {args.warmup}\n")
    print("| data path | train clips/s | vs encoding every step |")
    print("|---|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.2f} | {rate / base:.2f}x |")
    print(f"\nOne-off encoding of the {args.clips} clips into the cache: {encode_once:.1f} s "
          f"({args.clips / encode_once:.1f} clips/s). Device: {describe_device(device)}.")


if __name__ == "__main__":
    main()
