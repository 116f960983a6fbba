"""CLI commands `evaluate` and `demo`; heavy imports stay inside the handlers."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from text2sign.core.config import SAMPLERS
from text2sign.core.console import add_quiet, shows_progress
from text2sign.core.report import format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score a model: recognition accuracy, Frechet distance, speed",
        description="Generate clips for every distinct text of a corpus and score them with a "
        "recognizer trained on the corpus's real clips (trained once, cached next to the clip "
        "cache). Each clip is made and read in its corpus clip's sign language (OUT/<code>/ "
        "folders); a corpus of several adds a table per language. Writes report.json, "
        "report.md, contact.png and gifs/.")
    p.add_argument("--model", help="model folder, run folder, Hugging Face Hub id or "
                   "shipped:NAME (default: the shipped ASL model's few-step student, or its "
                   "teacher shipped:demo when --sampler, --steps or --guidance ask for more)")
    p.add_argument("--data", required=True, metavar="DIR|CACHE",
                   help="the clip folder (NAME.gif + NAME.txt) or a prepared cache")
    p.add_argument("--per-text", type=int, default=4, metavar="K",
                   help="clips generated per text (default 4)")
    p.add_argument("--sampler", choices=SAMPLERS, help="default: the model's config")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's config)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale "
                   "(default: the model's config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="report folder (default: RUN/eval for a runs/RUN/model "
                   "folder, else runs/eval)")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda or mps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--recognizer", metavar="DIR", action="append",
                   help="a reader folder for the back-translation; give it again for another "
                   "reader, or `shipped` for the shipped readers (default: one reader of each "
                   "architecture trained on the corpus on first use and cached)")
    p.add_argument("--max-texts", type=int, metavar="N",
                   help="at most N texts of each group (letters, seen, unseen, unseen-long, "
                   "unseen-phrases; of each sign language on a corpus of several), picked by a "
                   "stable hash (default: every text)")
    p.add_argument("--groups", metavar="G,G",
                   help="evaluate only these groups, comma-separated (default: all)")
    p.add_argument("--no-back-translation", action="store_true",
                   help="skip reading the clips back into text")
    p.add_argument("--card", action="store_true",
                   help="also record the scores and an animated sample (real beside generated "
                   "clips) in the model folder's card, README.md")
    add_quiet(p)
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser(
        "demo", help="generate ASL letters and words (seen and unseen) with the shipped model, "
        "score them and read them back into text",
        description="Builds an ASL fingerspelling corpus of the letters and a dozen words the "
        "model trained on and a dozen it never saw, loads the model shipped with text2sign (or "
        "trains one with --train), generates them, scores them (top-1, Frechet distance) and "
        "reads them back with a sequence recognizer (back-translation: CER and exact-word "
        "accuracy next to real clips' ceiling); prints the tables and the paths of the GIFs, "
        "contact sheet and recognizer.")
    p.add_argument("--out", default="runs/demo", help="demo folder (default: runs/demo)")
    p.add_argument("--train", action="store_true",
                   help="train a model from scratch instead of loading the shipped one")
    p.add_argument("--model", help="a model (or run) folder to show instead of the shipped one")
    p.add_argument("--minutes", type=float, default=30.0,
                   help="training budget with --train (default 30)")
    p.add_argument("--config", help="with --train: a YAML run config (default: the shipped "
                   "model's, configs/asl-demo.yaml)")
    p.add_argument("--per-text", type=int, default=1, metavar="K",
                   help="clips generated per text (default 1)")
    p.add_argument("--recognizer", metavar="DIR", action="append",
                   help="a reader folder for the back-translation, repeatable (default: the "
                   "two shipped readers)")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda or mps")
    add_quiet(p)
    p.set_defaults(func=run_demo_command)


def register_reader(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reader", help="train a reader (clip -> text) on a corpus, or score readers on it",
        description="`reader train DATA --out DIR` trains a reader on the corpus's training "
        "texts (the same split `evaluate` scores against) and prints its readings of the real "
        "held-out clips per group; `reader score DATA READER [READER ...]` prints those of "
        "saved readers side by side, with their agreement.")
    rsub = p.add_subparsers(dest="reader_command", required=True, metavar="SUBCOMMAND")
    for name in ("train", "score"):
        q = rsub.add_parser(name, help="train one reader" if name == "train"
                            else "score saved readers on a corpus's held-out real clips")
        q.add_argument("data", metavar="DIR|CACHE",
                       help="the clip folder (NAME.gif + NAME.txt) or a prepared cache")
        if name == "train":
            q.add_argument("--out", required=True, help="the reader folder to write")
            q.add_argument("--arch", choices=("transformer", "conv-gru"), default="transformer",
                           help="transformer: per-frame CNN + transformer, CTC + attention "
                           "decoder (default); conv-gru: Conv3d + BiGRU + CTC")
            q.add_argument("--steps", type=int, help="training steps (default: the arch's)")
            q.add_argument("--units", choices=("chars", "glosses"),
                           help="default: chars for a `data fingerspelling` corpus, else glosses")
        else:
            q.add_argument("readers", nargs="+", metavar="READER",
                           help="reader folders, or `shipped` for the shipped readers")
        timing = q.add_mutually_exclusive_group()
        timing.add_argument("--fps", type=float, default=6.25,
                            help="read clips at their own length at this rate (default 6.25)")
        timing.add_argument("--frames", type=int, help="resample every clip to N frames instead")
        q.add_argument("--max-frames", type=int, default=80,
                       help="with --fps: the most frames a clip gets (default 80)")
        q.add_argument("--size", type=int, default=128, help="frame size of the cache")
        q.add_argument("--val-fraction", type=float, default=0.1)
        q.add_argument("--holdout", type=float, default=0.1,
                       help="share of texts never trained on, by a hash of the text (default "
                       "0.1: the shipped models' data.holdout_texts)")
        q.add_argument("--max-clips", type=int, metavar="N",
                       help="score at most N real clips per group")
        if name == "score":
            q.add_argument("--all", action="store_true",
                           help="score every clip of DATA (a test corpus no reader trained on), "
                           "not only the held-out ones")
            q.add_argument("--decoded-by", metavar="MODEL",
                           help="also read the same clips after a round trip through this "
                           "latent model's autoencoder: the most its clips can read")
        q.add_argument("--device", default="auto")
        add_quiet(q)
        q.set_defaults(func=run_reader)


def run_reader(args: argparse.Namespace) -> int:
    # torch: imported when the command runs, so `text2sign --help` stays fast
    from text2sign.core.device import pick_device
    from text2sign.data.dataset import open_clips
    from text2sign.evaluation.readers import (
        ARCHS,
        load_or_train_reader,
        load_reader,
        reader_name,
        real_groups,
        resolve_readers,
    )
    from text2sign.evaluation.sequence import clip_languages

    mode = "fps" if args.frames is None else "resample"
    cache = open_clips(args.data, args.max_frames if mode == "fps" else args.frames, args.size,
                       mode, progress=shows_progress(args),
                       fps=args.fps if mode == "fps" else None)
    device = pick_device(args.device)
    if args.reader_command == "train":
        settings = ARCHS[args.arch][2]()
        if args.steps is not None:
            if args.steps < 1:
                raise ValueError(f"--steps {args.steps}: must be at least 1")
            settings.steps = args.steps
        reader = load_or_train_reader(cache, args.arch, args.val_fraction, args.holdout,
                                      units=args.units, settings=settings, device=device,
                                      folder=args.out, progress=shows_progress(args))
        readers = {reader_name(reader): reader}
        print(f"reader: {args.out} ({reader.metrics.get('train_seconds', 0):.0f} s of training "
              f"on {reader.metrics.get('train_clips', 0)} clips)")
    else:
        readers = {}
        for folder in resolve_readers(args.readers):
            reader = load_reader(folder, device)
            readers[reader_name(reader, set(readers))] = reader
    groups = real_groups(cache, args.val_fraction, args.holdout, args.max_clips,
                         every=getattr(args, "all", False))
    several = len(set(clip_languages(cache))) > 1  # a ceiling per sign language too
    # a model without an autoencoder is refused before any clip is read
    decoded = (decoded_clips(args.decoded_by, cache, device)
               if getattr(args, "decoded_by", None) else None)
    scores, by_language = _print_scores(readers, cache, groups, several, "")
    if decoded is not None:
        print()
        _print_scores(readers, decoded, groups, several,
                      f" through the autoencoder of {args.decoded_by}")
    if args.reader_command == "train":
        name = next(iter(readers))
        reader.metrics["real"] = {g: s["readers"][name] for g, s in scores.items()}
        if by_language:
            reader.metrics["real_languages"] = {c: s["readers"][name]
                                                for c, s in by_language.items()}
        reader.save(args.out)
    return 0


def _print_scores(readers: dict, clips: Any, groups: dict, several: bool, title: str
                  ) -> tuple[dict, dict]:
    """Every reader on the clips of each group (and each language, with ``several``), printed
    as tables; returns (per group, per language) scores."""
    from text2sign.evaluation.readers import read_real

    scores = read_real(readers, clips, groups, by_language=several)
    by_language = scores["languages"] if several else {}
    scores = scores["groups"] if several else scores
    print(format_table(_score_rows(f"real held-out clips{title}", scores, len(readers))))
    if by_language:
        print()
        print(format_table(_score_rows(f"held-out texts, by language{title}", by_language,
                                       len(readers))))
    return scores, by_language


def decoded_clips(model: str, cache: Any, device: Any) -> Any:
    """``cache`` read through the autoencoder of latent model ``model`` (one line for a model
    without one, or of another frame size)."""
    from text2sign.evaluation.evaluate import DecodedClips
    from text2sign.model_folder.autoencoder_io import load_autoencoder
    from text2sign.model_folder.resolve import resolve_model

    folder = resolve_model(model)
    cfg = folder.config
    if not cfg.latent.enabled:
        raise ValueError(f"--decoded-by {model!r} diffuses in pixel space: it has no autoencoder")
    if cfg.data.size != cache.frame_shape[0]:
        raise ValueError(f"--decoded-by {model!r} draws {cfg.data.size} px frames, the clips are "
                         f"{cache.frame_shape[0]} px; pass --size {cfg.data.size}")
    return DecodedClips(cache, load_autoencoder(folder.path, cfg.latent).to(device).eval())


def _score_rows(title: str, scores: dict, readers: int) -> list[list[str]]:
    """A header and a row per group (or language) and reader of `read_real`'s scores."""
    rows = [[title, "reader", "clips", "CER", "exact", "both same", "both right"]]
    for key, score in scores.items():
        agree = score["agreement"]
        for name, s in score["readers"].items():
            rows.append([key, name, str(s["clips"]), f"{s['cer']:.3f}", f"{s['exact']:.3f}",
                         "" if readers < 2 else f"{agree['same']:.3f}",
                         "" if readers < 2 else f"{agree['same_right']:.3f}"])
    return rows


def default_out(model_folder: Path) -> Path:
    """runs/NAME/model -> runs/NAME/eval; any other model folder -> runs/eval."""
    return model_folder.parent / "eval" if model_folder.name == "model" else Path("runs/eval")


def no_primitive_cache() -> None:
    """Turn off oneDNN's primitive cache for this process, before its first convolution (unless
    the user set ONEDNN_PRIMITIVE_CACHE_CAPACITY): `evaluate`, `demo` and `serve`, which sample
    texts of many lengths; it runs before torch is imported. Clips that keep their lengths give
    the convolutions a new shape at almost every batch, and the cache kept a compiled primitive
    for each (up to 1,024): generating 300 texts of the phrases corpus grew the process from 0.6 to
    1.6 GB, 0.9 GB peak without it, in the same seconds (docs/scale.md)."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")


def run_evaluate(args: argparse.Namespace) -> int:
    no_primitive_cache()
    # torch: imported when the command runs, so `text2sign --help` stays fast
    from text2sign.data.dataset import open_data
    from text2sign.evaluation.evaluate import evaluate, print_report
    from text2sign.evaluation.readers import pick_readers
    from text2sign.model_folder.folder_io import add_evaluation
    from text2sign.model_folder.pipeline import Text2SignPipeline
    from text2sign.model_folder.resolve import resolve_model

    if args.per_text < 1:
        raise ValueError(f"--per-text {args.per_text}: must be at least 1")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.max_texts is not None and args.max_texts < 1:
        raise ValueError(f"--max-texts {args.max_texts}: must be at least 1")
    model = resolve_model(args.model, sampler=args.sampler, steps=args.steps,
                          guidance=args.guidance)
    pipe = Text2SignPipeline.from_pretrained(model, device=args.device)
    folder = pipe.folder
    if not args.quiet:
        print(f"model: {folder}")
    dc = pipe.config.data
    cache = open_data(dc, progress=shows_progress(args), path=args.data)
    readers = None  # evaluate trains (or finds cached) one of each kind on the corpus
    if args.recognizer and not args.no_back_translation:
        readers = pick_readers(args.recognizer, cache, device=pipe.device)
    report = evaluate(pipe, cache, Path(args.out) if args.out else default_out(folder),
                      per_text=args.per_text, sampler=args.sampler, steps=args.steps,
                      guidance=args.guidance, seed=args.seed, batch_size=args.batch_size,
                      readers=readers, back_translate=not args.no_back_translation,
                      max_texts=args.max_texts, name=str(folder), progress=shows_progress(args),
                      only=args.groups.split(",") if args.groups else None)
    print_report(report)
    if args.card:
        card = add_evaluation(folder, report, getattr(args, "command_line", None))
        print(f"model card:    {card}")
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    no_primitive_cache()
    # torch: imported when the command runs, so `text2sign --help` stays fast
    from text2sign.apps.demo import run_demo
    from text2sign.model_folder.build import build_config
    from text2sign.model_folder.resolve import resolve_model

    config = None
    if args.config is not None:
        if not args.train:
            raise ValueError("--config applies to --train only; add --train, or drop --config")
        config = build_config("small", args.config)
    if args.model is not None and args.train:
        raise ValueError("--model and --train exclude each other: show a trained model, or "
                         "train a new one")
    model = None
    if args.model is not None:
        model = resolve_model(args.model)
    run_demo(args.out, train=args.train, minutes=args.minutes, per_text=args.per_text,
             device=args.device, config=config, model=model, recognizers=args.recognizer,
             progress=shows_progress(args), quiet=args.quiet)
    return 0
