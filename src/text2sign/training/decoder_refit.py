"""A latent model's decoder refitted to a corpus: the encoder and the latent normalisation stay,
so the latent space the denoiser learned does not move, and the decoder learns to draw what
this corpus's frames look like (a model fine-tuned on new alphabets keeps the autoencoder of the
model it started from, fitted to other hands).

`refit_decoder` trains it on the corpus's training clips (the model's own split: no clip of a
text the model held out); `take_decoder` gives a model another folder's refitted decoder when
both encode alike (a distilled student and its teacher). Either writes a new model folder, the
source's weights, texts, duration model and readers unchanged, config.json saying what was done
(and the command) under ``autoencoder.decoder_refit``; its ``command`` stays the one that trained
the denoiser.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from text2sign.core.device import pick_device
from text2sign.core.files import sha256
from text2sign.data.dataset import open_data
from text2sign.model_folder.autoencoder_io import load_autoencoder
from text2sign.model_folder.card import SAMPLE_FILE
from text2sign.model_folder.folder_io import save_model_folder
from text2sign.model_folder.resolve import ModelFolder, resolve_model
from text2sign.models.autoencoder import FrameAutoencoder
from text2sign.training.autoencoder_training import train_autoencoder
from text2sign.training.loop import LanguageDraw

READER_FOLDERS = ("recognizer", "readers")  # a model folder's own readers, copied as they are


def _own_autoencoder(model: ModelFolder) -> FrameAutoencoder:
    """The model's frame autoencoder, trainable; one line for a model that has none of its own."""
    cfg = model.config
    if not cfg.latent.enabled:
        raise ValueError(f"{model.name} diffuses in pixel space: it has no decoder to refit")
    ae = load_autoencoder(model.path, cfg.latent)
    if not isinstance(ae, FrameAutoencoder):
        raise ValueError(f"{model.name} uses a pretrained VAE ({type(ae).__name__}), referenced "
                         "and not copied: refit applies to text2sign's own frame autoencoder")
    return ae.requires_grad_(True)


def _encoder_state(ae: FrameAutoencoder) -> dict[str, torch.Tensor]:
    """What fixes the latent space: the encoder's weights and the latent normalisation."""
    return {k: v for k, v in ae.state_dict().items() if not k.startswith("decoder.")}


def _write(model: ModelFolder, out: Path, ae: FrameAutoencoder, facts: dict[str, Any],
           command: str | None) -> Path:
    """``model``'s folder again at ``out`` with ``ae`` as its autoencoder and ``facts`` under
    config.json's autoencoder.decoder_refit; its readers copied beside."""
    if out.resolve() == model.path.resolve():
        raise ValueError(f"--out {str(out)!r} is the model folder itself; write the refitted "
                         "model to a new folder")
    info = model.info
    refit = {**facts, **({"command": command} if command else {})}
    info = replace(info, autoencoder={**(info.autoencoder or {}), "decoder_refit": refit})
    denoiser, text = model.weights()
    sample = model.path / SAMPLE_FILE
    save_model_folder(out, info, denoiser, text, autoencoder=ae, texts=model.training_texts,
                      sample=sample if sample.is_file() else None, duration=model.duration)
    for name in READER_FOLDERS:
        if (model.path / name).is_dir():
            shutil.copytree(model.path / name, out / name, dirs_exist_ok=True)
    return out


def refit_decoder(model: str | Path | ModelFolder, data: str | Path, out: str | Path, *,
                  steps: int = 4000, batch_size: int = 16, lr: float = 5e-4, seed: int = 0,
                  minutes: float | None = None, device: str | None = None,
                  progress: bool = True, command: str | None = None) -> Path:
    """Fine-tune ``model``'s decoder on the training clips of ``data`` (read at the model's
    frame rate and size) for ``steps`` batches of ``batch_size`` frames (or ``minutes``), each
    sign language's share of the frames as the model's ``train.language_alpha`` draws its
    batches; write the model with it to ``out``. Returns ``out``."""
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"steps={steps}, batch_size={batch_size}, lr={lr}: steps and batch size "
                         "must be at least 1 and the learning rate positive")
    source = model if isinstance(model, ModelFolder) else resolve_model(model)
    ae = _own_autoencoder(source)
    cfg = source.config
    dc = cfg.data
    cache = open_data(dc, progress=progress, path=data)
    if cache.frame_shape[0] != dc.size:
        raise ValueError(f"the clips of {str(data)!r} are {cache.frame_shape[0]} px, the model "
                         f"draws {dc.size} px; prepare them with --size {dc.size}")
    train_idx = cache.split_by_text(dc.val_fraction, dc.holdout_texts)[0]
    if not train_idx:
        raise ValueError(f"{str(data)!r} has no training clips (every text is held out)")
    rng = np.random.default_rng([seed, 0xDEC])
    languages = getattr(cache, "languages", None)
    draw = LanguageDraw(None if languages is None else [languages[i] for i in train_idx],
                        cfg.train.language_alpha)
    picks = [train_idx[int(p)] for p in draw(len(train_idx), rng)]  # one epoch's clips
    lc = replace(cfg.latent, steps=steps, batch_size=batch_size, lr=lr)
    torch.manual_seed(seed)
    facts = train_autoencoder(ae, cache, picks, lc, device=pick_device(device), seed=seed,
                              max_seconds=None if minutes is None else minutes * 60,
                              progress=progress, decoder_only=True)
    ae.cpu()
    facts.update({"data": str(data), "clips": len(train_idx), "batch_size": batch_size, "lr": lr,
                  "seed": seed, "language_alpha": cfg.train.language_alpha,
                  "from": source.name,
                  "autoencoder_sha256": sha256(source.path / "autoencoder.safetensors")})
    return _write(source, Path(out), ae, facts, command)


def take_decoder(model: str | Path | ModelFolder, refitted: str | Path | ModelFolder,
                 out: str | Path, command: str | None = None) -> Path:
    """``model`` with the decoder of ``refitted`` (a `refit_decoder` folder whose encoder and
    latent normalisation are ``model``'s own, e.g. its teacher's), written to ``out``."""
    target = model if isinstance(model, ModelFolder) else resolve_model(model)
    donor = refitted if isinstance(refitted, ModelFolder) else resolve_model(refitted)
    refit = (donor.info.autoencoder or {}).get("decoder_refit")
    if refit is None:
        raise ValueError(f"{donor.name} has no refitted decoder (config.json's "
                         "autoencoder.decoder_refit); make one with text2sign refit-decoder")
    ae, given = _own_autoencoder(target), _own_autoencoder(donor)
    mine, theirs = _encoder_state(ae), _encoder_state(given)
    if mine.keys() != theirs.keys() or any(
            mine[k].shape != theirs[k].shape or not torch.equal(mine[k], theirs[k])
            for k in mine):
        raise ValueError(f"{donor.name} encodes differently from {target.name} (another encoder "
                         "or latent normalisation): its decoder would draw another latent space; "
                         "refit this model's own decoder instead")
    ae.load_state_dict(given.state_dict())
    return _write(target, Path(out), ae.requires_grad_(False),
                  {**refit, "taken_from": donor.name}, command)
