"""Config -> objects, in one place: resolve a config (presets, what pretrained files decide),
build the denoiser, the text conditioner and the frame autoencoder, choose the device.

`config.py` is plain data and its validation; the models take plain arguments and never import
it (k-diffusion's ``config.make_model``). Only this module turns the one into the other.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from text2sign.core.config import Config, LatentConfig, compose
from text2sign.core.units import SIGN_LANGUAGES
from text2sign.models import pretrained
from text2sign.models.autoencoder import FrameAutoencoder
from text2sign.models.registry import build_denoiser as build_arch
from text2sign.models.registry import preset_params
from text2sign.models.text import TextConditioner, TextEncoder, build_text_encoder


def build_config(preset: str | None = "small", config_file: str | Path | None = None,
                 overrides: list[str] | None = None, base: Config | None = None) -> Config:
    """Preset, then YAML file, then ``--set`` overrides (`config.compose`), resolved."""
    return resolve_config(compose(preset, config_file, overrides, base))


def resolve_config(cfg: Config) -> Config:
    """A copy with ``model.params`` filled from the architecture preset under any explicit values,
    and what pretrained files decide (reads their configs and headers, never their weights)."""
    model = replace(cfg.model, params={**preset_params(cfg.model.arch, cfg.model.preset),
                                       **cfg.model.params})
    latent = cfg.latent
    if latent.enabled and latent.autoencoder:
        shape = pretrained.vae_latent_shape(latent.autoencoder)
        if shape is not None:  # a diffusers VAE: its latent channels and factor
            latent = replace(latent, channels=shape[0], factor=shape[1])
    if cfg.text.languages is not None:
        check_language_list(cfg.text.languages)
    if model.pretrained is None and model.train_only != "all":
        raise ValueError("model.train_only=temporal needs model.pretrained (the weights to "
                         "keep frozen); set it, or use model.train_only=all")
    if model.pretrained is not None:
        params = {**model.params, **pretrained.pretrained_params(
            model.arch, model.pretrained, model.params.get("num_heads", 16))}
        model = replace(model, params=params)
    return replace(cfg, model=model, latent=latent)


def check_language_list(languages: list[str]) -> None:
    """text.languages: known sign-language codes, each once."""
    unknown = [code for code in languages if code not in SIGN_LANGUAGES]
    if unknown or not languages or len(set(languages)) != len(languages):
        raise ValueError(f"text.languages={languages} must list sign-language codes each once, "
                         f"from {', '.join(SIGN_LANGUAGES)}")


def diffusion_space(cfg: Config) -> tuple[int, int]:
    """(channels, side) of what the denoiser sees: RGB pixels, or the autoencoder's latents."""
    if cfg.latent.enabled:
        return cfg.latent.channels, cfg.data.size // cfg.latent.factor
    return 3, cfg.data.size


def text_encoder(cfg: Config) -> TextEncoder:
    tc = cfg.text
    return build_text_encoder(tc.encoder, dim=tc.dim, layers=tc.layers, heads=tc.heads,
                              max_length=tc.max_length, languages=len(tc.languages or ()))


def build_conditioner(cfg: Config) -> TextConditioner:
    return TextConditioner(text_encoder(cfg), cfg.diffusion.null_condition,
                           lowercase=cfg.text.lowercase, languages=cfg.text.languages)


LANGUAGE_ARCHS = ("unet3d", "dit3d")  # the denoisers with a language input (`LanguageEmbedding`)


def build_denoiser(cfg: Config, text_dim: int) -> nn.Module:
    """The config's denoiser for ``text_dim``-wide text, checked against the clip size."""
    channels, size = diffusion_space(cfg)
    params = dict(cfg.model.params)
    if cfg.text.languages and len(cfg.text.languages) > 1:
        if cfg.model.arch not in LANGUAGE_ARCHS:
            raise ValueError(
                f"model.arch={cfg.model.arch} takes no language input; a corpus of "
                f"{len(cfg.text.languages)} sign languages ({', '.join(cfg.text.languages)}) "
                f"needs model.arch in {list(LANGUAGE_ARCHS)}, or train on one language")
        params["languages"] = len(cfg.text.languages)
    denoiser = build_arch(cfg.model.arch, params, in_channels=channels, text_dim=text_dim)
    denoiser.check_input_size(cfg.data.frames, size, size)
    return denoiser


def build_models(cfg: Config) -> tuple[nn.Module, TextConditioner]:
    """The denoiser and the text conditioner a config describes, freshly initialised."""
    conditioner = build_conditioner(cfg)
    return build_denoiser(cfg, conditioner.dim), conditioner


def build_autoencoder(cfg: LatentConfig) -> FrameAutoencoder:
    """A fresh frame autoencoder of the config's shape (trained before the denoiser)."""
    return FrameAutoencoder(cfg.channels, cfg.factor, cfg.width, cfg.prescale)
