"""Latent diffusion: the frame autoencoder, its training and files, and a latent run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import killed_after, losses, make_corpus, same_tensors
from safetensors.torch import load_file

from text2sign.core.config import LatentConfig
from text2sign.data.dataset import open_clips
from text2sign.model_folder.autoencoder_io import (
    find_autoencoder,
    load_autoencoder,
    save_autoencoder,
)
from text2sign.model_folder.build import build_autoencoder, build_config
from text2sign.model_folder.pipeline import Text2SignPipeline
from text2sign.models.autoencoder import FrameAutoencoder, reconstruction_loss
from text2sign.training.autoencoder_training import train_autoencoder
from text2sign.training.loop import train


def latent_config(data: Path, *sets: str):
    base = [f"data.path={data}", "data.val_fraction=0", "train.sample_every=0",
            "latent.enabled=true", "latent.width=8", "latent.channels=2", "latent.steps=3",
            "latent.batch_size=4", "model.params.stem=1"]
    return build_config("tiny", overrides=base + list(sets))


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_autoencoder_shapes(factor):
    ae = FrameAutoencoder(latent_channels=3, factor=factor, width=8)
    videos = torch.rand(2, 3, 5, 16, 32) * 2 - 1  # (B, 3, T, H, W)
    z = ae.encode(videos)
    assert z.shape == (2, 3, 5, 16 // factor, 32 // factor)
    assert ae.decode(z).shape == videos.shape
    frames = videos[:, :, 0]  # (B, 3, H, W)
    recon, kl = ae(frames)
    assert recon.shape == frames.shape and kl.shape == (2,) and (kl >= 0).all()


def test_autoencoder_rejects_bad_factor_and_size():
    with pytest.raises(ValueError, match=r"latent.factor=3 is not one of \[2, 4, 8\]"):
        FrameAutoencoder(factor=3)
    with pytest.raises(ValueError, match="not divisible by latent.factor=4"):
        FrameAutoencoder(factor=4, width=8).encode(torch.zeros(1, 3, 2, 18, 16))
    with pytest.raises(ValueError, match="data.size=18 is not divisible by latent.factor=4"):
        build_config("tiny", overrides=["latent.enabled=true", "data.size=18"])


def test_normalization_gives_unit_latents():
    torch.manual_seed(0)
    ae = FrameAutoencoder(latent_channels=2, factor=2, width=8).eval()
    videos = torch.rand(4, 3, 3, 8, 8) * 2 - 1
    ae.fit_normalization(videos.permute(0, 2, 1, 3, 4).flatten(0, 1))  # (B*T, 3, H, W)
    z = ae.encode(videos)
    assert z.mean(dim=(0, 2, 3, 4)).abs().max() < 1e-4
    assert torch.allclose(z.std(dim=(0, 2, 3, 4)), torch.ones(2), atol=1e-2)


def test_reconstruction_loss_weights_strokes():
    frames = -torch.ones(1, 3, 4, 4)
    frames[..., 0, 0] = 1.0  # one bright pixel
    miss_stroke = frames.clone()
    miss_stroke[..., 0, 0] = -1.0
    miss_background = frames.clone()
    miss_background[..., 3, 3] = 1.0
    assert reconstruction_loss(miss_stroke, frames) > 5 * reconstruction_loss(miss_background,
                                                                              frames)


@pytest.mark.numerics
def test_train_autoencoder_learns_and_round_trips(corpus, tmp_path):
    cache = open_clips(corpus, 4, 16, progress=False)
    cfg = LatentConfig(enabled=True, channels=4, factor=2, width=16, steps=150, batch_size=8,
                       lr=3e-3)
    torch.manual_seed(0)
    ae = build_autoencoder(cfg)
    videos = torch.from_numpy(np.stack([cache[i] for i in range(len(cache))]))
    videos = videos.permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # (N, 3, T, H, W)

    def l1() -> float:
        with torch.no_grad():
            return (ae.decode(ae.encode(videos)) - videos).abs().mean().item()

    before = l1()
    facts = train_autoencoder(ae, cache, list(range(len(cache))), cfg, device=torch.device("cpu"),
                              progress=False)
    after = l1()
    assert facts["steps"] == 150 and after < 0.5 * before, (before, after)
    assert not any(p.requires_grad for p in ae.parameters())

    folder = save_autoencoder(tmp_path / "ae", ae, cfg, facts)
    loaded = load_autoencoder(folder, cfg)
    with torch.no_grad():
        assert torch.equal(loaded.encode(videos), ae.encode(videos))
    assert json.loads((folder / "autoencoder.json").read_text())["steps"] == 150


def test_load_autoencoder_checks_architecture(tmp_path):
    cfg = LatentConfig(channels=2, factor=2, width=8)
    save_autoencoder(tmp_path / "autoencoder", build_autoencoder(cfg), cfg)
    assert find_autoencoder(tmp_path) == tmp_path / "autoencoder"
    with pytest.raises(ValueError, match="set latent.channels/factor/width to match"):
        load_autoencoder(tmp_path, LatentConfig(channels=4, factor=2, width=8))
    with pytest.raises(FileNotFoundError, match="no autoencoder.safetensors"):
        find_autoencoder(tmp_path / "elsewhere")


def test_latent_run_trains_saves_samples_and_resumes(corpus, tmp_path):
    cfg = latent_config(corpus, "train.max_steps=4", "train.checkpoint_every=2",
                        "train.keep_checkpoints=5")
    run = tmp_path / "run"
    folder = train(cfg, run, progress=False, device="cpu")
    assert (folder / "autoencoder.safetensors").is_file()
    info = json.loads((folder / "config.json").read_text())
    assert info["config"]["latent"]["enabled"] and info["autoencoder"]["steps"] == 3
    # The denoiser saw latents: 2 channels at 16 / 4 = 4 pixels.
    pipe = Text2SignPipeline.from_pretrained(folder, device="cpu")
    assert pipe.denoiser.conv_in.in_channels == 2
    videos = pipe(["A", "B"], steps=2)
    assert videos.shape == (2, 4, 16, 16, 3) and videos.dtype == np.uint8

    # Resume reuses the run's autoencoder (not retrained) and continues exactly.
    part = killed_after(run, 2, tmp_path / "part", "autoencoder")
    train(cfg, part, resume=True, progress=False, device="cpu")
    assert losses(part) == losses(run)[2:]
    denoiser = Path("model") / "denoiser.safetensors"
    assert same_tensors(run / denoiser, part / denoiser)


def test_latent_run_can_reuse_an_autoencoder(corpus, tmp_path):
    first = train(latent_config(corpus, "train.max_steps=1"), tmp_path / "a", progress=False,
                  device="cpu")
    cfg = latent_config(corpus, "train.max_steps=1", f"latent.autoencoder={first}")
    second = train(cfg, tmp_path / "b", progress=False, device="cpu")
    assert not (tmp_path / "b" / "autoencoder").exists()
    a = load_file(first / "autoencoder.safetensors")
    b = load_file(second / "autoencoder.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pipeline_needs_the_autoencoder_of_a_latent_model(corpus):
    from text2sign.model_folder.build import build_models

    cfg = latent_config(corpus)
    denoiser, conditioner = build_models(cfg)
    with pytest.raises(ValueError, match="no autoencoder was given"):
        Text2SignPipeline(denoiser, conditioner, cfg, "cpu")


def test_latent_run_without_the_cache_encodes_every_step(tmp_path):
    """latent.cache=false: no latents file, the loop encodes each batch (and still trains)."""
    data = make_corpus(tmp_path / "clips")
    model = train(latent_config(data, "train.max_steps=2", "latent.cache=false"),
                  tmp_path / "run", progress=False, device="cpu")
    assert (model / "autoencoder.safetensors").is_file()
    assert not list(data.rglob("latents-*.f16"))


def test_latent_cache_encodes_each_clip_once_and_is_reused(corpus, tmp_path):
    from text2sign.data.latent_cache import autoencoder_hash, latent_cache

    cache = open_clips(corpus, 4, 16, progress=False)
    ae = FrameAutoencoder(2, 2, 8).eval()
    first = latent_cache(ae, cache, device=torch.device("cpu"), progress=False)
    assert len(first) == len(cache) and first.path.name.startswith("latents-")
    with torch.no_grad():
        direct = ae.encode(torch.from_numpy(cache[3][None]).permute(0, 4, 1, 2, 3).float()
                           / 127.5 - 1.0)[0]
    assert torch.allclose(torch.from_numpy(first[3]).float(), direct, atol=2e-3)
    stamp = first.path.stat().st_mtime_ns
    again = latent_cache(ae, cache, device=torch.device("cpu"), progress=False)
    assert again.path == first.path and first.path.stat().st_mtime_ns == stamp  # reused
    other = FrameAutoencoder(2, 2, 8)  # other weights: another cache file
    assert autoencoder_hash(other) != autoencoder_hash(ae)
    assert latent_cache(other, cache, device=torch.device("cpu"), progress=False).path != first.path
