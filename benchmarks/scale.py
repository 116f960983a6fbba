"""How every stage a user runs grows with the corpus: seconds, peak resident memory and disk.

    python benchmarks/scale.py --sizes 1000,10000,70000 [--size 16 --out DIR]
    python benchmarks/scale.py --loader [--clips 192]     # clips/s from a cache, 0/2/4 workers
    python benchmarks/scale.py --faults 10000             # prepare killed half-way; full disk

For each N it writes N synthetic GIF + text pairs (small frames: what is measured is how cost
grows, not pixels/s; 4 clips per text of 4-9 letters, 6-20 frames at 12.5 fps, at least two a
letter) and runs, each as its own process the way a user would: `data check`, `data prepare` at a
fixed count (--frames 8) and at a rate (--fps 6.25, the shipped model's), opening the index, the
latent cache (a small frame autoencoder encoding every clip), `train` (tiny preset at the rate:
start-up to the first step, then 50 steps), the classifier `evaluate` trains on first use, `reader
train` (the conv-gru reader of letters, ``--reader-steps``) and `evaluate --max-texts 40` with
that reader. The corpus is marked as a spelled corpus (the marker `data fingerspelling` writes),
so its texts are read as letters: read as glosses, every made-up word would be an output of its
own, and the reader's last layer would grow with the vocabulary (the model), not with the corpus.
Peak memory is the resident memory of the process and its children (decoding workers), sampled
every 50 ms; disk is what the stage adds.
A table per N, then the growth exponent of each stage's time and memory between the smallest
and the largest N (cost ~ N^k: k = 1 is linear, 0 is flat).

``--faults N`` kills a `data prepare` of N clips half-way (SIGKILL), resumes it and compares the
result with an uninterrupted prepare; then prepares into a tmpfs too small for the cache (a
real full disk: needs root to mount it) and into one too small for the latent cache, and prints
the one line each says, and whether what was committed reads back (`data check`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FPS, SOURCE_FPS, MAX_FRAMES, FIXED_FRAMES = 6.25, 12.5, 16, 8
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class Stage:
    name: str
    seconds: float
    peak_mb: float  # resident memory of the process tree, sampled
    anon_mb: float  # its anonymous part (heap, tensors): what runs out
    disk_mb: float  # what the stage added on disk
    rc: int
    note: str = ""


def text_of(n: int) -> str:
    """A distinct made-up word per n, 3-8 letters."""
    rng = np.random.default_rng(n)
    return "".join(LETTERS[i] for i in rng.integers(0, 26, 3 + n % 6)) + LETTERS[n % 26]


def make_corpus(root: Path, count: int, size: int, frames: int | None = None) -> float:
    """``count`` GIF + text pairs under ``root`` (4 clips a text), of 6-16 frames (two a letter
    at least) or ``frames``; returns seconds taken."""
    from text2sign.data.folder import FINGERSPELLING_MARKER
    from text2sign.data.video_io import write_gif

    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng(i)
        text = text_of(i // 4)
        # two frames a letter at least: at --fps 6.25 a letter reader has a frame for each
        length = frames or max(int(rng.integers(6, 17)), 2 * len(text) + 2)
        video = np.zeros((length, size, size, 3), np.uint8)  # (T, H, W, 3)
        x, y = rng.integers(0, size - 4, 2)
        dx, dy = rng.integers(-1, 2, 2)
        color = rng.integers(64, 255, 3)
        for t in range(length):
            px, py = (x + dx * t) % (size - 4), (y + dy * t) % (size - 4)
            video[t, py:py + 4, px:px + 4] = color
        write_gif(root / f"c{i:06d}.gif", video, fps=SOURCE_FPS)
        (root / f"c{i:06d}.txt").write_text(text)
    # Read in letters, like a corpus `data fingerspelling` writes (see the module's docstring).
    (root / FINGERSPELLING_MARKER).write_text(json.dumps({"kind": "synthetic letters"}))
    return time.perf_counter() - start


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """(resident, anonymous resident) memory of ``pid`` and every descendant, from /proc;
    anonymous leaves out file pages (libraries, memory-mapped files), which the kernel can drop."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    family, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    rss = anon = 0
    for p in family:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("RssAnon:"):
                    anon += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, anon / 1024


def disk_mb(*paths: Path) -> float:
    """Allocated size of files under ``paths`` (blocks on disk, not apparent sizes)."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_blocks * 512
        elif path.is_dir():
            for root, _, files in os.walk(path):
                for f in files:
                    try:
                        total += os.stat(os.path.join(root, f)).st_blocks * 512
                    except OSError:
                        pass
    return total / 2**20


def run(name: str, cmd: list[str], disk_of: list[Path], *, watch=None) -> Stage:
    """Run ``cmd``, sampling its tree's memory; ``watch(elapsed)`` is called at each sample
    and may return a note (e.g. when a file appeared)."""
    before = disk_mb(*disk_of)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    peak, anon, note = 0.0, 0.0, ""
    while proc.poll() is None:
        rss, anon_now = tree_rss_mb(proc.pid)
        peak, anon = max(peak, rss), max(anon, anon_now)
        if watch is not None and not note:
            note = watch(time.perf_counter() - start) or ""
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode not in (0, 1):
        print(f"  {name} exited {proc.returncode}: {err.strip().splitlines()[-3:]}",
              file=sys.stderr)
    return Stage(name, seconds, peak, anon, disk_mb(*disk_of) - before, proc.returncode, note)


def t2s(*args) -> list[str]:
    return [sys.executable, "-m", "text2sign", *map(str, args)]


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def scale_stages(work: Path, count: int, size: int, reader_steps: int | None,
                 quick: bool = False) -> list[Stage]:
    src = work / "clips"
    made = make_corpus(src, count, size)
    stages = [Stage("write the corpus (this script)", made, float("nan"), float("nan"),
                    disk_mb(src), 0)]
    cache_root = src / ".text2sign-cache"
    rate_dir = cache_root / f"r{FPS:g}-m{MAX_FRAMES}-s{size}-fps-crop"
    stages.append(run("data check", t2s("data", "check", src, "--quiet"), [src]))
    stages.append(run(f"data prepare --frames {FIXED_FRAMES}",
                      t2s("data", "prepare", src, "--frames", FIXED_FRAMES, "--size", size,
                          "--quiet"), [cache_root]))
    stages.append(run(f"data prepare --fps {FPS:g}",
                      t2s("data", "prepare", src, "--fps", FPS, "--max-frames", MAX_FRAMES,
                          "--size", size, "--quiet"), [cache_root]))
    stages.append(run("open the index", py(
        "from text2sign.data.cache import ClipCache\n"
        f"c = ClipCache.open({str(rate_dir)!r})\nc[len(c) - 1]\n"), [rate_dir]))
    stages.append(run("latent cache (encode all)", py(
        "import torch\nfrom text2sign.data.cache import ClipCache\n"
        "from text2sign.data.latent_cache import latent_cache\n"
        "from text2sign.models.autoencoder import FrameAutoencoder\n"
        "torch.manual_seed(0)\nae = FrameAutoencoder(4, 4, 16).eval()\n"
        f"latent_cache(ae, ClipCache.open({str(rate_dir)!r}), device=torch.device('cpu'), "
        "batch_size=64, progress=False)\n"), [rate_dir]))
    runs = work / "run"
    log = runs / "log.jsonl"

    def first_step(elapsed: float) -> str:
        return f"first step at {elapsed:.1f} s" if log.is_file() and log.stat().st_size else ""

    sets = ["data.time_mode=fps", f"data.fps={FPS}", f"data.max_frames={MAX_FRAMES}",
            f"data.size={size}", "data.val_fraction=0.1", "data.holdout_texts=0.1",
            f"train.max_steps={1 if quick else 50}", "train.batch_size=8", "train.log_every=1",
            f"train.checkpoint_every={1 if quick else 50}", "train.sample_every=0"]
    train = run(f"train: start-up + {1 if quick else 50} steps",
                t2s("train", "--data", src, "--preset", "tiny", "--out", runs, "--device", "cpu",
                    "--quiet", *[a for s in sets for a in ("--set", s)]),
                [runs], watch=first_step)
    stages.append(train)
    if quick:
        return stages
    stages.append(run("classifier's training", py(
        "from text2sign.data.cache import ClipCache, FixedCountView\n"
        "from text2sign.evaluation.evaluate import CLASSIFIER_FRAMES\n"
        "from text2sign.evaluation.recognizer import load_or_train_recognizer\n"
        f"c = ClipCache.open({str(rate_dir)!r})\n"
        "load_or_train_recognizer(FixedCountView(c, CLASSIFIER_FRAMES), 0.1, device='cpu', "
        "progress=False)\n"), [rate_dir]))
    reader = work / "reader"
    steps = ["--steps", reader_steps] if reader_steps else []
    stages.append(run(f"reader train --arch conv-gru{f' --steps {reader_steps}' * bool(steps)}",
                      t2s("reader", "train", src, "--out", reader, "--arch", "conv-gru", *steps,
                          "--fps", FPS, "--max-frames", MAX_FRAMES, "--size", size,
                          "--val-fraction", 0.1, "--holdout", 0.1, "--device", "cpu", "--quiet"),
                      [reader]))
    stages.append(run("evaluate --max-texts 40", t2s(
        "evaluate", "--model", runs, "--data", src, "--max-texts", 40, "--out", work / "eval",
        "--recognizer", reader, "--device", "cpu", "--quiet"), [work / "eval", rate_dir]))
    return stages


def start_up(stage: Stage) -> float:
    """Seconds from launch to the first logged step of a train stage (nan if none)."""
    if stage.note.startswith("first step at "):
        return float(stage.note.split()[3])
    return float("nan")


def print_table(count: int, stages: list[Stage]) -> None:
    print(f"\n### N = {count:,} clips\n")
    print("| stage | seconds | peak RSS MB | of it anonymous MB | disk MB | note |")
    print("|---|---|---|---|---|---|")
    for s in stages:
        note = s.note + (f" (exit {s.rc})" if s.rc else "")
        print(f"| {s.name} | {s.seconds:.1f} | {s.peak_mb:.0f} | {s.anon_mb:.0f} | "
              f"{s.disk_mb:.1f} | {note} |")
    sys.stdout.flush()


def exponent(a: float, b: float, n_a: int, n_b: int) -> float:
    if not (a > 0 and b > 0):
        return float("nan")
    return math.log(b / a) / math.log(n_b / n_a)


def print_growth(results: dict[int, list[Stage]]) -> None:
    sizes = sorted(results)
    lo, hi = sizes[0], sizes[-1]
    print(f"\n### Growth from N = {lo:,} to {hi:,} (cost ~ N^k)\n")
    print("| stage | seconds k | seconds ratio | memory k | memory ratio |")
    print("|---|---|---|---|---|")
    for a, b in zip(results[lo], results[hi], strict=True):
        print(f"| {a.name} | {exponent(a.seconds, b.seconds, lo, hi):.2f} | "
              f"{b.seconds / a.seconds:.1f}x | {exponent(a.peak_mb, b.peak_mb, lo, hi):.2f} | "
              f"{b.peak_mb / a.peak_mb:.2f}x |")
    train = [next(s for s in results[n] if s.name.startswith("train")) for n in (lo, hi)]
    print(f"\ntrain start-up (launch to first step): {start_up(train[0]):.1f} s at {lo:,}, "
          f"{start_up(train[1]):.1f} s at {hi:,}")


# ----------------------------------------------------------------------------- loader
def loader_throughput(clips: int, frames: int, size: int, batch: int, batches: int) -> None:
    """Clips/s the training DataLoader delivers from a clip cache (uint8 pixels) and from a
    latent cache at the shipped model's latent shape, with 0, 2 and 4 workers, and the CPU time
    a clip costs (the rate one core sustains)."""
    import torch

    from text2sign.data.cache import prepare_cache
    from text2sign.data.dataset import ClipDataset
    from text2sign.data.latent_cache import LatentCache, LatentDataset
    from text2sign.training.loop import StepBatchSampler

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clips"
        src.mkdir()
        make_corpus(src, clips, size, frames=frames)
        cache = prepare_cache(src, frames, size, progress=False)
        latent_shape = (clips, 8, frames, size // 8, size // 8)  # the shipped 8x autoencoder
        lat_path = Path(tmp) / "latents.f16"
        mm = np.memmap(lat_path, np.float16, mode="w+", shape=latent_shape)
        mm[:] = np.random.default_rng(0).normal(size=latent_shape).astype(np.float16)
        mm.flush()
        del mm
        sets = {"clip cache, uint8 pixels": ClipDataset(cache, list(range(clips))),
                "latent cache, float16": LatentDataset(LatentCache(lat_path, latent_shape),
                                                       cache.texts, list(range(clips)))}
        print(f"\n### Loader throughput: batch {batch}, {clips} clips at {frames} x {size} x "
              f"{size} (latents 8 x {frames} x {size // 8} x {size // 8}), {os.cpu_count()} "
              "cores\n")
        print("| dataset | workers | clips/s (wall) | CPU ms a clip, all processes | clips/s a "
              "core |")
        print("|---|---|---|---|---|")
        for label, dataset in sets.items():
            for workers in (0, 2, 4):
                sampler = StepBatchSampler(clips, batch, 1, 0, 0, 0)
                loader = torch.utils.data.DataLoader(
                    dataset, batch_sampler=sampler, num_workers=workers,
                    persistent_workers=workers > 0, prefetch_factor=2 if workers else None)
                it = iter(loader)
                for _ in range(3):  # warm-up: workers started, page cache filled
                    next(it)
                pids = [w.pid for w in getattr(it, "_workers", [])]
                start, cpu = time.perf_counter(), cpu_seconds(pids)
                for _ in range(batches):
                    next(it)
                seconds, cpu = time.perf_counter() - start, cpu_seconds(pids) - cpu
                n = batches * batch
                print(f"| {label} | {workers} | {n / seconds:.0f} | {cpu / n * 1e3:.2f} | "
                      f"{n / cpu:.0f} |")
                sys.stdout.flush()
                del it, loader


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of this process and of ``pids`` (DataLoader workers), from /proc: on a shared
    machine wall time says how busy the others are, CPU time what loading costs."""
    tick = os.sysconf("SC_CLK_TCK")
    total = time.process_time()
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


# ----------------------------------------------------------------------------- faults
def faults(work: Path, count: int, size: int) -> None:
    src = work / "clips"
    made = make_corpus(src, count, size)
    print(f"\n### Faults at N = {count:,} ({made:.0f} s to write the corpus)\n")
    prep = ["data", "prepare", src, "--fps", FPS, "--max-frames", MAX_FRAMES, "--size", size,
            "--quiet", "--out"]
    full = run("uninterrupted prepare", t2s(*prep, work / "full"), [work / "full"])
    print(f"- uninterrupted prepare: {full.seconds:.1f} s, {full.disk_mb:.1f} MB")
    reference = json.loads((work / "full" / "index.json").read_text())

    def crcs(index: dict) -> list:
        return [(c["path"], c["text"], c.get("crc32"), c.get("frames")) for c in index["clips"]]

    # kill -9 half-way: once a commit exists and half the uninterrupted time has passed
    out = work / "killed"
    proc = subprocess.Popen(t2s(*prep, out), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    start = time.perf_counter()
    while proc.poll() is None:
        if (out / "index.json").is_file() and time.perf_counter() - start >= full.seconds / 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    killed_at = time.perf_counter() - start
    committed = len(json.loads((out / "index.json").read_text())["clips"]) if (
        out / "index.json").is_file() else 0
    stamp = (out / "index.json").stat().st_mtime_ns if (out / "index.json").is_file() else 0
    resumed = run("resume", t2s(*prep, out), [out])
    index = json.loads((out / "index.json").read_text())
    decoded = index["decoded"] if (out / "index.json").stat().st_mtime_ns != stamp else 0
    print(f"- killed (SIGKILL) at {killed_at:.1f} s with {committed:,} of {count:,} clips "
          f"committed; the rerun decoded {decoded:,} in {resumed.seconds:.1f} s; "
          f"same clips as the uninterrupted cache: {crcs(index) == crcs(reference)}")

    # a real full disk: a tmpfs smaller than the cache
    mnt = work / "small-disk"
    mnt.mkdir()
    need = disk_mb(work / "full")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={max(1, int(need / 2))}m", "tmpfs",
                       str(mnt)], capture_output=True).returncode != 0:
        print("- full disk: not measured (mounting a small tmpfs needs root)")
        return
    try:
        proc = subprocess.run(t2s(*prep, mnt / "cache"), env=ENV, capture_output=True,
                              text=True)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("text2sign")]
        check = subprocess.run(t2s("data", "check", mnt / "cache", "--quiet"), env=ENV,
                               capture_output=True, text=True)
        print(f"- prepare into a disk of half the cache's size: exit {proc.returncode}, "
              f"{len(lines)} line: `{lines[-1] if lines else proc.stderr.strip()[-300:]}`; "
              f"`data check` of what it left: exit {check.returncode} "
              f"({(check.stdout.strip() or check.stderr.strip()).splitlines()[-1][:200]})")
        subprocess.run(["mount", "-o", f"remount,size={int(need * 1.2) + 2}m", str(mnt)],
                       check=True)
        again = run("resume after freeing space", t2s(*prep, mnt / "cache"), [mnt])
        if again.rc != 0:
            print(f"- after freeing space the same prepare failed: exit {again.rc}")
            return
        index = json.loads((mnt / "cache" / "index.json").read_text())
        print(f"- after freeing space the same prepare resumed: exit {again.rc}, decoded "
              f"{index['decoded']:,} in {again.seconds:.1f} s; same clips as the uninterrupted "
              f"cache: {crcs(index) == crcs(reference)}")
        # the latent cache on a disk with room for the clips only
        latent = subprocess.run(py(
            "import torch\nfrom text2sign.data.cache import ClipCache\n"
            "from text2sign.data.latent_cache import latent_cache\n"
            "from text2sign.models.autoencoder import FrameAutoencoder\n"
            "from text2sign.core.files import DiskFull\n"
            "ae = FrameAutoencoder(32, 2, 16).eval()\n"  # big latents: more than the room left
            "try:\n"
            f"    latent_cache(ae, ClipCache.open({str(mnt / 'cache')!r}), "
            "device=torch.device('cpu'), progress=False)\n"
            "except DiskFull as err:\n    print(err)\n"), env=ENV, capture_output=True,
            text=True)
        check = subprocess.run(t2s("data", "check", mnt / "cache", "--quiet"), env=ENV,
                               capture_output=True, text=True)
        print(f"- latent cache on the same full disk: `{latent.stdout.strip()}` (exit "
              f"{latent.returncode}); clip cache afterwards: `data check` exit {check.returncode}")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    names = [ln.split(":", 1)[1].strip() for ln in (info.read_text().splitlines()
             if info.exists() else []) if ln.startswith("model name")]
    return names[0] if names else "CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000",
                        help="corpus sizes, comma-separated (default 1000,10000)")
    parser.add_argument("--size", type=int, default=16, help="frame side of the synthetic clips")
    parser.add_argument("--out", help="work folder (default: a temporary one, removed after)")
    parser.add_argument("--reader-steps", type=int,
                        help="steps of the reader's training (default: the arch's); its cost "
                        "per step does not depend on N")
    parser.add_argument("--quick", action="store_true",
                        help="the stages whose cost depends on N only: data check, prepare, the "
                        "index, the latent cache and train start-up (one step)")
    parser.add_argument("--loader", action="store_true", help="loader throughput only")
    parser.add_argument("--clips", type=int, default=192, help="--loader: clips in the cache")
    parser.add_argument("--faults", type=int, metavar="N", help="the fault trials at N clips")
    args = parser.parse_args()
    import torch

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}")
    if args.loader:
        loader_throughput(args.clips, 28, 128, batch=8, batches=40)
        return
    work_root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="t2s-scale-"))
    try:
        if args.faults:
            faults(work_root / f"faults-{args.faults}", args.faults, args.size)
            return
        results = {}
        for count in (int(s) for s in args.sizes.split(",")):
            results[count] = scale_stages(work_root / f"n{count}", count, args.size,
                                          args.reader_steps, args.quick)
            print_table(count, results[count])
        if len(results) > 1:
            print_growth(results)
    finally:
        if not args.out:
            shutil.rmtree(work_root, ignore_errors=True)


if __name__ == "__main__":
    main()
