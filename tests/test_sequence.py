"""Back-translation: the CTC sequence recognizer, its metrics, the text split and the reports."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import ListCache

from text2sign.core.config import Config
from text2sign.data.cache import holdout_texts
from text2sign.evaluation.evaluate import evaluate, text_groups
from text2sign.evaluation.metrics import edit_distance, error_rate, exact_accuracy
from text2sign.evaluation.recognizer import RecognizerConfig, TrainSettings, train_recognizer
from text2sign.evaluation.sequence import (
    SequenceConfig,
    SequenceRecognizer,
    SequenceTrainSettings,
    load_or_train_sequence_recognizer,
    read_clips,
    train_sequence_recognizer,
)
from text2sign.model_folder import shipped
from text2sign.model_folder.folder_io import training_texts
from text2sign.model_folder.model_info import ModelInfo

FRAMES, SIZE = 16, 16
SEQ = SequenceConfig(frames=FRAMES, size=SIZE, width=8, hidden=32, units="chars")
SEQ_FAST = SequenceTrainSettings(steps=250, batch_size=16, lr=3e-3)


def symbol_clip(text: str, rng: np.random.Generator) -> np.ndarray:
    """Three visibly different symbols (a red square, a green bar, a blue cross), one after the
    other, each followed by a blank frame (so "aa" shows two squares), at a jittered place."""
    clip = np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8)  # (T, H, W, 3)
    edges = np.linspace(0, FRAMES, len(text) + 1).round().astype(int)
    dy, dx = rng.integers(-1, 2, 2)
    for ch, a, b in zip(text, edges, edges[1:], strict=False):
        f = clip[a:max(a + 1, b - 1)]
        ys, xs = slice(4 + dy, 12 + dy), slice(4 + dx, 12 + dx)
        if ch == "a":
            f[:, ys, xs, 0] = 255
        elif ch == "b":
            f[:, 2:14, 7 + dx:9 + dx, 1] = 255
        else:
            f[:, 7 + dy:9 + dy, 2:14, 2] = 255
            f[:, 2:14, 7 + dx:9 + dx, 2] = 255
    return clip


class SymbolCache(ListCache):
    """Texts of 1-3 symbols, several clips each."""

    def __init__(self, path, texts: list[str], per_text: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        texts = [t for t in texts for _ in range(per_text)]
        super().__init__(path, texts, [symbol_clip(t, rng) for t in texts],
                         f"symbols{seed:03d}{len(texts):04d}")
        self.frames, self.size = FRAMES, SIZE
        self.clip_shape = (FRAMES, SIZE, SIZE, 3)


TRAIN_TEXTS = ["a", "b", "c", "ab", "ba", "ac", "ca", "bc", "cb", "abc", "cab", "bca", "aab",
               "cc"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    cache = SymbolCache(tmp_path_factory.mktemp("symbols"), TRAIN_TEXTS)
    train, _ = cache.split(0.25)
    return train_sequence_recognizer(cache, train, config=SEQ, settings=SEQ_FAST, device="cpu",
                                     progress=False)


def test_edit_distance_and_error_rates():
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert error_rate(["hello", "at"], ["hello", "at"]) == 0.0  # a perfect reading
    assert error_rate(["hello", "at"], ["", ""]) == 1.0  # an empty reading
    assert error_rate(["ab"], ["ba"]) == 1.0  # the order counts
    assert exact_accuracy(["Hello", "at"], ["hello", "it"]) == 0.5  # chars are case-folded
    assert error_rate(["thank you"], ["thank me"], "glosses") == 0.5


@pytest.mark.numerics
def test_sequence_recognizer_reads_toy_corpus_and_tells_orders_apart(reader):
    test = SymbolCache(None, ["ab", "ba", "abc", "cba", "bca", "aa", "c"], per_text=3, seed=7)
    hyps = read_clips(reader, test, list(range(len(test))))
    assert error_rate(test.texts, hyps) < 0.05, list(zip(test.texts, hyps, strict=True))
    # "ab" and "ba" show the same symbols in opposite orders; "cba" was never trained on.
    for text in ("ab", "ba", "cba"):
        readings = [h for t, h in zip(test.texts, hyps, strict=True) if t == text]
        assert readings.count(text) >= 2, (text, readings)


def test_sequence_recognizer_round_trips_and_refuses_other_folders(reader, tmp_path):
    folder = reader.save(tmp_path / "rec")
    again = SequenceRecognizer.load(folder)
    clips = np.stack([symbol_clip(t, np.random.default_rng(1)) for t in ("ab", "c")])
    assert again.read(clips) == reader.read(clips)
    with pytest.raises(FileNotFoundError, match="not a sequence recognizer folder"):
        SequenceRecognizer.load(tmp_path)


def test_holdout_split_never_puts_a_text_on_both_sides(tmp_path):
    words = [f"w{i:03d}" for i in range(300)] + list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    cache = SymbolCache(tmp_path, words, per_text=3)
    cache.clips = [None] * len(cache.texts)  # the split reads texts only
    train, val, unseen = cache.split_by_text(0.25, 0.2)
    train_texts = {cache.texts[i] for i in train} | {cache.texts[i] for i in val}
    unseen_texts = {cache.texts[i] for i in unseen}
    assert not train_texts & unseen_texts
    assert 30 <= len(unseen_texts) <= 90  # about 20% of 300 words
    assert not unseen_texts & set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # letters always train
    assert sorted(train + val + unseen) == list(range(len(cache.texts)))
    assert holdout_texts(words, 0.2) == holdout_texts(list(reversed(words)), 0.2)  # text alone


def test_text_groups_follow_the_models_training_texts():
    texts = ["A", "B", "cat", "dog", "ant", "hello"]
    info = ModelInfo(Config())
    groups = text_groups(texts, training_texts(info, ["a", "b", "cat", "hello"]))
    assert groups == {"letters": ["A", "B"], "seen": ["cat", "hello"], "unseen": ["ant", "dog"]}
    assert text_groups(texts, training_texts(info, ["cat"]), max_texts=1)["seen"] == ["cat"]
    # an older folder without texts.txt: the corpus's texts that data.holdout_texts keeps
    assert len(text_groups(texts, training_texts(info, None, texts), max_texts=1)["seen"]) == 1


class SymbolPipe:
    """Stand-in for Text2SignPipeline: draws what it is asked for, or always "ab" (wrong)."""

    def __init__(self, training_texts, wrong: bool = False):
        self.frames, self.size, self.wrong = FRAMES, SIZE, wrong
        self.device = torch.device("cpu")
        self.training_texts = training_texts
        self.config, self.autoencoder = Config(), None
        self.info = ModelInfo(self.config)
        self.fps, self.gif_fps = None, 8.0  # a fixed frame count, played at 8 fps

    def __call__(self, texts, *, steps=25, sampler="dpm++", guidance=3.0, seed=0, batch_size=16):
        rng = np.random.default_rng(1000 + seed)
        return np.stack([symbol_clip("ab" if self.wrong else t, rng) for t in texts])


@pytest.mark.numerics
def test_evaluate_reports_seen_and_unseen_back_translation(reader, tmp_path):
    texts = ["a", "b", "c", "ab", "ba", "abc", "cba", "bca"]
    cache = SymbolCache(tmp_path / "corpus", texts, per_text=4, seed=3)
    classifier = train_recognizer(cache, cache.split(0.25)[0],
                                  config=RecognizerConfig(frames=8, size=16, width=8,
                                                          feature_dim=16),
                                  settings=TrainSettings(steps=40), device="cpu",
                                  progress=False)
    seen = ["a", "b", "c", "ab", "ba"]
    good = evaluate(SymbolPipe(seen), cache, tmp_path / "good", per_text=2, recognizer=classifier,
                    sequence_recognizer=reader, progress=False)
    bad = evaluate(SymbolPipe(seen, wrong=True), cache, tmp_path / "bad", per_text=2,
                   recognizer=classifier, sequence_recognizer=reader, progress=False,
                   write_files=False)
    groups = good["back_translation"]["groups"]
    assert set(groups) == {"letters", "seen", "unseen"}
    assert groups["unseen"]["texts"] == 3 and groups["unseen"]["clips"] == 6
    assert groups["unseen"]["ceiling_clips"] == 12  # every real clip of an unseen text
    assert groups["seen"]["ceiling_clips"] == 2  # held-out real clips of seen texts
    for name in ("letters", "seen", "unseen"):
        assert groups[name]["cer"] <= 0.1 and groups[name]["exact"] >= 0.8
        assert groups[name]["ceiling_cer"] <= 0.1
    wrong = bad["back_translation"]["groups"]
    assert wrong["unseen"]["exact"] == 0.0 and wrong["unseen"]["cer"] >= 0.5
    assert wrong["letters"]["cer"] >= 1.0  # "ab" for "a": one substitution, one insertion
    saved = json.loads((tmp_path / "good" / "report.json").read_text())
    assert saved["back_translation"]["groups"]["unseen"]["exact"] == groups["unseen"]["exact"]
    # The classifier per group, next to its ceiling on the group's held-out real clips.
    top1 = good["group_top1"]
    assert {g: (v["texts"], v["clips"]) for g, v in top1.items()} == {
        "letters": (3, 6), "seen": (2, 4), "unseen": (3, 6)}
    assert sum(v["ceiling_clips"] for v in top1.values()) == len(cache.split(0.25)[1]) == 8
    assert top1["letters"]["top1"] == pytest.approx(
        np.mean([good["per_text_accuracy"][t]["top1"] for t in "abc"]))
    assert bad["group_top1"]["letters"]["top1"] == 0.0  # "ab" drawn for every letter
    assert bad["group_top1"]["seen"]["top1"] == 0.5  # right for "ab", wrong for "ba"
    md = (tmp_path / "good" / "report.md").read_text()
    assert "## Back-translation" in md and "| unseen texts | 3 | 6 |" in md
    assert "## Top-1 by group" in md and "| classifier | texts | clips | top-1 |" in md
    assert "| cba | unseen |" in md


# --------------------------------------------------------------------------- own-length clips

LETTER, GAP, SPACE = 4, 1, 3  # frames: a symbol, the blank after it, a word boundary


def phrase_clip(text: str, rng: np.random.Generator) -> np.ndarray:
    """Symbols as in `symbol_clip` but at a rate: 4 frames each plus a blank one, and 3 more
    blank frames for a space, so a clip lasts as long as its text."""
    parts = []
    for ch in text:
        if ch == " ":
            parts.append(np.zeros((SPACE, SIZE, SIZE, 3), np.uint8))
            continue
        part = np.zeros((LETTER + GAP, SIZE, SIZE, 3), np.uint8)  # (T, H, W, 3)
        a = symbol_clip(ch, rng)  # one symbol over 15 of 16 frames
        part[:LETTER] = a[:LETTER]
        parts.append(part)
    return np.concatenate(parts)  # (T, H, W, 3)


class PhraseCache(SymbolCache):
    """Stand-in for a variable-length ClipCache: clips at their own length, `.lengths`."""

    variable = True

    def __init__(self, path, texts: list[str], per_text: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        texts = [t for t in texts for _ in range(per_text)]
        ListCache.__init__(self, path, texts, [phrase_clip(t, rng) for t in texts],
                           f"phrases{seed:03d}{len(texts):04d}")
        self.lengths = [len(c) for c in self.clips]
        self.size = SIZE


PHRASE_TEXTS = ["a", "b", "c", "ab", "ba", "ca", "bc", "abc", "cab", "a b", "b a", "ab c",
                "c ab", "a bc", "ca b", "b c", "bc a"]
OWN = dataclasses.replace(SEQ, frames=None)


@pytest.fixture(scope="module")
def phrase_reader(tmp_path_factory):
    cache = PhraseCache(tmp_path_factory.mktemp("phrases"), PHRASE_TEXTS)
    train, _ = cache.split(0.25)
    return train_sequence_recognizer(cache, train, config=OWN, settings=SEQ_FAST, device="cpu",
                                     progress=False)


def test_own_length_recognizer_reads_phrases_with_their_spaces(phrase_reader):
    assert phrase_reader.vocab == [" ", "a", "b", "c"]  # the word boundary is a unit
    test = PhraseCache(None, ["a b", "ab c", "c b", "ba c", "abc", "c a b"], per_text=3, seed=5)
    assert min(test.lengths) == 13 and max(test.lengths) == 21  # read at these lengths
    hyps = read_clips(phrase_reader, test, list(range(len(test))))
    assert error_rate(test.texts, hyps) < 0.1, list(zip(test.texts, hyps, strict=True))
    assert exact_accuracy(test.texts, hyps) >= 0.7


def test_own_length_keeps_every_frame_and_batches_by_length(phrase_reader):
    rng = np.random.default_rng(3)
    long_clip = np.concatenate([phrase_clip("abc ab", rng)] * 3)[:60]  # (60, H, W, 3)
    with torch.no_grad():
        steps = phrase_reader.net(phrase_reader.prepare(long_clip[None])).shape[1]
        fixed = SequenceRecognizer(phrase_reader.net, phrase_reader.vocab, SEQ)  # frames=16
        assert fixed.prepare(long_clip[None]).shape[2] == FRAMES
    assert steps == 60  # one CTC step per frame, not resampled to a fixed count
    clips = [long_clip, phrase_clip("ab", rng), long_clip[:30], phrase_clip("ba", rng)]
    together = phrase_reader.read(clips, batch_size=2)
    alone = [phrase_reader.read(c[None])[0] for c in clips]
    assert [t for t, _ in together] == [t for t, _ in alone]
    assert np.allclose([c for _, c in together], [c for _, c in alone], atol=1e-5)


def test_a_lost_space_is_a_character_error():
    assert error_rate(["thank you"], ["thankyou"]) == pytest.approx(1 / 9)
    assert error_rate(["thank  you"], ["thank you"]) == 0.0  # a run of spaces is one boundary
    assert exact_accuracy(["see you"], ["seeyou"]) == 0.0


def test_load_or_train_reads_a_variable_cache_at_its_own_length(tmp_path):
    cache = PhraseCache(tmp_path, PHRASE_TEXTS[:8], per_text=2)
    cache.split_by_text = lambda val_fraction, holdout: (list(range(12)), [], [])
    tiny = SequenceTrainSettings(steps=3, batch_size=4)
    rec = load_or_train_sequence_recognizer(cache, units="chars", settings=tiny, device="cpu",
                                            folder=tmp_path / "rec", progress=False)
    assert rec.config.frames is None
    assert rec.metrics["train_frames"] == {"min": 5, "median": 7.5, "max": 10}
    again = SequenceRecognizer.load(tmp_path / "rec")
    assert again.config.frames is None and again.vocab == rec.vocab

    fixed = SymbolCache(tmp_path / "fixed", TRAIN_TEXTS[:4], per_text=2)
    rec = load_or_train_sequence_recognizer(fixed, units="chars", settings=tiny, device="cpu",
                                            progress=False)
    assert rec.config.frames == FRAMES and "train_frames" not in rec.metrics


@pytest.mark.numerics
def test_the_shipped_recognizer_reads_as_it_always_has():
    rec = SequenceRecognizer.load(shipped.fixed_recognizer())
    assert rec.config.frames == 28 and len(rec.vocab) == 26 and " " not in rec.vocab
    clips = np.random.default_rng(0).integers(0, 256, (2, 40, 48, 48, 3), dtype=np.uint8)
    clips[:, :, 16:32, 16:32] = 0
    with torch.no_grad():
        log_probs = rec.net(rec.prepare(clips))  # (2, 28, 27): resampled to 28 frames
    assert log_probs.shape == (2, 28, 27)
    # Computed before own-length reading existed (same weights, same input).
    expected = torch.tensor([[-2.3392, -6.7782, -4.9172, -8.0862],
                             [-0.0245, -8.6750, -7.8779, -11.5708],
                             [-0.0007, -12.1547, -12.6643, -15.1787]])
    assert torch.allclose(log_probs[0, :3, :4], expected, atol=1e-3)
    readings = rec.read(clips)
    assert [t for t, _ in readings] == ["w", "w"]
    assert [round(c, 4) for _, c in readings] == [0.9837, 0.9862]
    # A list of two lengths reads clip 0 alone: the same text, the confidence to MKL's rounding
    # of a batch of one against a batch of two (bit-equal only on some numeric paths).
    alone = rec.read([clips[0], clips[1, :20]])[0]
    assert alone[0] == readings[0][0] and alone[1] == pytest.approx(readings[0][1], abs=1e-5)


@pytest.mark.numerics
def test_evaluate_reports_each_reader_and_their_agreement(reader, tmp_path):
    """Two readers of one corpus, the second made to read "a" as "b" and "b" as "a": they agree
    on the clips without an a or a b, and report.json keeps each one's groups."""
    texts = ["a", "b", "c", "ab", "ba", "cc"]
    cache = SymbolCache(tmp_path / "corpus", texts, per_text=4, seed=3)
    classifier = train_recognizer(cache, cache.split(0.25)[0],
                                  config=RecognizerConfig(frames=8, size=16, width=8,
                                                          feature_dim=16),
                                  settings=TrainSettings(steps=5), device="cpu", progress=False)
    swapped = SequenceRecognizer(reader.net, ["b", "a", "c"], reader.config)
    report = evaluate(SymbolPipe(texts), cache, tmp_path / "two", per_text=2,
                      recognizer=classifier, readers={"first": reader, "swapped": swapped},
                      progress=False)
    bt = json.loads((tmp_path / "two" / "report.json").read_text())["back_translation"]
    assert set(bt["readers"]) == {"first", "swapped"}
    first = bt["readers"]["first"]["groups"]
    assert first["letters"]["exact"] == 1.0 and first["seen"]["exact"] == 1.0
    swapped_letters = bt["readers"]["swapped"]["groups"]["letters"]
    assert swapped_letters["exact"] == pytest.approx(1 / 3)  # only "c" reads right
    assert swapped_letters["ceiling_exact"] == pytest.approx(1 / 3, abs=0.2)
    # letters a, b, c: the readers agree on c's 2 clips of 6; seen ab, ba, cc: on cc's 2 of 6
    assert bt["agreement"]["letters"] == {"clips": 6, "same": pytest.approx(1 / 3),
                                          "same_right": pytest.approx(1 / 3)}
    assert bt["agreement"]["seen"]["same"] == pytest.approx(1 / 3)
    assert bt["reader"] == "first" and bt["groups"] == bt["readers"]["first"]["groups"]
    assert bt["met"]["letters"] is True  # swapped: 1/3 >= 0.7 * its own ceiling of ~1/3
    assert "readers agree" in (tmp_path / "two" / "report.md").read_text()
    assert report["back_translation"]["agreement"] == bt["agreement"]
