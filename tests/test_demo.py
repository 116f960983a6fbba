"""`text2sign demo` end to end with a tiny budget: corpus, training, generation, reports."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from text2sign.apps import demo
from text2sign.evaluation import recognizer
from text2sign.model_folder import shipped
from text2sign.model_folder.build import build_config

pytestmark = pytest.mark.usefixtures("one_thread")


WORDS = ["at", "in", "it", "on", "up", "we", "go", "no"]


def tiny_settings(patch):
    """A 20-step classifier and 30-step readers at toy sizes."""
    from text2sign.evaluation import sequence, transformer_reader

    patch.setattr(recognizer, "TrainSettings",
                  functools.partial(recognizer.TrainSettings, steps=20))
    patch.setattr(recognizer, "RecognizerConfig",
                  functools.partial(recognizer.RecognizerConfig, frames=4, size=16, width=8,
                                    feature_dim=32))
    patch.setattr(sequence.SequenceRecognizer, "settings_class",
                  functools.partial(sequence.SequenceTrainSettings, steps=30))
    patch.setattr(sequence.SequenceRecognizer, "config_class",
                  functools.partial(sequence.SequenceConfig, size=16, width=8, hidden=16))
    reader = transformer_reader.TransformerReader
    patch.setattr(reader, "settings_class",
                  functools.partial(transformer_reader.TransformerReaderSettings, steps=30,
                                    batch_size=8))
    patch.setattr(reader, "config_class",
                  functools.partial(transformer_reader.TransformerReaderConfig, size=16, width=8,
                                    dim=32, layers=1, heads=2, decoder_layers=1))


@pytest.fixture(scope="module")
def trained_demo(tmp_path_factory):
    """`demo --train` on the tiny preset (4 frames at 16 px) with 8 words, half held out."""
    patch = pytest.MonkeyPatch()
    tiny_settings(patch)
    out = tmp_path_factory.mktemp("demo")
    patch.setattr(shipped, "recognizer", lambda: out / "none")  # train one on the corpus
    cfg = build_config("tiny", overrides=["data.holdout_texts=0.5", "data.val_fraction=0.3",
                                          "text.lowercase=true"])
    try:
        report = demo.run_demo(out, train=True, minutes=1.0, per_text=1, device="cpu",
                               config=cfg, words=WORDS, progress=False)
    finally:
        patch.undo()
    return out, report


def test_demo_train_builds_corpus_trains_and_reports(trained_demo):
    out, report = trained_demo
    corpus = out / "data" / "asl-words"
    assert len(list(corpus.rglob("*.gif"))) == (26 + len(WORDS)) * demo.CORPUS_VARIANTS
    [run] = out.glob("train-*")
    texts = (run / "model" / "texts.txt").read_text().split()
    from text2sign.data.cache import holdout_texts

    held = sorted(holdout_texts(WORDS, 0.5))
    assert held and len(held) < len(WORDS) and not set(held) & set(texts)
    assert sum(len(t) == 1 for t in texts) >= 20  # letters are never held out (some: val only)
    groups = report["back_translation"]["groups"]
    assert groups["letters"]["texts"] == 26 and groups["unseen"]["texts"] == len(held)
    n = report["texts"]
    assert n == 26 + groups["unseen"]["texts"] + groups.get("seen", {}).get("texts", 0)
    assert report["clips"] == n
    # top-1 is the mean of the per-text hits, in steps of one clip out of n
    per_text = [v["top1"] for v in report["per_text_accuracy"].values()]
    assert report["top1"] == pytest.approx(sum(per_text) / n)
    assert report["top1"] * n == pytest.approx(round(report["top1"] * n))
    assert report["top5"] * n == pytest.approx(round(report["top5"] * n))
    assert report["top1"] <= report["top5"] and report["chance_top1"] == pytest.approx(1 / n)
    # a one-minute tiny model is far from real clips; real halves are close to each other
    assert np.isfinite(report["fd"]) and report["fd"] > 2 * report["fd_floor"] > 0
    saved = json.loads((out / "eval" / "report.json").read_text())
    assert saved["back_translation"]["groups"]["unseen"]["clips"] == len(held)
    assert "## Back-translation" in (out / "eval" / "report.md").read_text()
    assert (out / "eval" / "contact.png").is_file()
    assert (out / "readers" / "conv-gru" / "sequence.safetensors").is_file()  # left for reuse
    assert (out / "readers" / "transformer" / "transformer.safetensors").is_file()
    bt = report["back_translation"]
    assert set(bt["readers"]) == {"conv-gru", "transformer"} and bt["reader"] in bt["readers"]
    assert set(bt["agreement"]) == set(bt["groups"]) == set(bt["met"])


def test_demo_with_a_given_model_and_recognizer_reuses_them(trained_demo, capsys, monkeypatch):
    out, first = trained_demo
    tiny_settings(monkeypatch)
    [run] = out.glob("train-*")
    saved = out / "readers" / "conv-gru" / "sequence.safetensors"
    stamp = saved.stat().st_mtime_ns
    again = out / "again"
    report = demo.run_demo(again, model=run / "model", per_text=1, device="cpu",
                           recognizers=[out / "readers" / "conv-gru",
                                        out / "readers" / "transformer"],
                           words=WORDS, progress=False)
    assert saved.stat().st_mtime_ns == stamp
    bt, bt_first = report["back_translation"]["groups"], first["back_translation"]["groups"]
    assert bt["unseen"]["cer"] == pytest.approx(bt_first["unseen"]["cer"])
    assert bt["letters"]["ceiling_cer"] == pytest.approx(bt_first["letters"]["ceiling_cer"])
    printed = capsys.readouterr().out
    for word in ("top-1", "FD floor", "s/clip", "device", "contact sheet:", "reader conv-gru:",
                 "reader transformer:", "unseen texts", "ceiling CER", "readers agree"):
        assert word in printed


def test_demo_without_shipped_model_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "model", lambda: tmp_path / "missing")
    monkeypatch.setattr(shipped, "student", lambda: tmp_path / "missing-student")
    with pytest.raises(FileNotFoundError, match="demo --train"):
        demo.run_demo(tmp_path / "out", progress=False)


def test_demo_words_ask_the_models_training_texts():
    from text2sign.data.cache import split_fraction
    from text2sign.data.fingerspelling import clip_paths
    from text2sign.model_folder.folder_io import training_texts
    from text2sign.model_folder.model_info import ModelInfo

    words = ["cat", "dog", "sun", "ant", "owl", "bee", "A"]
    trained = training_texts(ModelInfo(build_config("tiny")), ["CAT", "dog", "sun", "a"])
    seen, unseen = demo.demo_words(trained, words, count=2, val_fraction=0.05)
    assert unseen == ["ant", "owl"]  # never trained on; letters are not words
    # trained on, with one of its 8 clips under the split's 0.05 (dog's v06: 0.04; cat's and
    # sun's lowest are 0.18 and 0.07)
    assert seen == ["dog"]
    assert min(split_fraction(p) for p in clip_paths("sun", demo.DEMO_VARIANTS)) > 0.05
    assert clip_paths("cat", 2) == ["ase/cat-v00.gif", "ase/cat-v01.gif"]
    assert demo.unseen_texts(trained, ["Cat", "hello world"], 5) == ["hello world"]


def test_demo_config_needs_train(tmp_path, capsys):
    from text2sign.cli import main

    assert main(["demo", "--config", str(tmp_path / "x.yaml"), "--out", str(tmp_path)]) == 2
    assert "--config applies to --train only" in capsys.readouterr().err


@pytest.mark.numerics
def test_shipped_model_fits_the_package_and_spells():
    """The shipped model: clips as long as the text at 6.25 fps (its duration model in the
    folder), 128x128 within 30 MB, text order aligned with time and each frame given its place
    in its letter, fine-tuned from the 28-frame words model on letters, words, long words and
    phrases; pinned output of 2 DPM-Solver++ steps from seed 0 at its own guidance (7)."""
    from text2sign.model_folder.pipeline import Text2SignPipeline

    folder = shipped.model()
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 30 * 2**20
    pipe = Text2SignPipeline.from_pretrained(folder, device="cpu")
    assert (pipe.fps, pipe.size, pipe.config.data.max_frames) == (6.25, 128, 80)
    assert pipe.denoiser.config["alignment"] == "monotonic"
    assert pipe.denoiser.config["frame_context"] is True
    assert {"A", "hello", "thank you"} <= set(pipe.training_texts)
    assert len(pipe.training_texts) > 2500
    assert pipe.info.init_from["given"] == "shipped:demo"  # the 28-frame words model
    assert "/work" not in (folder / "config.json").read_text()  # no machine paths
    assert pipe.lengths(["hello", "thank you", "christopher"]) == [21, 34, 43]
    assert pipe.lengths(["A", "go"]) == [7, 10]  # a letter alone is held (real: ~6.6 frames)
    video = pipe(["hello"], steps=2, seed=0)
    assert video.shape == (1, 21, 128, 128, 3)
    expected = [[44, 126, 24], [60, 141, 30], [72, 171, 34], [85, 191, 35], [78, 195, 30],
                [83, 187, 30], [89, 179, 44], [79, 147, 35]]
    got = video[0, 10, 64, 60:68].astype(int)
    assert np.abs(got - np.array(expected)).max() <= 2, got.tolist()
    means = [18.666, 18.253, 18.546, 16.513, 15.039, 15.014, 14.791, 14.29, 14.727, 15.256,
             16.801, 17.279, 17.097, 17.729, 16.956, 15.657, 13.071, 18.699, 19.503, 19.359,
             15.114]
    np.testing.assert_allclose(video[0].reshape(21, -1).mean(1), means, atol=0.05)


@pytest.mark.numerics
def test_shipped_student_is_the_default_and_samples_in_four_evaluations():
    """The shipped student: the demo model distilled for 4 lcm steps with guidance 4-8 folded
    in, every command's default, timed by its teacher's duration model; one denoiser evaluation
    a step; pinned output of its own 4 steps from seed 0 at its default guidance (7)."""
    from text2sign.model_folder.pipeline import Text2SignPipeline
    from text2sign.model_folder.resolve import resolve_model

    folder = shipped.student()
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 30 * 2**20
    assert resolve_model().path == folder and resolve_model().name == "shipped:student"
    teacher = resolve_model(steps=25)  # the full sampler: its teacher
    assert (teacher.path, teacher.name) == (shipped.model(), "shipped:demo")
    pipe = Text2SignPipeline.from_pretrained(None, device="cpu")
    dc, sc = pipe.config.distill, pipe.config.sample
    assert (dc.steps, dc.teacher, dc.guidance_min, dc.guidance_max) == (4, "shipped:demo", 4, 8)
    assert (sc.sampler, sc.steps, sc.guidance) == ("lcm", 4, 7.0)
    assert "/work" not in (folder / "config.json").read_text()  # no machine paths
    assert pipe.lengths(["A", "hello", "thank you", "christopher"]) == [7, 21, 34, 43]
    calls = []
    forward = pipe.denoiser.forward
    pipe.denoiser.forward = lambda x, t, text: calls.append(len(x)) or forward(x, t, text)
    video = pipe(["hello"], seed=0)
    assert calls == [1, 1, 1, 1] and video.shape == (1, 21, 128, 128, 3)
    expected = [[101, 102, 40], [116, 145, 57], [123, 169, 59], [128, 195, 57], [152, 212, 61],
                [156, 214, 64], [126, 165, 57], [59, 80, 28]]
    got = video[0, 10, 64, 60:68].astype(int)
    assert np.abs(got - np.array(expected)).max() <= 2, got.tolist()
    means = [15.396, 15.61, 15.497, 14.817, 13.372, 13.098, 13.166, 12.875, 12.246, 13.93, 14.161,
             14.209, 13.86, 13.828, 14.045, 13.794, 11.908, 13.663, 13.554, 13.332, 13.335]
    np.testing.assert_allclose(video[0].reshape(21, -1).mean(1), means, atol=0.05)


# The shipped multilingual model, per language: (code, text, frames, frame T // 2 row 64
# pixels 60-67, per-frame means) of 2 DPM-Solver++ steps from seed 0 at its guidance (7).
MULTILINGUAL_PINS = [
    ("ase", "hello", 21,
     [[90, 204, 70], [98, 182, 67], [123, 190, 72], [141, 204, 74], [156, 227, 89],
      [129, 186, 72], [43, 74, 16], [0, 9, 3]],
     [22.569, 22.541, 21.545, 17.379, 17.973, 18.083, 18.353, 16.78, 16.245, 19.853, 20.971,
      21.19, 21.226, 20.798, 20.9, 20.084, 13.829, 19.577, 21.828, 21.591, 18.185]),
    ("gsg", "knödel", 19,
     [[0, 0, 0], [0, 0, 0], [0, 0, 0], [2, 1, 4], [7, 5, 3], [1, 2, 5], [4, 6, 1], [6, 4, 5]],
     [12.671, 21.344, 19.536, 14.778, 14.574, 13.933, 11.654, 11.682, 8.813, 12.186, 15.801,
      15.389, 15.527, 17.68, 15.886, 10.987, 13.552, 11.181, 2.742]),
    ("ukl", "борщ", 15,
     [[3, 4, 3], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 2, 0], [0, 2, 0], [0, 3, 0], [0, 4, 0]],
     [18.309, 20.028, 19.78, 16.477, 22.303, 21.645, 19.73, 15.469, 18.506, 18.666, 12.1, 18.153,
      21.476, 21.15, 8.763]),
    ("cse", "prezident", 40,  # a two-handed alphabet
     [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
     [3.557, 29.607, 29.177, 28.612, 5.877, 27.829, 27.196, 26.033, 15.87, 26.901, 26.688,
      18.521, 4.507, 11.655, 13.254, 14.838, 12.866, 10.354, 5.233, 17.889, 19.057, 15.477,
      21.532, 29.496, 26.728, 12.104, 6.053, 28.664, 30.43, 28.229, 4.514, 25.206, 25.059,
      26.589, 24.54, 13.408, 24.87, 28.478, 28.0, 6.396]),
]
SIGNED = ["ase", "asq", "bzs", "cse", "csq", "eso", "gsg", "gss", "ise", "jos", "lls", "mfs",
          "psr", "sgg", "ssp", "svk", "swl", "tsm", "ukl"]


@pytest.fixture(scope="module")
def multilingual():
    from text2sign.model_folder.pipeline import Text2SignPipeline

    return Text2SignPipeline.from_pretrained(shipped.multilingual_model(), device="cpu")


def test_shipped_multilingual_model_fits_the_package_with_its_reader(multilingual):
    """The demo model fine-tuned on 19 alphabets (every real one; fsl is ASL relabelled): within
    30 MB with the reader of every alphabet in its folder, each language timed at its own pace,
    chosen when a language the default model lacks is asked."""
    from text2sign.evaluation.readers import find_reader_folders, load_reader
    from text2sign.model_folder.resolve import resolve_model

    folder = shipped.multilingual_model()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 30 * 2**20
    assert multilingual.languages == SIGNED and multilingual.default_language == "ase"
    # its second run started from the first (shipped:demo fine-tuned 3,625 steps, shipped before)
    assert multilingual.info.init_from["given"] == "shipped:multilingual"
    assert (multilingual.fps, multilingual.size) == (6.25, 128)
    # its decoder refitted to the corpus (text2sign refit-decoder), its latent space kept
    refit = multilingual.info.autoencoder["decoder_refit"]
    assert (refit["steps"], refit["data"], refit["from"]) == (4000, "data/multi",
                                                              "shipped:multilingual")
    assert "/work" not in (folder / "config.json").read_text()  # no machine paths
    assert {"A", "thank you", "knödel"} - set(multilingual.training_texts) == {"knödel"}
    assert resolve_model(language="ukl").path == folder
    readers = find_reader_folders(folder, None)
    assert readers == [folder / "recognizer"]
    reader = load_reader(readers[0], "cpu")
    assert sorted(reader.languages) == SIGNED
    with pytest.raises(ValueError, match="ukl.*борщ|борщ.*ukl|ї|letters"):
        multilingual.check_languages(["борщї"], "asq")  # Cyrillic is no Austrian letter


# The shipped multilingual student, per language: (code, text, frames, frame T // 2 row 64
# pixels 60-67, per-frame means) of its own 4 lcm steps from seed 0 at its guidance (7).
STUDENT_PINS = [
    ("ase", "hello", 21,
     [[193, 100, 81], [199, 132, 53], [214, 171, 34], [231, 206, 35], [199, 206, 42],
      [121, 155, 41], [31, 71, 23], [0, 20, 13]],
     [14.355, 14.497, 13.503, 13.768, 14.101, 12.638, 12.805, 12.337, 9.455, 12.417, 12.882,
      13.354, 13.187, 13.217, 13.237, 12.725, 10.797, 12.782, 12.448, 11.814, 11.373]),
    ("gsg", "knödel", 19,
     [[237, 67, 68], [255, 72, 70], [255, 68, 65], [223, 55, 55], [158, 38, 36], [102, 22, 20],
      [47, 1, 7], [22, 0, 0]],
     [5.825, 12.964, 13.347, 12.025, 11.697, 11.351, 11.741, 12.495, 11.312, 12.418, 11.732,
      10.575, 13.292, 13.911, 12.573, 10.276, 11.388, 11.332, 2.339]),
    ("ukl", "борщ", 15,
     [[0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [4, 5, 0]],
     [12.968, 13.736, 13.703, 15.67, 14.851, 12.991, 13.582, 14.182, 13.288, 13.168, 13.456,
      15.956, 16.567, 13.373, 9.733]),
    ("cse", "prezident", 40,  # a two-handed alphabet
     [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
     [7.099, 24.308, 23.94, 23.899, 5.732, 19.659, 21.628, 24.473, 13.054, 24.316, 24.855,
      24.519, 3.143, 7.787, 7.776, 8.095, 5.229, 7.471, 5.305, 15.617, 14.946, 18.027, 23.547,
      25.044, 23.643, 3.03, 6.818, 23.094, 22.857, 22.814, 22.29, 13.149, 15.06, 21.724, 19.221,
      16.67, 22.641, 23.853, 22.45, 9.272]),
]


@pytest.fixture(scope="module")
def multilingual_student():
    from text2sign.model_folder.pipeline import Text2SignPipeline

    return Text2SignPipeline.from_pretrained(shipped.multilingual_student(), device="cpu")


def test_shipped_multilingual_student_signs_every_language_in_four_evaluations(
        multilingual_student, multilingual):
    """The multilingual model distilled for 4 lcm steps (guidance 4-8 folded in): within 30 MB
    with its teacher's reader in its folder, timed by its teacher's duration model, loaded by
    name; a language the default student lacks still picks its teacher (the student reads back
    below it)."""
    from text2sign.evaluation.readers import find_reader_folders, load_reader
    from text2sign.model_folder.resolve import resolve_model

    pipe, folder = multilingual_student, shipped.multilingual_student()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 30 * 2**20
    assert pipe.languages == SIGNED and pipe.default_language == "ase"
    dc, sc = pipe.config.distill, pipe.config.sample
    assert (dc.steps, dc.teacher, dc.guidance_min, dc.guidance_max) == (
        4, "shipped:multilingual", 4, 8)
    assert (sc.sampler, sc.steps, sc.guidance) == ("lcm", 4, 7.0)
    assert "/work" not in (folder / "config.json").read_text()  # no machine paths
    # the teacher's refitted decoder: one latent space, drawn alike
    teacher_ae = shipped.multilingual_model() / "autoencoder.safetensors"
    assert (folder / "autoencoder.safetensors").read_bytes() == teacher_ae.read_bytes()
    assert pipe.info.autoencoder["decoder_refit"]["taken_from"] == "shipped:multilingual"
    named = resolve_model("shipped:multilingual-student")
    assert (named.path, named.name) == (folder, "shipped:multilingual-student")
    assert resolve_model(language="ukl").path == shipped.multilingual_model()
    texts, codes = ["hello", "knödel", "борщ", "prezident"], ["ase", "gsg", "ukl", "cse"]
    assert pipe.lengths(texts, languages=codes) == multilingual.lengths(texts, languages=codes)
    [reader] = find_reader_folders(folder, None)
    assert sorted(load_reader(reader, "cpu").languages) == SIGNED
    calls = []
    forward = pipe.denoiser.forward
    pipe.denoiser.forward = lambda x, t, text: calls.append(len(x)) or forward(x, t, text)
    try:
        pipe(["борщ"], seed=0, language="ukl")
    finally:
        pipe.denoiser.forward = forward
    assert calls == [1, 1, 1, 1]


@pytest.mark.numerics
@pytest.mark.parametrize("pin", STUDENT_PINS, ids=[p[0] for p in STUDENT_PINS])
def test_shipped_multilingual_student_samples_each_language_as_pinned(multilingual_student, pin):
    code, text, frames, row, means = pin
    assert_pinned(multilingual_student([text], seed=0, language=code), frames, row, means)


@pytest.mark.numerics
@pytest.mark.parametrize("pin", MULTILINGUAL_PINS, ids=[p[0] for p in MULTILINGUAL_PINS])
def test_shipped_multilingual_model_samples_each_language_as_pinned(multilingual, pin):
    code, text, frames, row, means = pin
    assert multilingual.lengths([text], languages=[code]) == [frames]
    assert_pinned(multilingual([text], steps=2, seed=0, language=code), frames, row, means)


def assert_pinned(video: np.ndarray, frames: int, row: list, means: list) -> None:
    """One 128 x 128 clip of ``frames`` frames: its middle frame's row 64, pixels 60-67, within 2
    levels of ``row``, and each frame's mean within 0.05 of ``means``."""
    assert video.shape == (1, frames, 128, 128, 3)
    got = video[0, frames // 2, 64, 60:68].astype(int)
    assert np.abs(got - np.array(row)).max() <= 2, got.tolist()
    np.testing.assert_allclose(video[0].reshape(frames, -1).mean(1), means, atol=0.05)


@pytest.mark.numerics
def test_letters_model_loads_and_samples_as_before():
    """The letters model, written before aligned conditioning existed (no alignment setting in
    its config.json), loads as alignment "none" and samples what it sampled when it shipped."""
    from text2sign.model_folder.pipeline import Text2SignPipeline

    folder = shipped.letters_model()
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 30 * 2**20
    pipe = Text2SignPipeline.from_pretrained(folder, device="cpu")
    assert pipe.denoiser.config["alignment"] == "none"
    assert pipe.frames == 16 and pipe.size == 64
    assert pipe.training_texts == [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    video = pipe(["A"], steps=2, seed=0)
    assert video.shape == (1, pipe.frames, pipe.size, pipe.size, 3)
    # Pinned (diffusers' expected_slice): 2 DPM-Solver++ steps from seed 0 through the shipped
    # weights and their autoencoder. uint8 pixels of frame 8, row 31, by ATOL levels (rounding
    # at a level's edge flips one), and the per-frame means.
    expected = [[0, 8, 0], [0, 5, 5], [0, 0, 24], [95, 42, 128], [191, 118, 225],
                [89, 52, 141], [0, 61, 101], [0, 158, 183]]
    got = video[0, 8, 31, 15:23].astype(int)
    assert np.abs(got - np.array(expected)).max() <= 2, got.tolist()
    means = [10.829, 10.173, 9.801, 9.383, 9.77, 9.942, 9.927, 9.98, 9.907, 9.684, 9.759, 9.632,
             9.571, 9.846, 9.56, 9.351]
    np.testing.assert_allclose(video[0].reshape(pipe.frames, -1).mean(1), means, atol=0.05)


@pytest.mark.numerics
def test_shipped_recognizer_reads_real_clips_of_words(tmp_path):
    """The recognizer shipped for back-translation spells real clips of words, unseen ones too."""
    from text2sign.data.dataset import open_clips
    from text2sign.data.fingerspelling import build_fingerspelling_corpus
    from text2sign.evaluation.sequence import SequenceRecognizer, read_clips

    words = ["hello", "thank", "across", "agree"]  # the last two are held out in training
    build_fingerspelling_corpus(tmp_path, words=words, letters=False, frames=28, size=128,
                                progress=False)
    cache = open_clips(tmp_path, 28, 128, progress=False)
    rec = SequenceRecognizer.load(shipped.fixed_recognizer())
    assert rec.units == "chars" and len(rec.vocab) == 26
    readings = dict(zip(cache.texts, read_clips(rec, cache, list(range(len(cache)))),
                        strict=True))
    assert sum(readings[w] == w for w in words) >= 3, readings


def recognizer_on_noise(folder, frames: int):
    """A shipped recognizer, two seeded uint8 noise clips of ``frames`` frames at 48x48, and its
    log-probabilities on them (2, frames, units + 1)."""
    import torch

    from text2sign.evaluation.sequence import SequenceRecognizer

    rec = SequenceRecognizer.load(folder)
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (2, frames, 48, 48, 3), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        return rec, clips, rec.net(rec.prepare(clips))


@pytest.mark.numerics
def test_shipped_recognizer_outputs_pinned():
    """The shipped recognizer's log-probabilities on seeded noise clips, pinned (atol 1e-4)."""
    import torch

    rec, clips, log_probs = recognizer_on_noise(shipped.fixed_recognizer(), 28)  # (2, 28, 27)
    expected_first = torch.tensor([
        [-2.167388e-01, -3.935353e+00, -3.061214e+00, -9.316812e+00, -9.455524e+00, -6.788571e+00],
        [-4.524470e-03, -7.308082e+00, -8.634629e+00, -1.415714e+01, -1.447164e+01, -9.089075e+00],
    ])
    expected_last = torch.tensor([-14.108606, -14.480612, -10.789952, -13.019353])
    torch.testing.assert_close(log_probs[0, :2, :6], expected_first, atol=1e-4, rtol=0)
    torch.testing.assert_close(log_probs[1, -1, -4:], expected_last, atol=1e-4, rtol=0)
    assert [text for text, _ in rec.read(clips)] == ["a", "hv"]

