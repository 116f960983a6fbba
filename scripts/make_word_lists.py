"""Write the built-in word lists of every fingerspelling alphabet into src/text2sign/assets/.

    pip install -e ".[wordlists]"
    python scripts/make_word_lists.py

For each sign language of the lexicon: `words-CODE.txt` (frequent words of 2-8 letters),
`words-CODE-long.txt` (frequent words of 9-14 letters) from wordfreq 3.1.1 (Robyn Speer,
https://github.com/rspeer/wordfreq; data CC BY-SA 4.0), and `words-CODE-names.txt` (first and
last names of the country) from Faker's person providers (MIT). A letter counts as the alphabet
signs it (text units: Spanish LL, German SCH ... are one letter). A word with a letter the
alphabet lacks (Czech á, Turkish q ...) is skipped and counted, never spelled otherwise; the
counts are printed and written in each file's header. The lists are shipped (a few KB each) so
that `text2sign data fingerspelling --words words,long,names` needs neither package.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from importlib.metadata import version
from pathlib import Path

from text2sign.core import units
from text2sign.core.files import ASSETS
from text2sign.data import fingerspelling as fs

# sign language -> (wordfreq language or None where wordfreq has none, Faker locale of names)
SOURCES = {
    "ase": (None, "en_US"),  # the English lists (words-en*.txt) are ASL's frequent and long words
    "asq": ("de", "de_AT"),
    "bzs": ("pt", "pt_BR"),
    "cse": ("cs", "cs_CZ"),
    "csq": ("hr", "hr_HR"),  # wordfreq answers "hr" with its Serbo-Croatian ("sh") list
    "eso": (None, "et_EE"),  # wordfreq 3.1.1 has no Estonian
    "gsg": ("de", "de_DE"),
    "gss": ("el", "el_GR"),
    "ise": ("it", "it_IT"),
    "jos": ("ar", "ar_SA"),  # Faker's ar_JO names are English ones
    "lls": ("lt", "lt_LT"),
    "mfs": ("es", "es_MX"),
    "psr": ("pt", "pt_PT"),
    "sgg": ("de", "de_CH"),
    "ssp": ("es", "es_ES"),
    "svk": ("sk", "sk_SK"),
    "swl": ("sv", "sv_SE"),
    "tsm": ("tr", "tr_TR"),
    "ukl": ("uk", "uk_UA"),
}
SHORT, LONG, NAMES = (2, 8), (9, 14), (3, 14)  # letters (units) a word has
COUNTS = {"": 600, "-long": 100, "-names": 150}
TOP = 50_000  # wordfreq words read per language


def pick(candidates: list[str], language: str, lengths: tuple[int, int], count: int,
         have: set[str]) -> tuple[list[str], int, Counter]:
    """The first ``count`` candidates of ``lengths`` letters that the alphabet spells; how many
    of that length were skipped on the way, and the letters that made them skip."""
    kept, skipped, lacking = [], 0, Counter()
    for word in dict.fromkeys(candidates):
        if not word.isalpha() or not lengths[0] <= len(units.split(word, "chars", language)) \
                <= lengths[1]:
            continue
        missing = units.missing(word, have, language)
        if missing:
            skipped += 1
            lacking.update(missing)
        else:
            kept.append(word)
            if len(kept) == count:
                break
    return kept, skipped, lacking


def names(locale: str) -> list[str]:
    """First and last names of a Faker locale, in a fixed shuffled order."""
    from faker import Faker

    faker = Faker(locale)
    found: list[str] = []
    for provider in faker.providers:
        for attr in ("first_names", "last_names"):
            pool = getattr(provider, attr, None)
            if pool:
                found += list(pool)  # a tuple or a {name: weight} dict
    found = sorted({n for n in found if " " not in n and "-" not in n})
    random.Random(0).shuffle(found)
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ASSETS), help="folder to write the lists to")
    args = p.parse_args(argv)
    import wordfreq

    index = fs.read_index()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for language, (wf_language, locale) in SOURCES.items():
        have = set(fs.alphabet(language, index))
        lists = {}
        if wf_language is not None:
            top = wordfreq.top_n_list(wf_language, TOP)
            if wf_language == "el":  # wordfreq writes a word's final sigma as σ: back to ς
                top = [w[:-1] + "ς" if w.endswith("σ") else w for w in top]
            lists[""] = (*pick(top, language, SHORT, COUNTS[""], have),
                         f'wordfreq {version("wordfreq")} top_n_list("{wf_language}", {TOP}), '
                         f"words of {SHORT[0]}-{SHORT[1]} letters in frequency order")
            lists["-long"] = (*pick(top, language, LONG, COUNTS["-long"], have),
                              f'wordfreq {version("wordfreq")} top_n_list("{wf_language}", '
                              f"{TOP}), words of {LONG[0]}-{LONG[1]} letters in frequency order")
        lists["-names"] = (*pick(names(locale), language, NAMES, COUNTS["-names"], have),
                           f"Faker {version('faker')} {locale} first and last names, shuffled "
                           "with random.Random(0)")
        for suffix, (words, skipped, lacking, source) in lists.items():
            path = Path(args.out) / f"words-{language}{suffix}.txt"
            common = ", ".join(f"{u} {n}" for u, n in lacking.most_common(6))
            header = [
                f"# text2sign's built-in list {language}{suffix} for the fingerspelling corpus: "
                f"{len(words)} texts the {language} alphabet spells.",
                f"# Source: {source}.",
                f"# Skipped on the way: {skipped} candidates with a letter the alphabet lacks"
                + (f" (most often: {common})." if common else "."),
                "# Made by scripts/make_word_lists.py; data CC BY-SA 4.0 (wordfreq), MIT (Faker).",
            ]
            path.write_text("\n".join(header + words) + "\n", encoding="utf-8")
            print(f"{language}{suffix:7s} {len(words):4d} kept, {skipped:5d} skipped"
                  + (f"  lacking: {common}" if common else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
