"""A model folder's config.json as one typed record: the only place its keys are read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text2sign.core.config import Config, from_dict
from text2sign.core.files import DamagedFile, read_json
from text2sign.core.units import DEFAULT_LANGUAGE

MODEL_FORMAT = "text2sign-model"
MODEL_VERSION = 1
RETRAIN = "copy the model folder again or retrain it (text2sign train writes one into " \
           "runs/NAME/model)"


@dataclass(frozen=True)
class ModelInfo:
    """What config.json says: the config, how training went, what the folder references.

    Every fact but ``config`` is optional: folders written by older versions lack some. Nested
    facts stay plain JSON data (their keys named in the comments); keys this version does not
    know are kept in ``extra`` and written back unchanged.
    """

    config: Config
    step: int | None = None
    minutes: float | None = None
    parameters: dict[str, int] = field(default_factory=dict)  # {"denoiser": count}
    # path, clips, val_clips, texts, examples (up to 50), held_out_texts, held_out_clips,
    # fingerprint, fingerspelling
    data: dict[str, Any] = field(default_factory=dict)
    autoencoder: dict[str, Any] | None = None  # steps, l1, kl, seconds; or from, inflated_from
    command: str | None = None
    device: str | None = None
    pretrained: dict[str, dict[str, Any]] = field(default_factory=dict)  # part -> reference
    init_from: dict[str, Any] | None = None  # the folder's reference and its weights' sha256
    license: str | None = None
    evaluation: dict[str, Any] | None = None  # checkpoint.EVALUATION_KEYS + command
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256, checked on load
    extra: dict[str, Any] = field(default_factory=dict)  # keys a newer text2sign wrote

    @property
    def languages(self) -> tuple[str, ...]:
        """The sign languages the model signs (ISO 639-3 codes): its condition's
        ``text.languages``, else config.json's "languages", else ASL, the one language of every
        model that names none. Read from config.json alone: no weights are loaded."""
        if self.config.text.languages:
            return tuple(self.config.text.languages)
        named = self.extra.get("languages")
        if named is None:
            return (DEFAULT_LANGUAGE,)
        if not isinstance(named, list) or not named or not all(isinstance(c, str) for c in named):
            raise ValueError(f"config.json's languages {named!r} is not a list of language codes "
                             f"(e.g. [\"ase\"]); {RETRAIN}")
        return tuple(named)

    @classmethod
    def from_json(cls, raw: Any, where: str) -> ModelInfo:
        """Read config.json's data, refusing another format, a newer version or a config
        without its sections; ``where`` names the file in errors."""
        if not isinstance(raw, dict) or raw.get("format") != MODEL_FORMAT:
            got = raw.get("format") if isinstance(raw, dict) else raw
            raise ValueError(f"{where!r} has format {got!r}, expected {MODEL_FORMAT!r}")
        if not isinstance(raw.get("version"), int) or raw["version"] > MODEL_VERSION:
            raise ValueError(
                f"model folder version {raw.get('version')!r} in {where!r} is not one this "
                f"text2sign reads ({MODEL_VERSION} or older); upgrade text2sign"
            )
        config = raw.get("config")
        sections = [k for k in Config().to_dict() if k != "distill"]  # older folders lack it
        missing = [k for k in sections if not isinstance(config, dict) or k not in config]
        if missing:
            raise DamagedFile(f"{where!r} has no {missing} section(s) in its config; {RETRAIN}")
        try:
            cfg = from_dict(config)
        except ValueError as err:
            raise ValueError(f"{where!r}: {err}") from err
        known = {f.name for f in dataclasses.fields(cls)} - {"config", "extra"}
        facts = {k: v for k, v in raw.items() if k in known and v is not None}
        extra = {k: v for k, v in raw.items()
                 if k not in known and k not in ("format", "version", "config")}
        return cls(config=cfg, **facts, extra=extra)

    def to_json(self) -> dict[str, Any]:
        """config.json's data: format and version first, facts that are unset left out."""
        out: dict[str, Any] = {"format": MODEL_FORMAT, "version": MODEL_VERSION,
                               "config": self.config.to_dict()}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in ("config", "extra") and value not in (None, {}):
                out[f.name] = value
        return {**out, **self.extra}


def read_info(folder: Path) -> ModelInfo:
    """config.json of a found model folder, as one typed record."""
    path = Path(folder) / "config.json"
    return ModelInfo.from_json(read_json(path, RETRAIN), str(path))
