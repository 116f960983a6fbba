"""Refit a model folder's duration model on its corpus, as its training run fits it.

    python scripts/refit_duration.py src/text2sign/assets/demo-model --data data/asl-phrases

A model trained at a frame rate keeps ``duration.json`` (how many frames a text lasts) beside
its weights. When the duration model itself improves (e.g. a lone letter's hold), this fits it
again on the same training clips (the run's split: held-out texts stay unseen) without
retraining the denoiser, prints the old and new lengths of a few texts, and rewrites the file.
"""

from __future__ import annotations

import argparse

from text2sign.data.dataset import open_data
from text2sign.model_folder.folder_io import DURATION_FILE
from text2sign.model_folder.resolve import resolve_model
from text2sign.training.loop import fit_duration

SHOWN = ("A", "go", "hello", "thank you", "christopher")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="model folder")
    p.add_argument("--data", help="clip folder (default: the model's data.path)")
    args = p.parse_args(argv)
    model = resolve_model(args.model)
    folder, cfg, old = model.path, model.config, model.duration
    if old is None:
        raise ValueError(f"{str(folder)!r} has no {DURATION_FILE}: it was trained at a frame "
                         "count, not a frame rate; there is nothing to refit")
    cache = open_data(cfg.data, progress=True, path=args.data)
    train_idx = cache.split_by_text(cfg.data.val_fraction, cfg.data.holdout_texts)[0]
    new = fit_duration(cache, train_idx, cfg)
    print(f"{len(train_idx)} training clips; lone-unit hold {new.alone:+.2f} frames")
    for text in SHOWN:
        timed = text.lower() if cfg.text.lowercase else text  # as the pipeline times it
        print(f"{text!r}: {old.frames(timed)} -> {new.frames(timed)} frames")
    (folder / DURATION_FILE).write_text(new.to_json(), encoding="utf-8")
    print(f"wrote {folder / DURATION_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
