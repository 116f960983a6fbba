"""Does bf16 autocast train like fp32? The same run twice, side by side: loss curves and speed.

    python benchmarks/precision_loss.py --config configs/asl-words.yaml --steps 60 \\
        --set latent.autoencoder=runs/asl-words/autoencoder [--precision no bf16] [--out DIR]

Each precision trains `--steps` steps of the same config with the same seed (so the same
batches, timesteps and noise; only the arithmetic differs) through `text2sign train`
(train.mixed_precision=no is fp32). Prints the mean loss per window of `--window` steps for each,
their relative difference, and clips/s, measured one after the other on this machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--precision", nargs="+", default=["no", "bf16"])
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--out", help="run folders go here (default: a temporary folder)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    root = Path(args.out or tempfile.mkdtemp(prefix="precision-"))
    curves, speed = {}, {}
    for precision in args.precision:
        out = root / precision
        cmd = [sys.executable, "-m", "text2sign", "train", "--config", args.config, "--out",
               str(out), "--device", args.device, "--quiet",
               "--set", f"train.mixed_precision={precision}",
               "--set", f"train.max_steps={args.steps}", "--set", "train.log_every=1",
               "--set", "train.sample_every=0", "--set", f"train.checkpoint_every={args.steps}"]
        for item in args.overrides:
            cmd += ["--set", item]
        print(" ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
        rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        curves[precision] = [r["train/loss"] for r in rows]
        timed = rows[len(rows) // 4:]  # past the first steps' warm-up
        speed[precision] = sum(r["train/clips_per_s"] for r in timed) / len(timed)

    names = args.precision
    first = names[0]
    print(f"\n| steps | {' | '.join(f'loss {n}' for n in names)} | "
          f"{' | '.join(f'{n} vs {first}' for n in names[1:])} |")
    print("|---|" + "---|" * (2 * len(names) - 1))
    w = args.window
    for start in range(0, args.steps, w):
        means = {n: sum(curves[n][start:start + w]) / len(curves[n][start:start + w])
                 for n in names}
        diffs = [f"{means[n] / means[first] - 1:+.1%}" for n in names[1:]]
        print(f"| {start + 1}-{min(start + w, args.steps)} | "
              f"{' | '.join(f'{means[n]:.4f}' for n in names)} | {' | '.join(diffs)} |")
    total = {n: sum(curves[n]) / len(curves[n]) for n in names}
    print(f"| all | {' | '.join(f'{total[n]:.4f}' for n in names)} | "
          f"{' | '.join(f'{total[n] / total[first] - 1:+.1%}' for n in names[1:])} |")
    print("\nclips/s: " + ", ".join(f"{n} {speed[n]:.2f}" for n in names)
          + "".join(f"; {n} / {first} {speed[n] / speed[first]:.2f}x" for n in names[1:]))


if __name__ == "__main__":
    main()
