"""Training a latent run's frame autoencoder, before the denoiser (L1 + KL on random frames)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from text2sign.core.config import LatentConfig
from text2sign.core.lr_schedule import warmup_cosine
from text2sign.data.dataset import to_unit
from text2sign.models.autoencoder import FrameAutoencoder, reconstruction_loss


def _frame_picks(cache: Any, rng: np.random.Generator, train_idx: list[int], n: int
                 ) -> np.ndarray:
    """(n, 2) random (clip, frame) picks over the training clips, each clip's frame within
    its own length."""
    clips = rng.choice(train_idx, n)
    if getattr(cache, "variable", False):
        lengths = np.asarray(cache.lengths)[clips]  # (n,)
        frames = (rng.random(n) * lengths).astype(np.int64)  # (n,) in [0, length)
    else:
        frames = rng.integers(0, cache.clip_shape[0], n)
    return np.stack([clips, frames], axis=1)


def _frames(cache: Any, picks: np.ndarray) -> torch.Tensor:
    """uint8 frames at (clip, frame) picks -> float (N, 3, H, W) in [-1, 1]."""
    frames = np.stack([cache[int(c)][int(f)] for c, f in picks])  # (N, H, W, 3) uint8
    return to_unit(torch.from_numpy(frames).permute(0, 3, 1, 2))  # (N, 3, H, W)


def train_autoencoder(ae: FrameAutoencoder, cache: Any, train_idx: list[int], cfg: LatentConfig,
                      *, device: torch.device, seed: int = 0, max_seconds: float | None = None,
                      progress: bool = True, log=None, decoder_only: bool = False
                      ) -> dict[str, float]:
    """Fit ``ae`` on random frames of the training clips (L1 + KL); returns the final numbers.

    AdamW with a short warmup and cosine decay; then the latent normalisation is fitted on up to
    1024 frames. ``max_seconds`` stops early (a wall-clock budget shared with the denoiser).
    ``decoder_only`` keeps the encoder and the normalisation as they are (an inflated
    autoencoder, whose latent space must not move) and fits the decoder alone.
    """
    if not train_idx:
        raise ValueError("no training clips for the autoencoder")
    rng = np.random.default_rng([seed, 0xAE])
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ae.to(device).train()
    if decoder_only:
        ae.encoder.eval().requires_grad_(False)
    trained = [p for p in ae.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    warmup = max(1, cfg.steps // 20)
    started = time.time()
    l1 = kl = float("nan")
    pbar = tqdm(range(cfg.steps), disable=not progress, desc="autoencoder", unit="step",
                dynamic_ncols=True)
    step = 0
    for step in pbar:
        lr = cfg.lr * warmup_cosine(step, warmup, cfg.steps)  # the denoiser's schedule
        for group in optimizer.param_groups:
            group["lr"] = lr
        picks = _frame_picks(cache, rng, train_idx, cfg.batch_size)
        frames = _frames(cache, picks).to(device)  # (N, 3, H, W)
        recon, kl_per = ae(frames, generator=generator if device.type == "cpu" else None)
        rec = reconstruction_loss(recon, frames).mean()
        loss = rec + cfg.kl_weight * kl_per.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        if step % 10 == 0 or step == cfg.steps - 1:
            l1, kl = rec.item(), kl_per.mean().item()  # sync point, every 10 steps
            pbar.set_postfix(l1=f"{l1:.4f}", kl=f"{kl:.1f}")
            if log is not None:
                log({"autoencoder/l1": l1, "autoencoder/kl": kl, "autoencoder/lr": lr}, step)
        if max_seconds is not None and time.time() - started >= max_seconds:
            break
    pbar.close()
    ae.eval()
    if not decoder_only:
        picks = _frame_picks(cache, rng, train_idx, 1024)
        with torch.no_grad():
            ae.fit_normalization(torch.cat([_frames(cache, picks[i:i + 128]).to(device)
                                            for i in range(0, len(picks), 128)]))
    ae.requires_grad_(False)
    return {"steps": step + 1, "l1": l1, "kl": kl, "seconds": round(time.time() - started, 1)}
