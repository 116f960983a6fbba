"""A latent model's frame autoencoder on disk: autoencoder.safetensors + autoencoder.json in a
model folder (or a folder of its own), inflated to twice the frame size, loaded back.

A run with ``latent.enabled`` trains the autoencoder first (or reuses ``latent.autoencoder``),
freezes it, and then trains the denoiser on its latents; the model folder carries it along as
``autoencoder.safetensors`` so a pipeline decodes what it samples.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from text2sign.core.config import LatentConfig
from text2sign.core.files import atomic_dir
from text2sign.model_folder.build import build_autoencoder
from text2sign.models.autoencoder import FrameAutoencoder
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
    # A folder holding our own autoencoder.safetensors is not a diffusers VAE: its config.json
    # (a model folder's, read once by resolve_model) need not be read again to tell.
    if not (Path(path) / AUTOENCODER_FILE).is_file():
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
