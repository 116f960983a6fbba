"""One model in memory, one thread generating with it, and a bounded queue in front of it.

Requests run one at a time in arrival order: a second model copy or a second thread would only
share the same cores (or GPU) and double the memory. When the queue is full, `submit` refuses at
once, so a busy server answers quickly instead of piling up work nobody waits for any more.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from text2sign.serve.reader import Reader, Reading


@dataclass(frozen=True)
class GenerateRequest:
    text: str
    steps: int
    guidance: float
    seed: int
    language: str | None = None  # a code the model signs; None: its default (ASL)


@dataclass
class GenerateResult:
    clip: np.ndarray  # uint8 (T, H, W, 3)
    readings: dict[str, Reading]  # by reader, in the readers' order; empty with none
    queued_seconds: float
    generate_seconds: float
    read_seconds: float


class QueueFull(RuntimeError):
    """The worker already has as many waiting requests as it accepts."""


@dataclass
class _Job:
    request: GenerateRequest
    future: Future
    submitted: float


class GenerationWorker:
    """Runs `pipe` (and the readers, by name) on one thread over a queue of at most `max_queue`
    waiting requests; `submit` returns a Future of a GenerateResult."""

    def __init__(self, pipe: Any, readers: dict[str, Reader] | None = None, max_queue: int = 8):
        if max_queue < 1:
            raise ValueError(f"max_queue={max_queue}: must be at least 1 waiting request")
        self.pipe = pipe
        self.readers = dict(readers or {})
        self.max_queue = max_queue
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._busy = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="text2sign-generate",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the request in progress, fail the waiting ones, and end the thread."""
        if self._thread is None:
            return
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    @property
    def pending(self) -> int:
        """Requests waiting plus the one being generated."""
        return self._queue.qsize() + int(self._busy)

    def submit(self, request: GenerateRequest) -> Future:
        if self._thread is None:
            raise RuntimeError("the generation worker is not running; call start() first")
        job = _Job(request, Future(), time.perf_counter())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self.max_queue} requests are already waiting") from None
        return job.future

    def _loop(self) -> None:
        while (job := self._queue.get()) is not None:
            if not job.future.set_running_or_notify_cancel():
                continue
            self._busy = True
            try:
                job.future.set_result(self._run(job))
            except Exception as err:  # reported to the request that caused it; the worker goes on
                job.future.set_exception(err)
            finally:
                self._busy = False

    def _run(self, job: _Job) -> GenerateResult:
        r = job.request
        started = time.perf_counter()
        clip = self.pipe([r.text], steps=r.steps, guidance=r.guidance, seed=r.seed,
                         language=r.language)[0]
        generated = time.perf_counter()
        language = r.language or self.pipe.default_language  # read in the language it signs
        readings = {name: Reading(*read(clip, language)) for name, read in self.readers.items()}
        done = time.perf_counter()
        return GenerateResult(clip, readings, started - job.submitted, generated - started,
                              done - generated)
