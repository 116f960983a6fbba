"""How long a text lasts: frames = a constant + the sum of a learned duration per unit.

FastSpeech's length regulator gives each token a duration; here every unit of a text (a
character, the space between words included, or a word/gloss) has one frame count, fitted by
ridge least squares on the real lengths of the training clips. A text of one unit alone (a
letter spelled by itself, one gloss) gets ``alone`` frames more: signers hold a lone sign for
the reader, which a per-unit sum fitted mostly on words would cut short. A unit the corpus never
held gets the mean unit duration. It is a few numbers, stored as JSON in the model folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from text2sign.core.units import DEFAULT_LANGUAGE, split

UNITS = ("chars", "words")
RIDGE = 1e-3  # keeps rare units near the mean instead of fitting one clip's noise


def duration_units(text: str, units: str, language: str = DEFAULT_LANGUAGE) -> list[str]:
    """The units a text is timed by (`text2sign.core.units.split`): its letters (a
    multi-character letter is one sign; spaces too: a word boundary is a hold), or its
    whitespace-separated words."""
    if units not in UNITS:
        raise ValueError(f"duration units {units!r} is not one of {list(UNITS)}")
    return split(text, units, language)


@dataclass
class DurationModel:
    """frames(text) = ``base`` + sum of ``per_unit`` over the text's units (+ ``alone`` for a
    text of one unit), at ``fps``; in a model fitted on several sign languages, each language
    but the ``reference`` adds its own [per-text, per-unit] frames (``languages``): signers of
    different languages spell at different paces."""

    units: str
    fps: float
    max_frames: int
    base: float
    per_unit: dict[str, float] = field(default_factory=dict)
    alone: float = 0.0
    # language -> [frames per text, frames per unit] beyond the reference language's; None: a
    # model fitted without languages (one language, or an older folder), timing any language
    languages: dict[str, list[float]] | None = None
    reference: str = DEFAULT_LANGUAGE

    @property
    def unknown(self) -> float:
        """The duration of a unit never seen in training: the mean of the known ones."""
        return float(np.mean(list(self.per_unit.values()))) if self.per_unit else 1.0

    @classmethod
    def fit(cls, texts: list[str], lengths: list[int], *, units: str, fps: float,
            max_frames: int, languages: list[str] | None = None) -> DurationModel:
        """Least squares over the clips (texts[i], in sign language languages[i], lasts
        lengths[i] frames)."""
        if len(texts) != len(lengths) or not texts:
            raise ValueError(f"duration fit needs one length per text, got {len(texts)} texts "
                             f"and {len(lengths)} lengths")
        if languages is not None and len(languages) != len(texts):
            raise ValueError(f"duration fit needs one language per text, got {len(texts)} texts "
                             f"and {len(languages)} languages")
        langs = list(languages) if languages is not None else [DEFAULT_LANGUAGE] * len(texts)
        found = [duration_units(t, units, lang) for t, lang in zip(texts, langs, strict=True)]
        vocab = sorted({u for f in found for u in f})
        codes = sorted(set(langs))
        reference = (DEFAULT_LANGUAGE if DEFAULT_LANGUAGE in codes
                     else max(codes, key=lambda c: (langs.count(c), c)))
        others = [c for c in codes if c != reference]
        column = {u: k + 2 for k, u in enumerate(vocab)}
        first = {c: 2 + len(vocab) + 2 * k for k, c in enumerate(others)}  # its two columns
        width = 2 + len(vocab) + 2 * len(others)
        # (N, width): a constant, "one unit alone", the unit counts, then per other language
        # "this language" and its unit count
        counts = np.zeros((len(texts), width))
        counts[:, 0] = 1.0
        for row, (units_, lang) in enumerate(zip(found, langs, strict=True)):
            counts[row, 1] = float(len(units_) == 1)
            for u in units_:
                counts[row, column[u]] += 1
            if lang in first:
                counts[row, first[lang]] = 1.0
                counts[row, first[lang] + 1] = len(units_)
        y = np.asarray(lengths, np.float64)  # (N,)
        ridge = RIDGE * len(texts) * np.eye(width)
        ridge[0, 0] = 0.0  # the constant is not shrunk
        ridge[1, 1] = RIDGE  # nor the lone-unit hold, beyond keeping it 0 when no text is alone
        weights = np.linalg.solve(counts.T @ counts + ridge, counts.T @ y)  # (width,)
        offsets = None if languages is None else {
            c: ([0.0, 0.0] if c == reference
                else [float(weights[first[c]]), float(weights[first[c] + 1])]) for c in codes}
        return cls(units=units, fps=float(fps), max_frames=int(max_frames),
                   base=float(weights[0]), alone=float(weights[1]),
                   per_unit={u: float(weights[column[u]]) for u in vocab},
                   languages=offsets, reference=reference)

    def frames(self, text: str, language: str = DEFAULT_LANGUAGE) -> int:
        """The predicted frame count of ``text`` in sign language ``language``, at least 1 (it
        may exceed ``max_frames``: the caller decides what to do then)."""
        per_text, per_unit = 0.0, 0.0
        if self.languages is not None:
            if language not in self.languages:
                raise ValueError(f"the duration model was fitted on the sign languages "
                                 f"{', '.join(sorted(self.languages))}, not {language!r}; "
                                 "choose one of them")
            per_text, per_unit = self.languages[language]
        found = duration_units(text, self.units, language)
        total = self.base + per_text + sum(self.per_unit.get(u, self.unknown) + per_unit
                                           for u in found)
        total += self.alone if len(found) == 1 else 0.0
        return max(1, round(total))

    def seconds(self, text: str, language: str = DEFAULT_LANGUAGE) -> float:
        return self.frames(text, language) / self.fps

    def to_json(self) -> str:
        raw = {"units": self.units, "fps": self.fps, "max_frames": self.max_frames,
               "base": self.base, "alone": self.alone, "per_unit": self.per_unit}
        if self.languages is not None:
            raw.update(reference=self.reference, languages=self.languages)
        return json.dumps(raw, indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, where: str = "duration.json") -> DurationModel:
        try:
            raw = json.loads(text)
            languages = raw.get("languages")  # older folders: fitted without languages
            model = cls(units=str(raw["units"]), fps=float(raw["fps"]),
                        max_frames=int(raw["max_frames"]), base=float(raw["base"]),
                        alone=float(raw.get("alone", 0.0)),  # older folders: no lone-unit hold
                        per_unit={str(k): float(v) for k, v in raw["per_unit"].items()},
                        languages=None if languages is None else {
                            str(k): [float(v[0]), float(v[1])] for k, v in languages.items()},
                        reference=str(raw.get("reference", DEFAULT_LANGUAGE)))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
            raise ValueError(f"{where} is not a duration model ({err}); the model folder is "
                             "damaged: copy it again or retrain it") from None
        duration_units("", model.units)  # refuses unknown units
        return model
