"""Denoisers by name (one dispatch map), with named presets of their parameters
(``ARCH_PRESETS``; the whole-run presets the CLI offers are ``config.PRESETS``).

Importing this module is cheap (no torch): builders import their architecture when called.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from torch import Tensor, nn

    from text2sign.models.text import TextEmbedding


class Denoiser(Protocol):
    """What the diffusion code, training and pipelines ask of a denoiser (every class below)."""

    in_channels: int
    config: dict[str, Any]  # the parameters that rebuild it: build_denoiser(arch, config, ...)

    def __call__(self, x: Tensor, t: Tensor, text: TextEmbedding) -> Tensor:
        """x_t (B, C, T, H, W), timesteps (B,) -> the prediction (epsilon or v), shaped like x_t."""

    def check_input_size(self, frames: int, height: int, width: int) -> None:
        """Raise ValueError naming a clip size the down/patch factors do not allow."""

    def set_gradient_checkpointing(self, enabled: bool) -> None: ...


# The one dispatch map: name -> (module, class). Classes are imported on first use, so listing
# the names (the CLI's choices, `text2sign info`) never imports diffusers (seconds).
DENOISERS: dict[str, tuple[str, str]] = {
    "unet3d": ("text2sign.models.unet3d", "UNet3D"),
    "dit3d": ("text2sign.models.dit3d", "DiT3D"),
    "diffusers-unet3d": ("text2sign.models.diffusers_unet3d", "DiffusersUNet3D"),
    "unet-motion": ("text2sign.models.unet_motion", "UNetMotion"),  # an SD image UNet, inflated
}


def denoiser_class(arch: str) -> type[nn.Module]:
    _check_arch(arch)
    module, name = DENOISERS[arch]
    return getattr(importlib.import_module(module), name)


# Every unet3d / dit3d preset aligns text order with time order (alignment="monotonic"): on a
# toy of colour "words" it orders unseen words where the unaligned model does not
# (tests/test_alignment.py); frame_context gives each frame its neighbours and its phase in its
# letter, which marks doubled letters (the same toy; the shipped words model's second stage).
# Sizes: `tiny` runs a forward at 4x16x16 in milliseconds (tests); `small` trains on 2 CPU cores
# at 16x64x64 (the fingerspelling demo); `base` fits one GPU (~30-100M parameters); `large`
# several GPUs (~200-400M). Parameter counts are for text_dim 128 / 256 / 512 (config presets).
ARCH_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "unet3d": {
        "tiny": {"channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                 "attention_levels": [1], "temporal_attention": True,
                 "temporal_downsample": [False], "head_dim": 8, "stem": 2, "norm_groups": 8,
                 "dropout": 0.0, "alignment": "monotonic", "frame_context": True},
        # The demo model's denoiser (4.2 M): a 4x space-to-depth stem puts every conv at
        # 16x16 and below for 64x64 clips, which is what makes CPU training practical.
        "small": {"channels": 64, "channel_mult": [1, 1, 2], "num_res_blocks": 1,
                  "attention_levels": [1, 2], "temporal_attention": True,
                  "temporal_downsample": [False, False], "head_dim": 32, "stem": 4,
                  "norm_groups": 32, "dropout": 0.0, "alignment": "monotonic",
                  "frame_context": True},
        "base": {"channels": 96, "channel_mult": [1, 2, 3, 4], "num_res_blocks": 2,
                 "attention_levels": [2, 3], "temporal_attention": True,
                 "temporal_downsample": [False, False, False], "head_dim": 32, "stem": 2,
                 "norm_groups": 32, "dropout": 0.0, "alignment": "monotonic",
                 "frame_context": True},
        "large": {"channels": 192, "channel_mult": [1, 2, 4, 4], "num_res_blocks": 2,
                  "attention_levels": [1, 2, 3], "temporal_attention": True,
                  "temporal_downsample": [False, False, False], "head_dim": 64, "stem": 2,
                  "norm_groups": 32, "dropout": 0.0, "alignment": "monotonic",
                  "frame_context": True},
    },
    "dit3d": {
        "tiny": {"hidden_size": 32, "depth": 2, "num_heads": 2, "patch_size": 4,
                 "tubelet": 1, "mlp_ratio": 2.0, "cross_attention": True,
                 "alignment": "monotonic", "frame_context": True},
        "small": {"hidden_size": 192, "depth": 6, "num_heads": 3, "patch_size": 4,
                  "tubelet": 2, "mlp_ratio": 4.0, "cross_attention": True,
                  "alignment": "monotonic", "frame_context": True},
        "base": {"hidden_size": 512, "depth": 16, "num_heads": 8, "patch_size": 4,
                 "tubelet": 1, "mlp_ratio": 4.0, "cross_attention": True,
                 "alignment": "monotonic", "frame_context": True},
        "large": {"hidden_size": 768, "depth": 24, "num_heads": 12, "patch_size": 4,
                  "tubelet": 1, "mlp_ratio": 4.0, "cross_attention": True,
                 "alignment": "monotonic", "frame_context": True},
    },
    "diffusers-unet3d": {
        "tiny": {"channels": 16, "channel_mult": [1, 2], "layers_per_block": 1,
                 "num_heads": 2, "norm_groups": 8},
        "small": {"channels": 24, "channel_mult": [1, 2, 4, 4], "layers_per_block": 1,
                  "num_heads": 4, "norm_groups": 8},
        "base": {"channels": 64, "channel_mult": [1, 2, 4, 4], "layers_per_block": 2,
                 "num_heads": 8, "norm_groups": 32},
        "large": {"channels": 128, "channel_mult": [1, 2, 4, 4], "layers_per_block": 2,
                  "num_heads": 8, "norm_groups": 32},
    },
    # The image UNet's own config comes from model.pretrained (params.unet); these shape the
    # new motion modules (AnimateDiff's: 8 heads, 32 groups, 32 frames, a mid-block module).
    "unet-motion": {
        "tiny": {"motion_heads": 2, "motion_norm_groups": 8, "motion_max_frames": 32,
                 "motion_mid_block": True},
        **{size: {"motion_heads": 8, "motion_norm_groups": 32, "motion_max_frames": 32,
                  "motion_mid_block": True} for size in ("small", "base", "large")},
    },
}


def _check_arch(arch: str) -> None:
    if arch not in DENOISERS:
        raise ValueError(f"unknown denoiser {arch!r}; choose one of {sorted(DENOISERS)}")


def preset_params(arch: str, preset: str) -> dict[str, Any]:
    """A copy of the named preset's parameters for `arch` (safe to edit)."""
    _check_arch(arch)
    if preset not in ARCH_PRESETS[arch]:
        raise ValueError(
            f"unknown preset {preset!r} for {arch}; choose one of {list(ARCH_PRESETS[arch])}"
        )
    return copy.deepcopy(ARCH_PRESETS[arch][preset])


def allowed_params(arch: str) -> list[str]:
    """The parameter names `arch` accepts in `build_denoiser(..., params)`."""
    _check_arch(arch)
    sig = inspect.signature(denoiser_class(arch).__init__)
    return [n for n in sig.parameters if n not in ("self", "in_channels", "text_dim")]


def build_denoiser(arch: str, params: dict[str, Any], *, in_channels: int = 3,
                   text_dim: int) -> Denoiser:
    """Build `arch` from `params` (e.g. a preset, or a saved config.json); unknown names fail."""
    allowed = allowed_params(arch)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for denoiser {arch!r}; allowed: {allowed}"
        )
    return denoiser_class(arch)(in_channels=in_channels, text_dim=text_dim, **params)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
