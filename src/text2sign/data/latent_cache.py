"""The latent space of a run: build, train, save and load its frame autoencoder.

A run with ``latent.enabled`` trains the autoencoder first (or reuses ``latent.autoencoder``),
freezes it, and then trains the denoiser on its latents; the model folder carries it along as
``autoencoder.safetensors`` so a pipeline decodes what it samples.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from text2sign.build import build_autoencoder
from text2sign.config import LatentConfig
from text2sign.data.dataset import to_unit
from text2sign.files import TMP_MARK, atomic_dir, write_lock, write_text_atomic
from text2sign.lr_schedule import warmup_cosine
from text2sign.models.autoencoder import FrameAutoencoder, reconstruction_loss
from text2sign.models.pretrained import load_diffusers_autoencoder

AUTOENCODER_FILE = "autoencoder.safetensors"
AUTOENCODER_INFO = "autoencoder.json"


def _architecture(cfg: LatentConfig) -> dict[str, int]:
    arch = {"channels": cfg.channels, "factor": cfg.factor, "width": cfg.width}
    if cfg.prescale != 1:  # folders written before prescale existed have none
        arch["prescale"] = cfg.prescale
    return arch


def inflate_autoencoder(source: FrameAutoencoder, cfg: LatentConfig) -> FrameAutoencoder:
    """An autoencoder for frames twice the size ``source`` was trained on, in its latent space.

    The encoder is ``source``'s behind a 2x average-pool (frozen: the latents mean what they
    meant, so a denoiser trained on them still applies); the decoder is ``source``'s with one
    more 2x stage before its output layers, started as the identity (nearest upsampling), to be
    fine-tuned at the new size (``train_autoencoder(..., decoder_only=True)``).
    """
    width = source.decoder[0].out_channels
    want = {"channels": source.latent_channels, "factor": 2 * source.factor, "width": width,
            "prescale": 2 * source.prescale}
    if _architecture(cfg) != want:
        raise ValueError(
            f"latent settings {_architecture(cfg)} cannot share the latent space of an "
            f"autoencoder with channels={source.latent_channels}, factor={source.factor}, "
            f"width={width} at twice its frame size; set latent.channels/factor/width/prescale "
            f"to {want}")
    ae = build_autoencoder(cfg)
    head = 2 + 3 * (int(math.log2(source.factor)) - 1)  # decoder layers before its output stage
    state = {}
    for key, value in source.state_dict().items():
        part, _, rest = key.partition(".")
        if part in ("encoder", "decoder"):
            index, _, name = rest.partition(".")
            index = int(index)
            if part == "encoder":
                index += 1  # behind the new average-pool
            elif index >= head:
                index += 3  # behind the new (upsample, conv, residual) stage
            key = f"{part}.{index}.{name}"
        state[key] = value
    missing, unexpected = ae.load_state_dict(state, strict=False)
    new_stage = {f"decoder.{head + 1}", f"decoder.{head + 2}"}
    if unexpected or any(k.rsplit(".", 1)[0].split(".block")[0] not in new_stage
                         for k in missing):
        raise ValueError(f"cannot inflate the autoencoder: missing {missing}, unexpected "
                         f"{unexpected}")
    with torch.no_grad():  # the new stage starts as the identity after nearest upsampling
        conv = ae.decoder[head + 1]
        torch.nn.init.dirac_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
        last = ae.decoder[head + 2].block[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
    return ae


def save_autoencoder(folder: str | Path, ae: FrameAutoencoder, cfg: LatentConfig,
                     meta: dict[str, Any] | None = None) -> Path:
    """``autoencoder.safetensors`` + ``autoencoder.json`` (architecture and training facts)."""
    return atomic_dir(Path(folder), lambda tmp: write_autoencoder(tmp, ae, cfg, meta))


def write_autoencoder(folder: Path, ae: FrameAutoencoder, cfg: LatentConfig,
                      meta: dict[str, Any] | None = None) -> None:
    """The two autoencoder files into an existing folder (a model folder being written)."""
    if hasattr(ae, "write_reference"):  # a frozen pretrained VAE: referenced, not copied
        ae.write_reference(folder / AUTOENCODER_INFO, meta)
        return
    state = {k: v.detach().cpu().contiguous() for k, v in ae.state_dict().items()}
    save_file(state, str(folder / AUTOENCODER_FILE))
    (folder / AUTOENCODER_INFO).write_text(
        json.dumps({"architecture": _architecture(cfg), **(meta or {})}, indent=2))


def find_autoencoder(path: str | Path) -> Path:
    """An autoencoder folder, or a model / run folder that holds one."""
    path = Path(path)
    for candidate in (path, path / "autoencoder", path / "model"):
        if (candidate / AUTOENCODER_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"no {AUTOENCODER_FILE} in {str(path)!r} (nor in its autoencoder/ or model/ subfolder); "
        "point latent.autoencoder at a latent model folder, or leave it null to train one")


def load_autoencoder(path: str | Path, cfg: LatentConfig) -> FrameAutoencoder:
    """Weights from ``path``; the architecture must be the one ``cfg`` describes. A diffusers
    AutoencoderKL folder (or a model folder referencing one) loads as that VAE instead."""
    pretrained = load_diffusers_autoencoder(path)
    if pretrained is not None:
        return pretrained
    folder = find_autoencoder(path)
    info_file = folder / AUTOENCODER_INFO
    if info_file.is_file():
        saved = json.loads(info_file.read_text()).get("architecture", {})
        if saved and saved != _architecture(cfg):
            raise ValueError(
                f"autoencoder in {str(folder)!r} has {saved}, the config asks for "
                f"{_architecture(cfg)}; set latent.channels/factor/width to match it")
    ae = build_autoencoder(cfg)
    ae.load_state_dict(load_file(str(folder / AUTOENCODER_FILE)))
    return ae.eval().requires_grad_(False)


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


# --------------------------------------------------------------------------- latent cache

LATENT_CACHE_FORMAT = "text2sign-latent-cache"


def autoencoder_hash(ae: torch.nn.Module) -> str:
    """Hash of an autoencoder's weights and normalisation: the latent cache's key."""
    digest = hashlib.sha1()
    for name, tensor in sorted(ae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class LatentCache:
    """Every clip of a clip cache encoded once: float16 (N, C, T, h, w) in a memory-mapped file,
    or, for clips of their own lengths, frames (sum T_i, C, h, w) one clip after another.

    Stored next to the clip cache as ``latents-<key>.f16`` + ``.json``, keyed by the clip
    cache's fingerprint and the autoencoder's weights, so a changed corpus or autoencoder gets
    a new file and training never re-encodes a clip at every step.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], lengths: list[int] | None = None):
        self.path, self.shape = path, tuple(shape)
        self.lengths = lengths  # each clip's frames, when they differ
        self._starts = np.concatenate([[0], np.cumsum(lengths)]) if lengths is not None else None
        self._map: np.memmap | None = None

    def __len__(self) -> int:
        return self.shape[0] if self.lengths is None else len(self.lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._map is None:  # opened lazily, so DataLoader workers each open their own
            self._map = np.memmap(self.path, np.float16, mode="r", shape=self.shape)
        if self.lengths is None:
            return np.array(self._map[i])  # (C, T, h, w) float16
        frames = self._map[self._starts[i]:self._starts[i + 1]]  # (T_i, C, h, w)
        return np.ascontiguousarray(frames.transpose(1, 0, 2, 3))  # (C, T_i, h, w) float16

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}


def latent_cache(ae: FrameAutoencoder, cache: Any, *, device: torch.device,
                 batch_size: int = 8, progress: bool = True) -> LatentCache:
    """The clip cache's latents under ``ae``: read if encoded before, else encoded now. Several
    processes may ask at once: one encodes (under a lock file), the others wait and reuse it."""
    key = f"{cache.fingerprint[:12]}-{autoencoder_hash(ae)[:12]}"
    path = Path(cache.path) / f"latents-{key}.f16"
    side = ae.latent_size(cache.size)
    lengths = list(cache.lengths) if getattr(cache, "variable", False) else None
    if lengths is None:
        shape = (len(cache), ae.latent_channels, cache.clip_shape[0], side, side)
    else:
        shape = (sum(lengths), ae.latent_channels, side, side)
    if _finished(path, shape):  # published whole: no lock needed to read it
        return LatentCache(path, shape, lengths)
    with write_lock(path.with_name(f".{path.name}.lock")):
        if _finished(path, shape):  # another process encoded it while this one waited
            return LatentCache(path, shape, lengths)
        _encode_all(ae, cache, path, shape, device=device, batch_size=batch_size,
                    progress=progress)
    return LatentCache(path, shape, lengths)


def _finished(path: Path, shape: tuple[int, ...]) -> bool:
    """Whether the latents at ``path`` were published: their .json is written last."""
    info_path = path.with_suffix(".json")
    if not (info_path.is_file() and path.is_file()):
        return False
    info = json.loads(info_path.read_text())
    return info.get("format") == LATENT_CACHE_FORMAT and tuple(info["shape"]) == shape


def _encode_all(ae: FrameAutoencoder, cache: Any, path: Path, shape: tuple[int, ...], *,
                device: torch.device, batch_size: int, progress: bool) -> None:
    """Encode every clip into a temporary file of this process, then publish it: the data by
    one rename, then its .json (atomically), so a reader sees both or neither."""
    tmp = path.with_name(f".{path.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")
    try:
        out = np.memmap(tmp, np.float16, mode="w+", shape=shape)
        ae = ae.to(device).eval()
        started = time.time()
        variable = getattr(cache, "variable", False)
        row = 0  # next frame row of a variable cache's file
        with torch.no_grad():
            for start in tqdm(range(0, len(cache), batch_size), desc="latent cache",
                              unit="batch", disable=not progress):
                stop = min(start + batch_size, len(cache))
                if variable:  # the autoencoder is per frame: the clips' frames in one row
                    clips = torch.from_numpy(np.concatenate([cache[i]
                                                             for i in range(start, stop)]))
                    x = to_unit(clips.to(device).permute(3, 0, 1, 2)[None])  # (1, 3, F, H, W)
                    z = ae.encode(x)[0].permute(1, 0, 2, 3)  # (F, C, h, w)
                    out[row:row + len(z)] = z.half().cpu().numpy()
                    row += len(z)
                    continue
                clips = torch.from_numpy(np.stack([cache[i] for i in range(start, stop)]))
                x = to_unit(clips.to(device).permute(0, 4, 1, 2, 3))  # (B, 3, T, H, W)
                out[start:stop] = ae.encode(x).half().cpu().numpy()  # (B, C, T, h, w)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_text_atomic(path.with_suffix(".json"), json.dumps({
        "format": LATENT_CACHE_FORMAT, "shape": list(shape), "clips": len(cache),
        **({"lengths": list(cache.lengths)} if getattr(cache, "variable", False) else {}),
        "seconds": round(time.time() - started, 1)}))


class LatentDataset(torch.utils.data.Dataset):
    """Items ``{"video": float32 latents (C, T, h, w), "text": str, "index": int}``: the
    `ClipDataset` contract, already in the denoiser's space."""

    def __init__(self, latents: LatentCache, texts: list[str], indices: list[int]):
        self.latents, self.texts, self.indices = latents, texts, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        return {"video": torch.from_numpy(self.latents[index]).float(),
                "text": self.texts[index], "index": index}
