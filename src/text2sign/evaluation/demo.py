"""`text2sign demo`: the ASL letters end to end, from the corpus to a scored contact sheet."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

DEMO_VARIANTS = 8  # clips per letter: enough held-out clips for the recognizer's ceiling


def shipped_model() -> Path:
    """The demo model inside the installed package."""
    import text2sign

    return Path(text2sign.__file__).parent / "assets" / "demo-model"


def _shipped_config():
    """The shipped model's run config, the starting point of `demo --train`, or None."""
    from text2sign.config import from_dict, load_config

    folder = shipped_model()
    if (folder / "config.yaml").is_file():
        return load_config(folder / "config.yaml")
    if (folder / "config.json").is_file():
        from text2sign.checkpoint import read_model_info

        return from_dict(read_model_info(folder)["config"])
    return None


def ensure_corpus(folder: Path, frames: int, size: int, progress: bool = True) -> Path:
    """Build the ASL letter corpus (GIF + txt per clip) unless the folder already holds one."""
    from text2sign.data.fingerspelling import build_fingerspelling_corpus

    if folder.is_dir() and any(folder.rglob("*.gif")):
        return folder
    print(f"building the ASL letter corpus in {folder} ({DEMO_VARIANTS} clips per letter)")
    build_fingerspelling_corpus(folder, languages=("ase",), frames=frames, size=size,
                                variants=DEMO_VARIANTS, progress=progress)
    return folder


def run_demo(out: str | Path = "runs/demo", train: bool = False, minutes: float = 30.0,
             per_text: int = 2, device: str | None = None, *, model: str | Path | None = None,
             config: Any = None, progress: bool = True) -> dict[str, Any]:
    """Corpus if missing -> shipped (or freshly trained) model -> every letter -> report.

    `model` replaces the shipped model folder and `config` the training config of
    `train=True` (default: the shipped model's config, else the "small" preset); the
    training budget is `minutes` of wall clock either way.
    """
    from text2sign.config import apply_overrides, build_config, resolve
    from text2sign.data.dataset import open_clips
    from text2sign.evaluation.evaluate import evaluate, print_report
    from text2sign.pipeline import Text2SignPipeline

    if per_text < 1:
        raise ValueError(f"per_text={per_text}: must be at least 1 clip per letter")
    out = Path(out)
    corpus = out / "data" / "asl-letters"
    started = time.perf_counter()
    if train:
        if minutes <= 0:
            raise ValueError(f"minutes={minutes}: the training budget must be positive")
        from text2sign.training import train as train_model

        cfg = config or _shipped_config() or build_config("small")
        ensure_corpus(corpus, cfg.data.frames, cfg.data.size, progress)
        cfg = resolve(apply_overrides(cfg, [f"data.path={corpus}",
                                            f"train.max_minutes={minutes}"]))
        print(f"training {cfg.model.arch} ({cfg.model.preset}) for up to {minutes:g} minutes "
              f"in {out}")
        run = out / time.strftime("train-%Y%m%d-%H%M%S")  # a new run each time, never over one
        folder = train_model(cfg, run, progress=progress, device=device)
    else:
        folder = Path(model) if model is not None else shipped_model()
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"no demo model at {str(folder)!r} (this text2sign was installed without it); "
                "train one with `text2sign demo --train --minutes 30`, or evaluate your own "
                "with `text2sign evaluate --model FOLDER --data DIR`"
            )
    pipe = Text2SignPipeline.from_pretrained(folder, device=device)
    ensure_corpus(corpus, pipe.frames, pipe.size, progress)
    dc = pipe.config.data
    cache = open_clips(corpus, pipe.frames, pipe.size, dc.time_mode, dc.fit, progress=progress)
    report = evaluate(pipe, cache, out / "eval", per_text=per_text, progress=progress,
                      name=str(folder))
    report["demo_seconds"] = time.perf_counter() - started
    print_report(report)
    print(f"demo took {report['demo_seconds']:.0f} s")
    return report
