"""Two processes on one corpus at once (two experiments, or an evaluation beside a training):
real processes, started together behind a file barrier, with the slow step slowed further so
their writes overlap every time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_corpus

from text2sign.data.cache import INDEX, default_cache_dir, prepare_cache

CHILD = r"""
import json, sys, time
from pathlib import Path

mode, corpus, barrier, me = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
import torch
from text2sign.data import cache as cache_module

calls = []


def slowly(fn):
    def wrapper(*args, **kwargs):
        calls.append(1)
        time.sleep(0.3)  # widen the window: both processes are inside the write together
        return fn(*args, **kwargs)
    return wrapper


cache_module._decode = slowly(cache_module._decode)
(barrier / me).touch()
deadline = time.time() + 120
while len(list(barrier.iterdir())) < 2 and time.time() < deadline:
    time.sleep(0.005)
if mode == "late" and me == "1":  # arrive while the other one's first build is under way
    while not [p for p in cache_module.default_cache_dir(corpus, 4, 16).glob("*")
               if p.name != ".lock"] and time.time() < deadline:
        time.sleep(0.005)
cache = cache_module.prepare_cache(corpus, 4, 16, progress=False, workers=1)
if mode == "latent":
    from text2sign.data.latent_cache import latent_cache
    from text2sign.models.autoencoder import FrameAutoencoder

    torch.manual_seed(0)  # the same weights in both processes: one latent file
    ae = FrameAutoencoder(4, 4, 8).eval()
    ae.encode = slowly(ae.encode)
    calls.clear()
    latents = latent_cache(ae, cache, device=torch.device("cpu"), batch_size=2, progress=False)
    assert latents[len(latents) - 1].shape == (4, 4, 4, 4)
print(json.dumps({"calls": len(calls), "clips": len(cache)}))
"""


def run_two(mode: str, corpus: Path, tmp_path: Path) -> list[dict]:
    barrier = tmp_path / f"barrier-{mode}"
    barrier.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, mode, str(corpus), str(barrier),
                               str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append({**json.loads(out.strip().splitlines()[-1]), "stderr": err})
    return results


@pytest.fixture()
def corpus(tmp_path) -> Path:
    return make_corpus(tmp_path / "corpus")


def test_two_processes_prepare_one_new_cache(corpus, tmp_path):
    results = run_two("open", corpus, tmp_path)
    assert [r["clips"] for r in results] == [6, 6]
    assert sum(r["calls"] for r in results) == 6  # one process decoded, the other reused


def test_a_process_arriving_during_the_first_build_waits_and_reuses_it(corpus, tmp_path):
    """Two runs on a new corpus: the second finds the first's cache half built (shards, no
    index yet), waits for it, says so, and reuses it."""
    first, second = run_two("late", corpus, tmp_path)
    assert first["clips"] == second["clips"] == 6
    assert (first["calls"], second["calls"]) == (6, 0)
    assert "waiting for another process" in second["stderr"]


def test_opening_an_unchanged_cache_writes_nothing(corpus, tmp_path):
    prepare_cache(corpus, 4, 16, progress=False)
    index = default_cache_dir(corpus, 4, 16) / INDEX
    before = index.stat()
    results = run_two("open", corpus, tmp_path)
    assert [r["calls"] for r in results] == [0, 0]
    after = index.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    folder = index.parent
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".lock"]


def test_two_runs_share_one_latent_cache(corpus, tmp_path):
    prepare_cache(corpus, 4, 16, progress=False)
    results = run_two("latent", corpus, tmp_path)
    assert sorted(r["calls"] for r in results) == [0, 3]  # 6 clips, 2 per batch, encoded once
    folder = default_cache_dir(corpus, 4, 16)
    assert len(list(folder.glob("latents-*.f16"))) == 1
    assert not [p for p in folder.iterdir() if ".tmp" in p.name]
