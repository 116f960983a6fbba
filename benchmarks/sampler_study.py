"""Recognition accuracy, Frechet distance and seconds per clip vs sampler, steps and guidance.

    python benchmarks/sampler_study.py --model FOLDER --data DIR [--per-text 2]
        [--steps 5 10 25 50] [--ddpm-steps 250] [--guidances 1 2 4 8] [--device auto]

Table 1: DDPM at --ddpm-steps, DDIM and DPM-Solver++ at each of --steps, all at the model's
default guidance. Table 2: DPM-Solver++ at 25 steps (or the nearest of --steps) for each
guidance scale. Every row is `text2sign.evaluation.evaluate` on the same texts and seed with
the corpus's cached recognizer; markdown to stdout, the machine below the tables.
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model folder (or run folder with model/)")
    p.add_argument("--data", required=True, help="clip folder or prepared cache")
    p.add_argument("--per-text", type=int, default=2, help="clips per text and setting")
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 25, 50],
                   help="step counts for DDIM and DPM-Solver++")
    p.add_argument("--ddpm-steps", type=int, default=250, help="DDPM step count (0 skips it)")
    p.add_argument("--guidances", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def row(label: str, steps: int, guidance: float, report: dict) -> str:
    from text2sign.evaluation.evaluate import fmt_number

    cells = [label, str(steps), f"{guidance:g}", fmt_number(report["top1"]),
             fmt_number(report["top5"]), fmt_number(report["fd"], 2),
             fmt_number(report["seconds_per_clip"], 3)]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    from text2sign.data.dataset import open_data
    from text2sign.evaluation.evaluate import evaluate, fmt_number
    from text2sign.evaluation.recognizer import load_or_train_recognizer
    from text2sign.model_folder.pipeline import Text2SignPipeline

    args = parse_args(argv)
    pipe = Text2SignPipeline.from_pretrained(args.model, device=args.device)
    folder = pipe.folder
    dc = pipe.config.data
    cache = open_data(dc, progress=False, path=args.data)
    recognizer, ceiling1, ceiling5 = load_or_train_recognizer(
        cache, dc.val_fraction, device=pipe.device, progress=sys.stderr.isatty())
    default_guidance = pipe.config.sample.guidance

    def run(sampler: str, steps: int, guidance: float) -> dict:
        print(f"{sampler} {steps} steps, guidance {guidance:g}", file=sys.stderr)
        return evaluate(pipe, cache, "unused", per_text=args.per_text, sampler=sampler,
                        steps=steps, guidance=guidance, seed=args.seed,
                        batch_size=args.batch_size, recognizer=recognizer,
                        progress=sys.stderr.isatty(), write_files=False)

    header = ["| sampler | steps | guidance | top-1 | top-5 | FD | s/clip |",
              "|---|---|---|---|---|---|---|"]
    grid = ([("ddpm", args.ddpm_steps)] if args.ddpm_steps > 0 else []) + [
        (sampler, steps) for sampler in ("ddim", "dpm++") for steps in args.steps]
    lines = ["### Sampler and steps", "", *header]
    last = None
    for sampler, steps in grid:
        last = run(sampler, steps, default_guidance)
        lines.append(row({"dpm++": "DPM-Solver++"}.get(sampler, sampler.upper()), steps,
                         default_guidance, last))
    mid = min(args.steps, key=lambda s: abs(s - 25))
    lines += ["", f"### Guidance scale (DPM-Solver++, {mid} steps)", "", *header]
    for guidance in args.guidances:
        lines.append(row("DPM-Solver++", mid, guidance, run("dpm++", mid, guidance)))
    assert last is not None
    lines += [
        "",
        f"Model {folder}, {last['texts']} texts x {args.per_text} clips per setting, seed "
        f"{args.seed}. Ceiling (recognizer on held-out real clips): top-1 {fmt_number(ceiling1)}, "
        f"top-5 {fmt_number(ceiling5)}; FD floor (real vs real, {last['fd_clips']} clips): "
        f"{fmt_number(last['fd_floor'], 2)}. Device: {last['device']}.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
