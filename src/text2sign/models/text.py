"""Text encoders behind one interface: texts in, TextEmbedding (tokens, mask, pooled) out."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TextEmbedding:
    tokens: torch.Tensor  # (B, L, D)
    mask: torch.Tensor  # (B, L) bool, True where a token is real
    pooled: torch.Tensor  # (B, D)

    def __len__(self) -> int:
        return self.tokens.shape[0]
