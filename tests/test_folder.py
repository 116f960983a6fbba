"""Pair discovery and every bad-pair reason."""

from __future__ import annotations

import numpy as np
import pytest

from text2sign.data.folder import scan_folder
from text2sign.data.video_io import write_gif


def _clip(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)


def _pair(root, rel: str, text: str | bytes | None = "hello", seed: int = 0):
    video = write_gif(root / f"{rel}.gif", _clip(seed), fps=10)
    if text is not None:
        data = text if isinstance(text, bytes) else text.encode()
        video.with_suffix(".txt").write_bytes(data)
    return video


def test_every_bad_reason_is_reported_and_good_pairs_kept(tmp_path):
    _pair(tmp_path, "a", " A \n")
    _pair(tmp_path, "sub/b", "\ufeffbee")  # BOM is fine
    _pair(tmp_path, "notext", None)
    _pair(tmp_path, "empty", "  \n")
    _pair(tmp_path, "latin", b"caf\xe9")
    _pair(tmp_path, "other/a", "second a")  # duplicate stem
    good = (tmp_path / "a.gif").read_bytes()
    (tmp_path / "cut.gif").write_bytes(good[: len(good) // 2])
    (tmp_path / "cut.txt").write_text("cut")
    (tmp_path / "zero.gif").write_bytes(b"")
    (tmp_path / "zero.txt").write_text("zero")
    (tmp_path / "junk.gif").write_bytes(b"not a gif at all")
    (tmp_path / "junk.txt").write_text("junk")
    (tmp_path / "orphan.txt").write_text("no video")
    (tmp_path / ".text2sign-cache").mkdir()
    (tmp_path / ".text2sign-cache" / "x.txt").write_text("hidden: ignored")

    result = scan_folder(tmp_path)
    assert [(p.stem, p.text) for p in result.good] == [("a", "A"), ("b", "bee")]
    reasons = {result.relative(b.path): b.reason for b in result.bad}
    assert set(reasons) == {"notext.gif", "empty.txt", "latin.txt", "other/a.gif", "cut.gif",
                            "zero.gif", "junk.gif", "orphan.txt"}
    assert "missing .txt" in reasons["notext.gif"]
    assert "empty .txt" in reasons["empty.txt"]
    assert "not UTF-8" in reasons["latin.txt"]
    assert "duplicate stem 'a'" in reasons["other/a.gif"] and "kept a.gif" in reasons["other/a.gif"]
    assert "truncated" in reasons["cut.gif"]
    assert "empty file" in reasons["zero.gif"]
    assert "not a GIF" in reasons["junk.gif"]
    assert "no video" in reasons["orphan.txt"]

    fast = scan_folder(tmp_path, decode=False)  # without decoding, broken GIFs pass as good
    assert {p.stem for p in fast.good} == {"a", "b", "cut", "junk"}


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="fingerspelling"):
        scan_folder(tmp_path)


def _run(argv: list[str]) -> int:
    import argparse

    from text2sign.cli import data as commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_check_and_prepare_commands(tmp_path, capsys):
    _pair(tmp_path, "a", "A")
    _pair(tmp_path, "b", "B", seed=1)
    assert _run(["check", str(tmp_path)]) == 0
    assert "2 good pairs, 0 unusable" in capsys.readouterr().out
    (tmp_path / "c.gif").write_bytes(b"")
    (tmp_path / "c.txt").write_text("C")
    assert _run(["check", str(tmp_path)]) == 1
    assert "c.gif: empty file" in capsys.readouterr().out
    out = tmp_path / "cache"
    code = _run(["prepare", str(tmp_path), "--frames", "2", "--size", "4", "--out", str(out),
                 "--quiet"])
    printed = capsys.readouterr()
    assert code == 1 and "skipped c.gif: empty file" in printed.err
    assert "clips: 2 (2 decoded now, 0 reused)" in printed.out and str(out) in printed.out
    assert "1 train, 1 val" in printed.out


def test_the_same_stem_in_two_language_folders_is_two_clips(tmp_path):
    """A corpus of several sign languages (OUT/<code>/): gsg/A and ukl/A are two letters; a
    stem twice in one language is still a duplicate, and a folder that is no language code is
    ASL's."""
    from text2sign.core.units import clip_language

    for rel in ("gsg/A", "ukl/A", "ase/A", "misc/A"):
        _pair(tmp_path, rel, "a")
    result = scan_folder(tmp_path, decode=False)
    kept = sorted(result.relative(p.video) for p in result.good)
    assert kept == ["ase/A.gif", "gsg/A.gif", "ukl/A.gif"]
    assert [(result.relative(b.path), "kept ase/A.gif" in b.reason) for b in result.bad] == [
        ("misc/A.gif", True)]
    assert [clip_language(p) for p in kept] == ["ase", "gsg", "ukl"]
    assert clip_language("misc/A.gif") == clip_language("A.gif") == "ase"
