"""The second reader: a per-frame 2D CNN, a temporal transformer, CTC and an attention decoder.

A score read by one network cannot tell a signing error from a reading error, and a generator
can drift toward what one network accepts. This reader shares nothing with the Conv3d + BiGRU
reader (`sequence.py`) but the task: each frame is encoded alone by a 2D CNN at 64 x 64 (finger
detail; no mixing across frames), a transformer encoder mixes the frames, and two heads read the
units: CTC per frame (Graves et al. 2006) and an autoregressive attention decoder, trained
jointly and decoded by rescoring both heads' greedy readings with the joint score (hybrid
CTC/attention, Watanabe et al. 2017), as the 2023 ASL Fingerspelling competition's leaders read.

Its augmentations attack the first reader's known failures: a time stretch and dropped frames
(pace), a clip cut by a frame at its start or end (a lost first letter), one finger colour
dropped (the renderer draws each finger in its own colour: a reading must not rest on one), and
two clips spliced into one text with a word boundary between them (phrases, and the spaces the
first reader inserts inside long words).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from text2sign.evaluation.metrics import join_units, text_units
from text2sign.evaluation.recognizer_base import (
    ClipSource,
    augment,
    frame_indices,
    length_tensor,
)
from text2sign.evaluation.sequence import SequenceRecognizer

FORMAT = "text2sign-transformer-reader"
WEIGHTS_NAME = "transformer.safetensors"
CONFIG_NAME = "transformer.json"
# The renderer's finger colours (data/fingerspelling.py FINGER_COLORS): colour dropout picks one.
FINGER_COLORS = ((255, 64, 64), (255, 204, 0), (64, 224, 64), (0, 200, 255), (208, 96, 255))


@dataclass
class TransformerReaderConfig:
    frames: int | None = None  # None: each clip read at its own length, one CTC step per frame
    size: int = 64  # frames are shrunk to size x size (clips are framed on the hands)
    width: int = 16  # channels of the CNN stem; x2, x4, x6 in the later stages
    dim: int = 160  # transformer width
    layers: int = 3  # encoder layers
    heads: int = 4
    decoder_layers: int = 2
    max_units: int = 64  # the longest text the attention decoder writes
    units: str = "chars"  # "chars" (spelled texts) or "glosses" (whitespace-separated)


@dataclass
class TransformerReaderSettings:
    steps: int = 2000  # the shipped reader: 2,000 x 24 clips
    batch_size: int = 24
    lr: float = 1e-3
    weight_decay: float = 0.05
    ctc_weight: float = 0.5  # loss = w * CTC + (1 - w) * attention cross-entropy
    stretch: float = 0.2  # a batch's clips are stretched to 1 +- this of their length
    frame_drop: float = 0.1  # chance a frame is replaced by the one before it
    edge_cut: float = 0.3  # chance a clip loses a frame at its start or end
    colour_drop: float = 0.3  # chance a clip loses the pixels of one finger colour
    splice: float = 0.15  # chance a clip is two clips joined, their texts joined by a space
    time_jitter: float = 0.0  # kept for the shared training loop (pace is `stretch` here)
    seed: int = 0


def sinusoid(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(length, dim) sinusoidal positions (Vaswani et al. 2017, sec. 3.5): any clip length."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]  # (L, 1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))  # (dim / 2,)
    out = torch.zeros(length, dim, device=device)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return out


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.GroupNorm(8, cout), nn.SiLU())


class TransformerReaderNet(nn.Module):
    """Frame CNN (shared over time) -> transformer encoder -> CTC head; attention decoder."""

    def __init__(self, vocab_size: int, config: TransformerReaderConfig):
        super().__init__()
        w, d = config.width, config.dim
        self.cnn = nn.Sequential(  # (64 -> 32 -> 16 -> 8 -> 4) for size 64
            _conv(3, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 1),
            _conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w, 1), _conv(4 * w, 6 * w, 2))
        side = math.ceil(config.size / 16)
        self.frame_proj = nn.Linear(6 * w * side * side, d)  # keeps where in the frame
        self.local = nn.Conv1d(d, d, 3, padding=1, groups=d)  # neighbouring frames, cheaply
        layer = nn.TransformerEncoderLayer(d, config.heads, 2 * d, dropout=0.1,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.ctc_head = nn.Linear(d, vocab_size + 1)  # index 0 is the CTC blank
        # Decoder tokens: 0 end of text, 1..V units, V + 1 start.
        self.embed = nn.Embedding(vocab_size + 2, d)
        self.positions = nn.Embedding(config.max_units + 2, d)
        dec = nn.TransformerDecoderLayer(d, config.heads, 2 * d, dropout=0.1, batch_first=True,
                                         norm_first=True)
        self.decoder = nn.TransformerDecoder(dec, config.decoder_layers)
        self.dec_norm = nn.LayerNorm(d)
        self.dec_head = nn.Linear(d, vocab_size + 1)  # end of text + units
        self.vocab_size = vocab_size

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, S, S) in [-1, 1] -> frame features (B, T, dim)."""
        b, t = x.shape[0], x.shape[2]
        frames = x.transpose(1, 2).reshape(b * t, *x.shape[1:2], *x.shape[3:])  # (B*T, 3, S, S)
        h = self.frame_proj(self.cnn(frames).flatten(1)).reshape(b, t, -1)  # (B, T, dim)
        h = h + self.local(h.transpose(1, 2)).transpose(1, 2)  # (B, T, dim)
        h = h + sinusoid(t, h.shape[-1], h.device)[None]
        return self.norm(self.encoder(h))  # (B, T, dim)

    def ctc(self, memory: torch.Tensor) -> torch.Tensor:
        """Frame features (B, T, dim) -> CTC log-probabilities (B, T, V + 1)."""
        return self.ctc_head(memory).float().log_softmax(-1)

    def decode_logits(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoder: tokens (B, L) starting with the start token -> logits
        (B, L, V + 1) of the next token at every position."""
        length = tokens.shape[1]
        pos = torch.arange(length, device=tokens.device)
        h = self.embed(tokens) + self.positions(pos)[None]  # (B, L, dim)
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        h = self.decoder(h, memory, tgt_mask=causal, tgt_is_causal=True)
        return self.dec_head(self.dec_norm(h)).float()  # (B, L, V + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, S, S) -> CTC log-probabilities (B, T, V + 1)."""
        return self.ctc(self.encode(x))


def drop_colour(clips: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, S, S, 3) with the pixels of finger colour ``which[b]`` blacked out in clip b
    (-1: none): pixels whose colour points the same way as that colour, and are not dark."""
    colours = torch.tensor(FINGER_COLORS, dtype=torch.float32)  # (5, 3)
    out = clips.clone()
    for b in torch.nonzero(which >= 0).flatten().tolist():
        px = clips[b].float()  # (T, S, S, 3)
        ref = colours[int(which[b])]
        cos = (px * ref).sum(-1) / (px.norm(dim=-1) * ref.norm() + 1e-6)  # (T, S, S)
        out[b][(cos > 0.97) & (px.amax(-1) > 40)] = 0
    return out


class TransformerReader(SequenceRecognizer):
    """A trained TransformerReaderNet, its units and geometry: reads clips back into text."""

    kind = "transformer reader"
    weights_name = WEIGHTS_NAME
    config_name = CONFIG_NAME
    how_to_train = "train one with `text2sign reader train`"
    config_class = TransformerReaderConfig
    settings_class = TransformerReaderSettings
    net_class = TransformerReaderNet
    max_grad_norm = 1.0
    cache_prefix = "reader-transformer"

    def meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "vocab": self.vocab, **self.language_meta()}

    @classmethod
    def check_meta(cls, meta: dict[str, Any], path) -> None:
        if meta.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a {FORMAT} file")

    @property
    def ctc_weight(self) -> float:
        return float(self.settings.get("ctc_weight", 0.5))

    def _tokens(self, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder input (start + units) and target (units + end) ids, (B, L + 1) each, of unit
        id lists; the target padded with -100."""
        ids = [list(i)[:self.config.max_units] for i in ids]
        length = max(len(i) for i in ids) + 1
        start = self.net.vocab_size + 1
        inp = torch.full((len(ids), length), 0, dtype=torch.long)
        tgt = torch.full((len(ids), length), -100, dtype=torch.long)
        for row, units in enumerate(ids):
            inp[row, :len(units) + 1] = torch.tensor([start, *units])
            tgt[row, :len(units) + 1] = torch.tensor([*units, 0])
        return inp, tgt

    def loss(self, x: torch.Tensor, targets: list[str]) -> torch.Tensor:
        """w * CTC + (1 - w) * the decoder's cross-entropy (label smoothing 0.1)."""
        memory = self.net.encode(x)  # (B, T, dim)
        ids, lengths = self.encode_targets(targets)
        log_probs = self.net.ctc(memory).transpose(0, 1)  # (T, B, V + 1)
        input_lengths = torch.full((len(targets),), x.shape[2], dtype=torch.long)
        ctc = F.ctc_loss(log_probs, ids.to(x.device), input_lengths, lengths, zero_infinity=True)
        inp, tgt = self._tokens([self.unit_ids(t) for t in targets])
        logits = self.net.decode_logits(memory, inp.to(x.device))  # (B, L, V + 1)
        att = F.cross_entropy(logits.flatten(0, 1), tgt.to(x.device).flatten(),
                              ignore_index=-100, label_smoothing=0.1)
        w = self.ctc_weight
        return w * ctc + (1.0 - w) * att

    def _attention_greedy(self, memory: torch.Tensor, allowed: torch.Tensor | None = None
                          ) -> list[list[int]]:
        """The decoder's greedy readings (unit ids 1..V), at most max_units each, of the
        ``allowed`` tokens (B, V + 1: end of text at 0, as the CTC blank) when given."""
        b = memory.shape[0]
        tokens = torch.full((b, 1), self.net.vocab_size + 1, dtype=torch.long,
                            device=memory.device)
        done = torch.zeros(b, dtype=torch.bool, device=memory.device)
        for _ in range(self.config.max_units):
            logits = self.net.decode_logits(memory, tokens)[:, -1]  # (B, V + 1)
            if allowed is not None:
                logits = logits.masked_fill(~allowed.to(logits.device), -torch.inf)
            nxt = logits.argmax(-1)  # (B,)
            nxt = torch.where(done, torch.zeros_like(nxt), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], 1)
            done |= nxt == 0
            if bool(done.all()):
                break
        out = []
        for row in tokens[:, 1:].tolist():
            out.append(row[:row.index(0)] if 0 in row else row)
        return out

    def _joint_scores(self, memory: torch.Tensor, log_probs: torch.Tensor,
                      candidates: list[list[int]]) -> torch.Tensor:
        """w * log P_ctc(y) + (1 - w) * log P_att(y) of one candidate per clip (B,)."""
        b, t = log_probs.shape[:2]
        targets = torch.tensor([u for c in candidates for u in c], dtype=torch.long)
        lengths = torch.tensor([len(c) for c in candidates], dtype=torch.long)
        ctc = -F.ctc_loss(log_probs.transpose(0, 1), targets, torch.full((b,), t), lengths,
                          reduction="none", zero_infinity=False)  # (B,)
        ctc = torch.nan_to_num(ctc, neginf=-1e4)  # more units than frames: no alignment
        inp, tgt = self._tokens(candidates)
        logits = self.net.decode_logits(memory, inp.to(memory.device)).log_softmax(-1).cpu()
        picked = logits.gather(-1, tgt.clamp(min=0)[..., None])[..., 0]  # (B, L)
        att = (picked * (tgt >= 0)).sum(-1)  # (B,)
        w = self.ctc_weight
        return w * ctc + (1.0 - w) * att

    def read_batch(self, x: torch.Tensor, allowed: torch.Tensor | None = None
                   ) -> list[tuple[str, float]]:
        """Joint CTC/attention reading of a batch (B, 3, T, S, S): the better-scored of the two
        heads' greedy readings, each head kept to the ``allowed`` outputs (B, V + 1) when given;
        confidence as the CTC reader's (mean best-unit probability)."""
        memory = self.net.encode(x)  # (B, T, dim)
        log_probs = self.net.ctc(memory)  # (B, T, V + 1)
        # the joint scores keep the whole distribution: both candidates are of allowed units
        shown = (log_probs if allowed is None
                 else log_probs.masked_fill(~allowed.to(log_probs.device)[:, None], -torch.inf))
        best = shown.argmax(-1).cpu().tolist()  # (B, T)
        ctc_hyp = []
        for row in best:
            units, prev = [], 0
            for k in row:
                if k != prev and k != 0:
                    units.append(k)
                prev = k
            ctc_hyp.append(units)
        att_hyp = self._attention_greedy(memory, allowed)
        lp = log_probs.cpu()
        s_ctc = self._joint_scores(memory, lp, ctc_hyp)
        s_att = self._joint_scores(memory, lp, att_hyp)
        conf = shown.max(-1).values.exp().mean(-1).cpu().tolist()  # (B,)
        out = []
        for a, c, sa, sc, p in zip(att_hyp, ctc_hyp, s_att.tolist(), s_ctc.tolist(), conf,
                                   strict=True):
            units = a if sa > sc else c
            out.append((join_units([self.vocab[k - 1] for k in units], self.units), float(p)))
        return out

    def sample_batch(self, clips: ClipSource | torch.Tensor, targets: Sequence[str],
                     batch_size: int, generator: torch.Generator, time_jitter: float
                     ) -> tuple[list[str], torch.Tensor]:
        """A batch of one length: clips near an anchor's length, some of them two clips spliced
        (texts joined by a space), each cut, warped and stretched to the batch's length, one
        finger colour dropped in some, then the shared shift/scale/contrast jitter."""
        s = self.settings_obj
        lengths = length_tensor(clips)  # (N,)

        def rand() -> float:
            return float(torch.rand((), generator=generator))

        anchor = int(torch.randint(len(clips), (1,), generator=generator))
        t = int(lengths[anchor])
        near = torch.nonzero((lengths - t).abs() <= 0.1 * t).flatten()  # (M,)
        splice_ok = " " in self.index or self.units == "glosses"
        out_len = max(1, round(t * (1.0 + s.stretch * (2 * rand() - 1))))
        frames, texts = [], []
        for _ in range(batch_size):
            i = int(near[int(torch.randint(len(near), (1,), generator=generator))])
            clip, text = clips[i], targets[i]
            if splice_ok and rand() < s.splice and t >= 4:
                shorter = torch.nonzero(lengths <= t // 2).flatten()
                if len(shorter):
                    a = int(shorter[int(torch.randint(len(shorter), (1,), generator=generator))])
                    rest = t - int(lengths[a])
                    fits = torch.nonzero((lengths - rest).abs() <= 0.2 * rest).flatten()
                    if len(fits):
                        b = int(fits[int(torch.randint(len(fits), (1,), generator=generator))])
                        clip = torch.cat([clips[a], clips[b]])  # (T_a + T_b, S, S, 3)
                        text = self.splice_text(targets[a], targets[b])
            if rand() < s.edge_cut and len(clip) > 2:
                clip = clip[1:] if rand() < 0.5 else clip[:-1]
            idx = frame_indices(len(clip), out_len)  # (out_len,)
            drop = torch.rand(out_len, generator=generator) < s.frame_drop
            drop[0] = False
            for k in torch.nonzero(drop).flatten().tolist():
                idx[k] = idx[k - 1]
            frames.append(clip[idx])
            texts.append(text)
        chosen = torch.stack(frames)  # (B, out_len, S, S, 3)
        which = torch.randint(len(FINGER_COLORS), (batch_size,), generator=generator)
        which[torch.rand(batch_size, generator=generator) >= s.colour_drop] = -1
        chosen = drop_colour(chosen, which)
        return texts, augment(chosen, out_len, generator, time_jitter=0.0)

    def splice_text(self, a: str | Sequence[str], b: str | Sequence[str]) -> str | tuple[str, ...]:
        """Two texts as one phrase: joined by a space (texts), or by the space unit (units
        already split: chars; glosses follow each other)."""
        if isinstance(a, str) and isinstance(b, str):
            return f"{a} {b}"
        a = tuple(text_units(a, self.units)) if isinstance(a, str) else tuple(a)
        b = tuple(text_units(b, self.units)) if isinstance(b, str) else tuple(b)
        return (*a, " ", *b) if self.units == "chars" else (*a, *b)

    @property
    def settings_obj(self) -> TransformerReaderSettings:
        known = TransformerReaderSettings.__dataclass_fields__
        return TransformerReaderSettings(**{k: v for k, v in self.settings.items()
                                            if k in known})
