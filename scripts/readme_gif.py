"""The animated GIF at the top of the README: real clips beside generated ones.

    python scripts/readme_gif.py --model src/text2sign/assets/demo-model \
        --data data/asl-letters --texts A L W Y --per-text 2 \
        --out docs/demo.gif

One row per text: the corpus's first clip of it, framed in green, then ``--per-text`` clips
the model generated from the text alone (its own sampler settings, seeds from ``--seed``).
Any model folder and any corpus folder (or cache) of the model's clip shape work; the corpus
above is ``text2sign data fingerspelling data/asl-letters --variants 8``. Keep it small for the
README (a few hundred KB): four texts of 64 px clips make about 300 KB. A model of several sign
languages takes ``CODE:TEXT`` (``gsg:knödel ukl:борщ``), each row in its own language, labelled
with its code; a text without a code is ASL.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from text2sign.data.dataset import open_data
    from text2sign.evaluation.evaluate import write_comparison
    from text2sign.model_folder.pipeline import Text2SignPipeline

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model folder (default: the shipped one)")
    p.add_argument("--data", required=True, help="corpus folder or cache with real clips")
    p.add_argument("--texts", nargs="+", required=True, help="one row per text")
    p.add_argument("--per-text", type=int, default=3, help="generated clips per text")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="docs/demo.gif")
    args = p.parse_args()

    pipe = Text2SignPipeline.from_pretrained(args.model, device=args.device)
    cache = open_data(pipe.config.data, progress=False, path=args.data)
    rows = [tuple(t.split(":", 1)) if ":" in t else ("ase", t) for t in args.texts]
    first = {}
    for i, key in enumerate(zip(cache.languages, cache.texts, strict=True)):
        first.setdefault(key, i)
    missing = [f"{code}:{text}" for code, text in rows if (code, text) not in first]
    if missing:
        raise SystemExit(f"no real clip of {missing} in {args.data}")
    generated = []
    for code, text in rows:  # (T_i, H, W, 3) each: a text's own length
        videos = pipe([text] * args.per_text, seed=args.seed, language=code)
        generated.append(list(videos))
    real = [np.asarray(cache[first[key]]) for key in rows]
    labels = [f"{code} {text}" if ":" in raw else text
              for (code, text), raw in zip(rows, args.texts, strict=True)]
    path = write_comparison(args.out, labels, real, generated, pipe.gif_fps)
    print(f"{path}: {Path(path).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
