"""Back-translation of unseen texts per group, for models side by side, without the classifier.

    python benchmarks/length_readback.py --data data/asl-phrases --max-texts 20 \
        --model shipped:demo --recognizer shipped \
        --groups unseen,unseen-long,unseen-phrases \
        --model OLD_28_FRAME_MODEL --recognizer src/text2sign/assets/recognizer-28f \
        --groups unseen,unseen-long

For each model: the first ``--max-texts`` texts of each group (`evaluate.text_groups`, a stable
pick), one clip each at the model's own sampler settings, read back by each reader given with it
(comma-separated folders, or `shipped` for both shipped readers); a reader's ceiling is the
same reader on the corpus's real clips of the same texts, at that model's clip length, and the
readers' agreement is the share of generated clips they all read the same (and right). A model
timed by its text also gets its duration against the real clips'. Lighter than `text2sign
evaluate` (no classifier, no FD): the quick check of a run.
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
    p.add_argument("--recognizer", action="append", required=True,
                   help="reader folders, comma-separated, or `shipped` (both shipped readers)")
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


def read_back(pipe, cache, readers: dict, texts: list[str], batch: int = 4, **sampling) -> dict:
    """One clip per text, ``batch`` texts a call (a call's seed: the index of its first text,
    so every model gets the same noise per text), read back by each reader: per reader CER,
    exact and the readings, their agreement, seconds per clip, and for a model timed by its
    text the generated / real duration and the mean absolute frame error. ``sampling``:
    sampler, steps, guidance (default: the model's)."""
    import numpy as np

    from text2sign.evaluation.readers import score_readings

    start, clips = time.perf_counter(), []
    for i in range(0, len(texts), batch):
        clips += list(pipe(texts[i:i + batch], seed=i, batch_size=batch, **sampling))
    seconds = (time.perf_counter() - start) / len(texts)
    same = len({len(c) for c in clips}) == 1
    readings = {name: [r for r, _ in rec.read(np.stack(clips) if same else clips, batch_size=8)]
                for name, rec in readers.items()}
    scored = score_readings(texts, readings, next(iter(readers.values())).units)
    row = {"readers": {name: {**scored["readers"][name],
                              "readings": dict(zip(texts, readings[name], strict=True))}
                       for name in readers},
           "agreement": scored["agreement"], "texts": len(texts), "seconds_per_clip": seconds}
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
    from text2sign.evaluation.readers import combine, load_reader, reader_name, resolve_readers
    from text2sign.model_folder.folder_io import training_texts
    from text2sign.model_folder.pipeline import Text2SignPipeline

    args = parse_args(argv)
    rows, out, device = [], {}, ""
    for k, (name, rec_spec, groups) in enumerate(zip(args.model, args.recognizer, args.groups,
                                                     strict=True)):
        per_reader: dict = {}
        agreements: dict = {}
        report: dict = {"duration": {"groups": {}}}
        pipe = Text2SignPipeline.from_pretrained(None if name == "shipped" else name,
                                                 device="cpu")
        device = describe_device(pipe.device)
        cache = open_data(pipe.config.data, progress=False, path=args.data)
        readers: dict = {}
        for folder in resolve_readers(rec_spec.split(",")):
            reader = load_reader(folder)
            readers[reader_name(reader, set(readers))] = reader
        picked = text_groups(list(cache.texts), training_texts(pipe.info, pipe.training_texts),
                             args.max_texts)
        for group in groups.split(","):
            texts = picked.get(group, [])
            if not texts:
                continue
            row = read_back(pipe, cache, readers, texts)
            for rname, rec in readers.items():
                row["readers"][rname] |= ceiling(rec, cache, texts)
            out[f"{name} | {group}"] = row
            agreements[group] = row["agreement"]
            for rname, r in row["readers"].items():
                per_reader.setdefault(rname, {"units": readers[rname].units, "groups": {}})
                per_reader[rname]["groups"][group] = {
                    key: r[key] for key in ("texts", "cer", "exact", "ceiling_cer",
                                            "ceiling_exact", "ceiling_clips")
                } | {"clips": len(texts)}
            if "duration_ratio" in row:
                report["duration"]["groups"][group] = {
                    "texts": len(texts), "ratio": row["duration_ratio"],
                    "frame_error": row["frame_error"], "real_frames": row["real_frames"]}
            timing = f"{pipe.fps:g} fps" if pipe.fps else f"{pipe.frames} frames"
            agree = row["agreement"]
            for rname, r in row["readers"].items():
                rows.append([name, timing, GROUP_NAMES.get(group, group), rname,
                             str(len(texts)), fmt_number(r["cer"]), fmt_number(r["ceiling_cer"]),
                             fmt_number(r["exact"]), fmt_number(r["ceiling_exact"]),
                             fmt_number(agree["same"]), fmt_number(agree["same_right"]),
                             fmt_number(row.get("duration_ratio")),
                             fmt_number(row.get("frame_error"), 2),
                             f"{row['seconds_per_clip']:.2f}"])
                print(" | ".join(rows[-1]), flush=True)
        report["back_translation"] = combine(per_reader, agreements)
        if args.card and k == 0:
            from text2sign.model_folder.folder_io import add_evaluation

            report["device"] = device
            add_evaluation(pipe.folder, report, "python benchmarks/length_readback.py " +
                           " ".join(sys.argv[1:] if argv is None else argv))
    header = ["model", "clips", "group", "reader", "texts", "CER", "ceiling CER", "exact",
              "ceiling exact", "readers same", "same and right", "duration gen/real",
              "frame error", "s/clip"]
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
