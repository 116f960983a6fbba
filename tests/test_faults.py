"""Faults a user meets: damaged files, interrupted writes, two runs at once, a full disk.

Each ends in one line naming the file and the fix, and no good data is lost. The kill -9 trials
that interrupt real processes at random moments are `benchmarks/faults.py`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import losses, tiny_config
from safetensors.torch import load_file, save_file

from text2sign.cli import main
from text2sign.core.files import DamagedFile, atomic_dir, clean_leftovers
from text2sign.core.run_control import run_lock
from text2sign.model_folder.pipeline import Text2SignPipeline
from text2sign.training.loop import train
from text2sign.training.run_state import resume_config


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory) -> Path:
    """A run of 6 steps with checkpoints at 2, 4 and 6."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(corpus, max_steps=6, checkpoint_every=2, keep_checkpoints=3), run,
          progress=False, device="cpu")
    return run


def copy_run(run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


def cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("text2sign")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def flip_byte(path: Path, offset_from_end: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- resume


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(finished, corpus, tmp_path,
                                                               capsys):
    run = copy_run(finished, tmp_path)
    truncate(run / "checkpoints" / "step-000006" / "model.safetensors")
    cfg = tiny_config(corpus, max_steps=8, checkpoint_every=2, keep_checkpoints=3)
    train(cfg, run, resume=True, progress=False, device="cpu")
    err = capsys.readouterr().err
    assert "skipping checkpoint step-000006" in err and "model.safetensors" in err
    assert [s for s, _ in losses(run)] == [1, 2, 3, 4, 5, 6, 7, 8]  # continued from step 4
    assert losses(run)[:4] == losses(finished)[:4]


def test_named_damaged_checkpoint_fails_in_one_line(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    flip_byte(run / "checkpoints" / "step-000004" / "ema.safetensors")
    code, err = cli(capsys, "train", "--out", run, "--resume", run / "checkpoints" /
                    "step-000004", "--no-progress", "--device", "cpu", "--preset", "tiny")
    line = one_line(err)
    assert code == 2 and "ema.safetensors" in line and "checksum" in line
    assert "--resume from the checkpoint before it" in line


def test_resume_with_another_config_names_missing_and_unexpected_keys(finished, corpus,
                                                                      tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    (run / "config.yaml").unlink()  # so the run's config does not win
    state = json.loads((run / "checkpoints" / "step-000006" / "state.json").read_text())
    state.pop("config")
    (run / "checkpoints" / "step-000006" / "state.json").write_text(json.dumps(state))
    cfg = tiny_config(corpus, max_steps=8)
    cfg.model.params["num_res_blocks"] = 2
    with pytest.raises(ValueError, match=r"missing keys \[.+\], unexpected keys \[.*\]"):
        train(cfg, run, resume=True, progress=False, device="cpu")


def test_resume_with_weights_of_another_shape_fails_clearly(finished, corpus, tmp_path):
    run = copy_run(finished, tmp_path)
    cfg = tiny_config(corpus, max_steps=8)
    cfg.model.params["channels"] = 8  # same names, other shapes
    (run / "config.yaml").unlink()
    state_file = run / "checkpoints" / "step-000006" / "state.json"
    state = json.loads(state_file.read_text())
    state["config"] = cfg.to_dict()
    state_file.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="does not fit this run's model.*size mismatch"):
        train(cfg, run, resume=True, progress=False, device="cpu")


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("train: [1, 2\n", "is not valid YAML"),
])
def test_damaged_run_config_names_itself(finished, tmp_path, capsys, content, message):
    run = copy_run(finished, tmp_path)
    (run / "config.yaml").write_text(content)
    code, err = cli(capsys, "train", "--out", run, "--resume", "--no-progress", "--device",
                    "cpu", "--preset", "tiny")
    line = one_line(err)
    assert code == 2 and "config.yaml" in line and message in line


def test_resume_uses_the_checkpoint_config_when_config_yaml_is_gone(finished, corpus, tmp_path):
    run = copy_run(finished, tmp_path)
    (run / "config.yaml").unlink()
    other = tiny_config(corpus, max_steps=8)
    cfg = resume_config(other, run, True)
    assert cfg.train.max_steps == 8 and cfg.train.checkpoint_every == 2  # the checkpoint's
    train(cfg, run, resume=True, progress=False, device="cpu")
    assert [s for s, _ in losses(run)][-1] == 8


def test_resume_applies_settings_that_keep_model_and_data(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    code, err = cli(capsys, "train", "--out", run, "--resume", "--no-progress", "--device",
                    "cpu", "--set", "train.max_steps=8", "--set", "train.report_to=none",
                    "--set", "train.log_every=2")
    assert code == 0, err
    assert ("changed settings apply: train.max_steps 6 -> 8, train.log_every 1 -> 2, "
            "train.report_to 'tensorboard' -> 'none'") in err
    assert [s for s, _ in losses(run)] == [1, 2, 3, 4, 5, 6, 8]  # logged every 2 from step 7
    saved = json.loads((run / "model" / "config.json").read_text())["config"]
    assert saved["train"]["report_to"] == "none" and saved["model"]["preset"] == "tiny"


def test_resume_refuses_settings_that_change_model_or_data(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    code, err = cli(capsys, "train", "--out", run, "--resume", "--no-progress", "--device",
                    "cpu", "--set", "train.lr=0.5", "--set", "text.dim=64",
                    "--set", "train.max_steps=8")
    line = one_line(err)
    assert code == 2 and "text.dim=64 (run: 32)" in line and "train.lr=0.5 (run:" in line
    assert "another --out" in line and "train.max_steps" not in line
    assert [s for s, _ in losses(run)][-1] == 6  # nothing trained


def test_resume_refusal_names_each_differing_parameter_with_both_values(finished, tmp_path,
                                                                        capsys):
    """A change inside model.params is named entry by entry, each with the run's value."""
    run = copy_run(finished, tmp_path)
    code, err = cli(capsys, "train", "--out", run, "--resume", "--no-progress", "--device",
                    "cpu", "--set", "model.params.channels=24", "--set", "model.params.head_dim=4")
    line = one_line(err)
    assert code == 2, err
    assert "model.params.channels=24 (run: 16), model.params.head_dim=4 (run: 8)" in line, line
    assert [s for s, _ in losses(run)][-1] == 6  # nothing trained


def test_resume_without_a_checkpoint_starts_the_run(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    tiny_config(corpus, max_steps=2).save(run / "config.yaml")  # killed before checkpoint 1
    (run / "log.jsonl").write_text('{"step": 1, "train/loss": 1.0}\n')
    code, err = cli(capsys, "train", "--out", run, "--resume", "--no-progress", "--device",
                    "cpu")
    assert code == 0, err
    assert "no checkpoint in" in err and "starting the run from step 0" in err
    assert [s for s, _ in losses(run)] == [1, 2] and (run / "model" / "config.json").is_file()


def test_truncated_state_json_names_the_file(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    for step in ("000002", "000004", "000006"):
        truncate(run / "checkpoints" / f"step-{step}" / "state.json")
    code, err = cli(capsys, "train", "--out", run, "--resume", "--no-progress", "--device",
                    "cpu", "--preset", "tiny")
    assert code == 2 and "no checkpoint in" in one_line(err)
    assert "state.json" in err and "is damaged" in err


def test_a_cut_log_line_is_dropped_on_resume(finished, corpus, tmp_path):
    run = copy_run(finished, tmp_path)
    with (run / "log.jsonl").open("a") as f:
        f.write('{"step": 7, "train/lo')  # a kill in the middle of a write
    cfg = tiny_config(corpus, max_steps=8, checkpoint_every=2, keep_checkpoints=3)
    train(cfg, run, resume=True, progress=False, device="cpu")
    assert [s for s, _ in losses(run)] == list(range(1, 9))


# ----------------------------------------------------------------------------- model folders


@pytest.mark.parametrize("damage, message", [
    (lambda m: truncate(m / "config.json"), "config.json' is damaged"),
    (lambda m: truncate(m / "denoiser.safetensors"), "denoiser.safetensors' is damaged"),
    (lambda m: flip_byte(m / "denoiser.safetensors"), "checksum mismatch"),
    (lambda m: flip_byte(m / "text.safetensors"), "checksum mismatch"),
    (lambda m: _edit_config(m, lambda c: c["config"].pop("model")), "no ['model'] section"),
    (lambda m: _edit_config(m, lambda c: c.pop("files") and c["config"]["model"]["params"]
                            .update(channels=32)), "do not fit the model"),
    (lambda m: _edit_config(m, lambda c: c["config"]["data"].update(size=10 ** 6)),
     "data.size=1000000 is out of range"),
    (lambda m: _edit_config(m, lambda c: c["config"]["data"].update(frames=10 ** 6)),
     "data.frames=1000000 is out of range"),
    (lambda m: _edit_config(m, lambda c: c["config"]["text"].update(max_length=10 ** 9)),
     "text.max_length=1000000000 is out of range"),
    (lambda m: _edit_config(m, lambda c: c["config"]["diffusion"].update(
        num_train_timesteps=10 ** 10)), "diffusion.num_train_timesteps"),
    (lambda m: _edit_config(m, lambda c: c.pop("files") and c["config"]["model"]["params"]
                            .update(channels=4096)), "do not fit the model"),
    (lambda m: _edit_config(m, lambda c: c["config"]["model"]["params"]
                            .update(channels=10 ** 9)), "model.params.channels=1000000000"),
    (lambda m: _edit_config(m, lambda c: c["config"]["model"]["params"]
                            .update(num_res_blocks=10 ** 4)), "model.params.num_res_blocks"),
    (lambda m: _edit_config(m, lambda c: c.pop("files") and c["config"]["text"]
                            .update(dim=16384, layers=256, heads=1)), "do not fit the model"),
])
def test_damaged_model_folder_fails_in_one_line(finished, tmp_path, capsys, damage, message):
    model = copy_run(finished, tmp_path) / "model"
    damage(model)
    for argv in (["sample", "--model", model, "A", "--out", tmp_path / "o", "--device", "cpu"],
                 ["info", model]):
        code, err = cli(capsys, *argv)
        if argv[0] == "info" and "fit" in message:
            continue  # info reads config.json only
        line = one_line(err)
        assert code == 2 and message in line, line
        assert str(model) in line


def _edit_config(model: Path, edit) -> None:
    info = json.loads((model / "config.json").read_text())
    edit(info)
    (model / "config.json").write_text(json.dumps(info))


def test_model_folder_records_checksums(finished):
    info = json.loads((finished / "model" / "config.json").read_text())
    assert set(info["files"]) == {"denoiser.safetensors", "text.safetensors"}


def test_text_encoder_folder_with_pickle_weights_is_refused(tmp_path):
    from test_text import minilm_path

    from text2sign.models.text import PretrainedTextEncoder

    folder = tmp_path / "minilm"
    shutil.copytree(minilm_path(), folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="holds pytorch_model.bin.*no pickled weights"):
        PretrainedTextEncoder(str(folder))


# ----------------------------------------------------------------------------- interrupted writes


def test_model_folder_exists_at_every_instant_of_a_swap(tmp_path, monkeypatch):
    from text2sign.core.files import _exchange

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    if not _exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this OS or filesystem cannot swap two folders in one step")
    (tmp_path / "a").rmdir()
    (tmp_path / "b").rmdir()
    final = tmp_path / "model"
    atomic_dir(final, lambda tmp: (tmp / "w").write_text("old"))
    seen = []
    real_rename, real_rmtree = Path.rename, shutil.rmtree

    def watch(fn):
        def wrapped(*args, **kwargs):
            result = fn(*args, **kwargs)
            seen.append((final / "w").is_file())
            return result
        return wrapped

    monkeypatch.setattr(Path, "rename", watch(real_rename))
    monkeypatch.setattr(shutil, "rmtree", watch(real_rmtree))
    atomic_dir(final, lambda tmp: (tmp / "w").write_text("new"))
    assert seen and all(seen)
    assert (final / "w").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_leftovers_of_a_killed_run_are_cleaned_or_restored(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / ".step-000004.tmp-1234abcd").mkdir(parents=True)
    (run / ".model.tmp-deadbeef").mkdir()
    (run / ".config.yaml.tmp-0000aaaa").write_text("half")
    (run / ".model.old-cafe0000").mkdir()
    (run / ".model.old-cafe0000" / "config.json").write_text("{}")
    done = clean_leftovers(run) + clean_leftovers(run / "checkpoints")
    assert len(done) == 4
    # model/ was missing: the complete previous folder is put back, not deleted.
    assert (run / "model" / "config.json").is_file()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "model"]
    assert list((run / "checkpoints").iterdir()) == []


def test_training_cleans_leftovers_at_start(finished, corpus, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    (run / "checkpoints" / ".step-000008.tmp-1234abcd").mkdir()
    shutil.move(run / "model", run / ".model.old-00000000")
    cfg = tiny_config(corpus, max_steps=7, checkpoint_every=0)
    train(cfg, run, resume=True, progress=False, device="cpu")
    assert "restored" in capsys.readouterr().err
    assert not [p for p in run.rglob(".*") if p.name != ".lock"]


# ----------------------------------------------------------------------------- two runs, full disk


def test_second_run_into_the_same_folder_is_refused(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    with run_lock(run):
        code, err = cli(capsys, "train", "--data", corpus, "--out", run, "--no-progress",
                        "--device", "cpu", "--preset", "tiny")
        line = one_line(err)
        assert code == 2 and "is in use by another training" in line and "--out" in line
    assert not (run / "checkpoints").exists()
    with run_lock(run):  # released: a later run may take it
        pass


def test_full_disk_names_the_folder_and_last_good_checkpoint(corpus, tmp_path, capsys,
                                                            monkeypatch):
    from safetensors import SafetensorError

    import text2sign.training.run_state as run_state

    calls = {"n": 0}

    def filling(tensors, filename, *args, **kwargs):
        calls["n"] += 1
        if "step-000004" in filename:
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: "
                                  "StorageFull, message: \"No space left on device\" })"
                                  " (os error 28)")
        save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(run_state, "save_file", filling)
    run = tmp_path / "run"
    code, err = cli(capsys, "train", "--data", corpus, "--out", run, "--no-progress",
                    "--device", "cpu", "--preset", "tiny", "--set", "data.val_fraction=0",
                    "--set", "train.max_steps=6", "--set", "train.checkpoint_every=2")
    line = one_line(err)
    assert code == 1 and "disk full" in line and str(run) in line and "step-000002" in line
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000002"]
    assert (run / "config.yaml").stat().st_size > 0
    assert Text2SignPipeline.from_pretrained(run, device="cpu").info.step == 2


def test_config_yaml_is_written_atomically(tmp_path, monkeypatch):
    from text2sign.model_folder.build import build_config

    cfg = build_config("tiny")
    path = tmp_path / "config.yaml"
    cfg.save(path)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", no_space)
    with pytest.raises(OSError):
        build_config("tiny", overrides=["train.lr=1e-5"]).save(path)
    assert path.read_text() == cfg.to_yaml()  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


# ----------------------------------------------------------------------------- cache shards


def prepared(corpus: Path, tmp_path: Path):
    from text2sign.data.cache import prepare_cache

    src = tmp_path / "clips"
    shutil.copytree(corpus, src, ignore=shutil.ignore_patterns(".text2sign-cache"))
    return src, prepare_cache(src, 4, 16, out=tmp_path / "cache", progress=False)


@pytest.mark.parametrize("damage", ["delete", "truncate", "flip"])
def test_damaged_cache_is_found_and_repaired(corpus, tmp_path, capsys, damage):
    src, cache = prepared(corpus, tmp_path)
    shard = cache.path / sorted(cache.index["shards"])[0]
    {"delete": lambda: shard.unlink(), "truncate": lambda: truncate(shard),
     "flip": lambda: flip_byte(shard, 1000)}[damage]()
    capsys.readouterr()
    code = main(["data", "check", str(cache.path)])
    out = capsys.readouterr().out
    assert code == 1 and "damaged" in out and "data prepare" in out
    assert main(["data", "prepare", str(src), "--frames", "4", "--size", "16", "--out",
                 str(cache.path), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "re-decoding" in printed.err
    assert "0 decoded now" not in printed.out
    assert main(["data", "check", str(cache.path)]) == 0
    assert "0 damaged" in capsys.readouterr().out


def test_a_run_opens_its_cache_without_reading_a_clip_and_redecodes_a_lost_shard(
        corpus, tmp_path, monkeypatch, capsys):
    """A run's start-up costs the index, not the corpus's bytes: no clip is read back when the
    cache is unchanged; a shard cut short is found by its length and its clips decoded again."""
    from text2sign.data.cache import ClipCache
    from text2sign.data.dataset import open_clips

    src, cache = prepared(corpus, tmp_path)
    want = {path: cache[i].copy() for i, path in enumerate(cache.paths)}

    def no_read(self, i):
        raise AssertionError(f"clip {i} was read while opening the cache")

    with monkeypatch.context() as patch:
        patch.setattr(ClipCache, "__getitem__", no_read)
        again = open_clips(src, 4, 16, cache=cache.path, progress=False)
    assert again.index["decoded"] == 0 and again.paths == cache.paths
    truncate(cache.path / sorted(cache.index["shards"])[0])
    capsys.readouterr()
    repaired = open_clips(src, 4, 16, cache=cache.path, progress=False)
    assert "re-decoding" in capsys.readouterr().err and repaired.index["decoded"] > 0
    assert sorted(repaired.paths) == sorted(want)
    for i, path in enumerate(repaired.paths):
        assert np.array_equal(repaired[i], want[path]), path


def test_reading_a_damaged_clip_fails_naming_the_shard(corpus, tmp_path):
    from text2sign.data.cache import ClipCache

    _, cache = prepared(corpus, tmp_path)
    shard = cache.path / cache.index["clips"][0]["shard"]
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF  # inside the first clip
    shard.write_bytes(bytes(data))
    with pytest.raises(DamagedFile, match=f"{shard.name}.*checksum.*data prepare"):
        ClipCache.open(cache.path)[0]
    assert np.array_equal(ClipCache.open(cache.path)[1], cache[1])



def test_interrupted_model_write_is_named_by_sample(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    shutil.move(run / "model", run / ".model.old-00000000")  # a kill between two renames
    code, err = cli(capsys, "sample", "--model", run, "A", "--out", tmp_path / "o")
    line = one_line(err)
    assert code == 2 and "was interrupted" in line and ".model.old-00000000" in line


# ----------------------------------------------------------------------------- prepare at scale
def clip_folder(root: Path, count: int, size: int = 12) -> Path:
    """``count`` small GIF + text pairs of random colour blocks."""
    from text2sign.data.video_io import write_gif

    root.mkdir(parents=True)
    for i in range(count):
        rng = np.random.default_rng(i)
        colors = rng.integers(0, 255, (4, 3), dtype=np.uint8)
        write_gif(root / f"c{i:03d}.gif", colors[rng.integers(0, 4, (5, size, size))], fps=10)
        (root / f"c{i:03d}.txt").write_text(f"text {i % 7}")
    return root


def same_cache(a, b) -> None:
    assert a.paths == b.paths and a.texts == b.texts
    assert all(np.array_equal(a[i], b[i]) for i in range(len(a)))


def test_prepare_killed_after_its_first_commit_resumes_to_the_same_cache(tmp_path):
    """kill -9 of a real `prepare` process once it has committed some clips; the next prepare
    decodes only the rest and ends with the cache a prepare that was never killed makes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import text2sign
    from text2sign.data.cache import ClipCache, prepare_cache

    src, out = clip_folder(tmp_path / "src", 40), tmp_path / "cache"
    slow = ("import sys, time\nimport text2sign.data.cache as c\nc.SAVE_EVERY_S = 0.0\n"
            "real = c._decode\n"
            "def slow(job):\n    time.sleep(0.05)\n    return real(job)\n"
            "c._decode = slow\n"
            "c.prepare_cache(sys.argv[1], 4, 8, out=sys.argv[2], progress=False, workers=1)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(text2sign.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", slow, str(src), str(out)], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "index.json").is_file() and len(ClipCache.open(out)) >= 5:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    partial = ClipCache.open(out)
    committed = len(partial)
    assert 5 <= committed < 40, committed  # killed half-way, after a commit
    assert all(partial[i].shape == (4, 8, 8, 3) for i in range(committed))  # usable as it is
    resumed = prepare_cache(src, 4, 8, out=out, progress=False, workers=1)
    assert resumed.index["decoded"] == 40 - committed  # the committed clips were not decoded
    same_cache(resumed, prepare_cache(src, 4, 8, out=tmp_path / "fresh", progress=False))


def test_full_disk_during_prepare_keeps_the_last_commit_and_says_so(tmp_path, capsys,
                                                                  monkeypatch):
    import errno

    from text2sign.data import cache as cache_module
    from text2sign.data.cache import ClipCache, prepare_cache

    src, out = clip_folder(tmp_path / "src", 12), tmp_path / "cache"
    monkeypatch.setattr(cache_module, "SAVE_EVERY_S", 0.0)  # a commit after every clip
    real_add = cache_module._Writer.add

    def filling(self, clip):
        if sum(self.shards.values()) >= 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add(self, clip)

    monkeypatch.setattr(cache_module._Writer, "add", filling)
    code, err = cli(capsys, "data", "prepare", src, "--frames", "4", "--size", "8", "--out", out,
                    "--quiet")
    line = one_line(err)
    assert code == 1 and "disk full" in line and str(out) in line
    assert "5 clips committed before (of 12) and is usable" in line and "resume" in line
    kept = ClipCache.open(out)
    assert len(kept) == 5 and all(kept[i].shape == (4, 8, 8, 3) for i in range(5))
    monkeypatch.setattr(cache_module._Writer, "add", real_add)  # space freed
    resumed = prepare_cache(src, 4, 8, out=out, progress=False)
    assert resumed.index["decoded"] == 7
    same_cache(resumed, prepare_cache(src, 4, 8, out=tmp_path / "fresh", progress=False))


def test_full_disk_during_the_latent_cache_writes_nothing_and_says_so(tmp_path, monkeypatch):
    import errno
    import os

    from text2sign.core.files import DiskFull
    from text2sign.data.cache import prepare_cache
    from text2sign.data.latent_cache import latent_cache
    from text2sign.models.autoencoder import FrameAutoencoder

    cache = prepare_cache(clip_folder(tmp_path / "src", 6), 4, 16, out=tmp_path / "cache",
                          progress=False)
    ae = FrameAutoencoder(latent_channels=2, factor=4, width=8)

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space, raising=False)
    with pytest.raises(DiskFull, match=r"disk full: the latent cache .* needs .* GB; nothing was "
                       "written and the clip cache is unchanged"):
        latent_cache(ae, cache, device=torch.device("cpu"), progress=False)
    assert [p.name for p in cache.path.iterdir()
            if ".f16" in p.name and not p.name.endswith(".lock")] == []
    assert cache[5].shape == (4, 16, 16, 3)
    monkeypatch.undo()  # space freed
    assert len(latent_cache(ae, cache, device=torch.device("cpu"), progress=False)) == 6


def test_full_disk_before_the_first_commit_leaves_nothing_and_the_rerun_starts_over(
        tmp_path, capsys, monkeypatch):
    import errno

    from text2sign.data import cache as cache_module
    from text2sign.data.cache import prepare_cache

    src, out = clip_folder(tmp_path / "src", 8), tmp_path / "cache"
    real_add = cache_module._Writer.add

    def filling(self, clip):
        if sum(self.shards.values()) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add(self, clip)

    monkeypatch.setattr(cache_module._Writer, "add", filling)
    code, err = cli(capsys, "data", "prepare", src, "--frames", "4", "--size", "8", "--out", out,
                    "--quiet")
    assert code == 1 and "no clips were committed, nothing is usable yet" in one_line(err)
    assert any(p.name.startswith("shard-") for p in out.iterdir())  # shards, no index
    monkeypatch.setattr(cache_module._Writer, "add", real_add)  # space freed
    again = prepare_cache(src, 4, 8, out=out, progress=False)
    same_cache(again, prepare_cache(src, 4, 8, out=tmp_path / "fresh", progress=False))
    assert sorted(p.name for p in out.glob("shard-*")) == sorted(again.index["shards"])


def test_write_text_atomic_in_chunks_writes_the_whole_text(tmp_path, monkeypatch):
    # A large index is encoded a chunk at a time; chunk borders inside multi-byte characters
    # (Cyrillic, combining marks) and newlines must not change a byte of the file.
    from text2sign.core import files

    monkeypatch.setattr(files, "_CHUNK", 7)
    text = "борщ\nknödel ä\u0308 " * 50 + "x"
    path = files.write_text_atomic(tmp_path / "index.json", text)
    assert path.read_text(encoding="utf-8") == text
    assert path.read_bytes() == text.encode("utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]  # no temporary left
