"""Text encoders behind one interface: texts in, TextEmbedding (tokens, mask, pooled) out."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from text2sign.core.hub import is_hub_id, offline
from text2sign.core.units import DEFAULT_LANGUAGE, fold, join, split

logger = logging.getLogger(__name__)


@dataclass
class TextEmbedding:
    tokens: torch.Tensor  # (B, L, D)
    mask: torch.Tensor  # (B, L) bool, True where a token is real
    pooled: torch.Tensor  # (B, D)
    # (B, L) long: k for the k-th token of the text's content (1..n, in reading order), 0 for
    # CLS, special tokens, padding and the null condition. Aligned conditioning maps content
    # order onto time order; None (or all zeros) means "no order": nothing is aligned.
    order: torch.Tensor | None = None
    # (B,) float: the guidance scale a student with guidance folded in reads (None otherwise)
    guidance: torch.Tensor | None = None
    # (B,) long: each text's sign language, an index into the model's languages (None: a model
    # of one language). Never dropped for guidance: the null condition keeps its language.
    language: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.order is None:
            self.order = torch.zeros(self.mask.shape, dtype=torch.long, device=self.mask.device)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, *args: Any, **kwargs: Any) -> TextEmbedding:
        """Move tokens and pooled like ``Tensor.to``; mask and order only change device."""
        tokens = self.tokens.to(*args, **kwargs)
        guidance = self.guidance.to(tokens.device) if self.guidance is not None else None
        language = self.language.to(tokens.device) if self.language is not None else None
        return TextEmbedding(tokens, self.mask.to(tokens.device), self.pooled.to(*args, **kwargs),
                             self.order.to(tokens.device), guidance, language)


def content_order(content: torch.Tensor) -> torch.Tensor:
    """(B, L) bool "is a content token" -> (B, L) long 1..n along each row, 0 elsewhere."""
    return content.long().cumsum(1) * content.long()


def pad_to(emb: TextEmbedding, length: int) -> TextEmbedding:
    """Right-pad tokens to ``length`` with zeros that the mask marks as not real."""
    batch, current, dim = emb.tokens.shape
    if current == length:
        return emb
    assert current < length, (current, length)
    tokens = F.pad(emb.tokens, (0, 0, 0, length - current))  # (B, length, D)
    mask = F.pad(emb.mask, (0, length - current), value=False)  # (B, length)
    order = F.pad(emb.order, (0, length - current), value=0)  # (B, length)
    return TextEmbedding(tokens, mask, emb.pooled, order, emb.guidance, emb.language)


def pad_and_cat(embs: list[TextEmbedding]) -> TextEmbedding:
    """Concatenate embeddings along the batch, padding to a shared length (CFG batching)."""
    length = max(e.tokens.shape[1] for e in embs)
    padded = [pad_to(e, length) for e in embs]
    guided = [e.guidance is not None for e in embs]
    assert all(guided) or not any(guided), "guidance scales on some embeddings only"
    spoken = [e.language is not None for e in embs]
    assert all(spoken) or not any(spoken), "languages on some embeddings only"
    return TextEmbedding(
        torch.cat([e.tokens for e in padded]),  # (sum B, L, D)
        torch.cat([e.mask for e in padded]),  # (sum B, L)
        torch.cat([e.pooled for e in padded]),  # (sum B, D)
        torch.cat([e.order for e in padded]),  # (sum B, L)
        torch.cat([e.guidance for e in embs]) if all(guided) else None,  # (sum B,)
        torch.cat([e.language for e in embs]) if all(spoken) else None,  # (sum B,)
    )


class TextEncoder(nn.Module):
    """Interface: ``forward(texts) -> TextEmbedding``; ``build_text_encoder(**config)`` rebuilds
    it."""

    dim: int
    trainable: bool

    @property
    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def forward(self, texts: list[str]) -> TextEmbedding:
        raise NotImplementedError


class ByteTextEncoder(TextEncoder):
    """UTF-8 bytes + a CLS token through a small pre-LN transformer: no vocabulary, no download.

    Works for every language and spelling; pooled is the CLS output after a final LayerNorm.
    """

    CLS = 256
    PAD = 257

    def __init__(self, dim: int = 128, layers: int = 2, heads: int = 4, max_length: int = 32,
                 languages: int = 0):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"text dim={dim} must be divisible by heads={heads}")
        if max_length < 1:
            raise ValueError(f"text max_length={max_length} must be >= 1 byte")
        self.dim, self.layers, self.heads, self.max_length = dim, layers, heads, max_length
        self.trainable = True
        self.embed = nn.Embedding(258, dim, padding_idx=self.PAD)
        self.pos = nn.Parameter(torch.randn(1, max_length + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.truncated = 0  # texts cut to max_length bytes so far
        nn.init.normal_(self.embed.weight, std=0.02)
        self.languages = languages
        if languages:
            # Letters as units per language: each language's own byte embeddings, added to the
            # shared ones (zero: a model given languages starts as the one it came from).
            self.language_embed = nn.Parameter(torch.zeros(languages, 258, dim))

    @property
    def config(self) -> dict[str, Any]:
        return {"encoder": "bytes", "dim": self.dim, "layers": self.layers, "heads": self.heads,
                "max_length": self.max_length,
                **({"languages": self.languages} if self.languages else {})}

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Byte ids with CLS first, right-padded to the longest text (capped at max_length)."""
        if isinstance(texts, str):
            raise ValueError(f"texts must be a list of strings, got the string {texts!r}")
        rows = []
        for text in texts:
            data = text.encode("utf-8")
            if len(data) > self.max_length:
                if self.truncated == 0:
                    logger.warning(
                        "text of %d bytes truncated to max_length=%d bytes (%r...); raise "
                        "text.max_length to keep more (warned once per encoder)",
                        len(data), self.max_length, text[:40])
                self.truncated += 1
                data = data[: self.max_length]
            rows.append([self.CLS, *data])
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return ids, ids != self.PAD

    def forward(self, texts: list[str], languages: torch.Tensor | None = None) -> TextEmbedding:
        """``languages`` (B,) long: each text's language index (a model of several languages)."""
        device = self.pos.device
        ids, mask = self.tokenize(texts)
        ids, mask = ids.to(device), mask.to(device)  # (B, L), (B, L)
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]  # (B, L, D)
        if self.languages:
            if languages is None:
                raise ValueError("this text encoder spells several languages and needs each "
                                 "text's language")
            x = x + self.language_embed[languages.to(device)[:, None], ids]  # (B, L, D)
        x = self.blocks(x, src_key_padding_mask=~mask)  # (B, L, D)
        x = self.norm(x) * mask[..., None]  # (B, L, D), padding zeroed
        content = mask.clone()
        content[:, 0] = False  # CLS carries the whole text, not a place in it
        return TextEmbedding(tokens=x, mask=mask, pooled=x[:, 0], order=content_order(content))


_T5_TYPES = ("t5", "mt5", "umt5")
_CLIP_TYPES = ("clip", "clip_text_model")


def _model_and_tokenizer(path: str) -> tuple[str, str]:
    """Where the encoder and its tokenizer are: a diffusers pipeline folder (Stable Diffusion)
    keeps them in text_encoder/ and tokenizer/, so its text_encoder/ finds the sibling."""
    if os.path.isfile(os.path.join(path, "model_index.json")):
        return os.path.join(path, "text_encoder"), os.path.join(path, "tokenizer")
    sibling = os.path.join(os.path.dirname(os.path.abspath(path)), "tokenizer")
    has_own = any(os.path.isfile(os.path.join(path, f))
                  for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json"))
    if os.path.isdir(path) and not has_own and os.path.isdir(sibling):
        return path, sibling
    return path, path


class PretrainedTextEncoder(TextEncoder):
    """A frozen Hugging Face encoder (DistilBERT, BERT, MiniLM, CLIP text, T5) by name or folder.

    Tokens are the raw last hidden states (dim = hidden_size); pooled is CLIP's pooler_output,
    else the masked mean of the tokens.
    """

    def __init__(self, name_or_path: str, max_length: int = 64):
        super().__init__()
        # transformers takes seconds to import: only a pretrained text encoder needs it
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if not is_hub_id(name_or_path) and not os.path.isdir(os.path.expanduser(name_or_path)):
            raise FileNotFoundError(
                f"text encoder folder {name_or_path!r} does not exist; pass a folder saved "
                "with save_pretrained (config, tokenizer, weights) or a Hugging Face Hub id "
                "('owner/name', e.g. distilbert/distilbert-base-uncased)")
        name_or_path = os.path.expanduser(name_or_path)
        name_or_path, tokenizer_path = _model_and_tokenizer(name_or_path)
        # Without this, an unknown name spends ~20 s in hub retries before failing offline.
        kwargs = {"local_files_only": True} if offline() else {}
        try:
            model_config = AutoConfig.from_pretrained(name_or_path, **kwargs)
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, **kwargs)
            # each model class loads its own modeling code: import only the one this config needs
            if model_config.model_type in _CLIP_TYPES:
                from transformers import CLIPTextModel as model_cls
            elif model_config.model_type in _T5_TYPES:
                from transformers import T5EncoderModel as model_cls
            else:
                model_cls = AutoModel
            # safetensors only: a pytorch_model.bin is a pickle, and nothing is unpickled here.
            self.model = model_cls.from_pretrained(name_or_path, use_safetensors=True, **kwargs)
        except OSError as err:
            pickles = sorted(p for p in os.listdir(name_or_path) if p.endswith(".bin")
                             ) if os.path.isdir(name_or_path) else []
            if pickles:
                raise ValueError(
                    f"text encoder folder {name_or_path!r} holds {pickles[0]} and no "
                    "model.safetensors; text2sign loads no pickled weights: convert it once "
                    "with transformers (AutoModel.from_pretrained(folder).save_pretrained(folder,"
                    " safe_serialization=True)) in a Python you trust"
                ) from err
            raise ValueError(
                f"text encoder {name_or_path!r} is not available offline; pass the path of "
                "a local folder holding its config, tokenizer and weights "
                "(e.g. one saved with save_pretrained), or use text.encoder=bytes"
            ) from err
        self.name_or_path = name_or_path
        self.is_clip = model_config.model_type in _CLIP_TYPES
        # CLIP cannot go past its position table (77); other tokenizers cap themselves.
        limit = getattr(self.model.config, "max_position_embeddings", None)
        self.max_length = min(max_length, limit) if limit else max_length
        self.dim = int(self.model.config.hidden_size)
        self.trainable = False
        self.model.requires_grad_(False)
        self.model.eval()

    @property
    def config(self) -> dict[str, Any]:
        return {"encoder": self.name_or_path, "max_length": self.max_length}

    def train(self, mode: bool = True) -> PretrainedTextEncoder:
        """Frozen: stays in eval mode (no dropout) whatever the surrounding model does."""
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def forward(self, texts: list[str]) -> TextEmbedding:
        if isinstance(texts, str):
            raise ValueError(f"texts must be a list of strings, got the string {texts!r}")
        device = next(self.model.parameters()).device
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt",
                               return_special_tokens_mask=True)
        ids = batch["input_ids"].to(device)  # (B, L)
        mask = batch["attention_mask"].to(device).bool()  # (B, L)
        special = batch["special_tokens_mask"].to(device).bool()  # (B, L): CLS, SEP, EOS, pad
        out = self.model(input_ids=ids, attention_mask=mask.long())
        tokens = out.last_hidden_state * mask[..., None]  # (B, L, D), padding zeroed
        if self.is_clip:
            pooled = out.pooler_output  # (B, D)
        else:
            pooled = tokens.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)  # (B, D)
        return TextEmbedding(tokens=tokens, mask=mask, pooled=pooled,
                             order=content_order(mask & ~special))


def build_text_encoder(encoder: str = "bytes", *, dim: int = 128, layers: int = 2,
                       heads: int = 4, max_length: int = 32, languages: int = 0) -> TextEncoder:
    """``bytes`` -> ByteTextEncoder, anything else -> a frozen pretrained encoder by name/folder
    (whose width is its own: ``dim``, ``layers`` and ``heads`` shape the byte encoder only;
    ``languages`` > 1 gives the byte encoder each language's own letters)."""
    if encoder == "bytes":
        return ByteTextEncoder(dim, layers, heads, max_length, languages if languages > 1 else 0)
    return PretrainedTextEncoder(encoder, max_length)


class TextConditioner(nn.Module):
    """A text encoder plus the null condition for classifier-free guidance (Ho & Salimans 2022).

    ``forward`` replaces each text by the null condition with probability ``drop_prob``. A model
    of several sign languages has ``languages`` (codes): each text is folded the way its language
    does it and carries its language's index (`TextEmbedding.language`), which the null
    condition keeps. With a byte encoder, each letter's bytes share one place in the text's
    order (a Cyrillic letter is two bytes, Spanish LL two letters: each one sign, one share of
    the clip).
    """

    def __init__(self, encoder: TextEncoder, null_condition: str = "learned",
                 lowercase: bool = False, languages: list[str] | None = None):
        super().__init__()
        self.lowercase = lowercase  # fingerspelling has no case: "Hello" is spelled as "hello"
        self.encoder = encoder
        self.null_condition = null_condition
        self.dim = encoder.dim
        self.languages = list(languages) if languages else None
        if null_condition == "learned":
            self.null_tokens = nn.Parameter(torch.randn(1, 1, encoder.dim) * 0.02)
            self.null_pooled = nn.Parameter(torch.randn(1, encoder.dim) * 0.02)

    @property
    def default_language(self) -> str:
        """ASL where the model signs it (every model of one language signs ASL), else its first."""
        if not self.languages or DEFAULT_LANGUAGE in self.languages:
            return DEFAULT_LANGUAGE
        return self.languages[0]

    def check_languages(self, languages: list[str] | None, batch: int) -> list[str]:
        """One language code per text (None: the default for all); an unknown one raises."""
        if languages is None:
            return [self.default_language] * batch
        if isinstance(languages, str):
            languages = [languages] * batch
        if len(languages) != batch:
            raise ValueError(f"{len(languages)} languages for {batch} texts; give one per text")
        allowed = self.languages or [DEFAULT_LANGUAGE]
        bad = sorted(set(languages) - set(allowed))
        if bad:
            raise ValueError(f"language {', '.join(bad)} is not one this model signs; it signs "
                             f"{', '.join(allowed)}")
        return list(languages)

    def _language_ids(self, languages: list[str], device: Any) -> torch.Tensor | None:
        if not self.languages:
            return None
        return torch.tensor([self.languages.index(code) for code in languages], device=device)

    def null(self, batch: int, languages: list[str] | None = None) -> TextEmbedding:
        """The unconditional embedding, ``batch`` times (one real token for the learned one), in
        ``languages`` (one per text; None: the default)."""
        languages = self.check_languages(languages, batch)
        if self.null_condition == "empty":
            emb = self._encode([""], languages[:1]) if len(set(languages)) == 1 else None
            if emb is None:  # several languages: one empty text each
                emb = self._encode([""] * batch, languages)
                return replace(emb, order=torch.zeros_like(emb.order))
            return TextEmbedding(
                emb.tokens.expand(batch, -1, -1),  # (B, L, D)
                emb.mask.expand(batch, -1),  # (B, L)
                emb.pooled.expand(batch, -1),  # (B, D)
                torch.zeros_like(emb.mask.expand(batch, -1), dtype=torch.long),  # no order
                language=self._language_ids(languages, emb.tokens.device),
            )
        tokens = self.null_tokens.expand(batch, -1, -1)  # (B, 1, D)
        mask = torch.ones(batch, 1, dtype=torch.bool, device=tokens.device)  # (B, 1)
        return TextEmbedding(tokens, mask, self.null_pooled.expand(batch, -1),  # pooled (B, D)
                             language=self._language_ids(languages, tokens.device))

    def _encode(self, texts: list[str], languages: list[str]) -> TextEmbedding:
        ids = self._language_ids(languages, "cpu")
        if isinstance(self.encoder, ByteTextEncoder) and self.encoder.languages:
            emb = self.encoder(texts, ids)
        else:
            emb = self.encoder(texts)
        if isinstance(self.encoder, ByteTextEncoder):
            emb.order = unit_order(texts, languages, emb.order.shape[1],
                                   self.encoder.max_length).to(emb.order.device)
        emb.language = self._language_ids(languages, emb.tokens.device)
        return emb

    def forward(self, texts: list[str], drop_prob: float = 0.0,
                generator: torch.Generator | None = None,
                languages: list[str] | None = None) -> TextEmbedding:
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop_prob={drop_prob} must be a probability in [0, 1]")
        if isinstance(texts, str):
            raise ValueError(f"texts must be a list of strings, got the string {texts!r}")
        languages = self.check_languages(languages, len(texts))
        if self.lowercase:  # `units.fold`, as each text's language does it
            texts = [fold(t, code) for t, code in zip(texts, languages, strict=True)]
        texts = list(texts)
        if drop_prob == 0.0:
            return self._encode(texts, languages)
        gen_device = generator.device if generator is not None else "cpu"
        drop = (torch.rand(len(texts), generator=generator, device=gen_device)
                < drop_prob).tolist()  # sync point if the generator lives on a GPU
        if self.null_condition == "empty":  # one encoder pass: "" is the null text
            return self._encode(["" if d else t for d, t in zip(drop, texts, strict=True)],
                                languages)
        emb = self._encode(texts, languages)
        # Even when no text is dropped, go through where(): the learned null stays in the graph
        # (zero gradient), so DDP does not stop on unused parameters.
        null = self.null(len(texts), languages)
        length = max(emb.tokens.shape[1], null.tokens.shape[1])
        emb, null = pad_to(emb, length), pad_to(null, length)
        keep = ~torch.tensor(drop, device=emb.tokens.device)  # (B,)
        return TextEmbedding(
            torch.where(keep[:, None, None], emb.tokens, null.tokens.to(emb.tokens.dtype)),
            torch.where(keep[:, None], emb.mask, null.mask),
            torch.where(keep[:, None], emb.pooled, null.pooled.to(emb.pooled.dtype)),
            emb.order * keep[:, None],  # the null condition has no order
            language=emb.language,  # the language is never dropped
        )


def unit_order(texts: list[str], languages: list[str], length: int, max_length: int
               ) -> torch.Tensor:
    """(B, length) long: each byte's place in its text counted in letters (`units.split`: a
    letter of several bytes or characters is one place), 0 for CLS (column 0) and padding. A
    text whose units do not join back to it exactly is counted in characters. ASCII text gets
    1..n, byte for byte."""
    order = torch.zeros(len(texts), length, dtype=torch.long)
    for row, (text, code) in enumerate(zip(texts, languages, strict=True)):
        letters = split(text, "chars", code)
        if join(letters) != text:
            letters = list(text)
        places = [k for k, unit in enumerate(letters, 1) for _ in unit.encode("utf-8")]
        places = places[:max_length][: length - 1]
        order[row, 1: 1 + len(places)] = torch.tensor(places, dtype=torch.long)
    return order
