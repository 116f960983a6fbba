"""Diffusion loss and samplers against toy denoisers whose optimum is known in closed form."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from text2sign.core.config import DiffusionConfig
from text2sign.diffusion.process import (
    make_scheduler,
    min_snr_weight,
    sample,
    set_timesteps,
    snr,
    training_loss,
)
from text2sign.models.text import TextEmbedding

SHAPE = (2, 3, 2, 4, 4)  # (B, C, T, H, W)
PREDICTIONS = ["epsilon", "v_prediction"]
SAMPLERS = ["ddpm", "ddim", "dpm++"]


def text(batch: int, value: float = 0.0, length: int = 1) -> TextEmbedding:
    """A stand-in embedding; ``value`` lets a toy model tell cond from uncond."""
    return TextEmbedding(torch.full((batch, length, 4), value),
                         torch.ones(batch, length, dtype=torch.bool), torch.full((batch, 4), value))


def optimal_model(cfg: DiffusionConfig, calls: list | None = None):
    """The exact denoiser when every video is the constant pooled[b, 0] (x0 = c known):
    eps = (x_t - sqrt(ab) c) / sqrt(1 - ab),  v = sqrt(ab) eps - sqrt(1 - ab) c."""
    alphas_cumprod = make_scheduler(cfg).alphas_cumprod

    def model(x, t, cond):
        if calls is not None:
            calls.append((x.shape[0], cond.tokens.shape))
        ab = alphas_cumprod[t].view(-1, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
        c = cond.pooled[:, 0].view(-1, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
        eps = (x - ab.sqrt() * c) / (1 - ab).sqrt()
        return eps if cfg.prediction_type == "epsilon" else ab.sqrt() * eps - (1 - ab).sqrt() * c

    return model


def test_make_scheduler_maps_config():
    cfg = DiffusionConfig(beta_schedule="linear", prediction_type="epsilon",
                          num_train_timesteps=500)
    expected = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler}
    for name, cls in expected.items():
        sched = make_scheduler(cfg, name)
        assert type(sched) is cls
        assert sched.config.beta_schedule == "linear"
        assert sched.config.prediction_type == "epsilon"
        assert sched.config.num_train_timesteps == 500
        assert sched.betas[0].item() == pytest.approx(1e-4) and sched.betas[-1].item() == (
            pytest.approx(0.02))
    dpm = make_scheduler(cfg, "dpm++")
    assert dpm.config.algorithm_type == "dpmsolver++" and dpm.config.solver_order == 2
    cosine = make_scheduler(DiffusionConfig(beta_schedule="cosine", prediction_type="v_prediction"))
    assert cosine.config.beta_schedule == "squaredcos_cap_v2"
    assert cosine.config.prediction_type == "v_prediction"
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        make_scheduler(cfg, "euler")
    with pytest.raises(ValueError, match="beta_schedule"):
        make_scheduler(DiffusionConfig(beta_schedule="sigmoid"))


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("steps", [1, 4, 13, 25, 1000])
def test_timesteps_any_count(sampler, steps):
    sched = make_scheduler(DiffusionConfig(), sampler)
    set_timesteps(sched, steps)
    ts = sched.timesteps
    assert len(ts) == steps and ts.dtype == torch.int64
    assert ts[0] >= 1000 - 1000 // steps and ts[-1] >= 0
    assert torch.all(ts[1:] < ts[:-1])
    if sampler == "ddim":  # step() goes back by N // steps: the grid must match and end at -1
        stride = 1000 // steps
        assert torch.all(ts[:-1] - ts[1:] == stride) and ts[-1] - stride == -1


def test_min_snr_weights_match_formula():
    sched = make_scheduler(DiffusionConfig(beta_schedule="cosine"))
    t = torch.tensor([0, 10, 200, 500, 999])
    ab = sched.alphas_cumprod[t]
    s = ab / (1 - ab)
    torch.testing.assert_close(snr(sched, t), s)
    gamma = 5.0
    eps_w = min_snr_weight(s, gamma, "epsilon")
    v_w = min_snr_weight(s, gamma, "v_prediction")
    for i, si in enumerate(s.tolist()):
        assert eps_w[i].item() == pytest.approx(min(si, gamma) / si, rel=1e-5)
        assert v_w[i].item() == pytest.approx(min(si, gamma) / (si + 1), rel=1e-5)
    assert eps_w[-1] == pytest.approx(1.0) and eps_w[0] < 0.01  # noisy t: full weight
    assert torch.equal(min_snr_weight(s, None, "epsilon"), torch.ones_like(s))


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_training_loss_finite_deterministic_and_differentiable(prediction_type):
    cfg = DiffusionConfig(prediction_type=prediction_type)
    x0 = torch.rand(SHAPE) * 2 - 1
    scale = torch.nn.Parameter(torch.tensor(0.5))

    def model(x, t, cond):
        return scale * x

    loss = training_loss(model, x0, text(2), cfg, generator=torch.Generator().manual_seed(1))
    again = training_loss(model, x0, text(2), cfg, generator=torch.Generator().manual_seed(1))
    other = training_loss(model, x0, text(2), cfg, generator=torch.Generator().manual_seed(2))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert loss.item() == again.item() and loss.item() != other.item()
    loss.backward()
    assert scale.grad is not None and scale.grad != 0


@pytest.mark.parametrize("gamma", [None, 5.0])
def test_training_loss_target_depends_on_prediction_type(gamma):
    x0 = torch.full(SHAPE, 0.3)
    cond = text(2, 0.3)
    for target in PREDICTIONS:
        cfg = DiffusionConfig(prediction_type=target, min_snr_gamma=gamma)
        for model_type in PREDICTIONS:
            model = optimal_model(DiffusionConfig(prediction_type=model_type))
            loss = training_loss(model, x0, cond, cfg, generator=torch.Generator().manual_seed(0))
            if model_type == target:
                assert loss.item() < 1e-8  # the exact denoiser for this target
            else:
                assert loss.item() > 1e-3


def test_training_loss_matches_manual_computation():
    cfg = DiffusionConfig(prediction_type="v_prediction", min_snr_gamma=5.0)
    x0 = torch.rand(SHAPE) * 2 - 1
    seen = {}

    def model(x, t, cond):
        seen["x"], seen["t"] = x, t
        return torch.zeros_like(x)

    loss = training_loss(model, x0, text(2), cfg, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (2,), generator=gen)
    noise = torch.randn(SHAPE, generator=gen)
    assert torch.equal(seen["t"], t)
    sched = make_scheduler(cfg)
    ab = sched.alphas_cumprod[t].view(-1, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
    torch.testing.assert_close(seen["x"], ab.sqrt() * x0 + (1 - ab).sqrt() * noise)
    v = ab.sqrt() * noise - (1 - ab).sqrt() * x0
    s = ab.flatten() / (1 - ab.flatten())
    expected = (s.clamp(max=5.0) / (s + 1) * v.pow(2).flatten(1).mean(1)).mean()
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_samplers_recover_known_data(prediction_type, sampler, beta_schedule):
    cfg = DiffusionConfig(prediction_type=prediction_type, beta_schedule=beta_schedule)
    cond = TextEmbedding(torch.zeros(2, 1, 4), torch.ones(2, 1, dtype=torch.bool),
                         torch.tensor([[0.3] * 4, [-0.6] * 4]))
    expected = cond.pooled[:, 0].view(2, 1, 1, 1, 1).expand(SHAPE)  # (B, C, T, H, W)
    for steps in (1, 4, 13):
        out = sample(optimal_model(cfg), cond, SHAPE, cfg, sampler=sampler, steps=steps,
                     generator=torch.Generator().manual_seed(0))
        assert out.shape == SHAPE
        torch.testing.assert_close(out, expected, atol=1e-2, rtol=0)


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("sampler,eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0),
                                         ("dpm++", 0.0)])
def test_sampling_is_deterministic_for_a_seed(prediction_type, sampler, eta):
    cfg = DiffusionConfig(prediction_type=prediction_type)

    def model(x, t, cond):  # not the optimum: results depend on the noise drawn
        return 0.5 * x + cond.pooled[:, :1, None, None, None]

    def run(seed: int) -> torch.Tensor:
        return sample(model, text(2, 0.1), SHAPE, cfg, sampler=sampler, steps=5, eta=eta,
                      generator=torch.Generator().manual_seed(seed))

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # Unclamped (latents have no [-1, 1] range; the pipeline clamps pixels after decoding).
    assert torch.isfinite(a).all()


def test_ddim_eta_adds_noise():
    cfg = DiffusionConfig()

    def model(x, t, cond):
        return 0.5 * x

    runs = [sample(model, text(2), SHAPE, cfg, sampler="ddim", steps=5, eta=eta,
                   generator=torch.Generator().manual_seed(0)) for eta in (0.0, 1.0)]
    assert not torch.allclose(runs[0], runs[1])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_cfg_one_batched_pass_and_guided_result(sampler):
    """cond says c=0.3, uncond c=0.1: guidance g must land on u + g (c - u) = 0.1 + g * 0.2."""
    cfg = DiffusionConfig(prediction_type="epsilon", beta_schedule="linear")
    calls: list = []
    cond, uncond = text(2, 0.3, length=3), text(2, 0.1, length=1)
    out = sample(optimal_model(cfg, calls), cond, SHAPE, cfg, uncond=uncond, sampler=sampler,
                 steps=6, guidance=2.5, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 6  # one model call per step
    assert all(batch == 4 and tokens == (4, 3, 4) for batch, tokens in calls)  # padded to L=3
    torch.testing.assert_close(out, torch.full(SHAPE, 0.1 + 2.5 * 0.2), atol=1e-2, rtol=0)
    calls.clear()
    sample(optimal_model(cfg, calls), cond, SHAPE, cfg, uncond=uncond, sampler=sampler, steps=3,
           guidance=1.0, generator=torch.Generator().manual_seed(0))
    assert [batch for batch, _ in calls] == [2, 2, 2]  # no guidance, no uncond pass


def test_sample_rejects_bad_arguments():
    cfg = DiffusionConfig()

    def model(x, t, cond):
        return x

    with pytest.raises(ValueError, match="uncond"):
        sample(model, text(2), SHAPE, cfg, guidance=3.0)
    with pytest.raises(ValueError, match="eta"):
        sample(model, text(2), SHAPE, cfg, sampler="dpm++", eta=0.5)
    with pytest.raises(ValueError, match="batch"):
        sample(model, text(3), SHAPE, cfg)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(model, text(2), SHAPE, cfg, sampler="heun")
    with pytest.raises(ValueError, match="steps"):
        sample(model, text(2), SHAPE, cfg, steps=0)
