"""Clips that keep their own length: rate resampling, the variable-length cache, length buckets,
the duration model, and training and sampling at a frame rate, on toy corpora made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import killed_after, losses, same_tensors

from text2sign.data import cache as cache_module
from text2sign.data.cache import ClipCache, prepare_cache
from text2sign.data.clips import fit_rate, fit_space, rate_length
from text2sign.data.video_io import write_gif
from text2sign.model_folder.build import build_config
from text2sign.model_folder.pipeline import Text2SignPipeline
from text2sign.models.duration import DurationModel
from text2sign.training.loop import LanguageDraw, LengthBucketSampler, StepBatchSampler, train

COLOURS = {"A": (255, 0, 0), "B": (0, 255, 0), "C": (0, 0, 255), "D": (255, 255, 0)}
SOURCE_FPS = 8.0
LETTER_FRAMES = 4  # source frames a letter lasts: 0.5 s, 2 frames at 4 fps


def spell(text: str, size: int = 16, shift: int = 0) -> np.ndarray:
    """A clip of ``text``: each letter a square of its colour for LETTER_FRAMES frames."""
    frames = []
    for t, letter in enumerate(x for x in text for _ in range(LETTER_FRAMES)):
        frame = np.zeros((size, size, 3), np.uint8)
        x = 2 + shift + t % 3
        frame[4:9, x:x + 5] = COLOURS[letter]
        frames.append(frame)
    return np.stack(frames)  # (LETTER_FRAMES * len(text), size, size, 3)


def make_corpus(root: Path, texts: list[str], variants: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for text in texts:
        for k in range(variants):
            write_gif(root / f"{text}-{k}.gif", spell(text, shift=k), fps=SOURCE_FPS)
            (root / f"{text}-{k}.txt").write_text(text)
    return root


TEXTS = ["A", "B", "C", "AB", "BA", "CA", "ABC", "CAB"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("length-corpus"), TEXTS)


def test_rate_keeps_the_duration_and_squeezes_past_the_limit():
    clip = np.arange(25, dtype=np.uint8)[:, None, None, None].repeat(3, -1)  # (25, 1, 1, 3)
    out, squeezed = fit_rate(clip, 25.0, 6.25, max_frames=10)
    assert not squeezed and out[:, 0, 0, 0].tolist() == [2, 6, 10, 14, 18, 22]  # centres
    assert rate_length(25 / 25.0, 6.25) == 6 and rate_length(0.01, 6.25) == 1
    long = np.zeros((100, 1, 1, 3), np.uint8)
    out, squeezed = fit_rate(long, 25.0, 6.25, max_frames=10)
    assert squeezed and len(out) == 10


def test_variable_cache_round_trip_and_an_interrupted_prepare_resumes(corpus, tmp_path,
                                                                       monkeypatch):
    cache = prepare_cache(corpus, 16, 16, out=tmp_path / "c", time_mode="fps", fps=4.0,
                          progress=False, workers=1)
    assert cache.variable and cache.data_fps == 4.0
    by_path = dict(zip(cache.paths, range(len(cache)), strict=True))
    for text in TEXTS:
        i = by_path[f"{text}-1.gif"]
        assert cache.lengths[i] == 2 * len(text) and cache.texts[i] == text
        want, _ = fit_rate(spell(text, shift=1), SOURCE_FPS, 4.0, 16)
        assert np.array_equal(cache[i], fit_space(want, 16))
    with pytest.raises(ValueError, match="own lengths"):
        _ = cache.clip_shape
    assert ClipCache.open(tmp_path / "c").lengths == cache.lengths

    # A prepare that dies after three clips leaves them committed; the next one decodes the rest.
    real_decode, calls = cache_module._decode, []

    def dying(job):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(job)
        return real_decode(job)

    monkeypatch.setattr(cache_module, "_decode", dying)
    monkeypatch.setattr(cache_module, "SAVE_EVERY_S", 0.0)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(corpus, 16, 16, out=tmp_path / "r", time_mode="fps", fps=4.0,
                      progress=False, workers=1)
    partial = ClipCache.open(tmp_path / "r")
    assert len(partial) == 3
    monkeypatch.setattr(cache_module, "_decode", real_decode)
    resumed = prepare_cache(corpus, 16, 16, out=tmp_path / "r", time_mode="fps", fps=4.0,
                            progress=False, workers=1)
    assert resumed.index["decoded"] == len(cache) - 3
    assert resumed.paths == cache.paths and resumed.lengths == cache.lengths
    assert all(np.array_equal(resumed[i], cache[i]) for i in range(len(cache)))


def test_length_buckets_cover_every_clip_each_epoch_and_resume():
    lengths = [2, 2, 4, 4, 4, 6, 2, 8, 4, 6, 2]
    sampler = LengthBucketSampler(lengths, batch_size=2, world=1, rank=0, seed=5, start=0)
    batches = sampler.epoch(0)
    assert len(batches) == sampler.per_epoch == 2 + 2 + 1 + 1  # 4 twos, 4 fours, 2 sixes, 1 eight
    seen = [i for b in batches for i in b]
    assert set(seen) == set(range(len(lengths)))  # every clip at least once an epoch
    assert all(len({lengths[i] for i in b}) == 1 for b in batches)  # one length a batch
    assert sampler.epoch(0) == batches and sampler.epoch(1) != batches  # deterministic, reshuffled
    stream = iter(sampler)
    first = [next(stream) for _ in range(15)]
    resumed = iter(LengthBucketSampler(lengths, 2, 1, 0, seed=5, start=9))
    assert [next(resumed) for _ in range(6)] == first[9:]  # mid second epoch
    ranks = [iter(LengthBucketSampler(lengths, 1, 2, r, seed=5, start=0)) for r in (0, 1)]
    assert [next(ranks[0]) + next(ranks[1]) for _ in range(3)] == LengthBucketSampler(
        lengths, 1, 2, 0, seed=5, start=0).epoch(0)[:3]  # each rank its half of a global batch
    sampler.check_state(sampler.state())
    with pytest.raises(ValueError, match="data order cannot continue"):
        LengthBucketSampler(lengths[:-1], 2, 1, 0, 5, 0).check_state(sampler.state())


def test_language_draw_gives_a_small_alphabet_its_share_and_resumes():
    """train.language_alpha: 90 ASL clips and 10 of another alphabet; alpha 0.5 gives the small
    one 25% of an epoch (sqrt 10 / (sqrt 90 + sqrt 10)), its clips repeated, ASL's a new subset
    each epoch; alpha 0 half each; null the corpus's own 10%."""
    languages = ["ase"] * 90 + ["gsg"] * 10
    lengths = [2 + i % 3 for i in range(100)]
    draw = LanguageDraw(languages, 0.5)
    assert draw.quotas.tolist() == [75, 25] and draw.state()["language_alpha"] == 0.5
    epoch = draw(100, np.random.default_rng(0))
    assert len(epoch) == 100 and sum(languages[i] == "gsg" for i in epoch) == 25
    assert set(i for i in epoch if languages[i] == "gsg") == set(range(90, 100))  # all, repeated
    assert LanguageDraw(languages, 0.0).quotas.tolist() == [50, 50]
    assert not LanguageDraw(languages, None).groups and not LanguageDraw(["ase"] * 5, 0.5).groups

    sampler = LengthBucketSampler(lengths, 4, 1, 0, seed=2, start=0, draw=draw)
    assert sampler.per_epoch == 25
    stream = iter(sampler)
    batches = [next(stream) for _ in range(100)]  # four epochs
    assert all(len({lengths[i] for i in b}) == 1 for b in batches)
    share = sum(languages[i] == "gsg" for b in batches for i in b) / 400
    assert 0.2 < share < 0.3  # against 0.1 undrawn
    resumed = iter(LengthBucketSampler(lengths, 4, 1, 0, seed=2, start=37, draw=draw))
    assert [next(resumed) for _ in range(10)] == batches[37:47]
    with pytest.raises(ValueError, match="data order cannot continue"):
        LengthBucketSampler(lengths, 4, 1, 0, 2, 0).check_state(sampler.state())  # alpha dropped
    steps = iter(StepBatchSampler(100, 10, 1, 0, seed=2, start=0, draw=draw))
    assert sum(languages[i] == "gsg" for _ in range(10) for i in next(steps)) == 25


def test_duration_model_times_unseen_orders_of_known_letters():
    frames = {"A": 3, "B": 5, "C": 2, "D": 4}
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list(frames), rng.integers(1, 5))) for _ in range(40)]
    texts = [t for t in texts if t not in ("DCBA", "BAD", "CDC")]
    model = DurationModel.fit(texts, [sum(frames[c] for c in t) for t in texts], units="chars",
                              fps=6.25, max_frames=96)
    for unseen in ("DCBA", "BAD", "CDC"):
        assert model.frames(unseen) == sum(frames[c] for c in unseen)
    again = DurationModel.from_json(model.to_json())
    assert again.frames("DCBA") == model.frames("DCBA")
    assert model.frames("E") >= 1  # an unknown unit gets the mean duration
    with pytest.raises(ValueError, match="not a duration model"):
        DurationModel.from_json('{"units": "chars"}')


def test_duration_model_holds_a_lone_letter_longer():
    """Spelled alone, a letter is held (the real corpus: 6.6 frames, against ~5.8 that a word's
    letters sum to); words keep their per-letter sums."""
    frames = {"A": 3, "B": 5, "C": 2, "D": 4}
    rng = np.random.default_rng(1)
    texts = ["".join(rng.choice(list(frames), rng.integers(2, 5))) for _ in range(60)]
    texts = [t for t in texts if t not in ("DCBA", "BAD")] + list(frames)

    def real(text):
        return sum(frames[c] for c in text) + (3 if len(text) == 1 else 0)

    model = DurationModel.fit(texts, [real(t) for t in texts], units="chars", fps=6.25,
                              max_frames=96)
    assert round(model.alone) == 3
    assert [model.frames(t) for t in ("A", "B", "DCBA", "BAD")] == [6, 8, 14, 12]
    again = DurationModel.from_json(model.to_json())
    assert again.frames("A") == 6
    legacy = DurationModel.from_json('{"units": "chars", "fps": 6.25, "max_frames": 96, '
                                     '"base": 0, "per_unit": {"a": 3}}')
    assert legacy.alone == 0.0 and legacy.frames("a") == 3


def fps_config(data: Path, **train):
    sets = [f"data.path={data}", "data.val_fraction=0", "train.sample_every=0",
            "data.time_mode=fps", "data.fps=4", "data.max_frames=12", "data.size=16"]
    sets += [f"train.{k}={v}" for k, v in train.items()]
    return build_config("tiny", overrides=sets)


def test_training_at_a_frame_rate_resumes_exactly_and_samples_each_text_its_length(
        corpus, tmp_path):
    cfg = fps_config(corpus, max_steps=8, checkpoint_every=3, keep_checkpoints=5, batch_size=4)
    full = tmp_path / "full"
    train(cfg, full, progress=False, device="cpu")  # 16 clips in 6 buckets: past one epoch
    part = killed_after(full, 3, tmp_path / "part")
    train(cfg, part, resume=True, progress=False, device="cpu")
    assert losses(part) == losses(full)[3:]
    ema = Path("checkpoints") / "step-000008" / "ema.safetensors"
    assert same_tensors(full / ema, part / ema)
    state = json.loads((full / "checkpoints" / "step-000008" / "state.json").read_text())
    assert state["data_order"]["sampler"] == "length-buckets"

    pipe = Text2SignPipeline.from_pretrained(full, device="cpu")
    assert (full / "model" / "duration.json").is_file() and pipe.fps == 4.0
    assert pipe.lengths(["A", "CA", "ABC"]) == [2, 4, 6]  # 0.5 s a letter at 4 fps
    mixed = pipe(["ABC", "A", "CA", "B"], steps=2, seed=1)
    assert [len(v) for v in mixed] == [6, 2, 4, 2]
    # Grouped by length, each group as if generated alone (a batch's seed: its first text's).
    alone = pipe(["A", "B"], steps=2, seed=2)
    assert np.array_equal(mixed[1], alone[0]) and np.array_equal(mixed[3], alone[1])
    assert pipe(["A", "CA"], steps=1, seconds=2.0).shape[1] == 8
    assert pipe(["A"], steps=1, num_frames=5).shape[1] == 5
    with pytest.raises(ValueError, match="over this model's limit of 12"):
        pipe.lengths(["ABCABCA"])  # 14 frames


def test_sample_cli_uses_the_model_rate(corpus, tmp_path, capsys):
    from text2sign.cli import main

    run = tmp_path / "run"
    train(fps_config(corpus, max_steps=1), run, progress=False, device="cpu")
    assert main(["sample", "--model", str(run), "CA", "B", "--steps", "1", "--out",
                 str(tmp_path / "out"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "(4 frames, 1.0 s)" in out and "(2 frames, 0.5 s)" in out
    from PIL import Image

    with Image.open(tmp_path / "out" / "CA-00.gif") as gif:
        assert gif.n_frames == 4 and gif.info["duration"] == 250  # played at 4 fps
    assert main(["sample", "--model", str(run), "ABCABCA", "--steps", "1", "--out",
                 str(tmp_path / "long"), "--device", "cpu"]) != 0
    assert "data.max_frames" in capsys.readouterr().err
    assert not (tmp_path / "long").exists()


def test_latent_cache_of_clips_of_their_own_lengths(corpus, tmp_path):
    from text2sign.data.latent_cache import latent_cache
    from text2sign.models.autoencoder import FrameAutoencoder

    cache = prepare_cache(corpus, 12, 16, out=tmp_path / "c", time_mode="fps", fps=4.0,
                          progress=False, workers=1)
    ae = FrameAutoencoder(2, 2, 8).eval()
    latents = latent_cache(ae, cache, device=torch.device("cpu"), batch_size=3, progress=False)
    assert len(latents) == len(cache)
    for i in (0, 5, len(cache) - 1):
        with torch.no_grad():
            direct = ae.encode(torch.from_numpy(cache[i][None]).permute(0, 4, 1, 2, 3).float()
                               / 127.5 - 1.0)[0]  # (C, T_i, h, w)
        assert latents[i].shape == (2, cache.lengths[i], 8, 8)
        assert torch.allclose(torch.from_numpy(latents[i]).float(), direct, atol=2e-3)
    run = tmp_path / "run"
    cfg = build_config("tiny", overrides=[
        f"data.path={corpus}", "data.val_fraction=0", "train.sample_every=0",
        "data.time_mode=fps", "data.fps=4", "data.max_frames=12", "data.size=16",
        "train.max_steps=2", "latent.enabled=true", "latent.width=8", "latent.channels=2",
        "latent.steps=3", "latent.batch_size=4", "model.params.stem=1"])
    train(cfg, run, progress=False, device="cpu")
    pipe = Text2SignPipeline.from_pretrained(run, device="cpu")
    assert [len(v) for v in pipe(["CAB", "B"], steps=1)] == [6, 2]


def test_serve_refuses_bad_texts_and_shows_each_clip_its_length(corpus, tmp_path):
    pytest.importorskip("starlette", reason="needs the [serve] extra")
    import asyncio

    from text2sign.serve.app import ApiError, Limits, Service
    from text2sign.serve.corpus import Corpus

    run = tmp_path / "run"
    train(fps_config(corpus, max_steps=1), run, progress=False, device="cpu")
    pipe = Text2SignPipeline.from_pretrained(run, device="cpu")
    service = Service(pipe, str(run), pipe.info, None, None, Corpus(corpus), Limits())
    for text, why in (("A\u0000\u0007B", "control characters"), ("AZ", "never saw"),
                      ("ABCABCA", "data.max_frames")):
        with pytest.raises(ApiError, match=why) as err:
            service.parse({"text": text})
        assert err.value.status_code == 400
    service.worker.start()
    try:
        answer = asyncio.run(service.generate(service.parse({"text": "CAB", "steps": 1})))
    finally:
        service.worker.stop()
        service.store.close()
    clip = answer["clip"]
    assert (clip["frames_count"], clip["fps"], clip["seconds"]) == (6, 4.0, 1.5)
    assert answer["real"]["frames_count"] == 6  # the real clip at its own length too
    assert service.describe()["model"]["fps"] == 4.0


def test_evaluate_scores_a_model_timed_by_its_text(corpus, tmp_path):
    from PIL import Image

    from text2sign.data.cache import FixedCountView
    from text2sign.data.dataset import open_data
    from text2sign.evaluation.evaluate import evaluate
    from text2sign.evaluation.recognizer import RecognizerConfig, TrainSettings, train_recognizer
    from text2sign.evaluation.sequence import (
        SequenceConfig,
        SequenceTrainSettings,
        train_sequence_recognizer,
    )

    run = tmp_path / "run"
    train(fps_config(corpus, max_steps=1), run, progress=False, device="cpu")
    pipe = Text2SignPipeline.from_pretrained(run, device="cpu")
    cache = open_data(pipe.config.data, progress=False, path=corpus)
    everything = list(range(len(cache)))
    sequence = train_sequence_recognizer(
        cache, everything, config=SequenceConfig(frames=None, size=16, width=8, hidden=16),
        settings=SequenceTrainSettings(steps=5, batch_size=8), device="cpu", progress=False)
    classifier = train_recognizer(
        FixedCountView(cache, 8), everything, device="cpu", progress=False,
        config=RecognizerConfig(frames=8, size=16, width=8, feature_dim=16),
        settings=TrainSettings(steps=5, batch_size=8))
    report = evaluate(pipe, cache, tmp_path / "eval", per_text=1, steps=1, recognizer=classifier,
                      sequence_recognizer=sequence, progress=False)
    seen = report["duration"]["groups"]["seen"]
    assert seen["texts"] == 5 and seen["ratio"] == pytest.approx(1.0, abs=0.01)  # toy: exact
    assert seen["frame_error"] == pytest.approx(0.0, abs=0.01)
    assert set(report["back_translation"]["groups"]) == {"letters", "seen"}
    assert "## Duration" in (tmp_path / "eval" / "report.md").read_text()
    with Image.open(tmp_path / "eval" / "gifs" / "CAB-0.gif") as gif:
        assert gif.n_frames == 6 and gif.info["duration"] == 250  # its own length, at 4 fps
    letters = evaluate(pipe, cache, tmp_path / "letters", per_text=1, steps=1,
                       recognizer=classifier, sequence_recognizer=sequence, progress=False,
                       only=["letters"], write_files=False)
    assert letters["groups"] == {"letters": 3} and letters["clips"] == 3
    with pytest.raises(ValueError, match=r"groups \['unseen-longs'\] are not among"):
        evaluate(pipe, cache, tmp_path / "x", recognizer=classifier, only=["unseen-longs"])
