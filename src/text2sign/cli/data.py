"""`text2sign data check`, `data prepare` (exit 0 all good, 1 some bad, 2 usage error) and
`data fingerspelling`."""

from __future__ import annotations

import argparse
from pathlib import Path

from text2sign.core.config import VAL_FRACTION
from text2sign.core.console import add_quiet, shows_progress
from text2sign.data.cache import ClipCache, is_cache, prepare_cache
from text2sign.data.folder import scan_folder
from text2sign.model_folder import shipped


def register(subparsers) -> None:
    """Add `data check`, `data prepare` and `data fingerspelling` (heavy imports stay inside
    the handlers)."""
    check = subparsers.add_parser(
        "check", help="list every unusable clip pair with a reason",
        description="Decode every NAME.gif/.mp4/.webm + NAME.txt pair under DIR (recursively) "
        "and list each unusable one with a one-line reason, then read back every clip of DIR's "
        "caches (or of DIR, if it is a cache) against its checksum. Exit 0 if all are good, 1 "
        "if any is bad.",
    )
    check.add_argument("dir", help="folder of NAME.gif + NAME.txt pairs, or a prepared cache")
    check.add_argument("--workers", type=int, default=None,
                       help="decoding processes (default: up to 8 cores for >= 64 clips)")
    add_quiet(check)
    check.set_defaults(func=check_command)

    prepare = subparsers.add_parser(
        "prepare", help="decode clips once into a fast uint8 cache",
        description="Decode, resample and resize every good pair under DIR into a uint8 cache "
        "(reused for unchanged sources). Exit 0 if all pairs are good, 1 if any was skipped.",
    )
    prepare.add_argument("dir", help="folder of NAME.gif + NAME.txt pairs")
    timing = prepare.add_mutually_exclusive_group(required=True)
    timing.add_argument("--frames", type=int, help="frames per clip (T), every clip the same")
    timing.add_argument("--fps", type=float, help="frames per second: each clip keeps its own "
                        "length at this rate (time mode fps), up to --max-frames")
    prepare.add_argument("--max-frames", type=int, default=96,
                         help="with --fps: the most frames a clip gets; longer clips are "
                         "squeezed to it (default 96)")
    prepare.add_argument("--size", type=int, required=True, help="square frame size (S)")
    prepare.add_argument("--out", default=None,
                         help="cache folder (default: DIR/.text2sign-cache/f{T}-s{S}-MODE-FIT, "
                         "or r{FPS}-m{MAX}-s{S}-fps-FIT)")
    prepare.add_argument("--time-mode", choices=("resample", "truncate"), default="resample",
                         help="with --frames: resample uniformly over the clip, or "
                         "truncate/pad by repeat")
    prepare.add_argument("--fit", choices=("crop", "letterbox"), default="crop",
                         help="resize and center-crop, or fit inside black bars")
    prepare.add_argument("--workers", type=int, default=None,
                         help="decoding processes (default: up to 8 cores for >= 64 new clips)")
    add_quiet(prepare)
    prepare.set_defaults(func=prepare_command)
    register_fingerspelling(subparsers)


def check_command(args: argparse.Namespace) -> int:
    """Every pair of a clip folder, then every clip of its caches (or of a cache given)."""
    root = Path(args.dir)
    bad_count = 0
    if not is_cache(root):
        result = scan_folder(root, decode=True, progress=shows_progress(args), workers=args.workers)
        for bad in result.bad:
            print(f"{result.relative(bad.path)}: {bad.reason}")
        print(f"{len(result.good)} good pairs, {len(result.bad)} unusable in {args.dir}")
        bad_count = len(result.bad)
    caches = [root] if is_cache(root) else sorted(
        p.parent for p in root.glob(".text2sign-cache/*/index.json"))
    for folder in caches:
        cache = ClipCache.open(folder)
        damaged = cache.damaged()
        for line in damaged:
            print(line)
        fix = f"; {cache.repair}" if damaged else ""
        print(f"cache {folder}: {len(cache) - len(damaged)} clips intact, {len(damaged)} "
              f"damaged{fix}")
        bad_count += len(damaged)
    return 1 if bad_count else 0


def prepare_command(args: argparse.Namespace) -> int:
    if args.fps is not None:
        frames, time_mode = args.max_frames, "fps"
        if frames < 1:
            raise ValueError(f"--max-frames {frames}: must be positive")
    else:
        frames, time_mode = args.frames, args.time_mode
    if frames < 1 or args.size < 1:
        raise ValueError(f"--frames {frames} and --size {args.size} must be positive")
    cache = prepare_cache(args.dir, frames, args.size, out=args.out, time_mode=time_mode,
                          fit=args.fit, progress=shows_progress(args), workers=args.workers,
                          fps=args.fps)
    val_fraction = VAL_FRACTION
    train, val = cache.split(val_fraction)
    print(f"clips: {len(cache)} ({cache.index['decoded']} decoded now, "
          f"{len(cache) - cache.index['decoded']} reused)")
    print(f"bad pairs skipped: {len(cache.bad)}")
    if cache.variable:
        lengths = sorted(cache.lengths)
        print(f"lengths at {cache.data_fps:g} fps: {lengths[0]}-{lengths[-1]} frames, median "
              f"{lengths[len(lengths) // 2]} ({len(cache.squeezed)} squeezed to "
              f"{cache.max_frames}); train with --set data.time_mode=fps --set "
              f"data.fps={cache.data_fps:g} --set data.max_frames={cache.max_frames}")
    print(f"cache: {cache.path}")
    print(f"split at the default data.val_fraction={val_fraction:g}: {len(train)} train, "
          f"{len(val)} val (training sets it: --set data.val_fraction=F)")
    return 1 if cache.bad else 0


def register_fingerspelling(subparsers) -> None:
    """Add `text2sign data fingerspelling`."""
    p = subparsers.add_parser(
        "fingerspelling",
        help="build a demo corpus (GIF + txt) from real fingerspelling recordings",
        description="Render the fingerspelling recordings shipped in `spoken-to-signed` into "
        "OUT/<lang>/NAME.gif + NAME.txt pairs: letters by default, or words from a file.",
    )
    p.add_argument("out", nargs="?", help="output folder")
    p.add_argument("--languages", default="ase",
                   help="comma-separated sign language codes (default: ase = ASL)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--letters", action="store_true", help="one clip per letter (default)")
    what.add_argument("--words", metavar="FILE|words,...",
                      help="words or phrases to spell, comma-separated lists: text files (one "
                      "word or phrase per line) or built-in lists: each language's own "
                      "`words` (600 frequent words of 2-8 letters; ASL: the 2,400 of `en`), "
                      "`long` (100 of 9-14 letters; ASL: the 300 of `en-long`) and `names` "
                      "(150), or one list for all: `en`, `en-long`, `en-phrases` (309 phrases "
                      "of 2-3 words), `CODE`, `CODE-long`, `CODE-names`. A text with a letter "
                      "a language's alphabet lacks is skipped and counted")
    p.add_argument("--per-list", type=int, metavar="N",
                   help="with --words: the first N texts of each list that the language's "
                   "alphabet spells (built-in lists are ordered by frequency)")
    p.add_argument("--with-letters", action="store_true",
                   help="with --words: also one clip per letter")
    p.add_argument("--workers", type=int, default=1, help="render in N processes")
    time = p.add_mutually_exclusive_group()
    time.add_argument("--frames", type=int, help="frames per clip, whatever its length "
                      "(default: 16)")
    time.add_argument("--fps", type=float, metavar="R",
                      help="R frames per second of each recording instead: a clip lasts as long "
                      "as the signer took (100/R must be whole centiseconds: 25, 12.5, 10, ...)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--boundary", choices=("move", "hold"), default="move",
                   help="a phrase's word boundary: the hand dips and moves on (default), or the "
                   "last letter held still (reads like a doubled letter)")
    p.add_argument("--variants", type=int, default=1,
                   help="clips per text; variants after the first get scale/shift/speed jitter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sheet", metavar="PNG", help="also write a contact sheet, one row per text")
    p.add_argument("--list-languages", action="store_true",
                   help="list the available languages, their letters (a multi-character "
                   "letter is one sign), what to know about their recordings and (*) which "
                   "ones the shipped model signs, then exit")
    add_quiet(p)
    p.set_defaults(func=fingerspelling_command)


def fingerspelling_command(args: argparse.Namespace) -> int:
    """Build the corpus (or list languages) from parsed arguments."""
    # spoken-to-signed, pose-format, PIL: imported when the command runs, so --help stays fast
    from text2sign.data import fingerspelling as fs

    if args.list_languages:
        signed = shipped.default_languages()  # config.json alone: no model is built
        for lang, letters in fs.list_languages().items():
            note = fs.LANGUAGE_NOTES.get(lang)
            print(f"{'*' if lang in signed else ' '} {lang}  {len(letters):2d}  "
                  f"{' '.join(letters)}" + (f"  ({note})" if note else ""))
        print("* a shipped model signs it (text2sign sample --language CODE TEXT); the "
              "others need a model trained on them" if signed else
              "no shipped model in this install: train one on the languages you build")
        return 0
    if not args.out:
        raise ValueError("data fingerspelling needs an OUT folder, e.g. data/asl-letters")
    languages = fs.check_languages(args.languages.split(","), fs.read_index())
    words = None
    if args.words:
        words = {}
        for lang in languages:
            texts = fs.words_from(args.words, lang, per_list=args.per_list)
            words[lang], skipped = fs.spellable(texts, lang)
            print(fs.skipped_line(lang, len(texts), skipped) if skipped
                  else f"{lang}: {len(texts)} texts")
    elif args.with_letters or args.per_list:
        raise ValueError("--with-letters and --per-list go with --words; letters alone are the "
                         "default")
    gifs = fs.build_fingerspelling_corpus(
        args.out, languages=languages, words=words, frames=args.frames,
        fps=args.fps, size=args.size, variants=args.variants, seed=args.seed,
        progress=shows_progress(args), letters=True if args.with_letters else None,
        workers=args.workers, boundary=args.boundary,
    )
    print(f"wrote {len(gifs)} clips to {args.out}")
    if args.sheet:
        print(f"wrote contact sheet {fs.write_sheet_from_corpus(args.sheet, gifs)}")
    return 0
