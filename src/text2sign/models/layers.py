"""Blocks shared by the denoisers: attention, feed-forward, timestep and position embeddings."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import nn


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= `groups` that divides `channels` (toy widths)."""
    return nn.GroupNorm(math.gcd(channels, groups), channels, eps=1e-6)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters so a residual branch or output starts as the identity/zero."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000.0
                         ) -> torch.Tensor:
    """Transformer sin/cos features of (N,) positions -> (N, dim), in fp32 for precision.

    Vaswani et al. 2017; the timestep variant of Ho et al. 2020 / Dhariwal & Nichol 2021.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=positions.device)
        / half
    )
    args = positions.float()[:, None] * freqs[None]  # (N, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, 2*half)
    if dim % 2:
        emb = F.pad(emb, (0, 1))  # (N, dim)
    return emb


def sincos_1d(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed positions 0..length-1 -> (length, dim); computed on the fly so any length works."""
    return sinusoidal_embedding(torch.arange(length, device=device), dim)


def sincos_2d(height: int, width: int, dim: int, device: torch.device | None = None
              ) -> torch.Tensor:
    """2D sin/cos grid embedding (H*W, dim): half the channels for rows, half for columns (MAE)."""
    rows = sincos_1d(height, dim // 2, device)  # (H, dim/2)
    cols = sincos_1d(width, dim - dim // 2, device)  # (W, dim - dim/2)
    grid = torch.cat(
        [rows[:, None].expand(-1, width, -1), cols[None].expand(height, -1, -1)], dim=-1
    )  # (H, W, dim)
    return rearrange(grid, "h w d -> (h w) d")  # (H*W, dim)


class TimestepEmbedding(nn.Module):
    """Diffusion timestep t (B,) -> (B, out_dim): fp32 sinusoidal features, then an MLP."""

    def __init__(self, out_dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(
            nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freqs = sinusoidal_embedding(t, self.freq_dim)  # (B, freq_dim) fp32
        return self.mlp(freqs.to(self.mlp[0].weight.dtype))  # (B, out_dim)


class GuidanceEmbedding(nn.Module):
    """Guidance scale w (B,) -> (B, out_dim), added to the timestep signal of a student with
    guidance folded in (Meng et al. 2023, sec. 4.1; LCM's w-embedding, Luo et al. 2023, sec. 4.3).
    Its last layer starts at zero, so a fresh student is exactly its teacher."""

    def __init__(self, out_dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(
            nn.Linear(freq_dim, out_dim), nn.SiLU(), zero_module(nn.Linear(out_dim, out_dim))
        )

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        freqs = sinusoidal_embedding(w * 1000.0, self.freq_dim)  # (B, freq_dim) fp32, as LCM
        return self.mlp(freqs.to(self.mlp[0].weight.dtype))  # (B, out_dim)


class LanguageEmbedding(nn.Module):
    """A learned vector per sign language, in the condition beside the timestep, never in the
    text (a prefix tag would shift every letter's place in time). It joins the timestep signal
    and each text token through a small per-token MLP, so a letter's token becomes that
    language's sign of the letter. Both outputs start at zero: a model fine-tuned with
    languages starts exactly as the one-language model it came from."""

    def __init__(self, languages: int, text_dim: int, emb_dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(languages, text_dim)
        nn.init.normal_(self.table.weight, std=1.0)
        self.token_in = nn.Linear(text_dim, text_dim)
        self.token_out = zero_module(nn.Linear(text_dim, text_dim))
        self.to_emb = zero_module(nn.Linear(text_dim, emb_dim))

    def zero_outputs(self) -> None:
        for layer in (self.token_out, self.to_emb):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, text: Any, batch: int) -> tuple[Any, torch.Tensor]:
        """(text with language-aware tokens, (B, emb_dim) for the timestep signal)."""
        if text.language is None:
            raise ValueError("this denoiser signs several languages and needs each text's "
                             "language; encode texts with the model's conditioner (languages=)")
        ids = text.language.expand(batch) if text.language.ndim == 0 else text.language
        lang = self.table(ids).to(text.tokens.dtype)  # (B, D)
        hidden = F.silu(self.token_in(text.tokens) + lang[:, None])  # (B, L, D)
        tokens = text.tokens + self.token_out(hidden) * text.mask[..., None].to(hidden.dtype)
        return replace(text, tokens=tokens), self.to_emb(F.silu(lang))  # (B, emb_dim)


def guidance_of(text: Any, batch: int) -> torch.Tensor:
    """The (B,) guidance scales a guidance-folded student reads from its conditioning."""
    if text.guidance is None:
        raise ValueError("this denoiser has guidance folded in (a distilled student) and needs a "
                         "guidance scale: sample it with sampler 'lcm'")
    return text.guidance.expand(batch) if text.guidance.ndim == 0 else text.guidance


class Attention(nn.Module):
    """Multi-head self- or cross-attention over (N, L, dim) with an optional key padding mask.

    `context=None` is self-attention; `mask` (N, S) bool is True where a key is real. Runs through
    F.scaled_dot_product_attention, so flash / memory-efficient kernels apply where available.
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None,
                 qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(
                f"attention width {dim} is not divisible by heads={heads}; choose a head count "
                "(or head_dim) that divides the channel width"
            )
        self.heads = heads
        context_dim = dim if context_dim is None else context_dim
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_kv = nn.Linear(context_dim, 2 * dim, bias=qkv_bias)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, bias: torch.Tensor | None = None
                ) -> torch.Tensor:
        """``bias`` (N or 1, heads or 1, L, S) is added to the attention logits."""
        context = x if context is None else context
        q = rearrange(self.to_q(x), "n l (h d) -> n h l d", h=self.heads)  # (N, heads, L, d)
        k, v = rearrange(
            self.to_kv(context), "n s (two h d) -> two n h s d", two=2, h=self.heads
        )  # 2 x (N, heads, S, d)
        attn_mask = None
        empty = None
        if mask is not None:
            # A row with no real key would softmax over nothing (NaN): let it attend to all
            # keys, then zero its output, so "no text" contributes exactly nothing.
            empty = ~mask.any(dim=-1)  # (N,)
            attn_mask = (mask | empty[:, None])[:, None, None, :]  # (N, 1, 1, S)
        if bias is not None:
            bias = bias.to(q.dtype)
            attn_mask = bias if attn_mask is None else bias.masked_fill(~attn_mask, -torch.inf)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (N, heads, L, d)
        out = self.to_out(rearrange(out, "n h l d -> n l (h d)"))  # (N, L, dim)
        if empty is not None:
            out = out.masked_fill(empty[:, None, None], 0.0)
        return out


def frame_positions(order: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, pos): each text's content-token count (B,) and each frame's centre in token units,
    (t + 0.5) n / T, (B, T)."""
    n = order.amax(dim=1).clamp(min=1).to(torch.float32)  # (B,)
    centres = (torch.arange(frames, device=order.device, dtype=torch.float32) + 0.5) / frames
    return n, centres[None] * n[:, None]


def alignment_distance(order: torch.Tensor, frames: int) -> torch.Tensor:
    """How far each frame sits from each content token, in token units: (B, L) order -> (B, T, L).

    A text of n content tokens shares the clip evenly, token i (1..n) covering frames
    [(i-1)T/n, iT/n); frame t is taken at its centre, (t + 0.5) n / T in token units, and token
    i's centre is i - 0.5. Non-content tokens (order 0) get distance 0, so a bias of the form
    -s d^2 leaves them (CLS, padding, the null condition) unbiased.
    """
    _, pos = frame_positions(order, frames)  # (B, T)
    d = pos[:, :, None] - (order[:, None, :].to(torch.float32) - 0.5)  # (B, T, L)
    return d * (order > 0)[:, None, :]  # (B, T, L)


def inverse_softplus(value: float) -> float:
    return math.log(math.expm1(value))


class MonotonicAlignment(nn.Module):
    """A learned prior that text order is time order: logits bias -s_h d^2 per head h.

    ``d`` is :func:`alignment_distance`; ``s_h = softplus(p_h)`` is learned per head. Head 0
    starts near 0 (free to stay global), the others at ``strength``. Non-content tokens (CLS,
    specials, padding) and texts without order (the null condition) get no bias.
    """

    def __init__(self, heads: int, strength: float = 2.0, free_heads: int = 1) -> None:
        super().__init__()
        init = torch.full((heads,), inverse_softplus(strength))
        init[: min(free_heads, heads - 1)] = inverse_softplus(1e-3)
        self.strength = nn.Parameter(init)  # (heads,) before softplus

    def forward(self, order: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, L) order -> (B, heads, T, L) additive logit bias."""
        d2 = alignment_distance(order, frames).square()  # (B, T, L)
        s = F.softplus(self.strength.float())  # (heads,)
        return -s[None, :, None, None] * d2[:, None]  # (B, heads, T, L)


def frame_text(tokens: torch.Tensor, order: torch.Tensor, frames: int,
               strength: torch.Tensor) -> torch.Tensor:
    """Each frame's share of the text: the content tokens averaged with weights
    softmax(-s d^2) (a soft length regulator, as FastSpeech's). (B, L, D) -> (B, T, D); rows
    of texts without content tokens (the null condition) are zero."""
    content = order > 0  # (B, L)
    logits = -F.softplus(strength.float()) * alignment_distance(order, frames).square()
    logits = logits.masked_fill(~content[:, None, :], -torch.inf)  # (B, T, L)
    has = content.any(dim=1)  # (B,)
    logits = torch.where(has[:, None, None], logits, torch.zeros_like(logits))
    weights = logits.softmax(dim=-1) * has[:, None, None]  # (B, T, L)
    return weights.to(tokens.dtype) @ tokens  # (B, T, D)


def check_frame_context(alignment: str, frame_context: bool) -> None:
    if frame_context and alignment != "monotonic":
        raise ValueError(f"frame_context=True needs alignment='monotonic' (got {alignment!r}): "
                         "the context is each frame's place in the text's even shares; set "
                         "model.params.frame_context=false too")


FRAME_CONTEXT_FEATURES = 6  # within-token phase (sin/cos at 1 and 2 cycles), has prev / next


def frame_context(tokens: torch.Tensor, order: torch.Tensor, frames: int) -> torch.Tensor:
    """Where each frame sits in the text: (B, L, D) tokens -> (B, T, 3D + 6).

    With the even shares of :func:`alignment_distance`, frame t is inside content token
    c = floor((t + 0.5) n / T) + 1 at phase frac((t + 0.5) n / T). Per frame: the previous, own
    and next content token (zeros past the text's ends), sin/cos of the phase at one and two
    cycles, and flags for "a token before" / "a token after". A doubled letter ("ll") has the
    same own token on both sides of its boundary; the phase and the neighbours tell the frames
    apart, so the hand can leave and come back where the real clips do. Texts without content
    tokens (the null condition) get zeros.
    """
    content = order > 0  # (B, L)
    has = content.any(dim=1)  # (B,)
    n, pos = frame_positions(order, frames)  # (B,), (B, T) in token units
    own = pos.floor() + 1  # (B, T), 1..n
    phase = 2 * math.pi * (pos - pos.floor())  # (B, T)

    def pick(index: torch.Tensor) -> torch.Tensor:  # (B, T) token order -> (B, T, D)
        hit = (order[:, None, :] == index[:, :, None].long()) & content[:, None, :]  # (B,T,L)
        hit = hit.to(tokens.dtype)  # a letter of several tokens (bytes) is their mean
        return (hit / hit.sum(-1, keepdim=True).clamp(min=1)) @ tokens

    feats = torch.stack([phase.sin(), phase.cos(), (2 * phase).sin(), (2 * phase).cos(),
                         (own > 1).float(), (own < n[:, None]).float()], dim=-1)  # (B, T, 6)
    feats = feats * has[:, None, None]
    return torch.cat([pick(own - 1), pick(own), pick(own + 1), feats.to(tokens.dtype)], dim=-1)


class FeedForward(nn.Module):
    """Position-wise MLP (GELU), the transformer's per-token compute."""

    def __init__(self, dim: int, mult: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mult)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation x * (1 + scale) + shift (Peebles & Xie 2023, sec. 3.2)."""
    return x * (1 + scale) + shift


def checkpointed(module: nn.Module, *args: torch.Tensor | None, enabled: bool) -> torch.Tensor:
    """Run `module(*args)`, recomputing activations in backward when `enabled` (saves memory)."""
    if enabled and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(module, *args, use_reentrant=False)
    return module(*args)


def unmasked_tokens(model: nn.Module, x: torch.Tensor, text) -> torch.Tensor:
    """For diffusers UNets, which take no text mask: check the (B, C, T, H, W) input against the
    model, then return the text tokens (B, L, D) with padding zeroed (zero keys and values, so
    padding adds no content, though it still takes a share of the softmax)."""
    b, c, frames, height, width = x.shape
    if c != model.in_channels:
        raise ValueError(f"input has {c} channels; this model was built for {model.in_channels}")
    model.check_input_size(frames, height, width)
    return text.tokens * text.mask[..., None].to(text.tokens.dtype)  # (B, L, D), pads = 0


def check_multiple(name: str, value: int, multiple: int, why: str) -> None:
    """Raise a ValueError naming the value and the allowed multiple when they do not fit."""
    if value < 1 or value % multiple:
        raise ValueError(
            f"{name}={value} is not a positive multiple of {multiple} ({why}); "
            f"use {name} in {{{multiple}, {2 * multiple}, {3 * multiple}, ...}} or change the "
            "model's down/patch factors"
        )
