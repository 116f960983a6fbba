"""A distilled student beside its teacher: denoiser evaluations, seconds and back-translation.

    python benchmarks/distill_study.py --teacher shipped --student runs/distill-4/model \
        --data data/asl-words --recognizer src/text2sign/assets/recognizer \
        [--groups unseen] [--max-texts 40] [--seed 0]

Rows: the teacher at 25 DPM-Solver++ steps with its guidance (its default), at 4 and 8 steps,
and the student at 1, 2 and 4 steps (those it was distilled for). Each is evaluated with
`text2sign.evaluation.evaluate` on the same texts (``--groups``, ``--max-texts``) and seed, read
back by the same sequence recognizer (its ceiling: the recognizer on real clips of those texts).
Denoiser evaluations are counted, not computed: every call of the denoiser's forward, per clip.
Markdown to stdout, the machine below the table; each report is kept under ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TEACHER_STEPS = (25, 4, 8)
STUDENT_STEPS = (1, 2, 4)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", required=True, help="teacher model folder, or 'shipped'")
    p.add_argument("--student", required=True, help="the student's model folder")
    p.add_argument("--data", help="clip folder (default: the teacher's data.path)")
    p.add_argument("--recognizer", help="sequence recognizer folder (default: the corpus's "
                   "own, trained on first use)")
    p.add_argument("--groups", default="unseen")
    p.add_argument("--max-texts", type=int, default=40)
    p.add_argument("--per-text", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/distill-study")
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


class CountCalls:
    """Counts the clips a denoiser's forward is called on (a batch of 2B counts 2B)."""

    def __init__(self, denoiser) -> None:
        self.clips = 0
        self.forward = denoiser.forward
        denoiser.forward = self

    def __call__(self, x, t, text):
        self.clips += x.shape[0]
        return self.forward(x, t, text)


def main(argv: list[str] | None = None) -> int:
    from text2sign.data.dataset import open_data
    from text2sign.device import describe_device
    from text2sign.evaluation.evaluate import evaluate
    from text2sign.evaluation.sequence import SequenceRecognizer
    from text2sign.model_folder.folder import model_or_shipped
    from text2sign.pipeline import Text2SignPipeline
    from text2sign.report import fmt_number

    args = parse_args(argv)
    teacher = Text2SignPipeline.from_pretrained(
        model_or_shipped(None if args.teacher == "shipped" else args.teacher), device=args.device)
    student = Text2SignPipeline.from_pretrained(args.student, device=args.device)
    cache = open_data(teacher.config.data, progress=False, path=args.data)
    sequence = (SequenceRecognizer.load(args.recognizer, teacher.device) if args.recognizer
                else None)
    runs = [("teacher", teacher, "dpm++", k, teacher.config.sample.guidance)
            for k in TEACHER_STEPS]
    runs += [("student", student, "lcm", k, student.config.sample.guidance)
             for k in STUDENT_STEPS if k <= student.config.distill.steps]
    rows = []
    for name, pipe, sampler, steps, guidance in runs:
        counter = CountCalls(pipe.denoiser)
        report = evaluate(pipe, cache, Path(args.out) / f"{name}-{sampler}-{steps}",
                          per_text=args.per_text, sampler=sampler, steps=steps,
                          guidance=guidance, seed=args.seed, sequence_recognizer=sequence,
                          max_texts=args.max_texts, only=args.groups.split(","),
                          progress=False, name=f"{name} {steps} steps")
        pipe.denoiser.forward = counter.forward
        groups = report["back_translation"]["groups"]
        clips = sum(g["texts"] for g in groups.values()) * args.per_text
        for group, g in groups.items():
            rows.append([name, f"{sampler} {steps}", f"{guidance:g}", group, str(g["texts"]),
                         fmt_number(counter.clips / max(clips, 1), 1),
                         fmt_number(report["seconds_per_clip"], 2),
                         fmt_number(g["cer"]), fmt_number(g["ceiling_cer"]),
                         fmt_number(g["exact"]), fmt_number(g["ceiling_exact"])])
        print(f"{name} {sampler} {steps}: done", flush=True)
    header = ["model", "sampler", "guidance", "group", "texts", "evaluations/clip", "s/clip",
              "CER", "ceiling CER", "exact", "ceiling exact"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{args.per_text} clip per text, seed {args.seed}, teacher {teacher.folder}, "
          f"student {student.folder}, {describe_device(teacher.device)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
