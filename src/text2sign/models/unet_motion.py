"""An image UNet (Stable Diffusion's UNet2DConditionModel) inflated to video with motion modules.

AnimateDiff (Guo et al. 2024): the image UNet runs on every frame as it was trained, and a
temporal transformer after each of its blocks mixes frames at each position. Built with diffusers'
``UNetMotionModel.from_unet2d`` and a fresh ``MotionAdapter``, so the module names match
AnimateDiff's published motion adapters. Each motion module's output projection starts at zero
(AnimateDiff's zero init), so at step 0 the video model is exactly the image model per frame.
Tune-A-Video's alternative (Wu et al. 2023) rewires the image model's spatial self-attention to
attend to the first and previous frame, which changes the image model before any training.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.utils import logging as diffusers_logging
from torch import nn

from text2sign.models.layers import check_multiple, unmasked_tokens
from text2sign.models.pretrained import LoadReport, check_text_width, frames_fit
from text2sign.models.text import TextEmbedding


class UNetMotion(nn.Module):
    """UNetMotionModel taking (B, C, T, H, W), timesteps (B,) and a TextEmbedding.

    ``unet`` is the image UNet's diffusers config (read from ``model.pretrained``); the
    ``motion_*`` parameters shape the new temporal layers. Text: the tokens (padding zeroed)
    reach every frame's cross-attention; the pooled text is not used (as in SD 1.x/2.x).
    """

    def __init__(
        self,
        *,
        in_channels: int = 4,
        text_dim: int,
        unet: dict[str, Any] | None = None,
        motion_heads: int = 8,
        motion_norm_groups: int = 32,
        motion_max_frames: int = 32,
        motion_mid_block: bool = True,
    ) -> None:
        super().__init__()
        if not unet:
            raise ValueError("model.arch=unet-motion needs an image UNet: set model.pretrained "
                             "to a diffusers UNet2DConditionModel folder (e.g. an SD 1.5 unet/)")
        if unet.get("in_channels") != in_channels:
            raise ValueError(
                f"the pretrained UNet takes {unet.get('in_channels')} channels, the run diffuses "
                f"{in_channels}; use its pipeline's autoencoder (latent.enabled=true "
                "latent.autoencoder=SD_FOLDER/vae) or a UNet made for this space")
        check_text_width(text_dim, unet["cross_attention_dim"])
        widths = list(unet["block_out_channels"])
        bad = [w for w in widths if w % motion_norm_groups or w % motion_heads]
        if bad:
            raise ValueError(f"UNet block widths {bad} are not divisible by motion_norm_groups="
                             f"{motion_norm_groups} and motion_heads={motion_heads}; change them")
        self.config: dict[str, Any] = {
            "unet": unet, "motion_heads": motion_heads, "motion_norm_groups": motion_norm_groups,
            "motion_max_frames": motion_max_frames, "motion_mid_block": motion_mid_block,
        }
        self.in_channels = in_channels
        adapter = MotionAdapter(
            block_out_channels=tuple(widths),
            motion_layers_per_block=unet["layers_per_block"],
            motion_num_attention_heads=motion_heads,
            motion_norm_num_groups=motion_norm_groups,
            motion_max_seq_length=motion_max_frames,
            use_motion_mid_block=motion_mid_block,
        )
        image_unet = UNet2DConditionModel.from_config(unet)
        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # from_unet2d warns about a dtype cast it skips
        try:
            self.unet = UNetMotionModel.from_unet2d(image_unet, adapter)
        finally:
            diffusers_logging.set_verbosity(verbosity)
        for name, module in self.unet.named_modules():
            if name.endswith("proj_out") and "motion_modules" in name:
                nn.init.zeros_(module.weight)
                nn.init.zeros_(module.bias)

    @staticmethod
    def is_temporal(name: str) -> bool:
        return "motion_modules" in name

    def load_unet2d(self, state: dict[str, torch.Tensor], source: str):
        """Load an image UNet's weights; the motion modules stay as initialised (new)."""
        ours = {k.removeprefix("unet."): k for k in self.state_dict()}
        report = LoadReport(source)
        loadable = {}
        for key, value in state.items():
            if key in ours and self.state_dict()[ours[key]].shape == value.shape:
                loadable[ours[key]] = value
                report.loaded.append(ours[key])
            else:
                report.dropped.append(key)
        report.new = sorted(set(self.state_dict()) - set(loadable))
        odd = [k for k in report.new if not self.is_temporal(k)]
        if odd or report.dropped:
            raise ValueError(f"the UNet weights in {source!r} do not fit the inflated UNet "
                             f"(not in the file: {odd[:5]}; not in the model: "
                             f"{report.dropped[:5]})")
        self.load_state_dict(loadable, strict=False)
        return report

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute block activations in backward (diffusers' own checkpointing)."""
        if enabled:
            self.unet.enable_gradient_checkpointing()
        else:
            self.unet.disable_gradient_checkpointing()

    def check_input_size(self, frames: int, height: int, width: int) -> None:
        """Raise a ValueError unless the UNet's downsampling divides the size."""
        factor = 2 ** (len(self.config["unet"]["block_out_channels"]) - 1)
        why = f"unet-motion with {len(self.config['unet']['block_out_channels'])} levels"
        check_multiple("height", height, factor, why)
        check_multiple("width", width, factor, why)
        check_multiple("frames", frames, 1, why)
        frames_fit(frames, self.config["motion_max_frames"])

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: TextEmbedding) -> torch.Tensor:
        tokens = unmasked_tokens(self, x, text)  # (B, L, D), pads = 0
        # The motion UNet runs the image blocks on (B*T) frames and does not repeat the text.
        tokens = tokens.repeat_interleave(x.shape[2], dim=0)  # (B*T, L, D)
        return self.unet(x, t, encoder_hidden_states=tokens, return_dict=False)[0]  # (B,C,T,H,W)
