"""Starting a run from a model folder (train --init-from / model.init_from)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_corpus
from safetensors.torch import load_file

from text2sign.core.config import LatentConfig
from text2sign.model_folder.autoencoder_io import inflate_autoencoder, load_autoencoder
from text2sign.model_folder.build import build_config
from text2sign.model_folder.pipeline import Text2SignPipeline
from text2sign.models.autoencoder import FrameAutoencoder
from text2sign.training.loop import train


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> tuple[Path, Path]:
    """The same three coloured squares at 16 px and at 32 px."""
    return (make_corpus(tmp_path_factory.mktemp("c16")),
            make_corpus(tmp_path_factory.mktemp("c32"), size=32))


def latent_run(data: Path, *sets: str):
    base = [f"data.path={data}", "data.val_fraction=0", "train.sample_every=0",
            "latent.enabled=true", "latent.width=8", "latent.channels=2", "latent.steps=3",
            "latent.batch_size=4", "latent.factor=2", "model.params.stem=1",
            "model.params.alignment=none", "model.params.frame_context=false"]
    return build_config("tiny", overrides=base + list(sets))


@pytest.fixture(scope="module")
def source(corpora, tmp_path_factory, one_thread) -> Path:
    """A tiny latent letters-like model without alignment, trained 4 steps at 16 px."""
    out = tmp_path_factory.mktemp("source")
    train(latent_run(corpora[0]), out, progress=False)
    return out / "model"


def test_inflated_autoencoder_keeps_the_latent_space():
    torch.manual_seed(0)
    small = FrameAutoencoder(latent_channels=3, factor=4, width=8)
    small.latent_mean.fill_(0.5)
    small.latent_std.fill_(2.0)
    big = inflate_autoencoder(small, LatentConfig(channels=3, factor=8, width=8, prescale=2))
    frames = torch.rand(2, 3, 3, 32, 32) * 2 - 1  # (B, 3, T, 32, 32)
    half = F.avg_pool3d(frames, (1, 2, 2))  # (B, 3, T, 16, 16)
    assert torch.allclose(big.encode(frames), small.encode(half), atol=1e-6)
    assert big.decode(big.encode(frames)).shape == frames.shape
    with pytest.raises(ValueError, match="cannot share the latent space"):
        inflate_autoencoder(small, LatentConfig(channels=3, factor=8, width=16, prescale=2))


def test_init_from_loads_what_fits_and_says_so(source, corpora, tmp_path, one_thread, capsys):
    """A run with alignment on starts from a model without it: every old tensor loads, the
    alignment's are new; config.json records the folder and its weights' sha256."""
    cfg = latent_run(corpora[0], f"model.init_from={source}", "model.params.alignment=monotonic",
                     "train.max_steps=1", "train.lr=1e-12")
    model = train(cfg, tmp_path / "run", progress=True)
    said = capsys.readouterr().out
    assert "denoiser: " in said and "tensors loaded" in said and "align.strength" in said
    info = json.loads((model / "config.json").read_text())
    ref = info["init_from"]
    assert ref["path"] == str(source.resolve()) and len(ref["sha256"]) == 64
    assert ref["new"]["denoiser"] > 0 and ref["new"]["text"] == 0
    # Same latent space: the source's autoencoder is reused as is, nothing trained.
    assert info["autoencoder"] == {"from": str(source)}
    old, new = load_file(str(source / "denoiser.safetensors")), load_file(
        str(model / "denoiser.safetensors"))
    shared = [k for k in old if k in new]
    assert len(shared) == len(old)
    # lr 1e-12 and one step: the loaded weights come through (EMA of a near-frozen model).
    assert all(torch.allclose(old[k], new[k], atol=1e-5) for k in shared)


def test_init_from_twice_the_size_inflates_the_autoencoder(source, corpora, tmp_path,
                                                           one_thread):
    cfg = latent_run(corpora[1], f"model.init_from={source}", "data.size=32", "latent.factor=4",
                     "latent.prescale=2", "train.max_steps=2")
    model = train(cfg, tmp_path / "run", progress=False)
    info = json.loads((model / "config.json").read_text())
    assert info["autoencoder"]["inflated_from"] == str(source)
    src_ae = load_autoencoder(source, latent_run(corpora[0]).latent)
    big = load_autoencoder(model, cfg.latent)
    frames = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    assert torch.allclose(big.encode(frames), src_ae.encode(F.avg_pool3d(frames, (1, 2, 2))),
                          atol=1e-5)  # the encoder and normalisation did not move
    pipe = Text2SignPipeline.from_pretrained(model)
    assert pipe(["A"], steps=2).shape == (1, 4, 32, 32, 3)
    # Twice the size without the matching latent settings, or neither the same nor twice the
    # size: clear errors, before any training.
    bad = latent_run(corpora[1], f"model.init_from={source}", "data.size=32")
    with pytest.raises(ValueError, match="cannot share the latent space.*'prescale': 2"):
        train(bad, tmp_path / "bad", progress=False)
    odd = latent_run(corpora[1], f"model.init_from={source}", "data.size=24")
    with pytest.raises(ValueError, match="neither that nor twice that"):
        train(odd, tmp_path / "odd", progress=False)


def test_resume_does_not_init_again(source, corpora, tmp_path, one_thread, capsys):
    out = tmp_path / "run"
    cfg = latent_run(corpora[0], f"model.init_from={source}", "train.max_steps=2",
                     "train.checkpoint_every=1")
    train(cfg, out, progress=False)
    first = json.loads((out / "model" / "config.json").read_text())["init_from"]
    cfg2 = latent_run(corpora[0], f"model.init_from={source}", "train.max_steps=3",
                      "train.checkpoint_every=1")
    train(cfg2, out, resume=True, progress=True)
    assert "tensors loaded" not in capsys.readouterr().out
    info = json.loads((out / "model" / "config.json").read_text())
    assert info["step"] == 3 and info["init_from"] == first  # from the checkpoint, not again


def test_case_folding_starts_lower_case_letters_from_upper_case(source, corpora, tmp_path,
                                                                one_thread):
    cfg = latent_run(corpora[0], f"model.init_from={source}", "text.lowercase=true",
                     "train.max_steps=1", "train.lr=1e-12")
    model = train(cfg, tmp_path / "run", progress=False)
    table = load_file(str(model / "text.safetensors"))["encoder.embed.weight"]
    upper = np.arange(ord("A"), ord("Z") + 1)
    assert torch.allclose(table[upper + 32], table[upper], atol=1e-5)


def test_shipped_models_by_name():
    from text2sign.model_folder import shipped

    assert shipped.model_path("shipped:letters") == shipped.letters_model()
    assert shipped.model_path("shipped:demo") == shipped.model()
    assert shipped.model_path("runs/x/model") == Path("runs/x/model")
    with pytest.raises(ValueError, match="'shipped:nope' is not a shipped model"):
        shipped.model_path("shipped:nope")


def test_init_from_errors_name_the_problem(source, corpora, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(latent_run(corpora[0], f"model.init_from={tmp_path / 'nope'}"), tmp_path / "a",
              progress=False)
    dit = build_config("tiny", overrides=[
        f"data.path={corpora[0]}", "data.val_fraction=0", "latent.enabled=true",
        "latent.width=8", "latent.channels=2", "latent.factor=2", "model.arch=dit3d",
        f"model.init_from={source}"])
    with pytest.raises(ValueError, match="is a unet3d model; this run builds dit3d"):
        train(dit, tmp_path / "b", progress=False)
