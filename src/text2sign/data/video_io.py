"""Read and write clips as uint8 (T, H, W, 3) arrays: GIF (Pillow), MP4/WebM (PyAV), PNG sheets.

GIF reading composites frames the way browsers show them (GIF89a spec, sec. 23 "disposal
method"): a transparent RGBA canvas; each frame's box painted at its offset with its own or
the global palette, skipping its transparency index; after display, disposal 0/1 keeps the
canvas, 2 clears the box to transparent (browsers ignore the header's background colour;
Pillow paints it when the frame has no transparency), 3 restores the canvas from before the
frame. Pixels still transparent show the page background; we use black. Pillow only decodes
the LZW data of each frame; compositing is ours so the rules above are explicit and tested.

fps = 1000 / median frame delay, with delays <= 10 ms read as 100 ms like browsers do;
frames are kept one per GIF frame (not resampled by timestamps).

GIF writing goes frame by frame through Pillow's GIF encoder primitives instead of
``Image.save(save_all=True)``: the latter merges identical consecutive frames (a padded clip
would lose frames) and re-quantizes every frame with its own palette (colour flicker).
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import GifImagePlugin, Image, ImageDraw, ImageFont

GIF_MAX_FPS = 50.0  # GIF delays are centiseconds; browsers show delays <= 10 ms as 100 ms
GIF_DEFAULT_DELAY_MS = 100.0
VIDEO_SUFFIXES = (".gif", ".mp4", ".webm")


class VideoReadError(ValueError):
    """A clip that cannot be decoded; the message is a one-line reason."""


def has_av() -> bool:
    """Whether PyAV (MP4/WebM support) imports."""
    try:  # PyAV is the optional [video] extra
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def supported_suffixes() -> tuple[str, ...]:
    """Video suffixes readable here: .gif always, .mp4/.webm when PyAV is installed."""
    return VIDEO_SUFFIXES if has_av() else (".gif",)


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Decode a clip to uint8 (T, H, W, 3) and its fps, or raise VideoReadError with why."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise VideoReadError(f"unsupported suffix {suffix!r}; expected one of {VIDEO_SUFFIXES}")
    try:
        data = path.read_bytes() if suffix == ".gif" else None
    except OSError as err:
        raise VideoReadError(f"unreadable file ({err.strerror or err})") from err
    if suffix == ".gif":
        return _read_gif(data)
    return _read_av(path)


# --------------------------------------------------------------------------- GIF reading


class _GifFrame:
    __slots__ = ("box", "palette", "interlace", "lzw", "delay_ms", "disposal", "transparency")

    def __init__(self, box, palette, interlace, lzw, delay_ms, disposal, transparency):
        self.box, self.palette, self.interlace, self.lzw = box, palette, interlace, lzw
        self.delay_ms, self.disposal, self.transparency = delay_ms, disposal, transparency


def _sub_blocks(data: bytes, pos: int) -> tuple[bytes, int]:
    """Concatenate GIF data sub-blocks starting at ``pos``; return (payload, position after)."""
    parts = []
    while True:
        if pos >= len(data):
            raise VideoReadError("truncated GIF (data ends inside a block)")
        size = data[pos]
        pos += 1
        if size == 0:
            return b"".join(parts), pos
        if pos + size > len(data):
            raise VideoReadError("truncated GIF (data ends inside a block)")
        parts.append(data[pos : pos + size])
        pos += size


def _color_table(data: bytes, pos: int, packed: int) -> tuple[np.ndarray, int]:
    n = 2 ** ((packed & 7) + 1)
    if pos + 3 * n > len(data):
        raise VideoReadError("truncated GIF (data ends inside a colour table)")
    table = np.zeros((256, 3), np.uint8)  # out-of-table indices show black
    table[:n] = np.frombuffer(data, np.uint8, 3 * n, pos).reshape(n, 3)  # (n, 3)
    return table, pos + 3 * n


def _parse_gif(data: bytes) -> tuple[int, int, list[_GifFrame]]:
    """Walk the GIF block structure (GIF89a spec) without decoding pixels."""
    if not data:
        raise VideoReadError("empty file")
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise VideoReadError("not a GIF (bad signature)")
    if len(data) < 13:
        raise VideoReadError("truncated GIF (no screen descriptor)")
    width, height, packed = struct.unpack_from("<HHB", data, 6)
    pos = 13
    global_table = None
    if packed & 0x80:
        global_table, pos = _color_table(data, pos, packed)
    frames: list[_GifFrame] = []
    delay_ms, disposal, transparency = None, 0, None
    while pos < len(data):
        block = data[pos]
        pos += 1
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension
            if pos >= len(data):
                raise VideoReadError("truncated GIF (data ends inside an extension)")
            label = data[pos]
            payload, pos = _sub_blocks(data, pos + 1)
            if label == 0xF9 and len(payload) >= 4:  # graphic control extension
                flags, delay_cs, index = struct.unpack_from("<BHB", payload)
                disposal = (flags >> 2) & 7
                transparency = index if flags & 1 else None
                delay_ms = 10.0 * delay_cs
        elif block == 0x2C:  # image descriptor
            if pos + 9 > len(data):
                raise VideoReadError("truncated GIF (data ends inside an image descriptor)")
            left, top, w, h, flags = struct.unpack_from("<HHHHB", data, pos)
            pos += 9
            table = global_table
            if flags & 0x80:
                table, pos = _color_table(data, pos, flags)
            if table is None:  # no colour table anywhere: decoders fall back to grey levels
                table = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)  # (256, 3)
            if pos >= len(data):
                raise VideoReadError("truncated GIF (data ends before frame pixels)")
            min_code_size = data[pos]
            lzw, pos = _sub_blocks(data, pos + 1)
            if delay_ms is None or delay_ms <= 10.0:
                delay_ms = GIF_DEFAULT_DELAY_MS
            frames.append(_GifFrame((left, top, w, h), table, bool(flags & 0x40),
                                    bytes([min_code_size]) + lzw, delay_ms, disposal, transparency))
            delay_ms, disposal, transparency = None, 0, None
        else:
            raise VideoReadError(f"undecodable GIF (unknown block 0x{block:02x} at byte {pos - 1})")
    return width, height, frames


def _decode_indices(frame: _GifFrame) -> np.ndarray:
    """LZW-decode one frame's box to palette indices (h, w) by handing Pillow a one-frame GIF."""
    _, _, w, h = frame.box
    mini = (
        b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80 | 7, 0, 0) + bytes(768)
        + b"," + struct.pack("<HHHHB", 0, 0, w, h, 0x40 if frame.interlace else 0)
        + frame.lzw[:1] + _as_sub_blocks(frame.lzw[1:]) + b";"
    )
    try:
        with Image.open(io.BytesIO(mini)) as im:
            im.load()
            indices = np.asarray(im)  # (h, w) palette indices
    except (OSError, SyntaxError, ValueError) as err:
        raise VideoReadError(f"undecodable GIF frame ({err})") from err
    assert indices.shape == (h, w)
    return indices


def _as_sub_blocks(payload: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(payload), 255):
        chunk = payload[i : i + 255]
        out += bytes([len(chunk)]) + chunk
    return bytes(out + b"\0")


def _read_gif(data: bytes) -> tuple[np.ndarray, float]:
    width, height, frames = _parse_gif(data)
    if not frames:
        raise VideoReadError("zero frames")
    if width == 0 or height == 0:
        raise VideoReadError(f"empty GIF canvas {width}x{height}")
    rgb = np.zeros((height, width, 3), np.uint8)  # canvas colour
    alpha = np.zeros((height, width), bool)  # canvas opacity; starts transparent
    out = np.empty((len(frames), height, width, 3), np.uint8)  # (T, H, W, 3)
    for t, frame in enumerate(frames):
        left, top, w, h = frame.box
        saved = (rgb.copy(), alpha.copy()) if frame.disposal == 3 else None
        x1, y1 = min(left + w, width), min(top + h, height)  # frames may overhang the canvas
        if w and h:
            indices = _decode_indices(frame)
            if x1 > left and y1 > top:
                indices = indices[: y1 - top, : x1 - left]
                opaque = np.ones(indices.shape, bool) if frame.transparency is None else (
                    indices != frame.transparency)
                region = rgb[top:y1, left:x1]
                region[opaque] = frame.palette[indices[opaque]]
                alpha[top:y1, left:x1] |= opaque
        out[t] = np.where(alpha[..., None], rgb, 0)  # transparent shows black
        if frame.disposal == 2:  # restore to background: browsers clear to transparent
            rgb[top:y1, left:x1] = 0
            alpha[top:y1, left:x1] = False
        elif saved is not None:
            rgb, alpha = saved
    fps = 1000.0 / float(np.median([f.delay_ms for f in frames]))
    return out, fps


# --------------------------------------------------------------------------- PyAV


def _require_av(what: str):
    try:
        import av  # PyAV is the optional [video] extra
    except ImportError as err:
        raise ImportError(f"{what} needs PyAV: pip install av") from err
    return av


def _read_av(path: Path) -> tuple[np.ndarray, float]:
    """Decode MP4/WebM with PyAV; fps from the stream's average rate."""
    av = _require_av(f"reading {path.suffix}")
    if not path.is_file():
        raise VideoReadError("unreadable file (does not exist or is not a file)")
    if path.stat().st_size == 0:
        raise VideoReadError("empty file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError("no video stream")
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    except VideoReadError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoReadError(f"undecodable video ({err})") from err
    if not frames:
        raise VideoReadError("zero frames")
    fps = float(rate) if rate else 25.0
    return np.stack(frames), fps  # (T, H, W, 3)


def _check_frames(frames: np.ndarray, what: str) -> np.ndarray:
    """Validate a uint8 (T, H, W, 3) clip, the on-disk convention."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not frames.shape[0]:
        raise ValueError(
            f"{what} needs uint8 frames of shape (T, H, W, 3) with T >= 1, got "
            f"{frames.dtype} {tuple(frames.shape)}; convert with "
            "((x.clamp(-1, 1) + 1) * 127.5).round().byte() and put channels last"
        )
    return frames


def _gif_palette(frames: np.ndarray):
    """One palette for the whole clip: exact when it has <= 256 colours, median cut otherwise."""
    flat = frames.reshape(-1, 3)  # (T*H*W, 3)
    step = max(1, flat.shape[0] // 2_000_000)  # bound the cost of the colour census
    packed = flat[::step].astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)  # (N,)
    colors = np.unique(packed)  # (K,) 0xRRGGBB, far faster than np.unique(axis=0)
    if colors.size <= 256 and step == 1:
        table = np.stack([colors >> 16, (colors >> 8) & 255, colors & 255], -1)  # (K, 3)
    else:
        every = max(1, flat.shape[0] // 250_000)  # median cut on a subsample: ~10x faster
        sample = Image.fromarray(np.ascontiguousarray(flat[::every][None]))  # (1, N, 3) pixels
        quant = sample.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        used = len(quant.getcolors(256) or []) or 256
        table = np.asarray(quant.getpalette()[: 3 * used]).reshape(-1, 3)  # (K, 3)
    palette = Image.new("P", (1, 1))
    palette.putpalette(table.astype(np.uint8).reshape(-1).tolist())
    return palette


def _gif_delays_cs(num_frames: int, fps: float) -> list[int]:
    """Per-frame delays in centiseconds whose running sum tracks i / fps (no drift)."""
    ticks = [round(i * 100.0 / fps) for i in range(num_frames + 1)]
    return [max(2, b - a) for a, b in zip(ticks, ticks[1:], strict=False)]


def write_gif(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write an endlessly looping GIF with one shared palette, no dithering, exact frame count."""
    data = gif_bytes(frames, fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    """The bytes of the GIF `write_gif` writes (also for TensorBoard's image summaries)."""
    frames = _check_frames(frames, "write_gif")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= GIF_MAX_FPS):
        raise ValueError(
            f"write_gif fps={fps!r} must be in (0, {GIF_MAX_FPS:g}]: GIF delays are whole "
            "centiseconds and browsers slow delays under 20 ms down to 100 ms; "
            "write an .mp4 for higher frame rates"
        )
    palette = _gif_palette(frames)
    delays = _gif_delays_cs(len(frames), float(fps))
    indexed = [
        Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE)
        for frame in frames
    ]
    header, _ = GifImagePlugin.getheader(indexed[0], info={"loop": 0, "duration": 1})
    chunks = list(header)
    for image, delay in zip(indexed, delays, strict=True):
        # disposal 1 (keep): every frame covers the whole canvas, so nothing shows through
        chunks += GifImagePlugin.getdata(image, duration=delay * 10, disposal=1)
    chunks.append(b";")  # GIF trailer
    return b"".join(chunks)


# --------------------------------------------------------------------------- writing


def write_mp4(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write H.264 yuv420p MP4 (plays everywhere); odd sizes padded by one edge pixel row/column."""
    frames = _check_frames(frames, "write_mp4")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"write_mp4 fps={fps!r} must be a positive number")
    av = _require_av("write_mp4")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, h, w, _ = frames.shape
    pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
    frames = np.pad(frames, pad, mode="edge")  # (T, H', W', 3) with even H', W' for yuv420p
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush
            container.mux(packet)
    tmp.replace(path)
    return path


# Fonts with Latin (accents included), Greek, Cyrillic and Arabic letters, by file name, where
# Pillow looks for fonts (the system's font folders): the first installed one draws a label
# Pillow's built-in font cannot (it has ASCII alone: "ä" or "б" would be drawn as boxes).
LABEL_FONTS = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "Arial Unicode.ttf", "arial.ttf",
               "Arial.ttf", "FreeSans.ttf", "LiberationSans-Regular.ttf")
LABEL_SIZE = 10  # the built-in font's size


@functools.cache
def _label_fonts() -> tuple:
    """The built-in font, then each installed font of `LABEL_FONTS`."""
    fonts = [ImageFont.load_default()]
    for name in LABEL_FONTS:
        try:
            fonts.append(ImageFont.truetype(name, LABEL_SIZE))
        except OSError:  # not installed here
            continue
    return tuple(fonts)


@functools.cache
def _draws(font, char: str) -> bool:
    """Whether ``font`` has a glyph for ``char`` (not the box it draws for a missing one)."""
    if char.isspace():
        return True
    missing = font.getmask("\U0010fffd")  # a private-use code point no font draws
    mask = font.getmask(char)
    return (mask.size, bytes(mask)) != (missing.size, bytes(missing))


def label_font(labels: list[str]):
    """The font a contact sheet's labels are drawn in: the built-in one when it draws every
    character, else the first installed font of `LABEL_FONTS` that does (the built-in one,
    boxes and all, when none is installed)."""
    chars = set("".join(labels))
    fonts = _label_fonts()
    for font in fonts:
        if all(_draws(font, c) for c in chars):
            return font
    return fonts[0]


def _label_width(labels: list[str], font) -> int:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return max((int(draw.textlength(label, font=font)) for label in labels), default=0)


def contact_sheet(videos: list[np.ndarray], labels: list[str] | None = None,
                  max_frames: int | None = None) -> np.ndarray:
    """Tile clips into one uint8 (H, W, 3) image: rows = clips, columns = frames, labels first.

    ``max_frames`` picks that many frames spread uniformly over each clip, so a row still
    shows the whole sign. Clips may differ in size and length; missing cells stay white.
    """
    if not videos:
        raise ValueError("contact_sheet needs at least one clip, got an empty list")
    if labels is not None and len(labels) != len(videos):
        raise ValueError(f"contact_sheet got {len(labels)} labels for {len(videos)} clips; "
                         "pass one label per clip or labels=None")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"contact_sheet max_frames={max_frames} must be >= 1 or None")
    videos = [_check_frames(v, "contact_sheet") for v in videos]
    if max_frames is not None:
        videos = [
            v[np.linspace(0, len(v) - 1, max_frames).round().astype(int)]  # (max_frames, H, W, 3)
            if len(v) > max_frames else v
            for v in videos
        ]
    gap = 2
    cell_h = max(v.shape[1] for v in videos)
    cell_w = max(v.shape[2] for v in videos)
    cols = max(len(v) for v in videos)
    font = label_font(labels or [])
    label_w = _label_width(labels, font) + 2 * gap if labels else 0
    height = len(videos) * (cell_h + gap) + gap
    width = label_w + cols * (cell_w + gap) + gap
    sheet = np.full((height, width, 3), 255, np.uint8)  # (H, W, 3) white background
    for r, video in enumerate(videos):
        y = gap + r * (cell_h + gap)
        for c, frame in enumerate(video):
            x = label_w + gap + c * (cell_w + gap)
            sheet[y : y + frame.shape[0], x : x + frame.shape[1]] = frame
    if labels:
        image = Image.fromarray(sheet)
        draw = ImageDraw.Draw(image)
        for r, label in enumerate(labels):
            y = gap + r * (cell_h + gap) + cell_h // 2
            draw.text((gap, y), label, fill=(0, 0, 0), font=font, anchor="lm")
        sheet = np.asarray(image).copy()
    return sheet


def write_contact_sheet(path: str | Path, videos: list[np.ndarray], labels: list[str] | None = None,
                        max_frames: int | None = None) -> Path:
    """Save :func:`contact_sheet` as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(videos, labels, max_frames)).save(path, format="PNG")
    return path


def animated_sheet(rows: list[list[np.ndarray]], labels: list[str] | None = None
                   ) -> np.ndarray:
    """Clips side by side, playing together: rows of uint8 (T, H, W, 3) clips -> one uint8
    (T, H', W', 3) clip whose frame t is the contact sheet of every clip's frame t (a shorter
    clip holds its last frame)."""
    if not rows or not all(rows):
        raise ValueError("animated_sheet needs at least one row of clips, each non-empty")
    rows = [[_check_frames(c, "animated_sheet") for c in row] for row in rows]
    length = max(len(c) for row in rows for c in row)
    return np.stack([
        contact_sheet([np.stack([c[min(t, len(c) - 1)] for c in row]) for row in rows], labels)
        for t in range(length)])  # (T, H', W', 3)


def write_animated_sheet(path: str | Path, rows: list[list[np.ndarray]],
                         labels: list[str] | None = None, fps: float = 8.0) -> Path:
    """Save :func:`animated_sheet` as a looping GIF."""
    return write_gif(path, animated_sheet(rows, labels), fps)


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write a clip by suffix: .gif, .mp4 (PyAV) or .png (one-row contact sheet)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return write_gif(path, frames, fps)
    if suffix == ".mp4":
        return write_mp4(path, frames, fps)
    if suffix == ".png":
        return write_contact_sheet(path, [frames])
    raise ValueError(f"write_video cannot write {str(path)!r}: suffix {suffix!r} is not one of "
                     "'.gif', '.mp4', '.png'")


def safe_names(texts: list[str]) -> dict[str, str]:
    """A distinct, filesystem-safe file stem per text (letters, digits, '-', '_' kept).

    Texts that had to change get a short hash so that e.g. "a b" and "a/b" stay apart.
    """
    names: dict[str, str] = {}
    used: set[str] = set()
    for text in texts:
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in text.strip())[:40]
        if stem != text or not stem or stem.lower() in used:
            stem = f"{stem or 'text'}_{hashlib.sha1(text.encode()).hexdigest()[:6]}"
        names[text] = stem
        used.add(stem.lower())  # case-insensitive file systems would merge "A" and "a"
    return names
