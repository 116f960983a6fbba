"""Unseen-word back-translation vs training steps (the checkpoints of runs) and vs clip length.

    python benchmarks/words_study.py --run runs/asl-words [runs/ablation ...] \\
        --data data/asl-words [--at 150 500] [--recognizer DIR]
        [--compare runs/asl-words-48:data/asl-words-48] [--max-texts 40 --steps 25]

For every checkpoint kept in RUN/checkpoints (train with --set train.keep_checkpoints=0 to keep
them all; `--at` picks steps, for runs compared at equal steps), the EMA weights generate one clip
for each of up to `--max-texts` unseen words (never trained on; the same stable pick for every
row) and letters (`--no-letters` skips them), which the sequence recognizer (default: the shipped
one) reads back: CER and exact-word accuracy, next to the recognizer's ceiling on real clips of
the same words. `--compare RUN:DATA` adds the final model of other runs (e.g. the same config at
48 frames, on a corpus rendered at 48 frames). Prints markdown tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def checkpoint_pipeline(run: Path, checkpoint: Path, device):
    """A Text2SignPipeline carrying a checkpoint's EMA weights (the model folder's recipe)."""
    from text2sign.core.config import load_config
    from text2sign.model_folder.autoencoder_io import load_autoencoder
    from text2sign.model_folder.build import build_models
    from text2sign.model_folder.pipeline import Text2SignPipeline
    from text2sign.model_folder.resolve import resolve_model
    from text2sign.training.loop import split_state
    from text2sign.training.run_state import load_training_state

    cfg = load_config(run / "config.yaml")
    state = load_training_state(checkpoint)
    denoiser, conditioner = build_models(cfg)
    denoiser.load_state_dict(split_state(state["ema"], "denoiser."))
    conditioner.load_state_dict(split_state(state["ema"], "conditioner."), strict=False)
    # The model folder carries the autoencoder wherever it came from (trained in the run,
    # latent.autoencoder, or inflated from model.init_from).
    model = resolve_model(run)
    autoencoder = load_autoencoder(model.path, cfg.latent) if cfg.latent.enabled else None
    pipe = Text2SignPipeline(denoiser, conditioner, cfg, device, autoencoder=autoencoder)
    pipe.training_texts = model.training_texts
    return pipe, state["meta"]


def score(pipe, cache, sequence, max_texts: int, steps: int, seed: int = 0,
          letters: bool = True) -> dict:
    """Back-translation of one clip per letter and per picked unseen word."""
    from text2sign.evaluation.evaluate import back_translation, text_groups
    from text2sign.model_folder.folder_io import training_texts

    trained = training_texts(pipe.info, pipe.training_texts, cache.texts)
    groups = text_groups(list(cache.texts), trained, max_texts)
    keep = ("letters", "unseen") if letters else ("unseen",)
    groups = {k: v for k, v in groups.items() if k in keep}
    prompts = [t for v in groups.values() for t in v]
    videos = pipe(prompts, steps=steps, seed=seed)
    readings = [text for text, _ in sequence.read(videos)]
    chosen = set(prompts)
    ceiling = {g: [i for i, t in enumerate(cache.texts) if t in chosen and t in set(v)]
               for g, v in groups.items()}
    return back_translation(readings, prompts, sequence, cache, groups, ceiling)["groups"]


def row(label: str, groups: dict) -> str:
    u, le = groups.get("unseen", {}), groups.get("letters", {})

    def f(x):
        return "n/a" if x is None or x != x else f"{x:.3f}"

    return (f"| {label} | {f(u.get('cer'))} | {f(u.get('exact'))} | {f(u.get('ceiling_cer'))} | "
            f"{f(u.get('ceiling_exact'))} | {f(le.get('cer'))} | {f(le.get('exact'))} |")


HEADER = ("| unseen CER | unseen exact | ceiling CER | ceiling exact | letters CER | "
          "letters exact |")


def main() -> None:
    from text2sign.core.device import pick_device
    from text2sign.data.dataset import open_data
    from text2sign.evaluation.sequence import SequenceRecognizer
    from text2sign.model_folder.pipeline import Text2SignPipeline
    from text2sign.training.run_state import list_checkpoints

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, nargs="+", help="one or more run folders")
    p.add_argument("--data", required=True)
    p.add_argument("--recognizer", help="a sequence recognizer folder (default: the shipped one)")
    p.add_argument("--at", nargs="*", type=int, help="only the checkpoints at these steps")
    p.add_argument("--no-letters", action="store_true", help="unseen words only")
    p.add_argument("--compare", nargs="*", default=[], metavar="RUN:DATA")
    p.add_argument("--max-texts", type=int, default=40)
    p.add_argument("--steps", type=int, default=25, help="sampler steps")
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    device = pick_device(args.device)
    if args.recognizer is None:
        from text2sign.model_folder import shipped

        args.recognizer = str(shipped.fixed_recognizer())  # the 28-frame words models
    sequence = SequenceRecognizer.load(args.recognizer, device)
    lines = ["| run | step | minutes " + HEADER, "|---|---|---" + "|---" * 6 + "|"]
    cache = None
    for run in map(Path, args.run):
        for checkpoint in list_checkpoints(run):
            pipe, meta = checkpoint_pipeline(run, checkpoint, device)
            if args.at and meta["step"] not in args.at:
                continue
            if cache is None:
                cache = open_data(pipe.config.data, progress=False, path=args.data)
            groups = score(pipe, cache, sequence, args.max_texts, args.steps,
                           letters=not args.no_letters)
            lines.append(row(f"{run.name} | {meta['step']} | {meta.get('minutes', 0):.0f}",
                             groups))
            print(lines[-1], flush=True)
    print("\n### Unseen words vs training steps\n")
    print("\n".join(lines))
    if args.compare:
        lines = ["| run | frames " + HEADER, "|---|---" + "|---" * 6 + "|"]
        for item in [f"{args.run[0]}:{args.data}", *args.compare]:
            folder, data = item.split(":", 1)
            pipe = Text2SignPipeline.from_pretrained(folder, device=device)
            groups = score(pipe, open_data(pipe.config.data, progress=False, path=data),
                           sequence, args.max_texts, args.steps)
            lines.append(row(f"{folder} | {pipe.frames}", groups))
        print("\n### Unseen words vs clip length\n")
        print("\n".join(lines))
    print(f"\nOne clip per text, {args.steps} sampler steps, up to {args.max_texts} unseen words "
          f"and the letters; recognizer {args.recognizer}; device {device}.")


if __name__ == "__main__":
    main()
