"""A video diffusion transformer: tubelet tokens, alternating spatial / temporal attention blocks.

Tokens are non-overlapping (tubelet x patch x patch) cubes (ViViT, Arnab et al. 2021). Blocks
alternate attention within a frame and across frames at one position (Latte, Ma et al. 2024,
variant 1), are conditioned by adaLN-Zero on timestep + pooled text (DiT, Peebles & Xie 2023,
sec. 3.2) and cross-attend to the text tokens (PixArt-alpha, Chen et al. 2023).
"""

from __future__ import annotations

from typing import Any

import torch
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
    guidance_of,
    inverse_softplus,
    modulate,
    sincos_1d,
    sincos_2d,
)
from text2sign.models.text import TextEmbedding


def dit_sincos_2d(height: int, width: int, dim: int, device: torch.device | None = None
                  ) -> torch.Tensor:
    """DiT's fixed 2D positions (H*W, dim): the first half of the channels encodes the column, the
    second the row, each as [sin | cos] (facebookresearch/DiT get_2d_sincos_pos_embed, in fp64)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64, device=device) / quarter)

    def axis(pos: torch.Tensor) -> torch.Tensor:
        out = pos.double()[:, None] * omega[None]  # (N, dim/4)
        return torch.cat([out.sin(), out.cos()], dim=1)  # (N, dim/2)

    rows, cols = torch.meshgrid(torch.arange(height, device=device),
                                torch.arange(width, device=device), indexing="ij")  # (H, W)
    emb = torch.cat([axis(cols.flatten()), axis(rows.flatten())], dim=1)  # (H*W, dim)
    return emb.float()


class DiTBlock(nn.Module):
    """One transformer block over (B, T', S, D) tokens, attending over space or over time."""

    def __init__(self, dim: int, heads: int, text_dim: int, mlp_ratio: float, temporal: bool,
                 cross_attention: bool, aligned: bool = False) -> None:
        super().__init__()
        self.temporal = temporal
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias=True)
        self.cross = cross_attention
        if cross_attention:
            self.norm_x = nn.LayerNorm(dim, eps=1e-6)
            self.attn_x = Attention(dim, heads, context_dim=text_dim)
        self.align = MonotonicAlignment(heads) if aligned and cross_attention else None
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(dim, mlp_ratio)
        # adaLN-Zero: shift/scale/gate for attention and MLP; gates start at 0 (identity block).
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, tokens: torch.Tensor,
                mask: torch.Tensor, pos: torch.Tensor | None = None,
                order: torch.Tensor | None = None) -> torch.Tensor:
        """``c`` is (B, D), or (B, T', D) per frame; ``pos`` (T', 1, D): frame positions added
        to a temporal block's attention input; ``order`` (B, L): the text's content order."""
        b, t, s, d = x.shape
        if c.ndim == 2:
            mods = rearrange(self.ada(c), "b (six d) -> six b 1 1 d", six=6)  # 6 x (B,1,1,D)
        else:
            mods = rearrange(self.ada(c), "b t (six d) -> six b t 1 d", six=6)  # 6 x (B,T',1,D)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mods
        h = modulate(self.norm1(x), shift_a, scale_a)  # (B, T', S, D)
        if self.temporal:
            h = h if pos is None else h + pos.to(h.dtype)  # (B, T', S, D)
            h = rearrange(h, "b t s d -> (b s) t d")  # (B*S, T', D)
            h = rearrange(self.attn(h), "(b s) t d -> b t s d", b=b)  # (B, T', S, D)
        else:
            h = rearrange(h, "b t s d -> (b t) s d")  # (B*T', S, D)
            h = rearrange(self.attn(h), "(b t) s d -> b t s d", b=b)  # (B, T', S, D)
        x = x + gate_a * h
        if self.cross:
            z = rearrange(x, "b t s d -> b (t s) d")  # (B, T'*S, D)
            bias = None
            if self.align is not None and order is not None:
                bias = self.align(order, t)  # (B, heads, T', L)
                bias = bias[:, :, :, None].expand(-1, -1, -1, s, -1).flatten(2, 3)  # (B,h,T'S,L)
            z = self.attn_x(self.norm_x(z), tokens, mask, bias)  # (B, T'*S, D)
            x = x + rearrange(z, "b (t s) d -> b t s d", t=t)  # (B, T', S, D)
        return x + gate_m * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class DiT3D(nn.Module):
    """Text-conditioned video DiT: noisy video (B, C, T, H, W), timesteps, text -> same shape.

    Block i attends over space when i is even and over time when i is odd. Fixed sin/cos
    positions are computed on the fly, so any T, H, W the tubelet and patch divide works.
    ``positions="input"`` adds space and time positions to the tokens; ``"dit"`` adds DiT's 2D
    layout to the tokens and the frame positions only inside temporal blocks, so the spatial
    blocks see exactly what an image DiT sees (the layout a DiT checkpoint loads into).
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        text_dim: int,
        hidden_size: int = 256,
        depth: int = 6,
        num_heads: int = 4,
        patch_size: int = 4,
        tubelet: int = 2,
        mlp_ratio: float = 4.0,
        cross_attention: bool = True,
        positions: str = "input",
        alignment: str = "none",
        frame_context: bool = False,
        guidance_embed: bool = False,
        languages: int = 0,
    ) -> None:
        super().__init__()
        if alignment not in ("none", "monotonic"):
            raise ValueError(f"alignment={alignment!r} is not one of ['none', 'monotonic']")
        check_frame_context(alignment, frame_context)
        if positions not in ("input", "dit"):
            raise ValueError(f"dit3d positions={positions!r} is not one of ['input', 'dit']")
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}"
            )
        self.config: dict[str, Any] = {
            "hidden_size": hidden_size, "depth": depth, "num_heads": num_heads,
            "patch_size": patch_size, "tubelet": tubelet, "mlp_ratio": mlp_ratio,
            "cross_attention": cross_attention, "positions": positions,
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
        self.in_channels = in_channels
        self.gradient_checkpointing = False
        cube = (tubelet, patch_size, patch_size)
        self.x_embed = nn.Conv3d(in_channels, hidden_size, cube, stride=cube)
        self.t_embed = TimestepEmbedding(hidden_size)
        self.y_embed = nn.Linear(text_dim, hidden_size)  # pooled text joins the timestep signal
        if guidance_embed:
            self.guidance_embed = GuidanceEmbedding(hidden_size)
        if languages:
            self.language_embed = LanguageEmbedding(languages, text_dim, hidden_size)
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, num_heads, text_dim, mlp_ratio, temporal=i % 2 == 1,
                     cross_attention=cross_attention, aligned=alignment == "monotonic")
            for i in range(depth)
        )
        if alignment == "monotonic":
            # Each tubelet frame's share of the text joins its conditioning (zeroed below).
            self.frame_text = nn.Linear(text_dim, hidden_size)
            self.frame_strength = nn.Parameter(torch.tensor(inverse_softplus(2.0)))
        if frame_context:  # phase in its token and the neighbours (last layer zeroed below)
            self.frame_context = nn.Sequential(
                nn.Linear(3 * text_dim + FRAME_CONTEXT_FEATURES, hidden_size), nn.SiLU(),
                nn.Linear(hidden_size, hidden_size))
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.proj_out = nn.Linear(hidden_size, tubelet * patch_size * patch_size * in_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """DiT initialisation: xavier linears, then zero adaLN and output (adaLN-Zero)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        w = self.x_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for mlp in (self.t_embed.mlp[0], self.t_embed.mlp[2]):
            nn.init.normal_(mlp.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
        for layer in (self.ada_out[-1], self.proj_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if self.config["alignment"] == "monotonic":
            nn.init.zeros_(self.frame_text.weight)
            nn.init.zeros_(self.frame_text.bias)
        if self.config.get("frame_context"):
            nn.init.zeros_(self.frame_context[-1].weight)
            nn.init.zeros_(self.frame_context[-1].bias)
        if self.config.get("guidance_embed"):  # the student starts as its teacher
            nn.init.zeros_(self.guidance_embed.mlp[-1].weight)
            nn.init.zeros_(self.guidance_embed.mlp[-1].bias)
        if self.config.get("languages"):  # starts as the model of one language it came from
            self.language_embed.zero_outputs()

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute block activations in backward: less memory, ~30% more compute."""
        self.gradient_checkpointing = bool(enabled)

    def check_input_size(self, frames: int, height: int, width: int) -> None:
        """Raise a ValueError unless the tubelet divides the frames and the patch the size."""
        cfg = self.config
        why = f"dit3d with patch_size={cfg['patch_size']}, tubelet={cfg['tubelet']}"
        check_multiple("height", height, cfg["patch_size"], why)
        check_multiple("width", width, cfg["patch_size"], why)
        check_multiple("frames", frames, cfg["tubelet"], why)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: TextEmbedding) -> torch.Tensor:
        b, c, frames, height, width = x.shape
        if c != self.in_channels:
            raise ValueError(f"input has {c} channels; this model was built for {self.in_channels}")
        self.check_input_size(frames, height, width)
        p, tub = self.config["patch_size"], self.config["tubelet"]
        nt, nh, nw = frames // tub, height // p, width // p
        d = self.config["hidden_size"]

        h = rearrange(self.x_embed(x), "b d t h w -> b t (h w) d")  # (B, T', H'*W', D)
        pos_t = sincos_1d(nt, d, x.device)[:, None]  # (T', 1, D)
        if self.config["positions"] == "dit":
            h = h + dit_sincos_2d(nh, nw, d, x.device).to(h.dtype)  # (B, T', H'*W', D)
            pos_block = pos_t
        else:
            h = h + (pos_t + sincos_2d(nh, nw, d, x.device)[None]).to(h.dtype)  # (B,T',H'W',D)
            pos_block = None
        c_emb = self.t_embed(t.expand(b) if t.ndim == 0 else t) + self.y_embed(text.pooled)
        if self.config.get("languages"):
            text, language = self.language_embed(text, b)  # language-aware letter tokens
            c_emb = c_emb + language
        if self.config.get("guidance_embed"):
            c_emb = c_emb + self.guidance_embed(guidance_of(text, b))
        if self.config["alignment"] == "monotonic":
            shares = frame_text(text.tokens, text.order, nt, self.frame_strength)  # (B, T', D)
            c_emb = c_emb[:, None] + self.frame_text(shares)  # (B, T', D)
        if self.config.get("frame_context"):
            c_emb = c_emb + self.frame_context(frame_context(text.tokens, text.order, nt))
        for block in self.blocks:
            h = checkpointed(block, h, c_emb, text.tokens, text.mask, pos_block, text.order,
                             enabled=self.gradient_checkpointing)
        if c_emb.ndim == 2:
            shift, scale = rearrange(self.ada_out(c_emb), "b (two d) -> two b 1 1 d", two=2)
        else:
            shift, scale = rearrange(self.ada_out(c_emb), "b t (two d) -> two b t 1 d", two=2)
        h = self.proj_out(modulate(self.norm_out(h), shift, scale))  # (B, T', H'*W', tub*p*p*C)
        return rearrange(
            h, "b t (h w) (tt p q c) -> b c (t tt) (h p) (w q)", h=nh, tt=tub, p=p, q=p
        )  # (B, C, T, H, W)
