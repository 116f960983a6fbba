"""diffusers' UNet3DConditionModel (ModelScope T2V, Wang et al. 2023) behind our denoiser interface.

The baseline our own denoisers are benchmarked against. Differences from them, by necessity:
- no text mask input (its `attention_mask` is unused upstream): padding tokens are zeroed, so
  their content cannot matter, but they still take part in the softmax (with zero key/value);
- no pooled-text input: conditioning is cross-attention to the tokens only;
- no gradient checkpointing (`_supports_gradient_checkpointing = False` upstream).
The output convolution is zero-initialised here so every denoiser starts from the same place.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from diffusers import UNet3DConditionModel
from torch import nn

from text2sign.models.layers import check_multiple, unmasked_tokens, zero_module
from text2sign.models.text import TextEmbedding


class DiffusersUNet3D(nn.Module):
    """`diffusers.UNet3DConditionModel` taking (B, C, T, H, W), timesteps and a TextEmbedding.

    `num_heads` is passed as diffusers' `attention_head_dim`, which (a naming slip kept
    upstream for compatibility) is the head count of the blocks' attention.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        text_dim: int,
        channels: int = 32,
        channel_mult: list[int] = (1, 2, 4, 4),
        layers_per_block: int = 1,
        num_heads: int = 4,
        norm_groups: int = 16,
    ) -> None:
        super().__init__()
        widths = [channels * m for m in channel_mult]
        bad = [w for w in widths if w % norm_groups or w % num_heads]
        if bad:
            raise ValueError(
                f"block widths {bad} must be divisible by norm_groups={norm_groups} and "
                f"num_heads={num_heads}; change channels, norm_groups or num_heads"
            )
        self.config: dict[str, Any] = {
            "channels": channels, "channel_mult": list(channel_mult),
            "layers_per_block": layers_per_block, "num_heads": num_heads,
            "norm_groups": norm_groups,
        }
        self.in_channels = in_channels
        levels = len(widths)
        self.unet = UNet3DConditionModel(
            in_channels=in_channels,
            out_channels=in_channels,
            down_block_types=("CrossAttnDownBlock3D",) * (levels - 1) + ("DownBlock3D",),
            up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (levels - 1),
            block_out_channels=tuple(widths),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_groups,
            cross_attention_dim=text_dim,
            attention_head_dim=num_heads,
        )
        zero_module(self.unet.conv_out)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Unsupported upstream: warns and stays off when asked to enable."""
        if enabled:
            warnings.warn(
                "diffusers' UNet3DConditionModel does not support gradient checkpointing; "
                "training diffusers-unet3d without it (use unet3d or dit3d to save memory)",
                UserWarning, stacklevel=2,
            )

    def check_input_size(self, frames: int, height: int, width: int) -> None:
        """Raise a ValueError unless 2**(levels-1) divides the size (any frame count works)."""
        factor = 2 ** (len(self.config["channel_mult"]) - 1)
        why = f"diffusers-unet3d with {len(self.config['channel_mult'])} levels"
        check_multiple("height", height, factor, why)
        check_multiple("width", width, factor, why)
        check_multiple("frames", frames, 1, why)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: TextEmbedding) -> torch.Tensor:
        tokens = unmasked_tokens(self, x, text)  # (B, L, D), pads = 0
        return self.unet(x, t, encoder_hidden_states=tokens, return_dict=False)[0]  # (B,C,T,H,W)
