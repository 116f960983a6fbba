"""Where the models shipped inside the package live: the demo model, its student, the letters
model, the multilingual model, its student and the recognizers that read them."""

from __future__ import annotations

from pathlib import Path

from text2sign.core.files import ASSETS
from text2sign.model_folder.model_info import read_info

SHIPPED = "shipped:"  # a model named shipped:NAME is one of these, wherever text2sign is installed


def model() -> Path:
    """The demo model (ASL letters, words, long words and phrases at 6.25 frames a second,
    128x128, latent unet3d with text order aligned to time) inside the installed package: the
    full sampler, and the teacher of `student`."""
    return ASSETS / "demo-model"


def student() -> Path:
    """The demo model distilled into a few-step student (guidance folded in): what every command
    samples with when no model is named and the sampler settings asked fit it
    (`resolve.shipped_choice`)."""
    return ASSETS / "demo-student"


def letters_model() -> Path:
    """The letters model (16 frames at 64x64) the words model started from
    (configs/asl-words.yaml: model.init_from: shipped:letters)."""
    return ASSETS / "letters-model"


def multilingual_model() -> Path:
    """The demo model fine-tuned on the fingerspelling alphabets of 19 sign languages (the
    language in its condition), with readers of every alphabet in its folder: what a command
    samples with when no model is named and the language asked is one the default does not
    sign (`resolve.shipped_choice`)."""
    return ASSETS / "multilingual-model"


def multilingual_student() -> Path:
    """The multilingual model distilled into a 4-step student (guidance folded in, the language
    in its condition as in its teacher's), with its teacher's reader in its folder; loaded by
    name (``shipped:multilingual-student``), not a default: it reads back below its teacher
    (docs/alphabets.md)."""
    return ASSETS / "multilingual-student"


MODELS = {"demo": model, "words": model, "student": student, "letters": letters_model,
          "multilingual": multilingual_model, "multilingual-student": multilingual_student}


def is_shipped(folder: str | Path) -> bool:
    """Whether a model folder is the demo model or its student (they share a recognizer)."""
    where = Path(folder).resolve()
    return where in (model().resolve(), student().resolve())


def model_path(name: str | Path) -> Path:
    """A model path as given, or ``shipped:demo`` / ``shipped:words`` / ``shipped:student`` /
    ``shipped:letters`` / ``shipped:multilingual`` / ``shipped:multilingual-student``."""
    text = str(name)
    if not text.startswith(SHIPPED):
        return Path(name)
    key = text[len(SHIPPED):]
    if key not in MODELS:
        raise ValueError(f"{text!r} is not a shipped model; choose one of "
                         f"{[SHIPPED + k for k in MODELS]}, or give a model folder's path")
    return MODELS[key]()


def default_model() -> Path | None:
    """The student, else its teacher, whichever this install has (None: neither)."""
    return next((f for f in (student(), model()) if (f / "config.json").is_file()), None)


def default_languages() -> tuple[str, ...]:
    """The sign languages commands sign in when no model is named (`resolve.shipped_choice`):
    those of the student (else its teacher), then those only the multilingual model signs, from
    the config.json files alone; () when this install has none of them."""
    default = default_model()
    signed = list(read_info(default).languages) if default is not None else []
    if (multilingual_model() / "config.json").is_file():
        signed += read_info(multilingual_model()).languages
    return tuple(dict.fromkeys(signed))


def recognizer() -> Path:
    """The sequence recognizer shipped beside it: trained on the ASL phrases corpus (letters,
    words, long words, phrases) at 6.25 fps, reading each clip at its own length."""
    return ASSETS / "recognizer"


def fixed_recognizer() -> Path:
    """The sequence recognizer of models made at 28 frames: trained on the ASL words corpus,
    reading every clip resampled to 28 frames."""
    return ASSETS / "recognizer-28f"

