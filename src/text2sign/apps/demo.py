"""`text2sign demo`: ASL letters and words, seen and unseen, generated and read back into text;
for a model of several sign languages, unseen words of two more of them (one two-handed)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from text2sign.core.config import VAL_FRACTION
from text2sign.core.units import DEFAULT_LANGUAGE
from text2sign.data.cache import split_fraction
from text2sign.data.dataset import open_data
from text2sign.data.fingerspelling import (
    build_fingerspelling_corpus,
    builtin_words,
    clip_paths,
    own_list,
)
from text2sign.data.folder import default_workers
from text2sign.evaluation.evaluate import evaluate, print_report
from text2sign.evaluation.readers import find_reader_folders, pick_readers
from text2sign.model_folder import shipped
from text2sign.model_folder.build import build_config
from text2sign.model_folder.folder_io import TrainingTexts, training_texts
from text2sign.model_folder.pipeline import Text2SignPipeline
from text2sign.model_folder.resolve import ModelFolder, resolve_model
from text2sign.training.loop import train as train_model

DEMO_VARIANTS = 8  # clips per text: held-out real clips for the ceilings (v00, v01 are the
# words corpus's own clips, v02-v07 new renders no model or recognizer trained on)
CORPUS_VARIANTS = 2  # clips per text of the words corpus `demo --train` trains on
DEMO_WORDS = 12  # seen and unseen words the demo generates (the most frequent of each)
# A model timed by its text also gets unseen long words (9-14 letters) and unseen phrases; the
# clips are longer (40-70 frames against ~20 for a short word), so fewer of each.
DEMO_LONG = 4
# A model of several sign languages: ASL as above and unseen words of more languages, one of
# them two-handed where the model signs one. Few words each: the demo stays under 2 minutes.
DEMO_LANGUAGES = 3
DEMO_LANGUAGE_WORDS = 4
TWO_HANDED = ("cse", "csq", "tsm")  # alphabets with both hands in most letters
# The other languages shown, in this order, among those the model signs.
SHOWN_LANGUAGES = ("gsg", "ukl", "ssp", "ise", "asq", "sgg", "bzs", "mfs", "psr", "svk", "swl",
                   "lls", "jos", "gss", "eso")


def _shipped_config():
    """The shipped model's run config, the starting point of `demo --train`, or None."""
    folder = shipped.model()
    if (folder / "config.json").is_file():
        return resolve_model(folder).config
    return None


def ensure_corpus(folder: Path, frames: int | None, size: int, words: list[str] | None = None,
                  variants: int = DEMO_VARIANTS, progress: bool = True,
                  quiet: bool = False, fps: float | None = None,
                  more: dict[str, list[str]] | None = None) -> Path:
    """ASL letters (and words) as GIF + txt pairs, and the words of ``more`` languages
    (OUT/<code>/, no letters), ``frames`` frames each or at ``fps`` frames a second of the
    recording; a build interrupted earlier resumes."""
    more = more or {}
    if not quiet and (not (folder / "fingerspelling.json").is_file()
                      or not any(folder.rglob("*.txt"))):
        what = f"26 letters and {len(words)} words" if words else "26 letters"
        extra = "".join(f", {len(w)} {code} words" for code, w in more.items())
        print(f"building the {'corpus' if more else 'ASL corpus'} in {folder} ({what}{extra}, "
              f"{variants} clips each)")
    clips = (26 + len(words or []) + sum(map(len, more.values()))) * variants
    languages = (DEFAULT_LANGUAGE, *more)
    build_fingerspelling_corpus(folder, languages=languages,
                                words={DEFAULT_LANGUAGE: words or [], **more} if more
                                else words or None,
                                letters=[DEFAULT_LANGUAGE] if more else True,
                                frames=None if fps else frames, size=size, variants=variants,
                                progress=progress, fps=fps, workers=default_workers(clips))
    return folder


def demo_languages(signed: list[str], count: int = DEMO_LANGUAGES) -> list[str]:
    """The languages the demo shows: ASL, a two-handed one where the model signs one, then
    others in `SHOWN_LANGUAGES` order (any it signs), ``count`` in all; ASL alone for a model
    of ASL."""
    if DEFAULT_LANGUAGE not in signed:
        raise ValueError(f"the demo shows ASL (ase) first, but the model signs "
                         f"{', '.join(signed)}; score it with `text2sign evaluate --data CORPUS`")
    rest = [c for c in signed if c != DEFAULT_LANGUAGE]
    ordered = ([c for c in TWO_HANDED if c in rest][:1]
               + [c for c in SHOWN_LANGUAGES if c in rest]
               + sorted(c for c in rest if c not in TWO_HANDED and c not in SHOWN_LANGUAGES))
    return [DEFAULT_LANGUAGE, *list(dict.fromkeys(ordered))[:count - 1]]


def language_words(trained: TrainingTexts, code: str, count: int = DEMO_LANGUAGE_WORDS
                   ) -> list[str]:
    """The first ``count`` words of ``code``'s built-in list (or its names) the model never
    trained on."""
    name = own_list("words", code) or own_list("names", code)
    if name is None:
        return []
    return unseen_texts(trained, [w for w in builtin_words(name) if " " not in w], count)


def unseen_texts(trained: TrainingTexts, texts: list[str], count: int) -> list[str]:
    """The first ``count`` of ``texts`` the model never trained on."""
    return [t for t in texts if not trained.seen(t)][:count]


def demo_words(trained: TrainingTexts, words: list[str], count: int = DEMO_WORDS,
               val_fraction: float = VAL_FRACTION) -> tuple[list[str], list[str]]:
    """The first ``count`` words of ``words`` the model trained on (only those with a held-out
    clip, so the ceiling has real clips the recognizer never saw), and the first ``count`` it
    never trained on."""
    seen, unseen = [], []
    for word in words:
        if len(word) < 2:
            continue
        if not trained.seen(word):
            if len(unseen) < count:
                unseen.append(word)
            continue
        if len(seen) < count and any(split_fraction(path) < val_fraction
                                     for path in clip_paths(word, DEMO_VARIANTS)):
            seen.append(word)
    return seen, unseen


def run_demo(out: str | Path = "runs/demo", train: bool = False, minutes: float = 30.0,
             per_text: int = 1, device: str | None = None, *,
             model: str | Path | ModelFolder | None = None,
             config: Any = None, words: list[str] | None = None,
             recognizers: list[str | Path] | None = None, progress: bool = True,
             quiet: bool = False) -> dict[str, Any]:
    """Letters and words -> shipped (or freshly trained) model -> generated clips -> reports.

    With ``train``, the model is trained for ``minutes`` on the full corpus (letters and
    ``words``, default the built-in list) with ``config`` (default: the shipped model's).
    The demo then generates every letter and `DEMO_WORDS` seen and unseen words, scores them
    with the classifier (top-1, FD) and reads them back with two readers of different
    architectures (``recognizers``, default: the ones shipped with text2sign for a model timed
    by its text, the 28-frame reader for a 28-frame model; else a pair trained on the training
    corpus), which are left in ``out/readers/NAME``. ``quiet`` prints the results only.
    """
    if per_text < 1:
        raise ValueError(f"per_text={per_text}: must be at least 1 clip per text")
    out = Path(out)
    default_words = words is None
    words = list(words) if words is not None else builtin_words("en")
    started = time.perf_counter()
    training_cache = None
    if train:
        if minutes <= 0:
            raise ValueError(f"minutes={minutes}: the training budget must be positive")
        cfg = config or _shipped_config() or build_config("small")
        rate = cfg.data.fps if cfg.data.time_mode == "fps" else None
        if rate is not None and default_words:  # timed by its text: long words and phrases too
            words += builtin_words("en-long") + builtin_words("en-phrases")
        corpus = ensure_corpus(out / "data" / "asl-words", cfg.data.frames, cfg.data.size,
                               words, variants=CORPUS_VARIANTS, progress=progress, quiet=quiet,
                               fps=rate)
        cfg = replace(cfg, data=replace(cfg.data, path=str(corpus)),
                      train=replace(cfg.train, max_minutes=minutes))
        if not quiet:
            print(f"training {cfg.model.arch} for up to {minutes:g} minutes in {out}")
        run = out / time.strftime("train-%Y%m%d-%H%M%S")  # a new run each time, never over one
        folder = train_model(cfg, run, progress=progress, device=device)
        training_cache = open_data(cfg.data, progress=progress, path=corpus)
    else:
        folder = model if isinstance(model, ModelFolder) else resolve_model(model)
    pipe = Text2SignPipeline.from_pretrained(folder, device=device)
    dc = pipe.config.data
    short = [w for w in words if " " not in w and len(w) < 9]
    trained = training_texts(pipe.info, pipe.training_texts)
    seen, unseen = demo_words(trained, short, val_fraction=dc.val_fraction)
    texts = seen + unseen
    if pipe.fps is not None:  # timed by its text: unseen long words and phrases too
        texts += unseen_texts(trained, builtin_words("en-long"), DEMO_LONG)
        texts += unseen_texts(trained, builtin_words("en-phrases"), DEMO_LONG)
    more = {code: language_words(trained, code) for code in demo_languages(pipe.languages)[1:]}
    more = {code: words for code, words in more.items() if words}
    timing = f"r{pipe.fps:g}" if pipe.fps is not None else f"f{pipe.frames}"
    name = "-".join(["asl-demo", *more])  # asl-demo, or asl-demo-cse-gsg for more languages
    corpus = ensure_corpus(out / "data" / f"{name}-{timing}-s{pipe.size}", pipe.frames,
                           pipe.size, texts, progress=progress, quiet=quiet, fps=pipe.fps,
                           more=more)
    cache = open_data(dc, progress=progress, path=corpus)

    # Shipped, trained on the ASL corpus: at the data rate, or at 28 frames for such models.
    # The model's own readers (the shipped ones for the shipped model), else the shipped readers
    # of the demo corpus at its rate, or the 28-frame one for a 28-frame model.
    if recognizers is None and not train and not find_reader_folders(pipe.folder, None):
        own = ["shipped"] if pipe.fps is not None else [shipped.fixed_recognizer()]
        recognizers = own if pipe.fps is None or shipped.recognizer().is_dir() else None
    readers = pick_readers(recognizers, training_cache or cache,
                           model_folder=None if train else pipe.folder,
                           val_fraction=dc.val_fraction, holdout=dc.holdout_texts,
                           device=pipe.device, progress=progress)
    for name, reader in readers.items():
        reader.save(out / "readers" / name)
    # The decoded ceiling would round-trip every ceiling clip (~25 s of ~100 on 2 CPU cores):
    # left to `text2sign evaluate` and `reader score --decoded-by`.
    report = evaluate(pipe, cache, out / "eval", per_text=per_text, progress=progress,
                      readers=readers, name=str(pipe.folder), decoded_ceiling=False)
    report["readers"] = {name: str(out / "readers" / name) for name in readers}
    report["demo_seconds"] = time.perf_counter() - started
    print_report(report)
    for name in readers:
        print(f"reader {name}: {out / 'readers' / name}")
    print(f"demo took {report['demo_seconds']:.0f} s")
    return report

