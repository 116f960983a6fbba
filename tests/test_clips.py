"""Time and space shaping of uint8 clips."""

from __future__ import annotations

import numpy as np
import pytest

from text2sign.data.clips import fit_space, fit_time, shape_clip

T = 8


def _numbered(t: int, h: int = 4, w: int = 4) -> np.ndarray:
    return np.broadcast_to(np.arange(1, t + 1, dtype=np.uint8)[:, None, None, None],
                           (t, h, w, 3)).copy()  # (t, h, w, 3), frame i filled with i + 1


@pytest.mark.parametrize("length", [1, T - 1, T, 5 * T])
@pytest.mark.parametrize("mode", ["resample", "truncate"])
def test_fit_time_counts_and_never_black(length, mode):
    out = fit_time(_numbered(length), T, mode)
    ids = out[:, 0, 0, 0].astype(int)
    assert out.shape == (T, 4, 4, 3)
    assert (ids > 0).all()  # padding repeats real frames, never black
    assert (np.diff(ids) >= 0).all()  # order kept
    if mode == "resample":
        assert ids[0] == 1 and ids[-1] == length  # spans the whole clip
    else:
        assert list(ids) == [min(i + 1, length) for i in range(T)]


def test_fit_time_resample_is_uniform():
    ids = fit_time(_numbered(5 * T), T)[:, 0, 0, 0].astype(int)
    assert np.ptp(np.diff(ids)) <= 1


def test_fit_time_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        fit_time(_numbered(3), 0)
    with pytest.raises(ValueError, match="resample"):
        fit_time(_numbered(3), 2, "loop")


def _disc(h: int, w: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 <= radius**2
    frame = np.repeat(np.where(inside[..., None], 255, 0), 3, axis=-1).astype(np.uint8)  # (h, w, 3)
    return np.repeat(frame[None], 2, axis=0)  # (2, h, w, 3)


def _extent(mask: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(mask)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_crop_makes_180x320_square_without_distortion():
    out = fit_space(_disc(180, 320, 60), 64)
    assert out.shape == (2, 64, 64, 3)
    tall, wide = _extent(out[0, ..., 0] > 127)
    assert abs(tall - wide) <= 1  # a circle stays a circle
    assert abs(tall - 120 * 64 / 180) <= 2  # scaled by the short side
    np.testing.assert_array_equal(out[0], out[0, :, ::-1])  # centered (and not mirrored)


def test_crop_is_not_mirrored():
    clip = np.zeros((1, 20, 20, 3), np.uint8)
    clip[0, :, :5] = 255  # a bar on the left
    out = fit_space(clip, 10)
    assert out[0, :, :2].mean() > 200 and out[0, :, -2:].mean() < 50


def test_letterbox_keeps_everything_with_black_bars():
    clip = np.full((1, 180, 320, 3), 200, np.uint8)
    out = fit_space(clip, 64, fit="letterbox")
    rows = np.nonzero(out[0, :, 32, 0] > 100)[0]
    assert out.shape == (1, 64, 64, 3)
    assert len(rows) == 36 and rows[0] == 14  # 64 * 180 / 320 = 36 rows, centered
    assert (out[0, :14] == 0).all() and (out[0, 50:] == 0).all()
    tall, wide = _extent(fit_space(_disc(180, 320, 80), 64, fit="letterbox")[0, ..., 0] > 127)
    assert abs(tall - wide) <= 1


def test_non_square_target_and_shape_clip():
    out = shape_clip(_disc(100, 100, 25), 5, (32, 48))
    assert out.shape == (5, 32, 48, 3)
    tall, wide = _extent(out[0, ..., 0] > 127)
    assert abs(tall - wide) <= 1
    with pytest.raises(ValueError, match="fit"):
        fit_space(out, 8, fit="stretch")
