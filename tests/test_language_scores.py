"""Scores per sign language: readers whose units are every language's letters and that read a
clip only in its language's units, and evaluate's per-language back-translation and duration
on a toy corpus of two languages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ListCache

from text2sign.core.config import Config
from text2sign.data.clips import fit_time
from text2sign.evaluation.evaluate import evaluate
from text2sign.evaluation.metrics import error_rate
from text2sign.evaluation.readers import check_fits, load_reader, read_real
from text2sign.evaluation.recognizer import RecognizerConfig, TrainSettings, train_recognizer
from text2sign.evaluation.sequence import (
    SequenceConfig,
    SequenceNet,
    SequenceRecognizer,
    SequenceTrainSettings,
    load_or_train_sequence_recognizer,
    train_sequence_recognizer,
)
from text2sign.evaluation.transformer_reader import (
    TransformerReader,
    TransformerReaderConfig,
    TransformerReaderNet,
)
from text2sign.model_folder.model_info import ModelInfo

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, LETTER, GAP, SPACE = 16, 4, 1, 3  # frames: a symbol, the blank after it, a word boundary
COLOUR = {"a": 0, "b": 1, "c": 2}  # each symbol a square in its own colour channel


def symbols(text: str) -> np.ndarray:
    """uint8 (T, S, S, 3): each letter a square of its colour for 4 frames and a blank one; a
    space 3 blank frames more. A clip lasts as long as its text."""
    parts = []
    for ch in text:
        part = np.zeros((SPACE if ch == " " else LETTER + GAP, SIZE, SIZE, 3), np.uint8)
        if ch != " ":
            part[:LETTER, 4:12, 4:12, COLOUR[ch]] = 255
        parts.append(part)
    return np.concatenate(parts)


class TwoLanguageCache(ListCache):
    """Clips at their own length of (text, language) pairs, as ClipCache keeps them: texts,
    languages (from OUT/<code>/ folders), lengths, a data rate."""

    variable = True
    data_fps = 4.0

    def __init__(self, path, pairs: list[tuple[str, str]], per_text: int = 2):
        pairs = [p for p in pairs for _ in range(per_text)]
        super().__init__(path, [t for t, _ in pairs], [symbols(t) for t, _ in pairs],
                         f"two{len(pairs):04d}abcdef")
        self.languages = [c for _, c in pairs]
        self.lengths = [len(c) for c in self.clips]
        self.size, self.frame_shape = SIZE, (SIZE, SIZE, 3)


class ColourReader:
    """Reads `symbols` clips by their colours (a run of frames of one colour is a letter, 3
    blank frames or more a space): a reader that never errs, so the scores are the clips'."""

    units, vocab = "chars", ["a", "b", "c", " "]

    def to(self, device):
        return self

    def read(self, videos, batch_size=32, languages=None):
        out = []
        for clip in videos:
            text, blank, prev = "", 0, None
            for frame in np.asarray(clip):
                lit = frame.reshape(-1, 3).max(0)  # (3,)
                if lit.max() == 0:
                    blank, prev = blank + 1, None
                    continue
                if blank >= SPACE and text:
                    text += " "
                ch = "abc"[int(lit.argmax())]
                text, blank = text + ("" if ch == prev else ch), 0
                prev = ch
            out.append((text, 1.0))
        return out


class TwoLanguagePipe:
    """Stand-in for Text2SignPipeline signing ASL and DGS: draws ASL texts as asked and every
    DGS text as "ab" (a model that has not learnt DGS)."""

    def __init__(self, training_texts):
        self.frames, self.size, self.fps, self.gif_fps = None, SIZE, 4.0, 4.0
        self.device = torch.device("cpu")
        self.training_texts, self.config, self.autoencoder = training_texts, Config(), None
        self.info = ModelInfo(self.config)
        self.languages = ["ase", "gsg"]
        self.asked: list[tuple[str, str]] = []

    def __call__(self, texts, *, steps=25, sampler="dpm++", guidance=3.0, seed=0,
                 batch_size=16, language=None):
        codes = language or ["ase"] * len(texts)
        self.asked += list(zip(texts, codes, strict=True))
        return [symbols(t if c == "ase" else "ab") for t, c in zip(texts, codes, strict=True)]


SEEN = ["a", "b", "c", "ab", "ba"]
# "bca" is held out in both languages: two items, "ase/bca" and "gsg/bca".
PAIRS = [*((t, "ase") for t in [*SEEN, "bca", "cba"]),
         *((t, "gsg") for t in ["a", "b", "c", "ab", "bca", "acb"])]


def toy_classifier(cache):
    """A classifier of the texts at a fixed count of frames (5 steps: its scores are not what
    these tests are about)."""
    fixed = ListCache(cache.path, cache.texts, [fit_time(c, 8) for c in cache.clips], "fixed")
    fixed.clip_shape = (8, SIZE, SIZE, 3)
    return train_recognizer(fixed, list(range(len(fixed.texts))), device="cpu", progress=False,
                            config=RecognizerConfig(frames=8, size=16, width=8, feature_dim=16),
                            settings=TrainSettings(steps=5, batch_size=8))


def test_evaluate_reports_each_language_on_its_held_out_texts(tmp_path):
    cache = TwoLanguageCache(tmp_path / "corpus", PAIRS)
    pipe = TwoLanguagePipe(SEEN)
    classifier = toy_classifier(cache)
    evaluate(pipe, cache, tmp_path / "eval", per_text=1, recognizer=classifier,
             readers={"colours": ColourReader()}, progress=False)
    # Each clip made in its corpus clip's language, one text of two languages twice.
    assert ("bca", "ase") in pipe.asked and ("bca", "gsg") in pipe.asked
    assert len(pipe.asked) == len(set(PAIRS)) == 13
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    langs = saved["back_translation"]["languages"]
    assert set(langs) == {"ase", "gsg"}
    assert {k: langs["ase"][k] for k in ("texts", "cer", "exact", "ceiling_cer",
                                         "ceiling_exact")} == {
        "texts": 2, "cer": 0.0, "exact": 1.0, "ceiling_cer": 0.0, "ceiling_exact": 1.0}
    # DGS "bca" and "acb" drawn as "ab": 3 + 1 edits over 6 letters, none exact; its real
    # clips read right (the ceiling), every clip of its two held-out texts.
    assert langs["gsg"]["texts"] == 2 and langs["gsg"]["exact"] == 0.0
    assert langs["gsg"]["cer"] == pytest.approx(4 / 6)
    assert langs["gsg"]["ceiling_exact"] == 1.0 and langs["gsg"]["ceiling_clips"] == 4
    assert saved["back_translation"]["readers"]["colours"]["languages"] == langs
    duration = saved["duration"]["languages"]
    assert duration["ase"]["texts"] == 2 and duration["ase"]["ratio"] == pytest.approx(1.0)
    assert duration["gsg"]["ratio"] == pytest.approx(10 / 15)  # "ab" for 3-letter words
    # The items are named by language where two languages share a text.
    assert {"ase/bca", "gsg/bca"} <= set(saved["per_text_accuracy"])
    assert saved["per_text_accuracy"]["gsg/bca"]["read"] == "ab"
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "## By sign language" in md
    assert "| gsg | 2 | 0.667 | 0.000 | 0.000 | 1.000 | 0.667 |" in md

    # A reader scores the same held-out real clips per language (`reader score`).
    unseen = [i for i, t in enumerate(cache.texts) if t in ("bca", "cba", "acb")]
    real = read_real({"colours": ColourReader()}, cache, {"unseen": unseen},
                     by_language=True)
    assert {c: s["readers"]["colours"]["clips"] for c, s in real["languages"].items()} == {
        "ase": 4, "gsg": 4}


class DrawsCAsB(torch.nn.Module):
    """A latent model's autoencoder whose decoder draws colour c as colour b: real clips read
    through it lose every c, the most the model's clips could read."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # where the autoencoder lives

    def encode(self, x):
        return x

    def decode(self, z):
        out = z.clone()
        out[:, 1] = torch.maximum(z[:, 1], z[:, 2])
        out[:, 2] = -1.0
        return out


def test_evaluate_reads_the_real_clips_through_the_autoencoder_too(tmp_path):
    cache = TwoLanguageCache(tmp_path / "corpus", PAIRS)
    pipe = TwoLanguagePipe(SEEN)
    pipe.autoencoder = DrawsCAsB()
    evaluate(pipe, cache, tmp_path / "eval", per_text=1, recognizer=toy_classifier(cache),
             readers={"colours": ColourReader()}, progress=False)
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    bt = saved["back_translation"]
    # Held out: ASL "bca", "cba" and DGS "bca", "acb", two real clips each, decoded as
    # "bba" / "abb": one letter of three wrong in every clip, none exact; the real clips
    # themselves read right.
    for code in ("ase", "gsg"):
        langs = bt["languages"][code]
        assert langs["ceiling_exact"] == 1.0 and langs["ceiling_cer"] == 0.0
        assert langs["ceiling_decoded_exact"] == 0.0
        assert langs["ceiling_decoded_cer"] == pytest.approx(1 / 3)
    unseen = bt["groups"]["unseen"]
    assert unseen["ceiling_clips"] == 8 and unseen["ceiling_exact"] == 1.0
    assert unseen["ceiling_decoded_exact"] == 0.0
    assert unseen["ceiling_decoded_cer"] == pytest.approx(1 / 3)
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "decoded exact" in md
    assert "| gsg | 2 | 0.667 | 0.000 | 0.333 | 0.000 | 1.000 | 0.000 | 0.667 |" in md
    # left out when asked (the demo): no decoded fields, no decoded columns
    quick = evaluate(pipe, cache, tmp_path / "quick", per_text=1, recognizer=toy_classifier(cache),
                     readers={"colours": ColourReader()}, progress=False, decoded_ceiling=False)
    assert "ceiling_decoded_exact" not in quick["back_translation"]["languages"]["gsg"]
    assert "decoded" not in (tmp_path / "quick" / "report.md").read_text()


def test_readers_read_real_clips_through_an_autoencoder_as_they_read_the_clips(tmp_path):
    """`reader score --decoded-by`: the same held-out clips, drawn by a model's decoder."""
    from text2sign.evaluation.evaluate import DecodedClips

    cache = TwoLanguageCache(tmp_path / "corpus", PAIRS)
    unseen = [i for i, t in enumerate(cache.texts) if t in ("bca", "cba", "acb")]
    decoded = DecodedClips(cache, DrawsCAsB())
    assert decoded.texts == cache.texts and decoded.languages == cache.languages
    assert decoded[unseen[0]].shape == cache[unseen[0]].shape
    real = read_real({"colours": ColourReader()}, decoded, {"unseen": unseen}, by_language=True)
    for code in ("ase", "gsg"):
        score = real["languages"][code]["readers"]["colours"]
        assert score["clips"] == 4 and score["exact"] == 0.0
        assert score["cer"] == pytest.approx(1 / 3)


def test_a_one_language_report_has_no_language_table(tmp_path):
    cache = TwoLanguageCache(tmp_path / "corpus", [p for p in PAIRS if p[1] == "ase"])
    pipe = TwoLanguagePipe(SEEN)
    report = evaluate(pipe, cache, tmp_path / "eval", per_text=1,
                      recognizer=toy_classifier(cache), readers={"colours": ColourReader()},
                      progress=False)
    assert "languages" not in report["back_translation"]
    assert "languages" not in report["duration"]
    assert "bca" in report["per_text_accuracy"]  # keys are the texts, as before
    assert {lang for _, lang in pipe.asked} == {"ase"}
    assert "By sign language" not in (tmp_path / "eval" / "report.md").read_text()


def test_evaluate_refuses_a_corpus_language_the_model_does_not_sign(tmp_path):
    cache = TwoLanguageCache(tmp_path / "corpus", [("a", "ase"), ("a", "ukl")])
    with pytest.raises(ValueError, match="holds clips of ukl, which the model does not sign "
                                         r"\(it signs ase, gsg\)"):
        evaluate(TwoLanguagePipe(SEEN), cache, tmp_path / "eval", recognizer=object(),
                 progress=False)


def test_a_multi_character_letter_is_one_unit_of_the_readers_vocabulary(tmp_path):
    """Spanish LL is one letter (one sign): the reader has one output for it, and its CER
    counts it once; ASL spells the same characters as two letters."""
    pairs = [("la", "ase"), ("l", "ssp"), ("a", "ssp"), ("ll", "ssp"), ("lla", "ssp")]
    cache = TwoLanguageCache(tmp_path / "corpus", [(t.replace("l", "b"), c) for t, c in pairs])
    cache.texts = [t for t, _ in pairs for _ in range(2)]  # drawn with b for l: any symbols do
    reader = train_sequence_recognizer(
        cache, list(range(len(cache.texts))), device="cpu", progress=False,
        config=SequenceConfig(frames=None, size=16, width=8, hidden=16),
        settings=SequenceTrainSettings(steps=2, batch_size=4))
    assert reader.vocab == ["a", "l", "ll"]
    assert reader.languages == {"ase": ["a", "l"], "ssp": ["a", "l", "ll"]}
    ids, lengths = reader.encode_targets([("ll", "a")])
    assert lengths.tolist() == [2] and ids.tolist() == [3, 1]
    again = load_reader(reader.save(tmp_path / "reader"))
    assert again.languages == reader.languages  # kept in the reader folder
    cached = load_or_train_sequence_recognizer(cache, 0.25, units="chars",
                                               folder=tmp_path / "cached",
                                               settings=SequenceTrainSettings(steps=1),
                                               device="cpu", progress=False)
    assert cached.settings["languages"] == ["ase", "ssp"]  # one cached before: retrained
    assert cached.languages == reader.languages
    assert error_rate(["lla"], ["la"], languages="ssp") == pytest.approx(1 / 2)  # ll -> l
    assert error_rate(["lla"], ["la"]) == pytest.approx(1 / 3)  # in ASL: l, l, a


def _biased(arch: str):
    """A reader of a, b (ASL) and a, b, c (DGS) whose outputs all lean to "c", then to "a"."""
    torch.manual_seed(0)
    vocab = ["a", "b", "c"]
    if arch == "conv-gru":
        config = SequenceConfig(frames=None, size=16, width=8, hidden=16)
        net = SequenceNet(len(vocab), config)
        reader = SequenceRecognizer(net, vocab, config)
        heads = [net.head]
    else:
        config = TransformerReaderConfig(size=16, width=8, dim=32, layers=1, heads=2,
                                         decoder_layers=1, max_units=6)
        net = TransformerReaderNet(len(vocab), config)
        reader = TransformerReader(net, vocab, config)
        heads = [net.ctc_head, net.dec_head]
    with torch.no_grad():
        for head in heads:
            head.bias[3] = 50.0  # "c": unit 3 (0 is the blank, or the end of text)
            head.bias[1] = 25.0  # "a", the best unit an ASL clip may read
    reader.languages = {"ase": ["a", "b"], "gsg": ["a", "b", "c"]}
    return reader


@pytest.mark.parametrize("arch", ["conv-gru", "transformer"])
def test_a_reader_reads_a_clip_only_in_its_languages_units(arch):
    reader = _biased(arch)
    clips = [symbols("abc"), symbols("ca")]
    assert all("c" in text for text, _ in reader.read(clips, languages="gsg"))
    asl = reader.read(clips, languages=["ase", "ase"])
    assert all(text and set(text) == {"a"} for text, _ in asl), asl
    assert [t for t, _ in reader.read(clips, languages=["gsg", "ase"])][1] == asl[1][0]
    with pytest.raises(ValueError, match="reads ase, gsg, not ukl"):
        reader.read(clips, languages="ukl")
    with pytest.raises(ValueError, match="reads ase, gsg, not ukl"):
        check_fits(reader, ["ab"], "chars", languages=["ukl"])
    reader.languages = None  # a reader of one language (the shipped ones): any unit
    assert all("c" in text for text, _ in reader.read(clips, languages="ase"))


# --------------------------------------------------------------------------- the demo

def test_the_demo_shows_three_languages_one_two_handed_and_asl_alone_for_an_asl_model():
    from text2sign.apps.demo import demo_languages

    assert demo_languages(["ase"]) == ["ase"]  # today's shipped model: the demo as it was
    assert demo_languages(["ase", "gsg", "tsm", "ukl", "cse"]) == ["ase", "cse", "gsg"]
    assert demo_languages(["ase", "ukl", "swl", "asq"]) == ["ase", "ukl", "asq"]
    assert demo_languages(["ssp", "ase"], count=5) == ["ase", "ssp"]
    with pytest.raises(ValueError, match="signs gsg, ukl; score it with `text2sign evaluate"):
        demo_languages(["gsg", "ukl"])


def test_the_shipped_model_demo_builds_the_asl_corpus_as_before(tmp_path, monkeypatch):
    from text2sign.apps import demo
    from text2sign.model_folder import shipped
    from text2sign.model_folder.pipeline import Text2SignPipeline

    assert Text2SignPipeline.from_pretrained(shipped.model(), device="cpu").languages == ["ase"]
    calls = []
    monkeypatch.setattr(demo, "build_fingerspelling_corpus",
                        lambda folder, **kwargs: calls.append(kwargs))
    demo.ensure_corpus(tmp_path, None, 128, ["hello"], progress=False, quiet=True, fps=6.25)
    assert {k: calls[0][k] for k in ("languages", "words", "letters", "variants")} == {
        "languages": ("ase",), "words": ["hello"], "letters": True, "variants": 8}


def test_a_demo_corpus_of_several_languages_spells_asl_letters_and_the_others_words(tmp_path):
    from text2sign.apps import demo
    from text2sign.model_folder.folder_io import training_texts

    trained = training_texts(ModelInfo(Config()), ["a", "go"])
    more = {code: demo.language_words(trained, code, 2) for code in ("gsg", "cse")}
    assert all(len(words) == 2 for words in more.values())
    demo.ensure_corpus(tmp_path, 4, 16, ["go"], variants=1, progress=False, quiet=True,
                       more=more)
    texts = {p.parent.name: set() for p in tmp_path.rglob("*.txt")}
    for p in tmp_path.rglob("*.txt"):
        texts[p.parent.name].add(p.read_text(encoding="utf-8").strip())
    assert len(texts["ase"]) == 27 and "go" in texts["ase"]  # 26 letters and the word
    assert texts["gsg"] == set(more["gsg"]) and texts["cse"] == set(more["cse"])  # no letters
