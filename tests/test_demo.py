"""`text2sign demo` end to end with a tiny budget: corpus, training, generation, reports."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from text2sign.config import build_config
from text2sign.evaluation import demo, recognizer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention on a busy machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained_demo(tmp_path_factory):
    """`demo --train` on the tiny preset (4 frames at 16 px), a 20-step recognizer."""
    patch = pytest.MonkeyPatch()
    patch.setattr(recognizer, "TrainSettings",
                  functools.partial(recognizer.TrainSettings, steps=20))
    patch.setattr(recognizer, "RecognizerConfig",
                  functools.partial(recognizer.RecognizerConfig, frames=4, size=16, width=8,
                                    feature_dim=32))
    out = tmp_path_factory.mktemp("demo")
    try:
        report = demo.run_demo(out, train=True, minutes=1.0, per_text=1, device="cpu",
                               config=build_config("tiny"), progress=False)
    finally:
        patch.undo()
    return out, report


def test_demo_train_builds_corpus_trains_and_reports(trained_demo, capsys):
    out, report = trained_demo
    corpus = out / "data" / "asl-letters"
    assert len(list(corpus.rglob("*.gif"))) == 26 * demo.DEMO_VARIANTS
    [run] = out.glob("train-*")
    assert (run / "model" / "config.json").is_file()
    assert report["texts"] == 26 and report["clips"] == 26
    # top-1 is the mean of the per-text hits, in steps of one clip out of 26
    per_text = [v["top1"] for v in report["per_text_accuracy"].values()]
    assert report["top1"] == pytest.approx(sum(per_text) / 26)
    assert report["top1"] * 26 == pytest.approx(round(report["top1"] * 26))
    assert report["top5"] * 26 == pytest.approx(round(report["top5"] * 26))
    assert report["top1"] <= report["top5"] and report["chance_top1"] == pytest.approx(1 / 26)
    # a one-minute tiny model is far from real clips; real halves are close to each other
    assert np.isfinite(report["fd"]) and report["fd"] > 2 * report["fd_floor"] > 0
    saved = json.loads((out / "eval" / "report.json").read_text())
    assert saved["clips"] == 26 and (out / "eval" / "report.md").is_file()
    assert (out / "eval" / "contact.png").is_file()
    assert len(list((out / "eval" / "gifs").glob("*.gif"))) == 26


def test_demo_with_a_given_model_reuses_corpus_and_recognizer(trained_demo, capsys, monkeypatch):
    out, first = trained_demo
    recognizers = list(out.rglob("recognizer-*"))
    assert len(recognizers) == 1
    # The cached recognizer is reused: its settings must match, so patch the same defaults.
    monkeypatch.setattr(recognizer, "TrainSettings",
                        functools.partial(recognizer.TrainSettings, steps=20))
    monkeypatch.setattr(recognizer, "RecognizerConfig",
                        functools.partial(recognizer.RecognizerConfig, frames=4, size=16,
                                          width=8, feature_dim=32))
    stamp = (recognizers[0] / "recognizer.safetensors").stat().st_mtime_ns
    [run] = out.glob("train-*")
    report = demo.run_demo(out, model=run / "model", per_text=1, device="cpu",
                           progress=False)
    assert (recognizers[0] / "recognizer.safetensors").stat().st_mtime_ns == stamp
    assert report["top1"] == first["top1"] and report["fd"] == pytest.approx(first["fd"])
    printed = capsys.readouterr().out
    for word in ("top-1", "ceiling top-1", "FD floor", "s/clip", "device", "contact sheet:"):
        assert word in printed


def test_demo_without_shipped_model_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "shipped_model", lambda: tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="demo --train"):
        demo.run_demo(tmp_path / "out", progress=False)


def test_demo_config_needs_train(tmp_path, capsys):
    from text2sign.cli import main

    assert main(["demo", "--config", str(tmp_path / "x.yaml"), "--out", str(tmp_path)]) == 2
    assert "--config applies to --train only" in capsys.readouterr().err


def test_shipped_model_fits_the_package_and_generates():
    from text2sign.pipeline import Text2SignPipeline

    folder = demo.shipped_model()
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 20 * 2**20
    pipe = Text2SignPipeline.from_pretrained(folder, device="cpu")
    assert pipe.frames >= 16 and pipe.size >= 64
    video = pipe(["A"], steps=2)
    assert video.shape == (1, pipe.frames, pipe.size, pipe.size, 3)
