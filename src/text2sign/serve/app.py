"""The web page and its JSON API, a small Starlette app around one GenerationWorker.

Routes: ``GET /`` the page; ``GET /api/info`` the model, its languages, limits, readers and
queue; ``POST /api/generate`` a clip from ``{"text", "language", "steps", "guidance", "seed"}``
(only "text" required) and what each reader reads in it, side by side; ``GET /api/clips/NAME``
a clip written by generate (GIF, MP4, or a PNG strip of its frames that the page's player steps
through). Every error is JSON ``{"error": "one line"}`` with a 4xx/5xx code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.routing import Route

from text2sign.core import units
from text2sign.core.device import describe_device, rss_mb
from text2sign.data.video_io import has_av, write_gif, write_mp4
from text2sign.model_folder.folder_io import training_texts
from text2sign.model_folder.model_info import ModelInfo
from text2sign.serve.corpus import Corpus
from text2sign.serve.reader import same_text
from text2sign.serve.worker import GenerateRequest, GenerationWorker, QueueFull

MAX_BODY_BYTES = 16 * 1024
FIELDS = ("text", "language", "steps", "guidance", "seed")  # of POST /api/generate
_CLIP_NAME = re.compile(r"^(?:[0-9a-f]{32}|real-[0-9a-f]{16})\.(?:gif|png|mp4)$")


@dataclass
class Limits:
    max_chars: int = 64  # texts longer than this get 400 (the model may read fewer: see below)
    max_steps: int = 200
    max_guidance: float = 30.0
    max_queue: int = 8  # waiting requests; past this, 503
    keep_clips: int = 64  # clips (generated and real) kept on disk; older ones are deleted
    fps: float | None = None  # the rate clips play at; None: the model's data rate (or 8)


class ApiError(HTTPException):
    """An HTTP error whose detail is the one line the page shows."""


class ClipStore:
    """Clips kept as lossless PNG strips of their frames (what the page's player shows) in a
    private temporary folder; GIF and MP4 (with PyAV) are encoded from the strip when first
    downloaded. Past `keep` clips the oldest are deleted, so disk use stays bounded."""

    def __init__(self, keep: int, fps: float):
        self.keep, self.fps, self.mp4 = keep, fps, has_av()
        self.folder = Path(tempfile.mkdtemp(prefix="text2sign-serve-"))
        self._frames: OrderedDict[str, int] = OrderedDict()  # key -> frame count, oldest first
        self._lock = threading.Lock()

    def urls(self, key: str) -> dict[str, str | None]:
        return {"gif": f"/api/clips/{key}.gif", "frames": f"/api/clips/{key}.png",
                "mp4": f"/api/clips/{key}.mp4" if self.mp4 else None}

    def frames(self, key: str) -> int | None:
        """The frame count of a stored clip."""
        with self._lock:
            return self._frames.get(key)

    def touch(self, key: str) -> bool:
        """Whether `key` is stored; if so it becomes the newest (a real clip shown again)."""
        with self._lock:
            if key in self._frames:
                self._frames.move_to_end(key)
                return True
            return False

    def put(self, key: str, clip: np.ndarray) -> dict[str, str | None]:
        strip = np.concatenate(list(clip), axis=1)  # (T, H, W, 3) -> (H, T*W, 3)
        Image.fromarray(strip).save(self.folder / f"{key}.png", format="PNG")
        with self._lock:
            self._frames[key] = len(clip)
            self._frames.move_to_end(key)
            while len(self._frames) > self.keep:
                old, _ = self._frames.popitem(last=False)
                for path in self.folder.glob(f"{old}.*"):
                    path.unlink(missing_ok=True)
        return self.urls(key)

    def path(self, name: str) -> Path | None:
        """The file of a stored clip (encoding its GIF or MP4 on first use), or None."""
        if not _CLIP_NAME.match(name):
            return None
        key, suffix = name.split(".")
        path = self.folder / name
        with self._lock:  # one encoder at a time: two downloads never write the same file
            frames = self._frames.get(key)
            if frames is None or (suffix == "mp4" and not self.mp4):
                return None
            if not path.is_file():
                strip = np.asarray(Image.open(self.folder / f"{key}.png").convert("RGB"))
                clip = np.stack(np.split(strip, frames, axis=1))  # (H, T*W, 3) -> (T, H, W, 3)
                (write_gif if suffix == "gif" else write_mp4)(path, clip, self.fps)
            return path

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Service:
    """Everything the routes use: the model behind its worker, and what the page reports."""

    pipe: Any
    model_name: str
    info: ModelInfo
    readers: dict[str, Any] | None = None  # name -> serve.reader.Reader, in the order shown;
    # none: the page says "no reader"
    reader_folders: dict[str, str] | None = None  # name -> its folder (default: its name)
    corpus: Corpus | None = None
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self.readers = dict(self.readers or {})
        self.reader_folders = {n: (self.reader_folders or {}).get(n, n) for n in self.readers}
        self.worker = GenerationWorker(self.pipe, self.readers, self.limits.max_queue)
        self.fps = self.limits.fps or self.pipe.gif_fps
        self.store = ClipStore(self.limits.keep_clips, self.fps)
        corpus = self.corpus
        self.trained = training_texts(  # seen or unseen, for each answer
            self.info, getattr(self.pipe, "training_texts", None),
            None if corpus is None else corpus.texts, f"the corpus {getattr(corpus, 'path', '')}")
        text = self.pipe.config.text
        # The byte-level encoder reads at most max_length bytes: longer texts would be cut.
        self.max_bytes = text.max_length if text.encoder == "bytes" else None

    def describe(self) -> dict[str, Any]:
        cfg = self.pipe.config
        return {
            "model": {"name": self.model_name, "arch": cfg.model.arch,
                      "frames": None if self.pipe.fps else self.pipe.frames,
                      "fps": self.pipe.fps, "max_frames": cfg.data.max_frames,
                      "size": self.pipe.size, "step": self.info.step,
                      "sampler": cfg.sample.sampler, "steps": cfg.sample.steps,
                      "guidance": cfg.sample.guidance, "device": describe_device(self.pipe.device)},
            "languages": list(self.pipe.languages),  # codes the "language" field takes
            "default_language": self.pipe.default_language,
            "limits": {"max_chars": self.limits.max_chars, "max_bytes": self.max_bytes,
                       "max_steps": cfg.distill.steps or self.limits.max_steps,
                       "min_guidance": self.guidance_range[0],
                       "max_guidance": self.guidance_range[1],
                       "max_queue": self.limits.max_queue},
            "readers": [{"name": n, "folder": f} for n, f in self.reader_folders.items()],
            "recognizer": self.first_reader,  # the first reader's folder, for older clients
            "corpus": ({"path": str(self.corpus.path), "clips": len(self.corpus),
                        "texts": len(self.corpus.texts)} if self.corpus is not None else None),
            "seen_source": self.trained.source,
            "mp4": self.store.mp4,
            "queue": {"pending": self.worker.pending, "max_waiting": self.limits.max_queue},
            "memory_mb": rss_mb(),
        }

    @property
    def first_reader(self) -> str | None:
        """The first reader's folder: the one reader of older clients."""
        return next(iter(self.reader_folders.values()), None)

    @property
    def guidance_range(self) -> tuple[float, float]:
        """The guidance scales a request may ask: a student's, the ones it was taught."""
        dc = self.pipe.config.distill
        if dc.steps is not None:
            return dc.guidance_min, min(dc.guidance_max, self.limits.max_guidance)
        return 0.0, self.limits.max_guidance

    def parse(self, body: Any) -> GenerateRequest:
        """A GenerateRequest from the JSON body, or ApiError(400) naming the bad field."""
        cfg, lim = self.pipe.config.sample, self.limits
        if not isinstance(body, dict):
            raise ApiError(400, f"the body must be a JSON object like {{\"text\": \"A\"}}; "
                                f"got a JSON {type(body).__name__}")
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise ApiError(400, f"unknown field(s) {unknown}; allowed: {', '.join(FIELDS)}")
        if "text" not in body:
            raise ApiError(400, "missing field \"text\": what to sign, e.g. {\"text\": \"A\"}")
        text = body["text"]
        if not isinstance(text, str):
            raise ApiError(400, f"\"text\" must be a string; got {type(text).__name__}")
        text = text.strip()
        if not text:
            raise ApiError(400, "\"text\" is empty; type a letter, a word or a name")
        if len(text) > lim.max_chars:
            raise ApiError(400, f"\"text\" has {len(text)} characters; at most "
                                f"{lim.max_chars} are accepted")
        if self.max_bytes is not None and len(text.encode("utf-8")) > self.max_bytes:
            raise ApiError(400, f"\"text\" is {len(text.encode('utf-8'))} bytes in UTF-8; this "
                                f"model reads at most {self.max_bytes}")
        language = self.language(body.get("language"))
        try:  # control or unseen characters, or longer than the model's clips may be
            self.pipe.check_texts([text])
        except ValueError as err:
            raise ApiError(400, str(err)[:300]) from None
        try:  # letters the language's alphabet lacks: perhaps another language spells them
            self.pipe.check_languages([text], language)
        except ValueError as err:
            raise ApiError(400, f"{str(err)[:300]}; this model signs "
                                f"{', '.join(self.pipe.languages)}") from None
        try:
            self.pipe.lengths([text], languages=[language])
        except ValueError as err:
            raise ApiError(400, str(err)[:300]) from None
        # a distilled student samples in at most the steps it was distilled for
        max_steps = self.pipe.config.distill.steps or lim.max_steps
        steps = _number(body, "steps", cfg.steps, int, 1, max_steps)
        guidance = _number(body, "guidance", cfg.guidance, float, *self.guidance_range)
        seed = _number(body, "seed", 0, int, 0, 2**31 - 1)
        return GenerateRequest(text, int(steps), float(guidance), int(seed), language)

    def language(self, value: Any) -> str:
        """The "language" field: a code the model signs (absent or null: its default), or
        ApiError(400) naming the codes it signs."""
        if value is None:
            return self.pipe.default_language
        allowed = ", ".join(self.pipe.languages)
        if not isinstance(value, str):
            raise ApiError(400, f"\"language\" must be a string like \"ase\"; got "
                                f"{type(value).__name__}; allowed: {allowed}")
        if value not in self.pipe.languages:
            what = ("not one this model signs" if value in units.SIGN_LANGUAGES
                    else "not a sign-language code text2sign knows")
            raise ApiError(400, f"\"language\" {value[:20]!r} is {what}; allowed: {allowed}")
        return value

    async def generate(self, request: GenerateRequest) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            future = self.worker.submit(request)
        except QueueFull as err:
            raise ApiError(503, f"the server is busy ({err}); try again in a few seconds",
                           headers={"Retry-After": "5"}) from None
        result = await asyncio.wrap_future(future)
        key = uuid.uuid4().hex
        urls = await run_in_threadpool(self.store.put, key, result.clip)
        readings = result.readings
        first = next(iter(readings.values()), None)
        return {
            "text": request.text, "language": request.language, "steps": request.steps,
            "guidance": request.guidance, "seed": request.seed,
            "sampler": self.pipe.config.sample.sampler,
            "clip": {**urls, "frames_count": int(result.clip.shape[0]),
                     "height": int(result.clip.shape[1]), "width": int(result.clip.shape[2]),
                     "fps": self.fps,
                     "seconds": round(result.clip.shape[0] / self.fps, 2)},
            "readings": {name: {"text": r.text, "confidence": round(r.confidence, 4),
                                "matches": same_text(r.text, request.text)}
                         for name, r in readings.items()},
            # all readers read the same text (null with fewer than two)
            "agree": (all(same_text(r.text, first.text) for r in readings.values())
                      if len(readings) > 1 else None),
            # the first reader's reading and folder, for older clients
            "reading": ({"text": first.text, "confidence": round(first.confidence, 4)}
                        if first is not None else None),
            "recognizer": self.first_reader,
            "seen": self.trained.seen(request.text),
            "seen_source": self.trained.source,
            "real": await run_in_threadpool(self.real_clip, request.text, request.language),
            "timing": {"queued_s": round(result.queued_seconds, 3),
                       "generate_s": round(result.generate_seconds, 3),
                       "read_s": round(result.read_seconds, 3),
                       "total_s": round(time.perf_counter() - started, 3)},
        }

    def real_clip(self, text: str, language: str) -> dict[str, Any] | None:
        """URLs of a real clip of `text` in `language` from the corpus, shaped like the model's
        (at its rate and its own length, for a model timed by its text), and its frame count, or
        None."""
        if self.corpus is None or not self.corpus.has(text, language):
            return None
        # one key per text and language: A in DGS is another clip than A in ASL
        key = "real-" + hashlib.sha1(f"{language}/{text}".encode()).hexdigest()[:16]
        if self.store.touch(key):
            return {**self.store.urls(key), "frames_count": self.store.frames(key)}
        dc = self.pipe.config.data
        rate = dc.time_mode == "fps"
        clip = self.corpus.real_clip(text, dc.max_frames if rate else self.pipe.frames,
                                     self.pipe.size, dc.time_mode, dc.fit,
                                     fps=dc.fps if rate else None, language=language)
        if clip is None:
            return None
        return {**self.store.put(key, clip), "frames_count": int(len(clip))}


def _number(body: dict, name: str, default: Any, kind: type, lo: float, hi: float) -> Any:
    """An optional int/float field in [lo, hi]; null or absent means the default."""
    value = body.get(name)
    if value is None:
        return default
    ok = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if kind is float and ok and not isinstance(value, bool):
        value = float(value) if abs(value) < 1e300 else math.inf  # a 400-digit int: inf
        ok = math.isfinite(value)
    if isinstance(value, bool) or not ok:
        want = "an integer" if kind is int else "a finite number"
        raise ApiError(400, f"\"{name}\" must be {want}; got {body.get(name)!r}"[:200])
    if not lo <= value <= hi:
        bounds = (f"{lo:g} and {hi:g}" if kind is float else f"{lo} and {hi}")
        raise ApiError(400, f"\"{name}\" is {value}; it must be between {bounds}"[:200])
    return value


async def _read_json(request: Request) -> Any:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"the body is over {MAX_BODY_BYTES} bytes; send only "
                                f"{{{', '.join(map(json.dumps, FIELDS))}}}")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ApiError(400, f"the body is not valid JSON ({line}); send e.g. "
                            "{\"text\": \"A\", \"steps\": 25}") from None


def create_app(service: Service) -> Starlette:
    page = resources.files("text2sign.serve").joinpath("page.html").read_text(encoding="utf-8")

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(service.describe())

    async def generate(request: Request) -> JSONResponse:
        try:
            body = await _read_json(request)
        except ClientDisconnect:  # it left mid-upload: nobody reads the answer, nothing failed
            return JSONResponse({"error": "the client disconnected before its body arrived"},
                                status_code=400)
        parsed = service.parse(body)
        return JSONResponse(await service.generate(parsed))

    async def clip(request: Request) -> FileResponse:
        name = request.path_params["name"]
        path = await run_in_threadpool(service.store.path, name)
        if path is None:
            raise ApiError(404, f"no clip {name!r} (clips are kept for the last "
                                f"{service.limits.keep_clips} requests); generate it again")
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc, ApiError) else (
            f"{request.method} {request.url.path}: {exc.detail.lower()}")
        return JSONResponse({"error": detail}, status_code=exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        # One line for the page; never a stack trace.
        line = (str(exc).splitlines() or [""])[0][:300]
        return JSONResponse({"error": f"generation failed: {type(exc).__name__}: {line}"},
                            status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        service.worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.worker.stop)
            service.store.close()

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/clips/{name}", clip),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error, Exception: server_error})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or ValueError saying the port is taken (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port} ({err.strerror or err}); pick another "
                         "with --port N, or stop what is using it") from None
    sock.listen(128)
    return sock


def serve(app: Starlette, sock: socket.socket, log_level: str = "info") -> None:
    """Serve on a bound socket until Ctrl-C."""
    uvicorn.Server(uvicorn.Config(app, log_level=log_level)).run(sockets=[sock])


@contextlib.contextmanager
def serve_in_thread(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the app on a background thread for tests and scripts; yields its base URL."""
    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 30 s")
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
