"""CLI commands `evaluate` and `demo`; heavy imports stay inside the handlers."""

from __future__ import annotations

import argparse
from pathlib import Path

from text2sign.core.config import SAMPLERS
from text2sign.core.console import add_quiet, shows_progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score a model: recognition accuracy, Frechet distance, speed",
        description="Generate clips for every distinct text of a corpus and score them with a "
        "recognizer trained on the corpus's real clips (trained once, cached next to the clip "
        "cache). Writes report.json, report.md, contact.png and gifs/.")
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
    p.add_argument("--recognizer", metavar="DIR",
                   help="a sequence recognizer folder for the back-translation (default: the "
                   "corpus's own, trained on first use and cached)")
    p.add_argument("--max-texts", type=int, metavar="N",
                   help="at most N texts of each group (letters, seen, unseen, unseen-long, "
                   "unseen-phrases), picked by a stable hash (default: every text)")
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
    p.add_argument("--recognizer", metavar="DIR",
                   help="sequence recognizer folder for the back-translation (default: the "
                   "one shipped with the model)")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda or mps")
    add_quiet(p)
    p.set_defaults(func=run_demo_command)


def default_out(model_folder: Path) -> Path:
    """runs/NAME/model -> runs/NAME/eval; any other model folder -> runs/eval."""
    return model_folder.parent / "eval" if model_folder.name == "model" else Path("runs/eval")


def run_evaluate(args: argparse.Namespace) -> int:
    # torch: imported when the command runs, so `text2sign --help` stays fast
    from text2sign.data.dataset import open_data
    from text2sign.evaluation.evaluate import evaluate, print_report
    from text2sign.evaluation.sequence import SequenceRecognizer
    from text2sign.model_folder.folder_io import add_evaluation, shipped_default
    from text2sign.model_folder.pipeline import Text2SignPipeline

    if args.per_text < 1:
        raise ValueError(f"--per-text {args.per_text}: must be at least 1")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.max_texts is not None and args.max_texts < 1:
        raise ValueError(f"--max-texts {args.max_texts}: must be at least 1")
    named = args.model or shipped_default(args.sampler, args.steps, args.guidance)
    pipe = Text2SignPipeline.from_pretrained(named, device=args.device)  # found once
    folder = pipe.folder
    if not args.quiet:
        print(f"model: {folder}")
    sequence = None
    if args.recognizer:
        sequence = SequenceRecognizer.load(args.recognizer, pipe.device)
    dc = pipe.config.data
    cache = open_data(dc, progress=shows_progress(args), path=args.data)
    report = evaluate(pipe, cache, Path(args.out) if args.out else default_out(folder),
                      per_text=args.per_text, sampler=args.sampler, steps=args.steps,
                      guidance=args.guidance, seed=args.seed, batch_size=args.batch_size,
                      sequence_recognizer=sequence, back_translate=not args.no_back_translation,
                      max_texts=args.max_texts, name=str(folder), progress=shows_progress(args),
                      only=args.groups.split(",") if args.groups else None)
    print_report(report)
    if args.card:
        card = add_evaluation(folder, report, getattr(args, "command_line", None))
        print(f"model card:    {card}")
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    # torch: imported when the command runs, so `text2sign --help` stays fast
    from text2sign.apps.demo import run_demo
    from text2sign.model_folder.build import build_config
    from text2sign.model_folder.folder_io import model_or_shipped

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
        model = model_or_shipped(args.model)
    run_demo(args.out, train=args.train, minutes=args.minutes, per_text=args.per_text,
             device=args.device, config=config, model=model, recognizer=args.recognizer,
             progress=shows_progress(args), quiet=args.quiet)
    return 0
