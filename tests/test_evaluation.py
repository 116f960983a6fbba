"""Evaluation: the recognizer learns a toy corpus, the Frechet distance behaves, evaluate() runs."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import torch
from conftest import ListCache

from text2sign.core.config import Config
from text2sign.data.video_io import safe_names
from text2sign.evaluation.evaluate import (
    ClipScores,
    Generation,
    autoencoded_ceiling,
    evaluate,
    format_summary,
    print_report,
    render_markdown,
    score,
    tensorboard_scalars,
)
from text2sign.evaluation.metrics import frechet_distance, topk_accuracy
from text2sign.evaluation.recognizer import (
    Recognizer,
    RecognizerConfig,
    RecognizerNet,
    TrainSettings,
    load_or_train_recognizer,
    score_clips,
    train_recognizer,
)
from text2sign.evaluation.sequence import SequenceConfig, SequenceNet, SequenceRecognizer
from text2sign.model_folder.model_info import ModelInfo

TOY = RecognizerConfig(frames=8, size=16, width=8, feature_dim=32)
FAST = TrainSettings(steps=60, batch_size=16)
KINDS = ("right", "down", "left")


def toy_clip(kind: str, rng: np.random.Generator, frames: int = 8, size: int = 24) -> np.ndarray:
    """A yellow square moving right, down or left over grey, at a jittered position."""
    video = np.full((frames, size, size, 3), 30, np.uint8)  # (T, H, W, 3)
    dy, dx = rng.integers(-3, 4, 2)
    for t in range(frames):
        p = 3 + t * (size - 10) // (frames - 1)
        y, x = {"right": (size // 2, p), "down": (p, size // 2),
                "left": (size // 2, size - 4 - p)}[kind]
        y, x = int(np.clip(y + dy, 0, size - 4)), int(np.clip(x + dx, 0, size - 4))
        video[t, y:y + 4, x:x + 4] = (220, 200, 60)
    return video


class ToyCache(ListCache):
    """Squares moving right, down or left, ``per_kind`` clips each."""

    def __init__(self, path, per_kind: int = 8, seed: int = 0, frames: int = 8, size: int = 24):
        rng = np.random.default_rng(seed)
        super().__init__(path, [k for k in KINDS for _ in range(per_kind)],
                         [toy_clip(k, rng, frames, size) for k in KINDS for _ in range(per_kind)],
                         f"toy{seed:03d}{per_kind:03d}abcdef")
        self.frames, self.size = frames, size


class FakePipe:
    """Stand-in for Text2SignPipeline: returns a fresh real-looking clip per text plus noise."""

    def __init__(self, noise: float = 0.0, frames: int = 8, size: int = 24, wrong: bool = False):
        self.noise, self.frames, self.size, self.wrong = noise, frames, size, wrong
        self.device = torch.device("cpu")
        self.config, self.autoencoder, self.training_texts = Config(), None, None
        self.info = ModelInfo(self.config)
        self.calls = []
        self.fps, self.gif_fps = None, 8.0  # a fixed frame count, played at 8 fps


    def __call__(self, texts, *, steps=25, sampler="dpm++", guidance=3.0, seed=0, eta=0.0,
                 batch_size=16, progress=False):
        self.calls.append({"steps": steps, "sampler": sampler, "guidance": guidance, "seed": seed})
        rng = np.random.default_rng(1000 + seed)
        shown = ["down"] * len(texts) if self.wrong else texts  # wrong: always the same sign
        clips = np.stack([toy_clip(t, rng, self.frames, self.size) for t in shown])
        noisy = clips + rng.normal(0, self.noise * 255, clips.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)  # (N, T, H, W, 3)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = ToyCache(tmp_path_factory.mktemp("toy"))
    recognizer, top1, top5 = load_or_train_recognizer(cache, 0.25, config=TOY, settings=FAST,
                                                      device="cpu", progress=False)
    return cache, recognizer, top1, top5


def test_topk_accuracy():
    logits = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 3.0, 2.0]])
    labels = np.array([0, 0, 2])  # hit at rank 1, miss at rank 3, hit at rank 2
    assert topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(2 / 3)
    assert topk_accuracy(logits, labels, 5) == 1.0  # k capped at the number of classes
    with pytest.raises(ValueError, match="logits"):
        topk_accuracy(logits, labels[:2], 1)


def test_frechet_distance_zero_for_identical_and_grows_with_noise():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16))  # correlated features
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    distances = [frechet_distance(a, a + rng.normal(0, s, a.shape)) for s in (0.1, 0.5, 1, 2)]
    assert distances[0] > 0
    assert all(x < y for x, y in zip(distances, distances[1:], strict=False)), distances


def test_frechet_distance_matches_closed_form_for_shifted_gaussians():
    # Same covariance, means 3 apart in one dimension: d^2 = 9 (+ sampling error).
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4000, 4))
    b = rng.normal(size=(4000, 4)) + np.array([3.0, 0, 0, 0])
    assert frechet_distance(a, b) == pytest.approx(9.0, abs=0.3)
    # Isotropic scales 1 and 2 in D dims: d^2 = D * (1 - 2)^2 = 4.
    c = 2 * rng.normal(size=(4000, 4))
    assert frechet_distance(a, c) == pytest.approx(4.0, abs=0.4)
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, c[:, :3])


@pytest.mark.numerics
def test_recognizer_learns_toy_corpus(trained):
    cache, recognizer, top1, top5 = trained
    assert recognizer.classes == sorted(KINDS)
    assert top1 >= 0.99 and top5 == 1.0  # held-out clips of the same corpus
    fresh = ToyCache(cache.path, per_kind=6, seed=7)  # unseen jitter draws
    assert score_clips(recognizer, fresh, range(len(fresh)))["top1"] >= 0.85  # chance 0.33
    # Left vs right differ only in time: a time-reversed "right" clip must read as "left".
    rights = np.stack([fresh[i][::-1] for i, t in enumerate(fresh.texts) if t == "right"])
    predicted = recognizer.predict_logits(rights).argmax(axis=1)
    assert (predicted == recognizer.index["left"]).mean() >= 0.75


def test_score_clips_a_batch_at_a_time_gives_the_scores_of_all_logits(trained):
    """`score_clips` keeps each clip's hits, never the (clips, classes) logits, and scores
    the same in batches of 2 as from the logits of every clip at once."""
    from text2sign.evaluation.metrics import topk_accuracy

    cache, recognizer, _, _ = trained
    fresh = ToyCache(cache.path, per_kind=5, seed=11)
    logits = recognizer.predict_logits(np.stack([fresh[i] for i in range(len(fresh))]))
    labels = recognizer.labels(list(fresh.texts))
    whole = {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5),
             "clips": len(fresh)}
    assert score_clips(recognizer, fresh, range(len(fresh)), batch_size=2) == whole


def test_recognizer_inputs_agree_and_features_shape(trained):
    cache, recognizer, _, _ = trained
    clips = np.stack([cache[i] for i in range(4)])  # (4, T, H, W, 3) uint8
    as_float = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # (4,3,T,H,W)
    np.testing.assert_allclose(recognizer.predict_logits(clips),
                               recognizer.predict_logits(as_float), atol=1e-4)
    assert recognizer.features(clips).shape == (4, TOY.feature_dim)
    with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
        recognizer.predict_logits(clips[..., :2])


def test_recognizer_cached_and_round_trips(trained, tmp_path):
    cache, recognizer, top1, _ = trained
    folder = next(cache.path.glob("recognizer-*"))
    assert folder.name == "recognizer-" + cache.fingerprint[:12]
    assert sorted(p.name for p in folder.iterdir()) == ["recognizer.json", "recognizer.safetensors"]
    again, top1_again, _ = load_or_train_recognizer(cache, 0.25, config=TOY, settings=FAST,
                                                    progress=False)
    assert top1_again == top1
    clips = np.stack([cache[i] for i in range(3)])
    np.testing.assert_allclose(again.predict_logits(clips), recognizer.predict_logits(clips),
                               atol=1e-5)
    loaded = Recognizer.load(recognizer.save(tmp_path / "r"))
    assert loaded.classes == recognizer.classes
    with pytest.raises(FileNotFoundError, match="not a recognizer folder"):
        Recognizer.load(tmp_path)


def test_recognizer_training_is_deterministic():
    cache = ToyCache(None, per_kind=3)
    settings = TrainSettings(steps=3, batch_size=4)
    runs = [train_recognizer(cache, range(len(cache)), config=TOY, settings=settings,
                             device="cpu", progress=False) for _ in range(2)]
    clips = np.stack([cache[i] for i in range(3)])
    np.testing.assert_array_equal(*(r.predict_logits(clips) for r in runs))


def test_safe_names_are_distinct_and_safe():
    names = safe_names(["A", "a", "hello world", "hello/world", "", "ÄÖ"])
    assert names["A"] == "A"
    assert len({n.lower() for n in names.values()}) == 6
    assert all("/" not in n and " " not in n and n for n in names.values())


def test_evaluate_end_to_end_writes_reports(trained, tmp_path):
    cache, recognizer, _, _ = trained
    clean = evaluate(FakePipe(noise=0.0), cache, tmp_path / "clean", per_text=3, steps=2,
                     sampler="ddim", guidance=2.0, batch_size=4, recognizer=recognizer,
                     back_translate=False, progress=False)
    wrong = evaluate(FakePipe(wrong=True), cache, tmp_path / "wrong", per_text=3,
                     recognizer=recognizer, back_translate=False, progress=False,
                     write_files=False)
    assert clean["texts"] == 3 and clean["clips"] == 9
    assert clean["top1"] >= 0.9 and clean["top5"] == 1.0
    assert clean["fd_clips"] == 9 and clean["fd_reference_clips"] == 12
    assert clean["fd"] < 2 * clean["fd_floor"]  # real-looking clips: near the real-vs-real floor
    assert wrong["fd"] > 5 * clean["fd_floor"]  # one sign for every text: far from the corpus
    assert wrong["top1"] == pytest.approx(1 / 3, abs=0.01)
    assert clean["sampler"] == "ddim" and clean["steps"] == 2 and clean["guidance"] == 2.0
    assert clean["device"].startswith("cpu")
    assert set(clean["per_text_accuracy"]) == set(KINDS)

    out = tmp_path / "clean"
    saved = json.loads((out / "report.json").read_text())
    assert saved["top1"] == clean["top1"] and saved["fd"] == pytest.approx(clean["fd"])
    md = (out / "report.md").read_text()
    assert "| top-1 |" in md and "| right |" in md and "FD floor" in md
    assert sorted(p.name for p in (out / "gifs").iterdir())[:3] == ["down-0.gif", "down-1.gif",
                                                                     "down-2.gif"]
    from PIL import Image

    with Image.open(out / "contact.png") as sheet:
        assert sheet.height > 3 * 24  # one row per text
    assert not (tmp_path / "wrong").exists()  # write_files=False writes nothing
    assert set(tensorboard_scalars(clean)) == {"eval/top1", "eval/top5", "eval/fd",
                                               "eval/fd_floor"}


def test_a_classifier_that_cannot_tell_real_clips_apart_is_called_so(trained, tmp_path, capsys):
    cache, recognizer, _, _ = trained
    report = evaluate(FakePipe(noise=0.0), cache, tmp_path / "eval", per_text=1,
                      recognizer=recognizer, back_translate=False, progress=False)
    assert report["ceiling_top1"] >= 0.9
    assert "cannot tell" not in render_markdown(report)  # a classifier that reads its corpus
    print_report(report)
    assert "cannot tell" not in capsys.readouterr().out
    weak = dict(report, ceiling_top1=0.001)  # as on a corpus of thousands of texts
    print_report(weak)
    line = ("note: the classifier reads held-out real clips at top-1 0.001 (chance 0.333): it "
            "cannot tell this corpus's texts apart, so its top-1, top-5 and FD say little here; "
            "back-translation measures them (leave out --no-back-translation)")
    assert line in capsys.readouterr().out.splitlines()
    assert "The classifier reads held-out real clips at top-1 0.001" in render_markdown(weak)


def test_evaluate_rejects_mismatched_geometry(trained, tmp_path):
    cache, recognizer, _, _ = trained
    with pytest.raises(ValueError, match="frames=4"):
        evaluate(FakePipe(frames=4), cache, tmp_path, recognizer=recognizer,
                 back_translate=False, progress=False)


class RoundTrip(torch.nn.Module):
    """Stand-in autoencoder: identity, or one that loses everything (decodes to black)."""

    def __init__(self, lossy: bool):
        super().__init__()
        self.lossy = lossy

    def encode(self, x):
        return x

    def decode(self, z):
        return -torch.ones_like(z) if self.lossy else z


def test_autoencoded_ceiling_reported_for_latent_models(trained, tmp_path):
    cache, recognizer, top1, _ = trained
    _, val = cache.split(0.25)
    perfect = autoencoded_ceiling(RoundTrip(lossy=False), recognizer, cache, val, "cpu")
    assert perfect == pytest.approx(top1)  # a lossless round trip keeps the real ceiling
    assert autoencoded_ceiling(RoundTrip(lossy=True), recognizer, cache, val, "cpu") < 0.5
    pipe = FakePipe()
    pipe.autoencoder = RoundTrip(lossy=False)
    report = evaluate(pipe, cache, tmp_path, per_text=1, recognizer=recognizer,
                      back_translate=False, progress=False, write_files=False)
    assert report["ceiling_top1_autoencoded"] == pytest.approx(top1)
    assert "ceiling top-1 (autoencoded)" in format_summary(report)


# ----------------------------------------------------------------------------- streamed scoring
TOY_READER = SequenceConfig(frames=8, size=16, width=8, hidden=16)


def untrained_reader(texts) -> SequenceRecognizer:
    """A seeded, untrained sequence recognizer: its readings are arbitrary but repeatable."""
    torch.manual_seed(0)
    vocab = sorted({c for t in texts for c in t})
    return SequenceRecognizer(SequenceNet(len(vocab), TOY_READER), vocab, TOY_READER)


def assert_same_report(a, b, rel=1e-5, where="report"):
    """Equal keys, equal strings and counts, floats within ``rel`` (batch sizes may change the
    last bits of a convolution)."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            assert_same_report(a[key], b[key], rel, f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_report(x, y, rel, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=rel, abs=1e-6, nan_ok=True), where
    else:
        assert a == b, where


def test_evaluate_scored_in_batches_equals_one_piece(trained, tmp_path):
    cache, recognizer, _, _ = trained
    reader = untrained_reader(KINDS)
    made = []

    class Recording(FakePipe):
        def __call__(self, texts, **kwargs):
            out = super().__call__(texts, **kwargs)
            made.extend(out)
            return out

    streamed = evaluate(Recording(noise=0.3), cache, tmp_path, per_text=3, batch_size=2,
                        recognizer=recognizer, sequence_recognizer=reader, progress=False)
    assert len(made) == 9 and streamed["clips"] == 9  # 5 batches of at most 2 clips

    texts = sorted(KINDS)
    groups = {}
    for text in texts:
        groups.setdefault(streamed["per_text_accuracy"][text]["group"], []).append(text)
    prompts = [t for _ in range(3) for t in texts]
    whole = ClipScores(recognizer, {"conv-gru": reader}, prompts, None)
    whole.add(0, made)  # every clip at once
    gen = Generation(texts, groups, prompts, whole.lengths, streamed["seconds_total"], 3,
                     streamed["sampler"], streamed["steps"], streamed["guidance"], 0)
    one_piece = score(gen, whole, cache, recognizer, cache.split(0.1)[1], None,
                      streamed["model"], streamed["device"]).as_dict()
    files = {"gifs", "contact_sheet", "contact_sheet_texts", "compare_gif", "report_md"}
    assert_same_report({k: v for k, v in streamed.items() if k not in files}, one_piece)
    assert streamed["back_translation"]["groups"]  # the readings were scored too
    assert len(list((tmp_path / "gifs").iterdir())) == 9  # every clip written as it was made


class ManyTextCache(ToyCache):
    """``count`` distinct texts, two real clips each, drawn when read (nothing held)."""

    def __init__(self, path, count: int, size: int = 48):
        self.texts = [f"t{n:04d}" for n in range(count) for _ in range(2)]
        self.frames, self.size, self.path = 8, size, path
        self.fingerprint = f"many{count:06d}abcdef"

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> np.ndarray:
        return toy_clip(KINDS[i % 3], np.random.default_rng(i), self.frames, self.size)


class ManyTextPipe(FakePipe):
    def __call__(self, texts, **kwargs):
        rng = np.random.default_rng(1000 + kwargs.get("seed", 0))
        return np.stack([toy_clip(KINDS[int(t[1:]) % 3], rng, self.frames, self.size)
                         for t in texts])  # (N, T, H, W, 3)


def test_evaluate_memory_does_not_grow_with_the_texts(tmp_path):
    """tracemalloc's peak (numpy arrays included) of evaluate, files written, over 48 and 480
    texts (both fill contact.png's 48 rows): the clips are scored and written as made, so 10x
    the texts stays within 1.2x the memory (holding every generated clip, as evaluate once
    did, adds ~2 copies of the 432 extra clips: ~50 MB on a ~30 MB peak)."""
    peaks = {}
    for count in (48, 480):
        cache = ManyTextCache(tmp_path / f"c{count}", count)
        classes = sorted(set(cache.texts))
        torch.manual_seed(0)
        recognizer = Recognizer(RecognizerNet(len(classes), TOY), classes, TOY)
        reader = untrained_reader(classes)
        pipe = ManyTextPipe(frames=8, size=48)
        tracemalloc.start()
        report = evaluate(pipe, cache, tmp_path / f"out{count}", per_text=1, batch_size=8,
                          recognizer=recognizer, sequence_recognizer=reader, progress=False)
        peaks[count] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report["clips"] == count and report["contact_sheet_texts"] == 48
    added_clips = (480 - 48) * 8 * 48 * 48 * 3  # bytes
    assert peaks[480] - peaks[48] < added_clips / 4, peaks
    assert peaks[480] <= 1.2 * peaks[48], peaks
