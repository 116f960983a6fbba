"""Writing and reading the project's files safely: atomic writes, checksums, one-line errors.

Every write that replaces a file or folder goes through a temporary name and a rename, so a
crash (kill -9, full disk, power loss) leaves the previous version or the new one, never half
of one. Reads of damaged files raise `DamagedFile`, a `ValueError` whose message names the file
and the fix, so the CLI prints one line instead of a library's traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

TMP_MARK, OLD_MARK = ".tmp-", ".old-"
# The files shipped inside the installed package: models, recognizers, word lists.
ASSETS = Path(__file__).resolve().parents[1] / "assets"


class DamagedFile(ValueError):
    """A file of ours that cannot be read as written (truncated, corrupted, wrong content)."""


class DiskFull(RuntimeError):
    """A write failed for lack of space; the message names what was committed before it, which
    stays valid, and how to go on."""


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC from Python, or from a library that reports it in its message (safetensors)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "os error 28" in str(err) or "No space left on device" in str(err)


def _fsync_dir(folder: Path) -> None:
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_CHUNK = 1 << 20  # characters


def write_text_atomic(path: str | Path, text: str | Iterable[str]) -> Path:
    """Replace ``path`` with ``text`` (a string, or its pieces in order) in one rename: readers
    see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    pieces = ((text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK))
              if isinstance(text, str) else text)  # encoded a piece at a time, never all at once
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for piece in pieces:
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")  # runs ldconfig: looked up once
    return ctypes.CDLL(name, use_errno=True) if name else None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step where the OS can (Linux renameat2, macOS renamex_np)."""
    libc = _libc()
    if libc is None:
        return False
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        at_fdcwd, rename_exchange = -100, 2
        done = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rename_swap = 2
        done = libc.renamex_np(os.fsencode(a), os.fsencode(b), rename_swap)
    else:
        return False
    return done == 0  # unsupported by the filesystem: fall back to two renames


def atomic_dir(final: str | Path, write: Callable[[Path], None]) -> Path:
    """Write a folder through ``write(tmp)`` then move it into place. A crash never leaves a
    half-written folder under the final name, and where the OS can swap two folders in one step
    a complete folder exists under the final name at every instant."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = final.parent / f".{final.name}{TMP_MARK}{tag}"
    tmp.mkdir()
    try:
        write(tmp)
        for item in tmp.iterdir():
            if item.is_file():
                with open(item, "rb") as f:
                    os.fsync(f.fileno())
        if final.exists() and _exchange(tmp, final):
            shutil.rmtree(tmp, ignore_errors=True)  # now the previous folder
        else:
            old = None
            if final.exists():
                old = final.parent / f".{final.name}{OLD_MARK}{tag}"
                final.rename(old)
            tmp.rename(final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def clean_leftovers(folder: str | Path) -> list[str]:
    """Remove what interrupted atomic writes left in ``folder`` (hidden ``.NAME.tmp-*`` files and
    folders); a ``.NAME.old-*`` folder is put back when ``NAME`` is missing (a kill between the two
    renames), else removed. Returns what was done, one line each."""
    folder = Path(folder)
    done: list[str] = []
    if not folder.is_dir():
        return done
    for item in sorted(folder.iterdir()):
        name = item.name
        if not name.startswith(".") or (TMP_MARK not in name and OLD_MARK not in name):
            continue
        mark = TMP_MARK if TMP_MARK in name else OLD_MARK
        target = folder / name[1:name.rindex(mark)]
        if mark == OLD_MARK and item.is_dir() and not target.exists():
            item.rename(target)
            done.append(f"restored {target} from {name}")
        else:
            shutil.rmtree(item) if item.is_dir() else item.unlink()
            done.append(f"removed leftover {item}")
    return done


def os_lock(handle: Any, wait: bool) -> None:
    """An exclusive OS lock on an open file (released when it closes or the process dies)."""
    if os.name == "nt":
        import msvcrt  # Windows only

        msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK if wait else msvcrt.LK_NBLCK, 1)
    else:
        import fcntl  # POSIX only

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))


@contextlib.contextmanager
def write_lock(path: str | Path, waiting: str | None = None) -> Iterator[None]:
    """Wait for, then hold, the lock file ``path``: one writer at a time for a file several
    processes share (a clip cache, a latent cache); a second writer waits, saying ``waiting``
    on stderr, then finds the first one's work. The OS releases the lock when the holder dies,
    even by kill -9."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            os_lock(handle, wait=False)
        except OSError:  # held by another process
            if waiting:
                print(waiting, file=sys.stderr, flush=True)
            os_lock(handle, wait=True)
        yield


_HASHES: dict[tuple[str, int, int], str] = {}
REMEMBER_FROM = 64 << 20  # bytes: a large file's hash is remembered (a 3.4 GB UNet: seconds)


def sha256(path: str | Path) -> str:
    """The one file hasher. Large files' digests are remembered per (path, size, mtime) for this
    process; small ones are always read (a write within the clock's tick keeps the mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 23), b""):
            digest.update(block)
    if stat.st_size >= REMEMBER_FROM:
        _HASHES[key] = digest.hexdigest()
    return digest.hexdigest()


def digests(folder: str | Path, suffix: str = ".safetensors") -> dict[str, str]:
    """sha256 of every ``*suffix`` file in ``folder``, by name."""
    return {p.name: sha256(p) for p in sorted(Path(folder).glob(f"*{suffix}"))}


def verify_digests(folder: str | Path, expected: dict[str, str], fix: str,
                   changed: str = "is damaged (checksum mismatch)") -> None:
    """The one digest check: files against the sha256 recorded when they were written (or
    referenced); a missing or changed file is a `DamagedFile` naming it, ``changed`` and ``fix``."""
    folder = Path(folder)
    for name, want in expected.items():
        path = folder / name
        if not path.is_file():
            raise DamagedFile(f"{str(path)!r} is missing; {fix}")
        if sha256(path) != want:
            raise DamagedFile(f"{str(path)!r} {changed}; {fix}")


def read_json(path: str | Path, fix: str) -> dict[str, Any]:
    """A JSON object from ``path``, or a `DamagedFile` naming it and ``fix``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DamagedFile(f"{str(path)!r} is missing; {fix}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedFile(f"{str(path)!r} is damaged ({err}); {fix}") from err
    if not isinstance(data, dict):
        raise DamagedFile(f"{str(path)!r} does not hold a JSON object; {fix}")
    return data


def load_tensors(path: str | Path, fix: str) -> dict[str, Any]:
    """A safetensors file, or a `DamagedFile` naming it and ``fix`` (truncated, not safetensors)."""
    # safetensors.torch imports torch; this module loads with `text2sign --help` (via config)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DamagedFile(f"{str(path)!r} is missing; {fix}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise DamagedFile(f"{str(path)!r} is damaged ({str(err).splitlines()[0]}); {fix}") from err


# ----------------------------------------------------------------------------- a run's log file


def keep_log(path: Path, last_step: int) -> None:
    """Keep the log's lines up to ``last_step`` (the checkpoint resumed from; 0 for a new run)."""
    write_text_atomic(path, "".join(ln + "\n" for ln in log_lines(path)
                                    if json.loads(ln)["step"] <= last_step))


def log_lines(path: Path) -> list[str]:
    """The complete JSON lines of a run's log; a line a kill cut short is dropped."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    good = []
    for line in lines:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            continue
        good.append(line)
    return good


def append_line(path: Path, line: str) -> None:
    """One log line in one write call, so a kill leaves whole lines (plus at most one cut)."""
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
