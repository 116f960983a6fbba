"""The fingerspelling demo corpus: real recordings in, GIF + txt pairs out, deterministic."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from text2sign.data import fingerspelling as fs
from text2sign.data.video_io import read_video

TINY = {"frames": 4, "size": 16, "progress": False}


def _synthetic(num_frames: int = 6) -> fs.Skeleton:
    """Shoulders 100 px apart and a right hand whose thumb points left and index points up."""
    xyz = np.zeros((num_frames, fs.NUM_POINTS, 3), np.float32)
    valid = np.zeros((num_frames, fs.NUM_POINTS), bool)
    body = {name: fs._B0 + i for i, name in enumerate(fs.BODY_POINTS)}
    xyz[:, body["LEFT_SHOULDER"], :2] = (150, 100)
    xyz[:, body["RIGHT_SHOULDER"], :2] = (50, 100)
    valid[:, [body["LEFT_SHOULDER"], body["RIGHT_SHOULDER"]]] = True
    hand = np.zeros((fs.HAND_POINTS, 3), np.float32)
    hand[0, :2] = (100, 140)  # wrist
    for f, finger in enumerate(fs.FINGERS):
        for k, j in enumerate(finger, start=1):
            if f == 0:  # thumb: to the left
                hand[j, :2] = (100 - 8 * k, 135)
            else:  # fingers: up
                hand[j, :2] = (96 + 4 * f, 140 - 8 * k)
    xyz[:, fs._R0:fs._R0 + fs.HAND_POINTS] = hand
    valid[:, fs._R0:fs._R0 + fs.HAND_POINTS] = True
    return fs.Skeleton(xyz=xyz, valid=valid, fps=25.0)


def test_builds_every_asl_letter_as_gif_and_txt(tmp_path):
    gifs = fs.build_fingerspelling_corpus(tmp_path, **TINY)
    assert len(gifs) == 26
    assert {g.stem for g in gifs} == set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for gif in gifs[:3]:
        assert gif.parent == tmp_path / "ase"
        assert gif.with_suffix(".txt").read_text(encoding="utf-8").strip() == gif.stem
        video, fps = read_video(gif)
        assert video.shape == (4, 16, 16, 3)
        assert 1.0 <= fps <= 50.0
        assert video.max() > 100  # something bright was drawn


def test_variants_are_deterministic_jittered_and_keep_the_text(tmp_path):
    a = fs.build_fingerspelling_corpus(tmp_path / "a", variants=3, seed=1, **TINY)
    b = fs.build_fingerspelling_corpus(tmp_path / "b", variants=3, seed=1, **TINY)
    c = fs.build_fingerspelling_corpus(tmp_path / "c", variants=3, seed=2, **TINY)
    assert len(a) == 26 * 3 and a[0].name == "A-v00.gif" and a[2].name == "A-v02.gif"
    assert a[2].with_suffix(".txt").read_text(encoding="utf-8").strip() == "A"
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes()
    assert a[0].read_bytes() == c[0].read_bytes()  # variant 0 is the unjittered clip
    assert read_video(a[1])[0].tolist() != read_video(a[0])[0].tolist()
    assert read_video(a[1])[0].tolist() != read_video(c[1])[0].tolist()


def test_unknown_language_lists_the_available_ones(tmp_path):
    with pytest.raises(ValueError, match="available: .*ase"):
        fs.build_fingerspelling_corpus(tmp_path, languages=["xyz"], **TINY)


def test_unspellable_word_is_rejected_before_rendering(tmp_path):
    with pytest.raises(ValueError, match="no recording for '1'"):
        fs.build_fingerspelling_corpus(tmp_path, words=["ab", "a1"], **TINY)
    assert not list(tmp_path.rglob("*.gif"))


def test_words_are_fingerspelled_through_the_lookup(tmp_path):
    gifs = fs.build_fingerspelling_corpus(tmp_path, words=["Hi"], **TINY)
    assert [g.name for g in gifs] == ["Hi.gif"]
    assert gifs[0].with_suffix(".txt").read_text(encoding="utf-8").strip() == "Hi"
    assert read_video(gifs[0])[0].shape == (4, 16, 16, 3)


def test_spell_prefers_the_longest_letter():
    assert fs.spell("Schach", ["S", "SCH", "C", "H", "A"], "sgg") == ["sch", "a", "c", "h"]


def test_a_broken_recording_is_skipped_and_reported(tmp_path, monkeypatch):
    real = fs.load_recording

    def flaky(path):
        if str(path).endswith(fs.read_index()["ase"]["B"]["path"]):
            raise OSError("truncated file")
        return real(path)

    monkeypatch.setattr(fs, "load_recording", flaky)
    with pytest.warns(UserWarning, match="skipped ase 'B'.*truncated"):
        gifs = fs.build_fingerspelling_corpus(tmp_path, **TINY)
    assert len(gifs) == 25 and "B" not in {g.stem for g in gifs}


def test_render_keeps_orientation_and_draws_fingers_in_their_colours():
    clip = fs.render_clip(_synthetic(), frames=3, size=64)
    assert clip.shape == (3, 64, 64, 3) and clip.dtype == np.uint8
    frame = clip[0].astype(int)
    red = (frame[..., 0] > 150) & (frame[..., 1] < 110) & (frame[..., 2] < 110)  # the thumb
    ys, xs = np.nonzero(red)
    assert len(xs) > 5
    yellow = (frame[..., 0] > 150) & (frame[..., 1] > 150) & (frame[..., 2] < 100)  # index
    index_ys, index_xs = np.nonzero(yellow)
    assert xs.mean() < index_xs.mean() - 5  # the thumb points left of the index: not mirrored
    assert index_ys.mean() < ys.mean() - 5  # the index finger points up: not flipped


def test_render_survives_missing_landmarks():
    skeleton = _synthetic(8)
    skeleton.valid[2:4] = False  # a 2-frame dropout: interpolated
    skeleton.valid[5:, fs._R0:] = False  # the hand lost for good: not drawn
    clip = fs.render_clip(skeleton, frames=8, size=32)
    assert clip[2].max() > 100 and clip[3].max() > 100
    assert clip[6].max() <= max(fs.BODY_COLOR)  # only the faint shoulder line left

    empty = fs.Skeleton(np.zeros((5, fs.NUM_POINTS, 3), np.float32),
                        np.zeros((5, fs.NUM_POINTS), bool), 25.0)
    with pytest.raises(ValueError, match="neither shoulders nor hands"):
        fs.render_clip(empty, frames=2, size=16)


def test_resample_fills_short_gaps_only():
    skeleton = _synthetic(12)
    skeleton.xyz[:, :, 0] += np.arange(12, dtype=np.float32)[:, None]  # moves 1 px per frame
    skeleton.valid[3:5] = False
    skeleton.valid[6:12, 0] = False  # point 0 lost from frame 6 to the end
    xyz, ok = fs.resample(skeleton, np.array([3.5, 4.0, 8.0]))
    right = fs._R0
    assert ok[0, right] and ok[1, right]
    assert xyz[0, right, 0] == pytest.approx(skeleton.xyz[0, right, 0] + 3.5)
    assert not ok[2, 0]


def test_cli_writes_corpus_and_contact_sheet(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    fs.register(parser.add_subparsers())
    args = parser.parse_args(["fingerspelling", str(tmp_path / "corpus"), "--frames", "4",
                              "--size", "16", "--variants", "2",
                              "--sheet", str(tmp_path / "sheet.png")])
    assert args.func(args) == 0
    assert "wrote 52 clips" in capsys.readouterr().out
    from PIL import Image

    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.height >= 26 * 16  # one row per letter, not per variant

    args = parser.parse_args(["fingerspelling", "--list-languages"])
    assert args.func(args) == 0
    assert "ase  26  A B C" in capsys.readouterr().out
