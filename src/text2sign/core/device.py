"""The machine a command runs on: which torch device, its human name, what the CPU computes
natively, and how much memory this process holds."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
import sys
from pathlib import Path

import psutil
import torch


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """CUDA > MPS > CPU unless a device is named."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but CUDA is not available; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} asked for but MPS is not available; use --device cpu")
    return device


def describe_device(device: torch.device | str) -> str:
    """A human name for a torch device: the GPU model, or the CPU model and thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return f"cpu ({name}, {torch.get_num_threads()} threads)"
    return str(device)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no way to tell
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def peak_memory_mb(device: torch.device) -> float:
    """The most memory this process has held on ``device`` so far: CUDA's peak allocation, or
    for a CPU (and MPS, whose unified memory is the process's) the peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # POSIX only: importing it at the top would break Windows

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, else KiB


def rss_mb() -> float:
    """Resident memory of this process in MiB now (psutil comes with accelerate)."""
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def release_freed_memory() -> None:
    """Give memory the process has freed back to the OS (glibc ``malloc_trim``; a no-op
    elsewhere). Loops over clips allocate megabytes of temporaries beside small arrays they keep:
    glibc serves blocks up to 32 MB from its heap, where the survivors pin them, so resident
    memory grew by ~4 MB a clip read (763 MB over 180 clips of 128 x 128 where 18 MB were live)
    until this is called between batches."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")  # runs ldconfig: looked up once
    return ctypes.CDLL(name) if name else None
