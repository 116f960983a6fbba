"""Controlling a run: one run per folder, Ctrl-C to stop at a step's end, the errors that stop
a run with everything saved before still valid."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from text2sign.core import files
from text2sign.core.files import is_disk_full, os_lock  # noqa: F401  (is_disk_full: imported from here)


class RunStopped(RuntimeError):
    """A run stopped for a reason its message names; everything it saved before stays valid."""


class DiskFull(RunStopped, files.DiskFull):
    """A write of a run failed for lack of space."""


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[None]:
    """Hold ``folder/.lock`` for the lifetime of a run; a second run into the same folder is
    refused. The OS releases the lock when the process dies, even by kill -9."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    handle = open(path, "a+")  # noqa: SIM115 (held for the whole run)
    try:
        try:
            os_lock(handle, wait=False)
        except OSError as err:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ValueError(
                f"run folder {str(folder)!r} is in use by another training ({holder}, lock "
                f"{str(path)!r}); wait for it to finish or pass another --out") from err
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


class StopRequest:
    """First Ctrl-C asks the loop to save and stop at the end of the step; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: saving a checkpoint at the end of this step (Ctrl-C again to abort)")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
