"""Models side by side on one corpus: back-translation and duration per group, same texts.

    python benchmarks/length_study.py --data data/asl-phrases \
        --model shipped --recognizer src/text2sign/assets/recognizer \
        --model runs/asl-phrases --recognizer runs/recognizer-phrases \
        [--groups unseen,unseen-long,unseen-phrases] [--max-texts 40] [--guidance 7]

Each model is evaluated with `text2sign.evaluation.evaluate` on the corpus opened with its own
data settings (a fixed frame count or a frame rate), the same texts (`--max-texts` picks by a
stable hash of the text) and seed, and read back by the sequence recognizer given with it (its
ceiling: the same recognizer on real clips of the same texts, at that model's clip length).
Markdown to stdout, the machine below the table; each report is kept under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="clip folder (a corpus of the models' texts)")
    p.add_argument("--model", action="append", required=True,
                   help="model folder, or 'shipped'; repeat for each model")
    p.add_argument("--recognizer", action="append", required=True,
                   help="sequence recognizer folder for the model of the same position")
    p.add_argument("--groups", action="append",
                   help="comma-separated groups; once for every model, or once per model "
                   "(default: unseen,unseen-long,unseen-phrases)")
    p.add_argument("--card", action="store_true",
                   help="record the first model's evaluation in its model folder's card")
    p.add_argument("--max-texts", type=int, default=40)
    p.add_argument("--per-text", type=int, default=1)
    p.add_argument("--guidance", type=float, help="default: each model's own")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/length-study")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if len(args.model) != len(args.recognizer):
        p.error("give one --recognizer per --model")
    args.groups = args.groups or ["unseen,unseen-long,unseen-phrases"]
    if len(args.groups) == 1:
        args.groups *= len(args.model)
    if len(args.groups) != len(args.model):
        p.error("give --groups once, or once per --model")
    return args


def main(argv: list[str] | None = None) -> int:
    from text2sign.core.device import describe_device
    from text2sign.core.report import GROUP_NAMES, fmt_number
    from text2sign.data.dataset import open_data
    from text2sign.evaluation.evaluate import evaluate
    from text2sign.evaluation.sequence import SequenceRecognizer
    from text2sign.model_folder.folder_io import add_evaluation
    from text2sign.model_folder.pipeline import Text2SignPipeline

    args = parse_args(argv)
    rows, device = [], None
    for k, (name, recognizer, groups) in enumerate(zip(args.model, args.recognizer, args.groups,
                                                       strict=True)):
        pipe = Text2SignPipeline.from_pretrained(None if name == "shipped" else name,
                                                 device=args.device)
        folder = pipe.folder
        cache = open_data(pipe.config.data, progress=False, path=args.data)
        sequence = SequenceRecognizer.load(recognizer, pipe.device)
        report = evaluate(pipe, cache, Path(args.out) / f"{k}-{folder.parent.name}",
                          per_text=args.per_text, guidance=args.guidance, seed=args.seed,
                          sequence_recognizer=sequence, max_texts=args.max_texts,
                          only=groups.split(","), progress=False, name=str(folder))
        if args.card and k == 0:
            add_evaluation(folder, report, "python benchmarks/length_study.py " +
                           " ".join(argv if argv is not None else sys.argv[1:]))
        timing = (f"{pipe.fps:g} fps" if pipe.fps else f"{pipe.frames} frames")
        duration = (report.get("duration") or {}).get("groups", {})
        for group, g in report["back_translation"]["groups"].items():
            d = duration.get(group, {})
            c = report["group_top1"][group]
            rows.append([name, timing, GROUP_NAMES.get(group, group), str(g["texts"]),
                         fmt_number(c["top1"]), fmt_number(c["ceiling_top1"]),
                         fmt_number(g["cer"]), fmt_number(g["ceiling_cer"]),
                         fmt_number(g["exact"]), fmt_number(g["ceiling_exact"]),
                         fmt_number(d.get("ratio")), fmt_number(d.get("frame_error"), 2),
                         fmt_number(report["seconds_per_clip"], 2)])
        device = describe_device(pipe.device)
        guidance = args.guidance if args.guidance is not None else pipe.config.sample.guidance
        print(f"{name}: done (guidance {guidance:g})", flush=True)
    header = ["model", "clips", "group", "texts", "top-1", "ceiling top-1", "CER",
              "ceiling CER", "exact",
              "ceiling exact", "duration gen/real", "frame error", "s/clip"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{args.per_text} clip per text, seed {args.seed}, {device}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
