"""Text units, the one answer to "what is a text made of" for the corpus, the duration model and
the readers: NFC, case folding per language, multi-character letters as one unit."""

from __future__ import annotations

import argparse
import unicodedata

import numpy as np
import pytest

from text2sign.cli import data as data_commands
from text2sign.core import units
from text2sign.data import fingerspelling as fs
from text2sign.data.video_io import read_video
from text2sign.evaluation.metrics import error_rate, join_units, text_units
from text2sign.models.duration import DurationModel

DECOMPOSED_AE = "A\u0308"  # "A" + combining diaeresis: how the sgg lexicon stores its Ä


def test_turkish_folds_i_with_and_without_its_dot():
    assert units.fold("IŞIK İstanbul", "tsm") == "ışık istanbul"
    assert units.fold("IŞIK İstanbul") == "işik i\u0307stanbul"  # elsewhere: casefold
    assert units.split("İz", "chars", "ase") == ["i\u0307", "z"]  # not an ASL letter: i + dot
    assert fs.spellable(["İz", "Iz"], "ase") == (["Iz"], {"İz": ["i\u0307"]})
    assert fs.spell("Işık", fs.list_languages()["tsm"], "tsm") == ["ı", "ş", "ı", "k"]
    assert fs.spell("İyi", fs.list_languages()["tsm"], "tsm") == ["i", "y", "i"]


def test_german_nfc_and_sharp_s():
    assert unicodedata.normalize("NFD", "ä") == "a\u0308"
    assert units.split("A\u0308rger", "chars", "sgg") == units.split("ärger", "chars", "sgg")
    assert units.split("ärger", "chars", "sgg")[0] == "ä"
    letters = fs.list_languages()["sgg"]
    assert DECOMPOSED_AE in letters and "ä" in fs.alphabet("sgg")  # the stored letter, folded
    assert fs.spell("ärger", letters, "sgg") == fs.spell("A\u0308RGER", letters, "sgg")
    assert units.split("STRAẞE", "chars", "gsg") == list("straße")  # ß stays one letter
    assert fs.spellable(["straße", "strasse", "ärger"], "sgg") == (
        ["strasse", "ärger"], {"straße": ["ß"]})  # the Swiss alphabet has no ß


def test_multi_character_letters_are_one_unit():
    assert units.split("Schach", "chars", "sgg") == ["sch", "a", "ch"]
    assert units.split("Schach", "chars", "gsg") == list("schach")  # DGS spells it letter by letter
    assert units.split("Calle  llena", "chars", "ssp") == ["c", "a", "ll", "e", " ", "ll", "e",
                                                            "n", "a"]
    assert units.split("Ljubljana džep", "chars", "csq")[:2] == ["lj", "u"]
    assert units.split("džep", "chars", "csq") == ["dž", "e", "p"]
    assert units.split("cappello", "chars", "ise") == ["c", "a", "pp", "e", "ll", "o"]
    assert units.split("السلام", "chars", "jos") == ["ال", "س", "لا", "م"]
    assert units.split("thank you", "chars") == list("thank you")  # ASL: every character
    assert units.split("THANK  you ", "glosses") == ["THANK", "you"]
    assert units.join(units.split("Calle", "chars", "ssp")) == "calle"


def test_the_multi_letter_table_is_the_lexicons():
    found = {}
    for lang in fs.list_languages():
        multi = tuple(sorted(u for u in fs.alphabet(lang) if len(u) > 1))
        if multi:
            found[lang] = multi
    assert found == {lang: tuple(sorted(m)) for lang, m in units.MULTI_LETTERS.items()}


def test_greek_drops_the_tonos_as_greek_capitals_do():
    assert units.split("Καλημέρα", "chars", "gss") == list("καλημερα")
    assert units.split("ΐ", "chars", "gss") == ["ϊ"]  # the dialytika stays
    assert units.split("της", "chars", "gss")[-1] == "σ"  # final sigma folds to σ


def test_the_readers_unit_function_counts_a_multi_letter_as_one():
    assert text_units("Calle", "chars", "ssp") == ["c", "a", "ll", "e"]
    assert join_units(text_units("Calle", "chars", "ssp"), "chars") == "calle"
    assert text_units("Hello  World", "chars") == list("hello world")  # ASL as before
    assert error_rate(["calle"], ["cale"]) == pytest.approx(1 / 5)  # ASL: 5 letters
    assert text_units("calle", "chars", "ssp") != text_units("cale", "chars", "ssp")


def test_the_duration_model_times_a_multi_letter_as_one_unit():
    frames = {"c": 3, "a": 2, "ll": 7, "e": 4, "l": 3}
    texts = ["calle", "lace", "llace", "cell", "ale", "la", "ca", "lle", "cal", "ella", "ec"]
    lengths = [sum(frames[u] for u in units.split(t, "chars", "ssp")) for t in texts]
    model = DurationModel.fit(texts, lengths, units="chars", fps=6.25, max_frames=96,
                              languages=["ssp"] * len(texts))
    assert "ll" in model.per_unit and round(model.per_unit["ll"]) == 7
    assert model.frames("llala", "ssp") == 7 + 2 + 3 + 2
    assert model.frames("calla", "ssp") == 3 + 2 + 7 + 2
    with pytest.raises(ValueError, match="fitted on the sign languages ssp, not 'ase'"):
        model.frames("calle")


def test_the_duration_model_learns_a_rate_per_language():
    """Signer b spells every letter 2 frames slower than signer a: the language term carries it,
    the letters keep their own durations."""
    frames = {"A": 3, "B": 5, "C": 2, "D": 4}
    rng = np.random.default_rng(2)
    texts = ["".join(rng.choice(list(frames), rng.integers(2, 6))) for _ in range(80)]
    langs = ["ase" if k % 2 else "asq" for k in range(len(texts))]
    lengths = [sum(frames[c] + (2 if lang == "asq" else 0) for c in t)
               for t, lang in zip(texts, langs, strict=True)]
    model = DurationModel.fit(texts, lengths, units="chars", fps=6.25, max_frames=96,
                              languages=langs)
    assert model.reference == "ase"
    assert np.allclose(model.languages["asq"], [0.0, 2.0], atol=0.1)  # ridge-shrunk a hair
    assert (model.frames("DCBA", "ase"), model.frames("DCBA", "asq")) == (14, 22)
    again = DurationModel.from_json(model.to_json())
    assert again.frames("DCBA", "asq") == 22 and again.languages == model.languages
    blind = DurationModel.fit(texts, lengths, units="chars", fps=6.25, max_frames=96)
    assert blind.languages is None and blind.frames("DCBA") not in (14, 22)  # one pace for both
    legacy = DurationModel.from_json('{"units": "chars", "fps": 6.25, "max_frames": 96, '
                                     '"base": 1, "per_unit": {"a": 3}}')
    assert legacy.languages is None and legacy.frames("aa", "tsm") == 7  # any language


def test_builtin_lists_are_spelled_by_their_alphabets():
    for lang in fs.list_languages():
        if lang in fs.ALIASES:
            assert fs.own_list("words", lang) is None
            continue
        sizes = {}
        for kind, (low, high) in (("words", (2, 8)), ("long", (9, 14)), ("names", (3, 14))):
            name = fs.own_list(kind, lang)
            if name is None:
                continue
            texts = fs.builtin_words(name)
            assert fs.spellable(texts, lang)[1] == {}, (lang, kind)
            if lang != "ase" or kind == "names":
                assert all(low <= len(units.split(t, "chars", lang)) <= high for t in texts)
            sizes[kind] = len(texts)
        expected = ({"words": 2400, "long": 300, "names": 150} if lang == "ase"
                    else {"names": 150} if lang == "eso"  # wordfreq has no Estonian
                    else {"words": 600, "long": 100, "names": 150})
        assert sizes == expected, lang


def test_fsl_is_refused_as_the_asl_recordings_relabelled(tmp_path):
    rows = fs.read_index()
    assert [r["path"] for r in rows["fsl"].values()] == [r["path"] for r in rows["ase"].values()]
    with pytest.raises(ValueError, match="fsl: not French Sign Language: the ASL"):
        fs.build_fingerspelling_corpus(tmp_path, languages=["fsl"], frames=4, size=16,
                                       progress=False)


def test_greek_letters_are_resampled_to_the_other_signers_pace():
    index = fs.read_index()

    def median_seconds(lang):
        return np.median([len(s.xyz) / s.fps for s in (
            fs.at_pace(fs.load_recording(fs.lexicon_dir() / row["path"]), lang)
            for row in index[lang].values())])

    assert "Ο" not in index["gss"] and "Φ" not in index["gss"]  # broken long takes
    raw = np.median([len(fs.load_recording(fs.lexicon_dir() / r["path"]).xyz) / 24
                     for r in index["gss"].values()])
    assert raw < 0.4  # squeezed
    assert 0.9 <= median_seconds("gss") <= 1.2
    assert 0.9 <= median_seconds("ase") <= 1.2 and 0.9 <= median_seconds("ssp") <= 1.2


def test_two_handed_alphabets_are_noted_as_measured():
    index = fs.read_index()

    def both_hands(lang):
        count = 0
        for row in index[lang].values():
            s = fs.load_recording(fs.lexicon_dir() / row["path"])
            left = s.valid[:, fs._L0:fs._L0 + fs.HAND_POINTS].mean(1) > 0.5
            right = s.valid[:, fs._R0:fs._R0 + fs.HAND_POINTS].mean(1) > 0.5
            count += (left & right).mean() > 0.3
        return count

    for lang in ("cse", "csq", "tsm"):
        assert f"both hands in {both_hands(lang)} of {len(index[lang])} letters" in \
            fs.LANGUAGE_NOTES[lang]
    assert both_hands("ase") == 0


def test_the_cli_writes_one_folder_per_language_and_counts_skipped_words(tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_text("llama\ncafé\nışık\nwow\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    data_commands.register_fingerspelling(parser.add_subparsers())
    args = parser.parse_args(["fingerspelling", str(tmp_path / "out"), "--languages", "ssp,tsm",
                              "--words", str(words), "--frames", "3", "--size", "16", "-q"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "ssp: skipped 2 of 4 texts with letters its alphabet lacks ('é' 1, 'ı' 1, 'ş' 1" in out
    assert "tsm: skipped 2 of 4 texts with letters its alphabet lacks ('é' 1, 'w' 1" in out
    written = sorted(p.relative_to(tmp_path / "out").as_posix()
                     for p in (tmp_path / "out").rglob("*.gif"))
    assert written == ["ssp/llama.gif", "ssp/wow.gif", "tsm/llama.gif", "tsm/ışık.gif"]
    assert (tmp_path / "out/tsm/ışık.txt").read_text(encoding="utf-8") == "ışık\n"
    assert read_video(tmp_path / "out/ssp/llama.gif")[0].shape == (3, 16, 16, 3)
    args = parser.parse_args(["fingerspelling", "--list-languages"])
    assert args.func(args) == 0
    listing = capsys.readouterr().out
    assert "fsl  26  A B C" in listing and "not French Sign Language" in listing
    assert "ssp  30  A B C CH D" in listing and "gss  22  Α Β Γ" in listing


def test_the_sign_languages_a_corpus_folder_may_name_are_the_recordings_less_fsl():
    assert sorted(units.SIGN_LANGUAGES) == sorted(set(fs.read_index()) - {"fsl"})
    assert units.SIGN_LANGUAGES[0] == units.DEFAULT_LANGUAGE


def test_per_list_takes_the_first_texts_each_alphabet_spells():
    """--per-list N: the first N texts of each list that the language can spell (Czech skips
    most frequent words: its alphabet has no accented vowels)."""
    cse = fs.words_from("words,names", "cse", per_list=5)
    assert len(cse) == 10 and not fs.spellable(cse, "cse")[1]
    first = fs.spellable(fs.builtin_words("cse"), "cse")[0][:5]
    assert cse[:5] == first
    assert fs.words_from("words", "eso", per_list=5) == []  # wordfreq has no Estonian words
    with pytest.raises(ValueError, match="per_list=0 must be >= 1"):
        fs.words_from("words", "gsg", per_list=0)
