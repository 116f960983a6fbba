"""The fingerspelling demo corpus: real recordings in, GIF + txt pairs out, deterministic."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re

import numpy as np
import pytest

from text2sign.cli import data as data_commands
from text2sign.data import fingerspelling as fs
from text2sign.data.folder import FINGERSPELLING_MARKER
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


def test_a_grown_corpus_keeps_the_clips_it_has_and_checks_their_texts(tmp_path):
    """Building again into a folder with more words and another language writes only the new
    clips; a clip whose .txt no longer says its text, or other settings, are written again."""
    old = 1_000_000_000  # 2001: a rewritten file has a fresh time, a kept one keeps this
    for gif in fs.build_fingerspelling_corpus(tmp_path, words=["ab", "ba"], **TINY):
        os.utime(gif, (old, old))
    (tmp_path / "ase" / "ba.txt").write_text("something else\n", encoding="utf-8")
    grown = fs.build_fingerspelling_corpus(tmp_path, languages=["ase", "gsg"],
                                           words=["ab", "ba", "abba"], **TINY)
    assert sorted(g.relative_to(tmp_path).as_posix() for g in grown) == [
        "ase/ab.gif", "ase/abba.gif", "ase/ba.gif", "gsg/ab.gif", "gsg/abba.gif", "gsg/ba.gif"]
    ab, ba = tmp_path / "ase" / "ab.gif", tmp_path / "ase" / "ba.gif"
    assert ab.stat().st_mtime == old  # kept
    assert ba.stat().st_mtime > old  # its text did not match: written again
    assert (tmp_path / "ase" / "ba.txt").read_text(encoding="utf-8") == "ba\n"
    marker = json.loads((tmp_path / "fingerspelling.json").read_text())
    assert marker["languages"] == ["ase", "gsg"]
    fs.build_fingerspelling_corpus(tmp_path, languages=["gsg"], words=["ab"], **TINY)
    assert json.loads((tmp_path / "fingerspelling.json").read_text())["languages"] == [
        "gsg", "ase"]  # the folder still holds both
    fs.build_fingerspelling_corpus(tmp_path, words=["ab"], frames=4, size=24, progress=False)
    assert ab.stat().st_mtime > old  # another size: every clip written again
    assert read_video(ab)[0].shape == (4, 24, 24, 3)


def test_unknown_language_lists_the_available_ones(tmp_path):
    with pytest.raises(ValueError, match="available: .*ase"):
        fs.build_fingerspelling_corpus(tmp_path, languages=["xyz"], **TINY)


def test_an_unspellable_word_is_skipped_and_counted_never_misspelled(tmp_path):
    with pytest.warns(UserWarning, match=r"ase: skipped 1 of 2 texts .*'1' 1; e\.g\. 'a1'"):
        gifs = fs.build_fingerspelling_corpus(tmp_path, words=["ab", "a1"], **TINY)
    assert [g.name for g in gifs] == ["ab.gif"]
    with pytest.raises(ValueError, match="none of the 1 texts can be fingerspelled in ase"), \
            pytest.warns(UserWarning, match="skipped 1 of 1"):
        fs.build_fingerspelling_corpus(tmp_path / "none", words=["a1"], **TINY)
    assert not list((tmp_path / "none").rglob("*.gif"))


def test_words_are_fingerspelled_through_the_lookup(tmp_path):
    gifs = fs.build_fingerspelling_corpus(tmp_path, words=["Hi"], **TINY)
    assert [g.name for g in gifs] == ["Hi.gif"]
    assert gifs[0].with_suffix(".txt").read_text(encoding="utf-8").strip() == "Hi"
    assert read_video(gifs[0])[0].shape == (4, 16, 16, 3)


def test_spell_prefers_the_longest_letter_and_spells_phrases_word_by_word():
    assert fs.spell("Schach", fs.list_languages()["sgg"], "sgg") == ["sch", "a", "ch"]
    assert fs.spell("Schach", fs.list_languages()["gsg"], "gsg") == list("schach")  # no SCH
    assert fs.spell("ab  ba", ["A", "B"]) == ["a", "b", "b", "a"]
    with pytest.raises(ValueError, match="no recording for '1'"):
        fs.spell("a1 b", ["A", "B"])


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
    data_commands.register_fingerspelling(parser.add_subparsers())
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


def _longest_still_run(clip: np.ndarray) -> int:
    """The most consecutive identical frames of a clip."""
    best = run = 1
    for a, b in zip(clip, clip[1:], strict=False):
        run = run + 1 if np.array_equal(a, b) else 1
        best = max(best, run)
    return best


def test_a_word_is_spelled_exactly_as_the_package_spells_it():
    with contextlib.redirect_stdout(io.StringIO()):
        pose = fs._fingerspelling_lookup().lookup("hello", "hello", "en", "ase").pose
    theirs, ours = fs.pose_to_skeleton(pose), fs.lookup_word("hello", "en", "ase")
    assert ours.xyz.shape == (77, fs.NUM_POINTS, 3)  # 3.08 s at 25 fps
    assert np.array_equal(ours.xyz, theirs.xyz) and np.array_equal(ours.valid, theirs.valid)


def test_a_phrase_pauses_after_each_word_but_the_last():
    plain = fs.lookup_word("go go", "en", "ase", seconds=0.0)
    held = fs.lookup_word("go go", "en", "ase", boundary="hold")
    _, ends = fs._spell_words(["go", "go"], "en", "ase")
    extra = round(fs.WORD_BOUNDARY_SECONDS * 25)  # 12 frames at the recordings' 25 fps
    assert (len(plain.xyz), len(held.xyz), ends) == (77, 77 + extra, [30, 68])
    k = ends[0]  # the stillest frame of the first "o": shown 1 + extra times
    assert np.array_equal(held.xyz[:k + 1], plain.xyz[:k + 1])
    assert all(np.array_equal(f, plain.xyz[k]) for f in held.xyz[k:k + 1 + extra])
    assert np.array_equal(held.xyz[k + 1 + extra:], plain.xyz[k + 1:])


def test_a_word_boundary_moves_the_hand_on_keeping_its_shape():
    plain = fs.lookup_word("go go", "en", "ase", seconds=0.0)
    moved = fs.lookup_word("go go", "en", "ase")  # the default: the hand dips and moves on
    extra, k = round(fs.WORD_BOUNDARY_SECONDS * 25), 30
    assert len(moved.xyz) == 77 + extra
    assert np.array_equal(moved.xyz[:k + 1], plain.xyz[:k + 1])
    assert np.array_equal(moved.xyz[k + 1 + extra:], plain.xyz[k + 1:])
    right = slice(fs._R0, fs._R0 + fs.HAND_POINTS)
    ok = plain.valid[k, right]
    assert ok.sum() == fs.HAND_POINTS  # the right hand signs ASL
    dip = moved.xyz[k + 1:k + 1 + extra, right][:, ok, :2] - plain.xyz[k, right][ok, :2]
    shape = dip - dip[:, :1]  # (extra, 21, 2) each point relative to the wrist
    assert np.abs(shape).max() < 1e-4  # the hand shape is held
    sw = fs._shoulder_width(plain)
    drop = dip[:, 0, 1] / sw  # (extra,) down is +y, in shoulder widths
    assert drop.max() == pytest.approx(fs.BOUNDARY_DROP, abs=0.01) and drop.min() > 0
    assert np.argmax(drop) in (extra // 2 - 1, extra // 2)  # down, then back
    face = slice(fs._F0, fs._L0)
    assert np.array_equal(moved.xyz[k + 1:k + 1 + extra, face],
                          np.repeat(plain.xyz[k:k + 1, face], extra, axis=0))  # only hands move
    with pytest.raises(ValueError, match="boundary='pause' is not one of"):
        fs.lookup_word("go go", "en", "ase", boundary="pause")


def test_hold_frames_repeats_the_given_frames():
    skeleton = _synthetic(5)
    skeleton.xyz[:, :, 0] += np.arange(5, dtype=np.float32)[:, None]
    held = fs.hold_frames(skeleton, [1, 3], 2)
    assert (held.xyz[:, 0, 0] - 150).tolist() == [0, 1, 1, 1, 2, 3, 3, 3, 4]
    assert fs.hold_frames(skeleton, [], 2) is skeleton


def test_fps_gives_each_clip_its_recordings_length_with_exact_gif_delays(tmp_path):
    from PIL import Image

    gifs = fs.build_fingerspelling_corpus(tmp_path, words=["go", "hello", "go go"], fps=12.5,
                                          size=16, progress=False)
    clips = {g.stem: read_video(g) for g in gifs}
    # One frame every 2 of the 25 fps recordings: go 39 frames (1.56 s), hello 77 (3.08 s),
    # "go go" 77 + 12 at the word boundary (3.56 s).
    assert {k: (len(v), fps) for k, (v, fps) in clips.items()} == {
        "go": (20, 12.5), "hello": (39, 12.5), "go_go": (45, 12.5)}
    assert _longest_still_run(clips["go_go"][0]) == 1  # the hand moves on: no still hold
    assert _longest_still_run(clips["hello"][0]) == 1
    held = fs.build_fingerspelling_corpus(tmp_path / "held", words=["go go"], fps=12.5, size=16,
                                          progress=False, boundary="hold")
    assert _longest_still_run(read_video(held[0])[0]) == 7  # the last letter held still
    with Image.open(gifs[1]) as gif:
        delays = []
        for i in range(gif.n_frames):
            gif.seek(i)
            delays.append(gif.info["duration"])
    assert delays == [80] * 39  # 8 centiseconds each: 39 frames last 3.12 s
    marker = json.loads((tmp_path / FINGERSPELLING_MARKER).read_text())
    assert marker["fps"] == 12.5 and "frames" not in marker
    assert marker["word_boundary"] == {"style": "move", "seconds": fs.WORD_BOUNDARY_SECONDS}


def test_frame_times_follow_the_rate_and_the_length():
    for n, expected in ((26, 13), (51, 26), (52, 26)):
        times = fs.frame_times(_synthetic(n), fps=12.5)
        assert len(times) == expected and np.allclose(np.diff(times), 2.0)
    assert len(fs.frame_times(_synthetic(51), fps=25.0)) == 51
    assert len(fs.frame_times(_synthetic(51), frames=7)) == 7


@pytest.mark.parametrize("fps", [12.0, 30.0, 100.0, 0.0, -5.0])
def test_a_rate_without_whole_centisecond_frames_is_refused(tmp_path, fps):
    with pytest.raises(ValueError, match=rf"--fps {fps:g} gives .*12\.5"):
        fs.build_fingerspelling_corpus(tmp_path, fps=fps, size=16, progress=False)
    assert not list(tmp_path.rglob("*.gif"))
    for ok in (50.0, 25.0, 12.5, 10.0, 6.25, 5.0):
        assert fs.check_rate(ok) == ok


def test_frames_and_fps_are_one_or_the_other(tmp_path):
    parser = argparse.ArgumentParser()
    data_commands.register_fingerspelling(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["fingerspelling", str(tmp_path), "--frames", "4", "--fps", "25"])
    with pytest.raises(ValueError, match="not both"):
        fs.build_fingerspelling_corpus(tmp_path, frames=4, fps=25.0, progress=False)


def test_builtin_lists_hold_long_words_and_short_phrases(tmp_path):
    texts = fs.words_from("en,en-long,en-phrases")
    long_words, phrases = fs.builtin_words("en-long"), fs.builtin_words("en-phrases")
    assert (len(fs.builtin_words("en")), len(long_words), len(phrases)) == (2400, 300, 309)
    assert len(texts) == len(set(texts)) == 2400 + 300 + 309
    assert all(re.fullmatch("[a-z]{9,14}", w) for w in long_words)
    for n in range(9, 15):
        assert sum(len(w) == n for w in long_words) == 50
    for phrase in phrases:
        words = phrase.split(" ")
        assert 2 <= len(words) <= 3 and all(re.fullmatch("[a-z]+", w) for w in words), phrase
        assert sum(map(len, words)) <= 14, phrase
    mine = tmp_path / "mine.txt"
    mine.write_text("# names\nthank   you\n\nchristopher\nhello\n", encoding="utf-8")
    assert fs.words_from(f"en-phrases,{mine}")[-2:] == ["christopher", "hello"]
    assert fs.read_words(mine) == ["thank you", "christopher", "hello"]
    with pytest.raises(FileNotFoundError, match="built-in lists: .*en, en-long, en-phrases"):
        fs.words_from("en,nope")
