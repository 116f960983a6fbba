"""Back-translation of unseen texts per group, for models side by side, without the classifier.

    python benchmarks/length_readback.py --data data/asl-phrases --max-texts 20 \
        --model shipped:demo --recognizer src/text2sign/assets/recognizer \
        --groups unseen,unseen-long,unseen-phrases \
        --model OLD_28_FRAME_MODEL --recognizer src/text2sign/assets/recognizer-28f \
        --groups unseen,unseen-long

For each model: the first ``--max-texts`` texts of each group (`evaluate.text_groups`, a stable
pick), one clip each at the model's own sampler settings, read back by the sequence recognizer
given with it; the ceiling is the same recognizer on the corpus's real clips of the same texts,
at that model's clip length. A model timed by its text also gets its duration against the real
clips'. Lighter than `text2sign evaluate` (no classifier, no FD): the quick check of a run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", action="append", required=True,
                   help="a model folder, shipped:NAME, or 'shipped' (the default model)")
    p.add_argument("--recognizer", action="append", required=True)
    p.add_argument("--groups", action="append", required=True, help="comma-separated, per model")
    p.add_argument("--max-texts", type=int, default=20)
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--card", action="store_true",
                   help="record the first model's back-translation and duration in its card")
    args = p.parse_args(argv)
    if not len(args.model) == len(args.recognizer) == len(args.groups):
        p.error("give --recognizer and --groups once per --model")
    return args


def real_clips(cache, texts: list[str]) -> list[int]:
    """The corpus's clips of ``texts`` (the ceiling's)."""
    wanted = set(texts)
    return [i for i, t in enumerate(cache.texts) if t in wanted]


def ceiling(rec, cache, texts: list[str]) -> dict:
    """The recognizer on the corpus's real clips of ``texts``: CER, exact, how many clips."""
    from text2sign.evaluation.metrics import error_rate, exact_accuracy
    from text2sign.evaluation.sequence import read_clips

    real = real_clips(cache, texts)
    hyps = read_clips(rec, cache, real, batch_size=8)
    refs = [cache.texts[i] for i in real]
    return {"ceiling_cer": error_rate(refs, hyps), "ceiling_exact": exact_accuracy(refs, hyps),
            "ceiling_clips": len(real)}


def read_back(pipe, cache, rec, texts: list[str], batch: int = 4, **sampling) -> dict:
    """One clip per text, ``batch`` texts a call (a call's seed: the index of its first text,
    so every model gets the same noise per text), read back by ``rec``; CER, exact, seconds per
    clip, the readings, and for a model timed by its text the generated / real duration and the
    mean absolute frame error. ``sampling``: sampler, steps, guidance (default: the model's)."""
    import numpy as np

    from text2sign.evaluation.metrics import error_rate, exact_accuracy

    start, clips = time.perf_counter(), []
    for i in range(0, len(texts), batch):
        clips += list(pipe(texts[i:i + batch], seed=i, batch_size=batch, **sampling))
    seconds = (time.perf_counter() - start) / len(texts)
    same = len({len(c) for c in clips}) == 1
    hyps = [r for r, _ in rec.read(np.stack(clips) if same else clips, batch_size=8)]
    row = {"texts": len(texts), "cer": error_rate(texts, hyps),
           "exact": exact_accuracy(texts, hyps), "seconds_per_clip": seconds,
           "readings": dict(zip(texts, hyps, strict=True))}
    if pipe.fps is not None:
        lengths: dict[str, list[int]] = {}
        for i in real_clips(cache, texts):
            lengths.setdefault(cache.texts[i], []).append(cache.lengths[i])
        real = [float(np.mean(lengths[t])) for t in texts]
        row["duration_ratio"] = float(np.mean([len(c) / r for c, r in zip(clips, real,
                                                                            strict=True)]))
        row["frame_error"] = float(np.mean([abs(len(c) - r) for c, r in zip(clips, real,
                                                                           strict=True)]))
        row["real_frames"] = float(np.mean(real))
    return row


def main(argv: list[str] | None = None) -> int:
    from text2sign.core.device import describe_device
    from text2sign.core.report import GROUP_NAMES, fmt_number
    from text2sign.data.dataset import open_data
    from text2sign.evaluation.evaluate import text_groups
    from text2sign.evaluation.sequence import SequenceRecognizer
    from text2sign.model_folder.folder_io import training_texts
    from text2sign.model_folder.pipeline import Text2SignPipeline

    args = parse_args(argv)
    rows, out, device = [], {}, ""
    for k, (name, rec_dir, groups) in enumerate(zip(args.model, args.recognizer, args.groups,
                                                    strict=True)):
        report: dict = {"back_translation": {"units": "chars", "groups": {}},
                        "duration": {"groups": {}}}
        pipe = Text2SignPipeline.from_pretrained(None if name == "shipped" else name,
                                                 device="cpu")
        device = describe_device(pipe.device)
        cache = open_data(pipe.config.data, progress=False, path=args.data)
        rec = SequenceRecognizer.load(rec_dir)
        picked = text_groups(list(cache.texts), training_texts(pipe.info, pipe.training_texts),
                             args.max_texts)
        for group in groups.split(","):
            texts = picked.get(group, [])
            if not texts:
                continue
            row = read_back(pipe, cache, rec, texts) | ceiling(rec, cache, texts)
            out[f"{name} | {group}"] = row
            report["back_translation"]["groups"][group] = {
                key: row[key] for key in ("texts", "cer", "exact", "ceiling_cer",
                                          "ceiling_exact", "ceiling_clips")} | {"clips": len(texts)}
            if "duration_ratio" in row:
                report["duration"]["groups"][group] = {
                    "texts": len(texts), "ratio": row["duration_ratio"],
                    "frame_error": row["frame_error"], "real_frames": row["real_frames"]}
            timing = f"{pipe.fps:g} fps" if pipe.fps else f"{pipe.frames} frames"
            rows.append([name, timing, GROUP_NAMES.get(group, group), str(len(texts)),
                         fmt_number(row["cer"]), fmt_number(row["ceiling_cer"]),
                         fmt_number(row["exact"]), fmt_number(row["ceiling_exact"]),
                         fmt_number(row.get("duration_ratio")),
                         fmt_number(row.get("frame_error"), 2),
                         f"{row['seconds_per_clip']:.2f}"])
            print(" | ".join(rows[-1]), flush=True)
        if args.card and k == 0:
            from text2sign.model_folder.folder_io import add_evaluation

            report["device"] = device
            add_evaluation(pipe.folder, report, "python benchmarks/length_readback.py " +
                           " ".join(sys.argv[1:] if argv is None else argv))
    header = ["model", "clips", "group", "texts", "CER", "ceiling CER", "exact",
              "ceiling exact", "duration gen/real", "frame error", "s/clip"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\none clip per text, {device}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
