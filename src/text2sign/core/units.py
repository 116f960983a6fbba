"""Text units, the one place that says what a text is made of: the corpus spells with them, the
duration model times them, the readers read them and the pipeline checks texts against them.

A text is Unicode-normalised (NFC: a decomposed "a + combining diaeresis" is the one letter "ä")
and case-folded the way its language does it (Turkish: I -> ı, İ -> i; elsewhere `casefold`, but
ß stays one letter). Then it is split into units: characters, where a language's
multi-character letters (Spanish LL, German SCH, Croatian Lj, Italian double letters, Arabic ال)
are one unit each, as each is one sign, and a run of whitespace is one " " unit (the word
boundary); or, for gloss corpora, whitespace-separated words.
"""

from __future__ import annotations

import unicodedata

# The sign languages whose alphabets text2sign renders (`data fingerspelling --list-languages`;
# a test keeps this equal to the recordings less `fsl`, a relabelled copy of ASL). A corpus says
# a clip's language by its folder: OUT/<code>/NAME.gif.
SIGN_LANGUAGES = ("ase", "asq", "bzs", "cse", "csq", "eso", "gsg", "gss", "ise", "jos", "lls",
                  "mfs", "psr", "sgg", "ssp", "svk", "swl", "tsm", "ukl")
UNIT_KINDS = ("chars", "words", "glosses")  # "words" (duration) and "glosses" (readers): one split
DEFAULT_LANGUAGE = "ase"  # ASL: no multi-character letters, casefold

# Letters of several characters that are one sign, by sign language, as the fingerspelling
# lexicon of `spoken-to-signed` records them (NFC, case-folded; a test keeps this table equal to
# the lexicon). German SCH and CH are letters of the Swiss (sgg) and Austrian (asq, SCH only)
# alphabets, not of DGS (gsg); sgg also has a recording "ÖÖ".
MULTI_LETTERS: dict[str, tuple[str, ...]] = {
    "asq": ("sch",),
    "cse": ("ch",),
    "csq": ("dž", "lj", "nj"),
    "ise": ("bb", "cc", "dd", "ff", "gg", "ll", "mm", "nn", "pp", "rr", "ss", "tt", "vv", "zz"),
    "jos": ("ال", "لا", "ئـ"),
    "mfs": ("ll", "rr"),
    "sgg": ("ch", "öö", "sch"),
    "ssp": ("ch", "ll", "rr"),
    "svk": ("ch",),
}
# Languages whose i has a dotted and a dotless form (I/ı, İ/i): Turkish Sign Language.
DOTTED_I = frozenset({"tsm"})
# Greek written in capitals drops the tonos (ΚΑΛΗΜΕΡΑ for καλημέρα) and keeps the dialytika;
# fingerspelling spells the capitals, so ά is the letter α (ϊ stays a letter of its own).
NO_TONOS = frozenset({"gss"})
TONOS = "\u0301"  # the combining acute accent that NFD splits off ά, έ, ή, ί, ό, ύ, ώ


def fold(text: str, language: str = DEFAULT_LANGUAGE) -> str:
    """NFC and case-folded as ``language`` does it: what two spellings of a letter share."""
    text = unicodedata.normalize("NFC", text)
    if language in DOTTED_I:
        # str.lower would turn I into a dotted i and İ into i + a combining dot
        text = text.replace("I", "ı").replace("İ", "i").lower()
    else:
        # casefold but keep ß one letter: casefold spells it "ss", two letters of another sign
        text = "".join(c if c in "ßẞ" else c.casefold() for c in text).replace("ẞ", "ß")
    if language in NO_TONOS:
        text = unicodedata.normalize("NFD", text).replace(TONOS, "")
    return unicodedata.normalize("NFC", text)  # casefold may decompose (İ -> i + dot)


def split(text: str, kind: str = "chars", language: str = DEFAULT_LANGUAGE) -> list[str]:
    """The units of ``text``: folded letters (a multi-character letter one unit, a letter with
    marks NFC cannot compose one unit, a run of spaces between words one " "), or
    (``words``/``glosses``) its whitespace-separated words as written."""
    if kind not in UNIT_KINDS:
        raise ValueError(f"text units {kind!r} is not one of {list(UNIT_KINDS)}")
    if kind != "chars":
        return unicodedata.normalize("NFC", text).split()
    text = " ".join(fold(text, language).split())
    multi = sorted(MULTI_LETTERS.get(language, ()), key=len, reverse=True)  # longest first
    out, i = [], 0
    while i < len(text):
        end = i + len(next((m for m in multi if text.startswith(m, i)), text[i]))
        while end < len(text) and unicodedata.combining(text[end]):
            end += 1  # a mark NFC could not compose stays on its letter (i + dot: İ outside tr)
        out.append(text[i:end])
        i = end
    return out


def join(units: list[str], kind: str = "chars") -> str:
    """The text of units (`split`'s inverse, up to folding)."""
    return "".join(units) if kind == "chars" else " ".join(units)


def missing(text: str, alphabet: set[str] | frozenset[str], language: str = DEFAULT_LANGUAGE
            ) -> list[str]:
    """The letter units of ``text`` not in ``alphabet`` (folded units), each once, in order;
    the space between words is not a letter and never missing."""
    return list(dict.fromkeys(u for u in split(text, "chars", language)
                              if u != " " and u not in alphabet))


def clip_language(relative_path: str) -> str:
    """A clip's sign language from its path in the corpus: the folder right under the corpus
    root when it is a sign-language code (``gsg/haus.gif``), else ASL."""
    parts = relative_path.replace("\\", "/").split("/")
    return parts[0] if len(parts) > 1 and parts[0] in SIGN_LANGUAGES else DEFAULT_LANGUAGE
