"""A factorized space-time (2+1)D UNet denoiser for video diffusion, compact and CPU-friendly.

Residual blocks run a spatial (1,3,3) then a temporal (3,1,1) convolution (Tran et al. 2018,
"R(2+1)D"; Ho et al. 2022, "Video Diffusion Models"), conditioned on timestep + pooled text by
GroupNorm scale/shift (Dhariwal & Nichol 2021, "AdaGN"). Low-resolution levels add spatial and
temporal self-attention and cross-attention to text tokens. A space-to-depth stem (pixel
unshuffle, Shi et al. 2016) makes the expensive full-resolution convolutions run at half size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from text2sign.models.layers import (
    FRAME_CONTEXT_FEATURES,
    Attention,
    FeedForward,
    GuidanceEmbedding,
    LanguageEmbedding,
    MonotonicAlignment,
    TimestepEmbedding,
    check_frame_context,
    check_multiple,
    checkpointed,
    frame_context,
    frame_text,
    group_norm,
    guidance_of,
    inverse_softplus,
    sincos_1d,
    zero_module,
)
from text2sign.models.text import TextEmbedding

ALIGNMENTS = ("none", "monotonic")


class FactorizedConv(nn.Module):
    """(2+1)D convolution: spatial 3x3 per frame, then temporal 3 per pixel; no frame loops."""

    def __init__(self, in_ch: int, out_ch: int, temporal: bool = True) -> None:
        super().__init__()
        self.spatial = nn.Conv3d(in_ch, out_ch, (1, 3, 3), padding=(0, 1, 1))
        self.temporal = nn.Conv3d(out_ch, out_ch, (3, 1, 1), padding=(1, 0, 0)) if temporal \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.spatial(x))


class ResBlock(nn.Module):
    """Pre-norm residual block with timestep/text scale-shift after the second norm (AdaGN)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_ch, groups)
        self.conv1 = FactorizedConv(in_ch, out_ch)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_ch))
        self.norm2 = group_norm(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = FactorizedConv(out_ch, out_ch)
        self.skip = nn.Conv3d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``emb`` is (B, E) for the whole clip, or (B, T0, E) per frame (aligned text)."""
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out, T, H, W)
        e = self.emb(emb)  # (B, 2*out) or (B, T0, 2*out)
        if e.ndim == 2:
            scale, shift = rearrange(e, "b (two c) -> two b c 1 1 1", two=2)
        else:
            e = rearrange(e, "b t c -> b c t")  # (B, 2*out, T0)
            if e.shape[-1] != h.shape[2]:  # a temporally downsampled level
                e = F.adaptive_avg_pool1d(e, h.shape[2])  # (B, 2*out, T)
            scale, shift = rearrange(e, "b (two c) t -> two b c t 1 1", two=2)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))  # (B, out, T, H, W)
        return self.skip(x) + h


class SpaceTimeTransformer(nn.Module):
    """Spatial self-attention per frame, cross-attention to text, temporal self-attention per
    pixel, then an MLP; each a pre-LayerNorm residual on channels-last tokens."""

    def __init__(self, dim: int, head_dim: int, text_dim: int, temporal: bool = True,
                 ff_mult: float = 2.0, aligned: bool = False) -> None:
        super().__init__()
        heads = max(1, dim // head_dim)
        self.norm_s = nn.LayerNorm(dim)
        self.attn_s = Attention(dim, heads)
        self.norm_x = nn.LayerNorm(dim)
        self.attn_x = Attention(dim, heads, context_dim=text_dim)
        self.align = MonotonicAlignment(heads) if aligned else None
        self.temporal = temporal
        if temporal:
            self.norm_t = nn.LayerNorm(dim)
            self.attn_t = Attention(dim, heads)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_mult)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                order: torch.Tensor | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        z = rearrange(x, "b c t h w -> (b t) (h w) c")  # (B*T, H*W, C)
        z = z + self.attn_s(self.norm_s(z))
        # Cross-attention is per query, so all T*H*W queries of a clip share one text context;
        # with alignment, a query's logits are biased towards the tokens its frame shows.
        z = rearrange(z, "(b t) s c -> b (t s) c", b=b)  # (B, T*H*W, C)
        bias = None
        if self.align is not None and order is not None:
            bias = self.align(order, t)  # (B, heads, T, L)
            bias = bias[:, :, :, None].expand(-1, -1, -1, h * w, -1).flatten(2, 3)  # (B,h,T*S,L)
        z = z + self.attn_x(self.norm_x(z), tokens, mask, bias)
        if self.temporal:
            z = rearrange(z, "b (t s) c -> (b s) t c", t=t)  # (B*H*W, T, C)
            pos = sincos_1d(t, c, z.device).to(z.dtype)  # (T, C): any frame count works
            z = z + self.attn_t(self.norm_t(z) + pos)
            z = rearrange(z, "(b s) t c -> b (t s) c", b=b)  # (B, T*H*W, C)
        z = z + self.ff(self.norm_ff(z))
        return rearrange(z, "b (t h w) c -> b c t h w", t=t, h=h)  # (B, C, T, H, W)


class Downsample(nn.Module):
    """Strided conv: halves H and W, and T when `temporal`."""

    def __init__(self, ch: int, temporal: bool) -> None:
        super().__init__()
        kt = 3 if temporal else 1
        self.conv = nn.Conv3d(ch, ch, (kt, 3, 3), stride=(kt // 2 + 1, 2, 2),
                              padding=(kt // 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Spatial conv to the finer level's width, then nearest x2 in H, W (and T when `temporal`).

    The conv runs before upsampling, at a quarter of the pixels and on fewer output channels.
    """

    def __init__(self, in_ch: int, out_ch: int, temporal: bool) -> None:
        super().__init__()
        self.factor = (2 if temporal else 1, 2, 2)
        self.conv = nn.Conv3d(in_ch, out_ch, (1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(x), scale_factor=self.factor, mode="nearest")


class Level(nn.Module):
    """One UNet resolution: residual blocks, each optionally followed by a transformer."""

    def __init__(self, in_ch: int, out_ch: int, n_blocks: int, attention: bool, emb_dim: int,
                 cfg: dict[str, Any], text_dim: int) -> None:
        super().__init__()
        self.res = nn.ModuleList(
            ResBlock(in_ch if i == 0 else out_ch, out_ch, emb_dim, cfg["norm_groups"],
                     cfg["dropout"])
            for i in range(n_blocks)
        )
        self.attn = nn.ModuleList(
            SpaceTimeTransformer(out_ch, cfg["head_dim"], text_dim, cfg["temporal_attention"],
                                 aligned=cfg["alignment"] == "monotonic")
            for _ in range(n_blocks if attention else 0)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor, text: TextEmbedding,
                ckpt: bool) -> torch.Tensor:
        for i, res in enumerate(self.res):
            x = checkpointed(res, x, emb, enabled=ckpt)
            if self.attn:
                x = checkpointed(self.attn[i], x, text.tokens, text.mask, text.order,
                                 enabled=ckpt)
        return x


class UNet3D(nn.Module):
    """Text-conditioned (2+1)D UNet: noisy video (B, C, T, H, W), timesteps, text -> same shape.

    Levels are numbered from 0 (after the stem, at H/stem) downwards; `attention_levels` picks
    which have attention (the middle block always has it). `temporal_downsample[i]` says whether
    going from level i to i+1 also halves the frame count.

    ``alignment="monotonic"`` makes text order time order: every cross-attention's logits get a
    learned per-head prior towards the tokens a frame's share of the clip holds, and every
    residual block's scale/shift gets, per frame, the text tokens that share holds (a soft length
    regulator). ``"none"`` conditions every frame on the whole text alike. ``frame_context``
    (with ``"monotonic"``) also gives every frame its previous, own and next token and where it
    sits inside its own token's share (:func:`frame_context`): what tells the two halves of a
    doubled letter apart.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        text_dim: int,
        channels: int = 64,
        channel_mult: list[int] = (1, 2, 3, 4),
        num_res_blocks: int = 1,
        attention_levels: list[int] = (2, 3),
        temporal_attention: bool = True,
        temporal_downsample: list[bool] | None = None,
        head_dim: int = 32,
        stem: int = 2,
        norm_groups: int = 32,
        dropout: float = 0.0,
        alignment: str = "none",
        frame_context: bool = False,
        guidance_embed: bool = False,
        languages: int = 0,
    ) -> None:
        super().__init__()
        levels = len(channel_mult)
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment={alignment!r} is not one of {list(ALIGNMENTS)}")
        check_frame_context(alignment, frame_context)
        if temporal_downsample is None:
            temporal_downsample = [False] * (levels - 1)
        if len(temporal_downsample) != levels - 1:
            raise ValueError(
                f"temporal_downsample={list(temporal_downsample)} needs one entry per level "
                f"transition, {levels - 1} for channel_mult={list(channel_mult)}"
            )
        bad = [lvl for lvl in attention_levels if not 0 <= lvl < levels]
        if bad:
            raise ValueError(
                f"attention_levels {bad} out of range; levels are 0..{levels - 1} "
                f"for channel_mult={list(channel_mult)}"
            )
        if stem < 1:
            raise ValueError(f"stem={stem} must be >= 1 (the space-to-depth factor; 1 disables)")
        self.config: dict[str, Any] = {
            "channels": channels, "channel_mult": list(channel_mult),
            "num_res_blocks": num_res_blocks, "attention_levels": list(attention_levels),
            "temporal_attention": temporal_attention,
            "temporal_downsample": list(temporal_downsample), "head_dim": head_dim,
            "stem": stem, "norm_groups": norm_groups, "dropout": dropout,
            "alignment": alignment,
        }
        if frame_context:  # folders written before it existed have none
            self.config["frame_context"] = True
        if guidance_embed:  # a distilled student: the guidance scale is an input
            self.config["guidance_embed"] = True
        if languages < 0:
            raise ValueError(f"languages={languages} must be >= 0 (0: a model of one language)")
        if languages:  # a model of several sign languages: the language is an input
            self.config["languages"] = languages
        cfg = self.config
        self.in_channels = in_channels
        self.gradient_checkpointing = False
        emb_dim = 4 * channels
        widths = [channels * m for m in channel_mult]

        self.time_embed = TimestepEmbedding(emb_dim)
        self.text_embed = nn.Linear(text_dim, emb_dim)  # pooled text joins the timestep signal
        if guidance_embed:
            self.guidance_embed = GuidanceEmbedding(emb_dim)
        if languages:
            self.language_embed = LanguageEmbedding(languages, text_dim, emb_dim)
        if alignment == "monotonic":
            # Each frame's tokens join its own timestep signal (zero: starts as a no-op).
            self.frame_text = zero_module(nn.Linear(text_dim, emb_dim))
            self.frame_strength = nn.Parameter(torch.tensor(inverse_softplus(2.0)))
        if frame_context:  # phase in its token and the neighbours (zero: starts as a no-op)
            self.frame_context = nn.Sequential(
                nn.Linear(3 * text_dim + FRAME_CONTEXT_FEATURES, emb_dim), nn.SiLU(),
                zero_module(nn.Linear(emb_dim, emb_dim)))
        stem_ch = in_channels * stem * stem
        self.conv_in = nn.Conv3d(stem_ch, channels, (1, 3, 3), padding=(0, 1, 1))

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = channels
        for i, width in enumerate(widths):
            self.down.append(Level(ch, width, num_res_blocks, i in attention_levels, emb_dim,
                                   cfg, text_dim))
            ch = width
            if i < levels - 1:
                self.downsample.append(Downsample(ch, temporal_downsample[i]))
        self.mid = Level(ch, ch, 2, True, emb_dim, cfg, text_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(levels)):
            width = widths[i]
            self.up.append(Level(ch + width, width, num_res_blocks, i in attention_levels,
                                 emb_dim, cfg, text_dim))
            ch = width
            if i > 0:
                self.upsample.append(Upsample(ch, widths[i - 1], temporal_downsample[i - 1]))
                ch = widths[i - 1]
        self.norm_out = group_norm(ch, norm_groups)
        self.conv_out = zero_module(nn.Conv3d(ch, stem_ch, (1, 3, 3), padding=(0, 1, 1)))

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute block activations in backward: less memory, ~30% more compute."""
        self.gradient_checkpointing = bool(enabled)

    def check_input_size(self, frames: int, height: int, width: int) -> None:
        """Raise a ValueError unless the stem and down-sampling factors divide the clip size."""
        cfg = self.config
        spatial = cfg["stem"] * 2 ** (len(cfg["channel_mult"]) - 1)
        temporal = 2 ** sum(bool(d) for d in cfg["temporal_downsample"])
        why = (f"unet3d with stem={cfg['stem']}, {len(cfg['channel_mult'])} levels, "
               f"temporal_downsample={cfg['temporal_downsample']}")
        check_multiple("height", height, spatial, why)
        check_multiple("width", width, spatial, why)
        check_multiple("frames", frames, temporal, why)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: TextEmbedding) -> torch.Tensor:
        b, c, frames, height, width = x.shape
        if c != self.in_channels:
            raise ValueError(f"input has {c} channels; this model was built for {self.in_channels}")
        self.check_input_size(frames, height, width)
        s = self.config["stem"]
        ckpt = self.gradient_checkpointing
        emb = self.time_embed(t.expand(b) if t.ndim == 0 else t) + self.text_embed(text.pooled)
        if self.config.get("languages"):
            text, language = self.language_embed(text, b)  # language-aware letter tokens
            emb = emb + language
        if self.config.get("guidance_embed"):
            emb = emb + self.guidance_embed(guidance_of(text, b))
        if self.config["alignment"] == "monotonic":
            shares = frame_text(text.tokens, text.order, frames, self.frame_strength)  # (B,T,D)
            emb = emb[:, None] + self.frame_text(shares)  # (B, T, E)
        if self.config.get("frame_context"):
            emb = emb + self.frame_context(frame_context(text.tokens, text.order, frames))

        # Space-to-depth: lossless, and the costly full-resolution convs run at H/s x W/s.
        h = rearrange(x, "b c t (h p) (w q) -> b (c p q) t h w", p=s, q=s)  # (B,C*s*s,T,H/s,W/s)
        h = self.conv_in(h)  # (B, ch, T, H/s, W/s)
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, emb, text, ckpt)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb, text, ckpt)
        for i, level in enumerate(self.up):
            h = level(torch.cat([h, skips.pop()], dim=1), emb, text, ckpt)  # (B, ch+skip, ...)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        h = self.conv_out(F.silu(self.norm_out(h)))  # (B, C*s*s, T, H/s, W/s)
        return rearrange(h, "b (c p q) t h w -> b c t (h p) (w q)", p=s, q=s)  # (B, C, T, H, W)
