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

UNITS = ("chars", "words")
RIDGE = 1e-3  # keeps rare units near the mean instead of fitting one clip's noise


def duration_units(text: str, units: str) -> list[str]:
    """The units a text is timed by: its characters (spaces too: a word boundary is a hold),
    or its whitespace-separated words."""
    if units not in UNITS:
        raise ValueError(f"duration units {units!r} is not one of {list(UNITS)}")
    return list(text) if units == "chars" else text.split()


@dataclass
class DurationModel:
    """frames(text) = ``base`` + sum of ``per_unit`` over the text's units (+ ``alone`` for a
    text of one unit), at ``fps``."""

    units: str
    fps: float
    max_frames: int
    base: float
    per_unit: dict[str, float] = field(default_factory=dict)
    alone: float = 0.0

    @property
    def unknown(self) -> float:
        """The duration of a unit never seen in training: the mean of the known ones."""
        return float(np.mean(list(self.per_unit.values()))) if self.per_unit else 1.0

    @classmethod
    def fit(cls, texts: list[str], lengths: list[int], *, units: str, fps: float,
            max_frames: int) -> DurationModel:
        """Least squares over the clips (texts[i] lasts lengths[i] frames)."""
        if len(texts) != len(lengths) or not texts:
            raise ValueError(f"duration fit needs one length per text, got {len(texts)} texts "
                             f"and {len(lengths)} lengths")
        vocab = sorted({u for t in texts for u in duration_units(t, units)})
        column = {u: k + 2 for k, u in enumerate(vocab)}
        # (N, 2 + V): a constant, "one unit alone", then the unit counts
        counts = np.zeros((len(texts), len(vocab) + 2))
        counts[:, 0] = 1.0
        for row, text in enumerate(texts):
            found = duration_units(text, units)
            counts[row, 1] = float(len(found) == 1)
            for u in found:
                counts[row, column[u]] += 1
        y = np.asarray(lengths, np.float64)  # (N,)
        ridge = RIDGE * len(texts) * np.eye(len(vocab) + 2)
        ridge[0, 0] = 0.0  # the constant is not shrunk
        ridge[1, 1] = RIDGE  # nor the lone-unit hold, beyond keeping it 0 when no text is alone
        weights = np.linalg.solve(counts.T @ counts + ridge, counts.T @ y)  # (2 + V,)
        return cls(units=units, fps=float(fps), max_frames=int(max_frames),
                   base=float(weights[0]), alone=float(weights[1]),
                   per_unit={u: float(weights[column[u]]) for u in vocab})

    def frames(self, text: str) -> int:
        """The predicted frame count of ``text``, at least 1 (it may exceed ``max_frames``:
        the caller decides what to do then)."""
        found = duration_units(text, self.units)
        total = self.base + sum(self.per_unit.get(u, self.unknown) for u in found)
        total += self.alone if len(found) == 1 else 0.0
        return max(1, round(total))

    def seconds(self, text: str) -> float:
        return self.frames(text) / self.fps

    def to_json(self) -> str:
        return json.dumps({"units": self.units, "fps": self.fps, "max_frames": self.max_frames,
                           "base": self.base, "alone": self.alone, "per_unit": self.per_unit},
                          indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, where: str = "duration.json") -> DurationModel:
        try:
            raw = json.loads(text)
            model = cls(units=str(raw["units"]), fps=float(raw["fps"]),
                        max_frames=int(raw["max_frames"]), base=float(raw["base"]),
                        alone=float(raw.get("alone", 0.0)),  # older folders: no lone-unit hold
                        per_unit={str(k): float(v) for k, v in raw["per_unit"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{where} is not a duration model ({err}); the model folder is "
                             "damaged: copy it again or retrain it") from None
        duration_units("", model.units)  # refuses unknown units
        return model
