"""Denoisers: preset structures at toy width, zero-init, checkpointing, sizes, text conditioning."""

from __future__ import annotations

import json

import pytest
import torch

from text2sign.models.registry import (
    ARCH_PRESETS,
    DENOISERS,
    allowed_params,
    build_denoiser,
    count_parameters,
    preset_params,
)
from text2sign.models.text import TextEmbedding

TEXT_DIM = 16
ARCHS = ["unet3d", "dit3d", "diffusers-unet3d"]
PRESET_NAMES = ["tiny", "small", "base", "large"]
# Keeps each preset's structure (levels, depth, patching) but shrinks its width.
TOY_WIDTH = {
    "unet3d": {"channels": 8, "head_dim": 8, "norm_groups": 4},
    "dit3d": {"hidden_size": 16, "num_heads": 2},
    "diffusers-unet3d": {"channels": 8, "num_heads": 2, "norm_groups": 4},
}


@pytest.fixture(autouse=True)
def one_thread():
    """Toy models run thousands of tiny ops: one thread avoids OpenMP waits on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy(arch: str, preset: str = "tiny", **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    params = {**preset_params(arch, preset), **TOY_WIDTH[arch], **overrides}
    return build_denoiser(arch, params, in_channels=3, text_dim=TEXT_DIM).eval()


def smallest_size(model) -> tuple[int, int]:
    """Smallest (frames, size) the model's down/patch factors allow."""
    for size in (4, 8, 16, 32, 64):
        for frames in (1, 2, 4, 8):
            try:
                model.check_input_size(frames, size, size)
                return frames, size
            except ValueError:
                continue
    raise AssertionError("no small valid size")


def make_text(batch: int, length: int = 5, seed: int = 0, real: int | None = None) -> TextEmbedding:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, length, dtype=torch.bool)
    if real is not None:
        mask[:, real:] = False
    return TextEmbedding(torch.randn(batch, length, TEXT_DIM, generator=g), mask,
                         torch.randn(batch, TEXT_DIM, generator=g))


def unzero(model: torch.nn.Module) -> None:
    """Give zero-initialised layers random weights so every path reaches the output."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def video(frames: int, size: int, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return torch.randn(batch, 3, frames, size, size, generator=g)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_structure_runs_at_toy_width(arch, preset):
    model = toy(arch, preset)
    frames, size = smallest_size(model)
    x = video(frames, size)
    with torch.no_grad():
        out = model(x, torch.tensor([0, 999]), make_text(2))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    json.dumps(ARCH_PRESETS[arch][preset])  # presets are plain data for config.yaml / config.json


@pytest.mark.parametrize("arch", ARCHS)
def test_config_rebuilds_same_architecture(arch):
    model = toy(arch)
    params = json.loads(json.dumps(model.config))
    again = build_denoiser(arch, params, in_channels=3, text_dim=TEXT_DIM)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    assert count_parameters(again) == count_parameters(model) > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_fresh_model_outputs_exactly_zero(arch):
    model = toy(arch)
    frames, size = smallest_size(model)
    out = model(video(frames, size), torch.tensor([3, 500]), make_text(2))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "diffusers-unet3d"])
def test_gradient_checkpointing_same_output_and_grads(arch):
    model = toy(arch).train()
    unzero(model)
    frames, size = smallest_size(model)
    x, t, text = video(frames, size), torch.tensor([10, 700]), make_text(2, real=3)

    def run():
        model.zero_grad()
        out = model(x, t, text)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    out_plain, grads_plain = run()
    model.set_gradient_checkpointing(True)
    out_ckpt, grads_ckpt = run()
    assert torch.allclose(out_plain, out_ckpt, atol=1e-6)
    for a, b in zip(grads_plain, grads_ckpt, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_diffusers_checkpointing_unsupported_warns():
    model = toy("diffusers-unet3d")
    with pytest.warns(UserWarning, match="gradient checkpointing"):
        model.set_gradient_checkpointing(True)
    model.set_gradient_checkpointing(False)  # turning it off is always fine


@pytest.mark.parametrize("arch", ARCHS)
def test_sizes_the_factors_do_not_allow_raise(arch):
    model = toy(arch)
    frames, size = smallest_size(model)
    with pytest.raises(ValueError, match=r"height=\d+ is not a positive multiple"):
        model.check_input_size(frames, size + 1, size)
    with pytest.raises(ValueError, match="multiple"):
        model(torch.zeros(2, 3, frames, size, size + 1), torch.tensor([1, 2]), make_text(2))


@pytest.mark.parametrize("arch", ARCHS)
def test_text_conditioning_reaches_the_output(arch):
    model = toy(arch)
    unzero(model)
    frames, size = smallest_size(model)
    x, t = video(frames, size), torch.tensor([100, 100])
    a, b = make_text(2, seed=0), make_text(2, seed=1)
    with torch.no_grad():
        base = model(x, t, a)
        other_tokens = model(x, t, TextEmbedding(b.tokens, a.mask, a.pooled))
        other_pooled = model(x, t, TextEmbedding(a.tokens, a.mask, b.pooled))
        other_t = model(x, torch.tensor([900, 900]), a)
    assert base.abs().max() > 0
    assert (base - other_tokens).abs().max() > 1e-4  # cross-attention to tokens
    assert (base - other_t).abs().max() > 1e-4
    if arch != "diffusers-unet3d":  # diffusers' UNet3DConditionModel has no pooled-text input
        assert (base - other_pooled).abs().max() > 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_tokens_do_not_change_the_result(arch):
    model = toy(arch)
    unzero(model)
    frames, size = smallest_size(model)
    x, t = video(frames, size), torch.tensor([5, 600])
    text = make_text(2, length=6, real=3)
    tokens = text.tokens.clone()
    tokens[:, 3:] = 100.0 * torch.randn(2, 3, TEXT_DIM)
    with torch.no_grad():
        a = model(x, t, text)
        b = model(x, t, TextEmbedding(tokens, text.mask, text.pooled))
    assert torch.allclose(a, b, atol=1e-5)


def test_all_padding_row_is_finite():
    model = toy("unet3d")
    unzero(model)
    text = make_text(2, real=0)
    with torch.no_grad():
        out = model(video(4, 16), torch.tensor([1, 2]), text)
    assert torch.isfinite(out).all()


def test_float_and_long_timesteps_agree():
    model = toy("unet3d")
    unzero(model)
    x, text = video(4, 16), make_text(2)
    with torch.no_grad():
        a = model(x, torch.tensor([7, 300]), text)
        b = model(x, torch.tensor([7.0, 300.0]), text)
    assert torch.allclose(a, b)


def test_registry_errors_name_the_bad_value():
    assert set(DENOISERS) == set(ARCH_PRESETS) >= set(ARCHS)
    with pytest.raises(ValueError, match="'nope'.*unet3d"):
        preset_params("nope", "tiny")
    with pytest.raises(ValueError, match="'huge'.*tiny"):
        preset_params("unet3d", "huge")
    with pytest.raises(ValueError, match=r"\['chanels'\].*channels"):
        build_denoiser("unet3d", {"chanels": 8}, text_dim=TEXT_DIM)
    for arch in ARCHS:
        for preset in PRESET_NAMES:
            assert set(preset_params(arch, preset)) <= set(allowed_params(arch))
    params = preset_params("unet3d", "tiny")
    params["channels"] = -1
    assert ARCH_PRESETS["unet3d"]["tiny"]["channels"] != -1  # a copy, not the preset itself


@pytest.mark.parametrize("arch", ARCHS)
def test_run_presets_sizes_fit_the_model_presets(arch):
    from text2sign.core.config import PRESETS as RUN_PRESETS
    from text2sign.core.config import DataConfig

    for run in RUN_PRESETS.values():
        data = {**DataConfig().__dict__, **run.get("data", {})}
        preset = run.get("model", {}).get("preset", "small")
        toy(arch, preset).check_input_size(data["frames"], data["size"], data["size"])


# diffusers-style pinned outputs (tests/models/unets: expected_slice): the tiny preset at toy
# width, seeded, its zero-initialised layers given random weights (`unzero`) so every path
# counts; out[1, :, -1, -1, -3:] at 4 x 16 x 16. A refactor that changes the math by more than
# ATOL fails here, where shape and finiteness checks pass. Regenerate only for an intended change.
ALIGNED_SLICES = {  # alignment="monotonic" without frame_context: pinned before it existed
    "unet3d": [-0.45712, 0.00676, -0.63553, 0.12899, 0.26021, 0.18461, 0.29806, 0.14523,
               0.18258],
    "dit3d": [-0.24021, -0.07332, -0.06452, -0.09979, 0.13801, -0.56291, -0.30326, -0.06419,
              -0.87107],
}
EXPECTED_SLICES = {  # the tiny presets as they are (unet3d and dit3d: aligned, frame_context)
    "unet3d": [-0.0594, -0.02377, -0.08243, -0.73925, 0.35924, -0.5155, 0.08683, 0.11097,
               0.23174],
    "dit3d": [-0.03345, 0.57738, 0.19674, -1.2819, 0.97716, -0.40456, -0.33821, -0.22058,
              -0.00742],
    "diffusers-unet3d": [-0.39041, -0.2352, -0.40816, -0.42341, -0.72171, -0.28554, 0.27767,
                         0.27672, -0.06819],
}
UNALIGNED_SLICES = {  # alignment="none": pinned before alignment existed, so still the same
    "unet3d": [-0.45855, 0.93368, 0.03802, 0.74326, -0.76361, -0.3362, -0.48298, -0.2492,
               -0.36255],
    "dit3d": [-0.08883, 0.26768, -0.43642, 0.45591, -0.28194, 0.48972, -0.99413, 0.88014,
              0.13255],
}
ATOL = 1e-4  # fp32 on CPU: BLAS and thread counts move the last digits by ~1e-6


@pytest.mark.numerics
@pytest.mark.parametrize("arch, overrides, expected", [
    *[(arch, {}, EXPECTED_SLICES[arch]) for arch in ARCHS],
    *[(arch, {"frame_context": False}, ALIGNED_SLICES[arch]) for arch in ALIGNED_SLICES],
    *[(arch, {"alignment": "none", "frame_context": False}, UNALIGNED_SLICES[arch])
      for arch in UNALIGNED_SLICES],
])
def test_seeded_tiny_model_output_is_pinned(arch, overrides, expected):
    model = toy(arch, **overrides)
    unzero(model)
    with torch.no_grad():
        out = model(video(4, 16), torch.tensor([3, 500]), make_text(2))
    got = out[1, :, -1, -1, -3:].flatten()  # (3 channels x 3 pixels)
    torch.testing.assert_close(got, torch.tensor(expected), atol=ATOL, rtol=0)
