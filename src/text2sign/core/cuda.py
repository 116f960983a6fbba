"""The fast CUDA path, decided once per run: TF32 matmuls, fused AdamW, torch.compile, and a check
of which scaled-dot-product-attention kernel PyTorch really runs (flash, cuDNN, memory-efficient
or math), asked of its dispatcher with the real inputs rather than assumed.

bf16 autocast is not here: accelerate's ``mixed_precision`` opens it around every forward.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

# torch.nn.attention.SDPBackend values, as torch._fused_sdp_choice returns them.
SDPA_KERNELS = {-1: "error", 0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}


def enable_tf32(device: torch.device) -> bool:
    """Let fp32 matmuls run on TF32 tensor cores (Ampere and later; cuDNN convolutions already
    default to it). Whatever bf16 autocast leaves in fp32 then still uses tensor cores."""
    if device.type != "cuda":
        return False
    torch.set_float32_matmul_precision("high")
    return True


def adamw(params: Iterable[torch.Tensor], **kwargs) -> torch.optim.AdamW:
    """AdamW, fused into one kernel per step when every parameter lives on CUDA; elsewhere the
    default (for-each) implementation, which gives the same updates up to rounding."""
    params = list(params)
    fused = bool(params) and all(p.device.type == "cuda" for p in params)
    return torch.optim.AdamW(params, fused=True if fused else None, **kwargs)


# Inductor generates Triton kernels on a GPU; on a CPU it compiles C++ (minutes for one model on
# 2 cores), so the tests compile with "eager": the same graph capture and guards, no codegen.
COMPILE_BACKEND = "inductor"


def compile_module(module: nn.Module) -> nn.Module:
    """torch.compile in place (``Module.compile``), so state_dict keys and checkpoints are those of
    the eager module. The first steps pay the compile time; new input shapes recompile."""
    if not hasattr(module, "compile"):
        raise ValueError(f"train.compile=true needs torch>=2.2 (Module.compile); this is torch "
                         f"{torch.__version__}: upgrade torch or set train.compile=false")
    module.compile(backend=COMPILE_BACKEND)
    return module


@contextmanager
def recorded_attention_kernels() -> Iterator[Counter]:
    """Count, per kernel name, the scaled_dot_product_attention calls made inside (eager code
    only): e.g. ``Counter({'flash': 8, 'efficient': 4})``. On CPU the fused kernel is a CPU
    flash-attention; on CUDA a masked cross-attention cannot use flash and falls to another."""
    original = F.scaled_dot_product_attention
    seen: Counter = Counter()

    def recording(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        try:  # a private but stable dispatcher query (torch>=2.0); names the kernel it would pick
            choice = torch._fused_sdp_choice(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                             is_causal=is_causal, scale=scale, **kw)
            seen[SDPA_KERNELS.get(int(choice), str(choice))] += 1
        except (AttributeError, RuntimeError, TypeError):
            seen["unknown"] += 1
        return original(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                        scale=scale, **kw)

    F.scaled_dot_product_attention = recording
    try:
        yield seen
    finally:
        F.scaled_dot_product_attention = original


def describe_kernels(seen: Counter, device: torch.device) -> str:
    """One line for a log: 'attention on cuda: flash x24, efficient x8'."""
    calls = ", ".join(f"{name} x{n}" for name, n in seen.most_common()) or "no attention calls"
    return f"attention on {device.type}: {calls}"


def check_distribution(distributed_type: str) -> None:
    """Stop a sharded launch before step 1: the loop's EMA (a whole fp32 copy updated from the
    live weights), gradient-norm logging and optimizer checkpoints assume unsharded tensors."""
    kind = str(getattr(distributed_type, "value", distributed_type))
    if kind in ("FSDP", "DEEPSPEED"):
        raise ValueError(
            f"accelerate launched this run with {kind}, which text2sign's training loop does not "
            "support yet (its EMA and checkpoints need whole, unsharded weights and optimizer "
            "state); launch with configs/accelerate/ddp.yaml (data parallel) instead"
        )
