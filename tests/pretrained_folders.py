"""Random-weight pretrained files made in code: a Stable-Diffusion-layout folder (vae/, unet/,
text_encoder/, tokenizer/) and a facebookresearch DiT checkpoint with the image DiT it comes from.

Shared by tests/test_pretrained.py (tiny sizes) and benchmarks/pretrained_finetune.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-level BPE alphabet: every byte as a printable character."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def write_clip_text(root: Path, width: int, layers: int = 1, seed: int = 0) -> None:
    """root/text_encoder (CLIPTextModel) + root/tokenizer (CLIP BPE over bytes, no merges)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    raw = root / "raw-tokenizer"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt")).save_pretrained(
        root / "tokenizer")
    torch.manual_seed(seed)
    model = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width,
        num_hidden_layers=layers, num_attention_heads=2, max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"]))
    model.save_pretrained(root / "text_encoder")


def write_vae(folder: Path, widths: tuple[int, ...] = (8, 8), seed: int = 0) -> None:
    """An AutoencoderKL, 4 latent channels, factor 2**(len(widths)-1), scaling factor 0.5."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * len(widths),
                        up_block_types=("UpDecoderBlock2D",) * len(widths),
                        block_out_channels=widths, layers_per_block=1,
                        norm_num_groups=min(widths), scaling_factor=0.5)
    vae.save_pretrained(folder)


def write_unet(folder: Path, widths: tuple[int, ...] = (16, 32), cross: int = 32,
               in_channels: int = 4, layers: int = 1, head_dim: int = 8, groups: int = 8,
               seed: int = 0, sd2: bool = False) -> None:
    """An SD-style UNet2DConditionModel: cross-attention down blocks, a plain last level;
    ``sd2``: SD 2.x's linear projections and a head count per level."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    levels = len(widths)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=in_channels, out_channels=in_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        block_out_channels=widths, layers_per_block=layers, cross_attention_dim=cross,
        attention_head_dim=tuple(w // head_dim for w in widths) if sd2 else head_dim,
        use_linear_projection=sd2, norm_num_groups=groups)
    with torch.no_grad():  # diffusers zero-inits nothing here, but make every weight count
        unet.conv_out.weight.normal_(0, 0.05)
    unet.save_pretrained(folder)


def write_sd_folder(root: Path, *, text_width: int = 32, unet_widths=(16, 32), vae_widths=(8, 8),
                    text_layers: int = 1, seed: int = 0) -> Path:
    """A Stable-Diffusion-layout pipeline folder with random weights."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    write_vae(root / "vae", vae_widths, seed)
    write_unet(root / "unet", unet_widths, cross=text_width, seed=seed)
    write_clip_text(root, text_width, text_layers, seed)
    return root


# ----------------------------------------------------------------------------- image DiT


def _dit_pos_embed(dim: int, grid: int) -> np.ndarray:
    """facebookresearch/DiT get_2d_sincos_pos_embed, as written there (numpy, fp64)."""
    def one(d: int, pos: np.ndarray) -> np.ndarray:
        omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
        omega = 1.0 / 10000 ** omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid, dtype=np.float32)
    grid_w = np.arange(grid, dtype=np.float32)
    mesh = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid, grid])
    return np.concatenate([one(dim // 2, mesh[0]), one(dim // 2, mesh[1])], axis=1)


def _modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class _Attention(nn.Module):  # timm's Attention with qkv_bias
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):  # timm's Mlp with tanh GELU
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.act = nn.GELU("tanh")

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.adaLN_modulation(c).chunk(6, dim=1))
        x = x + gate_msa.unsqueeze(1) * self.attn(_modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(_modulate(self.norm2(x), shift_mlp,
                                                              scale_mlp))


class ImageDiT(nn.Module):
    """facebookresearch/DiT models.py ``DiT`` (class-conditional, learn_sigma), same key names."""

    def __init__(self, input_size: int = 8, patch_size: int = 2, in_channels: int = 4,
                 hidden_size: int = 64, depth: int = 2, num_heads: int = 4,
                 mlp_ratio: float = 4.0, num_classes: int = 10, learn_sigma: bool = True):
        super().__init__()
        self.in_channels, self.p = in_channels, patch_size
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.num_classes = num_classes
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = nn.Sequential(nn.Linear(256, hidden_size), nn.SiLU(),
                                            nn.Linear(hidden_size, hidden_size))
        self.y_embedder = nn.Module()
        self.y_embedder.embedding_table = nn.Embedding(num_classes + 1, hidden_size)
        grid = input_size // patch_size
        self.pos_embed = nn.Parameter(
            torch.from_numpy(_dit_pos_embed(hidden_size, grid)).float()[None], requires_grad=False)
        self.blocks = nn.ModuleList(_Block(hidden_size, num_heads, mlp_ratio)
                                    for _ in range(depth))
        self.final_layer = nn.Module()
        self.final_layer.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.final_layer.linear = nn.Linear(hidden_size, patch_size ** 2 * self.out_channels)
        self.final_layer.adaLN_modulation = nn.Sequential(nn.SiLU(),
                                                          nn.Linear(hidden_size, 2 * hidden_size))

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32)
                          / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, x, t, y):
        n = x.shape[0]
        x = self.x_embedder.proj(x).flatten(2).transpose(1, 2) + self.pos_embed  # (N, T, D)
        c = self.t_embedder.mlp(self.timestep_embedding(t, 256))
        c = c + self.y_embedder.embedding_table(y)
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_layer.adaLN_modulation(c).chunk(2, dim=1)
        x = self.final_layer.linear(_modulate(self.final_layer.norm_final(x), shift, scale))
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(n, h, w, self.p, self.p, self.out_channels)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(n, self.out_channels, h * self.p, h * self.p)


def random_image_dit(seed: int = 0, **kwargs) -> ImageDiT:
    """An ImageDiT whose every trainable weight is random (DiT's own init zeroes adaLN)."""
    torch.manual_seed(seed)
    model = ImageDiT(**kwargs)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    return model.eval()
