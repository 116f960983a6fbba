"""Start a run from a text2sign model folder (``model.init_from`` / ``train --init-from``; a path,
or ``shipped:letters`` / ``shipped:demo`` for the models inside the package).

The denoiser and the text conditioner take every tensor of the folder whose name and shape fit;
new tensors (e.g. a new alignment's strengths) keep their fresh initialisation, and the run says
what was loaded, new, dropped and reshaped. A latent run also starts from the folder's latent
space: the same autoencoder when the frame size is the same, or at twice the frame size the
folder's encoder behind a 2x average-pool with a decoder fine-tuned at the new size
(``latent.inflate_autoencoder``), so the loaded denoiser still means what it learned.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from text2sign.core.config import Config
from text2sign.core.files import sha256
from text2sign.model_folder.autoencoder_io import inflate_autoencoder, load_autoencoder
from text2sign.model_folder.card import shown_path
from text2sign.model_folder.resolve import ModelFolder


def load_fitting(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Copy the tensors of ``state`` whose name and shape fit ``module``; report the rest."""
    own = module.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(fits, strict=False)
    return {
        "loaded": sorted(fits),
        "new": sorted(k for k in own if k not in state),
        "dropped": sorted(k for k in state if k not in own),
        "reshaped": sorted(k for k in state if k in own and own[k].shape != state[k].shape),
    }


def _case_fold_bytes(text_state: dict[str, torch.Tensor], source: Config, cfg: Config
                     ) -> list[str]:
    """A byte encoder that case-folds to lower case starting from one that read upper-case
    letters: the fingerspelled letter has no case, so 'a'..'z' start from 'A'..'Z'."""
    key = "encoder.embed.weight"
    if (cfg.text.encoder != "bytes" or source.text.encoder != "bytes" or key not in text_state
            or not cfg.text.lowercase or source.text.lowercase):
        return []
    table = text_state[key].clone()  # (258, D)
    upper = torch.arange(ord("A"), ord("Z") + 1)
    table[upper + (ord("a") - ord("A"))] = table[upper]
    text_state[key] = table
    return ["a-z byte embeddings from A-Z (this model case-folds texts, the source did not)"]


def init_from_model(module: nn.Module, cfg: Config, model: ModelFolder, log=None
                    ) -> dict[str, Any]:
    """Initialise ``module`` (a DiffusionTrainer: ``.denoiser`` + ``.conditioner``) from
    ``model``, the folder ``cfg.model.init_from`` names; returns its reference (path + sha256 of
    its weights)."""
    folder, source = model.path, model.config
    denoiser_state, text_state = model.weights()
    if source.model.arch != cfg.model.arch:
        raise ValueError(
            f"model.init_from={cfg.model.init_from!r} is a {source.model.arch} model; this run "
            f"builds {cfg.model.arch}: set model.arch={source.model.arch} or start from scratch")
    notes = _case_fold_bytes(text_state, source, cfg)
    report = {"denoiser": load_fitting(module.denoiser, denoiser_state),
              "text": load_fitting(module.conditioner, text_state)}
    if not report["denoiser"]["loaded"]:
        raise ValueError(f"no tensor of {str(folder)!r} fits this run's denoiser; is it the "
                         "same architecture and size?")
    if log is not None:
        for part, r in report.items():
            log(f"init from {folder}: {part}: {len(r['loaded'])} tensors loaded, "
                f"{len(r['new'])} new{_names(r['new'])}, {len(r['dropped'])} dropped"
                f"{_names(r['dropped'])}, {len(r['reshaped'])} reshaped (kept fresh)"
                f"{_names(r['reshaped'])}")
        for note in notes:
            log(f"init from {folder}: {note}")
    return {**folder_reference(cfg.model.init_from, model),
            "loaded": {part: len(r["loaded"]) for part, r in report.items()},
            "new": {part: len(r["new"]) for part, r in report.items()}}


def folder_reference(given: str, model: ModelFolder) -> dict[str, str]:
    """Which model folder a run started from, for its config.json's ``init_from``: the name
    given, its path and the sha256 of its denoiser weights."""
    # relative to the working directory when inside it: no machine path in a shared folder
    return {"given": str(given), "path": shown_path(model.path.resolve()),
            # the digest its config.json recorded and resolving verified (older folders: anew)
            "sha256": model.info.files.get("denoiser.safetensors")
            or sha256(model.path / "denoiser.safetensors")}


def _names(keys: list[str], limit: int = 4) -> str:
    if not keys:
        return ""
    more = f", +{len(keys) - limit}" if len(keys) > limit else ""
    return " (" + ", ".join(keys[:limit]) + more + ")"


def source_autoencoder(cfg: Config, model: ModelFolder) -> tuple[nn.Module, bool]:
    """The autoencoder a latent run starts from when ``model.init_from`` names a latent model
    (``model``): (autoencoder, needs_training). Same latent settings: the folder's own, frozen.
    Twice the frame size: the inflated one, whose decoder is still to be fitted."""
    folder, source = model.path, model.config
    if not source.latent.enabled:
        raise ValueError(
            f"model.init_from={cfg.model.init_from!r} is a pixel-space model, this run is latent: "
            "its denoiser would not fit the new latent space; set latent.enabled=false or start "
            "from a latent model")
    ae = load_autoencoder(folder, source.latent)

    def shape(c: Config) -> tuple:
        return (c.latent.channels, c.latent.factor, c.latent.width, c.latent.prescale,
                c.data.size)

    if shape(cfg) == shape(source):
        return ae, False
    if cfg.data.size != 2 * source.data.size:
        raise ValueError(
            f"model.init_from={cfg.model.init_from!r} works on {source.data.size}px frames in "
            f"its latent space; this run's data.size={cfg.data.size} is neither that nor twice "
            "that: use one of those sizes, or name another autoencoder with latent.autoencoder")
    return inflate_autoencoder(ae, cfg.latent), True
