"""Clip cache: hits, misses, invalidation, atomicity, splits, dataset items."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from text2sign.data import cache as cache_module
from text2sign.data.cache import ClipCache, is_cache, prepare_cache
from text2sign.data.dataset import ClipDataset, open_clips
from text2sign.data.video_io import write_gif


def _clip(seed: int, t: int = 5) -> np.ndarray:
    colors = np.random.default_rng(seed).integers(0, 255, (4, 3), dtype=np.uint8)
    idx = np.random.default_rng(seed + 1).integers(0, 4, (t, 12, 16))
    return colors[idx]  # (t, 12, 16, 3)


def _corpus(root, n: int = 4):
    for i in range(n):
        write_gif(root / f"c{i}.gif", _clip(i), fps=10)
        (root / f"c{i}.txt").write_text(f"text {i}")
    return root


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    real = cache_module.read_video

    def counting(path):
        calls.append(path.name)
        return real(path)

    monkeypatch.setattr(cache_module, "read_video", counting)
    return calls


def test_prepare_then_hit_miss_and_invalidation(tmp_path, count_decodes):
    src = _corpus(tmp_path / "src")
    (src / "bad.gif").write_bytes(b"GIF89a garbage")
    (src / "bad.txt").write_text("bad")
    cache = prepare_cache(src, frames=4, size=8, progress=False)
    assert is_cache(cache.path) and cache.path.parent.name == ".text2sign-cache"
    assert len(cache) == 4 and cache.paths == [f"c{i}.gif" for i in range(4)]
    assert cache.texts[2] == "text 2" and cache.fps == [10.0] * 4
    assert cache[1].shape == (4, 8, 8, 3) and cache[1].dtype == np.uint8
    assert [b["path"] for b in cache.bad] == ["bad.gif"]
    first = [cache[i] for i in range(4)]
    fingerprint = cache.fingerprint
    assert sorted(count_decodes) == ["bad.gif", "c0.gif", "c1.gif", "c2.gif", "c3.gif"]

    count_decodes.clear()  # hit: nothing decoded, same content and fingerprint
    again = prepare_cache(src, frames=4, size=8, progress=False)
    assert count_decodes == ["bad.gif"] and again.fingerprint == fingerprint
    assert all(np.array_equal(a, again[i]) for i, a in enumerate(first))

    count_decodes.clear()  # touch one, modify one, delete one, add one
    st = os.stat(src / "c0.gif")
    os.utime(src / "c0.gif", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    write_gif(src / "c1.gif", _clip(99), fps=5)
    (src / "c2.gif").unlink()
    (src / "c2.txt").unlink()
    write_gif(src / "new.gif", _clip(7), fps=10)
    (src / "new.txt").write_text("new")
    (src / "c3.txt").write_text("renamed text")  # text changes need no decoding
    updated = prepare_cache(src, frames=4, size=8, progress=False)
    assert sorted(count_decodes) == ["bad.gif", "c0.gif", "c1.gif", "new.gif"]
    assert updated.paths == ["c0.gif", "c1.gif", "c3.gif", "new.gif"]
    assert updated.texts[2] == "renamed text" and updated.fps[1] == 5.0
    np.testing.assert_array_equal(updated[0], first[0])
    np.testing.assert_array_equal(updated[2], first[3])
    assert not np.array_equal(updated[1], first[1])
    assert updated.fingerprint != fingerprint

    count_decodes.clear()  # other settings: a separate cache, decoded afresh
    other = prepare_cache(src, frames=2, size=6, progress=False)
    assert other.path != updated.path and other[0].shape == (2, 6, 6, 3)
    assert len(count_decodes) == 5


def test_interrupted_prepare_keeps_previous_cache_valid(tmp_path, monkeypatch):
    src = _corpus(tmp_path / "src")
    out = tmp_path / "cache"
    cache = prepare_cache(src, frames=3, size=8, out=out, progress=False)
    before = [cache[i] for i in range(len(cache))]
    for i in range(4):
        write_gif(src / f"c{i}.gif", _clip(50 + i), fps=10)

    def boom(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module, "read_video", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(src, frames=3, size=8, out=out, progress=False)
    survived = ClipCache.open(out)
    assert all(np.array_equal(a, survived[i]) for i, a in enumerate(before))


def test_compaction_after_most_clips_change(tmp_path):
    src = _corpus(tmp_path / "src")
    out = tmp_path / "cache"
    prepare_cache(src, frames=3, size=8, out=out, progress=False)
    for i in range(3):
        write_gif(src / f"c{i}.gif", _clip(70 + i), fps=10)
    cache = prepare_cache(src, frames=3, size=8, out=out, progress=False)  # 1 of 4 live: compact
    assert sum(cache.index["shards"].values()) == 4
    assert sorted(p.name for p in out.glob("shard-*")) == sorted(cache.index["shards"])
    fresh = prepare_cache(src, frames=3, size=8, out=tmp_path / "fresh", progress=False)
    assert all(np.array_equal(cache[i], fresh[i]) for i in range(4))


def test_split_is_deterministic_and_disjoint(tmp_path):
    src = _corpus(tmp_path / "src", n=20)
    cache = prepare_cache(src, frames=2, size=4, progress=False)
    train, val = cache.split(0.25)
    assert sorted(train + val) == list(range(20)) and not set(train) & set(val)
    assert 1 <= len(val) <= 10
    reopened = ClipCache.open(cache.path)
    assert reopened.split(0.25) == (train, val)
    assert cache.split(0.0) == (list(range(20)), [])
    assert set(cache.split(0.5)[1]) >= set(val)  # growing the fraction only adds clips
    with pytest.raises(ValueError, match="val_fraction"):
        cache.split(1.0)


def test_open_clips_and_dataset_items(tmp_path):
    src = _corpus(tmp_path / "src")
    clips = open_clips(src, frames=3, size=8, progress=False)
    assert open_clips(clips.path, frames=3, size=8).fingerprint == clips.fingerprint
    with pytest.raises(ValueError, match="frames=3"):
        open_clips(clips.path, frames=4, size=8)
    with pytest.raises(FileNotFoundError):
        open_clips(tmp_path / "missing", frames=3, size=8)
    data = ClipDataset(pickle.loads(pickle.dumps(clips)), [2, 0])  # as a DataLoader worker would
    item = data[0]
    assert item["video"].shape == (3, 3, 8, 8) and item["video"].dtype == torch.float32
    assert item["text"] == "text 2" and item["index"] == 2
    assert -1.0 <= item["video"].min() and item["video"].max() <= 1.0
    expected = torch.from_numpy(clips[2]).permute(3, 0, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(item["video"], expected)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=2)))
    assert batch["video"].shape == (2, 3, 3, 8, 8)


def test_fixed_count_view_of_a_rate_cache_is_one_length(tmp_path):
    """A reader trained on the view sees its lengths, not the cache's (a 33-frame clip read
    through a 32-frame view was indexed out of bounds)."""
    from text2sign.data.cache import FixedCountView
    from text2sign.evaluation.recognizer_base import ClipSource

    src = tmp_path / "src"
    src.mkdir()
    for i, t in enumerate((5, 7, 9)):
        write_gif(src / f"c{i}.gif", _clip(i, t), fps=10)
        (src / f"c{i}.txt").write_text(f"text {i}")
    cache = prepare_cache(src, 12, 8, time_mode="fps", fps=10.0, progress=False, workers=1)
    assert cache.variable and cache.lengths == [5, 7, 9]
    view = FixedCountView(cache, 6)
    assert not view.variable and view.lengths == [6, 6, 6]
    assert [view[i].shape for i in range(3)] == [(6, 8, 8, 3)] * 3
    assert ClipSource(view, [0, 2], 4).lengths == [6, 6]
    assert view.texts == cache.texts and view.fingerprint == cache.fingerprint


@pytest.mark.parametrize("mode", ["resample", "fps"])
def test_prepare_returns_the_cache_it_committed(tmp_path, mode):
    # prepare hands back the index it wrote instead of reading it back (which held it twice):
    # the returned cache must be exactly the one a later process opens.
    src = _corpus(tmp_path / "src", n=5)
    made = prepare_cache(src, frames=4, size=8, progress=False, time_mode=mode,
                         fps=5.0 if mode == "fps" else None)
    opened = ClipCache.open(made.path)
    assert made.index == opened.index and made.fingerprint == opened.fingerprint
    assert (made.paths, made.texts, made.lengths, made.fps) == (
        opened.paths, opened.texts, opened.lengths, opened.fps)
    assert all(np.array_equal(made[i], opened[i]) for i in range(len(made)))


@pytest.mark.parametrize("clips", [0, 1, 5, 4100])
def test_index_is_written_in_pieces_that_read_back_as_the_index(clips):
    # The index is encoded a few thousand clips at a time (the whole text, twice over, was held
    # at each commit); the pieces joined are the JSON of the index, non-ASCII texts included.
    import json

    index = {"format": "x", "shards": {"shard-0": clips}, "bad": [{"path": "b.gif"}],
             "clips": [{"path": f"ukl/c{i}.gif", "text": "борщ ä", "crc32": i}
                       for i in range(clips)]}
    pieces = list(cache_module._index_json(index, per_piece=2048))
    assert json.loads("".join(pieces)) == index
    assert len(pieces) == 2 + -(-clips // 2048)  # head, a piece per 2,048 clips, tail


def test_clip_source_keeps_a_small_corpus_shrunk_and_reads_each_clip_once():
    """A recognizer's training clips that fit the budget are read and shrunk once; the clips
    are the same as when each batch reads them again (no budget)."""
    from text2sign.evaluation.recognizer_base import ClipSource

    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (t, 16, 16, 3), dtype=np.uint8) for t in (3, 5, 4)]

    class Counted(list):
        reads = 0

        def __getitem__(self, i):
            Counted.reads += 1
            return super().__getitem__(i)

    kept = ClipSource(Counted(clips), [0, 1, 2], 8)
    Counted.reads = 0  # the lengths of a plain list were read once each
    first = [kept[i].clone() for i in (0, 1, 2, 1, 0)]
    assert Counted.reads == 3
    fresh = ClipSource(clips, [0, 1, 2], 8, keep_bytes=0)
    assert fresh.kept is None
    for got, i in zip(first, (0, 1, 2, 1, 0), strict=True):
        assert got.shape == (len(clips[i]), 8, 8, 3)
        assert torch.equal(got, fresh[i])
    # the corpus is too large for the budget: nothing is kept
    assert ClipSource(clips, [0, 1, 2], 8, keep_bytes=8 * 8 * 3 * 11).kept is None
    assert ClipSource(clips, [0, 1, 2], 8, keep_bytes=8 * 8 * 3 * 12).kept == {}
