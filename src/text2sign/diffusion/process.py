"""Diffusion over diffusers schedulers: the training loss and the sampling loop with CFG.

The denoiser is any callable ``model(x_t (B,C,T,H,W), t (B,) int64, cond: TextEmbedding)``
returning the prediction (epsilon or v) in the shape of ``x_t``; nothing here is an nn.Module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from text2sign.core.config import SAMPLERS, DiffusionConfig
from text2sign.models.text import TextEmbedding, pad_and_cat

Model = Callable[[Tensor, Tensor, TextEmbedding], Tensor]

_BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2",
                   "scaled_linear": "scaled_linear"}
# Stable Diffusion 1.x/2.x trained on "scaled_linear" betas 0.00085..0.012: a UNet from it keeps
# its denoising function only on that schedule.
_BETA_RANGES = {"scaled_linear": {"beta_start": 0.00085, "beta_end": 0.012}}


def make_scheduler(cfg: DiffusionConfig, sampler: str = "ddpm", grid: int = 50) -> Any:
    """A fresh diffusers scheduler for ``sampler`` ("ddpm", "ddim", "dpm++" or "lcm", whose
    timesteps come from a ``grid`` of that many, `consistency_grid`); cheap, no state.

    Timesteps are spaced "trailing" so the first step starts from t = N-1, pure noise for the
    cosine schedule (Lin et al. 2023, "Common Diffusion Noise Schedules ... are Flawed", sec. 3.3).
    No clip_sample / thresholding: the scheduler does not know the data range (pixels or
    latents); the pipeline clamps pixels once, after decoding.
    """
    # diffusers takes seconds to import: loading a model (`text2sign info --modules`) skips it
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, LCMScheduler

    common = dict(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=_BETA_SCHEDULES[cfg.beta_schedule],  # linear: betas 1e-4..0.02
        prediction_type=cfg.prediction_type,
        timestep_spacing="trailing",
        **_BETA_RANGES.get(cfg.beta_schedule, {}),
    )
    if sampler == "ddpm":
        return DDPMScheduler(**common, clip_sample=False)
    if sampler == "ddim":
        scheduler = DDIMScheduler(**common, clip_sample=False)
        # fp64: in fp32, 1 - alpha_bar rounds to 1 at t = N-1 of the cosine schedule, the eta > 0
        # variance then exceeds 1 - alpha_bar_prev and step() takes the sqrt of a negative.
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
        return scheduler
    if sampler == "dpm++":  # DPM-Solver++(2M), Lu et al. 2022
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    if sampler == "lcm":  # a consistency student's multistep sampler (Luo et al. 2023, alg. 1)
        return LCMScheduler(**common, clip_sample=False, timestep_scaling=TIMESTEP_SCALING,
                            original_inference_steps=len(consistency_grid(cfg, grid)))
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}")


TIMESTEP_SCALING = 10.0  # LCM's c_skip / c_out at timestep * 10 (diffusers' default)


def consistency_grid(cfg: DiffusionConfig, grid: int) -> Tensor:
    """LCM's skipping-step grid (Luo et al. 2023, sec. 4.2): the ``grid`` timesteps, k = N // grid
    apart, a consistency student is trained and sampled at; (n,) int64, ascending, ending at
    N - 1."""
    n = min(grid, cfg.num_train_timesteps)
    stride = cfg.num_train_timesteps // n
    return torch.arange(1, n + 1) * stride - 1  # (n,)


def set_timesteps(scheduler: Any, steps: int, device: torch.device | str | None = None) -> None:
    """``scheduler.set_timesteps(steps)``, with a DDIM grid that is consistent for any count.

    DDIMScheduler.step always steps back by N // steps, while its trailing grid is spaced N / steps:
    unless steps divides N the two disagree and the last step stops short of x0. The grid
    k * (N // steps) - 1, k = steps..1, keeps the stride and ends exactly at t = -1 (alpha_bar 1).
    """
    from diffusers import DDIMScheduler  # seconds to import, as in make_scheduler

    scheduler.set_timesteps(steps, device=device)
    if isinstance(scheduler, DDIMScheduler):
        stride = scheduler.config.num_train_timesteps // steps
        grid = torch.arange(steps, 0, -1, device=scheduler.timesteps.device) * stride - 1
        scheduler.timesteps = grid  # (steps,) int64, starts within stride of N-1


def snr(scheduler: Any, t: Tensor) -> Tensor:
    """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) at integer timesteps ``t`` (B,)."""
    alpha_bar = scheduler.alphas_cumprod.to(t.device)[t].float()  # (B,)
    return alpha_bar / (1.0 - alpha_bar)


def min_snr_weight(snr_t: Tensor, gamma: float | None, prediction_type: str) -> Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023, eq. 13 and its v-prediction form).

    epsilon: min(snr, gamma) / snr; v: min(snr, gamma) / (snr + 1); None: all ones.
    """
    if gamma is None:
        return torch.ones_like(snr_t)
    clipped = snr_t.clamp(max=gamma)
    return clipped / snr_t if prediction_type == "epsilon" else clipped / (snr_t + 1.0)


def training_loss(model: Model, x0: Tensor, cond: TextEmbedding, cfg: DiffusionConfig,
                  generator: torch.Generator | None = None, scheduler: Any = None) -> Tensor:
    """Denoising loss: t ~ U{0..N-1}, x_t = add_noise(x0), MSE to eps or v, min-SNR weighted."""
    if x0.ndim != 5:
        raise ValueError(f"x0 must be (B, C, T, H, W), got shape {tuple(x0.shape)}")
    if len(cond) != x0.shape[0]:
        raise ValueError(f"cond has batch {len(cond)} but x0 has batch {x0.shape[0]}")
    scheduler = scheduler if scheduler is not None else make_scheduler(cfg, "ddpm")
    n = scheduler.config.num_train_timesteps
    gen_device = generator.device if generator is not None else x0.device
    t = torch.randint(0, n, (x0.shape[0],), generator=generator, device=gen_device)
    t = t.to(x0.device, non_blocking=True)  # (B,); no stream sync from a CPU generator
    noise = torch.randn(x0.shape, generator=generator, device=gen_device, dtype=x0.dtype)
    noise = noise.to(x0.device, non_blocking=True)  # (B, C, T, H, W)
    x_t = scheduler.add_noise(x0, noise, t)  # (B, C, T, H, W)
    if cfg.prediction_type == "epsilon":
        target = noise
    else:  # v_prediction: sqrt(ab) eps - sqrt(1-ab) x0, Salimans & Ho 2022
        target = scheduler.get_velocity(x0, noise, t)
    pred = model(x_t, t, cond)
    if pred.shape != x0.shape:
        raise ValueError(f"model returned shape {tuple(pred.shape)}, expected {tuple(x0.shape)}")
    per_sample = (pred.float() - target.float()).pow(2).flatten(1).mean(1)  # (B,), fp32
    weight = min_snr_weight(snr(scheduler, t), cfg.min_snr_gamma, cfg.prediction_type)  # (B,)
    return (weight * per_sample).mean()


@torch.no_grad()
def sample(model: Model, cond: TextEmbedding, shape: tuple[int, ...], cfg: DiffusionConfig, *,
           uncond: TextEmbedding | None = None, sampler: str = "dpm++", steps: int = 25,
           guidance: float = 1.0, eta: float = 0.0, generator: torch.Generator | None = None,
           device: torch.device | str | None = None, progress: bool = False,
           grid: int = 50) -> Tensor:
    """Generate (B, C, T, H, W) from noise (pixels, roughly in [-1, 1], or latents; unclamped);
    classifier-free guidance when
    ``guidance != 1`` (Ho & Salimans 2022): cond and uncond go through ONE batched model call.
    Sampler "lcm" (a distilled student, its consistency ``grid``) folds guidance into the
    conditioning instead: one call a step, no unconditional pass.
    """
    if len(shape) != 5:
        raise ValueError(f"shape must be (B, C, T, H, W), got {tuple(shape)}")
    batch = shape[0]
    if len(cond) != batch:
        raise ValueError(f"cond has batch {len(cond)} but shape asks for {batch} videos")
    if not 1 <= steps <= cfg.num_train_timesteps:
        raise ValueError(
            f"steps={steps} must be between 1 and num_train_timesteps={cfg.num_train_timesteps}")
    if eta != 0.0 and sampler != "ddim":
        raise ValueError(f"eta={eta} only applies to sampler 'ddim', not {sampler!r}; set eta=0")
    folded = sampler == "lcm"  # guidance is the student's input: one evaluation a step
    guided = guidance != 1.0 and not folded
    if guided and uncond is None:
        raise ValueError(
            f"guidance={guidance} needs the unconditional embedding: pass uncond= "
            "(e.g. conditioner.null(B)) or use guidance=1.0")
    if guided and len(uncond) != batch:
        raise ValueError(f"uncond has batch {len(uncond)} but cond has {batch}")
    device = torch.device(device) if device is not None else cond.tokens.device
    scheduler = make_scheduler(cfg, sampler, grid)
    set_timesteps(scheduler, steps, device)
    text = pad_and_cat([cond, uncond]) if guided else cond
    if folded:
        text = replace(text, guidance=torch.full((batch,), float(guidance)))  # (B,)
    text = text.to(device)

    gen_device = generator.device if generator is not None else device
    x = torch.randn(shape, generator=generator, device=gen_device).to(device)  # (B, C, T, H, W)
    x = x * scheduler.init_noise_sigma
    step_kwargs: dict[str, Any] = {"generator": generator}
    if sampler == "ddim":
        step_kwargs["eta"] = eta
    for t in tqdm(scheduler.timesteps, disable=not progress, desc=f"{sampler} sampling"):
        x_in = torch.cat([x, x]) if guided else x  # (2B or B, C, T, H, W)
        x_in = scheduler.scale_model_input(x_in, t)
        t_in = t.reshape(1).expand(x_in.shape[0]).to(device)  # (2B or B,)
        out = model(x_in, t_in, text).to(x.dtype)
        if guided:
            out_cond, out_uncond = out.chunk(2)  # (B, C, T, H, W) each
            out = out_uncond + guidance * (out_cond - out_uncond)
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return x


# ----------------------------------------------------------------------------- distillation


def _at(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """values[t] (B,) broadcast against ``like`` (B, C, T, H, W), in its dtype."""
    return values.to(t.device)[t].to(like.dtype).reshape(-1, *[1] * (like.ndim - 1))


def x0_and_eps(out: Tensor, x_t: Tensor, t: Tensor, scheduler: Any) -> tuple[Tensor, Tensor]:
    """The clean sample and the noise a denoiser's output (epsilon or v) implies at ``t``."""
    ab = _at(scheduler.alphas_cumprod, t, x_t)  # (B, 1, 1, 1, 1)
    a, s = ab.sqrt(), (1 - ab).sqrt()
    if scheduler.config.prediction_type == "epsilon":
        return (x_t - s * out) / a, out
    return a * x_t - s * out, a * out + s * x_t  # v-prediction, Salimans & Ho 2022, sec. 4


def consistency_output(out: Tensor, x_t: Tensor, t: Tensor, scheduler: Any) -> Tensor:
    """f(x_t, t) = c_skip x_t + c_out x0: the boundary condition f(x, 0) = x (LCM, eq. 5)."""
    c_skip, c_out = scheduler.get_scalings_for_boundary_condition_discrete(t.to(x_t.dtype))
    shape = (-1, *[1] * (x_t.ndim - 1))
    return c_skip.reshape(shape) * x_t + c_out.reshape(shape) * x0_and_eps(out, x_t, t,
                                                                           scheduler)[0]


def consistency_distillation_loss(student: Model, teacher: Model, target: Model, x0: Tensor,
                                  cond: TextEmbedding, uncond: TextEmbedding,
                                  cfg: DiffusionConfig, guidance: tuple[float, float],
                                  generator: torch.Generator, scheduler: Any, grid: int
                                  ) -> Tensor:
    """Latent consistency distillation with guidance folded in (Luo et al. 2023, alg. 2).

    x_{t_{n+k}} = add_noise(x0); the teacher's guided DDIM step at scale w ~ U(guidance) gives
    x_{t_n}; the student's consistency function at (x_{t_{n+k}}, w) is pulled towards the
    target network's (the student's EMA, no gradient) at (x_{t_n}, w), t on the consistency
    ``grid``. ``scheduler`` is `make_scheduler(cfg, "lcm", grid)`. MSE, fp32.
    """
    timesteps = consistency_grid(cfg, grid).to(x0.device)  # (n,)
    k = int(timesteps[0]) + 1  # the skipping step
    batch = x0.shape[0]
    gen_device = generator.device
    index = torch.randint(0, len(timesteps), (batch,), generator=generator, device=gen_device)
    t = timesteps[index.to(x0.device)]  # (B,) t_{n+k}
    t_prev = (t - k).clamp(min=0)  # (B,) t_n; LCM clamps the first step to 0
    noise = torch.randn(x0.shape, generator=generator, device=gen_device, dtype=x0.dtype)
    x_t = scheduler.add_noise(x0, noise.to(x0.device), t)  # (B, C, T, H, W)
    low, high = guidance
    w = low + (high - low) * torch.rand(batch, generator=generator, device=gen_device)  # (B,)
    folded = replace(cond, guidance=w.to(x0.device))

    pred = consistency_output(student(x_t, t, folded), x_t, t, scheduler)
    with torch.no_grad():
        both = teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), pad_and_cat([cond, uncond]))
        out_cond, out_uncond = both.float().chunk(2)  # (B, C, T, H, W) each
        wb = w.to(x0.device).reshape(-1, *[1] * (x0.ndim - 1))
        x0_hat, eps_hat = x0_and_eps(out_uncond + wb * (out_cond - out_uncond), x_t, t, scheduler)
        ab_prev = _at(scheduler.alphas_cumprod, t_prev, x_t)
        x_prev = ab_prev.sqrt() * x0_hat + (1 - ab_prev).sqrt() * eps_hat  # DDIM, eta 0
        goal = consistency_output(target(x_prev, t_prev, folded).float(), x_prev, t_prev,
                                  scheduler)
    return (pred.float() - goal).pow(2).mean()
