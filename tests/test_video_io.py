"""GIF/MP4 reading and writing on clips made in code (GIFs assembled block by block here)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import GifImagePlugin, Image, ImageSequence

from text2sign.data.video_io import (
    VideoReadError,
    contact_sheet,
    has_av,
    read_video,
    write_contact_sheet,
    write_gif,
    write_mp4,
    write_video,
)

BLACK, RED, GREEN, BLUE, WHITE = (0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
GLOBAL = [BLACK, RED, GREEN, BLUE, WHITE]  # index 0 black: Pillow's background fill agrees


def _palette_clip(t: int = 6, h: int = 20, w: int = 30, colors: int = 50) -> np.ndarray:
    rng = np.random.default_rng(0)
    table = rng.integers(0, 256, (colors, 3), dtype=np.uint8)
    return table[rng.integers(0, colors, (t, h, w))]  # (T, H, W, 3)


def _table(colors: list[tuple[int, int, int]]) -> bytes:
    return bytes(np.array(colors + [BLACK] * (256 - len(colors)), np.uint8).reshape(-1))


def _gif(path, width: int, height: int, frames: list[dict]) -> str:
    """Assemble a GIF: each frame dict has indices (h, w), and optional offset, disposal,
    transparency, duration (ms) and palette (a local colour table)."""
    out = [b"GIF89a", struct.pack("<HHBBB", width, height, 0x80 | 7, 0, 0), _table(GLOBAL),
           b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"]
    for f in frames:
        image = Image.fromarray(np.asarray(f["indices"], np.uint8), "P")
        image.putpalette(_table(f.get("palette", GLOBAL)))
        params = {"duration": f.get("duration", 100), "disposal": f.get("disposal", 1),
                  "include_color_table": "palette" in f}
        if "transparency" in f:
            params["transparency"] = f["transparency"]
        out += GifImagePlugin.getdata(image, offset=f.get("offset", (0, 0)), **params)
    out.append(b";")
    path.write_bytes(b"".join(out))
    return path


def _pillow_frames(path) -> np.ndarray:
    """Pillow's own compositing, transparent pixels over black."""
    with Image.open(path) as im:
        rgba = [np.array(f.convert("RGBA")) for f in ImageSequence.Iterator(im)]
    return np.stack([np.where(f[..., 3:] > 0, f[..., :3], 0) for f in rgba]).astype(np.uint8)


def _full(h, w, index):
    return np.full((h, w), index)


def test_partial_frames_disposal_to_background_and_transparency(tmp_path):
    h, w = 8, 10
    spot = np.array([[0, 3], [3, 0]])  # index 0 is this frame's transparency
    path = _gif(tmp_path / "a.gif", w, h, [
        {"indices": _full(4, 5, 1), "offset": (1, 2)},  # partial first frame: rest transparent
        {"indices": _full(3, 4, 2), "offset": (4, 3), "disposal": 2},
        {"indices": spot, "offset": (8, 6), "transparency": 0},
    ])
    frames, fps = read_video(path)
    want = np.zeros((3, h, w, 3), np.uint8)
    want[:, 2:6, 1:6] = RED  # frame 0 kept (disposal 1)
    want[1, 3:6, 4:8] = GREEN  # frame 1 drawn over it ...
    want[2, 3:6, 4:8] = BLACK  # ... then its box cleared to transparent (shown black)
    want[2, 6, 9] = BLUE
    want[2, 7, 8] = BLUE
    np.testing.assert_array_equal(frames, want)
    np.testing.assert_array_equal(frames, _pillow_frames(path))
    assert fps == pytest.approx(10.0)


def test_disposal_restore_previous_and_transparency_shows_through(tmp_path):
    h, w = 6, 6
    holes = _full(6, 6, 4)
    holes[:, :3] = 7  # left half transparent
    path = _gif(tmp_path / "a.gif", w, h, [
        {"indices": _full(6, 6, 1)},
        {"indices": _full(2, 2, 2), "offset": (0, 0), "disposal": 3},
        {"indices": _full(2, 2, 3), "offset": (4, 4)},
        {"indices": holes, "transparency": 7},
    ])
    frames, _ = read_video(path)
    assert (frames[1, :2, :2] == GREEN).all()
    assert (frames[2, :2, :2] == RED).all()  # restored to the canvas before frame 1
    assert (frames[2, 4:, 4:] == BLUE).all()
    assert (frames[3, :, 3:] == WHITE).all()
    np.testing.assert_array_equal(frames[3, :, :3], frames[2, :, :3])  # shows through
    np.testing.assert_array_equal(frames, _pillow_frames(path))


def test_per_frame_palettes(tmp_path):
    path = _gif(tmp_path / "a.gif", 4, 4, [
        {"indices": _full(4, 4, 1), "palette": [BLACK, (10, 20, 30)]},
        {"indices": _full(4, 4, 1), "palette": [BLACK, (200, 100, 50)]},
        {"indices": _full(4, 4, 1)},  # back to the global table
    ])
    frames, _ = read_video(path)
    assert [tuple(f[0, 0]) for f in frames] == [(10, 20, 30), (200, 100, 50), RED]
    np.testing.assert_array_equal(frames, _pillow_frames(path))


def test_durations_give_median_fps_and_zero_delay_reads_as_100ms(tmp_path):
    delays = [50, 50, 50, 0, 0, 0, 0]  # median of [50, 50, 50, 100, 100, 100, 100] is 100
    frames = [{"indices": _full(2, 2, i % 4), "duration": d} for i, d in enumerate(delays)]
    _, fps = read_video(_gif(tmp_path / "a.gif", 2, 2, frames))
    assert fps == pytest.approx(10.0)
    _, fps = read_video(_gif(tmp_path / "b.gif", 2, 2, frames[:5]))
    assert fps == pytest.approx(20.0)


def test_matches_pillow_on_an_optimized_pillow_gif(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 5, (12, 16))
    images = []
    for t in range(5):
        idx = base.copy()
        idx[t : t + 3, 2 * t : 2 * t + 4] = 4  # moving block: Pillow writes partial frames
        image = Image.fromarray(idx.astype(np.uint8), "P")
        image.putpalette(_table(GLOBAL))
        images.append(image)
    path = tmp_path / "p.gif"
    images[0].save(path, save_all=True, append_images=images[1:], duration=[40, 40, 80, 40, 40],
                   disposal=2, transparency=0, optimize=True, loop=0)
    frames, fps = read_video(path)
    np.testing.assert_array_equal(frames, _pillow_frames(path))
    assert fps == pytest.approx(25.0)


def test_bad_files_raise_one_line_reasons(tmp_path):
    good = write_gif(tmp_path / "good.gif", _palette_clip(), fps=10).read_bytes()
    cases = {
        "empty.gif": (b"", "empty file"),
        "text.gif": (b"hello world, not a gif", "not a GIF"),
        "cut.gif": (good[: len(good) // 2], "truncated"),
        "none.gif": (good[:13 + 3 * 2 ** ((good[10] & 7) + 1)] + b";", "zero frames"),
        "junk.gif": (good[:13 + 3 * 2 ** ((good[10] & 7) + 1)] + b"\x99\x00", "undecodable"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(VideoReadError, match=reason) as info:
            read_video(tmp_path / name)
        assert "\n" not in str(info.value)
    with pytest.raises(VideoReadError, match="unreadable"):
        read_video(tmp_path / "missing.gif")


def test_write_gif_exact_frames_durations_and_loop(tmp_path):
    clip = _palette_clip()
    clip[4] = clip[3]  # identical consecutive frames must stay separate frames
    path = write_gif(tmp_path / "sub" / "a.gif", clip, fps=25)
    with Image.open(path) as im:
        assert im.info["loop"] == 0
        delays = [f.info["duration"] for f in ImageSequence.Iterator(im)]
    assert delays == [40] * len(clip)
    frames, fps = read_video(path)
    np.testing.assert_array_equal(frames, clip)  # <= 256 colours: lossless, no dithering
    assert fps == pytest.approx(25.0)
    np.testing.assert_array_equal(_pillow_frames(path), clip)


def test_write_gif_many_colours_stays_close(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    clip = np.stack([np.stack([xx * 5, yy * 8, (xx + yy + 4 * t) % 256], -1)
                     for t in range(4)]).astype(np.uint8)  # (4, 32, 48, 3) smooth gradients
    frames, _ = read_video(write_gif(tmp_path / "a.gif", clip, fps=12.5))
    assert frames.shape == clip.shape
    assert np.abs(frames.astype(int) - clip).mean() < 6


def test_write_gif_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="fps"):
        write_gif(tmp_path / "a.gif", _palette_clip(), fps=60)
    with pytest.raises(ValueError, match="uint8"):
        write_gif(tmp_path / "a.gif", np.zeros((2, 4, 4, 3), np.float32), fps=10)


@pytest.mark.skipif(not has_av(), reason="PyAV not installed")
def test_mp4_round_trip_pads_odd_sizes(tmp_path):
    yy, xx = np.mgrid[0:33, 0:47]
    clip = np.stack([np.stack([xx * 5, yy * 7, np.full_like(xx, 20 * t)], -1)
                     for t in range(8)]).astype(np.uint8)  # (8, 33, 47, 3)
    path = write_video(tmp_path / "a.mp4", clip, fps=24)
    frames, fps = read_video(path)
    assert frames.shape == (8, 34, 48, 3)
    assert fps == pytest.approx(24.0)
    assert np.abs(frames[:, :33, :47].astype(int) - clip).mean() < 6
    with pytest.raises(ValueError, match="fps"):
        write_mp4(tmp_path / "b.mp4", clip, fps=0)


def test_contact_sheet_layout_and_labels(tmp_path):
    a = np.zeros((5, 8, 10, 3), np.uint8)
    b = np.full((3, 8, 10, 3), 200, np.uint8)
    sheet = contact_sheet([a, b])
    gap = 2
    assert sheet.shape == (2 * 8 + 3 * gap, 5 * 10 + 6 * gap, 3)
    assert (sheet[gap : gap + 8, gap : gap + 10] == 0).all()
    assert (sheet[2 * gap + 8 : 2 * gap + 16, gap : gap + 10] == 200).all()
    assert (sheet[2 * gap + 8 :, -12:] == 255).all()  # b has no 5th frame: white cell
    labelled = contact_sheet([a, b], labels=["hello", "b"], max_frames=2)
    assert labelled.shape[1] > 2 * 10 + 3 * gap
    label_area = labelled[:, : labelled.shape[1] - 2 * (10 + gap) - gap]
    assert (label_area < 128).any()  # text was drawn
    path = write_contact_sheet(tmp_path / "s.png", [a, b], labels=["x", "y"])
    assert Image.open(path).size == (contact_sheet([a, b], ["x", "y"]).shape[1],
                                     contact_sheet([a, b], ["x", "y"]).shape[0])
    with pytest.raises(ValueError, match="labels"):
        contact_sheet([a, b], labels=["only one"])


@pytest.mark.parametrize("label", ["knödel", "борщ", "καλημέρα", "سلام", "ılık"])
def test_contact_sheet_draws_every_alphabets_letters(label):
    """A label the built-in font cannot draw (it has ASCII alone) is drawn in an installed font
    that has its letters; an ASCII label keeps the built-in font."""
    from PIL import ImageFont

    from text2sign.data.video_io import _draws, _label_fonts, label_font

    builtin = _label_fonts()[0]
    assert label_font(["hello", "A"]) is builtin
    assert not all(_draws(builtin, c) for c in label)  # boxes in the built-in font
    if len(_label_fonts()) == 1:
        pytest.skip("no font with these letters is installed (e.g. apt install fonts-dejavu)")
    font = label_font(["hello", label])
    assert isinstance(font, ImageFont.FreeTypeFont) and font is not builtin
    assert all(_draws(font, c) for c in label)
    clip = np.zeros((2, 8, 10, 3), np.uint8)
    assert (contact_sheet([clip], labels=[label])[:, :20] < 128).any()  # text was drawn
