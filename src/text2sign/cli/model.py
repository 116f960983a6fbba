"""CLI commands for models: train, distill, refit-decoder, sample, info, config."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from text2sign.core.config import PRESETS, SAMPLERS, apply_overrides
from text2sign.core.console import add_quiet, shows_progress
from text2sign.core.units import DEFAULT_LANGUAGE
from text2sign.data.video_io import safe_names, write_contact_sheet, write_gif, write_mp4
from text2sign.model_folder.shipped import SHIPPED


def _preset_names() -> list[str]:
    return list(PRESETS)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=_preset_names(),
                   help="named starting point (default: small, for CPUs and laptops; on "
                   "--resume: the run's own config)")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML config (see `text2sign config`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set train.lr=1e-4 (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a text-conditioned video diffusion model",
                       description="Train on a folder of NAME.gif + NAME.txt pairs (or a cache "
                       "made by `text2sign data prepare`). Watch it: tensorboard --logdir OUT.")
    p.add_argument("--data", help="clip folder or cache (overrides data.path)")
    _config_args(p)
    p.add_argument("--out", default=None, help="run folder (default: runs/<arch>-<preset>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue the run in --out from its latest checkpoint (or the one given)")
    p.add_argument("--minutes", type=float, help="stop and save after this many minutes")
    p.add_argument("--init-from", metavar="MODEL",
                   help="start from a text2sign model folder: every weight that fits, and its "
                   "latent space (sets model.init_from)")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda or mps")
    p.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)  # old scripts
    add_quiet(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("distill", help="distil a model into a few-step student (guidance "
                       "folded in)", description="Latent consistency distillation of a text2sign "
                       "model folder (the teacher) into a student that samples in --steps steps, "
                       "one denoiser evaluation each, on the teacher's training data. The "
                       "student is OUT/model, an ordinary model folder.")
    p.add_argument("--model", help="the teacher: model folder, run folder or Hugging Face Hub id "
                   "(on --resume: the run's own)")
    p.add_argument("--out", required=True, help="run folder; its model/ is the student")
    p.add_argument("--steps", type=int,
                   help="the student's sampler steps: 1, 2 or 4 (default 4; on --resume: the "
                   "run's own)")
    p.add_argument("--data", help="clip folder or cache (default: the teacher's data.path)")
    p.add_argument("--student-from", metavar="STUDENT",
                   help="start the student from this student's weights instead of the "
                   "teacher's: a student of an earlier teacher this one was trained on from "
                   "(sets distill.student_from)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set train.max_steps=4000 (repeatable)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue the run in --out from its latest checkpoint (or the one given)")
    p.add_argument("--minutes", type=float, help="stop and save after this many minutes")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda or mps")
    add_quiet(p)
    p.set_defaults(func=run_distill)

    p = sub.add_parser("refit-decoder", help="refit a latent model's decoder to a corpus "
                       "(the latent space kept)", description="Fine-tune the decoder of a latent "
                       "model's frame autoencoder on the training clips of --data, the encoder "
                       "and the latent normalisation frozen, so the denoiser is unchanged and "
                       "draws through a decoder fitted to these clips (a model fine-tuned on new "
                       "alphabets keeps the autoencoder of the model it started from). Writes "
                       "the model with the new decoder to --out. --from takes the refitted "
                       "decoder of another folder that encodes alike (a student its teacher's).")
    p.add_argument("model", metavar="MODEL", help="model folder, run folder, shipped:NAME or "
                   "Hugging Face Hub id")
    p.add_argument("--out", required=True, help="the new model folder")
    p.add_argument("--data", help="clip folder or cache (default: the model's data.path)")
    p.add_argument("--steps", type=int, default=4000,
                   help="batches of frames to train the decoder on (default 4000)")
    p.add_argument("--batch-size", type=int, default=16, help="frames a batch (default 16)")
    p.add_argument("--lr", type=float, default=5e-4, help="learning rate (default 5e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, help="stop after this many minutes")
    p.add_argument("--from", dest="donor", metavar="REFITTED",
                   help="take this folder's refitted decoder instead of training one (its "
                   "encoder must be MODEL's)")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda or mps")
    add_quiet(p)
    p.set_defaults(func=run_refit_decoder)

    p = sub.add_parser("sample", help="generate clips from text with a trained model")
    p.add_argument("texts", nargs="+", metavar="TEXT", help='what to sign, e.g. "hello" A B')
    p.add_argument("--model", help="model folder, run folder, Hugging Face Hub id or "
                   "shipped:NAME (default: the shipped ASL model's few-step student, or its "
                   "teacher shipped:demo when --sampler, --steps or --guidance ask for more, "
                   "or shipped:multilingual when --language asks for a language they do not "
                   "sign)")
    p.add_argument("--language", metavar="CODE",
                   help="the sign language to sign in, one the model signs (`text2sign info` "
                   "lists them; with no --model, `text2sign data fingerspelling "
                   "--list-languages`), e.g. gsg; clips of a language other than ASL are "
                   "written to OUT/CODE/ (default: the model's default, ASL)")
    p.add_argument("--num", type=int, default=1, help="clips per text (default 1)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's config)")
    p.add_argument("--sampler", choices=SAMPLERS, help="default: the model's config (dpm++)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--eta", type=float, help="DDIM eta (0 = deterministic)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--frames", type=int, help="frames per clip (default: the model's "
                        "duration model decides from the text, or as trained)")
    length.add_argument("--seconds", type=float,
                        help="seconds per clip, at the model's frame rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, help="frame rate of the written clips (default: the "
                   "rate the model was trained at, or 8)")
    p.add_argument("--out", default="samples", help="output folder (default: samples)")
    p.add_argument("--mp4", action="store_true", help="also write MP4 files (needs PyAV)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    add_quiet(p)
    p.set_defaults(func=run_sample)

    p = sub.add_parser("info", help="describe a model or run: architecture, size, training, "
                       "checkpoints", description="Describe a model folder; for a run folder "
                       "also list its checkpoints (step, minutes, last logged loss, size).")
    p.add_argument("model", nargs="?", metavar="MODEL|RUN",
                   help="model folder, run folder, Hugging Face Hub id or shipped:NAME (default: "
                   "the shipped ASL model's few-step student)")
    p.add_argument("--modules", action="store_true",
                   help="also print the module tree with parameter counts per block and part")
    add_quiet(p)
    p.set_defaults(func=run_info)

    p = sub.add_parser("config", help="print a full YAML config that --config accepts back")
    _config_args(p)
    add_quiet(p)
    p.set_defaults(func=run_config)


def _build(args: argparse.Namespace, base=None):
    """The command line's config; ``base``, a run's own config, is what it changes (--resume)."""
    from text2sign.model_folder.build import (
        build_config,  # torch: imported when a command runs, not by --help
    )

    preset = args.preset or (None if base is not None else "small")
    return build_config(preset, args.config, args.overrides, base)


def run_config(args: argparse.Namespace) -> int:
    sys.stdout.write(_build(args).to_yaml())
    return 0


def run_train(args: argparse.Namespace) -> int:
    # torch, accelerate: imported when the command runs, so `text2sign --help` stays fast
    from text2sign.training.loop import train
    from text2sign.training.run_state import read_run_config, resume_config

    cfg = _build(args)
    out = Path(args.out or f"runs/{cfg.model.arch}-{cfg.model.preset}")
    run = read_run_config(out, args.resume) if args.resume else None
    if run is not None:  # what the command line sets changes the run's config, not a preset's
        cfg = _build(args, base=run)
    if args.data:  # set as data, never re-parsed: a folder named 2024 or yes stays a path
        cfg = replace(cfg, data=replace(cfg.data, path=str(args.data)))
    if args.minutes is not None:
        cfg = replace(cfg, train=replace(cfg.train, max_minutes=args.minutes))
    if args.init_from:
        cfg = replace(cfg, model=replace(cfg.model, init_from=args.init_from))
    cfg = resume_config(cfg, out, args.resume, data=args.data)
    if not Path(cfg.data.path).exists():
        raise FileNotFoundError(
            f"data {cfg.data.path!r} does not exist; pass --data DIR (a folder of NAME.gif + "
            "NAME.txt), or build the demo corpus: text2sign data fingerspelling data/asl-letters"
        )
    progress = shows_progress(args) and not args.no_progress
    model = train(cfg, out, resume=args.resume, progress=progress,
                  device=args.device, quiet=args.quiet, command=getattr(args, "command_line", None))
    if args.quiet:
        print(model)
        return 0
    print(f"model: {model}\nsample: text2sign sample --model {model} \"A\"\n"
          f"watch:  tensorboard --logdir {out}")
    return 0


def run_refit_decoder(args: argparse.Namespace) -> int:
    # torch: imported when the command runs, so `text2sign --help` stays fast
    from text2sign.model_folder.resolve import resolve_model
    from text2sign.training.decoder_refit import refit_decoder, take_decoder

    command = getattr(args, "command_line", None)
    if args.donor is not None:
        out = take_decoder(args.model, args.donor, args.out, command=command)
    else:
        model = resolve_model(args.model)
        data = args.data or model.config.data.path
        if not Path(data).exists():
            raise FileNotFoundError(f"the model's data {data!r} does not exist; pass --data DIR, "
                                    "clips like those the model signs")
        out = refit_decoder(model, data, args.out, steps=args.steps, batch_size=args.batch_size,
                            lr=args.lr, seed=args.seed, minutes=args.minutes,
                            device=args.device, progress=shows_progress(args), command=command)
    print(out if args.quiet else f"model: {out}\nsample: text2sign sample --model {out} \"A\"")
    return 0


def run_distill(args: argparse.Namespace) -> int:
    # torch, accelerate: imported when the command runs, so `text2sign --help` stays fast
    from text2sign.model_folder.resolve import locate, resolve_model
    from text2sign.training.distillation import distill, student_config
    from text2sign.training.run_state import read_run_config, resume_config

    out = Path(args.out)
    run = read_run_config(out, args.resume) if args.resume else None
    if run is None and args.model is None:
        raise ValueError("--model is missing: name the teacher model folder to distil")
    teacher = resolve_model(args.model or run.distill.teacher)
    if run is not None and args.model and teacher.path.resolve() != locate(
            run.distill.teacher)[0].resolve():
        raise ValueError(f"--model {args.model!r} is not the teacher of the run in {str(out)!r} "
                         f"({run.distill.teacher!r}); drop --model, or start a new --out")
    if run is None:  # a shipped teacher keeps its name: the student works wherever it is copied
        named = args.model if str(args.model).startswith(SHIPPED) else teacher.path
        start = [f"distill.student_from={args.student_from}"] if args.student_from else []
        cfg = student_config(teacher.config, named,
                             4 if args.steps is None else args.steps,
                             start + args.overrides, data=args.data)
    elif args.student_from:
        raise ValueError(f"--student-from {args.student_from!r}: a resumed run continues from "
                         "its checkpoint; drop --student-from, or start a new --out")
    elif args.steps is not None and args.steps != run.distill.steps:
        raise ValueError(f"--steps {args.steps} differs from the run in {str(out)!r} (distilled "
                         f"for {run.distill.steps}); drop --steps, or start a new --out")
    else:  # the command line changes the run's own config
        cfg = apply_overrides(run, args.overrides) if args.overrides else run
    if args.minutes is not None:
        cfg = replace(cfg, train=replace(cfg.train, max_minutes=args.minutes))
    cfg = resume_config(cfg, out, args.resume, data=args.data)
    if not Path(cfg.data.path).exists():
        raise FileNotFoundError(f"the teacher's data {cfg.data.path!r} does not exist; pass "
                                "--data DIR, the clips the teacher was trained on")
    model = distill(cfg, out, resume=args.resume, progress=shows_progress(args),
                    device=args.device, quiet=args.quiet, teacher=teacher,
                    command=getattr(args, "command_line", None))
    print(model if args.quiet else f"student: {model}\nsample: text2sign sample --model {model} "
          f"\"A\"\nwatch:  tensorboard --logdir {out}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    # torch (pipeline), PIL (video_io): imported when the command runs, so --help stays fast
    from text2sign.model_folder.pipeline import Text2SignPipeline
    from text2sign.model_folder.resolve import resolve_model

    if args.num < 1:
        raise ValueError(f"--num {args.num}: must be at least 1")
    model = resolve_model(args.model, sampler=args.sampler, steps=args.steps,
                          guidance=args.guidance, language=args.language)
    pipe = Text2SignPipeline.from_pretrained(model, device=args.device)
    if not args.quiet:
        print(f"model: {pipe.folder}")
    # a language the model signs and texts its alphabet spells, before any work
    language = pipe.check_languages(args.texts, args.language)[0]
    if not args.quiet and len(pipe.languages) > 1:
        print(f"language: {language} (the model signs {', '.join(pipe.languages)})")
    pipe.check_texts(args.texts)
    for warning in pipe.text_warnings(args.texts):
        print(f"warning: {warning}", file=sys.stderr)
    if args.fps is not None and not args.fps > 0:
        raise ValueError(f"--fps {args.fps}: must be positive")
    fps = args.fps or pipe.gif_fps
    texts = [t for t in args.texts for _ in range(args.num)]
    # a too-long text fails before any work
    pipe.lengths(args.texts, args.frames, args.seconds, [language] * len(args.texts))
    videos = pipe(texts, num_frames=args.frames, seconds=args.seconds, steps=args.steps,
                  sampler=args.sampler, guidance=args.guidance, eta=args.eta, seed=args.seed,
                  batch_size=args.batch_size, progress=shows_progress(args), language=language)
    # ASL where it always was; another language in OUT/CODE/, as a corpus keeps it: the same
    # text in two languages never overwrites the other
    out = Path(args.out) if language == DEFAULT_LANGUAGE else Path(args.out) / language
    labels = []
    stems = safe_names(list(dict.fromkeys(args.texts)))
    for i, (text, video) in enumerate(zip(texts, videos, strict=True)):
        name = f"{stems[text]}-{i % args.num:02d}"
        write_gif(out / f"{name}.gif", video, fps=fps)
        if args.mp4:
            write_mp4(out / f"{name}.mp4", video, fps=fps)
        labels.append(text)
        length = "" if args.quiet else f"  ({len(video)} frames, {len(video) / fps:.1f} s)"
        print(f"{out / f'{name}.gif'}{length}")
    sheet = write_contact_sheet(out / "contact.png", list(videos), labels)
    print(f"contact sheet: {sheet}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from text2sign.apps.info import describe  # torch: imported when the command runs, not by --help

    for line in describe(args.model, modules=args.modules):
        print(line)
    return 0
