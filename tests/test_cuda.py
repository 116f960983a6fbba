"""The fast path's pieces on CPU: attention kernel report, optimizer choice, torch.compile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import killed_after, losses, make_corpus, same_tensors, tiny_config
from safetensors.torch import load_file

from text2sign.core import cuda
from text2sign.model_folder.build import build_config
from text2sign.models.registry import build_denoiser, preset_params
from text2sign.models.text import TextEmbedding
from text2sign.training.loop import train


@pytest.mark.parametrize("arch", ["diffusers-unet3d", "dit3d", "unet3d"])  # built from scratch
def test_attention_kernels_are_asked_of_the_dispatcher(arch):
    torch.manual_seed(0)
    model = build_denoiser(arch, preset_params(arch, "tiny"), text_dim=32).eval()
    tokens = torch.randn(2, 5, 32)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])  # (B, L), padding
    x, t = torch.randn(2, 3, 4, 16, 16), torch.tensor([10, 500])  # (B, C, T, H, W), (B,)
    original = F.scaled_dot_product_attention
    with torch.no_grad(), cuda.recorded_attention_kernels() as seen:
        out = model(x, t, TextEmbedding(tokens, mask, tokens.mean(1)))
    assert F.scaled_dot_product_attention is original  # restored
    assert torch.isfinite(out).all()
    assert sum(seen.values()) > 0 and set(seen) <= {"flash", "math"}, seen  # CPU kernels
    line = cuda.describe_kernels(seen, x.device)
    assert line.startswith("attention on cpu: ") and "x" in line


def test_adamw_fuses_only_cuda_parameters_and_tf32_only_on_cuda():
    params = [torch.nn.Parameter(torch.randn(3))]
    opt = cuda.adamw(params, lr=1e-3, weight_decay=0.0)
    assert not opt.defaults["fused"]  # CPU parameters: the default for-each implementation
    before = torch.get_float32_matmul_precision()
    assert cuda.enable_tf32(torch.device("cpu")) is False
    assert torch.get_float32_matmul_precision() == before


def test_config_validates_loader_settings():
    assert build_config("tiny", overrides=["train.compile=true"]).train.compile is True
    with pytest.raises(ValueError, match="data.prefetch_factor=0"):
        build_config("tiny", overrides=["data.prefetch_factor=0"])
    with pytest.raises(ValueError, match="train.compile"):
        build_config("tiny", overrides=["train.compile=fast"])


def test_compiled_training_matches_eager_and_resumes_exactly(tmp_path, monkeypatch):
    """Dynamo's graph capture and guards around the denoiser, as train.compile=true runs it; the
    inductor code generation it uses on a GPU is left out (minutes of C++ compiling on a CPU)."""
    monkeypatch.setattr(cuda, "COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    corpus = make_corpus(tmp_path / "corpus")
    sets = dict(max_steps=3, checkpoint_every=2, keep_checkpoints=5)
    eager, full, part = tmp_path / "eager", tmp_path / "full", tmp_path / "part"
    train(tiny_config(corpus, **sets), eager, progress=False, device="cpu")
    cfg = tiny_config(corpus, compile=True, **sets)
    train(cfg, full, progress=False, device="cpu")
    assert [s for s, _ in losses(full)] == [1, 2, 3]
    assert [v for _, v in losses(full)] == pytest.approx([v for _, v in losses(eager)], rel=1e-4)
    killed_after(full, 2, part)
    train(cfg, part, resume=True, progress=False, device="cpu")
    assert losses(part) == losses(full)[2:]
    ema = Path("checkpoints") / "step-000003" / "ema.safetensors"
    assert same_tensors(full / ema, part / ema)
    # checkpoints keep the eager module's names
    assert not any("_orig_mod" in k for k in load_file(part / ema))


@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"),
                                       ("deepspeed-zero2", "DEEPSPEED")])
def test_accelerate_configs_load_and_sharded_ones_are_refused(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    path = Path(__file__).parents[1] / "configs" / "accelerate" / f"{name}.yaml"
    cfg = load_config_from_file(str(path))  # unknown keys would raise here
    assert cfg.distributed_type.value == kind and cfg.mixed_precision == "bf16"
    if kind == "MULTI_GPU":
        cuda.check_distribution(cfg.distributed_type)  # data parallel: supported
    else:
        with pytest.raises(ValueError, match=f"{kind}.*ddp.yaml"):
            cuda.check_distribution(cfg.distributed_type)


def test_loader_workers_keep_the_data_order(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    runs = {}
    for workers in (0, 2):
        cfg = tiny_config(corpus, max_steps=2, checkpoint_every=0)
        cfg.data.num_workers, cfg.data.prefetch_factor = workers, 3
        train(cfg, tmp_path / f"w{workers}", progress=False, device="cpu")
        runs[workers] = losses(tmp_path / f"w{workers}")
    assert runs[2] == runs[0]
