"""Seconds per generated clip against its frame count, and a batch of texts of mixed lengths.

    python benchmarks/length_cost.py [--model FOLDER] [--frames 8 16 32 48 64 80] [--clips 2]
        [--steps N] [--texts A go hello christopher "thank you"] [--device auto]

Table 1: the model's sampler (with guidance) at each frame count, ``--clips`` clips of one
text per call: seconds per clip and per frame. Table 2: ``--texts`` in one pipeline call (each
text the length the model's duration model gives it, texts of one length batched together)
against one call per text; the clips of both must be identical (the call groups, it never
pads). Markdown to stdout, the machine below the tables.
"""

from __future__ import annotations

import argparse
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="model folder or shipped:NAME (default: the shipped "
                   "default, its few-step student)")
    p.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 48, 64, 80])
    p.add_argument("--clips", type=int, default=2, help="clips per frame count (one call)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--texts", nargs="+",
                   default=["A", "go", "hello", "thank you", "christopher"])
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch

    from text2sign.core.device import describe_device
    from text2sign.model_folder.pipeline import Text2SignPipeline

    args = parse_args(argv)
    pipe = Text2SignPipeline.from_pretrained(args.model, device=args.device)
    sc = pipe.config.sample
    steps = args.steps or sc.steps
    pipe(["A"], num_frames=min(args.frames), steps=1)  # warm-up: kernels, allocator
    print(f"## Seconds per clip against frames ({sc.sampler}, {steps} steps, guidance "
          f"{sc.guidance:g}, {args.clips} clips a call)\n")
    print("| frames | seconds | s/clip | ms/frame |")
    print("|---|---|---|---|")
    for frames in args.frames:
        _, seconds = timed(lambda f=frames: pipe(["hello"] * args.clips, num_frames=f,
                                                 steps=steps))
        per_clip = seconds / args.clips
        print(f"| {frames} | {pipe.fps and f'{frames / pipe.fps:.1f}' or 'n/a'} | "
              f"{per_clip:.2f} | {1000 * per_clip / frames:.0f} |")
    if pipe.duration is not None:
        lengths = pipe.lengths(args.texts)
        together, t_mixed = timed(lambda: pipe(args.texts, steps=steps))
        alone: dict[int, np.ndarray] = {}
        t_alone = 0.0
        for length in dict.fromkeys(lengths):  # one call per length, as the grouped call does
            where = [i for i, n in enumerate(lengths) if n == length]
            clips, seconds = timed(lambda w=where: pipe([args.texts[i] for i in w],
                                                        steps=steps, seed=w[0]))
            alone.update(zip(where, clips, strict=True))
            t_alone += seconds
        same = all(np.array_equal(together[i], alone[i]) for i in range(len(args.texts)))
        print(f"\n## A batch of mixed lengths ({len(args.texts)} texts, {steps} steps)\n")
        print("| texts | frames | one call (grouped by length) s | one call per length s | "
              "same clips |")
        print("|---|---|---|---|---|")
        print(f"| {', '.join(args.texts)} | {', '.join(map(str, lengths))} | {t_mixed:.2f} | "
              f"{t_alone:.2f} | {'yes' if same else 'NO'} |")
    print(f"\n{describe_device(pipe.device)}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
