"""Starting from pretrained weights in local folders: a diffusers VAE, an SD-style UNet inflated to
video, a DiT checkpoint into dit3d. All files are random-weight and made here; nothing downloads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pretrained_folders import random_image_dit, write_sd_folder
from safetensors.torch import load_file, save_file

from text2sign.core.files import DamagedFile
from text2sign.model_folder.autoencoder_io import load_autoencoder
from text2sign.model_folder.build import build_config, build_models
from text2sign.model_folder.pipeline import Text2SignPipeline
from text2sign.models.pretrained import (
    DiffusersAutoencoder,
    init_from_pretrained,
    load_diffusers_autoencoder,
    read_state_dict,
)
from text2sign.training.loop import DiffusionTrainer, train


@pytest.fixture(scope="module")
def sd(tmp_path_factory) -> Path:
    """A Stable-Diffusion-layout folder: vae/ (factor 2), unet/ (cross-attends to 32),
    text_encoder/ (CLIP, 32 wide) and tokenizer/."""
    return write_sd_folder(tmp_path_factory.mktemp("sd") / "sd")


@pytest.fixture(scope="module")
def dit_file(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A DiT checkpoint (.safetensors) for 8x8x4 latents, patch 2, and the image DiT it holds."""
    image_dit = random_image_dit(input_size=8, patch_size=2, in_channels=4, hidden_size=32,
                                 depth=2, num_heads=4, num_classes=10)
    path = tmp_path_factory.mktemp("dit") / "DiT-tiny-2.safetensors"
    save_file({k: v.contiguous() for k, v in image_dit.state_dict().items()}, str(path))
    return path, image_dit


def run_config(data: Path, sd: Path, *sets: str):
    """tiny preset in the latent space of the SD folder's VAE (16x16 frames -> 8x8x4)."""
    base = [f"data.path={data}", "data.val_fraction=0", "train.sample_every=0",
            "train.max_steps=3", "latent.enabled=true", f"latent.autoencoder={sd}"]
    return build_config("tiny", overrides=base + list(sets))


def unet_config(data: Path, sd: Path, *sets: str):
    return run_config(data, sd, "model.arch=unet-motion", f"model.pretrained={sd}",
                      f"text.encoder={sd / 'text_encoder'}", "diffusion.null_condition=empty",
                      *sets)


def dit_config(data: Path, sd: Path, dit: Path, *sets: str):
    # A DiT state dict does not record its head count: a width outside DiT's sizes needs it set.
    return run_config(data, sd, "model.arch=dit3d", f"model.pretrained={dit}",
                      "model.params.num_heads=4", *sets)


def clip(seed: int, static: bool, channels: int = 4, frames: int = 4, size: int = 8):
    gen = torch.Generator().manual_seed(seed)
    if static:
        frame = torch.randn(2, channels, 1, size, size, generator=gen)
        return frame.expand(-1, -1, frames, -1, -1).contiguous()  # (B, C, T, H, W)
    return torch.randn(2, channels, frames, size, size, generator=gen)


# ----------------------------------------------------------------------------- the VAE


def test_diffusers_vae_encodes_per_frame_with_its_scaling(sd):
    from diffusers import AutoencoderKL

    ae = load_autoencoder(sd, None)  # the pipeline folder's vae/
    assert isinstance(ae, DiffusersAutoencoder)
    assert (ae.latent_channels, ae.factor, ae.scale) == (4, 2, 0.5)
    assert not any(p.requires_grad for p in ae.parameters())
    videos = torch.rand(2, 3, 5, 16, 16) * 2 - 1  # (B, 3, T, H, W)
    z = ae.encode(videos)
    assert z.shape == (2, 4, 5, 8, 8)
    vae = AutoencoderKL.from_pretrained(sd / "vae")
    with torch.no_grad():
        frame = vae.encode(videos[:, :, 3]).latent_dist.mean  # (B, 4, 8, 8)
        assert torch.allclose(z[:, :, 3], frame * 0.5, atol=1e-5)
        assert torch.allclose(ae.decode(z)[:, :, 3], vae.decode(frame).sample, atol=1e-5)
    ae.frames_per_batch = 3  # micro-batches of 3 frames: the same numbers
    assert torch.allclose(ae.encode(videos), z, atol=1e-6)
    with pytest.raises(ValueError, match="not divisible by 2"):
        ae.encode(torch.zeros(1, 3, 1, 15, 16))


def test_vae_run_trains_saves_references_and_samples(corpus, sd, tmp_path):
    cfg = run_config(corpus, sd, "model.params.stem=1")
    assert (cfg.latent.channels, cfg.latent.factor) == (4, 2)  # read from the VAE folder
    folder = train(cfg, tmp_path / "run", progress=False, device="cpu")
    assert not (folder / "autoencoder.safetensors").exists()  # referenced, not copied
    info = json.loads((folder / "autoencoder.json").read_text())
    assert info["reference"]["path"] == str((sd / "vae").resolve())
    assert "diffusion_pytorch_model.safetensors" in info["reference"]["sha256"]
    pipe = Text2SignPipeline.from_pretrained(folder, device="cpu")
    assert isinstance(pipe.autoencoder, DiffusersAutoencoder)
    videos = pipe(["A", "B"], steps=2)
    assert videos.shape == (2, 4, 16, 16, 3) and videos.dtype == np.uint8


def test_referenced_files_missing_or_changed_are_named(corpus, tmp_path):
    sd = write_sd_folder(tmp_path / "sd")
    folder = train(run_config(corpus, sd, "model.params.stem=1", "train.max_steps=1"),
                   tmp_path / "run", progress=False, device="cpu")
    weights = sd / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state[next(iter(state))] += 1.0
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model.safetensors' has changed"):
        Text2SignPipeline.from_pretrained(folder, device="cpu")
    weights.unlink()
    with pytest.raises(DamagedFile, match=r"vae/diffusion_pytorch_model.safetensors' is "
                                          r"missing; the model's autoencoder: restore it"):
        Text2SignPipeline.from_pretrained(folder, device="cpu")


# ----------------------------------------------------------------------------- unet-motion


@pytest.mark.parametrize("sd2", [False, True], ids=["sd1-style", "sd2-style"])
def test_inflated_unet_is_the_image_unet_per_frame_at_step_0(corpus, sd, sd2, tmp_path):
    from diffusers import UNet2DConditionModel
    from pretrained_folders import write_unet

    unet = sd / "unet"
    if sd2:  # linear projections, heads per level: the SD 2.x UNet's layout
        unet = tmp_path / "unet"
        write_unet(unet, sd2=True)
    cfg = unet_config(corpus, sd, f"model.pretrained={unet}")
    denoiser, conditioner = build_models(cfg)
    init_from_pretrained(denoiser, cfg.model.arch, cfg.model.pretrained, cfg.model.train_only,
                         log=None)
    image_unet = UNet2DConditionModel.from_pretrained(unet).eval()
    denoiser.eval()
    text = conditioner(["A", "B C"])
    tokens = text.tokens * text.mask[..., None]  # (B, L, D)
    t = torch.tensor([10, 700])
    for static in (True, False):
        x = clip(0, static)  # (B, 4, T, 8, 8)
        with torch.no_grad():
            video = denoiser(x, t, text)
            for f in range(x.shape[2]):
                frame = image_unet(x[:, :, f], t, encoder_hidden_states=tokens).sample
                assert torch.allclose(video[:, :, f], frame, atol=1e-5), (static, f)


def test_unet_motion_needs_a_text_encoder_of_its_width(corpus, sd, tmp_path):
    from pretrained_folders import write_clip_text

    write_clip_text(tmp_path, width=16)
    cfg = unet_config(corpus, sd, f"text.encoder={tmp_path / 'text_encoder'}")
    with pytest.raises(ValueError, match="gives 16-wide tokens, the pretrained UNet "
                                         "cross-attends to 32"):
        build_models(cfg)
    with pytest.raises(FileNotFoundError, match="not a diffusers UNet2DConditionModel folder"):
        unet_config(corpus, sd, f"model.pretrained={tmp_path}")
    with pytest.raises(ValueError, match="model.train_only=temporal needs model.pretrained"):
        build_config("tiny", overrides=["model.train_only=temporal"])


def test_temporal_only_freezes_the_image_unet(corpus, sd):
    cfg = unet_config(corpus, sd, "model.train_only=temporal")
    denoiser, conditioner = build_models(cfg)
    init_from_pretrained(denoiser, cfg.model.arch, cfg.model.pretrained, cfg.model.train_only,
                         log=None)
    module = DiffusionTrainer(denoiser, conditioner, cfg)
    loss = module(clip(1, False), ["A", "B"], None, torch.Generator().manual_seed(0))
    loss.backward()
    motion = {n for n, _ in denoiser.named_parameters() if "motion_modules" in n}
    assert motion
    for name, p in denoiser.named_parameters():
        assert p.requires_grad == (name in motion), name
        assert (p.grad is not None) == (name in motion), name
    assert any(p.grad.abs().sum() > 0 for n, p in denoiser.named_parameters() if n in motion)


def test_unet_motion_temporal_run_trains_saves_loads_samples(corpus, tmp_path):
    sd = write_sd_folder(tmp_path / "sd")
    cfg = unet_config(corpus, sd, "model.train_only=temporal")
    run = tmp_path / "run"
    folder = train(cfg, run, progress=False, device="cpu")
    # The optimizer holds state for the motion modules alone (exp_avg, exp_avg_sq, step each).
    ckpt = run / "checkpoints" / "step-000003"
    trained = load_file(ckpt / "model.safetensors")
    assert trained and all("motion_modules" in k for k in trained)
    params = [k for k in trained if not k.endswith("pos_embed.pe")]  # minus sin-cos buffers
    opt = json.loads((ckpt / "state.json").read_text())["optimizer"]
    assert len(opt["param_groups"][0]["params"]) == len(params)
    assert len(load_file(ckpt / "optimizer.safetensors")) == 3 * len(params)
    # The model folder holds the motion modules; the image UNet is referenced by path + hash.
    saved = load_file(folder / "denoiser.safetensors")
    assert set(saved) == {k.removeprefix("denoiser.") for k in trained}
    info = json.loads((folder / "config.json").read_text())
    assert info["pretrained"]["denoiser"]["path"] == str((sd / "unet").resolve())
    assert "text_encoder" in info["pretrained"]
    pipe = Text2SignPipeline.from_pretrained(folder, device="cpu")
    image = load_file(sd / "unet" / "diffusion_pytorch_model.safetensors")
    state = pipe.denoiser.state_dict()
    assert all(torch.equal(state[f"unet.{k}"], v) for k, v in image.items())  # still frozen
    proj_out = [v for k, v in saved.items() if k.endswith("proj_out.weight")]
    assert proj_out and any(v.abs().sum() > 0 for v in proj_out)  # trained away from zero
    videos = pipe(["A", "B"], steps=2)
    assert videos.shape == (2, 4, 16, 16, 3) and videos.dtype == np.uint8
    # A changed UNet is named at load.
    state_file = sd / "unet" / "diffusion_pytorch_model.safetensors"
    image[next(iter(image))] = image[next(iter(image))] * 2
    save_file(image, str(state_file))
    with pytest.raises(ValueError, match=r"unet/diffusion_pytorch_model.safetensors' has "
                                         r"changed since training"):
        Text2SignPipeline.from_pretrained(folder, device="cpu")


def test_unet_motion_full_run_saves_everything(corpus, tmp_path, capsys):
    from text2sign.cli import main

    sd = write_sd_folder(tmp_path / "sd")
    sets = ["latent.enabled=true", f"latent.autoencoder={sd}", "model.arch=unet-motion",
            f"model.pretrained={sd}", f"text.encoder={sd / 'text_encoder'}",
            "diffusion.null_condition=empty", "diffusion.beta_schedule=scaled_linear",
            "diffusion.prediction_type=epsilon", "train.max_steps=2", "train.sample_every=0",
            "data.val_fraction=0"]
    run = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--preset", "tiny", "--out", str(run),
                 "--device", "cpu", "--no-progress", *[f"--set={s}" for s in sets]]) == 0
    folder = run / "model"
    assert main(["info", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "pretrained denoiser" in printed and "model.train_only=all" in printed
    before = Text2SignPipeline.from_pretrained(folder, device="cpu")(["A"], steps=2)
    (sd / "unet" / "diffusion_pytorch_model.safetensors").unlink()  # not needed any more
    after = Text2SignPipeline.from_pretrained(folder, device="cpu")(["A"], steps=2)
    assert np.array_equal(before, after)


# ----------------------------------------------------------------------------- dit3d from DiT


def test_dit3d_from_a_dit_checkpoint_is_the_image_dit_per_frame_at_step_0(corpus, sd, dit_file,
                                                                         tmp_path, capsys):
    path, image_dit = dit_file
    cfg = dit_config(corpus, sd, path)
    p = cfg.model.params
    assert (p["hidden_size"], p["depth"], p["patch_size"], p["tubelet"]) == (32, 4, 2, 1)
    denoiser, conditioner = build_models(cfg)
    init_from_pretrained(denoiser, cfg.model.arch, cfg.model.pretrained, cfg.model.train_only)
    printed = capsys.readouterr().out
    assert "loaded" in printed and "new" in printed and "dropped" in printed
    assert "y_embedder.embedding_table.weight[:10]" in printed  # the 10 classes
    assert "learned-variance half" in printed
    denoiser.eval()
    text = conditioner(["A", "B C"])
    t = torch.tensor([10, 700])
    null = torch.full((2,), image_dit.num_classes)  # DiT's unconditional class
    for static in (True, False):
        x = clip(2, static)  # (B, 4, T, 8, 8)
        with torch.no_grad():
            video = denoiser(x, t, text)
            for f in range(x.shape[2]):
                frame = image_dit(x[:, :, f], t, null)[:, :4]  # epsilon half
                assert torch.allclose(video[:, :, f], frame, atol=1e-5), (static, f)

    # The same weights as a .pt state dict load identically (torch.load weights_only).
    pt = tmp_path / "dit.pt"
    torch.save(image_dit.state_dict(), pt)
    assert all(torch.equal(read_state_dict(pt)[k], v) for k, v in image_dit.state_dict().items())
    torch.save({"model": image_dit.state_dict(), "args": object()}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="holds more than tensors, so it is not unpickled"):
        read_state_dict(tmp_path / "bad.pt")


def test_dit3d_temporal_run_trains_saves_loads_samples(corpus, sd, dit_file, tmp_path):
    path, _ = dit_file
    run = tmp_path / "run"
    folder = train(dit_config(corpus, sd, path, "model.train_only=temporal"), run,
                   progress=False, device="cpu")
    saved = load_file(folder / "denoiser.safetensors")
    # Trained and saved: temporal blocks (odd), cross-attention, the text projection.
    assert "blocks.1.attn.to_q.weight" in saved and "y_embed.weight" in saved
    assert "blocks.0.attn_x.to_q.weight" in saved
    assert "blocks.0.attn.to_q.weight" not in saved and "x_embed.weight" not in saved
    opt = json.loads((run / "checkpoints" / "step-000003" / "state.json").read_text())
    text = load_file(folder / "text.safetensors")  # the byte encoder and null condition train
    assert len(opt["optimizer"]["param_groups"][0]["params"]) == len(saved) + len(text)
    pipe = Text2SignPipeline.from_pretrained(folder, device="cpu")
    dit = read_state_dict(path)
    loaded = pipe.denoiser.state_dict()
    assert torch.equal(loaded["blocks.2.mlp.net.0.weight"], dit["blocks.1.mlp.fc1.weight"])
    videos = pipe(["A", "B"], steps=2)
    assert videos.shape == (2, 4, 16, 16, 3) and videos.dtype == np.uint8


def test_dit3d_full_run(corpus, sd, dit_file, tmp_path):
    path, _ = dit_file
    folder = train(dit_config(corpus, sd, path), tmp_path / "run", progress=False, device="cpu")
    saved = load_file(folder / "denoiser.safetensors")
    assert "blocks.0.attn.to_q.weight" in saved  # everything trained, everything saved
    videos = Text2SignPipeline.from_pretrained(folder, device="cpu")(["C"], steps=2)
    assert videos.shape == (1, 4, 16, 16, 3)


def test_load_diffusers_autoencoder_ignores_other_folders(tmp_path):
    assert load_diffusers_autoencoder(tmp_path) is None


def test_scaled_linear_is_stable_diffusions_schedule():
    from diffusers import DDPMScheduler

    from text2sign.core.config import DiffusionConfig
    from text2sign.diffusion.process import make_scheduler

    ours = make_scheduler(DiffusionConfig(beta_schedule="scaled_linear"))
    sd15 = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    assert torch.allclose(ours.alphas_cumprod, sd15.alphas_cumprod)


def test_dit3d_temporal_run_resumes_exactly_and_refuses_changed_weights(corpus, sd, tmp_path):
    from conftest import killed_after, losses, same_tensors

    path = tmp_path / "dit.safetensors"
    image_dit = random_image_dit(input_size=8, patch_size=2, in_channels=4, hidden_size=32,
                                 depth=2, num_heads=4, num_classes=10)
    save_file({k: v.contiguous() for k, v in image_dit.state_dict().items()}, str(path))
    cfg = dit_config(corpus, sd, path, "model.train_only=temporal", "train.checkpoint_every=1",
                     "train.keep_checkpoints=5")
    run = tmp_path / "run"
    train(cfg, run, progress=False, device="cpu")
    part = killed_after(run, 2, tmp_path / "part")
    train(cfg, part, resume=True, progress=False, device="cpu")
    assert losses(part) == losses(run)[2:]
    assert same_tensors(run / "model" / "denoiser.safetensors",
                        part / "model" / "denoiser.safetensors")

    state = image_dit.state_dict()
    state["blocks.0.mlp.fc1.bias"] += 1.0
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(ValueError, match="pretrained weights of the run .* changed since "
                                         "step-000003"):
        train(cfg, run, resume=True, progress=False, device="cpu")
