"""A distilled student beside its teacher: denoiser evaluations, seconds and back-translation.

    python benchmarks/distill_study.py --teacher shipped:demo --student shipped:student \
        --data data/asl-phrases --recognizer src/text2sign/assets/recognizer \
        [--groups unseen,unseen-long,unseen-phrases] [--max-texts 20] [--card]

Rows: the teacher at its own sampler (DPM-Solver++ 25 steps with guidance), at 8 and 4 steps,
and the student at 1, 2 and 4 steps (those it was distilled for), at the teacher's guidance
scale. Every row generates the same texts (the first ``--max-texts`` of each group,
`evaluate.text_groups`) with the same noise (a call of 4 texts is seeded by the index of its
first text), each as long as the teacher's duration model says, read back by the same sequence
recognizer; the ceiling is that recognizer on the corpus's real clips of those texts. Denoiser
evaluations are counted, not computed: every clip a denoiser's forward is called on, per clip
made. Markdown to stdout, the machine below the table. ``--card`` records the student's row at
its own steps in its card (a student folder must not be the shipped one unless meant).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from length_readback import ceiling, read_back  # noqa: E402 (a sibling benchmark)

TEACHER_STEPS = (25, 8, 4)
STUDENT_STEPS = (1, 2, 4)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", required=True, help="teacher model folder or shipped:NAME")
    p.add_argument("--student", required=True, help="the student's model folder or shipped:NAME")
    p.add_argument("--data", help="clip folder (default: the teacher's data.path)")
    p.add_argument("--recognizer", required=True, help="sequence recognizer folder")
    p.add_argument("--groups", default="unseen,unseen-long,unseen-phrases")
    p.add_argument("--max-texts", type=int, default=20)
    p.add_argument("--card", action="store_true",
                   help="record the student's back-translation at its own steps in its card")
    return p.parse_args(argv)


class CountCalls:
    """Counts the clips a denoiser's forward is called on (a batch of 2B counts 2B)."""

    def __init__(self, denoiser) -> None:
        self.clips = 0
        self.denoiser = denoiser
        self.forward = denoiser.forward
        denoiser.forward = self

    def __call__(self, x, t, text):
        self.clips += x.shape[0]
        return self.forward(x, t, text)

    def restore(self) -> None:
        self.denoiser.forward = self.forward


def main(argv: list[str] | None = None) -> int:
    from text2sign.core.device import describe_device
    from text2sign.core.report import GROUP_NAMES, fmt_number
    from text2sign.data.dataset import open_data
    from text2sign.evaluation.evaluate import text_groups
    from text2sign.evaluation.readers import load_reader, reader_name
    from text2sign.model_folder.folder_io import training_texts
    from text2sign.model_folder.pipeline import Text2SignPipeline

    args = parse_args(argv)
    teacher = Text2SignPipeline.from_pretrained(args.teacher, device="cpu")
    student = Text2SignPipeline.from_pretrained(args.student, device="cpu")
    if student.config.distill.steps is None:
        raise ValueError(f"--student {args.student!r} is not a distilled student (no "
                         "distill.steps in its config); distil one with `text2sign distill`")
    cache = open_data(teacher.config.data, progress=False, path=args.data)
    rec = load_reader(args.recognizer)
    rec_name = reader_name(rec)
    picked = text_groups(list(cache.texts), training_texts(teacher.info, teacher.training_texts),
                         args.max_texts)
    groups = {g: picked[g] for g in args.groups.split(",") if picked.get(g)}
    if not groups:
        raise ValueError(f"the corpus has no texts in the groups {args.groups!r}")
    ceilings = {g: ceiling(rec, cache, texts) for g, texts in groups.items()}
    guidance = teacher.config.sample.guidance
    runs = [("teacher", teacher, "dpm++", k) for k in TEACHER_STEPS]
    runs += [("student", student, "lcm", k) for k in STUDENT_STEPS
             if k <= student.config.distill.steps]
    rows, report = [], {"back_translation": {"units": "chars", "groups": {}},
                        "duration": {"groups": {}}}
    for name, pipe, sampler, steps in runs:
        for group, texts in groups.items():
            counter = CountCalls(pipe.denoiser)
            row = read_back(pipe, cache, {rec_name: rec}, texts, sampler=sampler, steps=steps,
                            guidance=guidance)
            row |= row["readers"][rec_name] | ceilings[group]
            counter.restore()
            rows.append([name, f"{sampler} {steps}", f"{guidance:g}",
                         GROUP_NAMES.get(group, group), str(len(texts)),
                         fmt_number(counter.clips / len(texts), 0),
                         fmt_number(row["seconds_per_clip"], 2),
                         fmt_number(row["cer"]), fmt_number(row["ceiling_cer"]),
                         fmt_number(row["exact"]), fmt_number(row["ceiling_exact"])])
            print(" | ".join(rows[-1]), flush=True)
            if name == "student" and steps == student.config.distill.steps:
                report["back_translation"]["groups"][group] = {
                    key: row[key] for key in ("texts", "cer", "exact", "ceiling_cer",
                                              "ceiling_exact", "ceiling_clips")
                } | {"clips": len(texts)}
                if "duration_ratio" in row:
                    report["duration"]["groups"][group] = {
                        "texts": len(texts), "ratio": row["duration_ratio"],
                        "frame_error": row["frame_error"], "real_frames": row["real_frames"]}
    header = ["model", "sampler", "guidance", "group", "texts", "evaluations/clip", "s/clip",
              "CER", "ceiling CER", "exact", "ceiling exact"]
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    device = describe_device(teacher.device)
    print(f"\none clip per text (calls of 4 texts), teacher {args.teacher}, student "
          f"{args.student}, {device}")
    if args.card:
        from text2sign.model_folder.folder_io import add_evaluation

        report.update(device=device, sampler="lcm", steps=student.config.distill.steps,
                      guidance=guidance)
        add_evaluation(student.folder, report, "python benchmarks/distill_study.py " +
                       " ".join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
