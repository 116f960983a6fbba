"""A small per-frame convolutional autoencoder, so diffusion can run in a compact latent space.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models"): the autoencoder is trained first, on the corpus's frames, then frozen; the denoiser
learns the distribution of its latents and the decoder draws the pixels. Sign clips drawn as thin
coloured strokes are where this pays off most: in pixel space the denoiser must reproduce every
stroke pixel exactly at low noise (speckle where it cannot), in latent space the decoder does.

Each frame is encoded alone (time stays with the denoiser); the encoder works at half resolution
after a space-to-depth step (pixel unshuffle, Shi et al. 2016) to keep CPU training cheap. The
encoder is a diagonal Gaussian with a small KL term (the "KL-f4" of Rombach et al. sec. 3), and the
posterior means are normalised per channel to zero mean and unit variance for the denoiser.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from text2sign.models.layers import group_norm

DECODE_FRAMES = 64  # frames the decoder takes at once


class ResBlock2d(nn.Module):
    """Pre-norm residual block of two 3x3 convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            group_norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class FrameAutoencoder(nn.Module):
    """Frames (N, 3, H, W) in [-1, 1] <-> latents (N, C, H/f, W/f); f = ``factor`` (2, 4, 8).

    ``encode``/``decode`` take and return clips (B, C, T, H, W) and handle the normalisation, so
    the rest of the code sees latents of unit scale and never touches this module's internals.

    ``prescale`` p > 1 average-pools frames by p before an encoder of factor f/p, while the
    decoder draws the full size: the latent space of an autoencoder trained at 1/p of the size
    (its encoder, reused), decoded at full size (see ``inflate_autoencoder``).
    """

    def __init__(self, latent_channels: int = 4, factor: int = 4, width: int = 64,
                 prescale: int = 1) -> None:
        super().__init__()
        if factor not in (2, 4, 8):
            raise ValueError(f"latent.factor={factor} is not one of [2, 4, 8]")
        if latent_channels < 1 or width < 1:
            raise ValueError(f"latent.channels={latent_channels} and latent.width={width} must be "
                             "positive")
        if prescale not in (1, 2) or factor // prescale < 2:
            raise ValueError(f"latent.prescale={prescale} must be 1 or 2 and leave a factor of at "
                             f"least 2 (latent.factor={factor})")
        self.latent_channels, self.factor, self.prescale = latent_channels, factor, prescale
        stages = int(math.log2(factor // prescale)) - 1  # strided steps after space-to-depth
        enc: list[nn.Module] = [nn.AvgPool2d(prescale)] if prescale > 1 else []
        enc += [nn.PixelUnshuffle(2), nn.Conv2d(12, width, 3, padding=1), ResBlock2d(width)]
        for _ in range(stages):
            enc += [nn.Conv2d(width, width, 3, stride=2, padding=1), ResBlock2d(width)]
        enc += [group_norm(width), nn.SiLU(), nn.Conv2d(width, 2 * latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, width, 3, padding=1), ResBlock2d(width)]
        for _ in range(int(math.log2(factor)) - 1):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(width, width, 3, padding=1), ResBlock2d(width)]
        dec += [ResBlock2d(width), group_norm(width), nn.SiLU(), nn.Conv2d(width, 12, 3, padding=1),
                nn.PixelShuffle(2)]
        self.decoder = nn.Sequential(*dec)
        # Per-channel statistics of the posterior means, set by `fit_normalization` after training.
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    def check_input_size(self, height: int, width: int) -> None:
        if height % self.factor or width % self.factor:
            raise ValueError(
                f"frame size {height}x{width} is not divisible by latent.factor={self.factor}; "
                f"use a data.size that is a multiple of {self.factor}")

    def latent_size(self, size: int) -> int:
        self.check_input_size(size, size)
        return size // self.factor

    # -- frame level (training)
    def posterior(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) -> mean, logvar (N, C, H/f, W/f), unnormalised."""
        mean, logvar = self.encoder(frames).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def forward(self, frames: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction from a posterior sample, and the KL to N(0, I) per frame (N,)."""
        mean, logvar = self.posterior(frames)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + (0.5 * logvar).exp() * noise  # (N, C, h, w)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)  # (N,)
        return self.decoder(z), kl

    # -- clip level (diffusion)
    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        return self.latent_mean.view(shape).to(x.dtype), self.latent_std.view(shape).to(x.dtype)

    def encode(self, videos: torch.Tensor) -> torch.Tensor:
        """Clips (B, 3, T, H, W) in [-1, 1] -> normalised latents (B, C, T, H/f, W/f)."""
        b = videos.shape[0]
        self.check_input_size(*videos.shape[-2:])
        frames = rearrange(videos, "b c t h w -> (b t) c h w")  # (B*T, 3, H, W)
        mean, _ = self.posterior(frames)  # (B*T, C, h, w)
        z = rearrange(mean, "(b t) c h w -> b c t h w", b=b)  # (B, C, T, h, w)
        shift, scale = self._stats(z)
        return (z - shift) / scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, T, h, w) -> clips (B, 3, T, h*f, w*f), roughly in [-1, 1]."""
        b = latents.shape[0]
        shift, scale = self._stats(latents)
        z = rearrange(latents * scale + shift, "b c t h w -> (b t) c h w")  # (B*T, C, h, w)
        # Frames are decoded DECODE_FRAMES at a time: a batch of long clips at 128 x 128 would
        # otherwise hold gigabytes of full-size activations at once (each frame is its own).
        frames = torch.cat([self.decoder(chunk) for chunk in z.split(DECODE_FRAMES)])
        return rearrange(frames, "(b t) c h w -> b c t h w", b=b)  # (B, 3, T, H, W)

    @torch.no_grad()
    def fit_normalization(self, frames: torch.Tensor) -> None:
        """Set the per-channel mean and std of the posterior means over (N, 3, H, W) frames."""
        mean, _ = self.posterior(frames)
        self.latent_mean.copy_(mean.mean(dim=(0, 2, 3)))
        self.latent_std.copy_(mean.std(dim=(0, 2, 3)).clamp_min(1e-6))


def reconstruction_loss(recon: torch.Tensor, frames: torch.Tensor,
                        foreground_weight: float = 10.0) -> torch.Tensor:
    """Weighted L1 per frame (N,). Thin strokes cover a few percent of a frame: unweighted, the
    cheapest fit is a grey blur of them, so pixels away from black count ``foreground_weight``
    times more (their colour is what tells the fingers apart)."""
    err = F.l1_loss(recon.float(), frames.float(), reduction="none")  # (N, 3, H, W)
    ink = (frames.float().amax(dim=1, keepdim=True) > -0.8).float()  # (N, 1, H, W)
    weight = 1.0 + (foreground_weight - 1.0) * ink
    return (err * weight).flatten(1).mean(1)
