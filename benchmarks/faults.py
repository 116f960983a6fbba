"""Fault injection, run by hand: kill -9 at random moments (also inside checkpoint writes),
damaged files and a full disk, each against the real `text2sign` command.

    python benchmarks/faults.py --trials 15

For every kill trial a tiny training run is started, killed with SIGKILL (at a random moment,
or the instant a checkpoint or model folder is being written), then continued with `--resume`
until it finishes. A trial counts as recovered when the finished run's log (step, loss, LR,
grad norm) equals an uninterrupted run's bit for bit, its model loads, and no hidden leftovers
remain. Prints one table per part.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS = 40
TRAIN = ["--preset", "tiny", "--no-progress", "--device", "cpu", "--set", "data.val_fraction=0",
         "--set", f"train.max_steps={STEPS}", "--set", "train.checkpoint_every=2",
         "--set", "train.log_every=1", "--set", "train.sample_every=0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def make_corpus(root: Path, size: int = 16, frames: int = 4) -> Path:
    from text2sign.data.video_io import write_gif

    moves = {"A": (1, 0), "B": (0, 1), "C": (1, 1)}
    for n, (text, (dx, dy)) in enumerate(moves.items()):
        for k in range(2):
            video = np.zeros((frames, size, size, 3), np.uint8)
            for t in range(frames):
                x, y = 2 + k + dx * t * 2, 2 + dy * t * 2
                video[t, y:y + 5, x:x + 5, n] = 255
            write_gif(root / f"{text}-{k}.gif", video, fps=8)
            (root / f"{text}-{k}.txt").write_text(text)
    return root


def text2sign(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "text2sign", *map(str, args)]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def log_rows(run: Path) -> list[tuple]:
    rows = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["train/loss"], r["train/lr"], r["train/grad_norm"]) for r in rows]


def hidden(run: Path) -> list[Path]:
    return [p for p in run.rglob(".*") if p.name != ".lock"]


def model_loads(run: Path) -> bool:
    return text2sign("info", run).returncode == 0


def kill_trial(data: Path, run: Path, rng: random.Random, in_write: bool,
               span: tuple[float, float]) -> dict:
    """Start a run, SIGKILL it, then resume until it finishes."""
    cmd = [sys.executable, "-m", "text2sign", "train", "--data", str(data), "--out", str(run),
           *TRAIN]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + rng.uniform(*span)
    target = rng.randint(1, STEPS // 2)  # kill inside the target-th folder write seen
    ckpts, model = run / "checkpoints", run / "model"
    where, model_seen, model_gone, writes = "at a random moment", False, 0, set()
    while proc.poll() is None:
        if model.exists():
            model_seen = True
        elif model_seen:
            model_gone += 1
        if in_write:
            names = os.listdir(ckpts) if ckpts.is_dir() else []
            names += os.listdir(run) if run.is_dir() else []
            writing = [n for n in names if ".tmp-" in n and n.startswith((".step-", ".model"))]
            writes.update(writing)
            if writing and len(writes) >= target:
                proc.send_signal(signal.SIGKILL)
                where = f"inside a write of {writing[0].split('.tmp-')[0][1:]}"
                break
        elif time.time() >= deadline:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)  # poll often enough to land inside a folder write
    proc.wait()
    killed = proc.returncode == -signal.SIGKILL
    left = len(hidden(run))
    resumes = 0
    while True:
        saved = list((run / "checkpoints").glob("step-*"))  # what a user sees with ls
        done = text2sign("train", "--data", data, "--out", run, *TRAIN,
                         *(["--resume"] if saved else []))
        resumes += 1
        if done.returncode == 0 or resumes > 3:
            break
    return {"killed": killed, "where": where if killed else "finished before the kill",
            "leftovers": left, "model_gone": model_gone, "rc": done.returncode,
            "err": done.stderr.strip().splitlines()[-1:] if done.returncode else []}


def kill_trials(args: argparse.Namespace, work: Path, data: Path) -> None:
    assert text2sign("data", "prepare", data, "--frames", "4", "--size", "16",
                     "--quiet").returncode == 0  # so every run below starts alike
    reference = work / "reference"
    started = time.time()
    done = text2sign("train", "--data", data, "--out", reference, *TRAIN)
    assert done.returncode == 0, done.stderr
    whole = time.time() - started
    expected = log_rows(reference)
    rng = random.Random(args.seed)
    print(f"\nkill -9 trials: tiny preset, {STEPS} steps, a checkpoint every 2 steps; an "
          f"uninterrupted run takes {whole:.1f} s\n")
    print("| trial | killed | resumed | same log (loss, LR, grad norm) | model loads | "
          "leftovers after kill | leftovers after resume | model/ missing (polls) |")
    print("|---|---|---|---|---|---|---|---|")
    totals = {"same": 0, "loads": 0, "clean": 0, "gone": 0, "in_write": 0}
    for trial in range(args.trials):
        run = work / f"trial-{trial:02d}"
        in_write = trial % 2 == 1
        result = kill_trial(data, run, rng, in_write, (1.0, whole))
        same = result["rc"] == 0 and log_rows(run) == expected
        loads = model_loads(run)
        clean = not hidden(run)
        totals["same"] += same
        totals["loads"] += loads
        totals["clean"] += clean
        totals["gone"] += result["model_gone"] > 0
        totals["in_write"] += result["where"].startswith("inside")
        print(f"| {trial + 1} | {result['where']} | rc {result['rc']} {result['err']} | "
              f"{'yes' if same else 'NO'} | {'yes' if loads else 'NO'} | "
              f"{result['leftovers']} | {len(hidden(run))} | {result['model_gone']} |")
        shutil.rmtree(run)
    n = args.trials
    print(f"\n{totals['same']}/{n} runs finished with the uninterrupted run's log bit for bit, "
          f"{totals['loads']}/{n} models load, {totals['clean']}/{n} without leftovers, "
          f"{totals['gone']}/{n} with a moment where model/ was missing; "
          f"{totals['in_write']} kills landed inside a checkpoint or model write.")


def damaged_files(work: Path, data: Path) -> None:
    """One line naming the file and the fix for each kind of damage."""
    base = work / "damage-base"
    assert text2sign("train", "--data", data, "--out", base, *TRAIN[:-6],
                     "--set", "train.max_steps=6", "--set", "train.checkpoint_every=2",
                     "--set", "train.sample_every=0").returncode == 0
    cache = data / ".text2sign-cache" / "f4-s16-resample-crop"

    def cut(path: Path) -> None:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def flip(path: Path) -> None:
        raw = bytearray(path.read_bytes())
        raw[-100] ^= 0xFF
        path.write_bytes(bytes(raw))

    cases = [
        ("truncated newest checkpoint weights", "checkpoints/step-000006/model.safetensors", cut,
         ["train", "--data", data, "--out", "RUN", *TRAIN[:2], "--device", "cpu",
          "--no-progress", "--resume"]),
        ("flipped byte in a named checkpoint", "checkpoints/step-000004/ema.safetensors", flip,
         ["train", "--out", "RUN", "--preset", "tiny", "--device", "cpu", "--no-progress",
          "--resume", "RUN/checkpoints/step-000004"]),
        ("empty run config.yaml", "config.yaml", lambda p: p.write_text(""),
         ["train", "--out", "RUN", "--preset", "tiny", "--device", "cpu", "--no-progress",
          "--resume"]),
        ("bad YAML in config.yaml", "config.yaml", lambda p: p.write_text("train: [1\n"),
         ["train", "--out", "RUN", "--preset", "tiny", "--device", "cpu", "--no-progress",
          "--resume"]),
        ("truncated model config.json", "model/config.json", cut, ["sample", "--model", "RUN",
                                                                   "A", "--out", "RUN/s"]),
        ("truncated model weights", "model/denoiser.safetensors", cut,
         ["sample", "--model", "RUN", "A", "--out", "RUN/s"]),
        ("flipped byte in model weights", "model/text.safetensors", flip,
         ["info", "RUN"]),
        ("model config.json without its model section", "model/config.json",
         lambda p: p.write_text(json.dumps({**(c := json.loads(p.read_text())), "config": {
             k: v for k, v in c["config"].items() if k != "model"}})), ["info", "RUN"]),
        ("absurd data.size in model config.json", "model/config.json",
         lambda p: p.write_text(json.dumps({**(c := json.loads(p.read_text())), "config": {
             **c["config"], "data": {**c["config"]["data"], "size": 10 ** 6}}})),
         ["sample", "--model", "RUN", "A", "--out", "RUN/s"]),
        ("deleted cache shard", None, lambda p: next(cache.glob("shard-*.u8")).unlink(),
         ["data", "check", cache]),
        ("flipped byte in a cache shard", None, lambda p: flip(next(cache.glob("shard-*.u8"))),
         ["data", "check", cache]),
    ]
    print("\n| damage | exit | what the user reads (first line) |")
    print("|---|---|---|")
    for name, rel, damage, argv in cases:
        run = work / "damaged"
        shutil.copytree(base, run, ignore=shutil.ignore_patterns(".lock"))
        text2sign("data", "prepare", data, "--frames", "4", "--size", "16", "--quiet")
        damage(run / rel if rel else None)
        done = text2sign(*[str(a).replace("RUN", str(run)) for a in argv])
        lines = [ln for ln in (done.stderr + done.stdout).splitlines()
                 if "Traceback" in ln or "error" in ln or "damaged" in ln or "skipping" in ln]
        traceback = "Traceback" in done.stderr
        shown = (lines[0] if lines else done.stderr.strip()[-200:]).replace(str(work), "WORK")
        print(f"| {name} | {done.returncode}{' TRACEBACK' if traceback else ''} | {shown} |")
        shutil.rmtree(run)
    text2sign("data", "prepare", data, "--frames", "4", "--size", "16", "--quiet")


def full_disk(work: Path, data: Path, megabytes: int) -> None:
    """Train into a small tmpfs until it is full (needs permission to mount; skipped without)."""
    mount = work / "tmpfs"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}M", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        print(f"\nfull disk: skipped, cannot mount a tmpfs here ({made.stderr.strip()})")
        return
    try:
        run = mount / "run"
        done = text2sign("train", "--data", data, "--out", run, *TRAIN[:-6],
                         "--set", "train.max_steps=200", "--set", "train.checkpoint_every=2",
                         "--set", "train.keep_checkpoints=50", "--set", "train.sample_every=0")
        last = sorted((run / "checkpoints").glob("step-*"))
        resumed = text2sign("info", run)
        config_ok = (run / "config.yaml").stat().st_size > 0
        print(f"\nfull disk ({megabytes} MB tmpfs): exit {done.returncode}, "
              f"traceback: {'yes' if 'Traceback' in done.stderr else 'no'}; last line: "
              f"{done.stderr.strip().splitlines()[-1].replace(str(mount), 'TMPFS')}")
        print(f"checkpoints kept: {len(last)}, model loads: {resumed.returncode == 0}, "
              f"config.yaml intact: {config_ok}, hidden leftovers: {len(hidden(run))}")
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmpfs-mb", type=int, default=12)
    parser.add_argument("--skip", nargs="*", default=[], choices=("kill", "damage", "disk"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="text2sign-faults-") as tmp:
        work = Path(tmp)
        data = make_corpus(work / "clips")
        if "kill" not in args.skip:
            kill_trials(args, work, data)
        if "damage" not in args.skip:
            damaged_files(work, data)
        if "disk" not in args.skip:
            full_disk(work, data, args.tmpfs_mb)


if __name__ == "__main__":
    main()
